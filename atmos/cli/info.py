"""``atmos info SOURCE``: open a source (catalog name, path or URL) and show its canonical form."""

from __future__ import annotations

import argparse


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "info",
        help="open a dataset and print its canonical summary",
        description="Open SOURCE (catalog name, local path or URL) lazily with canonical names and print it.",
    )
    p.add_argument("source", help="catalog name, path (zarr/netCDF) or URL")
    p.add_argument("--grid", action="store_true", help="also print the recognised grid")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from atmos.io import grid_of, open_dataset

    ds = open_dataset(args.source)
    print(ds)
    if args.grid:
        print(f"\ngrid: {grid_of(ds)!r}")
    return 0
