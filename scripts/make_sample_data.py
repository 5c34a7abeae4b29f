"""Write the embedded initial-condition file ``atmos/sample/initial_conditions.nc``.

Subsets the SPEEDY-world validation cube (``speedy-world-2019-12.zarr``: a *simulated*
atmosphere from the SPEEDY-physics GCM run via jcm, not observations) to a few weeks
around 2020-01-01, keeping only the variables the embedded sample model reads
(its prognostic variables and levels, its forcings and statics), as float32
netCDF with zlib compression. ``atmos rollout`` without ``--data`` reads its
initial conditions from this file; the package never reads ``../shared`` at run time.

    python scripts/make_sample_data.py                          # defaults below
    python scripts/make_sample_data.py --data ../shared/data/speedy-world-2019-12.zarr \\
        --start 2019-12-22 --end 2020-01-14T18

The variables are taken from the sample checkpoint's ``checkpoint.json`` when it
exists (``atmos/sample/checkpoint.json``, written by ``scripts/train_sample_model.py``),
else from ``configs/vit_speedy.yaml``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SAMPLE_DIR = REPO / "atmos" / "sample"
DEFAULT_DATA = REPO.parent / "shared" / "data" / "speedy-world-2019-12.zarr"
OUT_NAME = "initial_conditions.nc"


def wanted_variables() -> tuple[list[str], list[int] | None]:
    """(variables, levels) the sample model needs: prognostics + dataset forcings + statics."""
    from atmos.io.forcings import DERIVED_FORCINGS

    meta_path = SAMPLE_DIR / "checkpoint.json"
    if meta_path.is_file():
        meta = json.loads(meta_path.read_text())
        d = meta["config"]["data"]
        variables, levels = list(meta["variables"]), meta.get("levels")
        forcings, statics = list(meta["forcings"]), list(meta["statics"])
    else:
        import yaml

        d = yaml.safe_load((REPO / "configs" / "vit_speedy.yaml").read_text())["data"]
        variables, levels = list(d["variables"]), d.get("levels")
        forcings, statics = list(d.get("forcings", [])), list(d.get("statics", []))
    names = variables + [f for f in forcings if f not in DERIVED_FORCINGS] + statics
    return list(dict.fromkeys(names)), levels


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "--data",
        default=os.environ.get("SPEEDY_VAL", str(DEFAULT_DATA)),
        help="SPEEDY-world validation cube (zarr)",
    )
    p.add_argument("--start", default="2019-12-22T00", help="first time stamp kept")
    p.add_argument("--end", default="2020-01-14T18", help="last time stamp kept")
    p.add_argument("--out", type=Path, default=SAMPLE_DIR / OUT_NAME)
    args = p.parse_args(argv)

    import numpy as np
    import xarray as xr

    from atmos.io.open import open_dataset

    if not Path(args.data).exists():
        print(f"no SPEEDY-world cube at {args.data}; pass --data", file=sys.stderr)
        return 2
    names, levels = wanted_variables()
    ds = open_dataset(args.data, variables=names, time=slice(args.start, args.end))
    if levels is not None and "level" in ds.dims:
        ds = ds.sel(level=list(levels))
    ds = ds.load()
    for k in ds.data_vars:
        ds[k] = ds[k].astype(np.float32)
        n_bad = int((~np.isfinite(ds[k].values)).sum())
        if n_bad:
            raise SystemExit(f"{k} has {n_bad} non-finite values in the selection")
    ds.attrs = {
        "title": "atmos embedded sample: SPEEDY-world initial conditions around 2020-01-01",
        "source": "subset of speedy-world-2019-12.zarr by scripts/make_sample_data.py",
        "notes": (
            "SPEEDY-world is a SIMULATED atmosphere (SPEEDY physics on the dinosaur spectral core, via jcm), "
            "not observations. Variables in the WeatherBench2 64x32 layout."
        ),
        "Conventions": "CF-1.11",
    }
    enc = {k: {"zlib": True, "complevel": 9, "shuffle": True} for k in ds.data_vars}
    enc["time"] = {"units": "hours since 2000-01-01", "calendar": "proleptic_gregorian", "dtype": "int64"}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_suffix(".tmp.nc")
    ds.to_netcdf(tmp, encoding=enc, engine="netcdf4")
    os.replace(tmp, args.out)
    check = xr.open_dataset(args.out)
    size = args.out.stat().st_size / 2**20
    print(
        f"wrote {args.out} ({size:.2f} MiB): {check.sizes['time']} time steps "
        f"{str(check.time.values[0])[:16]} .. {str(check.time.values[-1])[:16]}, variables {sorted(check.data_vars)}"
    )
    check.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
