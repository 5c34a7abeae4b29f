"""ClimateBench NRMSE: hand-computed cases, an xarray transcript of the benchmark's formula, errors."""

from __future__ import annotations

import cftime
import numpy as np
import pytest
import xarray as xr

from atmos.errors import DataError, GridError
from atmos.metrics import climatebench_scores, climatebench_weights, global_nrmse, spatial_nrmse, total_nrmse


def _da(values, years, lat=(0.0, 60.0), lon=(0.0, 180.0), name="tas") -> xr.DataArray:
    return xr.DataArray(
        np.asarray(values, dtype=float), dims=("time", "latitude", "longitude"),
        coords={"time": np.asarray(years), "latitude": list(lat), "longitude": list(lon)}, name=name,
    )


@pytest.fixture
def hand():
    """cos(0) = 1, cos(60) = 0.5 -> cell weights 1/3, 1/3, 1/6, 1/6; 2079 lies outside the window."""
    truth = _da([[[0, 0], [0, 0]], [[2, 2], [4, 4]], [[4, 4], [2, 2]]], [2079, 2080, 2081])
    pred = _da([[[100, 100], [100, 100]], [[3, 3], [4, 4]], [[4, 4], [4, 4]]], [2079, 2080, 2081])
    return truth, pred


def test_hand_computed_case(hand):
    truth, pred = hand
    # time-mean truth = 3 everywhere -> normaliser 3; time-mean error = [[.5,.5],[1,1]]
    # weighted mean of squared error = 2/3 * .25 + 1/3 * 1 = 0.5
    assert spatial_nrmse(truth, pred) == pytest.approx(np.sqrt(0.5) / 3, rel=1e-12)
    # global means: truth 8/3, 10/3; pred 10/3, 4 -> errors 2/3, 2/3 -> rmse 2/3
    assert global_nrmse(truth, pred) == pytest.approx(2 / 9, rel=1e-12)
    assert total_nrmse(truth, pred) == pytest.approx(np.sqrt(0.5) / 3 + 5 * 2 / 9, rel=1e-12)
    assert total_nrmse(truth, pred, alpha=1.0) == pytest.approx(np.sqrt(0.5) / 3 + 2 / 9, rel=1e-12)
    # a window that includes 2079 changes the answer
    assert spatial_nrmse(truth, pred, window=(2079, 2100)) > 10 * spatial_nrmse(truth, pred)


def test_perfect_prediction_and_sign_of_normaliser(hand):
    truth, pred = hand
    assert spatial_nrmse(truth, truth) == 0.0 and global_nrmse(truth, truth) == 0.0
    # |normaliser|: negating both fields (e.g. a drying precipitation change) gives the same scores
    assert spatial_nrmse(-truth, -pred) == pytest.approx(spatial_nrmse(truth, pred), rel=1e-12)
    assert global_nrmse(-truth, -pred) == pytest.approx(global_nrmse(truth, pred), rel=1e-12)


def _climatebench_transcript(truth, pred):
    """The benchmark's own formulas, written with xarray's weighted mean as ClimateBench does."""
    truth = truth.sel(time=slice(2080, None))
    pred = pred.sel(time=slice(2080, None))
    w = np.cos(np.deg2rad(truth.latitude))
    gm = lambda x: x.weighted(w).mean(["latitude", "longitude"])
    norm = np.abs(gm(truth.mean("time")))
    spatial = np.sqrt(((truth.mean("time") - pred.mean("time")) ** 2).weighted(w).mean(["latitude", "longitude"]))
    glob = np.sqrt(((gm(truth) - gm(pred)) ** 2).mean("time"))
    return float(spatial / norm), float(glob / norm)


def test_matches_benchmark_transcript_on_random_fields():
    rng = np.random.default_rng(0)
    lat, lon = np.linspace(-88.75, 88.75, 72), np.arange(0, 360, 2.5)
    years = np.arange(2015, 2101)
    base = 1.0 + np.linspace(0, 3, years.size)[:, None, None]
    truth = _da(base + rng.normal(0, 0.5, (years.size, lat.size, lon.size)), years, lat, lon)
    pred = _da(base + rng.normal(0.1, 0.5, truth.shape), years, lat, lon)
    s, g = _climatebench_transcript(truth, pred)
    assert spatial_nrmse(truth, pred) == pytest.approx(s, rel=1e-10)
    assert global_nrmse(truth, pred) == pytest.approx(g, rel=1e-10)
    scores = climatebench_scores(truth.to_dataset(), pred.to_dataset())
    assert list(scores["metric"].values) == ["spatial", "global", "total"]
    np.testing.assert_allclose(scores["tas"].values, [s, g, s + 5 * g], rtol=1e-10)


def test_members_are_averaged_and_dates_are_years(hand):
    truth, pred = hand
    spread = xr.DataArray([-1.0, 1.0], dims="member")
    with_members = (truth + spread).transpose("member", ...)
    assert spatial_nrmse(with_members, pred) == pytest.approx(spatial_nrmse(truth, pred), rel=1e-12)
    dates = [cftime.DatetimeNoLeap(int(y), 7, 1) for y in truth.time.values]
    t2, p2 = truth.assign_coords(time=dates), pred.assign_coords(time=dates)
    assert global_nrmse(t2, p2) == pytest.approx(2 / 9, rel=1e-12)


def test_dataset_scores_per_variable(hand):
    truth, pred = hand
    t = xr.Dataset({"tas": truth, "pr": truth * 2})
    p = xr.Dataset({"tas": pred, "pr": truth * 2 + 0.3})
    s = spatial_nrmse(t, p)
    assert float(s["tas"]) == pytest.approx(np.sqrt(0.5) / 3)
    assert float(s["pr"]) == pytest.approx(0.3 / 6)


def test_weights_are_cos_latitude_not_cell_area():
    da = _da(np.ones((1, 3, 2)), [2080], lat=(-90.0, 0.0, 90.0))
    w = climatebench_weights(da)
    np.testing.assert_allclose(w.values, [0.0, 1.0, 0.0], atol=1e-15)  # poles get no weight (cell areas would)
    hp = xr.DataArray(np.ones((1, 48)), dims=("time", "cell"), coords={"time": [2080]})
    np.testing.assert_array_equal(climatebench_weights(hp).values, np.ones(48))


def test_healpix_uniform_weights():
    truth = xr.DataArray([[1.0, 3.0, 2.0, 2.0]], dims=("time", "cell"), coords={"time": [2090]})
    pred = xr.DataArray([[2.0, 3.0, 2.0, 2.0]], dims=("time", "cell"), coords={"time": [2090]})
    assert spatial_nrmse(truth, pred) == pytest.approx(np.sqrt(1 / 4) / 2)
    assert global_nrmse(truth, pred) == pytest.approx((1 / 4) / 2)


def test_errors(hand):
    truth, pred = hand
    with pytest.raises(GridError, match="'latitude'"):
        spatial_nrmse(truth, pred.assign_coords(latitude=[0.0, 61.0]))
    with pytest.raises(DataError, match="no year in the evaluation window"):
        spatial_nrmse(truth, pred, window=(2200, 2300))
    with pytest.raises(DataError, match="covers years"):
        spatial_nrmse(truth, pred.isel(time=[0, 1]))
    bad = pred.copy(data=pred.values.copy())
    bad.values[1, 0, 0] = np.nan
    with pytest.raises(DataError, match="NaN"):
        global_nrmse(truth, bad)
    with pytest.raises(DataError, match="is 0"):
        spatial_nrmse(truth - 3.0, pred)
    with pytest.raises(DataError, match="extra dims"):
        spatial_nrmse(truth.expand_dims(scenario=["a", "b"]), pred)
    with pytest.raises(GridError, match="no spatial grid"):
        spatial_nrmse(truth.rename(latitude="y"), pred.rename(latitude="y"))
    with pytest.raises(DataError, match="lacks variable"):
        spatial_nrmse(xr.Dataset({"tas": truth, "pr": truth}), xr.Dataset({"tas": pred}))
