"""Spread growth and spread/skill of every perturbation method of atmos.rollout.perturbations.

For the embedded default model (the sample ViT, trained on SPEEDY-world: a *simulated*
atmosphere, not observations) and ``--members`` members, on the SPEEDY-world validation month,
each method's ensemble is rolled out from every init time and scored against the validation
cube at days 0..5: z500 spread (WeatherBench2 ``EnsembleSpread``: root of the area- and
time-mean unbiased member variance), its growth (spread at day 1, 3, 5 over spread at lead 0;
methods whose lead-0 spread is 0 get the absolute spread only), the spread/skill ratio (the
unbiased estimator, ``UnbiasedSpreadSkill``, and WB2's ``SpreadSkill``), the ensemble-mean RMSE,
the control's RMSE and the CRPS. Writes ``{out}/ensemble_perturbations.json`` and ``.md``.

Init times default to 2019-12-22 .. 2020-01-10 every 12 h: bred vectors (4 cycles of 12 h) and
the lagged ensemble (7 lags of 6 h) need 48 h / 42 h of data before each init, and the cube
starts on 2019-12-20 00 UTC; every method uses the same init times.

    OMP_NUM_THREADS=1 python scripts/ensemble_perturbations.py --out out/ensembles
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

#: (label, method, scale, options) of every method measured.
METHODS: list[tuple[str, str, float | None, dict[str, Any]]] = [
    ("gaussian 0.1 (--perturb 0.1)", "gaussian", 0.1, {}),
    ("gaussian 0.1, L=1000 km", "gaussian", 0.1, {"length_scale_km": 1000.0}),
    ("spherical 0.1, L=1000 km", "spherical", 0.1, {"length_scale_km": 1000.0}),
    ("bred 0.1 (4 x 12 h)", "bred", 0.1, {"cycles": 4, "cycle": "12h"}),
    ("lagged (lag 6 h)", "lagged", None, {"lag": "6h"}),
    ("temporal-dropout 0.3", "temporal-dropout", 0.3, {}),
]
DAYS = (0, 1, 3, 5)


def _score(fc: xr.Dataset, truth: xr.Dataset, var: str, level: int | None) -> dict[str, list[float]]:
    from atmos.metrics import CRPS, RMSE, EnsembleMeanRMSE, EnsembleSpread, SpreadSkill, UnbiasedSpreadSkill
    from atmos.metrics.forecast import align_truth

    f = fc[var] if level is None else fc[var].sel(level=level)
    y = truth[var] if level is None else truth[var].sel(level=level)
    y = align_truth(f, y).drop_vars("valid_time")
    f = f.drop_vars("valid_time", errors="ignore")
    ens = "realization"
    out = {
        "spread": EnsembleSpread(ens).compute(f, y),
        "ensemble_mean_rmse": EnsembleMeanRMSE(ens).compute(f, y),
        "spread_skill_unbiased": UnbiasedSpreadSkill(ens).compute(f, y),
        "spread_skill_wb2": SpreadSkill(ens).compute(f, y),
        "crps": CRPS(ens).compute(f, y),
        "control_rmse": RMSE().compute(f.isel({ens: 0}, drop=True), y),
    }
    return {k: [float(x) for x in np.asarray(v.values).ravel()] for k, v in out.items()}


def _run_method(label: str, method: str, scale: float | None, opts: dict[str, Any], args: argparse.Namespace,
                inits: pd.DatetimeIndex, truth: xr.Dataset) -> dict[str, Any]:
    from atmos.errors import AtmosError
    from atmos.rollout import rollout

    t = time.perf_counter()
    try:
        fc = rollout(None, args.data, inits, days=args.days, step="1D", members=args.members, perturbation=method,
                     perturbation_scale=scale, perturbation_options=opts, seed=args.seed)
    except AtmosError as err:
        return {"label": label, "method": method, "error": f"{type(err).__name__}: {err}"}
    res: dict[str, Any] = {"label": label, "method": method, "scale": scale, "options": opts,
                           "description": fc.attrs["atmos_perturbation"],
                           "leads_days": [float(x) for x in pd.to_timedelta(fc.prediction_timedelta.values).days]}
    res["z500"] = _score(fc, truth, "geopotential", 500)
    res["t850"] = _score(fc, truth, "temperature", 850)
    res["seconds"] = round(time.perf_counter() - t, 1)
    return res


def _growth(r: dict[str, Any]) -> dict[str, Any]:
    s = r["z500"]["spread"]
    lead = {d: r["leads_days"].index(d) for d in DAYS}
    s0 = s[lead[0]]
    if s0 > 0:
        return {f"day{d}": s[lead[d]] / s0 for d in DAYS[1:]}
    return {f"day{d}": None for d in DAYS[1:]}


def _table(results: list[dict[str, Any]], meta: dict[str, Any]) -> str:
    lines = [
        f"Perturbation methods, {meta['model']}, {meta['members']} members, {meta['n_inits']} inits "
        f"{meta['inits'][0]} .. {meta['inits'][-1]} every {meta['every']}; SPEEDY-world validation month "
        "(a simulated atmosphere, not observations). z500 in m2 s-2.",
        "",
        "| method | z500 spread d0 | d1 | d3 | d5 | growth d1 | d3 | d5 | SSR_u d1 | d3 | d5 | ens-mean RMSE d5 "
        "| control RMSE d5 | CRPS d5 |",
        "|---|" + "---|" * 13,
    ]
    for r in results:
        if "error" in r:
            lines.append(f"| {r['label']} | n/a: {r['error']} |" + " |" * 12)
            continue
        z, idx = r["z500"], {d: r["leads_days"].index(d) for d in DAYS}
        g = _growth(r)
        sp = [z["spread"][idx[d]] for d in DAYS]
        gr = ["(abs.)" if g[f"day{d}"] is None else f"{g[f'day{d}']:.2f}" for d in DAYS[1:]]
        ssr = [z["spread_skill_unbiased"][idx[d]] for d in DAYS[1:]]
        lines.append(
            f"| {r['label']} | " + " | ".join(f"{v:.0f}" for v in sp) + " | " + " | ".join(gr) + " | "
            + " | ".join(f"{v:.2f}" for v in ssr)
            + f" | {z['ensemble_mean_rmse'][idx[5]]:.0f} | {z['control_rmse'][idx[5]]:.0f} | {z['crps'][idx[5]]:.0f} |"
        )
    lines += ["", "growth = z500 spread at day d / spread at lead 0 ((abs.): lead-0 spread is 0, see the absolute "
              "spread); SSR_u = unbiased spread/skill (WeatherBench-X); control = member 0 (the deterministic "
              "forecast)."]
    return "\n".join(lines) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    root = Path(os.environ.get("ATMOS_DATA", "../shared/data"))
    p.add_argument("--data", default=str(root / "speedy-world-2019-12.zarr"))
    p.add_argument("--start", default="2019-12-22")
    p.add_argument("--end", default="2020-01-10")
    p.add_argument("--every", default="12h")
    p.add_argument("--days", type=float, default=5.0)
    p.add_argument("--members", type=int, default=8)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--methods", default=None, help="comma-separated labels' methods to run (default: all)")
    p.add_argument("--out", type=Path, default=Path("out/ensembles"))
    args = p.parse_args()

    import torch

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    from atmos.io.open import open_dataset

    inits = pd.date_range(args.start, args.end, freq=args.every)
    truth = open_dataset(args.data)[["geopotential", "temperature"]].sel(level=[500, 850]).load()
    want = None if args.methods is None else set(args.methods.split(","))
    results = []
    args.out.mkdir(parents=True, exist_ok=True)
    meta = {"model": "embedded sample ViT (atmos rollout default)", "members": args.members,
            "inits": [str(t) for t in inits[[0, -1]]], "n_inits": len(inits), "every": args.every,
            "days": args.days, "data": args.data, "data_note": "SPEEDY-world: simulated weather, not observations"}
    for label, method, scale, opts in METHODS:
        if want is not None and method not in want:
            continue
        r = _run_method(label, method, scale, opts, args, inits, truth)
        if "error" not in r:
            r["z500_spread_growth"] = _growth(r)
        results.append(r)
        (args.out / "ensemble_perturbations.json").write_text(json.dumps({"meta": meta, "results": results}, indent=1))
        print(f"{label}: {r.get('seconds', 'n/a')} s", flush=True)
    table = _table(results, meta)
    (args.out / "ensemble_perturbations.md").write_text(table)
    print(table)


if __name__ == "__main__":
    main()
