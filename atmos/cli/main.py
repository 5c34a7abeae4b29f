"""``atmos`` entry point: builds the argument parser from the command modules and runs one.

Start-up stays light (``atmos --help`` well under half a second): the command modules import only
the standard library and :mod:`atmos.errors` at module level, and import numpy, xarray, torch and
the rest of atmos inside their ``run`` functions, so building the parser loads none of them
(tests/test_cli_startup.py checks it). ``--version`` reads the installed version only when asked.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

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


class _VersionAction(argparse.Action):
    """``--version``: prints ``atmos VERSION`` (importlib.metadata is loaded only then)."""

    def __init__(self, option_strings: Sequence[str], dest: str = argparse.SUPPRESS, **kwargs) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS,
                         help=kwargs.get("help", "show the version of atmos and exit"))

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        from atmos._version import __version__

        parser._print_message(f"atmos {__version__}\n", sys.stdout)
        parser.exit()


def build_parser(commands: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The ``atmos`` parser with the sub-commands ``commands`` (default: all of ``COMMANDS``)."""
    parser = argparse.ArgumentParser(
        prog="atmos",
        description="atmos: xarray-native weather and climate emulation (data cubes, grids, emulators).",
    )
    parser.add_argument("--version", action=_VersionAction)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS if commands is None else commands:
        importlib.import_module(COMMANDS[name]).add_parser(sub)
    return parser


def _command_of(argv: Sequence[str]) -> str | None:
    """The command named in ``argv`` (the first word not an option: the top-level options take no value)."""
    for arg in argv:
        if not arg.startswith("-"):
            return arg if arg in COMMANDS else None
        if arg == "--":
            return None
    return None


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit status (0 ok, 2 bad input, 130 interrupted)."""
    argv = sys.argv[1:] if argv is None else list(argv)
    # Running a command needs only its own module; help, no command or a bad one: all of them.
    command = _command_of(argv)
    parser = build_parser(None if command is None else [command])
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        (parser if command is None else build_parser()).print_help()
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
