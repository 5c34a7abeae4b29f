"""``atmos validate``: the known-answer check of the embedded default (or of a checkpoint with a scorecard)."""

from __future__ import annotations

import argparse


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "validate",
        help="check that a model reproduces its committed scorecard (known-answer test)",
        description=(
            "Roll out the embedded sample model (or --model) for 10 days from its shipped initial conditions and "
            "compare global means, spatial stds and RMSEs at 6 h .. 10 days with the scorecard.json committed "
            "beside the checkpoint. Exit 0 when every value matches to the tolerance, 1 otherwise."
        ),
    )
    p.add_argument("--model", metavar="CHECKPOINT", help="checkpoint folder with a scorecard.json (default: the sample)")
    p.add_argument("--data", metavar="SOURCE", help="initial conditions and truth (default: the shipped sample data)")
    p.add_argument("--rtol", type=float, default=None, help="relative tolerance (default: atmos.rollout.validate.RTOL)")
    p.add_argument("--write", action="store_true", help="(re)write the scorecard instead of checking it")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from atmos.rollout.validate import RTOL, validate_sample, write_scorecard

    if args.write:
        print(f"wrote {write_scorecard(args.model, args.data)}")
        return 0
    report = validate_sample(args.model, args.data, rtol=RTOL if args.rtol is None else args.rtol)
    print(report.format())
    return 0 if report.ok else 1
