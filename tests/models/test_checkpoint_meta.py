"""One typed checkpoint metadata class and one loader (issue 11).

* :class:`CheckpointMeta` round-trips through JSON, reads the committed sample
  checkpoint unchanged and refuses malformed or self-contradicting files clearly.
* :func:`load_model` is the one "build the model from a checkpoint".

The one model hash is tested in ``test_checkpoint_hash.py``.
"""

from __future__ import annotations

import json
from pathlib import Path
import shutil

import pytest
import torch

from atmos.errors import ConfigError, SourceError
from atmos.models.checkpoint import (
    META_FILE,
    BackboneRef,
    CheckpointMeta,
    ModelSpec,
    load_model,
)
from atmos.rollout.sample import sample_checkpoint_dir


@pytest.fixture(scope="module")
def sample_meta() -> CheckpointMeta:
    return CheckpointMeta.read(sample_checkpoint_dir())


#: The checkpoint.json of an earlier embedded sample (atmos 0.1, written before each fact had one home:
#: it repeats channels, variables, levels, forcings, statics, history and time_step).
LEGACY = Path(__file__).parent / "data" / "legacy_sample_checkpoint.json"


def _raw_sample() -> dict:
    return json.loads(LEGACY.read_text())


# -- the metadata class ------------------------------------------------------------------------


def test_embedded_sample_reads_into_typed_fields(sample_meta):
    m = sample_meta
    assert m.task == "forecast" and m.model is not None and m.model.name == "vit"
    assert m.time_step_seconds == 21600.0 and m.time_step.total_seconds() == 21600.0
    assert m.history == 1
    assert m.model_channels["outputs"] == m.model.params["outputs"]
    assert m.global_step == 1200
    assert m.name == "atmos-sample-vit-speedy"
    assert m.output_normalization == "residual"
    assert m.model_file(sample_checkpoint_dir()).name == "model.safetensors"
    stats = m.channel_stats["geopotential_500"]
    assert stats["std"] > 0 and stats["residual_std"] > 0
    # the older copies of facts in an older file are folded into their one home
    raw = _raw_sample()
    for copy in ("channels", "variables", "levels", "forcings", "statics", "history", "time_step"):
        assert copy in raw and copy not in m.to_json(), copy
    assert m.extra == {}


def test_json_round_trip(sample_meta, tmp_path):
    j = sample_meta.to_json()
    again = CheckpointMeta.from_json(json.loads(json.dumps(j)))
    assert again == sample_meta and again.to_json() == j
    assert CheckpointMeta.from_json(json.dumps(j)) == sample_meta  # from the text as well
    # a decoder checkpoint with its backbone and unknown extra entries
    dec = CheckpointMeta(
        model=ModelSpec("decoder", {"variables": ["total_precipitation_6hr"], "hidden": [8]}, 42),
        task="decoder",
        time_step_seconds=3600.0,
        backbone=BackboneRef("/runs/bb", "ab" * 32, "vit"),
        training={"global_step": 7},
        extra={"validation": {"rmse": {"total_precipitation_6hr": 0.5}}},
    )
    dec.write(tmp_path)
    back = CheckpointMeta.read(tmp_path)
    assert back == dec
    assert back.backbone.sha256 == "ab" * 32 and back.variables == ["total_precipitation_6hr"]
    assert back["validation"]["rmse"]["total_precipitation_6hr"] == 0.5  # the mapping view
    assert dict(back) == dec.to_json()


def test_older_copies_fill_a_missing_home():
    raw = _raw_sample()
    del raw["time_step_seconds"]  # only the old string copy left
    assert CheckpointMeta.from_json(raw).time_step_seconds == 21600.0


@pytest.mark.parametrize(
    "edit, match",
    [
        (lambda m: m.update(format="something-else"), "not an atmos checkpoint"),
        (lambda m: m.update(format_version=99), "newer than this atmos supports"),
        (lambda m: m.update(model="vit"), "model='vit'"),
        (lambda m: m["model"].pop("name"), "expected .*'name'"),
        (lambda m: m.update(training=[1, 2]), "training=\\[1, 2\\]"),
        (lambda m: m.update(time_step_seconds=-5), "time step -5"),
        # two copies of one fact that disagree: which one would a reader pick?
        (lambda m: m.update(time_step="12h"), "time_step='12h' but time_step_seconds=21600.0"),
        (lambda m: m.update(history=2), "history=2 but config.data.history=1"),
        (lambda m: m["channels"].update(history=3), "channels.history=3 but model.params.history=1"),
    ],
)
def test_malformed_or_contradicting_metadata_is_a_clear_error(edit, match):
    raw = _raw_sample()
    edit(raw)
    with pytest.raises(SourceError, match=match):
        CheckpointMeta.from_json(raw, source="ckpt/checkpoint.json")


def test_unreadable_json_is_a_clear_error(tmp_path):
    (tmp_path / META_FILE).write_text('{"format": "atmos-checkpoint", ')
    with pytest.raises(SourceError, match="cannot be read as JSON"):
        CheckpointMeta.read(tmp_path)


def test_save_checkpoint_writes_through_the_class(tmp_path, sample_meta):
    from atmos.train.checkpoint import save_checkpoint

    raw = {k: v for k, v in _raw_sample().items() if k not in ("format", "format_version", "files")}
    model, _ = load_model(sample_checkpoint_dir())
    path = save_checkpoint(tmp_path, "step-1", model.state_dict(), raw)
    written = json.loads((path / META_FILE).read_text())
    assert "channels" not in written and "time_step" not in written and "history" not in written
    assert CheckpointMeta.from_json(written).model == sample_meta.model
    bad = {**raw, "time_step": "1h"}  # contradicting metadata never reaches the disk
    with pytest.raises(SourceError, match="disagree"):
        save_checkpoint(tmp_path, "step-2", model.state_dict(), bad)
    assert not (tmp_path / "checkpoints" / "step-2").exists()


# -- the loader ----------------------------------------------------------------------------------


def test_load_model_builds_the_sample_strictly(tmp_path):
    model, meta = load_model(sample_checkpoint_dir())
    assert isinstance(meta, CheckpointMeta) and not model.training
    assert int(sum(p.numel() for p in model.parameters())) == meta.model.parameters
    # weights with a tensor left over are refused (strict), naming it
    from safetensors.torch import load_file, save_file

    dest = tmp_path / "ckpt"
    shutil.copytree(sample_checkpoint_dir(), dest, ignore=shutil.ignore_patterns("*.nc", "__*"))
    w = load_file(str(dest / "model.safetensors"))
    w["extra.weight"] = torch.zeros(2)
    save_file(w, str(dest / "model.safetensors"))
    with pytest.raises(ConfigError, match="extra.weight"):
        load_model(dest)
