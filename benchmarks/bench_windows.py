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
so the comparison is of the reading path. Each loader starts cold (fresh objects,
nothing cached). Samples/s is single-process (``num_workers=0``).

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

import numpy as np
import xarray as xr

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from atmos.io.forcings import derived_forcing  # noqa: E402
from atmos.io.windows import WindowDataset  # noqa: E402

LEVEL_VARS = ["geopotential", "temperature", "u_component_of_wind", "v_component_of_wind", "specific_humidity"]
SURFACE_VARS = ["2m_temperature", "10m_u_component_of_wind", "10m_v_component_of_wind", "mean_sea_level_pressure"]
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
        "2018-01-01", periods=1460, levels=(250, 500, 700, 850, 1000), time_chunk=32,
        variables=LEVEL_VARS + SURFACE_VARS + ["toa_incident_solar_radiation"],
    )
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


def bench_atmos(path: str, order: np.ndarray, cache: str) -> tuple[float, float, list]:
    t0 = time.perf_counter()
    wd = WindowDataset(
        open_cube(path), LEVEL_VARS + SURFACE_VARS, forcings=FORCINGS, statics=STATICS,
        history=HISTORY, lead_steps=LEAD, cache=cache,
    )
    t1 = time.perf_counter()
    out = [wd[int(i)] for i in order]
    t2 = time.perf_counter()
    return t1 - t0, t2 - t1, out


def bench_plain(path: str, order: np.ndarray, pos: np.ndarray) -> tuple[float, list]:
    ds = open_cube(path)
    lon = lon_grid(ds)
    t1 = time.perf_counter()
    statics = load_statics(ds)
    tvals = ds["time"].values
    out = []
    for i in order:
        rows = pos[i]
        out.append(assemble(lambda v: ds[v].isel(time=rows).values, rows, tvals[rows], statics, lon))
    return time.perf_counter() - t1, out


def bench_xbatcher(path: str, order: np.ndarray, pos: np.ndarray) -> tuple[float, float, list]:
    import xbatcher

    ds = open_cube(path)
    lon = lon_grid(ds)
    n = HISTORY + LEAD
    t0 = time.perf_counter()
    gen = xbatcher.BatchGenerator(
        ds[LEVEL_VARS + SURFACE_VARS + ["toa_incident_solar_radiation"]],
        input_dims={"time": n, "level": ds.sizes["level"], "latitude": ds.sizes["latitude"],
                    "longitude": ds.sizes["longitude"]},
        input_overlap={"time": n - 1},
    )
    t1 = time.perf_counter()
    statics = load_statics(ds)
    tvals = ds["time"].values
    out = []
    for i in order:
        rows = pos[i]
        batch = gen[int(rows[0])]  # window starting at rows[0] (contiguous time axis)
        out.append(assemble(lambda v: batch[v].values, rows, tvals[rows], statics, lon))
    return t1 - t0, time.perf_counter() - t1, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--samples", type=int, default=200)
    ap.add_argument("--data", default=None)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    path, tmp = find_data(args.data)
    probe = WindowDataset(open_cube(path), LEVEL_VARS[:1], history=HISTORY, lead_steps=LEAD)
    pos = probe._pos
    rng = np.random.default_rng(args.seed)
    order = rng.permutation(len(probe))[: args.samples]
    print(f"[bench] data: {path}")
    print(f"[bench] {len(probe)} windows; {len(order)} shuffled samples; "
          f"29 state channels, 5 forcings, 2 statics on 32x64; history={HISTORY} lead_steps={LEAD}")

    build_s, read_s, ref = bench_atmos(path, order, "blocks")
    build_m, read_m, ref_m = bench_atmos(path, order, "memory")
    plain_s, plain = bench_plain(path, order, pos)
    xb_build, xb_s, xb = bench_xbatcher(path, order, pos)

    # same samples from every loader
    for k in range(min(5, len(order))):
        for key in ("inputs", "targets", "forcings", "statics"):
            a = ref[k][key].numpy()
            for other, name in ((ref_m[k][key].numpy(), "memory"), (plain[k][key], "xarray"), (xb[k][key], "xbatcher")):
                if not np.array_equal(a, other, equal_nan=True):
                    raise SystemExit(f"[bench] MISMATCH between atmos and {name} in {key} of sample {k}")
    print("[bench] samples identical across loaders (checked 5)")

    n = len(order)
    rate = {
        "atmos blocks (default)": n / read_s,
        "atmos memory (reads only)": n / read_m,
        "atmos memory (incl. load)": n / (read_m + build_m),
        "xarray isel per sample": n / plain_s,
        "xbatcher BatchGenerator": n / xb_s,
    }
    print(f"[bench] atmos blocks: construct {build_s:.2f} s, {n} samples in {read_s:.2f} s")
    print(f"[bench] atmos memory: construct+load {build_m:.2f} s, {n} samples in {read_m:.3f} s")
    print(f"[bench] xarray isel: {n} samples in {plain_s:.2f} s")
    print(f"[bench] xbatcher: generator {xb_build:.2f} s, {n} samples in {xb_s:.2f} s")
    print()
    print(f"{'loader':32s} {'samples/s':>10s} {'vs xbatcher':>12s} {'vs xarray':>10s}")
    for name, r in rate.items():
        print(f"{name:32s} {r:10.1f} {r / rate['xbatcher BatchGenerator']:11.1f}x "
              f"{r / rate['xarray isel per sample']:9.1f}x")
    goal = rate["atmos blocks (default)"] / rate["xbatcher BatchGenerator"]
    print(f"\n[bench] goal >= 3x xbatcher: default streaming mode {'MET' if goal >= 3 else 'NOT met'} ({goal:.1f}x); "
          f"memory mode {rate['atmos memory (incl. load)'] / rate['xbatcher BatchGenerator']:.1f}x incl. load")
    if tmp:
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
