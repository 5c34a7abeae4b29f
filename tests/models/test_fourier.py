"""Random Fourier features: shape, unit modulus, rotation equivariance, frequency content."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from atmos.errors import ConfigError
from atmos.grids.latlon import LatLonGrid
from atmos.models import build
from atmos.models.decoder import LatentDecoder
from atmos.models.fourier import FourierFeatures, check_fourier_config, unit_vectors


def _grid_ff(n: int = 8, scale: float = 2.0, seed: int = 0, nlat: int = 32, nlon: int = 64) -> FourierFeatures:
    g = LatLonGrid.equiangular(nlat, nlon)
    return FourierFeatures(unit_vectors(g.lat[:, None], g.lon[None, :]), n, scale, seed)


def test_shape_and_unit_modulus():
    ff = _grid_ff(n=5)
    out = ff()
    assert out.shape == (10, 32, 64)
    # cos^2 + sin^2 = 1 for every frequency and point
    torch.testing.assert_close(out[:5] ** 2 + out[5:] ** 2, torch.ones(5, 32, 64))


def test_unit_vectors_are_unit():
    xyz = unit_vectors(np.array([-90.0, -30.0, 0.0, 45.0, 90.0])[:, None], np.array([0.0, 100.0, 359.0])[None, :])
    assert xyz.shape == (3, 5, 3)
    torch.testing.assert_close(xyz.norm(dim=0), torch.ones(5, 3))


def test_longitude_shift_is_a_rotation_of_the_frequencies():
    """gamma_B(R x) = gamma_{B R}(x): rolling the grid by k cells == rotating B about the pole."""
    ff = _grid_ff(n=6, scale=3.0)
    k = 5
    phi = 2 * math.pi * k / 64
    rz = torch.tensor(
        [[math.cos(phi), -math.sin(phi), 0.0], [math.sin(phi), math.cos(phi), 0.0], [0.0, 0.0, 1.0]]
    )
    # features at longitude lon + k * dlon, i.e. the map rolled by -k
    shifted = torch.roll(ff(), -k, dims=-1)
    rotated = ff.encode(ff.xyz, ff.frequencies @ rz)
    torch.testing.assert_close(shifted, rotated, atol=2e-4, rtol=0)


def _high_k_fraction(ff: FourierFeatures, kmin: int = 8) -> float:
    p = torch.fft.rfft(ff()[:, 8:24], dim=-1).abs() ** 2  # mid latitudes
    p = p[..., 1:]  # drop the mean
    return float(p[..., kmin:].sum() / p.sum())


def test_larger_scale_puts_more_power_at_high_wavenumbers():
    fr = [_high_k_fraction(_grid_ff(n=64, scale=s)) for s in (0.3, 1.0, 4.0)]
    assert fr[0] < fr[1] < fr[2]
    assert fr[0] < 0.05 and fr[2] > 0.3


def test_frequencies_are_saved_positions_are_not_and_seed_is_reproducible():
    a, b, c = _grid_ff(seed=1), _grid_ff(seed=1), _grid_ff(seed=2)
    assert list(a.state_dict()) == ["frequencies"]
    torch.testing.assert_close(a(), b())
    assert not torch.allclose(a.frequencies, c.frequencies)
    d = _grid_ff(seed=7)
    d.load_state_dict(a.state_dict())
    torch.testing.assert_close(d(), a())


@pytest.mark.parametrize(
    "bad",
    [{"n": 0, "scale": 1.0}, {"n": 4, "scale": -1.0}, {"n": 4, "scale": "x"}, {"n": 4, "freq": 2}, [4, 1.0], 3],
)
def test_bad_config_names_the_value_and_the_fix(bad):
    with pytest.raises(ConfigError, match="fourier_features") as err:
        check_fourier_config(bad)
    assert "null" in str(err.value)


def test_none_adds_nothing_and_defaults():
    assert check_fourier_config(None) is None
    assert check_fourier_config({"n": 4, "scale": 2}) == {"n": 4, "scale": 2.0, "seed": 0}


def test_downscaling_head_with_fourier_features():
    plain = build("downscale", nlat=32, nlon=64, factor=4)
    head = build("downscale", nlat=32, nlon=64, factor=4, fourier_features={"n": 8, "scale": 4.0})
    # 16 more input channels of the merge conv; nothing else changes
    assert head.merge.weight.shape[1] == plain.merge.weight.shape[1] + 16
    x = torch.randn(2, 2, 8, 16, requires_grad=True)
    y = head(x)
    assert y.shape == (2, 2, 32, 64)
    # still exactly conservative, and differentiable
    torch.testing.assert_close(head.coarsen(y), x, atol=1e-5, rtol=0)
    y.square().sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()
    # the frequencies are in the checkpoint and a reload gives the same model
    state = head.state_dict()
    assert "fourier.frequencies" in state and "fourier.xyz" not in state
    again = build("downscale", nlat=32, nlon=64, factor=4, fourier_features={"n": 8, "scale": 4.0, "seed": 3})
    again.load_state_dict(state)
    torch.testing.assert_close(again(x), y)
    # a head without the option has no fourier parameters (old checkpoints load unchanged)
    assert not any("fourier" in k for k in plain.state_dict())


@pytest.mark.parametrize("backbone", ["vit", "unet_gru"])
def test_decoder_with_fourier_features(backbone):
    kw = {"nside": 8, "channels": [8, 16], "dilations": [1, 2]} if backbone == "unet_gru" else {"embed_dim": 32, "depth": 1}
    m = build(backbone, **kw)
    spec = m.latent_spec()
    dec = LatentDecoder.for_backbone(m, ["total_precipitation_6hr"], hidden=[16], fourier_features={"n": 4, "scale": 2})
    plain = LatentDecoder.for_backbone(m, ["total_precipitation_6hr"], hidden=[16])
    first = next(p for n, p in dec.named_parameters() if n.endswith("0.weight"))
    first_plain = next(p for n, p in plain.named_parameters() if n.endswith("0.weight"))
    assert first.shape[1] == first_plain.shape[1] + 8
    shape = [2, *spec["tokens"], spec["dim"]] if spec["kind"] == "tokens" else [2, spec["dim"], *spec["grid"]]
    z = torch.randn(*shape)
    out = dec(z)
    assert out.shape == plain(z).shape
    # the positions are unit vectors, one per token / pixel
    xyz = dec.fourier.xyz
    torch.testing.assert_close(xyz.norm(dim=0), torch.ones(xyz.shape[1:]))
    # batch members are decoded independently (the features do not mix the batch)
    torch.testing.assert_close(dec(z[:1]), out[:1])
