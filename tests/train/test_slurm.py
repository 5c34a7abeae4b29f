"""`atmos slurm` writes a checkable sbatch script (dry run: nothing is submitted)."""

from __future__ import annotations

import argparse
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from atmos.cli import slurm as slurm_cli
from atmos.errors import ConfigError
from atmos.train.slurm import SlurmJob, parse_walltime, render_sbatch


def _parse(argv):
    parser = argparse.ArgumentParser(prog="atmos")
    sub = parser.add_subparsers(dest="command")
    slurm_cli.add_parser(sub)
    return parser.parse_args(argv)


@pytest.fixture
def config_file(tmp_path):
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump({"model": {"name": "vit"}, "output": {"dir": str(tmp_path / "runs")}}))
    return path


def test_script_launches_torchrun_with_rendezvous_and_requeues(config_file, tmp_path, capsys):
    args = _parse(["slurm", str(config_file), "optimizer.lr=3e-4", "--nodes", "4", "--gpus-per-node", "8",
                   "--time", "12:00:00", "--account", "proj1", "--partition", "gpu",
                   "--setup", "source ~/venv/bin/activate"])
    assert args.func(args) == 0
    out = capsys.readouterr().out
    script = tmp_path / "runs" / "exp" / "train.sbatch"
    assert f"sbatch {script}" in out
    text = script.read_text()
    lines = text.splitlines()
    assert lines[0] == "#!/bin/bash"
    for opt in ("--nodes=4", "--ntasks-per-node=1", "--gpus-per-node=8", "--time=12:00:00",
                "--account=proj1", "--partition=gpu", "--requeue", "--open-mode=append"):
        assert f"#SBATCH {opt}" in lines
    assert "srun --kill-on-bad-exit=1 --ntasks-per-node=1 \\" in lines
    assert 'torchrun --nnodes="$SLURM_JOB_NUM_NODES" --nproc-per-node=8 \\' in text
    assert '--rdzv-id="$SLURM_JOB_ID" --rdzv-backend=c10d --rdzv-endpoint="$MASTER_ADDR:$MASTER_PORT"' in text
    assert 'MASTER_ADDR=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)' in text
    assert '-m atmos.cli.train "$CONFIG" optimizer.lr=3e-4 --resume' in text
    assert f"cd {Path.cwd()}" in text  # relative config paths resolve as at submission
    assert f"CONFIG={config_file.absolute()}" in text
    assert "end_s=$(( $(date +%s) + 43200 ))" in text and "ATMOS_DEADLINE=$(( end_s - 300 ))" in text
    assert "#SBATCH --signal=B:USR1@300" in lines
    assert 'scontrol requeue "$SLURM_JOB_ID"' in text and '-f "$RUN_DIR/DONE"' in text
    assert text.index("source ~/venv/bin/activate") < text.index("srun ")
    if shutil.which("bash"):
        assert subprocess.run(["bash", "-n", str(script)], check=False).returncode == 0  # valid shell syntax


def test_dry_run_prints_and_writes_nothing(config_file, tmp_path, capsys):
    args = _parse(["slurm", str(config_file), "--nodes", "1", "--gpus-per-node", "0", "--time", "1-00:00:00",
                   "--dry-run"])
    assert args.func(args) == 0
    text = capsys.readouterr().out
    assert text.startswith("#!/bin/bash") and "--gpus-per-node" not in text and "--nproc-per-node=1" in text
    assert "+ 86400 ))" in text
    assert not (tmp_path / "runs" / "exp" / "train.sbatch").exists()


def test_bad_inputs_fail_before_writing(config_file):
    with pytest.raises(ConfigError, match="HH:MM:SS"):
        parse_walltime("12h")
    assert parse_walltime("2-01:00:05") == 2 * 86400 + 3600 + 5
    with pytest.raises(ConfigError, match="--nodes must be >= 1"):
        render_sbatch(SlurmJob(config="c.yaml", run_dir="r", nodes=0))
    with pytest.raises(ConfigError, match="margin"):
        render_sbatch(SlurmJob(config="c.yaml", run_dir="r", time="00:04:00", margin_s=300))
    args = _parse(["slurm", str(config_file), "optimizer.lrr=1", "--nodes", "1", "--gpus-per-node", "1",
                   "--time", "01:00:00"])
    with pytest.raises(ConfigError, match="unknown key 'lrr'"):
        args.func(args)


def test_cluster_options_are_parsed_and_bad_ones_named():
    from atmos.cli._cluster import DEFAULTS, _options

    opts = _options(["queue=debug", "cores=4", "walltime=02:00:00", "memory=16GB"])
    assert opts == {**DEFAULTS, "queue": "debug", "cores": 4, "walltime": "02:00:00", "memory": "16GB"}
    with pytest.raises(ConfigError, match="KEY=VALUE.*got 'queue'"):
        _options(["queue"])


def test_time_limit_stop_reads_the_end_time_and_forwards_sigusr1_late(config_file, capsys):
    args = _parse(["slurm", str(config_file), "--nodes", "1", "--gpus-per-node", "0", "--time", "00:10:00",
                   "--margin", "50", "--dry-run"])
    assert args.func(args) == 0
    text = capsys.readouterr().out
    # the end time from SLURM (follows `scontrol update TimeLimit=`), the static limit as the fallback
    assert 'scontrol show job "$SLURM_JOB_ID"' in text and "EndTime=" in text
    assert "ATMOS_DEADLINE=$(( end_s - 50 ))" in text and "+ 600 ))" in text
    # traps before anything else; SIGUSR1 forwarded to the steps only after the grace period
    assert text.index("trap forward_usr1 USR1") < text.index("cd ")
    assert "-ge 60 ]; then" in text and 'scancel --signal=USR1 "$SLURM_JOB_ID"' in text
