"""TOA insolation from astronomy: invariants, calibration, and SPEEDY-world's own field."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from atmos.errors import DataError
from atmos.rollout.forcings import SOLAR_CONSTANT, calibrate_toa, solar_geometry, toa_incident_solar_radiation


def _grid(n=90):
    lat = np.linspace(-90 + 90 / n, 90 - 90 / n, n)
    lon = np.arange(2 * n) * 180.0 / n
    return np.meshgrid(lat, lon, indexing="ij")


def test_daily_mean_is_the_day_average_of_the_instantaneous_flux():
    lat, lon = _grid(30)
    day = pd.Timestamp("2019-07-10")
    minutes = pd.date_range(day, periods=24 * 12, freq="5min").values
    inst = toa_incident_solar_radiation(minutes, lat[:, :1], lon[:, :1]).mean(0)
    daily = toa_incident_solar_radiation(
        np.array([day + pd.Timedelta("12h")]).astype("datetime64[ns]"),
        lat[:, :1],
        lon[:, :1],
        kind="daily_mean",
    )[0]
    np.testing.assert_allclose(inst, daily, atol=1.5)  # W m-2; declination drifts within the day


def test_global_mean_is_a_quarter_of_the_solar_constant():
    lat, lon = _grid(180)
    w = np.cos(np.deg2rad(lat))
    for t in ("2020-01-03T00", "2020-07-04T13"):
        times = np.array([np.datetime64(t, "ns")])
        _, dist, _ = solar_geometry(times)
        for kind in ("instantaneous", "daily_mean"):
            q = toa_incident_solar_radiation(times, lat, lon, kind=kind)[0]
            mean = float((q * w).sum() / w.sum())
            assert abs(mean - SOLAR_CONSTANT / 4 * dist[0]) < 0.5


def test_calibration_recovers_kind_and_scale():
    lat, lon = _grid(16)
    times = pd.date_range("2020-03-01", periods=4, freq="6h").values
    acc = 3600.0 * toa_incident_solar_radiation(times, lat, lon)  # like ERA5: J m-2 over an hour
    cal = calibrate_toa(acc, times, lat, lon)
    assert cal.kind == "instantaneous" and abs(cal.scale - 3600.0) < 1e-6 and cal.rmse < 1e-6
    daily = 0.99 * toa_incident_solar_radiation(times, lat, lon, kind="daily_mean")
    cal = calibrate_toa(daily, times, lat, lon)
    assert cal.kind == "daily_mean" and abs(cal.scale - 0.99) < 1e-9
    with pytest.raises(DataError, match="forcings='data'"):
        calibrate_toa(np.random.default_rng(0).uniform(0, 500, acc.shape), times, lat, lon)


@pytest.mark.requires_speedy
def test_speedy_world_toa_is_the_daily_mean_formula(speedy_path):
    import xarray as xr

    ds = xr.open_zarr(speedy_path / "speedy-world-2019-12.zarr")
    toa = ds["toa_incident_solar_radiation"].transpose("time", "latitude", "longitude").load()
    lat, lon = np.meshgrid(toa.latitude.values, toa.longitude.values, indexing="ij")
    q = toa_incident_solar_radiation(toa.time.values, lat, lon, kind="daily_mean")
    rmse = float(np.sqrt(np.mean((q - toa.values) ** 2)))
    assert rmse < 0.5, rmse  # W m-2, of values up to ~560 (the cube keeps 12 mantissa bits)
    cal = calibrate_toa(toa.values[:8], toa.time.values[:8], lat, lon)
    assert cal.kind == "daily_mean" and abs(cal.scale - 1) < 1e-3
