"""Persistence and climatology forecasts in the WeatherBench2 layout; the day-of-year x hour climatology."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from atmos.baselines import (
    climatology_at,
    climatology_forecast,
    compute_climatology,
    load_climatology,
    persistence_forecast,
    save_climatology,
)
from atmos.errors import ConfigError, DataError
from atmos.testing import mock_era5

# zarr 3 warns that consolidated metadata is not in its spec when xarray writes it
pytestmark = pytest.mark.filterwarnings("ignore:Consolidated metadata:UserWarning")
LAT = np.array([-45.0, 45.0])
LON = np.array([0.0, 180.0])


def _year_cube(values_fn, year: int = 2018, freq: str = "6h") -> xr.Dataset:
    t = pd.date_range(f"{year}-01-01", f"{year}-12-31T18", freq=freq)
    v = values_fn(t)[:, None, None] * np.ones((1, 2, 2))
    return xr.Dataset({"x": (("time", "latitude", "longitude"), v)},
                      coords={"time": t, "latitude": LAT, "longitude": LON})


def test_climatology_window_one_is_the_day_hour_mean():
    ds = _year_cube(lambda t: t.day_of_year.to_numpy() + 1000.0 * t.hour.to_numpy())
    ds2 = _year_cube(lambda t: t.day_of_year.to_numpy() + 1000.0 * t.hour.to_numpy() + 10.0, year=2019)
    clim = compute_climatology(xr.concat([ds, ds2], "time"), window=1)
    assert clim["x"].dims == ("hour", "dayofyear", "latitude", "longitude")
    np.testing.assert_array_equal(clim["hour"], [0, 6, 12, 18])
    np.testing.assert_array_equal(clim["dayofyear"], np.arange(1, 367))
    c = clim["x"].isel(latitude=0, longitude=0)
    assert float(c.sel(hour=6, dayofyear=40)) == 40 + 6000 + 5.0  # mean of the two years
    assert float(c.sel(hour=18, dayofyear=366)) == float(c.sel(hour=18, dayofyear=365))  # no 29 Feb: copied


def test_climatology_smoothing_is_a_count_weighted_circular_window():
    ds = _year_cube(lambda t: t.day_of_year.to_numpy().astype(float))
    c = compute_climatology(ds, window=3, window_weights="flat")["x"].isel(hour=0, latitude=0, longitude=0)
    assert float(c.sel(dayofyear=2)) == pytest.approx(2.0)
    # one common year: the day-of-year axis is a 365-day circle (WeatherBench2), so the
    # window of day 1 is {365, 1, 2}; day 366 copies day 365
    assert float(c.sel(dayofyear=1)) == pytest.approx((365 + 1 + 2) / 3)
    assert float(c.sel(dayofyear=365)) == pytest.approx((364 + 365 + 1) / 3)
    assert float(c.sel(dayofyear=366)) == float(c.sel(dayofyear=365))
    # the default triangular window: weights 1 - |k|/2 for window 5 -> (0.5, 1, 0.5) on days d-1, d, d+1
    tri = compute_climatology(ds, window=5)["x"].isel(hour=0, latitude=0, longitude=0)
    assert float(tri.sel(dayofyear=1)) == pytest.approx((0.5 * 365 + 1 + 0.5 * 2) / 2)


def test_smoothing_removes_weather_noise_from_one_year():
    rng = np.random.default_rng(0)
    seasonal = lambda t: 10 * np.cos(2 * np.pi * t.day_of_year.to_numpy() / 365.25)
    ds = _year_cube(lambda t: seasonal(t) + 3.0 * rng.normal(size=t.size))
    t = pd.date_range("2018-01-01", "2018-12-31T18", freq="6h")
    truth = seasonal(pd.DatetimeIndex(t))
    err = {}
    for w in (1, 61):
        c = compute_climatology(ds, window=w)["x"].isel(latitude=0, longitude=0)
        err[w] = float(np.sqrt(np.mean((climatology_at(c, t).values - truth) ** 2)))
    assert err[1] == pytest.approx(3.0, rel=0.1)  # the noise itself
    assert err[61] < 0.25 * err[1]


def test_daily_climatology_and_bad_arguments():
    ds = _year_cube(lambda t: t.hour.to_numpy().astype(float))
    daily = compute_climatology(ds, hour_step=None, window=1)
    assert "hour" not in daily.dims and float(daily["x"].max()) == pytest.approx(9.0)
    with pytest.raises(ConfigError, match="odd"):
        compute_climatology(ds, window=60)
    with pytest.raises(ConfigError, match="divisor of 24"):
        compute_climatology(ds, hour_step=5)
    with pytest.raises(DataError, match="hour"):
        compute_climatology(ds.sel(time=ds.time.dt.hour == 0), hour_step=6)
    with pytest.raises(DataError, match="allow_gaps"):
        compute_climatology(ds.isel(time=slice(0, 40)), window=11)
    part = compute_climatology(ds.isel(time=slice(0, 40)), window=11, allow_gaps=True)
    assert np.isnan(float(part["x"].sel(hour=0, dayofyear=200).isel(latitude=0, longitude=0)))


def test_climatology_at_and_hour_mismatch():
    ds = _year_cube(lambda t: t.day_of_year.to_numpy() + 1000.0 * t.hour.to_numpy())
    clim = compute_climatology(ds, window=1)
    vt = xr.DataArray(pd.to_datetime(["2020-03-01T06", "2021-01-01T18"]).to_numpy(), dims="x")
    got = climatology_at(clim["x"], vt).isel(latitude=0, longitude=0).values
    np.testing.assert_array_equal(got, [61 + 6000.0, 1 + 18000.0])  # 2020 is a leap year: 1 Mar = day 61
    with pytest.raises(DataError, match="hour"):
        climatology_at(clim, pd.to_datetime(["2020-01-01T03"]))


def test_save_load_round_trip_and_wb2_layout(tmp_path):
    ds = _year_cube(lambda t: t.day_of_year.to_numpy().astype(np.float32)).astype(np.float32)
    clim = compute_climatology(ds, window=5)
    assert clim["x"].dtype == np.float32
    p = save_climatology(clim, tmp_path / "c.nc")
    back = load_climatology(p)
    xr.testing.assert_allclose(back.load(), clim)
    # WB2 storage: (hour, dayofyear, longitude, latitude), latitude descending, lat/lon names
    wb2 = clim.transpose("hour", "dayofyear", "longitude", "latitude").isel(latitude=slice(None, None, -1))
    wb2 = wb2.rename(latitude="lat", longitude="lon")
    wb2.to_zarr(tmp_path / "wb2.zarr")
    back2 = load_climatology(tmp_path / "wb2.zarr")
    assert back2["x"].dims == ("hour", "dayofyear", "latitude", "longitude")
    xr.testing.assert_allclose(back2.load(), clim)
    with pytest.raises(DataError, match="atmos climatology"):
        load_climatology(tmp_path / "nope.nc")


def test_persistence_forecast_layout_and_values():
    truth = mock_era5("2020-01-01", periods=12, nlat=8, nlon=16, variables=["geopotential", "2m_temperature"],
                      canonical=True).load()
    inits = truth.time.values[[0, 2, 4]]
    leads = ["0h", "6h", "1D"]
    fc = persistence_forecast(truth, inits, leads)
    assert set(fc.data_vars) == {"geopotential", "2m_temperature"}  # statics dropped
    assert fc["geopotential"].dims == ("time", "prediction_timedelta", "level", "latitude", "longitude")
    assert fc["prediction_timedelta"].dtype.kind == "m"
    for td in fc["prediction_timedelta"].values:
        xr.testing.assert_equal(fc["geopotential"].sel(prediction_timedelta=td, drop=True),
                                truth["geopotential"].sel(time=inits))
    with pytest.raises(DataError, match="init time"):
        persistence_forecast(truth, ["2019-12-31T18"], leads)
    with pytest.raises(ConfigError, match="lead"):
        persistence_forecast(truth, inits, ["soon"])


def test_climatology_forecast_values_at_valid_times():
    truth = mock_era5("2020-01-01", periods=8, nlat=4, nlon=8, variables=["temperature"], levels=(500, 850, 1000),
                      canonical=True, statics=False).load()
    arr = np.arange(4 * 366, dtype=np.float32).reshape(4, 366)
    clim = xr.Dataset(
        {"temperature": (("hour", "dayofyear", "level", "latitude", "longitude"),
                         np.broadcast_to(arr[:, :, None, None, None], (4, 366, 2, 4, 8)).copy())},
        coords={"hour": [0, 6, 12, 18], "dayofyear": np.arange(1, 367), "level": [850, 500],
                "latitude": truth.latitude.values, "longitude": truth.longitude.values},
    )
    with pytest.raises(DataError, match=r"levels \[1000\]"):
        climatology_forecast(clim, ["2020-01-01"], ["0h"], like=truth)
    fc = climatology_forecast(clim, ["2020-01-01T00", "2020-02-28T18"], ["0h", "6h", "30h"], like=truth.sel(level=[500]))
    assert fc["temperature"].dims == ("time", "prediction_timedelta", "level", "latitude", "longitude")
    v = fc["temperature"].isel(level=0, latitude=0, longitude=0).values
    # (hour index, dayofyear - 1) of each valid time
    np.testing.assert_array_equal(v, [[arr[0, 0], arr[1, 0], arr[1, 1]], [arr[3, 58], arr[0, 59], arr[0, 60]]])
    assert fc["temperature"].dtype == np.float32
