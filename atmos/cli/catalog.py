"""``atmos catalog list`` / ``atmos catalog show NAME``: the built-in and user data catalogs."""

from __future__ import annotations

import argparse
import textwrap


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "catalog",
        help="list or describe the datasets atmos knows by name",
        description=(
            "Datasets known by name (catalogs/*.yaml shipped with atmos, plus YAML files in the "
            "folders listed in ATMOS_CATALOG_PATH). Any name works as SOURCE for other commands."
        ),
    )
    csub = p.add_subparsers(dest="catalog_command", metavar="ACTION")
    lp = csub.add_parser("list", help="one line per dataset", description="atmos catalog list: one line per dataset.")
    lp.add_argument("--long", action="store_true", help="also show variables, levels and location")
    lp.set_defaults(func=run_list)
    sp = csub.add_parser("show", help="everything about one dataset", description="atmos catalog show: describe one dataset.")
    sp.add_argument("name", help="catalog name (see `atmos catalog list`)")
    sp.set_defaults(func=run_show)
    p.set_defaults(func=run_list, long=False)


def _table(rows: list[dict[str, str]], columns: list[str]) -> str:
    widths = {c: max(len(c), *(len(r.get(c, "")) for r in rows)) for c in columns}
    head = "  ".join(c.upper().ljust(widths[c]) for c in columns)
    lines = ["  ".join(r.get(c, "").ljust(widths[c]) for c in columns) for r in rows]
    return "\n".join([head, *lines])


def run_list(args: argparse.Namespace) -> int:
    from atmos.catalog import list_entries

    rows = list_entries()
    cols = ["name", "grid", "time_step", "period"]
    if args.long:
        cols += ["variables", "levels", "location"]
    rows = [dict(r, description=textwrap.shorten(r.get("description", ""), 72, placeholder=" ...")) for r in rows]
    print(_table(rows, cols + ["description"]))
    print(f"\n{len(rows)} datasets. `atmos catalog show NAME` for details; open with atmos.open_dataset(NAME).")
    return 0


def run_show(args: argparse.Namespace) -> int:
    from atmos.catalog import get_entry

    print(get_entry(args.name).describe())
    return 0
