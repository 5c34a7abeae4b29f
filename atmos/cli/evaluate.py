"""``atmos evaluate``: score forecasts WeatherBench2-style, or emulations with the ClimateBench NRMSEs.

* ``atmos evaluate FORECAST --truth NAME|PATH [...]``: RMSE, bias, ACC ... per variable,
  region and lead time of a forecast in the WeatherBench2 layout, with persistence and
  climatology baselines scored by the same code (:func:`atmos.evaluation.evaluate`).
* ``atmos evaluate --climatebench --pred PRED.nc --truth ...``: the ClimateBench scores.
"""

from __future__ import annotations

import argparse
import json
import re
import warnings
from pathlib import Path

from atmos.errors import ConfigError, DataError

__all__ = ["add_parser", "run"]

#: Leads printed by default when a forecast has many (those present are shown).
PRINT_LEADS = ("6h", "12h", "1D", "2D", "3D", "5D", "7D", "10D", "14D")


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "evaluate",
        help="score forecasts against the truth (WeatherBench2 metrics, or ClimateBench NRMSE)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=(
            "Score predictions against the truth.\n\n"
            "FORECAST (WeatherBench2 layout: time x prediction_timedelta x [member] x [level] x lat x lon, as\n"
            "written by atmos rollout) is aligned to the truth by valid time = time + prediction_timedelta and\n"
            "scored per variable, region and lead time with area (cell-area) weights: RMSE = sqrt of the\n"
            "init-time mean of the MSE, bias, ACC against a day-of-year x hour climatology, and, for\n"
            "ensembles, fair CRPS and spread/skill. Persistence and climatology forecasts for the same\n"
            "init times and leads are scored by the same code. The climatology comes from --climatology\n"
            "(a file from 'atmos climatology' or a WeatherBench2 climatology zarr) or is computed from\n"
            "--climatology-source (use training data, not the evaluation period).\n\n"
            "--climatebench: the ClimateBench metrics (Watson-Parris et al. 2022) on the years of --window\n"
            "(default 2080-2100, inclusive), cos(latitude) weights, ensemble-mean truth:\n"
            "  spatial NRMSE = RMSE between the time-mean maps / |global mean of the time-mean truth|\n"
            "  global NRMSE  = RMSE over years of the global-mean series / the same normaliser\n"
            "  total         = spatial + 5 * global\n"
            "ClimateBench scores changes from pre-industrial: with absolute fields (e.g. tas in K) pass\n"
            "--baseline SCEN:Y0-Y1 to subtract that period's ensemble-mean climatology (per cell) from both."
        ),
        epilog=(
            "examples:\n"
            "  atmos evaluate forecast.zarr --truth speedy-world-val --climatology-source speedy-world \\\n"
            "      --variables z500 t850 t2m -o scores.csv --plots plots/\n"
            "  atmos rollout --init 2020-01-01 --days 365 --out year.zarr\n"
            "  atmos evaluate year.zarr --stability speedy-world --plots plots/   (climate of a long rollout)\n"
            "  atmos evaluate ens_seed0.zarr --truth speedy-world-val --against ens_seed1.zarr   (A - B, significance)\n"
            "  atmos evaluate forecast.zarr --truth speedy-world-val --against persistence --block-length 2D\n"
            "  atmos evaluate --climatebench --pred pred.nc --truth data/cmip6-ipsl --scenario ssp126 "
            "--baseline historical:1850-1900"
        ),
    )
    p.add_argument("forecast", nargs="?", metavar="FORECAST",
                   help="forecast zarr/netCDF in the WeatherBench2 layout (not with --climatebench)")
    p.add_argument("--truth", nargs="+", metavar="INPUT",
                   help="truth: a catalog name or path (FORECAST mode); netCDF files and/or directories (--climatebench)")
    g = p.add_argument_group("forecast scoring (FORECAST)")
    g.add_argument("--name", metavar="MODEL", help="model name in the scorecard (default: the FORECAST file stem)")
    g.add_argument("--baselines", metavar="LIST",
                   help="comma-separated baselines: persistence,climatology (default: both, climatology only with "
                        "a climatology); 'none' for none")
    g.add_argument("--climatology", metavar="CLIM", help="climatology file (netCDF/zarr from 'atmos climatology', or WB2 zarr)")
    g.add_argument("--climatology-source", metavar="SOURCE",
                   help="compute the climatology from this catalog name / path (e.g. speedy-world)")
    g.add_argument("--climatology-time", nargs=2, metavar=("START", "END"), help="period of --climatology-source")
    g.add_argument("--climatology-window", type=int, default=61, metavar="DAYS",
                   help="day-of-year smoothing window of a computed climatology (default 61, as WB2)")
    g.add_argument("--variables", nargs="+", metavar="VAR",
                   help="short names (z500 t850 t2m u850 msl ...) or canonical names (default: z500 t850 t2m present)")
    g.add_argument("--metrics", metavar="LIST",
                   help="comma-separated: rmse,bias,acc,mae,mse,crps,spread,spread_skill,ensemble_mean_rmse "
                        "(default rmse,bias + acc with a climatology; + crps,spread,ensemble_mean_rmse,spread_skill,"
                        "spread_skill_unbiased for ensembles); also energy_score, crpss (needs a climatology), "
                        "rank_reliability, ensemble_mean_rmse_unbiased")
    g.add_argument("--regions", metavar="LIST", default="global",
                   help="comma-separated: global,tropics,extratropics,northern_extratropics,southern_extratropics")
    g.add_argument("--all-leads", action="store_true", help="print every lead (default: a selection when there are many)")
    g.add_argument("--plots", metavar="DIR", help="also write PNG plots (metric vs lead, maps, spectra; for ensembles "
                                                   "rank histograms and spread vs skill; with --against the "
                                                   "differences with their intervals) to DIR")
    b = p.add_argument_group("confidence intervals and paired comparison (block bootstrap over init times)")
    b.add_argument("--against", metavar="B",
                   help="compare FORECAST (A) with B: a second forecast store, or a baseline (persistence, "
                        "climatology); prints A - B per variable and lead with its paired block-bootstrap interval "
                        "and marks the significant differences")
    b.add_argument("--ci", action="store_true", help="add block-bootstrap confidence intervals to every score")
    b.add_argument("--confidence", type=float, default=0.95, metavar="LEVEL", help="interval level (default 0.95)")
    b.add_argument("--n-boot", type=int, default=1000, metavar="N", help="bootstrap replicates (default 1000)")
    b.add_argument("--block-length", metavar="L",
                   help="block length: init times (e.g. 3) or a duration (e.g. 2D); default ceil(n^(1/3)) init times")
    b.add_argument("--seed", type=int, default=0, help="seed of the bootstrap (default 0)")
    s = p.add_argument_group("long-rollout stability (--stability)")
    s.add_argument("--stability", metavar="REFERENCE",
                   help="instead of scoring against a truth, compare the climate of a long rollout (one init) with "
                        "REFERENCE (catalog name or path, e.g. a training year): monthly global means, spatial-std "
                        "ratios, non-finite values, drift per year (--variables, --plots apply)")
    c = p.add_argument_group("ClimateBench (--climatebench)")
    c.add_argument("--climatebench", action="store_true", help="compute the ClimateBench NRMSE scores")
    c.add_argument("--pred", metavar="PRED.nc",
                   help="predictions (netCDF; a 'scenario' dimension is allowed, e.g. from 'atmos baseline ... predict')")
    c.add_argument("--scenario", metavar="SCEN",
                   help="scenario to score (default: the only one present in both)")
    c.add_argument("--var", nargs="+", metavar="VAR", help="variables to score (default: those in both)")
    c.add_argument("--window", nargs=2, type=int, default=[2080, 2100], metavar=("Y0", "Y1"),
                   help="first and last year scored, inclusive (default 2080 2100)")
    c.add_argument("--alpha", type=float, default=5.0, help="weight of the global NRMSE in the total (default 5)")
    c.add_argument("--baseline", metavar="SCEN:Y0-Y1",
                   help="subtract this scenario/period's ensemble-mean climatology (from the --truth inputs)")
    p.add_argument("-o", "--output", metavar="SCORES.{csv,json,nc}", help="also write the scores")
    p.set_defaults(func=run)


def _pick_scenario(pred: dict, truth_scen: list[str], wanted: str | None) -> str:
    if wanted:
        if wanted not in pred:
            raise DataError(f"scenario {wanted!r} is not in the predictions (they have {sorted(pred)}).")
        return wanted
    common = [s for s in pred if s in truth_scen]
    if len(common) != 1:
        raise ConfigError(
            f"pass --scenario: predictions have {sorted(pred)}, truth has {sorted(truth_scen)} "
            f"({len(common)} in common)."
        )
    return common[0]


def run(args: argparse.Namespace) -> int:
    if args.stability:
        if args.forecast is None or args.climatebench:
            raise ConfigError("--stability scores a FORECAST (positional) and does not combine with --climatebench.")
        return _run_stability(args)
    if not args.truth:
        raise ConfigError("--truth is required: a catalog name or path of the data to score against.")
    if not args.climatebench:
        if args.forecast is None:
            raise ConfigError(
                "give a FORECAST to score (atmos evaluate FORECAST --truth NAME ...), or choose --climatebench "
                "to score emulations with --pred PRED.nc."
            )
        if args.pred is not None:
            raise ConfigError("--pred belongs to --climatebench; for a forecast, pass it as FORECAST (positional).")
        return _run_forecast(args)
    if args.forecast is not None:
        raise ConfigError(
            f"--climatebench scores --pred, not a positional FORECAST ({args.forecast!r}); "
            "use --pred PRED.nc or drop --climatebench."
        )
    if args.pred is None:
        raise ConfigError("--climatebench needs --pred PRED.nc (the predictions to score).")
    return _run_climatebench(args)


def _run_stability(args: argparse.Namespace) -> int:
    from atmos.io import open_dataset
    from atmos.metrics import open_forecast
    from atmos.metrics.stability import blowup_lead, climate_diagnostics, format_climate_diagnostics

    fc = open_forecast(args.forecast)
    ref = open_dataset(args.stability)
    diag = climate_diagnostics(fc, ref, args.variables)
    print(f"climate of {args.forecast} against {args.stability} (area-weighted; reference grouped by calendar month)")
    print(format_climate_diagnostics(diag))
    blow = blowup_lead(fc, ref, args.variables)
    print("blow-up (non-finite or spatial std > 3x the reference's): "
          + ", ".join(f"{k} {'never' if v is None else v}" for k, v in blow.items()))
    if args.output:
        out = Path(args.output)
        if out.suffix == ".json":
            out.write_text(diag.to_dataframe().reset_index().to_json(orient="records", indent=1))
        else:
            from atmos.io.write import write_netcdf

            write_netcdf(diag, out, what="atmos evaluate --stability")
        print(f"wrote {out}")
    if args.plots:
        from atmos.metrics.stability import plot_climate_diagnostics

        path = plot_climate_diagnostics(fc, ref, Path(args.plots) / "climate.png", args.variables)
        print(f"wrote {path}")
    return 0


def _split(text: str | None) -> list[str] | None:
    if text is None:
        return None
    items = [t.strip() for t in re.split(r"[,\s]+", text) if t.strip()]
    return [] if items == ["none"] else items


def _run_forecast(args: argparse.Namespace) -> int:
    import pandas as pd

    from atmos.io import open_dataset
    from atmos.io.check import decode_guard
    from atmos.evaluation import evaluate, format_scorecard, scorecard_to_dataframe, write_scorecard
    from atmos.io.climatology import load_climatology
    from atmos.metrics import open_forecast, resolve_variables

    if len(args.truth) != 1:
        raise ConfigError(f"--truth takes one catalog name or path when scoring a FORECAST, got {args.truth}.")
    if args.climatology and args.climatology_source:
        raise ConfigError("pass either --climatology or --climatology-source, not both.")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", UserWarning)
        fc = open_forecast(args.forecast)
    for w in caught:
        print(f"note: {w.message}")
    truth = open_dataset(args.truth[0])
    specs = resolve_variables(args.variables, fc, truth)
    clim = None
    if args.climatology:
        clim = load_climatology(args.climatology)
    elif args.climatology_source:
        from atmos.io.climatology import compute_climatology

        src = open_dataset(args.climatology_source)
        if args.climatology_time:
            src = src.sel(time=slice(*args.climatology_time))
        names = sorted({s.name for s in specs})
        clim = compute_climatology(src, window=args.climatology_window, variables=names)
    baselines = _split(args.baselines)
    metrics = _split(args.metrics)
    if metrics is None:
        metrics = ["rmse", "bias"] + (["acc"] if clim is not None else [])
        if "member" in fc.dims:
            metrics += ["crps", "spread", "ensemble_mean_rmse", "spread_skill", "spread_skill_unbiased"]
    regions = _split(args.regions) or ["global"]
    name = args.name or Path(str(args.forecast).rstrip("/")).stem
    if not 0.0 < args.confidence < 1.0:
        raise ConfigError(f"--confidence {args.confidence}: expected a level in (0, 1), e.g. 0.95.")
    if args.n_boot < 1:
        raise ConfigError(f"--n-boot {args.n_boot}: expected a positive number of replicates, e.g. 1000.")
    if args.against:
        return _run_against(args, fc, truth, clim, specs, _split(args.metrics), regions, name)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", UserWarning)
        with decode_guard([fc, truth], what="the forecast or the truth"):
            scores = evaluate(fc, truth, metrics=metrics, climatology=clim, baselines=baselines,
                              variables=[s.label for s in specs], regions=regions, name=name,
                              ci=args.confidence if args.ci else None, n_boot=args.n_boot,
                              block_length=args.block_length, seed=args.seed)
    for w in caught:
        print(f"note: {w.message}")
    leads = None
    all_leads = scores["prediction_timedelta"].values
    if not args.all_leads and all_leads.size > 12:
        leads = [x for x in PRINT_LEADS if pd.Timedelta(x).to_timedelta64() in all_leads]
    print(f"scores of {name} against {args.truth[0]}: {scores.attrs['n_init_times']} init times "
          f"{scores.attrs['first_init_time'][:16]} .. {scores.attrs['last_init_time'][:16]}, "
          f"area-weighted; RMSE = sqrt(mean over inits of MSE)")
    if clim is None:
        print("no climatology (--climatology / --climatology-source): ACC and the climatology baseline are skipped")
    if args.ci:
        print(f"[lower, upper]: {100 * args.confidence:g}% {scores.attrs['ci_method']} over init times "
              f"(block {scores.attrs['ci_block_length']} init times, {args.n_boot} replicates)")
    print()
    print(format_scorecard(scores, leads=leads))
    if args.output:
        out = Path(args.output)
        if out.suffix == ".json":
            out.write_text(scorecard_to_dataframe(scores).to_json(orient="records", indent=1))
        else:
            write_scorecard(scores, out)
        print(f"wrote {out}")
    if args.plots:
        paths = _forecast_plots(scores, fc, truth, clim, specs, Path(args.plots), name)
        print(f"wrote {len(paths)} plot(s) to {args.plots}")
    return 0


def _run_against(args, fc, truth, clim, specs, metrics, regions, name) -> int:
    """``--against B``: the paired comparison A - B (:func:`atmos.evaluation.compare`)."""
    import pandas as pd

    from atmos.evaluation import BASELINES, comparison_to_dataframe, compare, format_comparison
    from atmos.io.check import decode_guard
    from atmos.io.write import write_netcdf
    from atmos.metrics import open_forecast

    against = str(args.against)
    if against.lower() in BASELINES:
        other, name_b, guard = against.lower(), against.lower(), [fc, truth]
    else:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", UserWarning)
            other = open_forecast(against)
        for w in caught:
            print(f"note: {w.message}")
        name_b, guard = Path(against.rstrip("/")).stem, [fc, other, truth]
    if name_b == name:
        name, name_b = f"A:{name}", f"B:{name_b}"
    if args.baselines is not None:
        print("note: --baselines is ignored with --against (B is the one forecast compared)")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", UserWarning)
        with decode_guard(guard, what="the forecasts or the truth"):
            comp = compare(fc, other, truth, metrics=metrics, climatology=clim, variables=[s.label for s in specs],
                           regions=regions, names=(name, name_b), confidence=args.confidence, n_boot=args.n_boot,
                           block_length=args.block_length, seed=args.seed)
    for w in caught:
        print(f"note: {w.message}")
    leads = None
    all_leads = comp["prediction_timedelta"].values
    if not args.all_leads and all_leads.size > 12:
        leads = [x for x in PRINT_LEADS if pd.Timedelta(x).to_timedelta64() in all_leads]
    print(f"{name} against {name_b}, truth {args.truth[0]}: {comp.attrs['n_init_times']} common init times "
          f"{comp.attrs['first_init_time'][:16]} .. {comp.attrs['last_init_time'][:16]}, area-weighted")
    print("negative A - B: A has the lower score (better for rmse, crps, mae; worse for acc, crpss)")
    print()
    print(format_comparison(comp, leads=leads))
    if args.output:
        out = Path(args.output)
        if out.suffix == ".nc":
            write_netcdf(comp.assign(significant=comp["significant"].astype("int8")), out, what="atmos evaluate --against")
        elif out.suffix == ".json":
            out.write_text(comparison_to_dataframe(comp).to_json(orient="records", indent=1))
        else:
            comparison_to_dataframe(comp).to_csv(out, index=False, float_format="%.8g")
        print(f"wrote {out}")
    if args.plots:
        from atmos.metrics.plots import plot_comparison

        paths = []
        for metric in comp["metric"].values:
            for region in comp["region"].values:
                p = Path(args.plots) / f"difference_{metric}_{region}.png"
                plot_comparison(comp, str(metric), str(region), path=p)
                paths.append(p)
        print(f"wrote {len(paths)} plot(s) to {args.plots}")
    return 0


def _forecast_plots(scores, fc, truth, clim, specs, outdir: Path, name: str) -> list[Path]:
    """Metric-vs-lead plots, maps at up to three leads of the first init, and zonal spectra."""
    import numpy as np

    from atmos.baselines.climatology import climatology_forecast
    from atmos.evaluation import evaluate_spectra
    from atmos.metrics import align_truth, select_variables
    from atmos.metrics.plots import plot_maps, plot_spectra, write_score_plots

    paths = write_score_plots(scores, outdir)
    if "member" in fc.dims:
        from atmos.evaluation import evaluate_rank_histograms
        from atmos.metrics.plots import plot_rank_histograms, plot_spread_skill

        hist = evaluate_rank_histograms(fc, truth, variables=[s.label for s in specs])
        p = outdir / "rank_histograms.png"
        plot_rank_histograms(hist, title=name, path=p)
        paths.append(p)
        if set(map(str, scores["metric"].values)) & {"spread", "spread_skill", "spread_skill_unbiased"}:
            p = outdir / "spread_skill.png"
            plot_spread_skill(scores, model=name, path=p)
            paths.append(p)
    f = select_variables(fc, specs)
    t0 = f["time"].values[:1]
    have = truth.indexes["time"].values
    f0 = f.sel(time=t0)
    keep = [td for td in f0["prediction_timedelta"].values if np.isin(t0 + td, have).all()]
    f0 = f0.sel(prediction_timedelta=keep)
    y0 = align_truth(f0, select_variables(truth, specs))
    for s in specs:
        p = outdir / f"maps_{s.label}.png"
        plot_maps(f0[s.label], y0[s.label], title=f"{name} {s.label}", path=p)
        paths.append(p)
    models = {name: fc}
    if clim is not None:
        models["climatology"] = climatology_forecast(clim, fc["time"].values, fc["prediction_timedelta"].values,
                                                     like=truth, variables=sorted({s.name for s in specs}))
    if "cell" in fc.dims:  # HEALPix: no zonal spectrum
        return paths
    leads = fc["prediction_timedelta"].values
    pick = leads[np.unique(np.linspace(0, leads.size - 1, min(3, leads.size)).round().astype(int))]
    spec = evaluate_spectra(models, truth, leads=pick, variables=[s.label for s in specs])
    p = outdir / "spectra.png"
    plot_spectra(spec, path=p)
    paths.append(p)
    return paths


def _run_climatebench(args: argparse.Namespace) -> int:
    import numpy as np

    from atmos.io.cmip6 import open_scenarios
    from atmos.metrics import climatebench_scores

    pred = open_scenarios([args.pred])
    truth_all = open_scenarios(args.truth, None, None)
    scen = _pick_scenario(pred, list(truth_all), args.scenario)
    if scen not in truth_all:
        raise DataError(f"scenario {scen!r} is not in the truth inputs (found {sorted(truth_all)}).")
    p, t = pred[scen], truth_all[scen]
    if "member" in p.dims and p.sizes["member"] == 1:
        p = p.isel(member=0, drop=True)
    variables = list(args.var) if args.var else [v for v in t.data_vars if v in p.data_vars]
    if not variables:
        raise DataError(f"no common variable: truth has {list(t.data_vars)}, predictions {list(p.data_vars)}.")
    for v in variables:
        for ds, what in ((t, "truth"), (p, "predictions")):
            if v not in ds.data_vars:
                raise DataError(f"variable {v!r} is not in the {what} (it has {list(ds.data_vars)}).")
    t, p = t[variables], p[variables]
    if args.baseline:
        m = re.fullmatch(r"([^:]+):(\d{1,4})-(\d{1,4})", args.baseline)
        if not m:
            raise ConfigError(f"--baseline {args.baseline!r}: expected SCEN:Y0-Y1, e.g. historical:1850-1900.")
        bscen, y0, y1 = m[1], int(m[2]), int(m[3])
        if bscen not in truth_all:
            raise DataError(f"--baseline scenario {bscen!r} is not in the truth inputs (found {sorted(truth_all)}).")
        ref = truth_all[bscen][variables].sel(time=slice(y0, y1))
        if ref.sizes["time"] == 0:
            raise DataError(f"--baseline {args.baseline}: scenario {bscen!r} has no year in {y0}-{y1}.")
        clim = ref.mean("member").mean("time") if "member" in ref.dims else ref.mean("time")
        t, p = t - clim, p - clim
    scores = climatebench_scores(t, p, window=tuple(args.window), alpha=args.alpha)
    rows = {v: {m: float(scores[v].sel(metric=m)) for m in ("spatial", "global", "total")} for v in variables}
    print(f"ClimateBench NRMSE, scenario {scen}, years {args.window[0]}-{args.window[1]}"
          + (f", anomalies w.r.t. {args.baseline}" if args.baseline else ""))
    print(f"{'variable':<16}{'spatial':>10}{'global':>10}{'total':>10}")
    for v, r in rows.items():
        print(f"{v:<16}{r['spatial']:>10.4f}{r['global']:>10.4f}{r['total']:>10.4f}")
    if args.output:
        out = Path(args.output)
        if out.suffix == ".json":
            out.write_text(json.dumps({"scenario": scen, "window": list(args.window), "scores": rows}, indent=2))
        else:
            lines = ["variable,spatial,global,total"] + [
                f"{v},{r['spatial']!r},{r['global']!r},{r['total']!r}" for v, r in rows.items()
            ]
            out.write_text("\n".join(lines) + "\n")
    if not all(np.isfinite(x) for r in rows.values() for x in r.values()):  # pragma: no cover - defensive
        raise DataError("a score is not finite; check the inputs for constant or empty fields.")
    return 0
