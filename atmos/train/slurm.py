"""Write SLURM batch scripts that run ``atmos train`` under ``srun torchrun`` and requeue themselves.

The script starts one ``torchrun`` per node (``srun --ntasks-per-node=1``) with a c10d
rendezvous on the first node of the allocation, and ``G`` workers per node. Training
always runs with ``--resume``: the first job starts fresh, every later one continues
from ``checkpoints/LATEST``. The script exports ``ATMOS_DEADLINE`` (the job's end time
minus a margin, in Unix seconds); the trainer checkpoints and exits cleanly when it
is reached, and the script then requeues the job (``scontrol requeue``) unless the
run has written its ``DONE`` marker. A crash (non-zero exit) is not requeued.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

from atmos.errors import ConfigError

__all__ = ["SlurmJob", "parse_walltime", "render_sbatch", "submit_hint"]

_TIME = re.compile(r"^(?:(\d+)-)?(\d+):(\d{2}):(\d{2})$")


def parse_walltime(text: str) -> int:
    """Seconds in a SLURM time limit ``HH:MM:SS`` or ``D-HH:MM:SS``.

    Raises
    ------
    ConfigError
        For any other form.
    """
    m = _TIME.match(str(text).strip())
    if not m:
        raise ConfigError(f"--time must be HH:MM:SS or D-HH:MM:SS (e.g. 12:00:00), got {text!r}.")
    days, h, mi, s = (int(g) if g else 0 for g in m.groups())
    if mi >= 60 or s >= 60:
        raise ConfigError(f"--time {text!r} has minutes or seconds >= 60.")
    total = ((days * 24 + h) * 60 + mi) * 60 + s
    if total <= 0:
        raise ConfigError(f"--time must be positive, got {text!r}.")
    return total


@dataclass
class SlurmJob:
    """What the batch script needs.

    Attributes
    ----------
    config : str
        Path of the training config (made absolute in the script).
    run_dir : str
        The run directory (``output.dir/output.name``), for logs and the DONE marker.
    nodes, gpus_per_node : int
        Allocation; ``gpus_per_node`` workers run on each node (at least 1: CPU-only
        nodes with ``gpus_per_node=0`` run one worker each).
    time : str
        Wall-clock limit ``HH:MM:SS``.
    account, partition : str, optional
    cpus_per_task : int
        CPUs for each node's torchrun (shared by its workers).
    margin_s : int
        Seconds before the limit at which training checkpoints and exits.
    overrides : list of str
        ``key=value`` config overrides passed to ``atmos train``.
    setup : list of str
        Shell lines run before launching (``module load ...``, ``source venv/bin/activate``).
    job_name : str
    extra_sbatch : list of str
        More ``#SBATCH`` options, e.g. ``--qos=high``.
    workdir : str, optional
        Folder the job runs in (default: the current one), so that relative paths in
        the config mean the same at submission and at run time.
    """

    config: str
    run_dir: str
    nodes: int = 1
    gpus_per_node: int = 1
    time: str = "12:00:00"
    account: str | None = None
    partition: str | None = None
    cpus_per_task: int = 8
    margin_s: int = 300
    overrides: list[str] = field(default_factory=list)
    setup: list[str] = field(default_factory=list)
    job_name: str = "atmos-train"
    extra_sbatch: list[str] = field(default_factory=list)
    workdir: str | None = None

    def validate(self) -> None:
        if self.nodes < 1:
            raise ConfigError(f"--nodes must be >= 1, got {self.nodes}.")
        if self.gpus_per_node < 0:
            raise ConfigError(f"--gpus-per-node must be >= 0, got {self.gpus_per_node}.")
        if self.cpus_per_task < 1:
            raise ConfigError(f"--cpus-per-task must be >= 1, got {self.cpus_per_task}.")
        limit = parse_walltime(self.time)
        if self.margin_s < 0 or self.margin_s >= limit:
            raise ConfigError(
                f"the checkpoint margin ({self.margin_s} s) must be >= 0 and shorter than --time {self.time} "
                f"({limit} s); lower --margin."
            )
        for name in ("account", "partition", "job_name"):
            v = getattr(self, name)
            if v is not None and (not v or any(c.isspace() for c in v)):
                raise ConfigError(f"--{name.replace('_', '-')} must be a non-empty word, got {v!r}.")


def _q(s: str | Path) -> str:
    return shlex.quote(str(s))


def render_sbatch(job: SlurmJob) -> str:
    """The text of the sbatch script for ``job`` (see the module docstring)."""
    job.validate()
    limit = parse_walltime(job.time)
    workers = max(1, job.gpus_per_node)
    workdir = Path(job.workdir).absolute() if job.workdir else Path.cwd()
    run_dir = (workdir / job.run_dir).absolute()
    config = (workdir / job.config).absolute()
    lines = [
        "#!/bin/bash",
        f"#SBATCH --job-name={job.job_name}",
        f"#SBATCH --nodes={job.nodes}",
        "#SBATCH --ntasks-per-node=1",
    ]
    if job.gpus_per_node > 0:
        lines.append(f"#SBATCH --gpus-per-node={job.gpus_per_node}")
    lines += [
        f"#SBATCH --cpus-per-task={job.cpus_per_task}",
        f"#SBATCH --time={job.time}",
    ]
    if job.account:
        lines.append(f"#SBATCH --account={job.account}")
    if job.partition:
        lines.append(f"#SBATCH --partition={job.partition}")
    lines += [
        f"#SBATCH --output={run_dir}/slurm-%j.out",
        "#SBATCH --open-mode=append",
        "#SBATCH --requeue",
    ]
    lines += [f"#SBATCH {opt}" for opt in job.extra_sbatch]
    train_args = " ".join(_q(o) for o in job.overrides)
    lines += [
        "",
        "# Written by `atmos slurm`. Each (re)queued job resumes from the run's last checkpoint.",
        "set -uo pipefail",
        f"cd {_q(workdir)}  # relative paths in the config resolve as they did for `atmos slurm`",
        f"RUN_DIR={_q(run_dir)}",
        f"CONFIG={_q(config)}",
        'mkdir -p "$RUN_DIR"',
        "",
        *job.setup,
        "",
        "# rendezvous on the first node of the allocation",
        'export MASTER_ADDR=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)',
        "export MASTER_PORT=$((29500 + SLURM_JOB_ID % 1000))",
        f"export OMP_NUM_THREADS=$(( {job.cpus_per_task} / {workers} > 0 ? {job.cpus_per_task} / {workers} : 1 ))",
        f"# checkpoint and stop {job.margin_s} s before the {job.time} limit",
        f"export ATMOS_DEADLINE=$(( $(date +%s) + {limit} - {job.margin_s} ))",
        "",
        'echo "atmos: job $SLURM_JOB_ID (restart ${SLURM_RESTART_COUNT:-0}) on $SLURM_JOB_NUM_NODES node(s),'
        + ' rendezvous $MASTER_ADDR:$MASTER_PORT"',
        "srun --kill-on-bad-exit=1 --ntasks-per-node=1 \\",
        f"    torchrun --nnodes=\"$SLURM_JOB_NUM_NODES\" --nproc-per-node={workers} \\",
        '    --rdzv-id="$SLURM_JOB_ID" --rdzv-backend=c10d --rdzv-endpoint="$MASTER_ADDR:$MASTER_PORT" \\',
        f'    -m atmos.cli.train "$CONFIG"{(" " + train_args) if train_args else ""} --resume',
        "status=$?",
        "",
        'if [ -f "$RUN_DIR/DONE" ]; then',
        '    echo "atmos: training finished"',
        "    exit 0",
        "fi",
        'if [ "$status" -eq 0 ]; then',
        '    echo "atmos: stopped before the time limit with a checkpoint; requeueing job $SLURM_JOB_ID"',
        '    scontrol requeue "$SLURM_JOB_ID"',
        "    exit 0",
        "fi",
        'echo "atmos: training failed with status $status; not requeued (fix and resubmit: it resumes)" >&2',
        'exit "$status"',
        "",
    ]
    return "\n".join(lines)


def submit_hint(script: str | Path) -> str:
    """How to submit and follow the job."""
    s = _q(Path(script))
    return f"Submit with:  sbatch {s}\nFollow with:  squeue --me ; tail -f <run_dir>/slurm-<jobid>.out"

