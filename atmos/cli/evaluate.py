"""``atmos evaluate --climatebench``: score an emulation against the truth with the ClimateBench NRMSEs."""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

import numpy as np

from atmos.errors import ConfigError, DataError

__all__ = ["add_parser", "run"]


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "evaluate",
        help="score predictions against the truth (ClimateBench NRMSE)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=(
            "Score predictions against the truth.\n\n"
            "--climatebench: the ClimateBench metrics (Watson-Parris et al. 2022) on the years of --window\n"
            "(default 2080-2100, inclusive), cos(latitude) weights, ensemble-mean truth:\n"
            "  spatial NRMSE = RMSE between the time-mean maps / |global mean of the time-mean truth|\n"
            "  global NRMSE  = RMSE over years of the global-mean series / the same normaliser\n"
            "  total         = spatial + 5 * global\n"
            "ClimateBench scores changes from pre-industrial: with absolute fields (e.g. tas in K) pass\n"
            "--baseline SCEN:Y0-Y1 to subtract that period's ensemble-mean climatology (per cell) from both."
        ),
        epilog=(
            "example:\n  atmos evaluate --climatebench --pred pred.nc --truth data/cmip6-ipsl --scenario ssp126 "
            "--baseline historical:1850-1900"
        ),
    )
    p.add_argument("--climatebench", action="store_true", help="compute the ClimateBench NRMSE scores")
    p.add_argument("--pred", required=True, metavar="PRED.nc",
                   help="predictions (netCDF; a 'scenario' dimension is allowed, e.g. from 'atmos baseline ... predict')")
    p.add_argument("--truth", required=True, nargs="+", metavar="INPUT", help="truth netCDF files and/or directories")
    p.add_argument("--scenario", metavar="SCEN",
                   help="scenario to score (default: the only one present in both)")
    p.add_argument("--var", nargs="+", metavar="VAR", help="variables to score (default: those in both)")
    p.add_argument("--window", nargs=2, type=int, default=[2080, 2100], metavar=("Y0", "Y1"),
                   help="first and last year scored, inclusive (default 2080 2100)")
    p.add_argument("--alpha", type=float, default=5.0, help="weight of the global NRMSE in the total (default 5)")
    p.add_argument("--baseline", metavar="SCEN:Y0-Y1",
                   help="subtract this scenario/period's ensemble-mean climatology (from the --truth inputs)")
    p.add_argument("-o", "--output", metavar="SCORES.{csv,json}", help="also write the scores")
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
    from atmos.cli.baseline import open_scenarios
    from atmos.metrics import climatebench_scores

    if not args.climatebench:
        raise ConfigError("choose a metric suite: only --climatebench is available (e.g. atmos evaluate --climatebench ...).")
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
