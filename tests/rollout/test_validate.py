"""Known-answer check of the embedded default (atmos validate)."""

from __future__ import annotations

import json
import shutil

import pytest

from atmos.cli.main import main
from atmos.errors import AtmosError, SourceError
from atmos.rollout.sample import sample_checkpoint_dir
from atmos.rollout.validate import RTOL, SCORECARD_FILE, validate_sample


@pytest.fixture
def sample_copy(tmp_path):
    dest = tmp_path / "ckpt"
    dest.mkdir()
    for f in [*sample_checkpoint_dir().glob("*.safetensors"), sample_checkpoint_dir() / "checkpoint.json",
              sample_checkpoint_dir() / SCORECARD_FILE]:
        shutil.copyfile(f, dest / f.name)
    return dest


def _edit_schema(folder, fn):
    meta = json.loads((folder / "checkpoint.json").read_text())
    fn(meta["data_schema"]["groups"])
    (folder / "checkpoint.json").write_text(json.dumps(meta))


def test_shipped_model_reproduces_committed_scorecard():
    report = validate_sample()
    assert report.ok, report.format()
    assert report.n_values >= 14 * 3 * 5 and report.worst <= RTOL


def test_changed_normalization_fails(sample_copy):
    def scale(groups):
        c = next(c for c in groups["inputs"] if c["name"] == "geopotential_500")
        c["std"] *= 1.01

    _edit_schema(sample_copy, scale)
    report = validate_sample(sample_copy)
    assert not report.ok and report.worst > 10 * RTOL
    assert any(f[0] == "geopotential_500" for f in report.failures)


def test_swapped_channel_order_fails(sample_copy):
    def swap(groups):
        ins = groups["inputs"]
        i = [c["name"] for c in ins].index("temperature_850")
        j = [c["name"] for c in ins].index("temperature_500")
        ins[i], ins[j] = ins[j], ins[i]

    _edit_schema(sample_copy, swap)
    # caught either by the channel-table check when the model is built or by the scorecard
    try:
        report = validate_sample(sample_copy)
    except AtmosError as err:
        assert "different order" in str(err)
    else:
        assert not report.ok


def test_cli_exit_codes(sample_copy, capsys):
    assert main(["validate", "--model", str(sample_copy)]) == 0
    assert "passed" in capsys.readouterr().out
    _edit_schema(sample_copy, lambda g: g["inputs"][0].__setitem__("mean", g["inputs"][0]["mean"] + 50.0))
    assert main(["validate", "--model", str(sample_copy)]) == 1
    assert "FAILED" in capsys.readouterr().out


def test_missing_scorecard_is_a_clear_error(sample_copy):
    (sample_copy / SCORECARD_FILE).unlink()
    with pytest.raises(SourceError, match="atmos validate --write"):
        validate_sample(sample_copy)
