"""``atmos`` entry point: builds the argument parser from the command modules and runs one."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from atmos import __version__
from atmos.errors import AtmosError

# command name -> module under atmos.cli (each has `add_parser(subparsers)` and `run(args) -> int`)
COMMANDS: dict[str, str] = {
    "baseline": "atmos.cli.baseline",
    "catalog": "atmos.cli.catalog",
    "check": "atmos.cli.check",
    "climatology": "atmos.cli.climatology",
    "compress": "atmos.cli.compress",
    "config": "atmos.cli.config",
    "downscale": "atmos.cli.downscale",
    "evaluate": "atmos.cli.evaluate",
    "info": "atmos.cli.info",
    "plot": "atmos.cli.plot",
    "rollout": "atmos.cli.rollout",
    "slurm": "atmos.cli.slurm",
    "stats": "atmos.cli.stats",
    "train": "atmos.cli.train",
    "validate": "atmos.cli.validate",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="atmos",
        description="atmos: xarray-native weather and climate emulation (data cubes, grids, emulators).",
    )
    parser.add_argument("--version", action="version", version=f"atmos {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module in COMMANDS.values():
        importlib.import_module(module).add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit status (0 ok, 2 bad input, 130 interrupted)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    try:
        output = getattr(args, "output", None)
        if isinstance(output, str) and output:  # every -o/--output is checked before any work
            from atmos.io.paths import check_writable

            check_writable(output, "the output", hint="Choose another -o/--output")
        return int(args.func(args) or 0)
    except AtmosError as err:
        print(f"atmos {args.command}: error: {err}", file=sys.stderr)
        return 2
    except OSError as err:  # a file-system failure no check foresaw (disk full, permissions, quota)
        where = f" ({err.filename})" if err.filename else ""
        print(
            f"atmos {args.command}: error: {err.strerror or err}{where}. Check the path, its permissions and the "
            "free space, then rerun.",
            file=sys.stderr,
        )
        return 2
    except KeyboardInterrupt:
        print(f"atmos {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
