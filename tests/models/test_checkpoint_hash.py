"""One model hash: ``atmos_checkpoint_sha256`` is the weights hash whichever way the model was loaded.

:func:`atmos.models.checkpoint.weights_hash` (over the state-dict tensors) is the one
definition, so a forecast store written with the model loaded from its checkpoint
folder resumes with the same weights wrapped in memory, and the other way round.
Stores written by atmos before that (a hash of the weights *file*) are still
recognised while the checkpoint they name is there, and refused with a message that
says why otherwise.

This module uses only APIs that existed before the change, so it runs (and fails) on
the old code too.
"""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch

from atmos.errors import ConfigError
from atmos.models.checkpoint import load_model, weights_hash
from atmos.rollout.sample import sample_checkpoint_dir, sample_data_path

INIT = "2020-01-01T12"


@pytest.fixture(scope="module")
def sample_ds():
    import xarray as xr

    return xr.open_dataset(sample_data_path()).load()


def _stats():
    """The sample's training statistics (``checkpoint.json`` ``stats``)."""
    import xarray as xr

    def nan(x):
        return float("nan") if x is None else [nan(v) for v in x] if isinstance(x, list) else x

    d = dict(load_model(sample_checkpoint_dir())[1]["stats"])
    d["data_vars"] = {k: {**v, "data": nan(v["data"])} for k, v in d["data_vars"].items()}
    ds = xr.Dataset.from_dict(d)
    ds["statistic"] = ds["statistic"].astype(str)
    return ds


# -- one hash, whichever way the model was loaded --------------------------------------------------


@pytest.fixture(scope="module")
def two_ways():
    """The sample weights loaded from the checkpoint folder and wrapped in memory."""
    from atmos.rollout import Forecaster

    a = Forecaster.from_checkpoint(sample_checkpoint_dir())
    model, _ = load_model(sample_checkpoint_dir())
    b = Forecaster.from_model(model, _stats(), step="6h", name="sample-in-memory")
    return a, b


def test_same_weights_same_hash_both_ways(two_ways):
    a, b = two_ways
    assert a.info["atmos_checkpoint"] != b.info["atmos_checkpoint"]  # loaded two ways
    assert a.info["atmos_checkpoint_sha256"] == b.info["atmos_checkpoint_sha256"] == weights_hash(a.model)
    from atmos.models.checkpoint import HASH_METHOD

    assert a.info["atmos_checkpoint_hash"] == b.info["atmos_checkpoint_hash"] == HASH_METHOD


def _interrupt_at(lead):
    def cb(i, k):
        if k == lead:
            raise KeyboardInterrupt

    return cb


@pytest.mark.parametrize("first, second", [(0, 1), (1, 0)], ids=["checkpoint-then-memory", "memory-then-checkpoint"])
def test_store_written_one_way_resumes_the_other_way(two_ways, sample_ds, tmp_path, first, second):
    from atmos.rollout import rollout
    from atmos.rollout.writer import read_progress

    out = tmp_path / "f.zarr"
    with pytest.raises(KeyboardInterrupt):
        rollout(two_ways[first], sample_ds, INIT, steps=3, out=out, callback=_interrupt_at(2))
    assert read_progress(out)["atmos_status"] == "interrupted"
    got = rollout(two_ways[second], sample_ds, INIT, steps=3, out=out, resume=True)
    assert got.attrs["atmos_status"] == "complete"
    assert np.isfinite(got["geopotential"].values).all()


def test_resume_still_refuses_other_weights(two_ways, sample_ds, tmp_path):
    import copy

    from atmos.rollout import Forecaster, rollout

    a, _ = two_ways
    out = tmp_path / "f.zarr"
    with pytest.raises(KeyboardInterrupt):
        rollout(a, sample_ds, INIT, steps=3, out=out, callback=_interrupt_at(2))
    other = copy.deepcopy(a.model)
    with torch.no_grad():
        next(other.parameters()).add_(1e-3)
    c = Forecaster.from_model(other, _stats(), step="6h")
    with pytest.raises(ConfigError, match="checkpoint_sha256"):
        rollout(c, sample_ds, INIT, steps=3, out=out, resume=True)


def _file_sha256(path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()


def _make_legacy(out, sha: str) -> None:
    """Rewrite a store's attributes the way atmos wrote them before: a hash of the weights file."""
    import zarr

    g = zarr.open_group(str(out), mode="r+")
    attrs = dict(g.attrs)
    attrs.pop("atmos_checkpoint_hash", None)
    attrs["atmos_checkpoint_sha256"] = sha
    g.attrs.clear()
    g.attrs.update(attrs)


def test_store_with_the_old_file_hash_is_recognised(two_ways, sample_ds, tmp_path):
    from atmos.rollout import rollout

    a, b = two_ways
    ckpt = tmp_path / "ckpt"
    shutil.copytree(sample_checkpoint_dir(), ckpt, ignore=shutil.ignore_patterns("*.nc", "__*"))
    from atmos.rollout import Forecaster

    a = Forecaster.from_checkpoint(ckpt)
    old_sha = _file_sha256(ckpt / "model.safetensors")
    assert old_sha != a.info["atmos_checkpoint_sha256"]  # the two definitions differ
    for fc in (a, b):  # the checkpoint the store names is there: its file hash is recognised
        out = tmp_path / f"{fc.name}.zarr"
        with pytest.raises(KeyboardInterrupt):
            rollout(a, sample_ds, INIT, steps=3, out=out, callback=_interrupt_at(2))
        _make_legacy(out, old_sha)
        assert rollout(fc, sample_ds, INIT, steps=3, out=out, resume=True).attrs["atmos_status"] == "complete"
    # the checkpoint is gone and the model is in memory: refused, saying why
    out = tmp_path / "gone.zarr"
    with pytest.raises(KeyboardInterrupt):
        rollout(a, sample_ds, INIT, steps=3, out=out, callback=_interrupt_at(2))
    _make_legacy(out, old_sha)
    shutil.rmtree(ckpt)
    with pytest.raises(ConfigError, match="a hash of the weights file"):
        rollout(b, sample_ds, INIT, steps=3, out=out, resume=True)
