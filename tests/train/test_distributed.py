"""DDP with 2 gloo processes on CPU equals one process with the same global batch."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

from atmos.train import fit
from atmos.train.checkpoint import find_checkpoint, load_training_state
from atmos.train.distributed import ResumableDistributedSampler


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


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _torchrun_train(cfg: dict, nproc: int) -> None:
    """Run ``atmos train`` under ``torchrun`` exactly as a user would (fresh processes, no fork).

    A timeout turns a hung rendezvous or collective into a failed test instead of a stuck CI job.
    """
    path = Path(cfg["output"]["dir"]) / "ddp.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(cfg))
    env = {k: v for k, v in os.environ.items() if k != "ATMOS_DEADLINE"}
    env.update(OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    cmd = [sys.executable, "-m", "torch.distributed.run", f"--nproc-per-node={nproc}",
           "--master-addr=127.0.0.1", f"--master-port={_free_port()}",
           "-m", "atmos.cli.main", "train", str(path), "--no-progress", "--log-level", "WARNING"]
    try:
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    except subprocess.TimeoutExpired as err:
        pytest.fail(f"torchrun did not finish in 300 s:\n{err.stdout}\n{err.stderr}")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]


def test_ddp_two_gloo_processes_match_a_single_process(tiny_config):
    sections = {
        "schedule": {"epochs": 1, "warmup_steps": 1, "max_steps_per_epoch": 3},
        # 3 steps with truncated:2 = a 2-step chunk under no_sync, then a synced 1-step chunk
        "multistep": {"steps": 3, "maximum": 3, "gradient": "truncated:2"},
        "validation": {"samples": 4, "steps": 1},
    }
    data = tiny_config()["data"]
    ddp_cfg = tiny_config(**sections, data={**data, "batch_size": 2}, output={"name": "ddp", "progress": False})
    _torchrun_train(ddp_cfg, nproc=2)
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
