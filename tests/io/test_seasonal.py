"""The seasonal cycle behind ``data.seasonal_harmonics``: exact fits, storage, errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from atmos.errors import ConfigError, DataError
from atmos.io.seasonal import SeasonalCycle, _basis, fit_seasonal_cycle

H6 = 6 * 3600 * 10**9


def _times(days: int = 400, step: int = H6) -> np.ndarray:
    t0 = np.datetime64("2018-01-01T00", "ns").astype(np.int64)
    return t0 + np.arange(days * 86_400 * 10**9 // step, dtype=np.int64) * step


def test_fit_recovers_a_known_cycle_per_time_of_day_and_offsets_reproduce_it():
    rng = np.random.default_rng(0)
    t = _times()
    N = 2
    coef = rng.normal(size=(4, 2 * N + 1, 3, 2, 5)).astype(np.float32)  # [S, 2N+1, C, *grid]
    truth = SeasonalCycle(torch.from_numpy(coef), H6, ["a", "b", "c"])
    z = truth.offset(t).numpy()  # [T, C, *grid]
    assert z.shape == (t.size, 3, 2, 5)
    # by hand: the slot of 06 UTC and the basis at that time
    j = 5  # 2018-01-02T06 -> slot 1
    phi = _basis(t[j : j + 1], N)[0]
    np.testing.assert_allclose(z[j], np.einsum("k,k...->...", phi, coef[1]), rtol=1e-5, atol=1e-5)
    fitted = fit_seasonal_cycle(z, t, H6, N, ["a", "b", "c"])
    np.testing.assert_allclose(fitted.coef.numpy(), coef, rtol=1e-4, atol=1e-4)


def test_noise_is_not_fitted_and_more_harmonics_fit_at_least_as_well():
    rng = np.random.default_rng(1)
    t = _times()
    phi = 2 * np.pi * (t / 86_400e9) / 365.2425
    signal = 3 * np.cos(phi) + np.sin(2 * phi)
    z = (signal[:, None] + rng.normal(scale=0.5, size=(t.size, 4))).astype(np.float32)[:, None]  # [T, 1, 4]
    res = []
    for n in (1, 2, 4):
        fit = fit_seasonal_cycle(z, t, H6, n, ["x"])
        res.append(float(np.mean((fit.offset(t).numpy() - z) ** 2)))
        if n >= 2:  # the true cycle is recovered to well within the noise (std 0.5)
            err = fit.offset(t).numpy()[:, 0] - signal[:, None]
            assert float(np.sqrt(np.mean(err**2))) < 0.1 and float(np.abs(err).max()) < 0.4
    assert res[0] > res[1] >= res[2] - 1e-9
    assert res[1] == pytest.approx(0.25, rel=0.1)  # what is left is the noise variance


def test_window_offsets_follow_the_window_times():
    t = _times()
    coef = torch.randn(4, 3, 2, 3)
    cyc = SeasonalCycle(coef, H6, ["a", "b"])
    last = torch.tensor([t[10], t[200]])
    off = cyc.window_offsets(last, history=2, steps=3)
    assert off.shape == (2, 5, 2, 3)
    torch.testing.assert_close(off[1], cyc.offset(t[199:204]))
    torch.testing.assert_close(off[0], cyc.offset(t[9:14]))


def test_meta_round_trip_and_errors():
    t = _times()
    z = np.random.default_rng(2).normal(size=(t.size, 2, 3)).astype(np.float32)
    cyc = fit_seasonal_cycle(z, t, H6, 3, ["a", "b"])
    back = SeasonalCycle.from_tensors({"coef": cyc.coef.clone()}, cyc.to_meta())
    assert back.harmonics == 3 and back.slots == 4 and back.names == ["a", "b"]
    torch.testing.assert_close(back.offset(t[:7]), cyc.offset(t[:7]))
    with pytest.raises(ConfigError, match="about a year"):
        fit_seasonal_cycle(z[:200], t[:200], H6, 3, ["a", "b"])
    with pytest.raises(ConfigError, match=">= 1"):
        fit_seasonal_cycle(z, t, H6, 0, ["a", "b"])
    with pytest.raises(DataError, match="no 'coef'"):
        SeasonalCycle.from_tensors({}, cyc.to_meta())
    with pytest.raises(DataError, match="channels"):
        SeasonalCycle(cyc.coef, H6, ["a"])


def test_daily_data_has_one_slot():
    day = 86_400 * 10**9
    t = _times(400, day)
    z = np.random.default_rng(3).normal(size=(t.size, 1, 2)).astype(np.float32)
    assert fit_seasonal_cycle(z, t, day, 1, ["a"]).slots == 1
