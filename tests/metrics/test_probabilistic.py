"""Ensemble metrics: fair CRPS (hand cases, MAE limit, unbiasedness), spread and spread/skill."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr
from scipy import stats

from atmos.metrics import CRPS, MAE, EnsembleMeanRMSE, EnsembleSpread, SpreadSkill
from atmos.metrics.probabilistic import crps_pointwise

LAT = np.array([-45.0, 45.0])
LON = np.array([0.0, 180.0])


def _ens(members: np.ndarray) -> xr.DataArray:
    """[member, time, lat, lon] -> DataArray."""
    return xr.DataArray(members, dims=("member", "time", "latitude", "longitude"),
                        coords={"time": np.arange(members.shape[1]), "latitude": LAT, "longitude": LON})


def _truth(values: np.ndarray) -> xr.DataArray:
    return xr.DataArray(values, dims=("time", "latitude", "longitude"),
                        coords={"time": np.arange(values.shape[0]), "latitude": LAT, "longitude": LON})


def _brute_crps(x: np.ndarray, y: np.ndarray, fair: bool) -> np.ndarray:
    m = x.shape[0]
    skill = np.abs(x - y).mean(0)
    pair = np.abs(x[:, None] - x[None, :]).sum((0, 1))
    return skill - pair / (2 * m * (m - 1) if fair else 2 * m * m)


def test_crps_hand_computed():
    y = _truth(np.full((1, 2, 2), 2.0))
    x = _ens(np.broadcast_to(np.array([0.0, 1.0, 3.0])[:, None, None, None], (3, 1, 2, 2)).copy())
    # skill (2 + 1 + 1)/3 = 4/3; sum_ij |xi - xj| = 2 (1 + 3 + 2) = 12
    assert float(CRPS().compute(x, y)) == pytest.approx(4 / 3 - 12 / (2 * 3 * 2))
    assert float(CRPS(fair=False).compute(x, y)) == pytest.approx(4 / 3 - 12 / (2 * 9))
    x2 = _ens(np.broadcast_to(np.array([0.0, 2.0])[:, None, None, None], (2, 1, 2, 2)).copy())
    y2 = _truth(np.ones((1, 2, 2)))
    assert float(CRPS().compute(x2, y2)) == pytest.approx(0.0, abs=1e-15)  # 1 - 4/4
    assert float(CRPS(fair=False).compute(x2, y2)) == pytest.approx(0.5)


@pytest.mark.parametrize("m", [2, 3, 7])
def test_crps_matches_brute_force(m):
    rng = np.random.default_rng(m)
    x = rng.normal(size=(m, 3, 2, 2))
    y = rng.normal(size=(3, 2, 2))
    for fair in (True, False):
        got = crps_pointwise(_ens(x), _truth(y), fair=fair).transpose("time", ...).values
        np.testing.assert_allclose(got, _brute_crps(x, y, fair), rtol=1e-12, atol=1e-12)


def test_single_member_crps_is_mae():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(1, 4, 2, 2))
    y = _truth(rng.normal(size=(4, 2, 2)))
    mae = MAE().compute(_ens(x).isel(member=0), y)
    np.testing.assert_allclose(CRPS().compute(_ens(x), y).values, mae.values, rtol=1e-12)
    np.testing.assert_allclose(CRPS().compute(_ens(x).isel(member=0), y).values, mae.values, rtol=1e-12)


def test_perfect_ensemble_scores_zero():
    y = _truth(np.random.default_rng(1).normal(size=(3, 2, 2)))
    x = xr.concat([y] * 5, dim="member")
    assert float(CRPS().compute(x, y)) == 0.0  # exact: the spread term is formed from member differences
    assert float(EnsembleMeanRMSE().compute(x, y)) == pytest.approx(0.0, abs=1e-12)


def test_fair_crps_is_unbiased_for_the_gaussian_crps():
    """Mean fair CRPS of 3-member N(0,1) ensembles = the analytic CRPS of N(0,1); the plain one is biased."""
    rng = np.random.default_rng(2)
    n, m, y0 = 40_000, 3, 0.7
    x = xr.DataArray(rng.normal(size=(m, n)), dims=("member", "sample"))
    y = xr.DataArray(np.full(n, y0), dims=("sample",))
    exact = y0 * (2 * stats.norm.cdf(y0) - 1) + 2 * stats.norm.pdf(y0) - 1 / np.sqrt(np.pi)
    fair = float(crps_pointwise(x, y).mean())
    plain = float(crps_pointwise(x, y, fair=False).mean())
    assert fair == pytest.approx(exact, abs=0.01)
    assert plain - exact > 0.05  # the ensemble CRPS over-penalises a small ensemble


def test_spread_and_spread_skill():
    x = _ens(np.stack([np.zeros((2, 2, 2)), np.full((2, 2, 2), 2.0)]))
    y = _truth(np.full((2, 2, 2), 1.0))
    assert float(EnsembleSpread().compute(x, y)) == pytest.approx(np.sqrt(2.0))  # ddof=1 variance of {0, 2}
    assert float(EnsembleMeanRMSE().compute(x, y)) == 0.0
    det = x.isel(member=0)
    assert float(EnsembleSpread().compute(det, y)) == 0.0
    assert float(SpreadSkill().compute(det, y)) == 0.0


@pytest.mark.parametrize("m", [2, 5])
def test_spread_skill_of_a_reliable_ensemble(m):
    """Members and truth drawn from the same distribution: SSR = sqrt(m/(m+1)), or 1 with the correction."""
    rng = np.random.default_rng(m)
    n = 5_000  # x 4 cells
    mu = rng.normal(size=(n, 2, 2))  # predictable part, known to the ensemble
    y = _truth(mu + rng.normal(size=(n, 2, 2)))
    x = _ens(mu + rng.normal(size=(m, n, 2, 2)))
    assert float(SpreadSkill().compute(x, y)) == pytest.approx(np.sqrt(m / (m + 1)), rel=0.03)
    assert float(SpreadSkill(finite_ensemble_correction=True).compute(x, y)) == pytest.approx(1.0, rel=0.03)
