"""``atmos downscale INPUT --model PATH -o OUT.zarr``: apply a trained downscaling head."""

from __future__ import annotations

import argparse


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "downscale",
        help="downscale coarse fields to a finer grid with a trained downscaling head",
        description=(
            "Apply a downscaling head trained with atmos.train.downscale.fit_downscaler to a coarse "
            "lat-lon dataset on the model's coarse grid and write the fine-grid result as zarr or "
            "netCDF. With --coarsen, INPUT is on the model's fine grid and is first coarsened "
            "conservatively by the model's factor (to test the model against the original)."
        ),
    )
    p.add_argument(
        "source", metavar="INPUT", help="catalog name, path (zarr/netCDF) or URL of the coarse data"
    )
    p.add_argument(
        "--model", required=True, metavar="PATH", help="run or checkpoint folder of the trained head"
    )
    p.add_argument("-o", "--output", required=True, help="output path ending in .zarr or .nc")
    p.add_argument("--time", nargs=2, metavar=("START", "END"), help="time range, e.g. 2020-01-01 2020-01-31")
    p.add_argument("--coarsen", action="store_true", help="INPUT is on the fine grid: coarsen it first")
    p.add_argument("--batch-size", type=int, default=64, help="samples per forward pass (default 64)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from atmos.errors import ConfigError
    from atmos.io import open_dataset
    from atmos.io.downscale import coarsen_conservative
    from atmos.rollout.downscale import downscale, load_downscaler

    out = str(args.output)
    if not out.endswith((".zarr", ".nc")):
        raise ConfigError(f"output path must end in .zarr or .nc, got {out!r}.")
    if args.batch_size < 1:
        raise ConfigError(f"--batch-size must be >= 1, got {args.batch_size}.")
    model, meta = load_downscaler(args.model)
    ds = open_dataset(args.source, time=tuple(args.time) if args.time else None)
    if args.coarsen:
        ds = coarsen_conservative(ds, int(meta["factor"]))
    result = downscale(ds, model, meta, batch_size=args.batch_size)
    if out.endswith(".zarr"):
        from atmos.io.compression import write_compressed

        write_compressed(result, out, what="atmos downscale")  # lossless, atomic, sizes in attrs
    else:
        from atmos.io.write import write_netcdf

        write_netcdf(result, out, what="atmos downscale")
    dims = " x ".join(f"{k}={v}" for k, v in result.sizes.items())
    print(f"wrote {len(result.data_vars)} downscaled variables ({dims}) to {out}")
    return 0
