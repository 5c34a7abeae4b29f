"""``atmos slurm``: SLURM batch scripts for training and rollout job arrays; ``--submit`` submits them.

* ``atmos slurm CONFIG.yaml [KEY=VALUE ...] --nodes N --gpus-per-node G --time HH:MM:SS``
  writes a script that launches ``srun torchrun ... -m atmos.cli.train CONFIG --resume`` with a
  c10d rendezvous on the first node, checkpoints before the time limit (``ATMOS_DEADLINE`` and
  ``--signal=B:USR1@margin``), on SIGTERM/SIGUSR1 and on preemption, and requeues itself until
  training is done (see :mod:`atmos.train.slurm`). ``--submit`` submits it (``--chain N``: N jobs,
  each starting after the previous one succeeded).
* ``atmos slurm rollout ROLLOUT-ARGS... --array --time HH:MM:SS`` writes a job array with one
  ``atmos rollout`` per initial time of ``--init``, each into its own store (``--out`` must then
  contain ``{init}``; default ``./forecast_<model>_<init>.zarr``).
"""

from __future__ import annotations

import argparse
import os
import types
from pathlib import Path

# options of `atmos slurm rollout` that take a value; every other argument goes to `atmos rollout`
_ARRAY_VALUE_OPTS = ("--time", "--account", "--partition", "--cpus-per-task", "--setup", "--job-name",
                     "--sbatch-option", "--max-parallel", "--script", "--log-dir")
_ARRAY_FLAGS = ("--array", "--submit", "--dry-run")


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "slurm",
        help="write (and --submit) SLURM batch scripts: training, rollout job arrays",
        description="Write an sbatch script that runs `atmos train CONFIG --resume` under srun + torchrun on "
        "N nodes x G GPUs, checkpoints before the time limit, on SIGTERM/SIGUSR1 and on preemption, and requeues "
        "itself until training is done; --submit submits it. `atmos slurm rollout ROLLOUT-ARGS... --array "
        "--time T` writes a job array of one `atmos rollout` per initial time (see `atmos slurm rollout --help`).",
    )
    p.add_argument("config", help="training config (YAML), or `rollout` for a rollout job array")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="config overrides passed to atmos train")
    p.add_argument("--nodes", type=int, required=True, help="number of nodes")
    p.add_argument("--gpus-per-node", type=int, required=True, help="GPUs (= training processes) per node")
    p.add_argument("--procs-per-node", type=int, metavar="N",
                   help="training processes per node (default: --gpus-per-node, at least 1; e.g. 2 on CPU nodes)")
    p.add_argument("--time", required=True, metavar="HH:MM:SS", help="wall-clock limit per job (D-HH:MM:SS too)")
    p.add_argument("--account", help="SLURM account")
    p.add_argument("--partition", help="SLURM partition")
    p.add_argument("--cpus-per-task", type=int, default=8, help="CPUs per node for its torchrun (default 8)")
    p.add_argument("--margin", type=int, default=300, metavar="SECONDS",
                   help="checkpoint and stop this long before the time limit (default 300)")
    p.add_argument("--setup", action="append", default=[], metavar="LINE",
                   help="shell line run before launching, e.g. 'source ~/venv/bin/activate' (repeatable)")
    p.add_argument("--job-name", help="job name (default atmos-<run name>)")
    p.add_argument("--sbatch-option", action="append", default=[], metavar="OPT",
                   help="extra #SBATCH option such as --qos=high (repeatable)")
    p.add_argument("--output", "-o", metavar="PATH",
                   help="where to write the script (default <output.dir>/<output.name>/train.sbatch)")
    p.add_argument("--dry-run", action="store_true", help="print the script instead of writing it")
    p.add_argument("--submit", action="store_true", help="submit the script with sbatch and print the job id(s)")
    p.add_argument("--chain", type=int, default=1, metavar="N",
                   help="with --submit: N jobs one after another (afterok), for trainings longer than one job")
    p.set_defaults(func=run)

    array = argparse.ArgumentParser(
        prog="atmos slurm rollout",
        description="Write a SLURM job array with one `atmos rollout` per initial time of --init (a list or range), "
        "each into its own store, so that no two tasks write one store. Every argument not listed here is "
        "passed to `atmos rollout` (checked now). --out, if given, must contain {init} (e.g. fc_{init}.zarr).",
    )
    array.add_argument("--array", action="store_true", required=True, help="one array task per initial time")
    array.add_argument("--time", required=True, metavar="HH:MM:SS", help="time limit of each task")
    array.add_argument("--account", help="SLURM account")
    array.add_argument("--partition", help="SLURM partition")
    array.add_argument("--cpus-per-task", type=int, default=1, help="CPUs per task (default 1)")
    array.add_argument("--max-parallel", type=int, metavar="M", help="at most M tasks at once")
    array.add_argument("--setup", action="append", default=[], metavar="LINE", help="shell line run first (repeatable)")
    array.add_argument("--job-name", default="atmos-rollout", help="job name (default atmos-rollout)")
    array.add_argument("--sbatch-option", action="append", default=[], metavar="OPT", help="extra #SBATCH option")
    array.add_argument("--script", metavar="PATH", help="where to write the script (default ./rollout-array.sbatch)")
    array.add_argument("--log-dir", metavar="DIR", help="folder of the task logs (default: beside the script)")
    array.add_argument("--dry-run", action="store_true", help="print the script instead of writing it")
    array.add_argument("--submit", action="store_true", help="submit the array with sbatch")

    plain = p.parse_known_args

    def parse_known_args(self, args=None, namespace=None):
        args = list(args) if args is not None else []
        if not args or args[0] != "rollout":
            return plain(args, namespace)
        own, rollout_args = _split_array_args(args[1:])
        ns = array.parse_args(own, namespace)
        ns.rollout_args = rollout_args
        ns.func = run_array
        return ns, []

    p.parse_known_args = types.MethodType(parse_known_args, p)


def _split_array_args(args: list[str]) -> tuple[list[str], list[str]]:
    """Split ``atmos slurm rollout`` arguments into its own options and those of ``atmos rollout``."""
    own: list[str] = []
    rest: list[str] = []
    i = 0
    while i < len(args):
        a = args[i]
        name = a.split("=", 1)[0]
        if a in ("-h", "--help") or name in _ARRAY_FLAGS:
            own.append(a)
        elif name in _ARRAY_VALUE_OPTS:
            own.append(a)
            if "=" not in a and i + 1 < len(args):
                own.append(args[i + 1])
                i += 1
        else:
            rest.append(a)
        i += 1
    return own, rest


def run(args: argparse.Namespace) -> int:
    from atmos.train.checkpoint import atomic_write_text
    from atmos.train.config import load_config
    from atmos.train.slurm import SlurmJob, follow_hint, render_sbatch, submit, submit_hint

    cfg = load_config(args.config, args.overrides)  # fail now, not in the queue
    run_dir = Path(cfg.output.dir) / str(cfg.output.name)
    job = SlurmJob(
        config=str(args.config),
        run_dir=str(run_dir),
        nodes=args.nodes,
        gpus_per_node=args.gpus_per_node,
        procs_per_node=args.procs_per_node,
        time=args.time,
        account=args.account,
        partition=args.partition,
        cpus_per_task=args.cpus_per_task,
        margin_s=args.margin,
        overrides=list(args.overrides),
        setup=list(args.setup),
        job_name=args.job_name or f"atmos-{cfg.output.name}",
        extra_sbatch=list(args.sbatch_option),
    )
    text = render_sbatch(job)
    if args.dry_run:
        print(text, end="")
        return 0
    script = Path(args.output) if args.output else run_dir / "train.sbatch"
    atomic_write_text(script, text)
    os.chmod(script, 0o755)
    world = args.nodes * job.workers
    print(f"wrote {script}: {args.nodes} node(s) x {job.workers} process(es) = {world}, "
          f"time limit {args.time}, run dir {run_dir.absolute()}")
    if not args.submit:
        print(submit_hint(script))
        return 0
    ids = submit(script, chain=args.chain)
    chain = f" (a chain of {len(ids)}: each starts after the previous one succeeded)" if len(ids) > 1 else ""
    print(f"submitted job{'s' if len(ids) > 1 else ''} {' '.join(ids)}{chain}")
    print(follow_hint(ids, f"{run_dir.absolute()}/slurm-<jobid>.out"))
    print(f"Resume:       resubmit the same script (or `atmos train {args.config} --resume`); it continues from "
          f"{run_dir.absolute()}/checkpoints/LATEST")
    return 0


def _rollout_parser() -> argparse.ArgumentParser:
    from atmos.cli import rollout as rollout_cli

    parser = argparse.ArgumentParser(prog="atmos")
    rollout_cli.add_parser(parser.add_subparsers(dest="command"))
    return parser


def run_array(args: argparse.Namespace) -> int:
    import shlex
    import sys

    import pandas as pd

    from atmos.errors import ConfigError
    from atmos.rollout.stores import default_output_path
    from atmos.rollout.times import parse_init
    from atmos.train.checkpoint import atomic_write_text
    from atmos.train.slurm import follow_hint, render_array, submit

    rest = list(args.rollout_args)
    parser = _rollout_parser()
    try:
        r = parser.parse_args(["rollout", *rest])
    except SystemExit as err:
        raise ConfigError(f"the rollout arguments {shlex.join(rest)!r} are not valid for `atmos rollout` (see its "
                          "message above and `atmos rollout --help`).") from err
    if r.init is None:
        raise ConfigError("atmos slurm rollout --array needs --init with the initial times, e.g. "
                          "--init 2020-01-01T00/2020-01-02T12/12h or --init 2020-01-01,2020-01-05.")
    if r.resume:
        raise ConfigError("do not pass --resume to `atmos slurm rollout`: every array task resumes its own store.")
    inits = parse_init(r.init)
    if r.out is not None and "{init}" not in r.out and len(inits) > 1:
        raise ConfigError(f"--out {r.out!r} would be written by {len(inits)} array tasks; one store per initial time "
                          "is needed: put {init} in it, e.g. --out forecasts/fc_{init}.zarr.")
    from atmos.rollout.forecaster import Forecaster

    model_name = Forecaster.from_checkpoint(r.model, device="cpu").name  # also checks the model now
    # the rollout arguments without --init/--out, which each task gets for itself
    base: list[str] = []
    i = 0
    while i < len(rest):
        name = rest[i].split("=", 1)[0]
        if name in ("--init", "--out"):
            i += 1 if "=" in rest[i] else 2
            continue
        base.append(rest[i])
        i += 1
    commands, labels, outs = [], [], []
    for t in inits:
        one = pd.DatetimeIndex([t])
        label = pd.Timestamp(t).strftime("%Y-%m-%dT%H")
        out = Path(r.out.replace("{init}", label)) if r.out else default_output_path(model_name, one)
        out = out.absolute()
        commands.append([sys.executable, "-m", "atmos.cli.main", "rollout", *base, "--init", label,
                         "--out", str(out), "--resume", "--no-progress"])
        labels.append(label)
        outs.append(out)
    script = Path(args.script) if args.script else Path("rollout-array.sbatch")
    log_dir = Path(args.log_dir) if args.log_dir else script.absolute().parent
    text = render_array(
        commands, log_dir=log_dir, time=args.time, job_name=args.job_name, cpus_per_task=args.cpus_per_task,
        account=args.account, partition=args.partition, max_parallel=args.max_parallel, setup=args.setup,
        extra_sbatch=args.sbatch_option, labels=labels,
    )
    if args.dry_run:
        print(text, end="")
        return 0
    log_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(script, text)
    os.chmod(script, 0o755)
    print(f"wrote {script}: a job array of {len(inits)} rollout(s), one store each:")
    for label, out in zip(labels, outs, strict=True):
        print(f"  {label} -> {out}")
    if not args.submit:
        print(f"Submit with:  sbatch {shlex.quote(str(script))}   (or rerun with --submit)")
        return 0
    (job,) = submit(script)
    print(f"submitted array job {job} ({len(inits)} tasks: {job}_0 ... {job}_{len(inits) - 1})")
    print(follow_hint([job], f"{log_dir.absolute()}/{args.job_name}-{job}_<task>.out"))
    print("Resume:       resubmit the same script: each task completes its store with atmos rollout --resume")
    return 0
