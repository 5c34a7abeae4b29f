"""``atmos climatology SOURCE -o CLIM.nc``: day-of-year x hour climatology of a data cube."""

from __future__ import annotations

import argparse
from pathlib import Path

from atmos.cli._cluster import add_cluster_arguments, dask_cluster
from atmos.errors import ConfigError

__all__ = ["add_parser", "run"]


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "climatology",
        help="compute a day-of-year x hour climatology (for ACC and the climatology baseline)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=(
            "Compute the climatology of SOURCE (catalog name, path or URL) per day of year and hour of day,\n"
            "smoothed with a circular moving window over day of year (61 days, as WeatherBench2): each value\n"
            "is the mean of all samples at that hour within +-30 days of that day of year, over all years.\n"
            "Output dims (hour, dayofyear, [level], latitude, longitude), the layout of the WeatherBench2\n"
            "climatology zarr. With a single year of data the window does most of the averaging (61 samples\n"
            "per value); use training years only, never the evaluation period."
        ),
        epilog="example:\n  atmos climatology speedy-world -o clim_speedy2018.nc --variables geopotential temperature t2m",
    )
    p.add_argument("source", help="catalog name, path (zarr/netCDF) or URL")
    p.add_argument("-o", "--output", required=True, metavar="CLIM.{nc,zarr}", help="output file (netCDF .nc, else zarr)")
    p.add_argument("--time", nargs=2, metavar=("START", "END"), help="period to use (inclusive), e.g. 2018-01-01 2018-12-31")
    p.add_argument("--variables", nargs="+", metavar="VAR",
                   help="canonical or short names (z500 -> all levels of geopotential); default: all time-varying")
    p.add_argument("--window", type=int, default=61, metavar="DAYS", help="odd smoothing window in days (default 61; 1 = none)")
    p.add_argument("--window-weights", choices=["triangular", "flat"], default="triangular",
                   help="weights over the window: triangular (default, WeatherBench2: linearly decaying) or flat")
    p.add_argument("--hour-step", type=int, default=6, metavar="H", help="hours of the climatology: 0, H, 2H ... (default 6)")
    p.add_argument("--daily", action="store_true", help="one daily climatology pooling all hours (no hour dimension)")
    p.add_argument("--information", type=float, metavar="FRACTION",
                   help="lossy compression: bit-round each variable to keep this fraction of its real information "
                   "(0 < FRACTION <= 1, e.g. 0.99; see `atmos compress`); default lossless")
    add_cluster_arguments(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from atmos.io.climatology import compute_climatology, save_climatology
    from atmos.io import open_dataset
    from atmos.io.compression import check_information
    from atmos.metrics.variables import parse_variable

    information = check_information(args.information)  # before the long computation
    ds = open_dataset(args.source)
    if args.time:
        have = ds.indexes["time"]
        ds = ds.sel(time=slice(*args.time))
        if ds.sizes["time"] == 0:
            raise ConfigError(
                f"--time {args.time[0]} {args.time[1]} selects no time step: {args.source} covers {have[0]} .. "
                f"{have[-1]}. Choose a period inside it."
            )
    names = None
    if args.variables:
        names = list(dict.fromkeys(parse_variable(v).name for v in args.variables))
    with dask_cluster(args):  # --cluster slurm: a dask-jobqueue SLURMCluster computes it
        clim = compute_climatology(ds, hour_step=None if args.daily else args.hour_step, window=args.window,
                                   variables=names, window_weights=args.window_weights)
        out = save_climatology(clim, Path(args.output), information=information)
    dims = ", ".join(f"{d}={n}" for d, n in clim.sizes.items())
    print(f"climatology of {args.source}: {len(clim.data_vars)} variable(s) ({', '.join(map(str, clim.data_vars))})")
    print(f"  from {clim.attrs['n_samples']} time steps, {clim.attrs['period']}, window {args.window} days")
    print(f"  dims {dims}")
    print(f"wrote {out}: {_size_summary(out)}")
    return 0


def _size_summary(path: Path) -> str:
    """``N MB, ratio R`` from the ``atmos_compression`` record of a written file or store."""
    import json

    import xarray as xr

    opener = xr.open_dataset if path.suffix == ".nc" else xr.open_zarr
    with opener(path) as ds:
        rec = json.loads(ds.attrs.get("atmos_compression", "{}"))
    ratio, stored = rec.get("ratio"), rec.get("nbytes_stored")
    if not ratio or not stored:
        return "compressed"
    how = "lossless" if rec.get("information") is None else f"{100 * rec['information']:g} % of the information kept"
    return f"{stored / 1e6:.1f} MB, compression ratio {ratio:.2f} ({how})"
