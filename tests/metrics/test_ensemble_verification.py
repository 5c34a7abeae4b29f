"""Ensemble verification invariants: rank histogram, energy score, unbiased spread/skill, CRPSS, ensemble dim names.

Synthetic, seeded ensembles; every tolerance is a few standard errors of the sample used.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from atmos.baselines import climatology_forecast, compute_climatology
from atmos.errors import ConfigError, DataError
from atmos.evaluation import evaluate, evaluate_rank_histograms
from atmos.metrics import (
    CRPS,
    CRPSS,
    RMSE,
    EnergyScore,
    EnsembleSpread,
    RankHistogram,
    RankReliability,
    SpreadSkill,
    UnbiasedEnsembleMeanRMSE,
    UnbiasedSpreadSkill,
    align_truth,
    rank_histogram_counts,
    rank_histogram_flatness,
)
from atmos.testing import mock_era5

LAT = np.array([-60.0, -20.0, 20.0, 60.0])
LON = np.array([0.0, 90.0, 180.0, 270.0])


def _ens(x: np.ndarray, dim: str = "member") -> xr.DataArray:
    return xr.DataArray(x, dims=(dim, "time", "latitude", "longitude"),
                        coords={"time": np.arange(x.shape[1]), "latitude": LAT, "longitude": LON})


def _truth(y: np.ndarray) -> xr.DataArray:
    return xr.DataArray(y, dims=("time", "latitude", "longitude"),
                        coords={"time": np.arange(y.shape[0]), "latitude": LAT, "longitude": LON})


def _draw(n: int, m: int, seed: int, member_scale: float = 1.0):
    """Members and truth exchangeable (member_scale 1) given a predictable part mu."""
    rng = np.random.default_rng(seed)
    mu = rng.normal(size=(n, 4, 4))
    y = _truth(mu + rng.normal(size=(n, 4, 4)))
    x = _ens(mu + member_scale * rng.normal(size=(m, n, 4, 4)))
    return x, y


# -------------------------------------------------------------------------- rank histogram
def test_rank_histogram_of_exchangeable_members_is_flat_and_counts_cases():
    n, m = 3000, 7
    x, y = _draw(n, m, seed=1)
    counts = rank_histogram_counts(x, y)
    assert counts.sizes["bins"] == m + 1
    assert float(counts.sum()) == n * 16  # every (time, cell) case lands in exactly one bin
    # each bin ~ Binomial(N, 1/K): within 4 standard deviations of N/K
    N, K = n * 16, m + 1
    sd = np.sqrt(N * (1 / K) * (1 - 1 / K))
    assert np.all(np.abs(counts.values - N / K) < 4 * sd)
    flat = rank_histogram_flatness(counts)
    assert float(flat["p_value"]) > 1e-3  # independent cases: Pearson's chi-square does not reject
    assert float(flat["delta"]) < 2.0
    freq = RankHistogram().compute(x, y)
    np.testing.assert_allclose(float(freq.sum("bins")), 1.0, rtol=1e-12)
    assert float(RankReliability().compute(x, y)) < 0.05


def test_rank_histogram_shapes_and_ties():
    x, y = _draw(2000, 4, seed=2, member_scale=0.3)  # under-dispersive: U shape
    h = RankHistogram().compute(x, y).values
    assert h[0] > 2 / 5 * 0.5 and h[-1] > 2 / 5 * 0.5 and h[2] < 1 / 5
    under = float(RankReliability().compute(x, y))
    assert under > 0.3
    # ties: all members equal the truth -> the case is spread evenly over all bins
    y1 = _truth(np.ones((1, 4, 4)))
    x1 = _ens(np.ones((3, 1, 4, 4)))
    np.testing.assert_allclose(rank_histogram_counts(x1, y1).values, np.full(4, 16 / 4))
    with pytest.raises(DataError, match="needs an ensemble"):
        RankHistogram().compute(x.isel(member=0, drop=True), y)


# -------------------------------------------------------------------------- energy score
def test_energy_score_equals_crps_for_a_one_point_field():
    """A spatially constant field is one value: ||d|| = sqrt(<d^2>) = |d| (weights sum to 1), so ES = CRPS."""
    rng = np.random.default_rng(3)
    x = _ens(np.broadcast_to(rng.normal(size=(5, 50, 1, 1)), (5, 50, 4, 4)).copy())
    y = _truth(np.broadcast_to(rng.normal(size=(50, 1, 1)), (50, 4, 4)).copy())
    es = EnergyScore(spread_estimator="all_pairs").compute_chunk(x, y)
    np.testing.assert_allclose(es.values, CRPS().compute_chunk(x, y).values, rtol=1e-12, atol=1e-14)
    # the WeatherBench2 adjacent-pairs estimator agrees in expectation
    assert float(EnergyScore().compute(x, y)) == pytest.approx(float(CRPS().compute(x, y)), rel=0.1)
    with pytest.raises(ConfigError, match="adjacent"):
        EnergyScore(spread_estimator="nosuch")


def test_energy_score_properties():
    x, y = _draw(400, 6, seed=4)
    es = float(EnergyScore().compute(x, y))
    es_all = float(EnergyScore(spread_estimator="all_pairs").compute(x, y))
    assert es == pytest.approx(es_all, rel=0.05)  # both unbiased for the same score
    # deterministic / one member: ES = time mean of the area-weighted RMS error
    det = x.isel(member=0, drop=True)
    ref = float(np.sqrt(((det - y) ** 2).weighted(_w()).mean(("latitude", "longitude"))).mean())
    assert float(EnergyScore().compute(det, y)) == pytest.approx(ref, rel=1e-12)
    # the perfect (exchangeable) ensemble beats a shifted one
    assert es < float(EnergyScore().compute(x + 0.5, y))


def _w():
    b = np.deg2rad(np.concatenate([[-90.0], (LAT[:-1] + LAT[1:]) / 2, [90.0]]))
    return xr.DataArray(np.sin(b[1:]) - np.sin(b[:-1]), dims=("latitude",), coords={"latitude": LAT})


# -------------------------------------------------------------------------- spread / skill
@pytest.mark.parametrize("m", [2, 4, 10])
def test_unbiased_spread_skill_is_one_for_a_perfect_ensemble(m):
    """n x 16 cells exchangeable cases: the ratio's relative standard error is ~ 1/sqrt(n*16/2) < 1 %; 4 % is 4+ SE."""
    x, y = _draw(4000, m, seed=10 + m)
    assert float(UnbiasedSpreadSkill().compute(x, y)) == pytest.approx(1.0, abs=0.04)
    # the biased WB2 ratio sits at sqrt(m/(m+1)); Fortin's factor repairs it
    assert float(SpreadSkill().compute(x, y)) == pytest.approx(np.sqrt(m / (m + 1)), abs=0.04)
    assert float(SpreadSkill(finite_ensemble_correction=True).compute(x, y)) == pytest.approx(1.0, abs=0.04)
    # the unbiased ensemble-mean RMSE estimates the skill of the infinite ensemble (sqrt(1) here)
    assert float(UnbiasedEnsembleMeanRMSE().compute(x, y)) == pytest.approx(1.0, abs=0.04)


def test_unbiased_spread_skill_below_one_when_underdispersive():
    x, y = _draw(2000, 5, seed=20, member_scale=0.5)
    ssr = float(UnbiasedSpreadSkill().compute(x, y))
    assert ssr == pytest.approx(0.5, abs=0.04)  # spread 0.5 against an error std of 1
    assert float(UnbiasedSpreadSkill().compute(_draw(2000, 5, 21, member_scale=2.0)[0], y)) > 1.0
    assert np.isnan(float(UnbiasedSpreadSkill().compute(x.isel(member=[0]), y)))


# -------------------------------------------------------------------------- CRPSS
@pytest.fixture(scope="module")
def world():
    variables = ["geopotential", "2m_temperature"]
    truth = mock_era5("2020-01-01", periods=4 * 8, nlat=8, nlon=16, variables=variables, canonical=True,
                      statics=False).load()
    train = mock_era5("2019-01-01", periods=1460, nlat=8, nlon=16, variables=variables, canonical=True,
                      statics=False, time_chunk=365, seed=0)
    clim = compute_climatology(train, window=61)
    return truth, clim


def test_crpss_of_the_climatology_against_itself_is_zero(world):
    truth, clim = world
    inits = truth.time.values[:12:3]
    leads = pd.timedelta_range("0h", "2D", freq="12h")
    c = climatology_forecast(clim, inits, leads, like=truth)
    y = align_truth(c, truth[list(c.data_vars)]).drop_vars("valid_time")
    s = CRPSS(climatology=clim[list(c.data_vars)]).compute(c, y)
    for v in s.data_vars:
        np.testing.assert_allclose(s[v].values, 0.0, atol=1e-12)
    # a perfect forecast has CRPSS 1; an ensemble reference (climatology +- noise) is accepted
    assert float(CRPSS(climatology=clim[["2m_temperature"]]).compute(y[["2m_temperature"]], y[["2m_temperature"]])
                 ["2m_temperature"].min()) == 1.0
    ens_clim = xr.concat([clim + d for d in (-1.0, 0.0, 1.0)], dim="realization")
    s2 = CRPSS(climatology=ens_clim[["2m_temperature"]]).compute(c[["2m_temperature"]], y[["2m_temperature"]])
    assert np.isfinite(s2["2m_temperature"].values).all()
    with pytest.raises(ConfigError, match="needs a climatology"):
        CRPSS().compute(c, y)
    # through the scorecard: the climatology baseline scores CRPSS 0
    sc = evaluate({"model": c}, truth, metrics=["crpss"], climatology=clim, baselines=["climatology"],
                  variables=["z500", "t2m"])
    np.testing.assert_allclose(sc["score"].sel(model="climatology", metric="crpss").values, 0.0, atol=1e-12)


# -------------------------------------------------------------------------- ensemble dim names
def test_realization_and_member_give_identical_scores(world):
    truth, clim = world
    inits = truth.time.values[:12:3]
    leads = pd.timedelta_range("0h", "2D", freq="12h")
    base = climatology_forecast(clim, inits, leads, like=truth)
    rng = np.random.default_rng(5)
    members = xr.concat([base + rng.normal(scale=0.3, size=1)[0] * base.std() for _ in range(4)], dim="member")
    members = members.transpose("time", "prediction_timedelta", "member", ...)
    wb2 = members.rename(member="realization")
    metrics = ["rmse", "crps", "spread", "spread_skill", "spread_skill_unbiased", "energy_score", "rank_reliability"]
    a = evaluate(members, truth, metrics=metrics, baselines=(), variables=["z500", "t2m"])
    b = evaluate(wb2, truth, metrics=metrics, baselines=(), variables=["z500", "t2m"])
    xr.testing.assert_identical(a["score"], b["score"])
    y = align_truth(members, truth[list(base.data_vars)]).drop_vars("valid_time")
    for metric in (RMSE(), CRPS(), EnsembleSpread(), UnbiasedSpreadSkill(), EnergyScore(), RankHistogram()):
        xr.testing.assert_allclose(metric.compute(members, y), metric.compute(wb2, y))
    h = evaluate_rank_histograms(wb2, truth, variables=["t2m"])
    np.testing.assert_allclose(h["histogram"].sum("bins").values, 1.0)
    with pytest.raises(DataError, match="both ensemble dimensions"):
        RMSE().compute(xr.concat([members.expand_dims(realization=[0])], dim="realization"), y)
