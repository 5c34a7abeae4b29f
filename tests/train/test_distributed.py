"""DDP with 2 gloo processes on CPU equals one process with the same global batch."""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import load_file

from atmos.train import fit
from atmos.train.checkpoint import find_checkpoint, load_training_state
from atmos.train.distributed import ResumableDistributedSampler
from tests.train.conftest import torchrun_train


def test_sampler_shards_one_permutation_and_resumes():
    single = ResumableDistributedSampler(10, 1, 0, seed=5)
    single.set_epoch(3)
    order = list(single)
    assert sorted(order) == list(range(10))
    ranks = [ResumableDistributedSampler(10, 2, r, seed=5) for r in range(2)]
    for s in ranks:
        s.set_epoch(3)
    r0, r1 = list(ranks[0]), list(ranks[1])
    # step s with batch B per rank covers positions [2Bs, 2B(s+1)) of the single order
    B = 2
    for s in range(2):
        assert sorted(r0[s * B:(s + 1) * B] + r1[s * B:(s + 1) * B]) == sorted(order[2 * B * s:2 * B * (s + 1)])
    ranks[1].set_epoch(3, start=2)
    assert list(ranks[1]) == r1[2:] and len(ranks[1]) == 3
    single.set_epoch(4)
    assert list(single) != order  # a new order every epoch


def test_ddp_two_gloo_processes_match_a_single_process(tiny_config):
    sections = {
        "schedule": {"epochs": 1, "warmup_steps": 1, "max_steps_per_epoch": 3},
        # 3 steps with truncated:2 = a 2-step chunk under no_sync, then a synced 1-step chunk
        "multistep": {"steps": 3, "maximum": 3, "gradient": "truncated:2"},
        "validation": {"samples": 4, "steps": 1},
    }
    data = tiny_config()["data"]
    ddp_cfg = tiny_config(**sections, data={**data, "batch_size": 2}, output={"name": "ddp", "progress": False})
    torchrun_train(ddp_cfg, nproc=2)
    ddp_run = Path(ddp_cfg["output"]["dir"]) / "ddp"
    state = load_training_state(ddp_run)
    assert state["sampler"]["world_size"] == 2 and len(state["rng"]) == 2
    # reference: one process, global batch 4 = 2 processes x 2
    ref = fit(tiny_config(**sections, data={**data, "batch_size": 4}, output={"name": "single", "progress": False}))
    a = load_file(str(find_checkpoint(ddp_run) / "model.safetensors"))
    b = load_file(str(ref.checkpoint / "model.safetensors"))
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-4, atol=2e-5, msg=k)
    # negative control: one process with the per-rank batch (other samples per step) ends elsewhere
    other = fit(tiny_config(**sections, output={"name": "single-b2", "progress": False}))
    c = load_file(str(other.checkpoint / "model.safetensors"))
    assert max(float((a[k] - c[k]).abs().max()) for k in a) > 1e-3
