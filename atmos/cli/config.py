"""``atmos config schema``: the JSON schema of training configs, generated from the config dataclasses."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

__all__ = ["add_parser", "run"]


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "config",
        help="training-config tools: `atmos config schema` prints the JSON schema",
        description="Tools for training configs. `schema` prints the JSON schema (draft 2020-12) generated from the "
        "config dataclasses (atmos.train.config) and the registered models' config classes; editors and CI can "
        "validate YAML configs with it. `atmos train --check CONFIG` validates a config against the data too.",
        epilog="examples:\n  atmos config schema > atmos-train.schema.json\n  atmos config schema --out schema.json",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    csub = p.add_subparsers(dest="config_command", metavar="SUBCOMMAND", required=True)
    s = csub.add_parser("schema", help="print the JSON schema of training configs")
    s.add_argument("--out", metavar="FILE.json", help="write it to FILE.json instead of printing it")
    s.add_argument("--indent", type=int, default=1, help="JSON indentation (default 1)")
    s.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from atmos.train.schema import config_schema

    text = json.dumps(config_schema(), indent=args.indent)
    if args.out:
        Path(args.out).write_text(text + "\n")
        print(f"wrote {args.out}")
    else:
        print(text)
    return 0
