"""Forecast writer benchmark: cost of writing one lead, against the storage limit.

Writes leads of the embedded sample model's layout (6 variables, 64x32, 3 levels) with
:class:`atmos.rollout.writer.ForecastWriter` and compares, in the same run, with the peer
"raw": the same chunks encoded with the store's codec (numcodecs Zstd) and written as plain
files plus one atomic JSON progress file per lead -- the least any lead-by-lead store can do.
Rounds alternate between the two (medians over rounds), on one thread.

    python benchmarks/bench_writer.py              # ~30 s
    python benchmarks/bench_writer.py --leads 200 --rounds 5
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def _template(n_lead: int):
    import dask.array as da
    import xarray as xr

    lat, lon, lev = 32, 64, 3
    shapes = {"geopotential": (lev,), "temperature": (lev,), "u_component_of_wind": (lev,),
              "v_component_of_wind": (lev,), "2m_temperature": (), "mean_sea_level_pressure": ()}
    data = {}
    for name, extra in shapes.items():
        dims = ("time", "prediction_timedelta", *(("level",) if extra else ()), "latitude", "longitude")
        shape = (1, n_lead, *extra, lat, lon)
        data[name] = (dims, da.full(shape, np.nan, dtype=np.float32, chunks=shape))
    coords = {"time": np.array(["2020-01-01"], dtype="datetime64[ns]"),
              "prediction_timedelta": (np.arange(n_lead) * np.timedelta64(6, "h")).astype("timedelta64[ns]"),
              "level": [250, 500, 850], "latitude": np.linspace(-87, 87, lat), "longitude": np.arange(lon) * 5.625}
    return xr.Dataset(data, coords=coords)


def _values(tpl, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {n: (rng.standard_normal(v.shape[2:]) * 10 + 250).astype(np.float32) for n, v in tpl.data_vars.items()}


def atmos_writer(folder: Path, n_lead: int, vals) -> float:
    from atmos.rollout.writer import ForecastWriter

    w = ForecastWriter.create(folder / "f.zarr", _template(n_lead))
    t0 = time.perf_counter()
    for k in range(n_lead):
        w.write(0, k, vals)
    w.close()
    return (time.perf_counter() - t0) / n_lead


def raw(folder: Path, n_lead: int, vals) -> float:
    import numcodecs

    codec = numcodecs.Zstd(level=0)
    (folder / "raw").mkdir()
    t0 = time.perf_counter()
    for k in range(n_lead):
        for name, v in vals.items():
            with open(folder / "raw" / f"{name}.{k}", "wb") as f:
                f.write(codec.encode(v.tobytes()))
        tmp = folder / "raw" / "progress.tmp"
        tmp.write_text(json.dumps({"completed": k + 1}))
        os.replace(tmp, folder / "raw" / "progress.json")
    return (time.perf_counter() - t0) / n_lead


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--leads", type=int, default=120)
    p.add_argument("--rounds", type=int, default=3)
    args = p.parse_args(argv)
    import torch

    torch.set_num_threads(1)
    warnings.simplefilter("ignore")
    vals = _values(_template(1), 0)
    res: dict[str, list[float]] = {"atmos": [], "raw": []}
    for _ in range(args.rounds):
        for name, fn in (("atmos", atmos_writer), ("raw", raw)):
            with tempfile.TemporaryDirectory() as d:
                res[name].append(fn(Path(d), args.leads, vals))
    a, r = statistics.median(res["atmos"]), statistics.median(res["raw"])
    print(f"one lead (6 variables, 64x32x3, {args.leads} leads, {args.rounds} rounds, 1 thread; load "
          f"{os.getloadavg()[0]:.2f}):")
    print(f"  atmos ForecastWriter   {1e3 * a:7.2f} ms/lead")
    print(f"  raw zstd + files + JSON {1e3 * r:6.2f} ms/lead  (peer: the storage limit)")
    print(f"  ratio atmos / raw      {a / r:7.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
