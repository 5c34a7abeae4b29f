"""``atmos slurm CONFIG.yaml --nodes N --gpus-per-node G --time HH:MM:SS``: write an sbatch script.

The script launches ``srun torchrun ... -m atmos.cli.train CONFIG --resume`` with a c10d
rendezvous on the first node, checkpoints before the time limit and requeues itself
until training is done (see :mod:`atmos.train.slurm`). Nothing is submitted: the
command prints how to submit.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "slurm",
        help="write a SLURM batch script for multi-node training",
        description="Write an sbatch script that runs `atmos train CONFIG --resume` under srun + torchrun on "
        "N nodes x G GPUs, checkpoints before the time limit and requeues itself until training is done. "
        "Prints how to submit it; submits nothing.",
    )
    p.add_argument("config", help="training config (YAML)")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="config overrides passed to atmos train")
    p.add_argument("--nodes", type=int, required=True, help="number of nodes")
    p.add_argument("--gpus-per-node", type=int, required=True, help="GPUs (= training processes) per node")
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
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from atmos.train.checkpoint import atomic_write_text
    from atmos.train.config import load_config
    from atmos.train.slurm import SlurmJob, render_sbatch, submit_hint

    cfg = load_config(args.config, args.overrides)  # fail now, not in the queue
    run_dir = Path(cfg.output.dir) / str(cfg.output.name)
    job = SlurmJob(
        config=str(args.config),
        run_dir=str(run_dir),
        nodes=args.nodes,
        gpus_per_node=args.gpus_per_node,
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
    world = args.nodes * max(1, args.gpus_per_node)
    print(f"wrote {script}: {args.nodes} node(s) x {max(1, args.gpus_per_node)} process(es) = {world}, "
          f"time limit {args.time}, run dir {run_dir.absolute()}")
    print(submit_hint(script))
    return 0
