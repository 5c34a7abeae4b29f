"""Deterministic metrics (RMSE, MSE, MAE, bias, ACC), area weights and region masks, on hand-built cases."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from atmos.errors import ConfigError, DataError
from atmos.metrics import ACC, MAE, MSE, REGIONS, RMSE, Bias, LatitudeBand, get_region, spatial_average

LAT4 = np.array([-67.5, -22.5, 22.5, 67.5])  # equiangular, no poles: bounds -90, -45, 0, 45, 90
LON4 = np.array([0.0, 90.0, 180.0, 270.0])
INITS = pd.date_range("2020-01-01", periods=2, freq="12h").to_numpy("datetime64[ns]")
LEADS = pd.to_timedelta(["0h", "6h", "12h"]).to_numpy("timedelta64[ns]")


def _row_weights(lat: np.ndarray) -> np.ndarray:
    """Hand formula: normalized cell area of latitude rows = sin(upper) - sin(lower)."""
    b = np.deg2rad(np.concatenate([[-90.0], (lat[:-1] + lat[1:]) / 2, [90.0]]))
    w = np.sin(b[1:]) - np.sin(b[:-1])
    return w / w.sum()


def _field(values: np.ndarray, name: str = "x", lat=LAT4, lon=LON4) -> xr.Dataset:
    """Forecast-layout dataset (time, prediction_timedelta, latitude, longitude)."""
    da = xr.DataArray(
        values,
        dims=("time", "prediction_timedelta", "latitude", "longitude"),
        coords={"time": INITS, "prediction_timedelta": LEADS, "latitude": lat, "longitude": lon},
    )
    return da.to_dataset(name=name)


def _zeros() -> np.ndarray:
    return np.zeros((INITS.size, LEADS.size, LAT4.size, LON4.size))


def test_rmse_is_sqrt_of_time_mean_mse():
    truth = _field(_zeros())
    err = _zeros()
    err[0] = 1.0  # init 0: uniform error 1
    err[1] = 3.0  # init 1: uniform error 3
    fc = _field(err)
    rmse = RMSE().compute(fc, truth)["x"].values
    np.testing.assert_allclose(rmse, np.sqrt((1.0 + 9.0) / 2))  # not (1 + 3) / 2
    np.testing.assert_allclose(MSE().compute(fc, truth)["x"].values, 5.0)
    np.testing.assert_allclose(Bias().compute(fc, truth)["x"].values, 2.0)
    np.testing.assert_allclose(MAE().compute(fc, truth)["x"].values, 2.0)
    chunk = RMSE().compute_chunk(fc, truth)["x"]
    assert chunk.dims == ("time", "prediction_timedelta")  # per init time, spatially averaged


def test_area_weights_match_hand_formula():
    w = _row_weights(LAT4)
    np.testing.assert_allclose(w[0], (1 - np.sin(np.pi / 4)) / 2)
    err = _zeros()
    err[..., 0, :] = 2.0  # error only in the southern polar row
    err[..., 2, 1] = -4.0  # and one cell north of the equator
    fc, truth = _field(err), _field(_zeros())
    want_mse = w[0] * 4.0 + w[2] / 4 * 16.0
    want_bias = w[0] * 2.0 + w[2] / 4 * -4.0
    np.testing.assert_allclose(MSE().compute(fc, truth)["x"].values, want_mse, rtol=1e-12)
    np.testing.assert_allclose(Bias().compute(fc, truth)["x"].values, want_bias, rtol=1e-12)


def test_forecast_equal_truth_scores_zero_and_acc_one():
    rng = np.random.default_rng(0)
    truth = _field(rng.normal(size=_zeros().shape))
    assert float(abs(RMSE().compute(truth, truth)["x"]).max()) == 0.0
    assert float(abs(Bias().compute(truth, truth)["x"]).max()) == 0.0
    clim = _clim(np.zeros((LAT4.size, LON4.size)))
    np.testing.assert_allclose(ACC(climatology=clim).compute(truth, truth)["x"].values, 1.0)


def _clim(values2d: np.ndarray, name: str = "x") -> xr.Dataset:
    """A climatology constant over hour and day of year."""
    arr = np.broadcast_to(values2d, (4, 366, *values2d.shape)).copy()
    return xr.DataArray(
        arr,
        dims=("hour", "dayofyear", "latitude", "longitude"),
        coords={"hour": [0, 6, 12, 18], "dayofyear": np.arange(1, 367), "latitude": LAT4, "longitude": LON4},
    ).to_dataset(name=name)


def test_acc_hand_computed_and_sign():
    c = np.arange(16.0).reshape(4, 4)
    clim = _clim(c)
    rng = np.random.default_rng(1)
    anom = rng.normal(size=_zeros().shape)
    truth = _field(c + anom)
    acc = ACC(climatology=clim)
    np.testing.assert_allclose(acc.compute(_field(c + 2.5 * anom), truth)["x"].values, 1.0)  # scale-free
    np.testing.assert_allclose(acc.compute(_field(c - anom), truth)["x"].values, -1.0)
    # hand-computed uncentred correlation with area weights, per init, then averaged over inits
    other = rng.normal(size=_zeros().shape)
    w = np.broadcast_to(_row_weights(LAT4)[:, None] / 4, (4, 4))
    num = np.sum(w * other * anom, axis=(-2, -1))
    den = np.sqrt(np.sum(w * other**2, axis=(-2, -1)) * np.sum(w * anom**2, axis=(-2, -1)))
    np.testing.assert_allclose(acc.compute(_field(c + other), truth)["x"].values, (num / den).mean(axis=0), rtol=1e-10)


def test_acc_of_climatology_is_exactly_zero_not_nan():
    c = np.linspace(250, 300, 16, dtype=np.float32).reshape(4, 4)
    clim = _clim(c)
    truth = _field((c + np.random.default_rng(2).normal(size=_zeros().shape)).astype(np.float32))
    fc = _field(np.broadcast_to(c, _zeros().shape).astype(np.float32))
    out = ACC(climatology=clim).compute(fc, truth)["x"].values
    assert np.all(out == 0.0)


def test_acc_uses_the_climatology_of_the_valid_time():
    """A climatology varying with the hour: anomalies must be taken at time + lead."""
    hours = np.array([0, 6, 12, 18])
    arr = np.broadcast_to((100.0 * hours)[:, None, None, None], (4, 366, 4, 4)).copy()
    clim = xr.DataArray(arr, dims=("hour", "dayofyear", "latitude", "longitude"),
                        coords={"hour": hours, "dayofyear": np.arange(1, 367), "latitude": LAT4, "longitude": LON4}
                        ).to_dataset(name="x")
    vt = INITS[:, None] + LEADS[None, :]
    c_vt = 100.0 * pd.DatetimeIndex(vt.ravel()).hour.to_numpy().reshape(vt.shape)
    anom = np.random.default_rng(3).normal(size=_zeros().shape)
    truth = _field(c_vt[..., None, None] + anom)
    fc = _field(np.broadcast_to(c_vt[..., None, None], anom.shape).copy())  # the climatology forecast
    assert np.all(ACC(climatology=clim).compute(fc, truth)["x"].values == 0.0)
    np.testing.assert_allclose(ACC(climatology=clim).compute(truth, truth)["x"].values, 1.0)


def test_acc_needs_a_climatology():
    truth = _field(_zeros())
    with pytest.raises(ConfigError, match="climatology"):
        ACC().compute(truth, truth)


def test_regions_partition_the_globe():
    lat = np.array([-45.0, -15.0, 15.0, 45.0])
    w = _row_weights(lat)
    err = _zeros()
    err[..., 1:3, :] = 3.0  # error only in the tropics
    fc = _field(err, lat=lat)
    truth = _field(_zeros(), lat=lat)
    mse = {r: float(MSE().compute(fc, truth, region=r)["x"].isel(prediction_timedelta=0)) for r in REGIONS}
    assert mse["tropics"] == pytest.approx(9.0)
    assert mse["extratropics"] == 0.0
    assert mse["northern_extratropics"] == 0.0 and mse["southern_extratropics"] == 0.0
    w_trop = w[1] + w[2]
    assert mse["global"] == pytest.approx(w_trop * 9.0)
    # the global MSE is the weight-averaged regional MSE
    assert mse["global"] == pytest.approx(w_trop * mse["tropics"] + (1 - w_trop) * mse["extratropics"])


def test_region_boundaries_and_nan_outside_region():
    lat = np.array([-20.0, 0.0, 20.0, 20.5])
    m_trop = REGIONS["tropics"].mask(xr.DataArray(lat), None).values
    m_ext = REGIONS["extratropics"].mask(xr.DataArray(lat), None).values
    np.testing.assert_array_equal(m_trop, [1, 1, 1, 0])
    np.testing.assert_array_equal(m_trop + m_ext, 1)  # complementary: |lat| <= 20 vs > 20
    vals = np.ones((INITS.size, LEADS.size, 4, 4))
    vals[..., 0, :] = np.nan  # missing south of the band
    ds = _field(vals, lat=np.array([-60.0, -10.0, 10.0, 60.0]))
    assert np.isnan(float(spatial_average(ds["x"].isel(time=0, prediction_timedelta=0))))
    out = spatial_average(ds["x"].isel(time=0, prediction_timedelta=0), "northern_extratropics")
    assert float(out) == 1.0


def test_custom_band_and_unknown_region():
    band = LatitudeBand("arctic", 60.0, 90.0)
    assert get_region(band) is band and get_region(None) is None
    with pytest.raises(ConfigError, match="tropics"):
        get_region("tropix")
    fc = _field(_zeros(), lat=np.array([-45.0, -15.0, 15.0, 45.0]))
    with pytest.raises(DataError, match="arctic"):
        MSE().compute(fc, fc, region=band)


def test_ensemble_forecast_is_scored_through_its_mean():
    rng = np.random.default_rng(4)
    truth = _field(rng.normal(size=_zeros().shape))
    d = rng.normal(size=_zeros().shape)
    ens = xr.concat([truth + d, truth - d + 0.5], dim="member")  # mean = truth + 0.25
    np.testing.assert_allclose(RMSE().compute(ens, truth)["x"].values, 0.25)


def test_healpix_cells_get_equal_weights():
    from atmos.grids import HealpixGrid

    g = HealpixGrid(2)
    vals = np.arange(g.npix, dtype=float)
    da = xr.DataArray(vals, dims=("cell",), coords={"cell_ids": ("cell", np.arange(g.npix), {
        "grid_name": "healpix", "level": 1, "indexing_scheme": "nested"})})
    assert float(spatial_average(da)) == pytest.approx(vals.mean())
    trop = np.abs(g.lat) <= 20
    assert float(spatial_average(da, "tropics")) == pytest.approx(vals[trop].mean())


def test_weights_cannot_be_corrupted_through_a_region():
    """Every average gets fresh cell-area weights from the grid: a (careless) region that edits
    the weights it is given in place does not change later averages on the same grid."""
    from atmos.metrics.deterministic import Region

    class SouthZeroedInPlace(Region):
        def apply(self, weights, ds):
            weights.values[weights["latitude"].values < 0] = 0.0
            return weights

    rng = np.random.default_rng(0)
    ds = _field(rng.normal(size=_zeros().shape))
    before = spatial_average(ds)
    north = spatial_average(ds, region=SouthZeroedInPlace(name="north"))
    assert not np.allclose(north["x"].values, before["x"].values)
    for _ in range(2):
        xr.testing.assert_allclose(spatial_average(ds), before)
