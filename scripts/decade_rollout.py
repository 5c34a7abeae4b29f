"""A multi-year rollout of a checkpoint (default: the embedded model), diagnosed year by year.

Rolls the model out from ``--init`` for ``--years`` years at daily output (streamed to a Zarr
store, so memory stays flat), then for each year of valid times reports against the SPEEDY-world
2018 cube (a *simulated* atmosphere, not observations; the training year) as reference climate:
finite values, the worst monthly |global-mean t2m error|, the range of the monthly z500 spatial-std
ratio, the range of the monthly weather-variability ratio (area mean of the per-point std over the
month's days, against the reference's at the same daily sampling) and the drift per year.

    OMP_NUM_THREADS=1 python scripts/decade_rollout.py --years 10 --out out/decade
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    root = Path(os.environ.get("ATMOS_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
    p.add_argument("--model", default=None, help="checkpoint (default: the embedded sample model)")
    p.add_argument("--data", default=None, help="initial conditions (default: the sample's)")
    p.add_argument("--init", default="2020-01-01")
    p.add_argument("--years", type=int, default=10)
    p.add_argument("--reference", default=str(root / "speedy-world-2018.zarr"))
    p.add_argument("--out", type=Path, default=Path("out/decade"))
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    import torch
    import xarray as xr

    torch.set_num_threads(args.threads)
    from atmos.io import open_dataset
    from atmos.metrics.stability import climate_diagnostics
    from atmos.rollout import rollout

    args.out.mkdir(parents=True, exist_ok=True)
    store = args.out / "rollout.zarr"
    days = int(round(365.25 * args.years))
    t0 = time.perf_counter()
    rollout(args.model, args.data, args.init, days, step="1D", out=store, overwrite=True, progress=False)
    wall = time.perf_counter() - t0
    fc = xr.open_zarr(store)
    ref = open_dataset(args.reference)
    ref = ref.sel(time=ref.time.dt.hour == 0)  # the forecast's daily 00 UTC sampling
    vt = fc["time"].values[0] + fc["prediction_timedelta"].values
    years = sorted(set(vt.astype("datetime64[Y]").astype(int) + 1970))
    rows = []
    for y in years:
        sel = (vt >= np.datetime64(f"{y}-01-01")) & (vt < np.datetime64(f"{y + 1}-01-01"))
        if sel.sum() < 28:
            continue
        part = fc.isel(prediction_timedelta=np.flatnonzero(sel)).load()
        d = climate_diagnostics(part, ref)
        rows.append({
            "year": int(y),
            "days": int(sel.sum()),
            "finite": bool(all(bool(d[f"{s}_finite"].all()) for s in ("z500", "t850", "t2m"))),
            "t2m_worst_abs_month_error_K": float(abs(d["t2m_mean_error"]).max()),
            "months_t2m_within_1K": int((abs(d["t2m_mean_error"]) < 1).sum()),
            "z500_std_ratio_range": [float(d["z500_std_ratio"].min()), float(d["z500_std_ratio"].max())],
            "months_z500_std_within_10pct": int((abs(d["z500_std_ratio"] - 1) < 0.1).sum()),
            "z500_variability_ratio_range": [float(d["z500_variability_ratio"].min()),
                                             float(d["z500_variability_ratio"].max())],
            "t2m_variability_ratio_range": [float(d["t2m_variability_ratio"].min()),
                                            float(d["t2m_variability_ratio"].max())],
            "t2m_drift_per_year_K": float(d.attrs["t2m_drift_per_year"]),
            "months": int(d.sizes["month"]),
        })
        print(json.dumps(rows[-1]), flush=True)
    result = {"model": args.model or "embedded sample", "init": args.init, "years": args.years,
              "rollout_wall_s": round(wall, 1), "per_year": rows,
              "note": "SPEEDY-world: simulated weather, not observations; reference climate = the 2018 cube"}
    (args.out / "decade.json").write_text(json.dumps(result, indent=1))
    lines = ["| year | finite | worst monthly t2m error K | months t2m < 1 K | z500 std ratio | months z500 std ±10 % "
             "| z500 variability ratio | t2m variability ratio |", "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(
            f"| {r['year']} | {r['finite']} | {r['t2m_worst_abs_month_error_K']:.2f} | {r['months_t2m_within_1K']}/"
            f"{r['months']} | {r['z500_std_ratio_range'][0]:.3f}–{r['z500_std_ratio_range'][1]:.3f} | "
            f"{r['months_z500_std_within_10pct']}/{r['months']} | {r['z500_variability_ratio_range'][0]:.2f}–"
            f"{r['z500_variability_ratio_range'][1]:.2f} | {r['t2m_variability_ratio_range'][0]:.2f}–"
            f"{r['t2m_variability_ratio_range'][1]:.2f} |")
    (args.out / "decade.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    print(f"rollout of {days} days: {wall:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
