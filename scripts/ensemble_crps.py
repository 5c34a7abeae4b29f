"""A CRPS-trained stochastic emulator against the deterministic default with a perturbation (issue 14).

Trains (``--train``) a small stochastic ViT with atmos's own trainer: the embedded default's
stage-1 recipe (``scripts/train_sample_model.py``) with ``data.noise_channels`` noise inputs and
``loss.name: crps`` over ``loss.members`` members per window (batch 2 x 4 members = the default's 8
samples per step), then 12-step fine-tuning, on SPEEDY-world 2018 (a *simulated* atmosphere from the
SPEEDY-physics GCM run via jcm, not observations). Scores (``--score``) it and the deterministic
default with a perturbation method on the SPEEDY-world validation month, the same members and init
times: CRPS, unbiased spread/skill, ensemble-mean RMSE (and the deterministic control's RMSE), and the
rank-histogram reliability index of z500, t850 and t2m at days 1, 3, 5, 10.

    OMP_NUM_THREADS=1 python scripts/ensemble_crps.py --train --out out/crps        # trains, then scores
    OMP_NUM_THREADS=1 python scripts/ensemble_crps.py --score out/crps/crps_vit_speedy_ft --out out/crps

Writes ``{out}/ensemble_crps.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "scripts"))

import train_sample_model as tsm  # noqa: E402

RUN = "crps_vit_speedy"
#: The stochastic recipe: the default's stage 1 with noise inputs and the fair CRPS.
CRPS_OVERRIDES = [
    *(o.replace(tsm.RUN_NAME, RUN) for o in tsm.SAMPLE_OVERRIDES),
    "data.seasonal_harmonics=0",  # measured without the seasonal cycle (the comparison is with the full-state model)
    "data.noise_channels=4",
    "loss.name=crps",
    "loss.members=4",
    "data.batch_size=2",
]
STAGE2 = [o.replace(tsm.FINETUNE_NAME, f"{RUN}_ft") for o in tsm.FINETUNE_OVERRIDES if not o.startswith("data.batch_size")]
STAGE2 += ["data.batch_size=1"]  # 1 window x 4 members of 12 steps
DAYS = (1, 3, 5, 10)
VARS = {"z500": ("geopotential", 500), "t850": ("temperature", 850), "t2m": ("2m_temperature", None)}


#: Fine-tuning the deterministic default into a stochastic model (``--init-from atmos/sample``): the
#: default's recipe and seasonal cycle, its weights (noise columns start at zero), the fair CRPS over
#: 4 members, 4-step windows, then 12-step windows.
WARM_RUN = "crps_vit_speedy_warm"
WARM_OVERRIDES = [
    *(o.replace(tsm.RUN_NAME, WARM_RUN) for o in tsm.SAMPLE_OVERRIDES
      if o.split("=")[0] not in ("schedule.epochs", "schedule.warmup_steps", "optimizer.lr", "multistep.steps",
                                 "multistep.epoch_increment", "multistep.maximum")),
    "data.noise_channels=4",
    "loss.name=crps",
    "loss.members=4",
    "data.batch_size=2",
    "optimizer.lr=3.0e-4",
    "schedule.warmup_steps=10",
    "schedule.epochs=4",
    "multistep.steps=4",
    "multistep.maximum=4",
    "multistep.epoch_increment=0",
]
WARM_STAGE2 = [f"output.name={WARM_RUN}_ft", "schedule.epochs=6", "multistep.steps=12", "multistep.maximum=12",
               "data.batch_size=1", "validation.every_epochs=1"]


def _two_stages(base: list[str], stage2: list[str], stage1_dir: Path) -> tuple[Path, float]:
    """Train ``base``, then resume it from ``stage1_dir`` with ``stage2`` added; the last run folder and seconds."""
    from atmos.train import fit, load_config

    t0 = time.perf_counter()
    res = fit(load_config(tsm.BASE_CONFIG, base))
    if res.status != "finished":
        raise SystemExit(f"stage 1 {res.status}")
    res = fit(load_config(tsm.BASE_CONFIG, [*base, *stage2]), resume=stage1_dir)
    if res.status != "finished":
        raise SystemExit(f"stage 2 {res.status}")
    return res.run_dir, time.perf_counter() - t0


def train_warm(out: Path, init_from: Path, epochs: int = 6, extra: list[str] = ()) -> tuple[Path, float]:
    """Fine-tune the deterministic checkpoint ``init_from`` into a stochastic model (``model.init_from``);
    ``epochs`` in all, the first 4 on 4-step windows; ``extra`` overrides apply to both stages."""
    base = [*WARM_OVERRIDES, f"output.dir={out}", f"model.init_from={init_from}", *extra]
    return _two_stages(base, [*WARM_STAGE2, f"schedule.epochs={epochs}"], out / WARM_RUN)


def train(out: Path, seasonal: int = 0) -> tuple[Path, float]:
    base = [*CRPS_OVERRIDES, f"output.dir={out}", f"data.seasonal_harmonics={seasonal}"]
    return _two_stages(base, STAGE2, out / RUN)


def _score(fc: xr.Dataset, truth: xr.Dataset) -> dict[str, Any]:
    from atmos.metrics import CRPS, RMSE, EnsembleMeanRMSE, UnbiasedSpreadSkill
    from atmos.metrics.forecast import align_truth
    from atmos.metrics.probabilistic import RankHistogram, rank_histogram_flatness

    ens = "realization"
    out: dict[str, Any] = {}
    leads = [np.timedelta64(d * 24, "h") for d in DAYS]
    for lab, (var, lev) in VARS.items():
        f = fc[var] if lev is None else fc[var].sel(level=lev)
        y = truth[var] if lev is None else truth[var].sel(level=lev)
        f = f.sel(prediction_timedelta=leads)
        y = align_truth(f, y).drop_vars("valid_time")
        f = f.drop_vars("valid_time", errors="ignore")
        rh = RankHistogram(ens).compute(f, y)
        flat = rank_histogram_flatness(rh)
        out[lab] = {
            "crps": CRPS(ens).compute(f, y).values.tolist(),
            "spread_skill_unbiased": UnbiasedSpreadSkill(ens).compute(f, y).values.tolist(),
            "ensemble_mean_rmse": EnsembleMeanRMSE(ens).compute(f, y).values.tolist(),
            "member0_rmse": RMSE().compute(f.isel({ens: 0}, drop=True), y).values.tolist(),
            "rank_reliability_index": np.asarray(flat["reliability_index"]).ravel().tolist(),
        }
    return out


def score(model: Path | None, data: str, inits: pd.DatetimeIndex, members: int, seed: int,
          perturbation: str | None, scale: float | None, opts: dict[str, Any]) -> dict[str, Any]:
    from atmos.rollout import rollout

    t0 = time.perf_counter()
    fc = rollout(model, data, inits, days=max(DAYS), step="1D", members=members, seed=seed,
                 perturbation=perturbation, perturbation_scale=scale, perturbation_options=opts or None)
    fc = fc.load()
    secs = time.perf_counter() - t0
    truth = xr.open_zarr(data)[[v for v, _ in VARS.values()]].load()
    res = _score(fc, truth)
    res["seconds"] = round(secs, 1)
    res["description"] = fc.attrs.get("atmos_perturbation", "the model's own noise inputs")
    return res


def _table(results: dict[str, Any], meta: dict[str, Any]) -> str:
    lines = [f"{meta['members']} members, {meta['n_inits']} inits {meta['inits'][0]} .. {meta['inits'][1]} every "
             f"{meta['every']}; SPEEDY-world validation month (simulated, not observations). CRPS / ens-mean RMSE in "
             "m2 s-2 (z500) and K.", ""]
    head = "| forecast | var | CRPS d1 | d3 | d5 | d10 | SSR_u d1 | d3 | d5 | d10 | ens-mean RMSE d5 | member-0 RMSE d5 | RI d5 |"
    lines += [head, "|---|---|" + "---|" * 11]
    for name, r in results.items():
        for lab in VARS:
            s = r[lab]
            lines.append(
                f"| {name} | {lab} | " + " | ".join(f"{v:.4g}" for v in s["crps"]) + " | "
                + " | ".join(f"{v:.2f}" for v in s["spread_skill_unbiased"])
                + f" | {s['ensemble_mean_rmse'][2]:.4g} | {s['member0_rmse'][2]:.4g} | {s['rank_reliability_index'][2]:.3f} |"
            )
    lines += ["", "SSR_u: unbiased spread/skill (1 = reliable); RI: rank-histogram reliability index "
              "(sum |f_k - 1/K|, 0 = flat)."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    root = Path(os.environ.get("ATMOS_DATA", REPO.parent / "shared" / "data"))
    os.environ.setdefault("ATMOS_DATA", str(root))
    p.add_argument("--train", action="store_true", help="train the stochastic model first")
    p.add_argument("--score", type=Path, metavar="CHECKPOINT", help="score this stochastic checkpoint")
    p.add_argument("--out", type=Path, default=Path("out/crps"))
    p.add_argument("--data", default=str(root / "speedy-world-2019-12.zarr"))
    p.add_argument("--start", default="2019-12-22")
    p.add_argument("--end", default="2020-01-10")
    p.add_argument("--every", default="12h")
    p.add_argument("--members", type=int, default=8)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--baseline", default="bred:0.1:cycles=4,cycle=12h",
                   help="perturbation of the deterministic default: METHOD:SCALE[:K=V,...]")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--seasonal", type=int, default=0, help="data.seasonal_harmonics of the stochastic model")
    p.add_argument("--no-baseline", action="store_true", help="score only the stochastic model")
    p.add_argument("--init-from", type=Path, metavar="CHECKPOINT",
                   help="with --train: fine-tune this deterministic checkpoint (e.g. atmos/sample) instead")
    p.add_argument("--epochs", type=int, default=6, help="with --init-from: epochs in all (4 on 4-step windows)")
    p.add_argument("--label", default="stochastic (CRPS-trained)", help="name of the stochastic model's row")
    p.add_argument("--override", nargs="*", default=[], metavar="KEY=VALUE",
                   help="with --init-from: config overrides of both fine-tuning stages (e.g. multistep.gradient=full)")
    args = p.parse_args(argv)
    import logging

    import torch

    torch.set_num_threads(args.threads)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    args.out.mkdir(parents=True, exist_ok=True)
    res_path = args.out / "ensemble_crps.json"
    doc = json.loads(res_path.read_text()) if res_path.is_file() else {"results": {}}
    model = args.score
    if args.train:
        if args.init_from is not None:
            model, secs = train_warm(args.out, args.init_from, args.epochs, args.override)
        else:
            model, secs = train(args.out, args.seasonal)
        doc.setdefault("train_s", {})[args.label] = round(secs, 1)
    inits = pd.date_range(args.start, args.end, freq=args.every)
    meta = {"members": args.members, "n_inits": len(inits), "inits": [str(inits[0]), str(inits[-1])],
            "every": args.every, "seed": args.seed}
    doc["meta"] = meta
    if model is not None:
        doc["results"][args.label] = score(model, args.data, inits, args.members, args.seed,
                                                            None, None, {})
        doc["checkpoint"] = str(model)
        res_path.write_text(json.dumps(doc, indent=1))
    if args.no_baseline:
        table = _table(doc["results"], meta)
        (args.out / "ensemble_crps.md").write_text(table)
        print(table)
        return 0
    method, scale, *rest = args.baseline.split(":")
    opts = dict(kv.split("=", 1) for kv in rest[0].split(",")) if rest else {}
    opts = {k: (int(v) if v.isdigit() else v) for k, v in opts.items()}
    doc["results"][f"default + {method} {scale}"] = score(None, args.data, inits, args.members, args.seed,
                                                         method, float(scale), opts)
    res_path.write_text(json.dumps(doc, indent=1))
    table = _table(doc["results"], meta)
    (args.out / "ensemble_crps.md").write_text(table)
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
