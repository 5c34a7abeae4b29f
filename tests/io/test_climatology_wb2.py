"""The climatology equals WeatherBench2's ``compute_hourly_stat`` (triangular window, 366-day circle).

weatherbench2 is not installable here (not on the package index), so the reference is an
independent implementation of WB2's documented definition (``weatherbench2.utils``:
``create_window_weights`` and ``compute_rolling_stat`` as used by
``scripts/compute_climatology.py --method=explicit``): stack the calendar years on a
``dayofyear`` axis (NaN where a year has no sample), fill each year's gaps with its day
365, wrap the axis circularly, and take the NaN-skipping weighted mean over (window, year)
with weights ``1 - |k| / (window // 2)``. It is written as a circulant weight matrix, not
with the running sums of :func:`atmos.io.climatology.compute_climatology`.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from atmos.errors import ConfigError
from atmos.io.climatology import compute_climatology


def wb2_window_weights(window: int) -> np.ndarray:
    """WB2 ``create_window_weights``: linear from 0 at ``-h`` to 1 at 0 to 0 at ``+h``."""
    half = window // 2
    return 1.0 - np.abs(np.arange(-half, half + 1)) / half


def wb2_reference(ds: xr.Dataset, name: str, window: int = 61, hour_interval: int = 6,
                  weights: np.ndarray | None = None) -> np.ndarray:
    """WB2 hourly climatology of ``ds[name]``: array ``(hour, dayofyear, ...)`` (365 or 366 days)."""
    w = wb2_window_weights(window) if weights is None else weights
    half = len(w) // 2
    t = pd.DatetimeIndex(ds["time"].values)
    da = ds[name].transpose("time", ...)
    vals = np.asarray(da.values, dtype=np.float64)
    ndays = 366 if (t.day_of_year == 366).any() else 365
    years = np.unique(t.year)
    out = []
    for hour in range(0, 24, hour_interval):
        stacked = np.full((years.size, ndays, *vals.shape[1:]), np.nan)
        for iy, y in enumerate(years):
            m = (t.hour == hour) & (t.year == y)
            stacked[iy, t.day_of_year[m] - 1] = vals[m]
            gaps = np.isnan(stacked[iy])
            stacked[iy][gaps] = np.broadcast_to(stacked[iy, 364], stacked[iy].shape)[gaps]  # fillna(day 365)
        # circulant matrix: W[d, d'] = sum of the weights of the offsets k with (d + k) % n == d'
        mat = np.zeros((ndays, ndays))
        for k, wk in zip(range(-half, half + 1), w):
            mat[np.arange(ndays), (np.arange(ndays) + k) % ndays] += wk
        present = ~np.isnan(stacked)
        x = np.where(present, stacked, 0.0)
        num = np.einsum("de,ye...->d...", mat, x)
        den = np.einsum("de,ye...->d...", mat, present.astype(np.float64))
        out.append(num / den)
    return np.stack(out)


def _rel(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.max(np.abs(a - b) / np.maximum(np.abs(b), 1e-30)))


def _cube(start: str, end: str, seed: int = 0) -> xr.Dataset:
    t = pd.date_range(start, end, freq="6h")
    rng = np.random.default_rng(seed)
    season = 280 + 10 * np.cos(2 * np.pi * t.day_of_year.to_numpy() / 365.25) + 0.1 * t.hour.to_numpy()
    v = season[:, None, None] + rng.normal(size=(t.size, 3, 4))
    return xr.Dataset({"x": (("time", "latitude", "longitude"), v)},
                      coords={"time": t, "latitude": [-30.0, 0.0, 30.0], "longitude": [0.0, 90.0, 180.0, 270.0]})


@pytest.mark.parametrize("years", [("2019-01-01", "2020-12-31T18"), ("2018-01-01", "2018-12-31T18"),
                                   ("2016-01-01", "2019-12-31T18")])
def test_triangular_default_matches_wb2(years):
    ds = _cube(*years)
    ref = wb2_reference(ds, "x")
    clim = compute_climatology(ds)["x"].values
    assert clim.shape[:2] == (4, 366)
    n = ref.shape[1]
    assert _rel(clim[:, :n], ref) < 1e-12
    if n == 365:  # no leap year: 365-day circle, day 366 copies day 365
        np.testing.assert_array_equal(clim[:, 365], clim[:, 364])


def test_leap_circle_counts_day_365_again_in_common_years():
    ds = _cube("2019-01-01", "2020-12-31T18")
    ds["x"][:] = 0.0
    ds["x"].loc[{"time": "2019-12-31"}] = 10.0  # day 365 of a common year
    c = compute_climatology(ds, window=1)["x"].isel(hour=0, latitude=0, longitude=0)
    # day 366: 2020's 31 Dec (0) and 2019's day 365 again (10)
    assert float(c.sel(dayofyear=366)) == pytest.approx(5.0)
    assert float(c.sel(dayofyear=365)) == pytest.approx(5.0)  # 2019-12-31 and 2020-12-30


def test_flat_option_is_the_plain_moving_average():
    ds = _cube("2019-01-01", "2020-12-31T18")
    flat = compute_climatology(ds, window=11, window_weights="flat")
    ref = wb2_reference(ds, "x", window=11, weights=np.ones(11))
    assert flat.attrs["window_weights"] == "flat" and flat.attrs["dayofyear_circle"] == 366
    assert _rel(flat["x"].values, ref) < 1e-12
    with pytest.raises(ConfigError, match="triangular"):
        compute_climatology(ds, window_weights="boxcar")


_CUBE = Path(os.environ.get("ATMOS_DATA", "")) / "speedy-world-2018.zarr"


@pytest.mark.skipif(not os.environ.get("ATMOS_DATA") or not _CUBE.exists(), reason="needs ATMOS_DATA (SPEEDY-world)")
def test_speedy_world_2018_matches_wb2():
    import atmos

    ds = atmos.open_dataset(str(_CUBE))
    ds = xr.Dataset({"2m_temperature": ds["2m_temperature"],
                     "geopotential_500": ds["geopotential"].sel(level=500, drop=True),
                     "u_component_of_wind_850": ds["u_component_of_wind"].sel(level=850, drop=True)}).load()
    clim = compute_climatology(ds)
    for name in ds.data_vars:
        ref = wb2_reference(ds, name)
        assert _rel(clim[name].values[:, :365].astype(np.float64), ref) <= 1e-6, name
