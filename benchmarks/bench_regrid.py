"""Benchmark: atmos ``Regridder`` (bilinear lat-lon -> HEALPix) vs ``xarray.Dataset.interp``.

Standalone script (not a test). Default case: the ERA5 / WeatherBench2 0.25 degree
grid with poles (721 x 1440) -> HEALPix nside 64, 7 channels of random smooth
fields (random combinations of spherical harmonics up to degree 6), float32, CPU.

Both sides do the same bilinear job: linear in latitude and periodic-linear in
longitude at the HEALPix cell centres. The xarray peer is
``Dataset.interp(latitude=lat_pts, longitude=lon_pts, method="linear")`` with 1-D
pointwise ``DataArray`` indexers (dim ``cell``) on a dataset whose longitude is
padded periodically with one column at 360 degrees (the padding is done once,
outside the timed region, which favours xarray). The script prints the one-off
weight-build time, the forward time of the regridder (median and minimum over
rounds, interleaved with the xarray calls), the xarray time, their ratio (goal:
atmos >= 10x faster) and the maximum absolute difference between the two results.

``--threads`` sets ``torch.set_num_threads`` (default 1: xarray/scipy interpolation
is single-threaded, and on a shared machine one thread gives stable timings).

Usage::

    PYTHONPATH=. python benchmarks/bench_regrid.py [--nlat 721] [--nside 64]
        [--channels 7] [--threads 1] [--rounds 15] [--others]
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch
import xarray as xr

from atmos.grids.healpix import HealpixGrid
from atmos.grids.latlon import LatLonGrid
from atmos.grids.regrid import Regridder


def smooth_fields(grid: LatLonGrid, channels: int, seed: int = 0, lmax: int = 6) -> np.ndarray:
    """Random smooth fields ``[channels, nlat, nlon]``: sums of cos^m(lat) sin^k(lat) e^{i m lon} terms."""
    rng = np.random.default_rng(seed)
    lat, lon = (np.radians(a) for a in grid.centers())
    out = np.zeros((channels, *grid.shape))
    for c in range(channels):
        for m in range(lmax + 1):
            for k in range(lmax + 1 - m):
                a, b = rng.standard_normal(2) / (1 + m + k)
                out[c] += np.cos(lat) ** m * np.sin(lat) ** k * (a * np.cos(m * lon) + b * np.sin(m * lon))
    return out.astype(np.float32)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--nlat", type=int, default=721, help="latitudes of the equiangular grid with poles")
    p.add_argument("--nside", type=int, default=64)
    p.add_argument("--channels", type=int, default=7)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--rounds", type=int, default=15)
    p.add_argument("--others", action="store_true", help="also time the other methods/directions (no peer)")
    args = p.parse_args()
    torch.set_num_threads(args.threads)

    ll = LatLonGrid.equiangular(args.nlat, poles=True)
    grid = HealpixGrid(args.nside)
    print(
        f"lat-lon {ll.nlat}x{ll.nlon} (with poles) -> HEALPix nside {args.nside} ({grid.npix} cells), "
        f"{args.channels} channels, float32, CPU, torch threads={torch.get_num_threads()}"
    )

    t0 = time.perf_counter()
    regrid = Regridder(ll, grid, "bilinear")  # faces layout [..., 12, nside, nside]
    t_build = time.perf_counter() - t0

    data = smooth_fields(ll, args.channels)
    x = torch.from_numpy(data)

    # xarray peer: pointwise linear interpolation, longitude padded periodically
    ds = xr.Dataset(
        {f"var{c}": (("latitude", "longitude"), data[c]) for c in range(args.channels)},
        coords={"latitude": ll.lat, "longitude": ll.lon},
    )
    pad = ds.isel(longitude=[0]).assign_coords(longitude=[ll.lon[0] + 360.0])
    ds_pad = xr.concat([ds, pad], dim="longitude")
    lat_pts = xr.DataArray(grid.lat, dims="cell")
    lon_pts = xr.DataArray(np.where(grid.lon < ll.lon[0], grid.lon + 360.0, grid.lon), dims="cell")

    def run_atmos() -> torch.Tensor:
        with torch.no_grad():
            return regrid(x)

    def run_xarray() -> xr.Dataset:
        return ds_pad.interp(latitude=lat_pts, longitude=lon_pts, method="linear")

    y_atmos = grid.faces_to_cells(run_atmos()).numpy()  # warm-up, and for the comparison
    y_xr = run_xarray()
    y_xr = np.stack([y_xr[f"var{c}"].values for c in range(args.channels)])
    t_atmos, t_xr = [], []
    for _ in range(args.rounds):  # interleaved rounds: robust to a shared, drifting machine
        t0 = time.perf_counter()
        run_atmos()
        t_atmos.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        run_xarray()
        t_xr.append(time.perf_counter() - t0)

    med_a, med_x = statistics.median(t_atmos), statistics.median(t_xr)
    print(f"atmos weight build (once):   {t_build * 1e3:9.1f} ms")
    print(f"atmos forward:               {med_a * 1e3:9.2f} ms (median; min {min(t_atmos) * 1e3:.2f})")
    print(f"xarray Dataset.interp:       {med_x * 1e3:9.2f} ms (median; min {min(t_xr) * 1e3:.2f})")
    print(f"speed-up (xarray / atmos):   {med_x / med_a:9.1f} x   (goal >= 10x)")
    print(f"build + 1 forward vs xarray: {med_x / (t_build + med_a):9.1f} x")
    print(
        f"max |atmos - xarray|:        {np.abs(y_atmos - y_xr).max():9.2e}  (max |field| {np.abs(y_xr).max():.2f})"
    )

    if args.others:
        print("\nother methods / directions (no peer; median of rounds):")
        hpx = torch.from_numpy(grid.cells_to_faces(y_atmos.astype(np.float32)))
        for method in ("bilinear", "conservative", "nearest"):
            for src, dst, inp in ((ll, grid, x), (grid, ll, hpx)):
                if method == "bilinear" and src is ll:
                    continue
                t0 = time.perf_counter()
                r = Regridder(src, dst, method)
                tb = time.perf_counter() - t0
                with torch.no_grad():
                    r(inp)
                    ts = []
                    for _ in range(max(3, args.rounds // 3)):
                        t0 = time.perf_counter()
                        r(inp)
                        ts.append(time.perf_counter() - t0)
                name = f"{method} {type(src).__name__} -> {type(dst).__name__}"
                print(
                    f"  {name:<40} build {tb * 1e3:8.1f} ms   forward {statistics.median(ts) * 1e3:8.2f} ms"
                    f"   [{r._mode}]"
                )


if __name__ == "__main__":
    main()
