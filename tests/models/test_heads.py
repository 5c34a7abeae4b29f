"""DownscalingHead: shapes and grids, conservation, spherical padding, equivariance, gradients."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from atmos.errors import ConfigError, GridError
from atmos.grids.latlon import LatLonGrid
from atmos.models.heads import DownscalingHead, DownscalingHeadConfig, coarse_grid, sphere_pad
from atmos.models.registry import build, build_from_config, config_to_dict


def _head(**kw) -> DownscalingHead:
    base = {
        "channels": ["a", "b"],
        "nlat": 16,
        "nlon": 32,
        "factor": 4,
        "hidden": 8,
        "fine_hidden": 8,
        "coarse_blocks": 1,
        "fine_blocks": 1,
    }
    base.update(kw)
    torch.manual_seed(0)
    m = build("downscale", **base)
    with torch.no_grad():  # the output layer starts at zero; give it weights so every path is exercised
        m.out.weight.normal_(0, 0.1)
    return m


@pytest.mark.parametrize(
    "kw",
    [
        {},
        {"factor": 2},
        {"factor": 8, "nlat": 16, "nlon": 32},
        {"upsample": "interp", "base": "bicubic"},
        {"base": "none", "position_features": False, "conserve": False},
        {"statics": ["orog", "lsm", "x"]},
        {"backbone_channels": 5},
    ],
)
def test_output_shape_and_grid(kw):
    m = _head(**kw)
    f = m.config.factor
    x = torch.randn(3, 2, 16 // f, 32 // f)
    statics = torch.randn(len(m.config.statics), 16, 32) if m.config.statics else None
    feats = torch.randn(3, 5, 16 // f, 32 // f) if m.config.backbone_channels else None
    y = m(x, statics, feats)
    assert y.shape == (3, 2, 16, 32)
    assert m.fine_grid == LatLonGrid.equiangular(16, 32)
    assert m.coarse_grid.shape == (16 // f, 32 // f)
    # coarse cells are unions of fine cells: coarse bounds are a subset of the fine bounds
    assert np.allclose(m.coarse_grid.lat_bounds, m.fine_grid.lat_bounds[::f])
    assert np.allclose(m.coarse_grid.lon_bounds, m.fine_grid.lon_bounds[::f])
    assert torch.isfinite(y).all()


def test_conserve_reproduces_the_coarse_input():
    m = _head(statics=["orog"])
    x = torch.randn(4, 2, 4, 8, dtype=torch.float64)
    m = m.double()
    y = m(x, torch.randn(1, 16, 32, dtype=torch.float64))
    torch.testing.assert_close(m.coarsen(y), x, rtol=0, atol=1e-10)
    m.config.conserve = False
    assert (m.coarsen(m(x, torch.randn(1, 16, 32, dtype=torch.float64))) - x).abs().max() > 1e-3


def test_zero_initialised_head_is_the_base_interpolation():
    torch.manual_seed(1)
    m = build(
        "downscale", channels=["a"], nlat=16, nlon=32, factor=4, hidden=8, fine_hidden=8, conserve=False
    )
    x = torch.randn(2, 1, 4, 8)
    torch.testing.assert_close(m(x), m.interpolate(x))
    const = torch.full((2, 1, 4, 8), 3.5)
    for base in ("bilinear", "bicubic"):
        m.config.base = base
        torch.testing.assert_close(m.interpolate(const), torch.full((2, 1, 16, 32), 3.5))


def test_sphere_pad_is_periodic_and_continues_across_the_poles():
    x = torch.arange(2 * 6 * 8, dtype=torch.float32).reshape(2, 6, 8)
    p = 2
    y = sphere_pad(x, p)
    assert y.shape == (2, 10, 12)
    inner = y[:, p:-p]
    torch.testing.assert_close(inner[..., p:-p], x)
    torch.testing.assert_close(inner[..., :p], x[..., -p:])  # west pad = east edge
    torch.testing.assert_close(inner[..., -p:], x[..., :p])
    for k in range(p):  # row k beyond the south pole = row k inside, opposite meridian
        torch.testing.assert_close(y[:, p - 1 - k, p:-p], x[:, k].roll(4, dims=-1))
        torch.testing.assert_close(y[:, -p + k, p:-p], x[:, -1 - k].roll(4, dims=-1))


def test_longitude_roll_equivariance():
    """Without position features, rolling the input by one coarse cell rolls the output by ``factor``."""
    m = _head(position_features=False)
    x = torch.randn(2, 2, 4, 8)
    y = m(x)
    y_rolled = m(x.roll(1, dims=-1))
    torch.testing.assert_close(y_rolled, y.roll(4, dims=-1), rtol=1e-5, atol=1e-5)


def test_gradient_flows_to_every_parameter_and_the_input():
    m = _head(statics=["orog"], backbone_channels=3)
    x = torch.randn(2, 2, 4, 8, requires_grad=True)
    feats = torch.randn(2, 3, 4, 8, requires_grad=True)
    m(x, torch.randn(1, 16, 32), feats).square().mean().backward()
    for name, p in m.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name
    assert x.grad.abs().sum() > 0 and feats.grad.abs().sum() > 0


def test_registry_round_trip_and_saved_statics():
    m = _head(statics=["orog"])
    with torch.no_grad():
        m.static_fields.normal_()
    cfg = config_to_dict(m)
    assert cfg["name"] == "downscale" and dataclasses.asdict(m.config) == {
        k: v for k, v in cfg.items() if k != "name"
    }
    m2 = build_from_config(cfg)
    m2.load_state_dict(m.state_dict(), strict=True)
    x = torch.randn(1, 2, 4, 8)
    torch.testing.assert_close(m2(x), m(x))  # statics default to the stored buffer
    torch.testing.assert_close(m(x), m(x, m.static_fields))
    assert "static_fields" in m.state_dict()
    assert m.schema.outputs == ["a", "b"] and m.schema.statics == ["orog"]


def test_bad_inputs_raise_clear_errors():
    m = _head(statics=["orog"])
    with pytest.raises(GridError, match=r"coarse input \[B, 2, 4, 8\]"):
        m(torch.randn(1, 2, 8, 16))
    with pytest.raises(GridError, match="statics"):
        m(torch.randn(1, 2, 4, 8), torch.randn(2, 16, 32))
    with pytest.raises(ConfigError, match="divide"):
        build("downscale", nlat=32, nlon=64, factor=3)
    with pytest.raises(ConfigError, match="upsample"):
        build("downscale", upsample="transpose")
    with pytest.raises(GridError, match="factor"):
        coarse_grid(LatLonGrid.equiangular(32, 64), 0)
    assert isinstance(DownscalingHeadConfig(), DownscalingHeadConfig)


def test_sphere_pad_equals_earth_pad():
    """The gather padding of the lat-lon convolutions is CREDIT's earth padding, symmetric."""
    from atmos.models.layers import earth_pad

    x = torch.randn(2, 3, 8, 16)
    for p in (1, 2, 3):
        torch.testing.assert_close(sphere_pad(x, p), earth_pad(x, (p, p), (p, p)), rtol=0, atol=0)
