"""Tests of the DLWP-HPX style recurrent U-Net on HEALPix faces."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from atmos.errors import ConfigError, DataError
from atmos.grids.healpix import HealpixGrid
from atmos.grids.padding import healpix_pad
from atmos.models.layers import FoldedHealpixPad
from atmos.models.unet_gru import UNetGRU, UNetGRUConfig

NSIDE = 8
#: rotation by +90 degrees of longitude: the content of face f moves to ROT[f]
ROT = np.array([1, 2, 3, 0, 5, 6, 7, 4, 9, 10, 11, 8])


def small_config(**kw) -> UNetGRUConfig:
    base = {"nside": NSIDE, "channels": [8, 6, 4], "dilations": [1, 2, 2], "upscale_factor": 2}
    base.update(kw)
    return UNetGRUConfig(**base)


def batch(cfg: UNetGRUConfig, b: int = 2, seed: int = 0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    n = cfg.nside
    x = torch.randn(b, cfg.history, len(cfg.inputs), 12, n, n, generator=g, dtype=dtype)
    f = torch.randn(b, cfg.history + 1, len(cfg.forcings), 12, n, n, generator=g, dtype=dtype)
    s = torch.randn(len(cfg.statics), 12, n, n, generator=g, dtype=dtype)
    return x, f, s


def test_default_size_matches_dlwp_hpx():
    """DLWP-HPX (PhysicsNeMo HEALPixRecUNet, 2 steps in/out) has 9,822,818 parameters."""
    model = UNetGRU()
    n = sum(p.numel() for p in model.parameters())
    assert abs(n - 9_822_818) / 9_822_818 < 0.02, n
    assert model.schema.in_channels == 2 * 7 + 3 * 1 + 2
    assert model.schema.n_prognostic == 7


def test_shapes_and_state():
    cfg = small_config()
    model = UNetGRU(cfg)
    x, f, s = batch(cfg)
    delta, state = model(x, f, s)
    assert delta.shape == (2, 7, 12, NSIDE, NSIDE)
    assert [tuple(h.shape) for h in state] == model.state_shapes(2)
    assert model.state_shapes(2) == [(24, 6, 2, 2), (24, 8, 4, 4), (24, 8, 8, 8)]
    assert model.schema.grid == {"type": "healpix", "nside": NSIDE, "layout": "faces"}


def test_state_carries_across_calls():
    cfg = small_config()
    model = UNetGRU(cfg).eval()
    x, f, s = batch(cfg)
    d0, st = model(x, f, s)
    d_fresh, _ = model(x, f, s, state=None)
    d_carried, st2 = model(x, f, s, state=st)
    torch.testing.assert_close(d_fresh, d0)  # no hidden module state: None means zeros
    assert not torch.allclose(d_carried, d0)
    assert not all(torch.allclose(a, b) for a, b in zip(st, st2))
    zeros = tuple(torch.zeros(sh) for sh in model.state_shapes(2))
    torch.testing.assert_close(model(x, f, s, state=zeros)[0], d0)


def test_non_recurrent_has_no_state():
    model = UNetGRU(small_config(recurrent=False))
    x, f, s = batch(model.config)
    delta, state = model(x, f, s)
    assert state is None and delta.shape == (2, 7, 12, NSIDE, NSIDE)
    assert not any("gru" in name for name, _ in model.named_parameters())


def test_gradient_reaches_every_parameter_over_two_steps():
    """GRU weights acting on h only get gradients once h != 0, i.e. from the 2nd step on."""
    cfg = small_config()
    model = UNetGRU(cfg)
    x, f, s = batch(cfg)
    d1, st = model(x, f, s)
    x2 = torch.cat([x[:, 1:], (x[:, -1, :7] + d1)[:, None]], dim=1)
    d2, _ = model(x2, f, s, state=st)
    (d1.square().mean() + d2.square().mean()).backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_wrong_state_shape_is_reported():
    model = UNetGRU(small_config())
    x, f, s = batch(model.config)
    _, st = model(x, f, s)
    with pytest.raises(DataError, match="state=None"):
        model(x[:1], f[:1], s, state=st)


def test_faces_rotate_with_longitude():
    """Premise of the equivariance test: face ROT[f] is face f turned 90 deg east, same orientation."""
    g = HealpixGrid(NSIDE)
    lon = g.cells_to_faces(torch.as_tensor(g.lon)).numpy()
    lat = g.cells_to_faces(torch.as_tensor(g.lat)).numpy()
    for f in range(12):
        np.testing.assert_allclose((lon[ROT[f]] - lon[f]) % 360, 90.0, atol=1e-9)
        np.testing.assert_allclose(lat[ROT[f]], lat[f], atol=1e-12)


def _rotate(t: torch.Tensor, dim: int, perm: np.ndarray) -> torch.Tensor:
    return t.index_select(dim, torch.as_tensor(np.argsort(perm)))


def test_equivariant_to_polar_rotation():
    """Rotating the input by 90 deg about the polar axis rotates the output (and GRU state)."""
    torch.manual_seed(0)
    cfg = small_config(channels=[6, 6, 6])
    model = UNetGRU(cfg).double()
    x, f, s = batch(cfg, dtype=torch.float64)
    d, st = model(x, f, s)
    dr, str_ = model(_rotate(x, 3, ROT), _rotate(f, 3, ROT), _rotate(s, 1, ROT))
    torch.testing.assert_close(dr, _rotate(d, 2, ROT), rtol=0, atol=1e-12)
    for h, hr in zip(st, str_):
        hf = h.view(2, 12, *h.shape[1:])
        torch.testing.assert_close(hr.view_as(hf), _rotate(hf, 1, ROT), rtol=0, atol=1e-12)
    # control: a face permutation that is not a symmetry of the sphere breaks it
    bad = np.array([4, 1, 2, 3, 0, 5, 6, 7, 8, 9, 10, 11])
    db, _ = model(_rotate(x, 3, bad), _rotate(f, 3, bad), _rotate(s, 1, bad))
    assert (db - _rotate(d, 2, bad)).abs().max() > 1e-3


@pytest.mark.parametrize("nside,pad", [(8, 1), (8, 3), (4, 4), (2, 1)])
def test_folded_pad_matches_healpix_pad(nside, pad):
    mod = FoldedHealpixPad(nside, pad)
    assert mod.fast  # the index tables were read off atmos.grids.padding.healpix_pad
    b, c = 2, 3
    x = torch.randn(b * 12, c, nside, nside, dtype=torch.float64)
    ref = healpix_pad(x.view(b, 12, c, nside, nside).transpose(1, 2), pad).transpose(1, 2)
    torch.testing.assert_close(
        mod(x), ref.reshape(b * 12, c, nside + 2 * pad, nside + 2 * pad), rtol=0, atol=0
    )


def test_folded_pad_gradient():
    mod = FoldedHealpixPad(2, 2)
    x = torch.randn(12, 1, 2, 2, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(mod, (x,))


def test_config_errors():
    with pytest.raises(ConfigError, match=r"at most \[8, 4, 2\]"):
        UNetGRUConfig(nside=8, dilations=[1, 2, 4])
    with pytest.raises(ConfigError, match="same length"):
        UNetGRUConfig(channels=[8, 4], dilations=[1, 2, 4])
    with pytest.raises(ConfigError, match="odd"):
        UNetGRUConfig(kernel_size=2)
    with pytest.raises(ConfigError, match="power of two"):
        UNetGRUConfig(nside=24)
