"""Warm start from a model with fewer inputs: the new inputs' columns start at zero, so the output is the source's."""

from __future__ import annotations

import pytest
import torch

from atmos.errors import ConfigError
from atmos.models.noise import noise_names
from atmos.models.unet_gru import UNetGRU, UNetGRUConfig
from atmos.models.vit import ViT, ViTConfig
from atmos.models.warmstart import warm_start_state

INPUTS = ["z500", "t850", "orog_only"]
OUTPUTS = ["z500", "t850"]


def _vit(forcings, statics=("lsm",), **kw):
    cfg = ViTConfig(inputs=INPUTS, outputs=OUTPUTS, forcings=list(forcings), statics=list(statics), nlat=8, nlon=16,
                    patch_size=2, embed_dim=16, depth=1, num_heads=2, window_size=[2, 2], **kw)
    return ViT(cfg).eval()


def _unet(forcings):
    cfg = UNetGRUConfig(inputs=INPUTS, outputs=OUTPUTS, forcings=list(forcings), statics=["lsm"], nside=4,
                        channels=[8, 6], dilations=[1, 2], upscale_factor=2)
    return UNetGRU(cfg).eval()


def _run(model, x, f, s):
    with torch.no_grad():
        y = model(x, f, s)
    return y[0] if isinstance(y, tuple) else y


def _inputs(model, seed=0):
    g = torch.Generator().manual_seed(seed)
    sch, grid = model.schema, tuple(model.schema.grid.get("shape") or (12, 4, 4))
    x = torch.randn(2, sch.history, len(sch.inputs), *grid, generator=g)
    f = torch.randn(2, sch.history + 1, len(sch.forcings), *grid, generator=g)
    s = torch.randn(len(sch.statics), *grid, generator=g)
    return x, f, s


@pytest.mark.parametrize("make", [_vit, _unet], ids=["vit", "unet_gru"])
def test_added_noise_inputs_start_silent(make):
    torch.manual_seed(0)
    src = make(["tisr"])
    for p in src.parameters():  # make every weight count (some layers start at zero)
        p.data.normal_(0, 0.2)
    new = make(["tisr", *noise_names(3)])
    state, rep = warm_start_state(new, new.schema, src.state_dict(), src.schema)
    new.load_state_dict(state)
    assert rep.remapped and len(rep.copied) + len(rep.remapped) == len(state)  # the U-Net reads inputs twice
    assert sorted({lab.split("@")[0] for lab in rep.new_inputs}) == noise_names(3)
    x, f, s = _inputs(new)
    want = _run(src, x, f[:, :, :1], s)
    got = _run(new, x, f, s)  # any noise: its columns are zero
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    # the trained columns moved with their inputs: a source input's column is unchanged
    labels = new.schema.input_labels()
    for key in rep.remapped:
        w_new, w_src = state[key], src.state_dict()[key]
        for j, lab in enumerate(src.schema.input_labels()):
            torch.testing.assert_close(w_new[:, labels.index(lab)], w_src[:, j])
        for lab in rep.new_inputs:
            assert not w_new[:, labels.index(lab)].any()


def test_input_labels_follow_assemble_inputs():
    from atmos.models.layers import assemble_inputs

    m = _vit(["tisr", "doy"], history=2)
    sch = m.schema
    x = torch.zeros(1, 2, 3, 8, 16)
    f = torch.zeros(1, 3, 2, 8, 16)
    s = torch.zeros(1, 8, 16)
    x[0, 0, 2] = 1.0  # orog_only, oldest input step
    f[0, 2, 1] = 2.0  # doy at the target time
    s[0] = 3.0
    folded = assemble_inputs(sch, (8, 16), x, f, s)[0, :, 0, 0]
    labels = sch.input_labels()
    assert len(labels) == sch.in_channels
    assert folded[labels.index("orog_only@t-1")] == 1.0
    assert folded[labels.index("doy@f+1")] == 2.0
    assert folded[labels.index("lsm@static")] == 3.0
    assert int((folded != 0).sum()) == 3


def test_mismatches_name_the_fix():
    src = _vit(["tisr"])
    with pytest.raises(ConfigError, match="may only add inputs"):
        other = _vit([])
        warm_start_state(other, other.schema, src.state_dict(), src.schema)
    with pytest.raises(ConfigError, match="model.params"):
        wide = ViT(ViTConfig(inputs=INPUTS, outputs=OUTPUTS, forcings=["tisr"], statics=["lsm"], nlat=8, nlon=16,
                             patch_size=2, embed_dim=32, depth=1, num_heads=2, window_size=[2, 2]))
        warm_start_state(wide, wide.schema, src.state_dict(), src.schema)
    with pytest.raises(ConfigError, match="predicts"):
        cfg = ViTConfig(inputs=["z500", "orog_only"], outputs=["z500"], forcings=["tisr"], statics=["lsm"], nlat=8,
                        nlon=16, patch_size=2, embed_dim=16, depth=1, num_heads=2, window_size=[2, 2])
        fewer = ViT(cfg)
        warm_start_state(fewer, fewer.schema, src.state_dict(), src.schema)
    with pytest.raises(ConfigError, match="tensors missing"):
        deeper = _vit(["tisr"], spectral_norm=False)
        st = dict(src.state_dict())
        st.pop(next(iter(st)))
        warm_start_state(deeper, deeper.schema, st, src.schema)
