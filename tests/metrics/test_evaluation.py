"""The scorecard driver: alignment by valid time, baselines, tidy output, CSV round trip, plots."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from atmos.baselines import compute_climatology, persistence_forecast
from atmos.errors import ConfigError, DataError, GridError
from atmos.evaluation import (
    evaluate,
    evaluate_spectra,
    format_scorecard,
    read_scorecard,
    scorecard_to_dataframe,
    write_scorecard,
)
from atmos.metrics import align_truth, parse_variable, resolve_variables, short_label
from atmos.testing import mock_era5

VARS = ["geopotential", "temperature", "2m_temperature"]
LEADS = pd.timedelta_range("0h", "2D", freq="6h")


@pytest.fixture(scope="module")
def truth() -> xr.Dataset:
    return mock_era5("2020-01-01", periods=4 * 8, nlat=8, nlon=16, variables=VARS, canonical=True, statics=False).load()


@pytest.fixture(scope="module")
def clim() -> xr.Dataset:
    train = mock_era5("2019-01-01", periods=1460, nlat=8, nlon=16, variables=VARS, canonical=True, statics=False,
                      time_chunk=365, seed=0)
    return compute_climatology(train, window=61)


@pytest.fixture(scope="module")
def inits(truth) -> np.ndarray:
    return truth.time.values[: 4 * 5 : 3]  # 7 inits, every 18 h, all leads inside the truth


def _perfect(truth, inits) -> xr.Dataset:
    layout = xr.Dataset(coords={"time": inits, "prediction_timedelta": LEADS.to_numpy()})
    return align_truth(layout, truth).drop_vars("valid_time")


def _row_weights(lat):
    b = np.deg2rad(np.concatenate([[-90.0], (lat[:-1] + lat[1:]) / 2, [90.0]]))
    w = np.sin(b[1:]) - np.sin(b[:-1])
    return w / w.sum()


def test_variable_names():
    assert parse_variable("z500") == parse_variable("geopotential_500")
    assert parse_variable("z500").name == "geopotential" and parse_variable("z500").level == 500
    assert parse_variable("t2m").name == "2m_temperature" and parse_variable("t2m").level is None
    assert parse_variable("mean_sea_level_pressure").label == "msl"
    assert short_label("specific_humidity", 700) == "q700" and short_label("foo", 10) == "foo_10"


def test_resolve_variables(truth):
    assert [s.label for s in resolve_variables(None, truth)] == ["z500", "t850", "t2m"]
    assert [s.label for s in resolve_variables(["temperature"], truth)] == ["t500", "t850"]
    with pytest.raises(DataError, match="level 300"):
        resolve_variables(["z300"], truth)
    with pytest.raises(DataError, match="msl"):
        resolve_variables(["msl"], truth)


def test_align_truth_by_valid_time(truth, inits):
    y = align_truth(xr.Dataset(coords={"time": inits, "prediction_timedelta": LEADS.to_numpy()}), truth)
    assert y["2m_temperature"].dims == ("time", "prediction_timedelta", "latitude", "longitude")
    xr.testing.assert_equal(
        y["2m_temperature"].isel(time=2, prediction_timedelta=5, drop=True),
        truth["2m_temperature"].sel(time=inits[2] + LEADS[5], drop=True),
    )
    late = xr.Dataset(coords={"time": truth.time.values[-1:], "prediction_timedelta": LEADS.to_numpy()})
    with pytest.raises(DataError, match="not in the truth"):
        align_truth(late, truth)


def test_perfect_forecast_and_baselines(truth, clim, inits):
    sc = evaluate(_perfect(truth, inits), truth, metrics=("rmse", "bias", "acc"), climatology=clim,
                  regions=("global", "tropics"), name="oracle")
    s = sc["score"]
    assert s.dims == ("model", "metric", "region", "variable", "prediction_timedelta")
    assert list(s["model"].values) == ["oracle", "persistence", "climatology"]
    assert list(s["variable"].values) == ["z500", "t850", "t2m"]
    assert sc.attrs["n_init_times"] == inits.size
    assert float(abs(s.sel(model="oracle", metric=["rmse", "bias"])).max()) == 0.0
    np.testing.assert_allclose(s.sel(model="oracle", metric="acc").values, 1.0, rtol=1e-6)
    # persistence is exact at lead 0, the climatology forecast has ACC exactly 0 (not NaN)
    assert float(abs(s.sel(model="persistence", metric="rmse", prediction_timedelta="0h")).max()) == 0.0
    assert (s.sel(model="climatology", metric="acc") == 0.0).all()
    # the climatology forecast's RMSE hardly depends on lead; persistence's grows
    r = s.sel(model="persistence", metric="rmse", region="global", variable="z500")
    assert float(r.isel(prediction_timedelta=4)) > float(r.isel(prediction_timedelta=1)) > 0


def test_persistence_rmse_is_the_rms_lagged_difference(truth, inits):
    sc = evaluate(persistence_forecast(truth, inits, LEADS), truth, metrics=("rmse",), baselines=(),
                  variables=["t850", "t2m"], name="p")
    x = truth["temperature"].sel(level=850).values.astype(np.float64)
    t = list(truth.time.values)
    w = _row_weights(truth.latitude.values)[:, None] / truth.sizes["longitude"]
    for k, lead in enumerate(LEADS):
        d = np.stack([x[t.index(t0 + lead.to_timedelta64())] - x[t.index(t0)] for t0 in inits])
        want = np.sqrt(np.mean(np.sum(w * d**2, axis=(-2, -1))))
        got = float(sc["score"].sel(model="p", metric="rmse", region="global", variable="t850").isel(prediction_timedelta=k))
        assert got == pytest.approx(want, rel=1e-5)


def test_csv_round_trip_and_table(tmp_path, truth, clim, inits):
    sc = evaluate(persistence_forecast(truth, inits, LEADS), truth, climatology=clim, name="model")
    assert list(sc["metric"].values) == ["rmse", "bias", "acc"]
    df = scorecard_to_dataframe(sc)
    assert list(df.columns) == ["model", "metric", "region", "variable", "lead_hours", "score"]
    assert len(df) == 3 * 3 * 1 * 3 * LEADS.size
    back = read_scorecard(write_scorecard(sc, tmp_path / "s.csv"))
    xr.testing.assert_allclose(back["score"], sc["score"], rtol=1e-7)
    back_nc = read_scorecard(write_scorecard(sc, tmp_path / "s.nc"))
    xr.testing.assert_allclose(back_nc["score"], sc["score"])
    text = format_scorecard(sc, leads=["6h", "1D"])
    assert "RMSE  region=global  model=climatology" in text
    assert "z500" in text and "      1d" in text and "12h" not in text


def test_missing_inits_are_dropped_or_raise(truth, inits):
    fc = persistence_forecast(truth, truth.time.values[[0, -2]], LEADS)  # the second runs past the truth
    with pytest.warns(UserWarning, match="1 of 2 init times"):
        sc = evaluate(fc, truth, baselines=())
    assert sc.attrs["n_init_times"] == 1
    with pytest.raises(DataError, match="outside the truth"):
        evaluate(fc, truth, baselines=(), missing="raise")


def test_configuration_errors(truth, inits):
    fc = persistence_forecast(truth, inits, LEADS)
    with pytest.raises(ConfigError, match="acc"):
        evaluate(fc, truth, metrics=("acc",))
    with pytest.raises(ConfigError, match="climatology"):
        evaluate(fc, truth, baselines=("climatology",))
    with pytest.raises(ConfigError, match="rmse"):
        evaluate(fc, truth, metrics=("rsme",))
    coarse = mock_era5("2020-01-01", periods=8, nlat=4, nlon=8, variables=VARS, canonical=True, statics=False)
    with pytest.raises(GridError, match="regrid"):
        evaluate(persistence_forecast(coarse, coarse.time.values[:1], ["0h"]), truth)
    with pytest.raises(DataError, match="prediction_timedelta"):
        evaluate(truth, truth)


def test_ensemble_scores(truth, inits):
    base = persistence_forecast(truth, inits, LEADS, variables=["2m_temperature"])
    ens1 = base.expand_dims(member=[0])
    sc = evaluate(ens1, truth, metrics=("crps", "mae", "spread_skill"), baselines=(), name="e")
    s = sc["score"].sel(model="e", variable="t2m")
    np.testing.assert_allclose(s.sel(metric="crps").values, s.sel(metric="mae").values, rtol=1e-6)
    ssr = s.sel(metric="spread_skill")
    assert np.isnan(ssr.isel(prediction_timedelta=0)).all()  # 0 / 0: persistence is exact at lead 0
    assert (ssr.isel(prediction_timedelta=slice(1, None)) == 0).all()  # one member: no spread
    pert = xr.concat([base + 1.0, base - 1.0], dim="member")  # ensemble mean = persistence, spread sqrt(2)
    sc2 = evaluate(pert, truth, metrics=("rmse", "spread"), baselines=("persistence",), name="e2")
    s2 = sc2["score"].sel(variable="t2m")
    np.testing.assert_allclose(s2.sel(model="e2", metric="rmse").values, s2.sel(model="persistence", metric="rmse").values,
                               rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(s2.sel(model="e2", metric="spread").values, np.sqrt(2.0), rtol=1e-6)


def test_spectra_and_plots(tmp_path, truth, clim, inits):
    from atmos.metrics.plots import plot_maps, plot_scores, plot_spectra, write_score_plots

    oracle = _perfect(truth, inits)
    spec = evaluate_spectra({"oracle": oracle}, truth, leads=["0h", "1D"], variables=["z500"])
    assert spec.dims == ("model", "variable", "prediction_timedelta", "zonal_wavenumber")
    assert list(spec["model"].values) == ["oracle", "truth"]
    xr.testing.assert_allclose(spec.sel(model="oracle", drop=True), spec.sel(model="truth", drop=True))
    sc = evaluate(persistence_forecast(truth, inits, LEADS), truth, climatology=clim, name="m")
    paths = write_score_plots(sc, tmp_path)
    assert sorted(p.name for p in paths) == ["acc_global.png", "bias_global.png", "rmse_global.png"]
    f = persistence_forecast(truth, inits, LEADS, variables=["2m_temperature"])["2m_temperature"].rename("t2m")
    plot_maps(f, align_truth(f, truth["2m_temperature"]), leads=["2D"], path=tmp_path / "maps.png")
    plot_spectra(spec, path=tmp_path / "spec.png")
    for name in ("acc_global.png", "maps.png", "spec.png"):
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(DataError, match="metric"):
        plot_scores(sc, "crps")
    with pytest.raises(ConfigError, match="lead"):
        plot_maps(f, f, leads=["7D"])
