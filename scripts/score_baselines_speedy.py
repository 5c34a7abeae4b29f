"""Score the persistence and climatology baselines on SPEEDY-world (a SIMULATED atmosphere).

Climatology: day-of-year x hour mean of the 2018 training year (``speedy-world``),
smoothed with a 61-day circular window (WeatherBench2's window; with one year of data
each value averages 61 days). Forecasts: init times every 12 h from 2019-12-20T00 to
2020-01-10T00 (43 inits), leads 0-10 days every 6 h, verified against the validation
cube ``speedy-world-val`` (2019-12-20 .. 2020-01-20). Variables z500, t850, t2m.
Prints RMSE and ACC at 6 h, 1, 3, 5 and 10 days and writes the scorecard CSV.

    ATMOS_DATA=/path/to/shared/data python scripts/score_baselines_speedy.py [-o scores.csv]

SPEEDY-world is model output of the SPEEDY-physics GCM (jcm), not observations: these
numbers are baselines on a simulated atmosphere, not ERA5 scores.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import pandas as pd

import atmos
from atmos.baselines import compute_climatology, persistence_forecast
from atmos.evaluation import evaluate, format_scorecard, write_scorecard

REPORT_LEADS = ["6h", "1D", "3D", "5D", "10D"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-o", "--output", default="speedy_baseline_scores.csv", help="scorecard CSV")
    ap.add_argument("--window", type=int, default=61, help="climatology smoothing window in days")
    args = ap.parse_args()
    if "ATMOS_DATA" not in os.environ:
        shared = Path(__file__).resolve().parents[2] / "shared" / "data"
        if shared.is_dir():
            os.environ["ATMOS_DATA"] = str(shared)

    t0 = time.perf_counter()
    train = atmos.open_dataset("speedy-world")
    val = atmos.open_dataset("speedy-world-val")
    clim = compute_climatology(train, window=args.window,
                               variables=["geopotential", "temperature", "2m_temperature"])
    t_clim = time.perf_counter() - t0

    inits = pd.date_range("2019-12-20T00", "2020-01-10T00", freq="12h")
    leads = pd.timedelta_range("0h", "10D", freq="6h")
    # The persistence forecast doubles as the "model" so that the scorecard has the usual shape;
    # it is listed once more as the persistence baseline (identical numbers).
    fc = persistence_forecast(val, inits, leads, variables=["geopotential", "temperature", "2m_temperature"])
    scores = evaluate(fc, val, metrics=("rmse", "bias", "acc"), climatology=clim,
                      baselines=("climatology",), variables=("z500", "t850", "t2m"),
                      regions=("global", "tropics", "extratropics"), name="persistence")
    t_all = time.perf_counter() - t0

    print("SPEEDY-world (simulated atmosphere, SPEEDY physics GCM; NOT observations)")
    print(f"climatology: {clim.attrs['period']}, window {args.window} d ({t_clim:.1f} s)")
    print(f"{scores.attrs['n_init_times']} init times {scores.attrs['first_init_time'][:16]} .. "
          f"{scores.attrs['last_init_time'][:16]}, leads 0-10 d / 6 h; total {t_all:.1f} s\n")
    sub = scores.sel(metric=["rmse", "acc"], region=["global"])
    print(format_scorecard(sub, leads=REPORT_LEADS))
    df = scores["score"].sel(metric=["rmse", "acc"]).sel(
        prediction_timedelta=pd.to_timedelta(REPORT_LEADS).to_numpy()).to_dataframe().reset_index()
    df["lead"] = df["prediction_timedelta"].map(lambda x: f"{x / pd.Timedelta('1h'):g}h")
    table = df.pivot_table(index=["region", "metric", "model", "variable"], columns="lead", values="score", sort=False)
    table = table[[f"{pd.Timedelta(x) / pd.Timedelta('1h'):g}h" for x in REPORT_LEADS]]
    with pd.option_context("display.width", 140, "display.float_format", "{:.4g}".format):
        print(table)
    write_scorecard(scores, args.output)
    print(f"\nwrote {args.output}")


if __name__ == "__main__":
    main()
