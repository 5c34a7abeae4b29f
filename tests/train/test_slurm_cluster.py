"""Training under a real (local, throwaway) SLURM scheduler: srun torchrun, preemption, requeue, resume.

One job of ``atmos slurm CONFIG --submit`` (2 gloo processes under ``srun torchrun``) is
requeued by ``scontrol requeue``, signalled by ``scancel --signal=TERM`` and stopped at its
time limit (minus the margin); it requeues itself until training is done and must end with
the weights of an uninterrupted 2-process run, bit for bit, and a metrics CSV without
duplicated or missing steps. Skipped where SLURM/munge/root are missing (see the
``slurm_cluster`` fixture in ``tests/conftest.py``).
"""

from __future__ import annotations

import csv
import os
import socket
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

from atmos.models.checkpoint import find_checkpoint
from atmos.train.config import load_config

from .conftest import VARIABLES, make_config

pytestmark = pytest.mark.slurm

#: seconds before the end of the job at which training checkpoints and stops
MARGIN = 54


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait(cond, timeout: float, what: str, cluster=None, job=None, log: Path | None = None):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = cond()
        if value:
            return value
        time.sleep(0.1)
    state = cluster.job_state(job) if cluster is not None and job is not None else ""
    tail = log.read_text()[-3000:] if log is not None and log.exists() else ""
    pytest.fail(f"{what} within {timeout} s (job state {state}):\n{tail}")


def _steps(csv_path: Path) -> int:
    """The last step in the metrics CSV (0 if none yet)."""
    if not csv_path.exists():
        return 0
    with open(csv_path, newline="") as f:
        steps = [int(r["global_step"]) for r in csv.DictReader(f) if r.get("global_step")]
    return max(steps, default=0)


def _latest_step(run_dir: Path) -> int:
    ck = find_checkpoint(run_dir)
    return int(ck.name.split("-")[1]) if ck is not None else 0


def _rows(csv_path: Path) -> list[tuple]:
    """The metrics CSV without its timing columns."""
    with open(csv_path, newline="") as f:
        return [(r["epoch"], r["global_step"], r["split"], r["loss"], r["lr"], r["rollout_steps"])
                for r in csv.DictReader(f)]


@pytest.fixture(scope="module")
def long_store(tmp_path_factory) -> Path:
    """26 days, 6-hourly, 8x16: 44 steps per epoch for 2 processes with batch 1."""
    from atmos.testing import mock_era5

    ds = mock_era5("2020-01-01", periods=104, nlat=8, nlon=16, levels=(500, 850),
                   variables=[*VARIABLES, "toa_incident_solar_radiation"], canonical=True, seed=3)
    path = tmp_path_factory.mktemp("slurm-data") / "mock.zarr"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds.to_zarr(path, mode="w")
    return path


def test_requeued_preempted_and_timed_out_job_equals_uninterrupted_run(slurm_cluster, long_store, tmp_path,
                                                                       monkeypatch, capsys):
    from atmos.cli.main import main

    cluster = slurm_cluster
    cfg = make_config(
        long_store, tmp_path / "runs",
        schedule={"epochs": 12, "warmup_steps": 2, "max_steps_per_epoch": 1000},
        multistep={"steps": 1, "maximum": 1, "epoch_increment": 0},
        validation={"source": str(long_store), "period": ["2020-01-23", "2020-01-26T18"], "samples": 2, "steps": 1,
                    "every_epochs": 1000},
        output={"name": "job", "keep_checkpoints": 2},
    )
    cfg["data"].update(period=["2020-01-01", "2020-01-22T18"], batch_size=1)
    config = tmp_path / "job.yaml"
    config.write_text(yaml.safe_dump(cfg))
    ref_config = tmp_path / "ref.yaml"
    ref_config.write_text(yaml.safe_dump({**cfg, "output": {**cfg["output"], "name": "ref"}}))
    steps_total = load_config(config).schedule.epochs * 44

    t0 = time.monotonic()
    # the reference: 2 gloo processes under torchrun, uninterrupted (runs beside the SLURM job)
    env = {k: v for k, v in os.environ.items() if k != "ATMOS_DEADLINE"}
    env.update(OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    ref = subprocess.Popen(
        [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node=2", "--master-addr=127.0.0.1",
         f"--master-port={_free_port()}", "-m", "atmos.cli.main", "train", str(ref_config), "--no-progress",
         "--log-level", "WARNING"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )

    monkeypatch.setenv("SLURM_CONF", str(cluster.conf))
    monkeypatch.delenv("ATMOS_DEADLINE", raising=False)
    bindir = Path(sys.executable).parent
    assert main(["slurm", str(config), "--nodes", "1", "--gpus-per-node", "0", "--procs-per-node", "2",
                 "--cpus-per-task", "2", "--time", "00:10:00", "--margin", str(MARGIN),
                 "--setup", f'export PATH="{bindir}:$PATH"', "--submit"]) == 0
    out = capsys.readouterr().out
    assert "submitted job " in out and "squeue -j" in out
    job = out.split("submitted job ")[1].split()[0]
    run_dir = tmp_path / "runs" / "job"
    metrics = run_dir / "metrics.csv"
    log = run_dir / f"slurm-{job}.out"

    def running() -> bool:
        return cluster.job_state(job)[0] == "RUNNING"

    def progressed(since: int):
        def cond() -> bool:
            cluster.release(job)  # skip SLURM's requeue delay (BeginTime)
            return running() and _steps(metrics) > since

        return cond

    def requeued() -> bool:
        return cluster.job_state(job)[0] == "PENDING"

    # 1. preemption by `scontrol requeue`: SIGTERM to every process, SLURM requeues the job
    _wait(progressed(0), 60, "training did not start", cluster, job, log)
    cluster.run("scontrol", "requeue", job)
    _wait(requeued, 60, "the job was not requeued", cluster, job, log)
    print(f"requeued after scontrol requeue at {time.monotonic() - t0:.1f} s")
    first = _latest_step(run_dir)
    assert 0 < first < steps_total, "scontrol requeue did not leave a checkpoint"

    # 2. preemption by SIGTERM to the job steps (`scancel --signal=TERM`): the script requeues the job
    _wait(progressed(first), 60, "the requeued job did not resume", cluster, job, log)
    cluster.run("scancel", "--signal=TERM", job)
    _wait(lambda: requeued() and _latest_step(run_dir) > first, 60, "the job did not requeue itself", cluster,
          job, log)
    second = _latest_step(run_dir)
    print(f"requeued after SIGTERM at {time.monotonic() - t0:.1f} s")
    assert second < steps_total
    # 3. the time limit: 1 minute, so that the margin (ATMOS_DEADLINE, SIGUSR1) is reached 6 s after the start
    cluster.run("scontrol", "update", f"JobId={job}", "TimeLimit=1")
    def started(restart: int):
        def cond() -> bool:
            cluster.release(job)
            return f"(restart {restart})" in log.read_text()

        return cond

    # (the deadline may come before the first step on a loaded machine: no progress required)
    _wait(started(2), 60, "the job did not resume after SIGTERM", cluster, job, log)
    _wait(requeued, 60, "the job did not stop and requeue itself at its time limit", cluster, job, log)
    third = _latest_step(run_dir)
    print(f"requeued at the time limit at {time.monotonic() - t0:.1f} s")
    assert second <= third < steps_total
    cluster.run("scontrol", "update", f"JobId={job}", "TimeLimit=10")

    # 4. the last run finishes training
    def finished() -> bool:
        cluster.release(job)
        return (run_dir / "DONE").exists() and cluster.job_state(job)[0] in ("COMPLETED", "")

    _wait(finished, 90,
          "training did not finish", cluster, job, log)
    print(f"finished at {time.monotonic() - t0:.1f} s")
    text = log.read_text()
    assert [f"(restart {k})" in text for k in range(4)] == [True] * 4, text
    assert text.count("atmos: terminated by SLURM") == 1, text  # scontrol requeue
    assert text.count("requeueing job") == 2, text  # scancel --signal=TERM, time limit
    assert text.count("before the time limit; requeueing job") == 1, text
    assert "atmos: training finished" in text

    try:
        ref_out, _ = ref.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        ref.kill()
        pytest.fail("the reference run did not finish in 120 s")
    assert ref.returncode == 0, ref_out[-3000:]
    ref_dir = tmp_path / "runs" / "ref"
    a = load_file(str(find_checkpoint(run_dir) / "model.safetensors"))
    b = load_file(str(find_checkpoint(ref_dir) / "model.safetensors"))
    assert a.keys() == b.keys() and a
    for k in a:
        assert torch.equal(a[k], b[k]), k
    rows, ref_rows = _rows(metrics), _rows(ref_dir / "metrics.csv")
    train_steps = [int(r[1]) for r in rows if r[2] == "train"]
    assert train_steps == list(range(1, steps_total + 1))  # no step twice, none missing
    # every row, the epoch rows' mean training loss included, is equal bit for bit
    assert rows == ref_rows
    assert [r for r in rows if r[2] != "epoch"] == [r for r in ref_rows if r[2] != "epoch"]
