"""Tests of the model registry, config round trips and the channel schema."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys

import pytest
import torch

from atmos.errors import ConfigError
from atmos.models import MODELS, ChannelSchema, UNetGRU, ViT, build, build_from_config, config_to_dict
from atmos.testing import TINY_MODEL_CONFIGS

VIT = TINY_MODEL_CONFIGS["vit"]
UNET = TINY_MODEL_CONFIGS["unet_gru"]


def test_names():
    assert {"vit", "unet_gru"} <= set(MODELS)
    assert isinstance(build("vit", **VIT), ViT)
    assert isinstance(build("unet_gru", **UNET), UNetGRU)


def test_unknown_name_lists_valid_names():
    with pytest.raises(ConfigError) as err:
        build("unet")
    msg = str(err.value)
    assert "'unet'" in msg and "'unet_gru'" in msg and "'vit'" in msg


def test_unknown_key_lists_valid_keys():
    with pytest.raises(ConfigError) as err:
        build("vit", embed_dims=64)
    msg = str(err.value)
    assert "embed_dims" in msg and "'embed_dim'" in msg and "'window_size'" in msg
    with pytest.raises(ConfigError, match="'channels'"):
        build("unet_gru", n_channels=[8, 4])


def test_bad_value_is_config_error():
    with pytest.raises(ConfigError, match="depth"):
        build("vit", depth=0)
    with pytest.raises(ConfigError, match="'name'"):
        build_from_config({"nside": 4})


@pytest.mark.parametrize("name,cfg", [("vit", VIT), ("unet_gru", UNET)])
def test_config_json_round_trip(name, cfg):
    torch.manual_seed(0)
    model = build(name, spectral_norm=(name == "vit"), **cfg)
    d = json.loads(json.dumps(config_to_dict(model)))
    assert d["name"] == name
    again = build_from_config(d)
    assert dataclasses.asdict(again.config) == dataclasses.asdict(model.config)
    assert again.schema == model.schema
    again.load_state_dict(model.state_dict(), strict=True)


def test_schema_round_trip_and_contract():
    model = build("unet_gru", **UNET)
    sc = model.schema
    assert sc.outputs == sc.inputs[: len(sc.outputs)]
    assert ChannelSchema.from_dict(json.loads(json.dumps(sc.to_dict()))) == sc
    sc.check_against(sc)
    sc.check_against(inputs=list(sc.inputs), statics=list(sc.statics))


def test_check_against_names_the_differences():
    sc = ChannelSchema(
        inputs=["a", "b", "c"], outputs=["a", "b"], forcings=["toa"], statics=["lsm", "orog"], history=2
    )
    with pytest.raises(ConfigError) as err:
        sc.check_against(inputs=["a", "c", "d"], forcings=["toa"], statics=["orog", "lsm"], history=1)
    msg = str(err.value)
    assert "inputs: missing from the data: ['b']" in msg
    assert "not expected by the model: ['d']" in msg
    assert "statics: same channels in a different order" in msg and "'lsm'" in msg
    assert "history: model uses 2 input steps, the data has 1" in msg
    assert "forcings" not in msg.split("Fix")[0]
    assert "Fix:" in msg
    other = ChannelSchema(inputs=["a", "b", "c"], outputs=["a"], history=2)
    with pytest.raises(ConfigError, match="outputs: missing from the checkpoint: \\['b'\\]"):
        sc.check_against(other, label="the checkpoint")


def test_schema_validation():
    with pytest.raises(ConfigError, match="first 1 input channels"):
        ChannelSchema(inputs=["a", "b"], outputs=["b"])
    with pytest.raises(ConfigError, match="more than once"):
        ChannelSchema(inputs=["a", "a"], outputs=["a"])
    with pytest.raises(ConfigError, match="list of channel names"):
        ChannelSchema(inputs="abc", outputs=["a"])
    with pytest.raises(ConfigError, match="unknown ChannelSchema keys"):
        ChannelSchema.from_dict({"inputs": ["a"], "outputs": ["a"], "grids": {}})


def test_models_do_not_import_io_or_train():
    """atmos.models is tensor-only: importing it and building every model loads no atmos.io,
    atmos.catalog or atmos.train module, nor xarray.

    ``import atmos`` itself loads atmos.io (``atmos.open_dataset``), which would hide such an
    import; so a fresh interpreter gets a bare ``atmos`` namespace package instead of the facade.
    """
    code = (
        "import importlib.util, sys, types\n"
        "pkg = types.ModuleType('atmos')\n"
        "pkg.__path__ = list(importlib.util.find_spec('atmos').submodule_search_locations)\n"
        "sys.modules['atmos'] = pkg\n"
        "import atmos.models as m\n"
        f"for name, cfg in {TINY_MODEL_CONFIGS!r}.items():\n"
        "    m.config_to_dict(m.build(name, **cfg))\n"
        "bad = sorted(k for k in sys.modules if k.startswith(('atmos.io', 'atmos.catalog', 'atmos.train', 'xarray')))\n"
        "print(bad); sys.exit(1 if bad else 0)"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert res.returncode == 0, res.stdout + res.stderr


def test_check_against_grid():
    sc = ChannelSchema(inputs=["a"], outputs=["a"], grid={"type": "healpix", "nside": 8, "layout": "faces"})
    sc.check_against(grid={"type": "healpix", "nside": 8})
    with pytest.raises(ConfigError, match="grid: model is built for"):
        sc.check_against(grid={"type": "healpix", "nside": 16})
