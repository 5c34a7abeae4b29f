"""Training-window loader throughput: atmos WindowDataset vs plain xarray and xbatcher.

Reads the same shuffled samples (history=2, lead_steps=2; the 5 level variables x 5
levels + 4 surface variables; forcings toa_incident_solar_radiation + 4 derived time
encodings; statics land-sea mask + orography) from the SPEEDY-world 2018 cube
(a simulated atmosphere, not observations) with

* atmos ``WindowDataset`` (default ``cache="blocks"`` streaming; and ``cache="memory"``,
  reported separately, with its one-off load time),
* plain xarray: ``ds[var].isel(time=rows).values`` per variable per sample,
* xbatcher 0.4: ``BatchGenerator(ds, input_dims={time: 4, level, latitude, longitude},
  input_overlap={time: 3})`` indexed by window, then ``.values`` per variable.

The baselines build exactly the same arrays as atmos (checked on a few samples;
the derived forcings are computed with the same atmos function for every loader),
so the comparison is of the reading path. Each run starts cold (fresh objects,
nothing cached in the process; the OS file cache is warm for all after the first);
the best of ``--repeats`` interleaved runs is reported. Samples/s is single-process
(``num_workers=0``).

Usage::

    python benchmarks/bench_windows.py [--samples 200] [--data PATH.zarr]

If the SPEEDY-world cube is absent (env ATMOS_DATA or ../shared/data), a synthetic
year written to a temporary zarr with the same chunking (time chunks of 32) is used.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Self

import numpy as np
import xarray as xr

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from atmos.io.forcings import derived_forcing
from atmos.io.windows import WindowDataset

LEVEL_VARS = [
    "geopotential",
    "temperature",
    "u_component_of_wind",
    "v_component_of_wind",
    "specific_humidity",
]
SURFACE_VARS = [
    "2m_temperature",
    "10m_u_component_of_wind",
    "10m_v_component_of_wind",
    "mean_sea_level_pressure",
]
DERIVED = ["cos_time_of_day", "sin_time_of_day", "cos_day_of_year", "sin_day_of_year"]
FORCINGS = ["toa_incident_solar_radiation", *DERIVED]
STATICS = ["land_sea_mask", "geopotential_at_surface"]
HISTORY, LEAD = 2, 2


def find_data(arg: str | None) -> tuple[str, str | None]:
    if arg:
        return arg, None
    base = Path(os.environ.get("ATMOS_DATA", ROOT.parent / "shared" / "data"))
    path = base / "speedy-world-2018.zarr"
    if path.exists():
        return str(path), None
    print(f"[bench] {path} not found: using a synthetic year in a temporary zarr (time chunks of 32)")
    from atmos.testing._mock import mock_era5

    tmp = tempfile.mkdtemp(prefix="atmos-bench-")
    ds = mock_era5(
        "2018-01-01",
        periods=1460,
        levels=(250, 500, 700, 850, 1000),
        time_chunk=32,
        variables=LEVEL_VARS + SURFACE_VARS + ["toa_incident_solar_radiation"],
    )
    ds = ds.chunk({"time": 32, "level": -1, "latitude": -1, "longitude": -1})  # zarr chunks as SPEEDY-world
    out = os.path.join(tmp, "mock.zarr")
    ds.to_zarr(out, mode="w")
    return out, tmp


def open_cube(path: str) -> xr.Dataset:
    return xr.open_zarr(path).transpose("time", ..., "latitude", "longitude")


def lon_grid(ds: xr.Dataset) -> np.ndarray:
    return np.broadcast_to(ds["longitude"].values[None, :], (ds.sizes["latitude"], ds.sizes["longitude"]))


def assemble(get, rows: np.ndarray, times: np.ndarray, statics: np.ndarray, lon: np.ndarray) -> dict:
    """Build the sample from per-variable arrays ``get(var) -> [len(rows), (L,) lat, lon]``."""
    chans = []
    for v in LEVEL_VARS + SURFACE_VARS:
        a = get(v)
        chans.append(a if a.ndim == 4 else a[:, None])
    state = np.concatenate(chans, axis=1).astype(np.float32)
    toa = get("toa_incident_solar_radiation")[:, None].astype(np.float32)
    der = np.stack([derived_forcing(n, times, lon) for n in DERIVED], axis=1)
    return {
        "inputs": state[:HISTORY],
        "targets": state[HISTORY:],
        "forcings": np.concatenate([toa, der], axis=1),
        "statics": statics,
    }


def load_statics(ds: xr.Dataset) -> np.ndarray:
    return np.stack([ds[v].values.astype(np.float32) for v in STATICS])[None]


class Clock:
    """Wall-clock and process CPU time (all threads) of a block of code."""

    def __enter__(self) -> Self:
        self.w0, self.c0 = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc) -> None:
        self.wall, self.cpu = time.perf_counter() - self.w0, time.process_time() - self.c0


def bench_atmos(path: str, order: np.ndarray, cache: str, **kw) -> dict:
    with Clock() as setup:
        wd = WindowDataset(
            open_cube(path),
            LEVEL_VARS + SURFACE_VARS,
            forcings=FORCINGS,
            statics=STATICS,
            history=HISTORY,
            lead_steps=LEAD,
            cache=cache,
            **kw,
        )
    with Clock() as read:
        out = [wd[int(i)] for i in order]
    out = [{k: v.numpy() for k, v in item.items() if k != "time"} for item in out]
    return {"setup": setup, "read": read, "out": out}


def bench_plain(path: str, order: np.ndarray, pos: np.ndarray) -> dict:
    ds = open_cube(path)
    lon = lon_grid(ds)
    with Clock() as setup:
        statics = load_statics(ds)
    tvals = ds["time"].values
    out = []
    with Clock() as read:
        for i in order:
            rows = pos[i]
            out.append(
                assemble(lambda v, rows=rows: ds[v].isel(time=rows).values, rows, tvals[rows], statics, lon)
            )
    return {"setup": setup, "read": read, "out": out}


def bench_xbatcher(path: str, order: np.ndarray, pos: np.ndarray) -> dict:
    import xbatcher

    ds = open_cube(path)
    lon = lon_grid(ds)
    n = HISTORY + LEAD
    with Clock() as setup:
        gen = xbatcher.BatchGenerator(
            ds[LEVEL_VARS + SURFACE_VARS + ["toa_incident_solar_radiation"]],
            input_dims={
                "time": n,
                "level": ds.sizes["level"],
                "latitude": ds.sizes["latitude"],
                "longitude": ds.sizes["longitude"],
            },
            input_overlap={"time": n - 1},
        )
        statics = load_statics(ds)
    tvals = ds["time"].values
    out = []
    with Clock() as read:
        for i in order:
            rows = pos[i]
            batch = gen[int(rows[0])]  # the window starting at rows[0] (contiguous time axis)
            out.append(assemble(lambda v, batch=batch: batch[v].values, rows, tvals[rows], statics, lon))
    return {"setup": setup, "read": read, "out": out}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--samples", type=int, default=200)
    ap.add_argument("--data", default=None)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--repeats", type=int, default=3, help="best of N cold runs per loader")
    args = ap.parse_args()

    path, tmp = find_data(args.data)
    probe = WindowDataset(open_cube(path), LEVEL_VARS[:1], history=HISTORY, lead_steps=LEAD)
    pos = probe._pos
    rng = np.random.default_rng(args.seed)
    order = rng.permutation(len(probe))[: args.samples]
    print(f"[bench] data: {path}")
    print(f"[bench] {os.cpu_count()} CPUs; best of {args.repeats} cold runs per loader")
    print(
        f"[bench] {len(probe)} windows; {len(order)} shuffled samples; "
        f"29 state channels, 5 forcings, 2 statics on 32x64; history={HISTORY} lead_steps={LEAD}"
    )

    # best of --repeats, loaders interleaved (fair on a busy machine); every run starts cold
    loaders = {
        "atmos blocks (default)": lambda: bench_atmos(path, order, "blocks"),
        "atmos blocks (cache_bytes=512MiB)": lambda: bench_atmos(
            path, order, "blocks", cache_bytes=512 * 2**20
        ),
        "atmos memory (reads only)": lambda: bench_atmos(path, order, "memory"),
        "xarray isel per sample": lambda: bench_plain(path, order, pos),
        "xbatcher BatchGenerator": lambda: bench_xbatcher(path, order, pos),
    }
    best: dict[str, dict] = {}
    for _ in range(args.repeats):
        for name, run in loaders.items():
            r = run()
            if (
                name not in best
                or r["read"].wall + r["setup"].wall < best[name]["read"].wall + best[name]["setup"].wall
            ):
                best[name] = r
    ref = best["atmos blocks (default)"]["out"]
    for name, r in best.items():  # the same samples from every loader
        for k in range(min(5, len(order))):
            for key in ("inputs", "targets", "forcings", "statics"):
                if not np.array_equal(ref[k][key], r["out"][k][key], equal_nan=True):
                    raise SystemExit(f"[bench] MISMATCH between atmos and {name} in {key} of sample {k}")
    print("[bench] samples identical across loaders (checked 5)")

    n = len(order)
    mem = best["atmos memory (reads only)"]
    rows = {name: (n / r["read"].wall, n / r["read"].cpu) for name, r in best.items()}
    rows["atmos memory (incl. load)"] = (
        n / (mem["read"].wall + mem["setup"].wall),
        n / (mem["read"].cpu + mem["setup"].cpu),
    )
    for name, r in best.items():
        print(
            f"[bench] {name}: setup {r['setup'].wall:.2f} s, {n} samples in {r['read'].wall:.2f} s "
            f"wall / {r['read'].cpu:.2f} s CPU"
        )
    xb, xa = rows["xbatcher BatchGenerator"], rows["xarray isel per sample"]
    print()
    print(
        f"{'loader':34s} {'samples/s':>10s} {'vs xbatcher':>12s} {'vs xarray':>10s} {'per CPU-s':>10s} {'vs xb':>6s}"
    )
    for name, (w, c) in rows.items():
        print(f"{name:34s} {w:10.1f} {w / xb[0]:11.1f}x {w / xa[0]:9.1f}x {c:10.1f} {c / xb[1]:5.1f}x")
    for label, key in (
        ("default streaming", "atmos blocks (default)"),
        ("memory incl. load", "atmos memory (incl. load)"),
    ):
        g = rows[key][0] / xb[0]
        print(f"[bench] goal >= 3x xbatcher (wall): {label} {'MET' if g >= 3 else 'NOT met'} ({g:.1f}x)")
    if tmp:
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
