"""Long-rollout stability and climate diagnostics: invariants on synthetic data."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from atmos.errors import DataError
from atmos.metrics.stability import (
    blowup_lead,
    climate_diagnostics,
    drift_per_year,
    format_climate_diagnostics,
    plot_climate_diagnostics,
    spectrum_ratio,
)
from atmos.testing import mock_era5

VARS = ["geopotential", "temperature", "2m_temperature"]


@pytest.fixture(scope="module")
def reference():
    """A year of daily synthetic data (the reference climate)."""
    return mock_era5("2018-01-01", periods=365, freq="1D", nlat=8, nlon=16, variables=VARS, canonical=True).load()


def as_rollout(ds: xr.Dataset, init: str = "2018-01-01") -> xr.Dataset:
    """The cube as one long forecast from ``init`` (time=1, prediction_timedelta)."""
    lead = ds["time"].values - np.datetime64(init)
    fc = ds.rename(time="prediction_timedelta").assign_coords(prediction_timedelta=lead)
    return fc.expand_dims(time=[np.datetime64(init, "ns")])


def test_reference_against_itself_is_perfect(reference):
    diag = climate_diagnostics(as_rollout(reference), reference)
    assert diag.sizes["month"] == 12
    for lab in ("z500", "t850", "t2m"):
        np.testing.assert_allclose(diag[f"{lab}_mean_error"], 0, atol=1e-6 * float(abs(diag[f"{lab}_mean"]).max()))
        np.testing.assert_allclose(diag[f"{lab}_std_ratio"], 1, rtol=1e-6)
        np.testing.assert_allclose(diag[f"{lab}_variability_ratio"], 1, rtol=1e-6)
        assert bool(diag[f"{lab}_finite"].all())
        assert abs(diag.attrs[f"{lab}_drift_per_year"]) < 1e-6 * float(abs(diag[f"{lab}_mean"]).max())
    assert "drift per year" in format_climate_diagnostics(diag)


def test_a_run_collapsed_onto_its_monthly_climate_keeps_means_but_loses_variability(reference):
    fc = as_rollout(reference)
    t = fc["2m_temperature"]
    vt = fc["time"].values[0] + fc["prediction_timedelta"].values
    month = xr.DataArray(pd.DatetimeIndex(vt).month, dims="prediction_timedelta",
                         coords={"prediction_timedelta": fc["prediction_timedelta"]}, name="month")
    smooth = fc.copy()
    smooth["2m_temperature"] = t.groupby(month).mean().sel(month=month).drop_vars("month")
    d = climate_diagnostics(smooth, reference, ["t2m"])
    np.testing.assert_allclose(d["t2m_mean_error"], 0, atol=1e-3)
    np.testing.assert_allclose(d["t2m_variability_ratio"], 0, atol=1e-4)  # the weather is gone
    scaled = fc.copy()
    mt = t.groupby(month).mean().sel(month=month).drop_vars("month")
    scaled["2m_temperature"] = mt + 0.5 * (t - mt)
    d = climate_diagnostics(scaled, reference, ["t2m"])
    np.testing.assert_allclose(d["t2m_variability_ratio"], 0.5, rtol=1e-4)


def test_offset_scaling_and_trend_are_measured(reference):
    fc = as_rollout(reference)
    shifted = fc.copy()
    shifted["2m_temperature"] = fc["2m_temperature"] + 1.5
    d = climate_diagnostics(shifted, reference, ["t2m"])
    np.testing.assert_allclose(d["t2m_mean_error"], 1.5, rtol=1e-6)
    np.testing.assert_allclose(d["t2m_std_ratio"], 1, rtol=1e-6)

    t = fc["2m_temperature"]
    mean = t.weighted(np.cos(np.deg2rad(t.latitude))).mean(("latitude", "longitude"))
    scaled = fc.copy()
    scaled["2m_temperature"] = mean + 2.0 * (t - mean)  # same global mean (cos-lat = cell-area weights here)
    d = climate_diagnostics(scaled, reference, ["t2m"])
    np.testing.assert_allclose(d["t2m_std_ratio"], 2, rtol=1e-3)

    years = (fc["prediction_timedelta"] / np.timedelta64(1, "D")) / 365.25
    trended = fc.copy()
    trended["2m_temperature"] = t + 0.8 * years
    np.testing.assert_allclose(drift_per_year(trended, reference, ["t2m"])["t2m"], 0.8, rtol=1e-3)


def test_nonfinite_and_blowup_found(reference):
    fc = as_rollout(reference).copy(deep=True)
    k = list(fc["level"].values).index(850)
    fc["temperature"].transpose("time", "prediction_timedelta", "level", ...).data[0, 100, k, 0, 0] = np.nan  # 2018-04-11
    fc["geopotential"][0, 200:] = fc["geopotential"][0, 200:] * 10.0
    d = climate_diagnostics(fc, reference, ["t850", "z500"])
    assert not bool(d["t850_finite"].sel(month="2018-04"))
    assert int(d["t850_finite"].sum()) == 11
    blow = blowup_lead(fc, reference, ["t850", "z500", "t2m"])
    assert blow["t850"] == np.timedelta64(100, "D")
    assert blow["z500"] == np.timedelta64(200, "D")
    assert blow["t2m"] is None


def test_spectrum_ratio_is_one_for_truth_and_drops_when_smoothed():
    truth = mock_era5("2020-01-01", periods=12, nlat=16, nlon=32, variables=VARS, canonical=True, seed=3).load()
    fc = as_rollout(truth.isel(time=slice(0, 5)), "2020-01-01")
    r = spectrum_ratio(fc, truth, ["z500"])
    np.testing.assert_allclose(r["z500"], 1, rtol=1e-10)
    smooth = fc.copy()
    z = fc["geopotential"]
    smooth["geopotential"] = (z + z.roll(longitude=1) + z.roll(longitude=-1)) / 3
    rs = spectrum_ratio(smooth, truth, ["z500"], wavenumbers=(5, 15))
    assert float(rs["z500"].max()) < 0.9


def test_errors_and_plot(reference, tmp_path):
    fc = as_rollout(reference)
    two = xr.concat([fc, fc.assign_coords(time=[np.datetime64("2018-01-02", "ns")])], "time")
    with pytest.raises(DataError, match="one initial time"):
        climate_diagnostics(two, reference)
    with pytest.raises(DataError, match="calendar month"):
        climate_diagnostics(fc, reference.sel(time=slice("2018-01-01", "2018-06-30")))
    path = plot_climate_diagnostics(fc, reference, tmp_path / "c.png", ["t2m"])
    assert path.stat().st_size > 1000
