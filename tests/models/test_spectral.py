"""Tests of the spectral-normalization switch."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from atmos.models import build
from atmos.models.spectral import (
    SPECTRAL_NORM_TYPES,
    apply_spectral_norm,
    has_spectral_norm,
    remove_spectral_norm,
    spectral_norm_layers,
)
from atmos.testing import TINY_MODEL_CONFIGS

VIT = TINY_MODEL_CONFIGS["vit"]
UNET = TINY_MODEL_CONFIGS["unet_gru"]


def _inputs(model, b=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    sc = model.schema
    grid = model.grid
    return (
        torch.randn(b, sc.history, len(sc.inputs), *grid, generator=g),
        torch.randn(b, sc.history + 1, len(sc.forcings), *grid, generator=g),
        torch.randn(len(sc.statics), *grid, generator=g),
    )


def _matrix(module: nn.Module) -> torch.Tensor:
    """The matrix torch's spectral_norm normalizes: [out, in*prod(k)] for (transposed) convs."""
    w = module.weight
    if isinstance(module, (nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)):
        w = w.transpose(0, 1)
    return w.reshape(w.shape[0], -1)


@pytest.mark.parametrize("name,cfg", [("vit", VIT), ("unet_gru", UNET)])
def test_every_layer_is_wrapped(name, cfg):
    model = build(name, spectral_norm=True, **cfg)
    targets = [n for n, m in model.named_modules() if isinstance(m, SPECTRAL_NORM_TYPES)]
    wrapped = [n for n, _ in spectral_norm_layers(model)]
    assert wrapped == targets and len(targets) > 5
    if name == "vit":
        assert "patch_embed" in wrapped
    else:
        assert any(isinstance(m, nn.ConvTranspose2d) for _, m in spectral_norm_layers(model))
    assert not has_spectral_norm(build(name, **cfg))


@pytest.mark.parametrize("name,cfg", [("vit", VIT), ("unet_gru", UNET)])
def test_largest_singular_value_is_one(name, cfg):
    torch.manual_seed(0)
    model = build(name, spectral_norm=True, **cfg)
    model.train()
    with torch.no_grad():
        model(*_inputs(model))  # one training pass (one power iteration per layer)
        for _, m in spectral_norm_layers(model):
            for _ in range(200):  # each training-mode access runs one more power iteration
                _ = m.weight
    model.eval()
    with torch.no_grad():
        for lname, m in spectral_norm_layers(model):
            sigma = torch.linalg.matrix_norm(_matrix(m), ord=2).item()
            # power iteration underestimates sigma, so the normalized value approaches 1 from above
            assert 1.0 - 1e-4 < sigma < 1.0 + 1e-2, (lname, sigma)
    # without the switch the same layers are far from 1
    plain = build(name, **cfg)
    sig = [
        torch.linalg.matrix_norm(_matrix(m), ord=2).item()
        for m in plain.modules()
        if isinstance(m, SPECTRAL_NORM_TYPES)
    ]
    assert max(abs(s - 1) for s in sig) > 0.2


@pytest.mark.parametrize("name,cfg", [("vit", VIT), ("unet_gru", UNET)])
def test_remove_folds_weights_exactly(name, cfg):
    torch.manual_seed(0)
    model = build(name, spectral_norm=True, **cfg)
    inp = _inputs(model)
    model.train()
    with torch.no_grad():
        model(*inp)
    model.eval()
    with torch.no_grad():
        before, _ = model(*inp)
        normalized = {n: m.weight.clone() for n, m in spectral_norm_layers(model)}
    remove_spectral_norm(model)
    assert not has_spectral_norm(model)
    mods = dict(model.named_modules())
    for n, w in normalized.items():
        assert type(mods[n].weight) is nn.Parameter
        torch.testing.assert_close(mods[n].weight.detach(), w, rtol=0, atol=0)
    with torch.no_grad():
        after, _ = model(*inp)
    torch.testing.assert_close(after, before, rtol=0, atol=0)
    # the folded weights load into a model built without the switch (plain inference model)
    plain = build(name, **cfg).eval()
    plain.load_state_dict(model.state_dict(), strict=True)
    with torch.no_grad():
        torch.testing.assert_close(plain(*inp)[0], before, rtol=0, atol=0)


def test_apply_is_idempotent_and_trains():
    model = build("vit", **VIT)
    apply_spectral_norm(model)
    n = len(spectral_norm_layers(model))
    apply_spectral_norm(model)
    assert len(spectral_norm_layers(model)) == n
    opt = torch.optim.SGD(model.parameters(), lr=1e-2)
    delta, _ = model(*_inputs(model))
    delta.square().mean().backward()
    opt.step()
    assert all(torch.isfinite(p).all() for p in model.parameters())
