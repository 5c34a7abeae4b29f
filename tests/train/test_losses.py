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
