"""``atmos plot``: PNGs of scorecards (metric vs lead) and of forecasts (maps, zonal spectra)."""

from __future__ import annotations

import argparse
from pathlib import Path

__all__ = ["add_parser", "run"]

_SCORE_SUFFIXES = (".csv",)


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "plot",
        help="plot scorecards (metric vs lead) or forecasts (maps, spectra) to PNG",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=(
            "INPUTs ending in .csv (or .nc files holding a 'score' variable) are scorecards from\n"
            "'atmos evaluate -o': every metric x region is drawn against lead time, one panel per variable,\n"
            "one line per model (several scorecards are merged by model).\n"
            "Other INPUTs are forecasts in the WeatherBench2 layout: with --truth, maps of forecast, truth\n"
            "and error at --leads of the first (or --init) init time, and zonal power spectra of each\n"
            "forecast and the truth (mid-latitudes 30-60 deg)."
        ),
        epilog=(
            "examples:\n  atmos plot scores.csv -o plots/\n"
            "  atmos plot forecast.zarr --truth speedy-world-val --variables z500 t2m --leads 1D 5D -o plots/"
        ),
    )
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="scorecards (.csv) and/or forecasts (zarr/netCDF)")
    p.add_argument("-o", "--output", required=True, metavar="DIR", help="folder for the PNGs")
    p.add_argument("--truth", metavar="NAME|PATH", help="truth cube for forecast maps and spectra")
    p.add_argument("--variables", nargs="+", metavar="VAR", help="short or canonical names (default: z500 t850 t2m present)")
    p.add_argument("--leads", nargs="+", metavar="LEAD", help="lead times for maps and spectra, e.g. 1D 5D 240h")
    p.add_argument("--init", metavar="TIME", help="init time of the maps (default: the first)")
    p.add_argument("--metrics", nargs="+", metavar="METRIC", help="scorecard metrics to plot (default: all)")
    p.add_argument("--regions", nargs="+", metavar="REGION", help="scorecard regions to plot (default: all)")
    p.set_defaults(func=run)


def _is_scorecard(path: str) -> bool:
    if path.endswith(_SCORE_SUFFIXES):
        return True
    if path.endswith(".nc"):
        import xarray as xr

        with xr.open_dataset(path) as ds:
            return "score" in ds.data_vars and "metric" in ds.dims
    return False


def run(args: argparse.Namespace) -> int:
    import xarray as xr

    from atmos.errors import ConfigError, DataError
    from atmos.evaluation import read_scorecard

    outdir = Path(args.output)
    cards, forecasts = [], []
    for path in args.inputs:
        if "://" not in path and not Path(path).exists():
            raise DataError(f"input {path!r} does not exist.")
        (cards if _is_scorecard(path) else forecasts).append(path)
    written: list[Path] = []
    if cards:
        from atmos.metrics.plots import plot_scores

        sc = read_scorecard(cards[0]) if len(cards) == 1 else xr.concat(
            [read_scorecard(c) for c in cards], dim="model", join="outer"
        ).drop_duplicates("model")
        metrics = args.metrics or [str(m) for m in sc["metric"].values]
        regions = args.regions or [str(r) for r in sc["region"].values]
        for m in metrics:
            for r in regions:
                p = outdir / f"{m}_{r}.png"
                plot_scores(sc, m, r, variables=args.variables, path=p)
                written.append(p)
    if forecasts:
        if not args.truth:
            raise ConfigError("forecast inputs need --truth NAME|PATH for the maps and spectra.")
        written += _plot_forecasts(forecasts, args, outdir)
    for p in written:
        print(f"wrote {p}")
    return 0


def _plot_forecasts(paths: list[str], args: argparse.Namespace, outdir: Path) -> list[Path]:
    import numpy as np
    import pandas as pd

    from atmos.io import open_dataset
    from atmos.evaluation import evaluate_spectra
    from atmos.metrics import align_truth, open_forecast, resolve_variables, select_variables
    from atmos.metrics.plots import plot_maps, plot_spectra

    truth = open_dataset(args.truth)
    models = {Path(p.rstrip("/")).stem: open_forecast(p) for p in paths}
    first = next(iter(models.values()))
    specs = resolve_variables(args.variables, first, truth)
    written = []
    for name, fc in models.items():
        f = select_variables(fc, specs)
        t0 = np.datetime64(pd.Timestamp(args.init), "ns") if args.init else f["time"].values[0]
        f0 = f.sel(time=[t0])
        have = truth.indexes["time"].values
        keep = [td for td in f0["prediction_timedelta"].values if np.isin(t0 + td, have)]
        f0 = f0.sel(prediction_timedelta=keep)
        y0 = align_truth(f0, select_variables(truth, specs))
        for s in specs:
            p = outdir / f"maps_{name}_{s.label}.png"
            plot_maps(f0[s.label], y0[s.label], leads=args.leads, title=f"{name} {s.label}", path=p)
            written.append(p)
    if "cell" not in first.dims:
        spec = evaluate_spectra(models, truth, leads=args.leads, variables=[s.label for s in specs])
        p = outdir / "spectra.png"
        plot_spectra(spec, path=p)
        written.append(p)
    return written
