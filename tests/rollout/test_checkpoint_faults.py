"""Damaged checkpoints give a clear SourceError (exit 2 from the CLI), never a raw traceback."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from atmos.cli.main import main
from atmos.errors import SourceError
from atmos.models.checkpoint import load_checkpoint, load_training_state
from atmos.rollout.sample import sample_checkpoint_dir


@pytest.fixture
def ckpt(tmp_path):
    dest = tmp_path / "ckpt"
    shutil.copytree(sample_checkpoint_dir(), dest, ignore=shutil.ignore_patterns("*.nc", "__*"))
    return dest


def _truncate(path, n):
    data = path.read_bytes()
    path.write_bytes(data[:n])


@pytest.mark.parametrize(
    "damage, match",
    [
        (lambda d: _truncate(d / "model.safetensors", 1000), "weights .* cannot be read"),
        (lambda d: _truncate(d / "model.safetensors", 0), "weights .* cannot be read"),
        (lambda d: _truncate(d / "seasonal.safetensors", 1000), "seasonal file .* cannot be read"),
        (lambda d: _truncate(d / "checkpoint.json", 500), "cannot be read as JSON"),
        (lambda d: (d / "checkpoint.json").write_text("[1, 2]"), "not an atmos checkpoint"),
    ],
)
def test_damaged_files_are_clear_errors(ckpt, damage, match, capsys):
    damage(ckpt)
    with pytest.raises(SourceError, match=match):
        load_checkpoint(ckpt)
    assert main(["rollout", "--model", str(ckpt), "--init", "2020-01-01", "--days", "1"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and "error:" in err


def test_shape_mismatch_is_a_clear_error(ckpt, capsys):
    meta = json.loads((ckpt / "checkpoint.json").read_text())
    meta["model"]["params"]["embed_dim"] = 2 * meta["model"]["params"]["embed_dim"]
    (ckpt / "checkpoint.json").write_text(json.dumps(meta))
    assert main(["rollout", "--model", str(ckpt), "--init", "2020-01-01", "--days", "1"]) == 2
    err = capsys.readouterr().err
    assert "do not fit the model" in err and "Traceback" not in err


class _Pickled:
    """A class instance: torch.save pickles it, weights_only=True must refuse it."""


def test_pickled_training_state_is_refused(ckpt):
    torch.save({"x": _Pickled()}, ckpt / "training_state.pt")
    with pytest.raises(SourceError, match="weights_only=True"):
        load_training_state(ckpt)
