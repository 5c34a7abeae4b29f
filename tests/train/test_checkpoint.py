"""Checkpoint files, round trips and bit-identical resume."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from atmos.errors import ConfigError, SourceError
from atmos.train import fit, load_checkpoint, load_model
from atmos.train.checkpoint import (
    find_checkpoint,
    get_rng_state,
    list_checkpoints,
    load_training_state,
    save_checkpoint,
    set_rng_state,
)


def test_save_load_round_trip_is_exact_and_weights_only(tmp_path):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 5), torch.nn.LayerNorm(5))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model(torch.randn(2, 4)).sum().backward()
    opt.step()
    state = {"optimizer": opt.state_dict(), "rng": [get_rng_state()], "note": "plain"}
    path = save_checkpoint(tmp_path, "step-00000001", model.state_dict(),
                           {"training": {"global_step": 1}, "stats": {"x": [1.0, None]}}, state, keep=2)
    assert sorted(p.name for p in path.iterdir()) == ["checkpoint.json", "model.safetensors", "training_state.pt"]
    assert (tmp_path / "checkpoints" / "LATEST").read_text().strip() == "step-00000001"
    ck = load_checkpoint(tmp_path)  # from the run folder, via LATEST
    for k, v in model.state_dict().items():
        assert torch.equal(ck.model_state[k], v)
    assert ck.meta["format"] == "atmos-checkpoint" and ck.meta["stats"] == {"x": [1.0, None]}
    # training_state.pt loads with weights_only=True (no pickled classes)
    ts = torch.load(path / "training_state.pt", weights_only=True)
    assert ts["note"] == "plain"
    opt2 = torch.optim.AdamW(model.parameters(), lr=1e-3)
    opt2.load_state_dict(ts["optimizer"])
    assert torch.equal(opt2.state_dict()["state"][0]["exp_avg"], opt.state_dict()["state"][0]["exp_avg"])


def test_rng_state_round_trip():
    import random

    import numpy as np

    s = get_rng_state()
    a = (torch.rand(3), np.random.rand(3), random.random())
    set_rng_state(s)
    b = (torch.rand(3), np.random.rand(3), random.random())
    assert torch.equal(a[0], b[0]) and np.array_equal(a[1], b[1]) and a[2] == b[2]


def test_keep_prunes_and_incomplete_checkpoints_are_ignored(tmp_path):
    w = {"w": torch.ones(2)}
    for step in (1, 2, 3):
        save_checkpoint(tmp_path, f"step-{step:08d}", w, {"training": {"global_step": step}}, {}, keep=2)
    assert [p.name for p in list_checkpoints(tmp_path)] == ["step-00000002", "step-00000003"]
    # a crash while writing leaves only a hidden temp folder: never picked up
    (tmp_path / "checkpoints" / ".step-00000004.abc.tmp").mkdir()
    (tmp_path / "checkpoints" / "LATEST").unlink()
    assert find_checkpoint(tmp_path).name == "step-00000003"
    with pytest.raises(SourceError, match="no atmos checkpoint"):
        load_checkpoint(tmp_path / "elsewhere")


def _weights(run_dir):
    return load_file(str(find_checkpoint(run_dir) / "model.safetensors"))


def test_fit_writes_a_complete_checkpoint_and_load_model_rebuilds_it(tiny_config):
    cfg = tiny_config(schedule={"epochs": 1, "warmup_steps": 1, "max_steps_per_epoch": 2})
    res = fit(cfg)
    assert res.status == "finished" and res.global_step == 2
    run = res.run_dir
    assert (run / "DONE").exists() and (run / "config.yaml").exists()
    meta = json.loads((res.checkpoint / "checkpoint.json").read_text())
    for key in ("atmos_version", "config", "data_schema", "grid", "normalization",
                "time_step_seconds", "training", "stats", "model"):
        assert key in meta, key
    # each fact once (atmos.models.checkpoint.CheckpointMeta): no copies of the model's channels,
    # of config.data or of the time step
    for copy in ("channels", "variables", "levels", "forcings", "statics", "history", "time_step"):
        assert copy not in meta, copy
    assert "channels" not in meta["normalization"]  # the channel table is data_schema
    assert meta["time_step_seconds"] == 6 * 3600
    assert meta["grid"]["type"] == "latlon" and meta["grid"]["shape"] == [8, 16]
    assert meta["model"]["params"]["outputs"][:2] == ["geopotential_500", "geopotential_850"]
    norm = next(c for c in meta["data_schema"]["groups"]["targets"] if c["name"] == "temperature_850")
    assert norm["std"] > 0 and norm["residual_std"] > 0 and 200 < norm["mean"] < 320
    assert meta["training"]["validation"]["rmse"]["geopotential_500"][0] > 0
    model, meta2 = load_model(res.checkpoint)
    w = _weights(run)
    for k, v in model.state_dict().items():
        if k in w:
            assert torch.equal(v, w[k])
    assert meta2["model"]["name"] == "vit"
    # metrics were logged
    lines = (run / "metrics.csv").read_text().splitlines()
    assert lines[0].startswith("epoch,global_step,split,loss")
    val = (run / "validation.csv").read_text().splitlines()
    assert len(val) == 1 + 5 * 2  # 5 channels x 2 lead steps
    assert ",6.0," in val[1] or ",6," in val[1]


@pytest.mark.parametrize("input_noise", [0.0, 0.1])
def test_resume_is_bit_identical_to_an_uninterrupted_run(tiny_config, input_noise):
    """Interrupt mid-epoch (with dropout, EMA, a K curriculum and noise injection in play), resume, compare."""
    sections = {
        "model": {"name": "vit", "params": {"embed_dim": 16, "depth": 2, "num_heads": 2, "window_size": [2, 2],
                                         "dropout": 0.2}},
        "optimizer": {"lr": 3e-3, "ema_decay": 0.9},
        "schedule": {"epochs": 2, "warmup_steps": 2, "max_steps_per_epoch": 3},
        "multistep": {"steps": 1, "maximum": 2, "epoch_increment": 1, "gradient": "full",
                      "input_noise": input_noise},
        "validation": {"samples": 2, "steps": 1},
    }
    ref = fit(tiny_config(**sections, output={"name": "ref", "progress": False}))
    cfg = tiny_config(**sections, output={"name": "split", "progress": False})
    first = fit(cfg, stop_after=4)  # stops in epoch 2 after its first step
    assert first.status == "stopped" and first.global_step == 4
    ts = load_training_state(first.checkpoint)
    assert ts["sampler"]["epoch"] == 1 and ts["sampler"]["position"] == 1
    with pytest.raises(ConfigError, match="already has checkpoints"):
        fit(cfg)  # no silent overwrite
    second = fit(cfg, resume=True)
    assert second.status == "finished" and second.global_step == ref.global_step == 6
    a, b = _weights(ref.run_dir), _weights(second.run_dir)
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    sa, sb = load_training_state(ref.checkpoint), load_training_state(second.checkpoint)
    for k in sa["raw_model"]:
        assert torch.equal(sa["raw_model"][k], sb["raw_model"][k]), k
    assert ref.validation["rmse"] == second.validation["rmse"]
    # the interrupted run's metrics.csv has no duplicated steps
    steps = [ln.split(",")[1] for ln in (second.run_dir / "metrics.csv").read_text().splitlines()[1:]
             if ln.split(",")[2] == "train"]
    assert steps == [str(i) for i in range(1, 7)]
