"""``atmos check STORE``: decode every chunk of a zarr store and report damage and completeness."""

from __future__ import annotations

import argparse


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "check",
        help="verify a zarr store: every chunk decodes, no chunk missing, forecast status",
        description=(
            "Decode every chunk of a local zarr store (a data cube or an atmos forecast) and report damaged "
            "(truncated, corrupt) chunks by variable and chunk key, chunks that are missing, and for a forecast "
            "store its status and progress. Exit 0 when the store is whole, 1 when it is damaged or incomplete."
        ),
        epilog="example:\n  atmos check forecast_atmos-sample-vit-speedy_2020010100.zarr",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("store", metavar="STORE", help="local zarr store")
    p.add_argument("--variables", nargs="+", metavar="VAR", help="only these arrays (default: all)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from atmos.io.check import check_store

    report = check_store(args.store, args.variables)
    print(report.format())
    return 0 if report.ok else 1
