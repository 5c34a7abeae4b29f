"""Benchmark: vectorized pattern-scaling fit vs a per-cell ``numpy.polyfit`` loop.

Synthetic ClimateBench-sized problem: 96 x 144 cells (NorESM2 grid) and 753 training
samples (historical, hist-GHG, hist-aer: 165 years each; ssp126, ssp370, ssp585: 86 each,
the ClimateBench training set), one variable, ensemble means. Both fit the same linear
pattern on the same regressor; the script checks they agree and prints times and the ratio.

Run: ``PYTHONPATH=. python benchmarks/bench_pattern_scaling.py``.
"""

from __future__ import annotations

import time

import numpy as np
import xarray as xr

from atmos.baselines import PatternScaling
from atmos.baselines.pattern_scaling import _lstsq_columns

SCENARIOS = {"historical": 165, "hist-GHG": 165, "hist-aer": 165, "ssp126": 86, "ssp370": 86, "ssp585": 86}


def make_data(nlat: int = 96, nlon: int = 144, seed: int = 0):
    rng = np.random.default_rng(seed)
    lat = np.linspace(-90 + 90 / nlat, 90 - 90 / nlat, nlat)
    lon = np.arange(nlon) * 360.0 / nlon
    a = rng.normal(0.0, 1.0, (nlat, nlon))
    b = rng.normal(1.0, 0.5, (nlat, nlon))
    fields, drivers = {}, {}
    for k, (scen, n) in enumerate(SCENARIOS.items()):
        years = np.arange(1850, 1850 + n) if n == 165 else np.arange(2015, 2015 + n)
        t = np.linspace(0.0, 1.0 + k * 0.8, n) + 0.1 * rng.normal(size=n)
        y = a + b * t[:, None, None] + 0.3 * rng.normal(size=(n, nlat, nlon))
        fields[scen] = xr.Dataset(
            {"tas": (("time", "latitude", "longitude"), y)},
            coords={"time": years, "latitude": lat, "longitude": lon},
        )
        drivers[scen] = xr.DataArray(t, dims=("time",), coords={"time": years}, name="gmst")
    return fields, drivers


def best_of(fn, repeat: int = 3) -> tuple[float, object]:
    best, out = np.inf, None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def main() -> None:
    fields, drivers = make_data()
    x = np.concatenate([d.values for d in drivers.values()])
    y = np.concatenate([f["tas"].values for f in fields.values()]).reshape(x.size, -1)
    ncell = y.shape[1]
    print(f"problem: {ncell} cells (96 x 144) x {x.size} samples, {len(SCENARIOS)} scenarios, linear pattern")

    t_atmos, ps = best_of(lambda: PatternScaling().fit(drivers, fields))
    t_core, core = best_of(lambda: _lstsq_columns(x, y, 1))

    def loop():
        coef = np.empty((2, ncell))
        for j in range(ncell):
            coef[::-1, j] = np.polyfit(x, y[:, j], 1)
        return coef

    t_loop, ref = best_of(loop, repeat=2)
    got = ps.coefficients["tas"].values.reshape(2, -1)
    err = max(np.abs(got - ref).max(), np.abs(core - ref).max())
    print(f"atmos PatternScaling.fit (xarray mapping of 6 scenarios in): {t_atmos * 1e3:8.1f} ms")
    print(f"atmos least-squares core (_lstsq_columns, numpy arrays):    {t_core * 1e3:8.1f} ms")
    print(f"per-cell numpy.polyfit loop:                                {t_loop * 1e3:8.1f} ms")
    print(f"ratio loop / atmos fit: {t_loop / t_atmos:6.1f}x   loop / core: {t_loop / t_core:6.1f}x")
    print(f"max |coefficient difference| vs the loop: {err:.2e}")
    if err > 1e-8:
        raise SystemExit("coefficients disagree with the per-cell reference")


if __name__ == "__main__":
    main()
