"""``atmos train CONFIG.yaml [KEY=VALUE ...] [--resume [CHECKPOINT]]``: train an emulator.

Runs single-process as is, or distributed under ``torchrun`` (one process per GPU)::

    torchrun --nproc-per-node 4 -m atmos.cli.train configs/vit_speedy.yaml

(``python -m atmos.cli.train`` is the same command without the ``atmos`` front end.)
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Sequence

_EPILOG = """\
examples:
  atmos train configs/vit_speedy.yaml
  atmos train configs/vit_speedy.yaml schedule.epochs=2 optimizer.lr=3e-4
  atmos train configs/vit_speedy.yaml --resume                 # continue the run's last checkpoint
  atmos train configs/vit_speedy.yaml --check                  # validate the config only (seconds)
  torchrun --nproc-per-node 2 -m atmos.cli.train configs/vit_speedy.yaml
"""


def _add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("config", help="training config (YAML; see atmos.train.config)")
    p.add_argument(
        "overrides", nargs="*", metavar="KEY=VALUE",
        help="config overrides with dotted keys, values parsed as YAML (optimizer.lr=3e-4, data.levels=[500,850])",
    )
    p.add_argument(
        "--resume", nargs="?", const="auto", default=None, metavar="CHECKPOINT",
        help="continue from the run's last checkpoint (starts fresh if there is none), or from CHECKPOINT "
        "(a checkpoint or run folder)",
    )
    p.add_argument("--print-config", action="store_true", help="print the resolved config as YAML and exit")
    p.add_argument("--check", action="store_true",
                   help="validate the config completely (keys, types, model parameters, data sources, variables, "
                   "levels, periods, task sections, output folder) in seconds, without training; exit 0 or 2")
    p.add_argument("--no-progress", action="store_true", help="no progress bar (same as output.progress=false)")
    p.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"],
                   help="logging level of rank 0 (other ranks log warnings only)")


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train",
        help="train an emulator from a YAML config",
        description="Train an emulator from a YAML config (model, data, optimizer, schedule, multistep, loss, "
        "output). Writes config.yaml, metrics.csv, validation.csv and checkpoints under output.dir/output.name.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_arguments(p)
    p.set_defaults(func=run)


def _split_resume(args: argparse.Namespace) -> tuple[list[str], str | None]:
    """``--resume key=value`` swallows an override: give it back."""
    overrides = list(args.overrides or [])
    resume = args.resume
    if resume not in (None, "auto") and "=" in resume and not os.path.exists(resume):
        overrides.append(resume)
        resume = "auto"
    return overrides, resume


def _setup_logging(level: str) -> None:
    rank = int(os.environ.get("RANK", "0"))
    root = logging.getLogger()
    if not root.handlers:
        tag = f"[rank {rank}] " if "WORLD_SIZE" in os.environ else ""
        logging.basicConfig(
            level=level if rank == 0 else "WARNING",
            format=f"%(asctime)s {tag}%(levelname)s %(name)s: %(message)s",
            datefmt="%H:%M:%S",
        )
    logging.getLogger("atmos").setLevel(level if rank == 0 else "WARNING")


def _run_check(args: argparse.Namespace, overrides: list[str], resume: str | None) -> int:
    """``--check``: print "config OK: ..." or every problem with its fix; 0 or 2."""
    from atmos.train.check import check

    report = check(args.config, overrides, resume=resume)
    if not report.ok:
        print(f"config {args.config}: {len(report.problems)} problem(s):", file=sys.stderr)
        for prob in report.problems:
            print(f"  - {prob.where}: {prob.message}", file=sys.stderr)
            if prob.fix:
                print(f"    fix: {prob.fix}", file=sys.stderr)
        return 2
    s = report.summary
    parts = [f"task {s.get('task')}", f"model {s.get('model')}"]
    if "parameters" in s:
        parts[-1] += f" ({s['parameters'] / 1e6:.2f} M parameters)"
    if "channels" in s:
        ch = s["channels"]
        parts.append(f"{ch['inputs']} prognostic channels, {ch['forcings']} forcings, {ch['statics']} statics"
                     + (f" on {s['grid']}" if "grid" in s else ""))
    for key in ("training", "validation"):
        if key in s:
            parts.append(f"{key} {s[key]['source']} ({s[key]['steps']} steps)")
    parts.append(f"run folder {s.get('run_dir')}")
    print(f"config OK: {args.config}: " + "; ".join(parts) + f" (checked in {report.seconds:.1f} s)")
    return 0


def run(args: argparse.Namespace) -> int:
    import yaml

    from atmos.train.config import config_to_dict, load_config
    from atmos.train.tasks import fit

    overrides, resume = _split_resume(args)
    if args.no_progress:
        overrides.append("output.progress=false")
    if getattr(args, "check", False):
        return _run_check(args, overrides, resume)
    cfg = load_config(args.config, overrides)
    if args.print_config:
        print(yaml.safe_dump(config_to_dict(cfg), sort_keys=False), end="")
        return 0
    _setup_logging(args.log_level)
    result = fit(cfg, resume=resume)
    if int(os.environ.get("RANK", "0")) == 0:
        summary = {
            "status": result.status,
            "run_dir": str(result.run_dir),
            "checkpoint": None if result.checkpoint is None else str(result.checkpoint),
            "epoch": result.epoch,
            "global_step": result.global_step,
            "wall_time_s": round(result.wall_time_s, 1),
        }
        val = result.validation
        if val and "persistence_rmse" not in val:
            summary["validation_rmse"] = val.get("rmse")
        elif val:
            summary["validation_rmse_first_lead"] = {
                c: {"rmse": v[0], "persistence": val["persistence_rmse"][c][0], "lead_hours": val["lead_hours"][0]}
                for c, v in val["rmse"].items()
            }
        print(json.dumps(summary, indent=1))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m atmos.cli.train`` (used by torchrun and the SLURM scripts)."""
    from atmos.errors import AtmosError

    parser = argparse.ArgumentParser(prog="atmos train", description="Train an emulator from a YAML config.", epilog=_EPILOG,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    _add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        return run(args)
    except AtmosError as err:
        print(f"atmos train: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("atmos train: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
