"""``atmos compress IN OUT [--information 0.99]``: recompress a data cube or forecast store."""

from __future__ import annotations

import argparse

__all__ = ["add_parser", "run"]


def _fraction(text: str) -> float:
    from atmos.io.compression import check_information

    try:
        value = float(text)
    except ValueError:
        value = text  # type: ignore[assignment]
    try:
        return check_information(value, what="value")  # type: ignore[return-value]
    except Exception as err:  # argparse turns this into a usage error naming the option
        raise argparse.ArgumentTypeError(str(err)) from err


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "compress",
        help="recompress a zarr store or netCDF file: lossless, or keeping a fraction of the real information",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=(
            "Copy IN (zarr store or netCDF file) to OUT (.zarr, or .nc for netCDF), compressed. Lossless by default\n"
            "(zarr: Blosc/Zstandard with byte shuffle; netCDF: zlib with shuffle). With --information F each float\n"
            "variable is first bit-rounded to the fewest mantissa bits that keep the fraction F of its bitwise real\n"
            "information (Kloewer et al. 2021, the method of xbitinfo); every value's error is then at most half a\n"
            "unit in its last kept bit. --codec zfp (lossy, --tolerance) and pcodec (lossless) need atmos[compress].\n"
            "The ratio, PSNR, max abs error and kept bits per variable are recorded in OUT's atmos_compression\n"
            "attribute and printed."
        ),
        epilog="example:\n  atmos compress speedy-world-2018.zarr speedy-2018-99.zarr --information 0.99",
    )
    p.add_argument("input", metavar="IN", help="zarr store or netCDF file")
    p.add_argument("out", metavar="OUT", help="output: a .zarr store, or a .nc file")
    p.add_argument("--information", type=_fraction, metavar="FRACTION",
                   help="keep this fraction of the real information per variable (0 < FRACTION <= 1, e.g. 0.99)")
    p.add_argument("--codec", choices=["blosc", "pcodec", "zfp"], default="blosc",
                   help="zarr codec: blosc (default, lossless), pcodec (lossless), zfp (lossy, needs --tolerance)")
    p.add_argument("--tolerance", type=float, metavar="ABS",
                   help="zfp's absolute error bound, in the variables' units")
    p.add_argument("--dim", metavar="DIM", help="pair neighbours along DIM only (default: the most bits over the "
                   "spatial and time dims)")
    p.add_argument("--variables", nargs="+", metavar="VAR", help="variables to keep (default: all)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing OUT")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from atmos.errors import ConfigError
    from atmos.io.compression import compress

    if args.information is not None and args.codec == "zfp":
        raise ConfigError("--information (bit rounding) and --codec zfp are two lossy methods; pass one of them.")
    rec = compress(args.input, args.out, information=args.information, codec=args.codec, tolerance=args.tolerance,
                   dim=args.dim, variables=args.variables, overwrite=args.overwrite)
    how = rec.get("method", "lossless")
    if rec.get("information") is not None:
        how += f", {100 * rec['information']:g} % of the real information"
    print(f"wrote {args.out}: {rec.get('codec')}, {how}")
    ratio = rec.get("ratio")
    if ratio:
        print(f"  {rec['nbytes_raw'] / 1e6:.1f} MB -> {rec['nbytes_stored'] / 1e6:.1f} MB: ratio {ratio:.2f}, "
              f"{rec['bytes_per_value']:.3f} bytes per value")
    print(f"  {'variable':32s} {'keepbits':>8s} {'PSNR dB':>8s} {'max abs error':>14s} {'ratio':>7s}")
    for name, v in rec.get("variables", {}).items():
        kb = "all" if v.get("keepbits") is None else str(v["keepbits"])
        psnr = v.get("psnr_db")
        psnr = "exact" if psnr == "inf" else f"{float(psnr):.1f}"
        r = v.get("ratio")
        print(f"  {name:32s} {kb:>8s} {psnr:>8s} {float(v['max_abs_error']):14.4g} "
              f"{'' if r is None else format(float(r), '.2f'):>7s}")
    return 0
