"""Area- and channel-weighted MSE."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from atmos.grids import HealpixGrid, LatLonGrid
from atmos.train.config import ANEMOI_VARIABLE_WEIGHTS
from atmos.train.losses import AreaWeightedMSE, channel_weights, grid_area_weights, level_weight, weighted_mse


def test_area_weights_match_the_grid_and_sum_to_one():
    g = LatLonGrid.equiangular(16, 32)
    a = grid_area_weights(g)
    assert a.shape == (16, 32)
    assert float(a.sum()) == pytest.approx(1.0, abs=1e-6)
    assert np.allclose(a.numpy(), g.area_weights() / g.area_weights().sum(), atol=1e-8)
    assert a[0, 0] < a[8, 0]  # polar cells are smaller
    h = grid_area_weights(HealpixGrid(4))
    assert h.shape == (192,) and torch.allclose(h, torch.full((192,), 1 / 192))


def test_loss_equals_the_weighted_formula():
    torch.manual_seed(0)
    g = LatLonGrid.equiangular(8, 16)
    area = grid_area_weights(g)
    pred, target = torch.randn(3, 4, 8, 16), torch.randn(3, 4, 8, 16)
    w = torch.tensor([12.0, 6.0, 1.0, 0.5])
    s = torch.tensor([2.0, 1.0, 0.5, 4.0])
    loss = AreaWeightedMSE(area, w, s)(pred, target)
    err = ((pred - target) / s.view(1, 4, 1, 1)) ** 2
    per = (err * area).sum((-2, -1))  # [B, C]
    expected = ((per * w).sum(-1) / w.sum()).mean()
    assert float(loss) == pytest.approx(float(expected), rel=1e-6)


def test_area_weighting_discounts_polar_errors():
    g = LatLonGrid.equiangular(8, 16)
    crit = AreaWeightedMSE(grid_area_weights(g))
    target = torch.zeros(1, 1, 8, 16)
    polar, equatorial = target.clone(), target.clone()
    polar[..., 0, :] = 1.0
    equatorial[..., 4, :] = 1.0
    assert float(crit(polar, target)) < 0.3 * float(crit(equatorial, target))
    flat = AreaWeightedMSE(None, grid_shape=(8, 16))
    assert float(flat(polar, target)) == pytest.approx(float(flat(equatorial, target)))


def test_channel_weights_follow_anemoi_defaults():
    chans = [("geopotential", 500), ("temperature", 850), ("2m_temperature", None), ("total_precipitation_6hr", None)]
    w = channel_weights(chans, ANEMOI_VARIABLE_WEIGHTS, "linear")
    assert torch.allclose(w, torch.tensor([12 * 0.7, 6 * 1.05, 1.0, 0.025]))
    assert level_weight(100, "relu") == pytest.approx(0.2)
    assert level_weight(850, "relu") == pytest.approx(0.85)
    assert level_weight(850, "none") == 1.0


def test_weighted_mse_checks_shapes():
    with pytest.raises(ValueError, match=r"\[\.\.\., \(8, 16\)\]"):
        weighted_mse(torch.zeros(2, 8, 15), torch.zeros(2, 8, 15), torch.ones(8, 16))


# -- adjusted MSE on spherical harmonics (loss.name: amse) -------------------------------------------------


def _amse_pair(grid, shape):
    from atmos.train.core import area_weights
    from atmos.train.losses import build_loss

    area = area_weights(grid, shape)
    return build_loss("amse", grid, area), build_loss("mse", grid, area)


@pytest.mark.parametrize(
    "grid,shape", [(LatLonGrid.equiangular(16, 32), (16, 32)), (HealpixGrid(4), (12, 4, 4))], ids=["latlon", "faces"]
)
def test_amse_is_the_mse_for_a_coherent_prediction_and_zero_at_equality(grid, shape):
    torch.manual_seed(0)
    amse, mse = _amse_pair(grid, shape)
    y = torch.randn(2, 3, *shape)
    for c in (0.3, 1.0, 1.7):  # coherence 1 at every degree: the two losses agree
        torch.testing.assert_close(amse.per_channel(c * y, y), mse.per_channel(c * y, y), rtol=1e-4, atol=1e-6)
    pred = y.clone().requires_grad_()
    loss = amse(pred, y)
    loss.backward()
    assert float(loss.detach()) < 1e-5 and torch.isfinite(pred.grad).all() and float(pred.grad.abs().max()) < 1e-6


def test_amse_does_not_reward_damping_an_unpredictable_field():
    """The double penalty: for a prediction uncorrelated with the target, MSE is smallest at zero
    amplitude, AMSE at the target's amplitude (Subich et al. 2025)."""
    from atmos.grids.sht import real_sh_basis

    rng = np.random.default_rng(1)
    grid = LatLonGrid.equiangular(16, 32)
    amse, mse = _amse_pair(grid, (16, 32))
    basis = real_sh_basis(*grid.centers(), 10)[0]  # band-limited fields, well inside the transform's lmax

    def field():
        return torch.as_tensor((rng.standard_normal((64, basis.shape[1])) @ basis.T).reshape(64, 1, 16, 32),
                               dtype=torch.float32)

    y, z = field(), field()  # independent, equal expected power
    alphas = [0.0, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5]
    a = [float(amse(al * z, y)) for al in alphas]
    m = [float(mse(al * z, y)) for al in alphas]
    assert int(np.argmin(m)) == 0
    assert int(np.argmin(a)) in (alphas.index(0.75), alphas.index(1.0), alphas.index(1.25)), a
    assert a[alphas.index(1.0)] < 0.9 * a[0], a


def test_amse_is_a_config_choice_with_a_clear_error(tiny_config):
    from atmos.errors import ConfigError
    from atmos.train import fit, load_config

    with pytest.raises(ConfigError, match="loss.name.*amse"):
        load_config(tiny_config(loss={"name": "spectral"}))
    res = fit(tiny_config(loss={"name": "amse", "lmax": 6},
                          schedule={"epochs": 1, "warmup_steps": 1, "max_steps_per_epoch": 2},
                          validation={"samples": 2, "steps": 1}, output={"name": "amse", "progress": False}))
    assert res.status == "finished" and np.isfinite(res.history[0]["train_loss"])
