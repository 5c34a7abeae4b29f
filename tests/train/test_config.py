"""Config loading, overrides and clear errors."""

from __future__ import annotations

import pytest
import yaml

from atmos.errors import ConfigError
from atmos.train.config import (
    TrainConfig,
    config_to_dict,
    load_config,
    parse_gradient_mode,
)


def test_yaml_round_trip_and_overrides(tmp_path):
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump({"model": {"name": "vit", "params": {"depth": 2}}, "optimizer": {"lr": 1e-3}}))
    cfg = load_config(path, ["optimizer.lr=3e-4", "model.params.depth=4", "data.levels=[500, 850]",
                             "validation.source=null", "multistep.gradient=truncated:2"])
    assert isinstance(cfg, TrainConfig)
    assert cfg.optimizer.lr == pytest.approx(3e-4)
    assert cfg.model.params == {"depth": 4}
    assert cfg.data.levels == [500, 850]
    assert cfg.validation.source is None
    assert cfg.output.name == "exp"  # defaults to the file stem
    again = load_config(config_to_dict(cfg))
    assert config_to_dict(again) == config_to_dict(cfg)


def test_yaml_1_1_exponent_strings_are_numbers(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("optimizer:\n  lr: 1e-3\n")  # YAML 1.1 reads this as a string
    assert load_config(path).optimizer.lr == pytest.approx(1e-3)


def test_unknown_key_lists_valid_keys_and_suggests():
    with pytest.raises(ConfigError) as e:
        load_config({"optimizer": {"learning_rate": 1e-3}})
    msg = str(e.value)
    assert "'learning_rate'" in msg and "optimizer" in msg and "'lr'" in msg
    with pytest.raises(ConfigError, match=r"unknown key 'optimiser'.*Did you mean 'optimizer'"):
        load_config({"optimiser": {}})
    with pytest.raises(ConfigError, match=r"unknown key 'epoch' in schedule"):
        load_config(None, ["schedule.epoch=3"])


@pytest.mark.parametrize(
    ("cfg", "match"),
    [
        ({"optimizer": {"lr": "fast"}}, r"optimizer.lr must be a number, got 'fast'"),
        ({"data": {"batch_size": 0}}, r"data.batch_size must be > 0"),
        ({"data": {"grid": "healpix"}}, r"data.nside is None"),
        ({"data": {"grid": "cubed"}}, r"data.grid must be one of \['latlon', 'healpix'\]"),
        ({"multistep": {"gradient": "partial"}}, r"'detached', 'full' or 'truncated:N'"),
        ({"multistep": {"steps": 3, "maximum": 2}}, r"maximum \(2\) is smaller than multistep.steps \(3\)"),
        ({"multistep": {"steps": 2, "step_weights": [1.0]}}, r"step_weights has 1 entries but up to 2 steps"),
        ({"data": {"variables": ["temperature"], "forcings": ["temperature"]}}, r"prognostic variables and as forcings"),
        ({"data": {"variables": "temperature"}}, r"data.variables must be a list"),
    ],
)
def test_bad_values_name_the_field(cfg, match):
    with pytest.raises(ConfigError, match=match):
        load_config(cfg)


def test_bad_override_syntax_and_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        load_config(None, ["optimizer.lr"])
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.yaml")


def test_gradient_modes_and_curriculum():
    assert parse_gradient_mode("detached") == 1
    assert parse_gradient_mode("full") is None
    assert parse_gradient_mode("truncated:3") == 3
    cfg = load_config({"multistep": {"steps": 1, "epoch_increment": 1, "increment_every": 2, "maximum": 3}})
    assert [cfg.multistep.steps_at(e) for e in range(8)] == [1, 1, 2, 2, 3, 3, 3, 3]


def test_unknown_model_name_lists_valid_ones(tiny_config):
    from atmos.train import fit

    with pytest.raises(ConfigError) as e:
        fit(tiny_config(model={"name": "vitt", "params": {}}))
    msg = str(e.value)
    assert "'vitt'" in msg and "'vit'" in msg and "'unet_gru'" in msg


def test_channel_mismatch_names_the_variables(tiny_config):
    from atmos.train import fit

    params = {"embed_dim": 16, "depth": 2, "num_heads": 2, "window_size": [2, 2],
              "inputs": ["geopotential_500", "temperature_850", "specific_humidity_850"]}
    with pytest.raises(ConfigError) as e:
        fit(tiny_config(model={"name": "vit", "params": params}))
    msg = str(e.value)
    assert "specific_humidity_850" in msg  # the model wants it, the data lacks it
    assert "geopotential_850" in msg and "2m_temperature" in msg  # the data has them, the model does not
    assert "missing from the data" in msg


def test_grid_mismatch_is_explained(tiny_config):
    from atmos.train import fit

    with pytest.raises(ConfigError, match=r"model 'unet_gru' is built for grid shape \(12, 4, 4\).*data.grid"):
        fit(tiny_config(model={"name": "unet_gru", "params": {"nside": 4, "channels": [4], "dilations": [1]}}))


def test_training_a_model_whose_config_is_not_a_channel_config_is_a_clear_error():
    import dataclasses

    import torch

    from atmos.models import registry
    from atmos.train.config import config_from_dict
    from atmos.train.loop import _model_params

    @dataclasses.dataclass
    class OddConfig:
        width: int = 3

    registry.register_model("odd_for_test", lambda cfg: torch.nn.Linear(1, 1), OddConfig)
    try:
        cfg = config_from_dict({"model": {"name": "odd_for_test"}, "data": {"source": "x", "variables": ["t"]}})
        with pytest.raises(ConfigError, match="OddConfig, which does not derive from atmos.models.schema.ChannelConfig"):
            _model_params(cfg, None)
    finally:
        registry.MODELS.pop("odd_for_test")
