"""Tests of the lightweight latent decoders on a frozen backbone (atmos.models.decoder)."""

from __future__ import annotations

import copy
import dataclasses
import json

import numpy as np
import pytest
import torch

from atmos.errors import ConfigError
from atmos.grids.healpix import HealpixGrid
from atmos.models import MODELS, LatentDecoder, LatentDecoderConfig, build, build_from_config, config_to_dict
from atmos.models.checkpoint import load_checkpoint, load_decoder, weights_hash
from atmos.testing import TINY_MODEL_CONFIGS
from atmos.train.checkpoint import save_checkpoint
from atmos.train.decoder import save_decoder

VIT = TINY_MODEL_CONFIGS["vit"]
UNET = TINY_MODEL_CONFIGS["unet_gru"]
KINDS = [("vit", VIT), ("unet_gru", UNET)]
#: turning the globe 90 degrees east moves the content of face f to face ROT[f]
ROT = np.array([4 * (f // 4) + (f + 1) % 4 for f in range(12)])
PIXELS = {"kind": "pixels", "dim": 4, "grid": [12, 2, 2]}


def _backbone(name: str, cfg: dict, seed: int = 0, **kw) -> torch.nn.Module:
    torch.manual_seed(seed)
    return build(name, **{**cfg, **kw}).eval()


def _inputs(model, b: int = 2, seed: int = 0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    sc, grid = model.schema, model.grid
    return (
        torch.randn(b, sc.history, len(sc.inputs), *grid, generator=g, dtype=dtype),
        torch.randn(b, sc.history + 1, len(sc.forcings), *grid, generator=g, dtype=dtype),
        torch.randn(len(sc.statics), *grid, generator=g, dtype=dtype),
    )


def _latent_shape(spec: dict, b: int) -> tuple[int, ...]:
    if spec["kind"] == "tokens":
        return (b, *spec["tokens"], spec["dim"])
    return (b, spec["dim"], *spec["grid"])


def _rotate(t: torch.Tensor, dim: int) -> torch.Tensor:
    return t.index_select(dim, torch.as_tensor(np.argsort(ROT)))


def _perturb(module: torch.nn.Module, seed: int = 1, scale: float = 0.1) -> None:
    """Move every parameter away from its initialisation (zero biases would hide bugs)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(scale * torch.randn(p.shape, generator=g, dtype=p.dtype))


# -- backbone latent contract --------------------------------------------------------------------
@pytest.mark.parametrize("spectral_norm", [False, True])
@pytest.mark.parametrize("name,cfg", KINDS)
def test_forward_is_decode_of_latent(name, cfg, spectral_norm):
    model = _backbone(name, cfg, spectral_norm=spectral_norm)
    x, f, s = _inputs(model)
    out, state = model(x, f, s)
    latent, state2 = model.forward_latent(x, f, s)
    spec = model.latent_spec()
    assert spec["kind"] == ("tokens" if name == "vit" else "pixels")
    assert tuple(latent.shape) == _latent_shape(spec, 2)
    assert list(spec["grid"]) == list(model.grid)
    assert torch.equal(model.decode_latent(latent), out)
    if name == "vit":
        assert state is None and state2 is None
        return
    for a, b in zip(state, state2, strict=True):
        assert torch.equal(a, b)
    out_s, new_s = model(x, f, s, state=state)
    latent_s, new_s2 = model.forward_latent(x, f, s, state=state)
    assert not torch.allclose(out_s, out)  # the state matters, so the check below is not vacuous
    assert torch.equal(model.decode_latent(latent_s), out_s)
    for a, b in zip(new_s, new_s2, strict=True):
        assert torch.equal(a, b)


# -- decoders on a frozen backbone ---------------------------------------------------------------
@pytest.mark.parametrize("name,cfg", KINDS)
def test_frozen_backbone_shapes_and_gradients(name, cfg):
    backbone = _backbone(name, cfg)
    backbone.requires_grad_(False)
    before = weights_hash(backbone)
    dec = LatentDecoder.for_backbone(backbone, ["total_precipitation_6hr", "evaporation"], hidden=[8, 4])
    assert dec.variables == ["total_precipitation_6hr", "evaporation"]
    x, f, s = _inputs(backbone)
    latent, _ = backbone.forward_latent(x, f, s)
    out = dec(latent)
    assert tuple(out.shape) == (2, 2, *backbone.grid)
    w = torch.randn(out.shape, generator=torch.Generator().manual_seed(3))
    (out * w).sum().backward()
    names = [n for n, _ in dec.named_parameters()]
    assert any(n.startswith("heads.evaporation.") for n in names)
    for n, p in dec.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, n
    for n, p in backbone.named_parameters():
        assert p.grad is None, n
    # one optimizer step moves the decoder and leaves the backbone bit for bit unchanged
    dec_before = weights_hash(dec)
    torch.optim.SGD(dec.parameters(), lr=0.1).step()
    assert weights_hash(dec) != dec_before
    assert weights_hash(backbone) == before


def test_faces_rotate_with_longitude():
    """Premise of the equivariance tests: face ROT[f] is face f turned 90 deg east, same orientation."""
    g = HealpixGrid(4)
    lon = g.cells_to_faces(torch.as_tensor(g.lon)).numpy()
    lat = g.cells_to_faces(torch.as_tensor(g.lat)).numpy()
    for f in range(12):
        np.testing.assert_allclose((lon[ROT[f]] - lon[f]) % 360, 90.0, atol=1e-9)
        np.testing.assert_allclose(lat[ROT[f]], lat[f], atol=1e-12)


def test_pixel_decoder_is_equivariant_to_polar_rotation():
    backbone = _backbone("unet_gru", UNET).double()
    torch.manual_seed(0)
    dec = LatentDecoder.for_backbone(backbone, ["a", "b"], hidden=[8, 4]).double()
    _perturb(dec)
    latent = torch.randn(_latent_shape(backbone.latent_spec(), 2), dtype=torch.float64)
    out = dec(latent)
    assert torch.equal(dec(_rotate(latent, 2)), _rotate(out, 2))
    assert not torch.equal(_rotate(out, 2), out)
    # end to end: frozen backbone + decoder
    x, f, s = _inputs(backbone, dtype=torch.float64)
    y = dec(backbone.forward_latent(x, f, s)[0])
    yr = dec(backbone.forward_latent(_rotate(x, 3), _rotate(f, 3), _rotate(s, 1))[0])
    torch.testing.assert_close(yr, _rotate(y, 2), rtol=0, atol=1e-12)


@pytest.mark.parametrize("nlat,token", [(8, (2, 3)), (7, (3, 5))])
def test_token_decoder_is_local(nlat, token):
    """Changing one token's latent changes exactly its patch's cells, as in the ViT's own patch decoder."""
    backbone = _backbone("vit", VIT, nlat=nlat)
    spec = backbone.latent_spec()
    p, (s, _), (w, _) = spec["patch_size"], spec["pad_lat"], spec["pad_lon"]
    if nlat == 7:
        assert spec["pad_lat"][0] != spec["pad_lat"][1]  # asymmetric padding: catches a swapped crop
    torch.manual_seed(0)
    dec = LatentDecoder.for_backbone(backbone, ["a", "b"], hidden=[8])
    _perturb(dec)
    g = torch.Generator().manual_seed(1)
    latent = torch.randn(_latent_shape(spec, 1), generator=g)
    changed = latent.clone()
    i, j = token
    changed[0, i, j] += torch.randn(spec["dim"], generator=g)
    expect = torch.zeros(spec["grid"], dtype=torch.bool)
    r0, c0 = i * p - s, j * p - w
    assert r0 >= 0 and c0 >= 0 and r0 + p <= spec["grid"][0] and c0 + p <= spec["grid"][1]
    expect[r0 : r0 + p, c0 : c0 + p] = True
    with torch.no_grad():
        diff = dec(changed) != dec(latent)
        own = backbone.decode_latent(changed) != backbone.decode_latent(latent)
    for v in range(2):
        assert torch.equal(diff[0, v], expect), v
    assert torch.equal(own[0, 0], expect)


# -- target transforms ---------------------------------------------------------------------------
def _transform_decoder() -> LatentDecoder:
    cfg = LatentDecoderConfig(
        variables=["total_precipitation_6hr", "2m_temperature"],
        latent=PIXELS,
        hidden=[3],
        transforms={"total_precipitation_6hr": {"kind": "log1p", "scale": 5e-4}},
        mean={"total_precipitation_6hr": 0.3, "2m_temperature": 280.0},
        std={"total_precipitation_6hr": 2.0, "2m_temperature": 10.0},
    )
    return LatentDecoder(cfg).double()


def test_transforms_round_trip_and_standardize():
    dec = _transform_decoder()
    g = torch.Generator().manual_seed(0)
    tp = 1e-3 * torch.randn(3, 12, 2, 2, generator=g, dtype=torch.float64).exp()
    tp[0, 0] = 0.0
    t2m = 280 + 15 * torch.randn(3, 12, 2, 2, generator=g, dtype=torch.float64)
    y = torch.stack([tp, t2m], dim=1)
    z = dec.from_physical(y)
    # mean/std are float32 buffers (0.3 is not exact in float32), hence the 1e-7 tolerance
    torch.testing.assert_close(z[:, 0], (torch.log1p(tp / 5e-4) - 0.3) / 2.0, rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(z[:, 1], (t2m - 280.0) / 10.0, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(dec.to_physical(z), y, rtol=1e-12, atol=1e-15)
    # negative precipitation is clipped to 0 before the transform
    neg = y.clone()
    neg[:, 0] = -neg[:, 0]
    torch.testing.assert_close(dec.from_physical(neg)[:, 0], torch.full_like(tp, -0.15), rtol=0, atol=1e-7)


def test_identity_round_trip_without_stats():
    dec = LatentDecoder(LatentDecoderConfig(variables=["a"], latent=PIXELS, hidden=[3])).double()
    y = torch.randn(2, 1, 12, 2, 2, dtype=torch.float64) * 1e3
    assert torch.equal(dec.from_physical(y), y)
    assert torch.equal(dec.to_physical(y), y)


def test_log1p_outputs_are_never_negative():
    dec = _transform_decoder()
    z = torch.linspace(-1e3, 5.0, 12 * 4 * 2, dtype=torch.float64).view(2, 1, 12, 2, 2).repeat(1, 2, 1, 1, 1)
    y = dec.to_physical(z)
    assert (y[:, 0] >= 0).all() and (y[:, 0] == 0).any() and (y[:, 0] > 0).any()
    assert (y[:, 1] < 0).any()  # identity variable: no clipping
    torch.testing.assert_close(y[:, 1], z[:, 1] * 10.0 + 280.0, rtol=1e-12, atol=1e-12)


# -- configuration errors ------------------------------------------------------------------------
TOKENS = {"kind": "tokens", "dim": 4, "tokens": [2, 3], "patch_size": 2, "pad_lat": [1, 1], "pad_lon": [1, 1], "grid": [2, 4]}


@pytest.mark.parametrize(
    "kw,match",
    [
        ({"transforms": {"tp": {"kind": "sqrt"}}}, "must have kind in"),
        ({"transforms": {"tp": "log1p"}}, "positive 'scale'"),
        ({"transforms": {"tp": {"kind": "log1p", "scale": 0.0}}}, "positive 'scale'"),
        ({"transforms": {"tp": {"kind": "log1p", "scale": "big"}}}, "positive 'scale'"),
        ({"transforms": {"tp": 3}}, "transform of 'tp'"),
        ({"transforms": {"evap": "identity"}}, "not among the variables"),
        ({"mean": {"evap": 1.0}}, "not among the variables"),
        ({"std": {"tp": 0.0}}, "std of 'tp'"),
        ({"mean": {"tp": float("nan")}}, "mean of 'tp'"),
        ({"variables": []}, "non-empty list"),
        ({"variables": "tp"}, "non-empty list"),
        ({"variables": ["tp", "tp"]}, "duplicates"),
        ({"hidden": [8, 0]}, "'hidden'"),
        ({"latent": {}}, "latent_spec"),
        ({"latent": None}, "latent_spec"),
        ({"latent": {"kind": "pixels", "dim": 4}}, "lacks 'grid'"),
        ({"latent": {k: v for k, v in TOKENS.items() if k != "patch_size"}}, "lacks 'patch_size'"),
        ({"latent": {k: v for k, v in TOKENS.items() if k != "tokens"}}, "lacks 'tokens'"),
    ],
)
def test_config_errors(kw, match):
    base = {"variables": ["tp"], "latent": PIXELS, "hidden": [3]}
    with pytest.raises(ConfigError, match=match):
        LatentDecoderConfig(**{**base, **kw})


def test_config_does_not_modify_callers_transforms():
    tr = {"tp": "identity"}
    cfg = LatentDecoderConfig(variables=["tp"], latent=PIXELS, transforms=tr)
    assert tr == {"tp": "identity"} and cfg.transforms == {"tp": {"kind": "identity"}}


@pytest.mark.parametrize(
    "latent_spec,shape",
    [
        (TOKENS, (1, 2, 3, 5)),  # wrong width
        (TOKENS, (1, 3, 3, 4)),  # wrong token grid
        (TOKENS, (1, 6, 4)),  # missing batch/token axis
        (PIXELS, (1, 4, 12, 4, 4)),  # wrong nside
        (PIXELS, (1, 3, 12, 2, 2)),  # wrong channels
        (PIXELS, (4, 12, 2, 2)),  # no batch axis
    ],
)
def test_wrong_latent_shape(latent_spec, shape):
    dec = LatentDecoder(LatentDecoderConfig(variables=["tp"], latent=latent_spec, hidden=[3]))
    dec(torch.zeros(_latent_shape(latent_spec, 1)))  # the right shape passes
    with pytest.raises(ConfigError, match="does not fit this decoder"):
        dec(torch.zeros(shape))


def test_for_backbone_needs_a_latent():
    with pytest.raises(ConfigError, match="exposes no latent"):
        LatentDecoder.for_backbone(torch.nn.Linear(2, 2), ["tp"])


# -- weights hash and decoder checkpoints --------------------------------------------------------
def _flip_one_bit(model: torch.nn.Module) -> None:
    p = next(iter(model.parameters()))
    with torch.no_grad():
        p.view(-1).view(torch.int32)[0] ^= 1


@pytest.mark.parametrize("name,cfg", KINDS)
def test_weights_hash(name, cfg):
    a = _backbone(name, cfg, seed=0)
    h = weights_hash(a)
    assert h == weights_hash(a) == weights_hash(a.state_dict())
    b = _backbone(name, cfg, seed=1)
    assert weights_hash(b) != h
    b.load_state_dict(a.state_dict())
    assert weights_hash(b) == h
    _flip_one_bit(b)
    assert weights_hash(b) != h
    _flip_one_bit(b)
    assert weights_hash(b) == h
    assert weights_hash(copy.deepcopy(a).double()) != h  # the dtype is part of the hash


def _saved_decoder(tmp_path, name, cfg):
    backbone = _backbone(name, cfg)
    torch.manual_seed(0)
    dec = LatentDecoder.for_backbone(
        backbone,
        ["total_precipitation_6hr", "2m_temperature"],
        hidden=[8, 4],
        transforms={"total_precipitation_6hr": {"kind": "log1p", "scale": 1e-3}},
        mean={"total_precipitation_6hr": 0.5},
        std={"2m_temperature": 7.0},
        units={"2m_temperature": "K"},
    )
    _perturb(dec)
    path = save_decoder(tmp_path / "run", dec, backbone=backbone, backbone_path=tmp_path / "backbone")
    return backbone, dec, path


@pytest.mark.parametrize("name,cfg", KINDS)
def test_save_and_load_decoder(tmp_path, name, cfg):
    backbone, dec, path = _saved_decoder(tmp_path, name, cfg)
    ckpt = load_checkpoint(path)
    assert ckpt.meta["task"] == "decoder"
    assert ckpt.meta["backbone"]["sha256"] == weights_hash(backbone)
    assert ckpt.meta["model"]["params"] == dataclasses.asdict(dec.config)
    assert weights_hash(ckpt.model_state) == weights_hash(dec)
    for run_or_ckpt in (path, tmp_path / "run"):
        loaded, meta = load_decoder(run_or_ckpt, backbone=backbone)
        assert not loaded.training and meta.variables == list(dec.variables)
        assert weights_hash(loaded) == weights_hash(dec)
        latent, _ = backbone.forward_latent(*_inputs(backbone))
        with torch.no_grad():
            z, z2 = dec(latent), loaded(latent)
            assert torch.equal(z2, z)
            assert torch.equal(loaded.to_physical(z2), dec.to_physical(z))
    loaded, _ = load_decoder(path)  # no backbone: no check
    assert weights_hash(loaded) == weights_hash(dec)


@pytest.mark.parametrize("name,cfg", KINDS)
def test_load_decoder_refuses_another_backbone(tmp_path, name, cfg):
    backbone, _, path = _saved_decoder(tmp_path, name, cfg)
    other = copy.deepcopy(backbone)
    with torch.no_grad():
        p = dict(other.named_parameters())[list(dict(other.named_parameters()))[-1]]
        p.view(-1)[0] += 1e-6
    with pytest.raises(ConfigError, match="hash"):
        load_decoder(path, backbone=other)
    with pytest.raises(ConfigError, match="hash"):
        load_decoder(path, backbone=_backbone(name, cfg, seed=5))
    load_decoder(path, backbone=copy.deepcopy(backbone))  # an identical copy is accepted


def test_load_decoder_refuses_a_forecast_checkpoint(tmp_path):
    model = _backbone("vit", VIT)
    meta = {"model": {"name": "vit", "params": dataclasses.asdict(model.config)}}
    path = save_checkpoint(tmp_path / "run", "final", model.state_dict(), meta)
    with pytest.raises(ConfigError, match="not a decoder checkpoint"):
        load_decoder(path)
    with pytest.raises(ConfigError, match="not a decoder checkpoint"):
        load_decoder(path, backbone=model)


# -- registry ------------------------------------------------------------------------------------
@pytest.mark.parametrize("name,cfg", KINDS)
def test_registry_round_trip(name, cfg):
    assert "decoder" in MODELS
    backbone = _backbone(name, cfg)
    spec = backbone.latent_spec()
    torch.manual_seed(0)
    dec = build("decoder", variables=["total_precipitation_6hr"], latent=spec, hidden=[8])
    assert isinstance(dec, LatentDecoder) and dec.config.latent == spec
    d = config_to_dict(dec)
    assert d["name"] == "decoder"
    d2 = json.loads(json.dumps(d))
    again = build_from_config(d2)
    assert config_to_dict(again) == d
    again.load_state_dict(dec.state_dict())
    latent = torch.randn(_latent_shape(spec, 2))
    assert torch.equal(again(latent), dec(latent))
    assert config_to_dict(backbone)["name"] == name
    with pytest.raises(ConfigError, match="unknown config key"):
        build("decoder", variables=["tp"], latent=spec, hiden=[8])
