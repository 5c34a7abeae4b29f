"""The hybrid ViT/U-Net: shapes, gradients, longitude equivariance, latent API, switches, errors."""

from __future__ import annotations

import pytest
import torch

from atmos.errors import ConfigError
from atmos.models import build, build_from_config, config_to_dict, has_spectral_norm
from atmos.models.decoder import LatentDecoder
from atmos.models.hybrid import HybridConfig, HybridViTUNet
from atmos.testing import TINY_MODEL_CONFIGS

TINY = TINY_MODEL_CONFIGS["hybrid"]


def _batch(m: HybridViTUNet, b: int = 2, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    s = m.schema
    nlat, nlon = m.grid
    x = torch.randn(b, s.history, len(s.inputs), nlat, nlon, generator=g)
    f = torch.randn(b, s.history + 1, len(s.forcings), nlat, nlon, generator=g)
    st = torch.randn(len(s.statics), nlat, nlon, generator=g)
    return x, f, st


def test_shapes_and_every_parameter_gets_a_gradient():
    m = build("hybrid", **TINY)
    x, f, st = _batch(m)
    out, state = m(x, f, st)
    assert out.shape == (2, m.schema.n_prognostic, *m.grid) and state is None and not m.recurrent
    out.square().mean().backward()
    missing = [n for n, p in m.named_parameters() if p.grad is None or not torch.any(p.grad != 0)]
    assert not missing, missing


def test_default_matches_the_sample_vit_size():
    m = HybridViTUNet()
    assert m.grid == (32, 64) and m.coarse == (8, 16)
    assert 0.2e6 < sum(p.numel() for p in m.parameters()) < 1.0e6


@pytest.mark.parametrize("shift", [8, 16])
def test_longitude_shift_equivariance_without_position_encoding(shift):
    """Spherical padding, average pooling and window attention commute with a shift by whole coarse windows."""
    m = build("hybrid", **{**TINY, "pos_encoding": "none"}).eval()
    # coarsest level: 8x16 / 4 = 2x4 cells in windows of 1x2 -> shifts by multiples of 8 fine cells
    x, f, st = _batch(m)
    with torch.no_grad():
        out, _ = m(x, f, st)
        rolled, _ = m(torch.roll(x, shift, -1), torch.roll(f, shift, -1), torch.roll(st, shift, -1))
    torch.testing.assert_close(rolled, torch.roll(out, shift, -1), atol=1e-5, rtol=1e-5)


def test_position_encoding_breaks_the_symmetry():
    m = build("hybrid", **TINY).eval()
    assert m.position_encoding() is not None
    x, f, st = _batch(m)
    with torch.no_grad():
        out, _ = m(x, f, st)
        rolled, _ = m(torch.roll(x, 8, -1), torch.roll(f, 8, -1), torch.roll(st, 8, -1))
    assert not torch.allclose(rolled, torch.roll(out, 8, -1), atol=1e-5)


def test_batch_members_are_independent():
    m = build("hybrid", **TINY).eval()
    x, f, st = _batch(m, b=3)
    with torch.no_grad():
        out, _ = m(x, f, st)
        one, _ = m(x[1:2], f[1:2], st)
    torch.testing.assert_close(one, out[1:2], atol=1e-5, rtol=1e-5)


def test_latent_api_and_a_decoder_on_it():
    m = build("hybrid", **TINY).eval()
    x, f, st = _batch(m)
    spec = m.latent_spec()
    assert spec == {"kind": "pixels", "dim": TINY["channels"][0], "grid": list(m.grid)}
    with torch.no_grad():
        lat, _ = m.forward_latent(x, f, st)
        out, _ = m(x, f, st)
        torch.testing.assert_close(m.decode_latent(lat), out)
        dec = LatentDecoder.for_backbone(m, ["total_precipitation_6hr"], hidden=[8], fourier_features={"n": 2, "scale": 1})
        y = dec(lat)
    assert lat.shape == (2, TINY["channels"][0], *m.grid) and y.shape == (2, 1, *m.grid)


def test_activation_checkpointing_and_channels_last_change_nothing():
    torch.manual_seed(0)
    m = build("hybrid", **TINY)
    x, f, st = _batch(m)
    out, _ = m(x, f, st)
    out.square().sum().backward()
    g0 = {n: p.grad.clone() for n, p in m.named_parameters()}
    m.zero_grad()
    m.activation_checkpointing = True
    m.channels_last = True
    out2, _ = m(x, f, st)
    out2.square().sum().backward()
    torch.testing.assert_close(out2, out, atol=1e-5, rtol=1e-5)
    for n, p in m.named_parameters():
        torch.testing.assert_close(p.grad, g0[n], atol=1e-5, rtol=1e-4)


def test_spectral_norm_switch_and_config_round_trip():
    m = build("hybrid", **TINY, spectral_norm=True)
    assert has_spectral_norm(m)
    plain = build("hybrid", **TINY)
    cfg = config_to_dict(plain)
    assert cfg["name"] == "hybrid"
    again = build_from_config(cfg)
    again.load_state_dict(plain.state_dict())
    x, f, st = _batch(plain)
    with torch.no_grad():
        torch.testing.assert_close(again(x, f, st)[0], plain(x, f, st)[0])
    assert "pos_features" not in plain.state_dict()


@pytest.mark.parametrize(
    ("bad", "match"),
    [
        ({"nlat": 10}, "nlat must divide by"),
        ({"window_size": [3, 2]}, "window"),
        ({"channels": []}, "channels"),
        ({"pos_encoding": "rope"}, "pos_encoding"),
        ({"embed_dim": 10, "num_heads": 4}, "divisible"),
        ({"nlon": 15}, "even"),
    ],
)
def test_bad_configs_are_refused_with_the_fix(bad, match):
    with pytest.raises(ConfigError, match=match):
        HybridConfig(**{**TINY, **bad})
