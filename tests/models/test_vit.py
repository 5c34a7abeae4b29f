"""Tests of the lat-lon ViT emulator and its earth padding."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from atmos.errors import ConfigError, DataError, GridError
from atmos.models.layers import earth_pad
from atmos.models.vit import ViT, ViTConfig

NLAT, NLON = 16, 32


def small_config(**kw) -> ViTConfig:
    base = {
        "inputs": ["geopotential_500", "temperature_850", "specific_humidity_700"],
        "outputs": ["geopotential_500", "temperature_850"],
        "forcings": ["toa_incident_solar_radiation"],
        "statics": ["land_sea_mask", "geopotential_at_surface"],
        "history": 2,
        "nlat": NLAT,
        "nlon": NLON,
        "patch_size": 2,
        "embed_dim": 32,
        "depth": 2,
        "num_heads": 2,
        "window_size": [2, 2],
    }
    base.update(kw)
    return ViTConfig(**base)


def batch(cfg: ViTConfig, b: int = 2, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(b, cfg.history, len(cfg.inputs), cfg.nlat, cfg.nlon, generator=g)
    f = torch.randn(b, cfg.history + 1, len(cfg.forcings), cfg.nlat, cfg.nlon, generator=g)
    s = torch.randn(len(cfg.statics), cfg.nlat, cfg.nlon, generator=g)
    return x, f, s


# -----------------------------------------------------------------------------
# earth padding
# -----------------------------------------------------------------------------
def test_earth_pad_values():
    nlat, nlon = 6, 8
    x = torch.arange(nlat * nlon, dtype=torch.float64).reshape(1, nlat, nlon)
    ps, pn, pw, pe = 2, 3, 2, 1
    y = earth_pad(x, (ps, pn), (pw, pe))[0]
    assert y.shape == (nlat + ps + pn, nlon + pw + pe)
    for r in range(-ps, nlat + pn):
        for c in range(-pw, nlon + pe):
            if r < 0:  # across the south pole: row -1-k mirrors row k, 180 degrees away
                src_r, shift = -1 - r, nlon // 2
            elif r >= nlat:  # across the north pole
                src_r, shift = 2 * nlat - 1 - r, nlon // 2
            else:
                src_r, shift = r, 0
            src_c = (c + shift) % nlon
            assert y[r + ps, c + pw] == x[0, src_r, src_c], (r, c)


def test_earth_pad_is_geometric_continuation():
    """Padded cells hold the data of the point reached by walking past the pole/dateline."""
    nlat, nlon, p = 8, 16, 3
    lat = -90 + (np.arange(nlat) + 0.5) * 180 / nlat
    lon = np.arange(nlon) * 360 / nlon
    la, lo = np.meshgrid(np.deg2rad(lat), np.deg2rad(lon), indexing="ij")
    xyz = torch.as_tensor(np.stack([np.cos(la) * np.cos(lo), np.cos(la) * np.sin(lo), np.sin(la)]))
    y = earth_pad(xyz, (p, p), (p, p)).numpy()
    # extended meridian coordinates: latitude keeps going beyond +-90, longitude beyond [0, 360)
    lat_e = -90 + (np.arange(-p, nlat + p) + 0.5) * 180 / nlat
    lon_e = np.arange(-p, nlon + p) * 360 / nlon
    la, lo = np.meshgrid(np.deg2rad(lat_e), np.deg2rad(lon_e), indexing="ij")
    expect = np.stack([np.cos(la) * np.cos(lo), np.cos(la) * np.sin(lo), np.sin(la)])
    np.testing.assert_allclose(y, expect, atol=1e-12)


def test_earth_pad_errors():
    with pytest.raises(GridError, match="even nlon"):
        earth_pad(torch.zeros(4, 5), (1, 1), (0, 0))
    with pytest.raises(GridError, match="pad_lat"):
        earth_pad(torch.zeros(4, 6), (5, 0), (0, 0))


@pytest.mark.parametrize(
    "nlat,nlon,patch,win", [(32, 64, 2, (4, 4)), (32, 64, 4, (2, 4)), (19, 36, 2, (3, 2))]
)
def test_padding_divides_patch_windows(nlat, nlon, patch, win):
    cfg = ViTConfig(nlat=nlat, nlon=nlon, patch_size=patch, window_size=list(win))
    (s, n), (w, e) = cfg.padding()
    assert min(s, n, w, e) >= cfg.min_pad
    assert (nlat + s + n) % (patch * win[0]) == 0
    assert (nlon + w + e) % (patch * win[1]) == 0


# -----------------------------------------------------------------------------
# model contract
# -----------------------------------------------------------------------------
def test_shapes_and_schema():
    cfg = small_config()
    model = ViT(cfg)
    x, f, s = batch(cfg)
    delta, state = model(x, f, s)
    assert delta.shape == (2, 2, NLAT, NLON)
    assert state is None
    assert model.schema.outputs == ["geopotential_500", "temperature_850"]
    assert model.schema.in_channels == 2 * 3 + 3 * 1 + 2
    assert model.schema.grid == {"type": "latlon", "shape": [NLAT, NLON], "poles": False}
    assert torch.isfinite(delta).all()


def test_default_config_is_small():
    model = ViT()
    n = sum(p.numel() for p in model.parameters())
    assert 3e5 < n < 3e6
    assert model.tokens[0] % model.config.window_size[0] == 0
    assert model.tokens[1] % model.config.window_size[1] == 0


def test_statics_layouts_agree():
    cfg = small_config()
    model = ViT(cfg).eval()
    x, f, s = batch(cfg)
    a, _ = model(x, f, s)
    b, _ = model(x, f, s.expand(2, *s.shape))
    c, _ = model(x, f, s.expand(2, *s.shape)[:, None])
    torch.testing.assert_close(a, b)
    torch.testing.assert_close(a, c)


@pytest.mark.parametrize("pos", ["fourier", "learned"])
def test_gradient_reaches_every_parameter(pos):
    cfg = small_config(pos_encoding=pos)
    model = ViT(cfg)
    x, f, s = batch(cfg)
    delta, _ = model(x, f, s)
    delta.square().mean().backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_inputs_forcings_and_statics_all_matter():
    cfg = small_config()
    model = ViT(cfg).eval()
    x, f, s = batch(cfg)
    base, _ = model(x, f, s)
    for i, changed in enumerate([(x + 1, f, s), (x, f + 1, s), (x, f, s + 1)]):
        out, _ = model(*changed)
        assert not torch.allclose(out, base), i


def test_forcing_at_target_step_matters():
    cfg = small_config()
    model = ViT(cfg).eval()
    x, f, s = batch(cfg)
    base, _ = model(x, f, s)
    f2 = f.clone()
    f2[:, -1] += 1.0
    out, _ = model(x, f2, s)
    assert not torch.allclose(out, base)


def test_tensor_errors_name_channels():
    cfg = small_config()
    model = ViT(cfg)
    x, f, s = batch(cfg)
    with pytest.raises(DataError, match="toa_incident_solar_radiation"):
        model(x, None, s)
    with pytest.raises(DataError, match="specific_humidity_700"):
        model(x[:, :, :2], f, s)
    with pytest.raises(DataError, match="steps=3"):
        model(x, f[:, :2], s)
    with pytest.raises(GridError, match="grid dimensions"):
        model(x[..., :8], f, s)
    with pytest.raises(DataError, match="land_sea_mask"):
        model(x, f, None)


def test_config_errors():
    with pytest.raises(ConfigError, match="divisible by num_heads"):
        small_config(embed_dim=30, num_heads=4)
    with pytest.raises(ConfigError, match="pos_encoding"):
        small_config(pos_encoding="rope")
    with pytest.raises(ConfigError, match="nlon"):
        small_config(nlon=33)
    with pytest.raises(ConfigError, match="first 2 input channels"):
        ViT(small_config(outputs=["temperature_850", "geopotential_500"]))
