"""``atmos stats SOURCE -o stats.nc``: normalization statistics of a data cube."""

from __future__ import annotations

import argparse
from contextlib import ExitStack

from atmos.cli._cluster import add_cluster_arguments, dask_cluster
from atmos.errors import ConfigError


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "stats",
        help="compute normalization statistics (area-weighted mean/std, residual std)",
        description=(
            "Compute area-weighted mean and std per variable and level, plus the mean/std of "
            "1-step differences (for residual prediction), and save them as netCDF (.nc) or zarr "
            "(.zarr). Runs with dask; pass --scheduler to use a running dask.distributed cluster, or "
            "--cluster slurm to start one on SLURM (dask-jobqueue)."
        ),
    )
    p.add_argument("source", help="catalog name, path (zarr/netCDF) or URL")
    p.add_argument("-o", "--output", required=True, help="output path ending in .nc or .zarr")
    p.add_argument("--variables", nargs="+", metavar="VAR", help="variables to include (default: all)")
    p.add_argument("--time", nargs=2, metavar=("START", "END"), help="time range, e.g. 2018-01-01 2018-12-31")
    p.add_argument(
        "--dims", nargs="+", default=["time", "latitude", "longitude"],
        help="dimensions to reduce over (default: time latitude longitude)",
    )
    p.add_argument(
        "--scheduler", metavar="ADDRESS",
        help="address of a running dask.distributed scheduler (e.g. tcp://host:8786); default: local threads",
    )
    add_cluster_arguments(p)
    p.add_argument("--no-progress", action="store_true", help="do not show a progress bar")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from atmos.io import open_dataset
    from atmos.io.stats import compute_and_save_stats

    if args.scheduler and args.cluster:
        raise ConfigError(f"--scheduler {args.scheduler} and --cluster {args.cluster} both choose where to compute; "
                          "give one of them.")
    ds = open_dataset(args.source, variables=args.variables, time=tuple(args.time) if args.time else None)
    with ExitStack() as stack:
        client = stack.enter_context(dask_cluster(args))
        if args.scheduler:
            from distributed import Client

            client = stack.enter_context(Client(args.scheduler))
        stats = compute_and_save_stats(
            ds, args.output, dims=tuple(args.dims), progress=not args.no_progress and client is None
        )
    nvar = len(stats.data_vars)
    print(f"wrote statistics of {nvar} variables over {' '.join(args.dims)} to {args.output}")
    return 0
