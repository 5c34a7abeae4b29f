"""The compression table of issue 16: sizes and errors of atmos's compression settings on the SPEEDY cube
and on a forecast, and the change in 5-day RMSE when the emulator starts from compressed initial conditions.

Settings: lossless (Blosc/Zstandard, atmos's default), pcodec (lossless), bit rounding at 99 % and 99.9 %
of the real information (:mod:`atmos.io.compression`), and zfp at a fixed accuracy of 1 % and 10 % of each
variable's standard deviation. Columns: bytes per value (float32 = 4), ratio against raw float32, the
worst PSNR over the variables, the max abs error of z500/t850/t2m, and (initial conditions) the change in
the area-weighted 5-day RMSE of z500, t850 and t2m of the embedded default model (``atmos rollout`` without
``--model``) over inits of the validation period, against the same forecasts from the original data.

Printed beside xarrayvideo's published point (Cortés et al. 2024, "Video Compression for Spatiotemporal
Earth System Data": about 250x at PSNR 46.6 dB on ERA5 at 0.1 bits per pixel per band, i.e. 0.0125 bytes per
value); the numbers are not comparable one to one (ERA5 at 0.25 deg against SPEEDY at 5.6 deg, video codecs
on 8-bit quantized frames against per-value bounds on float32).

SPEEDY-world is a simulated atmosphere, not observations. One thread::

    OMP_NUM_THREADS=1 ATMOS_DATA=../shared/data python scripts/compression_table.py [--period 2018-01-01 2018-01-31]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import xarray as xr

from atmos.io.compression import write_compressed

XARRAYVIDEO = "xarrayvideo (ERA5 0.25 deg, published): ~250x, 0.0125 B/value (0.1 bpppb), PSNR 46.6 dB"
KEYS = {"z500": ("geopotential", 500), "t850": ("temperature", 850), "t2m": ("2m_temperature", None)}


def settings(ds: xr.Dataset) -> list[tuple[str, dict]]:
    """(label, write_compressed keywords) of each setting of the table."""
    # zfp on the time-varying fields only: static masks and orography stay lossless (zfp's error would push
    # a land-sea mask outside 0..1, which the rollout's plausibility checks refuse)
    std = {n: float(ds[n].std()) for n in ds.data_vars
           if np.issubdtype(ds[n].dtype, np.floating) and "time" in ds[n].dims}
    out = [("lossless (blosc zstd)", {}), ("lossless (pcodec)", {"codec": "pcodec"}),
           ("99 % information", {"information": 0.99}), ("99.9 % information", {"information": 0.999})]
    for rel in (0.01, 0.1):
        tol = {n: max(rel * s, 1e-12) for n, s in std.items()}
        out.append((f"zfp tol {rel:g} std", {"codec": "zfp", "tolerance": tol}))
    return out


def _field(ds: xr.Dataset, key: str) -> xr.DataArray:
    name, level = KEYS[key]
    da = ds[name]
    return da.sel(level=level) if level is not None else da


def row(label: str, rec: dict, ref: xr.Dataset | None = None, dec: xr.Dataset | None = None) -> dict:
    v = rec["variables"]
    psnr = [float(x["psnr_db"]) for x in v.values() if x["psnr_db"] not in ("inf", None)]
    out = {"setting": label, "bytes_per_value": rec["bytes_per_value"], "ratio": rec["ratio"],
           "min_psnr_db": min(psnr) if psnr else float("inf")}
    for key in KEYS:
        if ref is not None and dec is not None and KEYS[key][0] in ref:
            out[f"maxerr_{key}"] = float(np.abs(_field(dec, key).values.astype(np.float64)
                                                - _field(ref, key).values).max())
    return out


def rmse_5day(fc: xr.Dataset, truth: xr.Dataset) -> dict[str, float]:
    """Area-weighted RMSE at 5 days of z500, t850, t2m, over the inits of ``fc``."""
    lead = np.timedelta64(5, "D")
    f = fc.sel(prediction_timedelta=lead)
    valid = f["time"].values + lead
    w = np.cos(np.deg2rad(truth["latitude"]))
    out = {}
    for key in KEYS:
        a = _field(f, key)
        b = _field(truth, key).sel(time=valid).rename(time="t").assign_coords(t=f["time"].values).rename(t="time")
        err2 = ((a - b) ** 2).weighted(w).mean(("latitude", "longitude"))
        out[key] = float(np.sqrt(err2.mean("time")))
    return out


def forecast(data: Path, inits: list, out: Path) -> xr.Dataset:
    from atmos.rollout import rollout

    shutil.rmtree(out, ignore_errors=True)
    return rollout(init=inits, days=5, data=str(data), out=out).load()


def fmt(rows: list[dict], extra: list[str]) -> str:
    head = f"{'setting':24s} {'B/value':>8s} {'ratio':>7s} {'minPSNR':>8s} " + " ".join(f"{k:>11s}" for k in extra)
    lines = [head]
    for r in rows:
        cells = []
        for k in extra:
            x = r.get(k)
            cells.append(f"{'' if x is None else format(x, '+.3g' if k.startswith('dRMSE') else '.3g'):>11s}")
        lines.append(f"{r['setting']:24s} {r['bytes_per_value']:8.3f} {r['ratio']:7.2f} {r['min_psnr_db']:8.1f} "
                     + " ".join(cells))
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    root = Path(os.environ.get("ATMOS_DATA", "../shared/data"))
    p.add_argument("--cube", default=str(root / "speedy-world-2018.zarr"))
    p.add_argument("--val", default=str(root / "speedy-world-2019-12.zarr"))
    p.add_argument("--period", nargs=2, metavar=("START", "END"), help="a part of the cube (default all of it)")
    p.add_argument("--inits", default="2019-12-20/2020-01-10/48h", help="inits of the RMSE test")
    p.add_argument("--json", help="also write the rows as JSON here")
    args = p.parse_args()
    warnings.filterwarnings("ignore", category=UserWarning)
    tmp = Path(tempfile.mkdtemp(prefix="atmos-compress-"))
    result: dict[str, list[dict]] = {}
    try:
        cube = xr.open_zarr(args.cube)
        if args.period:
            cube = cube.sel(time=slice(*args.period))
        cube = cube.load()
        rows = []
        for label, kw in settings(cube):
            t = time.time()
            rec = write_compressed(cube, tmp / "cube.zarr", **kw)
            dec = xr.open_zarr(tmp / "cube.zarr").load()
            rows.append({**row(label, rec, cube, dec), "seconds": time.time() - t})
        result["cube"] = rows

        # a forecast of the embedded default model from the original validation data (lossless store)
        from atmos.rollout.times import parse_init

        inits = list(parse_init(args.inits))
        val = xr.open_zarr(args.val).load()
        base = forecast(Path(args.val), inits, tmp / "fc_base.zarr")
        base_rmse = rmse_5day(base, val)
        frows = [row("rollout (lossless)", json.loads(base.attrs["atmos_compression"]))]
        flat = base.stack(sample=("time", "prediction_timedelta")).reset_index("sample", drop=True)
        flat = flat.drop_vars([c for c in flat.coords if "sample" in flat[c].dims])
        for label, kw in settings(base)[1:]:
            src = flat if kw.get("codec") == "zfp" else base  # zfp: at most 4 dims (init x lead stacked)
            rec = write_compressed(src, tmp / "fc.zarr", **kw)
            dec = xr.open_zarr(tmp / "fc.zarr").load()
            frows.append(row(label, rec, src, dec))
        for info in (0.99, 0.999):  # what `atmos rollout --information` writes itself (kept bits from lead 0)
            from atmos.rollout import rollout

            shutil.rmtree(tmp / "fc_info.zarr", ignore_errors=True)
            fi = rollout(init=inits, days=5, data=args.val, out=tmp / "fc_info.zarr", information=info).load()
            frows.append(row(f"rollout --information {info:g}", json.loads(fi.attrs["atmos_compression"]), base, fi))
        result["forecast"] = frows

        # 5-day RMSE from compressed initial conditions (the validation cube compressed, then rolled out)
        irows = []
        for label, kw in settings(val):
            rec = write_compressed(val, tmp / "ic.zarr", **kw)
            fc = forecast(tmp / "ic.zarr", inits, tmp / "fc_ic.zarr")
            r = rmse_5day(fc, val)
            irows.append({**row(label, rec, val, xr.open_zarr(tmp / "ic.zarr").load()),
                          **{f"dRMSE_{k}": r[k] - base_rmse[k] for k in KEYS}})
        result["initial_conditions"] = irows
        result["baseline_rmse_5day"] = [base_rmse]  # type: ignore[list-item]
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    per = f" {args.period[0]}..{args.period[1]}" if args.period else ""
    err = [f"maxerr_{k}" for k in KEYS]
    print(f"SPEEDY-world 2018 cube{per} ({Path(args.cube).name}; simulated):")
    print(fmt(result["cube"], err))
    print(f"\nforecast of the embedded default model, {len(inits)} inits {args.inits}, 5 days 6-hourly:")
    print(fmt(result["forecast"], err))
    b = result["baseline_rmse_5day"][0]
    print(f"\n5-day RMSE from compressed initial conditions ({Path(args.val).name} compressed; baseline RMSE "
          f"z500 {b['z500']:.1f} m2/s2, t850 {b['t850']:.3f} K, t2m {b['t2m']:.3f} K):")
    print(fmt(result["initial_conditions"], err + [f"dRMSE_{k}" for k in KEYS]))
    print(f"\nfor reference: {XARRAYVIDEO}")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
