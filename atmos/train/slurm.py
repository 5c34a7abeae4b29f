"""SLURM batch scripts for ``atmos train`` (``srun torchrun``, requeue, resume) and job arrays; submission.

Training
--------
The script starts one ``torchrun`` per node (``srun --ntasks-per-node=1``) with a c10d
rendezvous on the first node of the allocation, and ``G`` workers per node. Training
always runs with ``--resume``: the first job starts fresh, every later one continues
from ``checkpoints/LATEST``. Three ways to stop, each ending with a checkpoint:

* the time limit: the script exports ``ATMOS_DEADLINE`` (the job's end time minus a
  margin, in Unix seconds) and asks SLURM for ``SIGUSR1`` ``margin``
  seconds before the limit (``#SBATCH --signal=B:USR1@margin``, which follows a limit
  changed with ``scontrol update``); the batch shell forwards it to the training
  processes (``scancel --signal=USR1``, torchrun forwards it to its workers), at the
  earliest 60 s after their launch (SLURM may send it early; a process that has not
  installed its handler yet would die of it). ``ATMOS_DEADLINE`` is computed from the
  job's ``EndTime`` when the job starts, so a limit changed while the job waits counts;
* ``SIGTERM`` to the job steps (``scancel --signal=TERM JOBID``, which SLURM does not
  follow by ending the job): the trainer checkpoints and stops;
* preemption or ``scontrol requeue JOBID``: SLURM sends ``SIGTERM`` to every process
  and ``SIGKILL`` ``KillWait`` seconds later; the trainer checkpoints in between and
  SLURM requeues the job itself.

A trainer that stopped cleanly writes ``RUN_DIR/STOPPED``; the script then requeues
its job (``scontrol requeue``) unless the run has written ``DONE``, or, in a chain of
jobs (:func:`submit` with ``chain > 1``), leaves the rest to the next job, which
starts after this one succeeded (``afterok``). A crash (no ``STOPPED``, no ``DONE``)
is not requeued.

Rollouts
--------
:func:`render_array` writes a job array running one command per task
(``atmos rollout`` for one initial time into its own store).
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from atmos.errors import AtmosError, ConfigError

__all__ = [
    "SlurmError",
    "SlurmJob",
    "follow_hint",
    "parse_walltime",
    "render_array",
    "render_sbatch",
    "submit",
    "submit_hint",
]

#: seconds after the launch before the batch shell forwards SLURM's SIGUSR1 to the training processes
_USR1_GRACE_S = 60


class SlurmError(AtmosError, RuntimeError):
    """``sbatch`` is missing or refused a job."""


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
        nodes with ``gpus_per_node=0`` run one worker each, or ``procs_per_node``).
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
    procs_per_node : int, optional
        Training processes per node (default: ``gpus_per_node``, at least 1); e.g. 2 gloo
        processes on a CPU node.
    requeue : bool
        Requeue the job when training stopped with a checkpoint (default; the
        environment variable ``ATMOS_SLURM_REQUEUE=0|1`` of the job overrides it).
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
    procs_per_node: int | None = None
    requeue: bool = True

    @property
    def workers(self) -> int:
        """Training processes per node."""
        return self.procs_per_node if self.procs_per_node is not None else max(1, self.gpus_per_node)

    def validate(self) -> None:
        if self.nodes < 1:
            raise ConfigError(f"--nodes must be >= 1, got {self.nodes}.")
        if self.gpus_per_node < 0:
            raise ConfigError(f"--gpus-per-node must be >= 0, got {self.gpus_per_node}.")
        if self.procs_per_node is not None and self.procs_per_node < 1:
            raise ConfigError(f"--procs-per-node must be >= 1, got {self.procs_per_node}.")
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
    workers = job.workers
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
        f"#SBATCH --signal=B:USR1@{job.margin_s}",
    ]
    lines += [f"#SBATCH {opt}" for opt in job.extra_sbatch]
    train_args = " ".join(_q(o) for o in job.overrides)
    lines += [
        "",
        "# Written by `atmos slurm`. Each (re)queued job resumes from the run's last checkpoint.",
        "set -uo pipefail",
        "# first of all: a signal before the traps would end this shell",
        "terminated=0",
        "usr1=0",
        "forward_usr1() {",
        '    echo "atmos: SIGUSR1 (time limit in <= ' + str(job.margin_s) + ' s): checkpointing"',
        "    usr1=1  # forwarded to the job steps by the loop below",
        "}",
        "note_term() {",
        '    echo "atmos: SIGTERM (preemption, requeue, cancel or time limit): checkpointing"',
        "    terminated=1",
        "}",
        "trap forward_usr1 USR1",
        "trap note_term TERM",
        f"cd {_q(workdir)}  # relative paths in the config resolve as they did for `atmos slurm`",
        f"RUN_DIR={_q(run_dir)}",
        f"CONFIG={_q(config)}",
        'mkdir -p "$RUN_DIR"',
        "",
        *job.setup,
        "",
        'if [ -f "$RUN_DIR/DONE" ]; then',
        '    echo "atmos: training already finished ($RUN_DIR/DONE); nothing to do"',
        "    exit 0",
        "fi",
        "# rendezvous on the first node of the allocation",
        'export MASTER_ADDR=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)',
        "export MASTER_PORT=$((29500 + SLURM_JOB_ID % 1000))",
        f"export OMP_NUM_THREADS=$(( {job.cpus_per_task} / {workers} > 0 ? {job.cpus_per_task} / {workers} : 1 ))",
        f"# checkpoint and stop {job.margin_s} s before the job's end (SIGUSR1 from SLURM does it too); the end",
        "# time is read from SLURM, so that a limit changed with `scontrol update TimeLimit=` is followed",
        'end=$(scontrol show job "$SLURM_JOB_ID" 2>/dev/null | sed -n \'s/.*EndTime=\\([^ ]*\\).*/\\1/p\' | head -n 1)',
        f'end_s=$(date -d "${{end:-none}}" +%s 2>/dev/null) || end_s=$(( $(date +%s) + {limit} ))',
        f"export ATMOS_DEADLINE=$(( end_s - {job.margin_s} ))",
        "# 1: requeue this job when training stopped with a checkpoint; 0 in a chain (the next job continues)",
        f"SELF_REQUEUE=${{ATMOS_SLURM_REQUEUE:-{1 if job.requeue else 0}}}",
        "",
        'rm -f "$RUN_DIR/STOPPED"',
        "",
        'echo "atmos: job $SLURM_JOB_ID (restart ${SLURM_RESTART_COUNT:-0}) on $SLURM_JOB_NUM_NODES node(s),'
        + ' rendezvous $MASTER_ADDR:$MASTER_PORT"',
        "srun --kill-on-bad-exit=1 --ntasks-per-node=1 \\",
        f"    torchrun --nnodes=\"$SLURM_JOB_NUM_NODES\" --nproc-per-node={workers} \\",
        '    --rdzv-id="$SLURM_JOB_ID" --rdzv-backend=c10d --rdzv-endpoint="$MASTER_ADDR:$MASTER_PORT" \\',
        "    --signals-to-handle=SIGTERM,SIGINT,SIGHUP,SIGQUIT,SIGUSR1 \\",
        f'    -m atmos.cli.train "$CONFIG"{(" " + train_args) if train_args else ""} --resume &',
        "pid=$!",
        "launched=$(date +%s)",
        "# SLURM may send SIGUSR1 early (up to a minute): forward it to the steps (torchrun forwards it to its",
        f"# workers) once they had {_USR1_GRACE_S} s to install their handlers; ATMOS_DEADLINE stops them meanwhile",
        'while kill -0 "$pid" 2>/dev/null; do',
        f'    if [ "$usr1" -eq 1 ] && [ $(( $(date +%s) - launched )) -ge {_USR1_GRACE_S} ]; then',
        '        usr1=0',
        '        scancel --signal=USR1 "$SLURM_JOB_ID"  # the job steps, not this shell',
        "    fi",
        "    sleep 1 & wait $!  # a trapped signal interrupts only this wait",
        "done",
        'wait "$pid"; status=$?',
        "",
        'if [ -f "$RUN_DIR/DONE" ]; then',
        '    echo "atmos: training finished"',
        "    exit 0",
        "fi",
        'if [ "$terminated" -eq 1 ]; then',
        '    echo "atmos: terminated by SLURM; a requeued or preempted job resumes from the last checkpoint"',
        "    exit 0",
        "fi",
        'if [ -f "$RUN_DIR/STOPPED" ]; then',
        '    why="after a signal"',
        '    if [ "$(date +%s)" -ge "$ATMOS_DEADLINE" ]; then why="before the time limit"; fi',
        '    if [ "$SELF_REQUEUE" = 1 ]; then',
        '        echo "atmos: $(cat "$RUN_DIR/STOPPED") with a checkpoint $why; requeueing job $SLURM_JOB_ID"',
        '        scontrol requeue "$SLURM_JOB_ID"',
        "    else",
        '        echo "atmos: $(cat "$RUN_DIR/STOPPED") with a checkpoint $why; the next job of the chain resumes"',
        "    fi",
        "    exit 0",
        "fi",
        'echo "atmos: training failed with status $status; not requeued (fix and resubmit: it resumes)" >&2',
        'if [ "$status" -eq 0 ]; then status=1; fi',
        'exit "$status"',
        "",
    ]
    return "\n".join(lines)


def render_array(
    commands: Sequence[Sequence[str]],
    *,
    log_dir: str | os.PathLike,
    time: str = "01:00:00",
    job_name: str = "atmos-array",
    cpus_per_task: int = 1,
    account: str | None = None,
    partition: str | None = None,
    max_parallel: int | None = None,
    setup: Sequence[str] = (),
    extra_sbatch: Sequence[str] = (),
    labels: Sequence[str] | None = None,
    workdir: str | os.PathLike | None = None,
) -> str:
    """A job array script running ``commands[i]`` as array task ``i``.

    Parameters
    ----------
    commands : sequence of argv lists
        One command per task (e.g. ``atmos rollout ... --init T_i --out STORE_i``); each
        task's command must write its own outputs (two tasks never share a store).
    log_dir : path
        Folder of the task logs ``<job_name>-<array job>_<task>.out``.
    time : str
        Time limit of each task (``HH:MM:SS`` or ``D-HH:MM:SS``).
    job_name, cpus_per_task, account, partition : as in :class:`SlurmJob`
    max_parallel : int, optional
        At most this many tasks at once (``--array=0-N%M``).
    setup, extra_sbatch : as in :class:`SlurmJob`
    labels : sequence of str, optional
        A label per task for the log (default: its index).
    workdir : path, optional
        Folder the tasks run in (default: the current one).

    Returns
    -------
    str

    Raises
    ------
    ConfigError
        No command, a bad time limit, or a ``max_parallel`` < 1.
    """
    if not commands:
        raise ConfigError("a job array needs at least one command (one initial time); got none.")
    parse_walltime(time)
    if max_parallel is not None and max_parallel < 1:
        raise ConfigError(f"--max-parallel must be >= 1, got {max_parallel}.")
    if cpus_per_task < 1:
        raise ConfigError(f"--cpus-per-task must be >= 1, got {cpus_per_task}.")
    n = len(commands)
    labels = list(labels) if labels is not None else [str(i) for i in range(n)]
    log_dir = Path(log_dir).absolute()
    wd = Path(workdir).absolute() if workdir else Path.cwd()
    arr = f"0-{n - 1}" + (f"%{max_parallel}" if max_parallel else "")
    lines = [
        "#!/bin/bash",
        f"#SBATCH --job-name={job_name}",
        f"#SBATCH --array={arr}",
        "#SBATCH --ntasks=1",
        f"#SBATCH --cpus-per-task={cpus_per_task}",
        f"#SBATCH --time={time}",
    ]
    if account:
        lines.append(f"#SBATCH --account={account}")
    if partition:
        lines.append(f"#SBATCH --partition={partition}")
    lines += [
        f"#SBATCH --output={log_dir}/{job_name}-%A_%a.out",
        "#SBATCH --open-mode=append",
        "#SBATCH --requeue",
    ]
    lines += [f"#SBATCH {opt}" for opt in extra_sbatch]
    lines += [
        "",
        "# Written by `atmos slurm rollout --array`: task i runs command i (its own output store).",
        "set -uo pipefail",
        f"cd {_q(wd)}",
        *setup,
        f"export OMP_NUM_THREADS={cpus_per_task}",
        'case "$SLURM_ARRAY_TASK_ID" in',
    ]
    for i, (cmd, label) in enumerate(zip(commands, labels, strict=True)):
        lines.append(f"    {i}) LABEL={_q(label)}; CMD=({' '.join(_q(c) for c in cmd)}) ;;")
    lines += [
        '    *) echo "atmos: no command for array task $SLURM_ARRAY_TASK_ID" >&2; exit 2 ;;',
        "esac",
        'echo "atmos: array task $SLURM_ARRAY_TASK_ID ($LABEL) of job ${SLURM_ARRAY_JOB_ID:-?}'
        + ' (restart ${SLURM_RESTART_COUNT:-0})"',
        '"${CMD[@]}"',
        "",
    ]
    return "\n".join(lines)


def _sbatch() -> str:
    exe = shutil.which("sbatch")
    if exe is None:
        raise SlurmError(
            "sbatch not found on PATH: submit from a SLURM login node (or load its module), or drop --submit "
            "and copy the written script to one."
        )
    return exe


def submit(
    script: str | os.PathLike,
    *,
    chain: int = 1,
    env: Mapping[str, str] | None = None,
    extra_args: Sequence[str] = (),
) -> list[str]:
    """Submit ``script`` with ``sbatch``; with ``chain > 1`` as a chain of jobs.

    Parameters
    ----------
    script : path
        A script from :func:`render_sbatch` or :func:`render_array`.
    chain : int
        Number of jobs: job ``k + 1`` starts after job ``k`` succeeded
        (``--dependency=afterok``; a failed job cancels the rest with
        ``--kill-on-invalid-dep=yes``). Chained training jobs do not requeue themselves
        (``ATMOS_SLURM_REQUEUE=0`` except in the last one); a job that finds the run
        ``DONE`` exits at once.
    env : mapping, optional
        Environment of ``sbatch`` (default ``os.environ``; e.g. one with ``SLURM_CONF``).
    extra_args : sequence of str
        More ``sbatch`` arguments.

    Returns
    -------
    list of str
        The job ids, in order.

    Raises
    ------
    ConfigError
        ``chain < 1``.
    SlurmError
        No ``sbatch``, or ``sbatch`` refused the job (its message included).
    """
    if chain < 1:
        raise ConfigError(f"--chain must be >= 1, got {chain}.")
    exe = _sbatch()
    ids: list[str] = []
    for k in range(chain):
        cmd = [exe, "--parsable", *extra_args]
        if chain > 1:
            cmd.append(f"--export=ALL,ATMOS_SLURM_REQUEUE={1 if k == chain - 1 else 0}")
        if ids:
            cmd += [f"--dependency=afterok:{ids[-1]}", "--kill-on-invalid-dep=yes"]
        cmd.append(str(script))
        try:
            proc = subprocess.run(cmd, env=dict(env) if env is not None else None, capture_output=True, text=True,
                                  timeout=120)
        except (OSError, subprocess.TimeoutExpired) as err:
            raise SlurmError(f"sbatch {script} could not run ({err}); check the SLURM installation.") from err
        if proc.returncode != 0:
            done = f" (jobs {', '.join(ids)} were submitted)" if ids else ""
            raise SlurmError(
                f"sbatch refused {script}{done}: {proc.stderr.strip() or proc.stdout.strip()}. Fix the option it "
                "names (e.g. --partition, --account, --time) and submit again."
            )
        ids.append(proc.stdout.strip().split(";")[0])
    return ids


def follow_hint(job_ids: Sequence[str], log: str) -> str:
    """How to follow submitted jobs: squeue, sacct and the log file(s)."""
    ids = ",".join(job_ids)
    return (f"Follow with:  squeue -j {ids}   (after they end: sacct -j {ids} --format=JobID,State,Elapsed,ExitCode)\n"
            f"Log:          {log}\n"
            f"Cancel with:  scancel {' '.join(job_ids)}")


def submit_hint(script: str | Path) -> str:
    """How to submit and follow the job."""
    s = _q(Path(script))
    return (f"Submit with:  sbatch {s}   (or rerun with --submit; --chain N for N jobs one after another)\n"
            f"Follow with:  squeue --me ; tail -f <run_dir>/slurm-<jobid>.out")
