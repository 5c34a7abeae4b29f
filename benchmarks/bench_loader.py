"""Training-window loader against the raw zarr read+decode limit (issue 13).

For each grid size (64x32, 121x240, 721x1440) a synthetic cube in the WeatherBench2
layout (``atmos.testing.mock_era5``: dims ``(time, level, longitude, latitude)``,
1-step time chunks, zstd) is written to a temporary directory. The samples are those
of training: 5 level variables x 3 levels + 4 surface variables as inputs/targets,
forcings ``toa_incident_solar_radiation`` + 4 derived time encodings, 2 statics,
history 2, lead_steps 2, normalized with statistics. The windows read do not
overlap in time (no block is reused, so the loader cannot beat the limit by caching)
and come in a shuffled order.

Measured, in interleaved rounds (medians reported, load averages printed):

* ``limit``: zarr read+decode of exactly the chunks each sample needs (every variable,
  its 4 time steps), the fastest of (a) one ``zarr.Array`` slice per variable, (b) all
  variables of the sample gathered at once with zarr's async API and (c) all variables
  of a whole batch gathered at once; no normalization, no assembly; measured before and
  after the loaders of a round, the faster counts;
* ``atmos``: ``WindowDataset`` through a ``torch.utils.data.DataLoader`` with 0 and 2
  workers (throughput after the first batch, i.e. worker start-up excluded);
* ``before`` (with ``--before DIR``): the same loader from another checkout (e.g. a
  git worktree of older code), run in a subprocess with ``PYTHONPATH=DIR``.

Usage::

    python benchmarks/bench_loader.py [--sizes 64x32,121x240,721x1440] [--rounds 3] [--before /tmp/before]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

LEVEL_VARS = ["geopotential", "temperature", "u_component_of_wind", "v_component_of_wind", "specific_humidity"]
SURFACE_VARS = ["2m_temperature", "10m_u_component_of_wind", "10m_v_component_of_wind", "mean_sea_level_pressure"]
FORCINGS = ["toa_incident_solar_radiation", "cos_time_of_day", "sin_time_of_day", "cos_day_of_year", "sin_day_of_year"]
STATICS = ["land_sea_mask", "geopotential_at_surface"]
LEVELS = (250, 500, 850)
HISTORY, LEAD = 2, 2
SPAN = HISTORY + LEAD
# grid -> (samples, batch size)
PLAN = {"64x32": (96, 8), "121x240": (48, 4), "721x1440": (8, 2)}


def write_cube(size: str, n_samples: int, root: str) -> str:
    import xarray as xr  # noqa: F401

    from atmos.testing._mock import mock_era5

    nlon, nlat = (int(v) for v in size.split("x"))
    ds = mock_era5(
        "2020-01-01",
        periods=n_samples * SPAN + 1,
        levels=LEVELS,
        nlat=nlat,
        nlon=nlon,
        time_chunk=1,
        poles=nlat % 2 == 1,
        variables=LEVEL_VARS + SURFACE_VARS + ["toa_incident_solar_radiation"],
    )
    ds = ds.chunk({"time": 1, "level": -1, "latitude": -1, "longitude": -1})
    path = os.path.join(root, f"cube_{size}.zarr")
    ds.to_zarr(path, mode="w")
    return path


def stats_path(cube: str) -> str:
    """Normalization statistics of the first steps (cheap; only their use is measured)."""
    import xarray as xr

    from atmos.io.stats import compute_stats

    out = cube.replace(".zarr", "_stats.nc")
    if not os.path.exists(out):
        ds = xr.open_zarr(cube).transpose("time", ..., "latitude", "longitude")
        compute_stats(ds.isel(time=slice(0, 4))).compute().to_netcdf(out)
    return out


def sample_order(n_samples: int, seed: int) -> list[int]:
    """Window indices with disjoint time steps, shuffled."""
    return (np.random.default_rng(seed).permutation(n_samples) * SPAN).tolist()  # window i: rows i .. i+3


def _window_dataset(cube: str, stats: str):
    import xarray as xr

    from atmos.io.windows import WindowDataset

    ds = xr.open_zarr(cube).transpose("time", ..., "latitude", "longitude")
    return WindowDataset(
        ds,
        LEVEL_VARS + SURFACE_VARS,
        forcings=FORCINGS,
        statics=STATICS,
        history=HISTORY,
        lead_steps=LEAD,
        stats=xr.load_dataset(stats),
    )


def measure_loader(cube: str, stats: str, order: list[int], workers: int, batch: int) -> dict:
    """Samples/s of a fresh WindowDataset through a DataLoader (after the first batch)."""
    import torch

    wd = _window_dataset(cube, stats)
    loader = torch.utils.data.DataLoader(wd, batch_size=batch, sampler=order, num_workers=workers)
    it = iter(loader)
    next(it)
    t0 = time.perf_counter()
    n = 0
    for b in it:
        n += b["inputs"].shape[0]
    dt = time.perf_counter() - t0
    return {"samples_per_s": n / dt, "reader": getattr(wd, "reader", "dask")}


def measure_limit(cube: str, order: list[int], batch: int = 1) -> dict:
    """Raw zarr read+decode of the chunks of every sample (best of three ways).

    (a) one ``zarr.Array`` slice per variable and sample; (b) all variables of a sample at
    once on zarr's async loop; (c) all variables of ``batch`` samples at once (the
    concurrency the loader's in-batch prefetch may use). Same arrays, same chunks, same
    codec, same bytes as the loader reads; nothing is normalized or assembled."""
    import zarr
    from zarr.core.sync import sync
    import asyncio

    group = zarr.open_group(cube, mode="r")
    arrays = [group[v] for v in LEVEL_VARS + SURFACE_VARS + ["toa_incident_solar_radiation"]]
    rows = [(i, i + SPAN) for i in order]
    for a, b in rows[:1]:  # warm metadata
        [arr[a:b] for arr in arrays]
    t0 = time.perf_counter()
    for a, b in rows[1:]:
        for arr in arrays:
            np.asarray(arr[a:b])
    seq = (len(rows) - 1) / (time.perf_counter() - t0)

    async def sample(a: int, b: int) -> None:
        await asyncio.gather(*(arr.async_array.getitem(slice(a, b)) for arr in arrays))

    t0 = time.perf_counter()
    for a, b in rows[1:]:
        sync(sample(a, b))
    gathered = (len(rows) - 1) / (time.perf_counter() - t0)

    async def several(part: list[tuple[int, int]]) -> None:
        await asyncio.gather(*(arr.async_array.getitem(slice(a, b)) for a, b in part for arr in arrays))

    t0 = time.perf_counter()
    for k in range(1, len(rows), max(1, batch)):
        sync(several(rows[k : k + max(1, batch)]))
    batched = (len(rows) - 1) / (time.perf_counter() - t0)
    return {"samples_per_s": max(seq, gathered, batched), "sequential": seq, "gathered": gathered, "batched": batched}


def child(argv: list[str]) -> None:
    cfg = json.loads(argv[0])
    res = measure_loader(cfg["cube"], cfg["stats"], cfg["order"], cfg["workers"], cfg["batch"])
    print("RESULT " + json.dumps(res))


def run_before(before: str, cube: str, stats: str, order: list[int], workers: int, batch: int) -> dict:
    cfg = json.dumps({"cube": cube, "stats": stats, "order": order, "workers": workers, "batch": batch})
    env = dict(os.environ, PYTHONPATH=before)
    out = subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), "--child", cfg],
        cwd=before, env=env, capture_output=True, text=True, check=False,
    )
    for line in out.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[7:])
    raise RuntimeError(f"the 'before' loader failed:\n{out.stderr[-3000:]}")


def main() -> None:
    if len(sys.argv) > 2 and sys.argv[1] == "--child":
        child(sys.argv[2:])
        return
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", default="64x32,121x240,721x1440")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--workers", default="0,2")
    p.add_argument("--before", default=None, help="checkout of the old code, measured in a subprocess")
    p.add_argument("--tmp", default=None, help="directory for the synthetic cubes (default: a new temp dir)")
    args = p.parse_args()
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    root = args.tmp or tempfile.mkdtemp(prefix="atmos-bench-loader-")
    workers = [int(w) for w in args.workers.split(",")]
    table = []
    for size in args.sizes.split(","):
        n, batch = PLAN[size]
        t0 = time.perf_counter()
        cube = write_cube(size, n, root) if not os.path.exists(os.path.join(root, f"cube_{size}.zarr")) else os.path.join(root, f"cube_{size}.zarr")
        stats = stats_path(cube)
        print(f"[{size}] cube {cube} ready in {time.perf_counter() - t0:.1f} s; {n} samples, batch {batch}", flush=True)
        res: dict[str, list[float]] = {}
        for r in range(args.rounds):
            order = sample_order(n, seed=r)
            load = os.getloadavg()
            got = {"limit": measure_limit(cube, order, batch)["samples_per_s"]}
            for w in workers:
                got[f"atmos {w}w"] = measure_loader(cube, stats, order, w, batch)["samples_per_s"]
                if args.before:
                    got[f"before {w}w"] = run_before(args.before, cube, stats, order, w, batch)["samples_per_s"]
            got["limit2"] = measure_limit(cube, order, batch)["samples_per_s"]
            lim = max(got.pop("limit"), got.pop("limit2"))  # the limit, measured before and after the loaders
            got["limit"] = lim
            for k, v in got.items():
                res.setdefault(k, []).append(v)
            print(
                f"[{size}] round {r}: load {tuple(round(x, 2) for x in load)} -> {tuple(round(x, 2) for x in os.getloadavg())}; "
                + ", ".join(f"{k} {v:.2f}/s ({v / lim:.0%})" for k, v in got.items()),
                flush=True,
            )
        med = {k: float(np.median(v)) for k, v in res.items()}
        ratios = {k: float(np.median(np.asarray(v) / np.asarray(res["limit"]))) for k, v in res.items()}
        table.append((size, med, ratios, os.getloadavg()))
    print("\n| grid | loader | samples/s (median) | ratio to the limit (median of rounds) | load (1, 5, 15 min) |")
    print("|---|---|---|---|---|")
    for size, med, ratios, load in table:
        for k in med:
            print(f"| {size} | {k} | {med[k]:.2f} | {ratios[k]:.0%} | {load[0]:.2f}, {load[1]:.2f}, {load[2]:.2f} |")


if __name__ == "__main__":
    main()
