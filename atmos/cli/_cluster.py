"""``--cluster slurm``: run a command's dask computations on a dask-jobqueue ``SLURMCluster``.

dask-jobqueue is an optional dependency (``pip install 'atmos[slurm]'``), imported only
when ``--cluster slurm`` is given.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from atmos.errors import ConfigError

__all__ = ["add_cluster_arguments", "dask_cluster"]

#: SLURMCluster arguments used unless --cluster-option sets them
DEFAULTS: dict[str, Any] = {"cores": 1, "processes": 1, "memory": "4GB", "walltime": "01:00:00",
                            "job_name": "atmos-dask"}


def add_cluster_arguments(p: argparse.ArgumentParser) -> None:
    """Add ``--cluster``, ``--cluster-workers`` and ``--cluster-option`` to ``p``."""
    p.add_argument("--cluster", choices=["slurm"],
                   help="compute on a dask-jobqueue SLURMCluster: one SLURM job per dask worker, submitted from "
                   "here (needs `pip install 'atmos[slurm]'`); default: local threads")
    p.add_argument("--cluster-workers", type=int, default=2, metavar="N",
                   help="with --cluster: number of worker jobs (default 2)")
    p.add_argument("--cluster-option", action="append", default=[], metavar="KEY=VALUE",
                   help="with --cluster: a SLURMCluster argument, e.g. queue=PARTITION, account=A, "
                   "walltime=02:00:00, memory=16GB, cores=4, log_directory=logs (repeatable; defaults "
                   + ", ".join(f"{k}={v}" for k, v in DEFAULTS.items()) + ")")


def _options(items: list[str]) -> dict[str, Any]:
    import yaml

    out = dict(DEFAULTS)
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--cluster-option must be KEY=VALUE (e.g. queue=debug), got {item!r}.")
        parsed = yaml.safe_load(value) if value else value
        # keep text such as walltime=01:00:00 or memory=4GB as given
        out[key.strip()] = parsed if isinstance(parsed, (bool, int, float)) else value
    return out


@contextmanager
def dask_cluster(args: argparse.Namespace, timeout: float = 300.0) -> Iterator[Any]:
    """A ``distributed.Client`` on a ``SLURMCluster`` (``--cluster slurm``), or None without ``--cluster``.

    Parameters
    ----------
    args : argparse.Namespace
        With ``cluster``, ``cluster_workers`` and ``cluster_option`` (see :func:`add_cluster_arguments`).
    timeout : float
        Seconds to wait for the worker jobs to start and connect.

    Yields
    ------
    distributed.Client or None
        The client, the default dask scheduler while the context is open; the cluster's
        jobs are cancelled when it closes.

    Raises
    ------
    ConfigError
        dask-jobqueue missing, a bad ``--cluster-option`` or ``--cluster-workers``, or the
        workers not connecting within ``timeout``.
    """
    if not getattr(args, "cluster", None):
        yield None
        return
    if args.cluster_workers < 1:
        raise ConfigError(f"--cluster-workers must be >= 1, got {args.cluster_workers}.")
    try:
        from dask_jobqueue import SLURMCluster
        from distributed import Client
    except ImportError as err:
        raise ConfigError(f"--cluster slurm needs dask-jobqueue ({err}); install it with "
                          "`pip install 'atmos[slurm]'` (or drop --cluster to compute locally).") from err
    options = _options(args.cluster_option)
    try:
        cluster = SLURMCluster(**options)
    except (TypeError, ValueError) as err:
        raise ConfigError(f"SLURMCluster refused --cluster-option {args.cluster_option}: {err}. Use the "
                          "argument names of dask_jobqueue.SLURMCluster (queue, account, walltime, memory, cores...).") from err
    client = None
    try:
        cluster.scale(jobs=args.cluster_workers)
        client = Client(cluster)
        try:
            client.wait_for_workers(args.cluster_workers, timeout=timeout)
        except TimeoutError as err:
            raise ConfigError(
                f"{args.cluster_workers} dask worker job(s) did not connect within {timeout:g} s; check them with "
                "`squeue --me` and their logs (--cluster-option log_directory=DIR), the partition "
                "(queue=...), and that the compute nodes reach this host."
            ) from err
        print(f"dask: SLURMCluster with {args.cluster_workers} worker job(s), dashboard {cluster.dashboard_link}")
        yield client
    finally:
        if client is not None:
            client.close()
        cluster.close()
