"""Ablation of the stability tools of atmos training, scored like the embedded default.

Every variant is the embedded default's recipe (``scripts/train_sample_model.py``: stage 1
curriculum, stage 2 12-step fine-tuning) with one change, trained on SPEEDY-world 2018 (a
*simulated* atmosphere from the SPEEDY-physics GCM run via jcm, not observations), then scored

* on the validation month (2019-12-20 .. 2020-01-20, 10-day forecasts every 12 h): area-weighted
  RMSE of z500, t850, t2m at day 1/3/5/10, against persistence and a day-of-year climatology of 2018,
  and the mid-latitude zonal-spectrum ratio at wavenumbers 5-20 at day 5;
* by a 1-year rollout from 2020-01-01 against the 2018 cube's monthly climate: worst monthly
  |global-mean t2m error|, worst z500 spatial-std ratio, first blow-up lead.

    python scripts/ablation_stability.py --out /tmp/ablation                 # every variant
    python scripts/ablation_stability.py --out /tmp/ablation --only spectral_norm detached
    python scripts/ablation_stability.py --score atmos/sample --name default  # score one checkpoint

Results accumulate in ``{out}/ablation.json``; ``--table`` prints them as markdown.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "scripts"))

import train_sample_model as tsm  # noqa: E402

#: variant -> (base config, extra stage-1 overrides, extra stage-2 overrides or None to skip stage 2)
VARIANTS: dict[str, tuple[Path, list[str], list[str] | None]] = {
    "default": (tsm.BASE_CONFIG, [], []),
    "spectral_norm": (tsm.BASE_CONFIG, ["model.params.spectral_norm=true"], []),
    "full_gradient": (tsm.BASE_CONFIG, ["multistep.gradient=full"], []),
    "truncated_4": (tsm.BASE_CONFIG, ["multistep.gradient=truncated:4"], []),
    "one_step": (tsm.BASE_CONFIG, ["multistep.maximum=1", "multistep.epoch_increment=0"], None),
    "no_day_of_year": (tsm.BASE_CONFIG, ["data.forcings=[toa_incident_solar_radiation]"], []),
    "amse": (tsm.BASE_CONFIG, ["loss.name=amse"], []),
    "seasonal": (tsm.BASE_CONFIG, ["data.seasonal_harmonics=3"], []),
    "unet_gru": (
        REPO / "configs" / "unet_gru_speedy.yaml",
        [],
        [],
    ),
    # issue 16: the hybrid ViT/U-Net at the ViT's parameter count (0.45 M vs 0.46 M), same recipe
    "hybrid": (REPO / "configs" / "hybrid_speedy.yaml", [], []),
    "hybrid_spectral_norm": (REPO / "configs" / "hybrid_speedy.yaml", ["model.params.spectral_norm=true"], []),
    "hybrid_noise_0.15": (REPO / "configs" / "hybrid_speedy.yaml", ["multistep.input_noise=0.15"], []),
    "hybrid_noise_0.3": (REPO / "configs" / "hybrid_speedy.yaml", ["multistep.input_noise=0.3"], []),
}

#: Overrides of the UNet-GRU variant that replace the ViT's model parameters of tsm.SAMPLE_OVERRIDES.
UNET_DROP = ("model.params.embed_dim", "model.params.depth")
UNET_EXTRA = ["model.params.channels=[48,24,12]"]

LEADS_D = (1, 3, 5, 10)
HEADLINE = ("z500", "t850", "t2m")


#: Optimizer steps per epoch of the ablation runs (the default recipe uses 80; set by --steps-per-epoch).
STEPS_PER_EPOCH = [80]


def _overrides(variant: str, out: Path, stage: int) -> list[str]:
    base, extra1, extra2 = VARIANTS[variant]
    drop = UNET_DROP if variant == "unet_gru" or variant.startswith("hybrid") else ()
    ov = [o for o in tsm.SAMPLE_OVERRIDES if o.split("=")[0] not in drop]
    ov = [o.replace(tsm.RUN_NAME, f"abl_{variant}") for o in ov]
    extra1 = [o for o in extra1 if o.split("=")[0] not in UNET_DROP]
    ov += [f"output.dir={out}", f"schedule.max_steps_per_epoch={STEPS_PER_EPOCH[0]}", *extra1,
           *(UNET_EXTRA if variant == "unet_gru" else [])]
    if stage == 2:
        ov += [o.replace(tsm.FINETUNE_NAME, f"abl_{variant}_ft") for o in tsm.FINETUNE_OVERRIDES] + list(extra2 or [])
    return ov


def train(variant: str, out: Path) -> tuple[Path, float]:
    from atmos.train import fit, load_config

    base, _, extra2 = VARIANTS[variant]
    t0 = time.perf_counter()
    res = fit(load_config(base, _overrides(variant, out, 1)))
    if res.status != "finished":
        raise SystemExit(f"{variant}: stage 1 {res.status}")
    if extra2 is not None:
        res = fit(load_config(base, _overrides(variant, out, 2)), resume=out / f"abl_{variant}")
        if res.status != "finished":
            raise SystemExit(f"{variant}: stage 2 {res.status}")
    return res.run_dir, time.perf_counter() - t0


def train_stage3(variant: str, out: Path) -> tuple[Path, float]:
    """Stage 3 of the default recipe (24-step rollouts, ``tsm.STAGE3_OVERRIDES``) on a finished stage 2 of ``variant``."""
    from atmos.train import fit, load_config

    base, _, _ = VARIANTS[variant]
    ov = _overrides(variant, out, 2) + [o.replace(tsm.STAGE3_NAME, f"abl_{variant}_s3") for o in tsm.STAGE3_OVERRIDES]
    t0 = time.perf_counter()
    res = fit(load_config(base, ov), resume=out / f"abl_{variant}_ft")
    if res.status != "finished":
        raise SystemExit(f"{variant}: stage 3 {res.status}")
    return res.run_dir, time.perf_counter() - t0


def score(model_dir: Path | None, data_dir: Path, inits: str = "2019-12-20/2020-01-10/12h") -> dict:
    """Validation-month RMSE (model, persistence, climatology), spectrum ratio, 1-year diagnostics."""
    import numpy as np

    from atmos.baselines.climatology import climatology_forecast, compute_climatology
    from atmos.io import open_dataset
    from atmos.metrics import align_truth, resolve_variables, select_variables
    from atmos.metrics.deterministic import RMSE
    from atmos.metrics.stability import blowup_lead, climate_diagnostics, spectrum_ratio
    from atmos.rollout import rollout

    truth = open_dataset(str(data_dir / "speedy-world-2019-12.zarr"))
    ref = open_dataset(str(data_dir / "speedy-world-2018.zarr"))
    t0 = time.perf_counter()
    fc = rollout(model_dir, truth, inits, 10).load()
    t_val = time.perf_counter() - t0
    specs = resolve_variables(list(HEADLINE), fc, truth)
    f = select_variables(fc, specs)
    tr = select_variables(truth, specs).load()
    obs = align_truth(f, tr)
    pers = f.copy(data={k: np.broadcast_to(tr[k].sel(time=f.time).values[:, None], f[k].shape) for k in f.data_vars})
    clim = compute_climatology(ref, variables=sorted({s.name for s in specs}))
    cf = select_variables(climatology_forecast(clim, f.time.values, f.prediction_timedelta.values, like=fc), specs)
    rm = RMSE()
    r_model, r_pers, r_clim = (rm.compute(x, obs) for x in (f, pers, cf))
    leads = [np.timedelta64(d * 24, "h") for d in LEADS_D]
    sr = spectrum_ratio(fc, truth, ["z500", "t850"]).sel(prediction_timedelta=np.timedelta64(120, "h"))
    out: dict = {"val_rollout_s": round(t_val, 2), "rmse": {}}
    for s in specs:
        lab = s.label
        m, p, c = (r[lab] for r in (r_model, r_pers, r_clim))
        out["rmse"][lab] = {
            f"d{d}": [float(m.sel(prediction_timedelta=ld)), float(p.sel(prediction_timedelta=ld)),
                      float(c.sel(prediction_timedelta=ld))]
            for d, ld in zip(LEADS_D, leads, strict=True)
        }
        h6 = np.timedelta64(6, "h")
        out["rmse"][lab]["h6"] = [float(r.sel(prediction_timedelta=h6)) for r in (m, p, c)]
        mv, pv, cv = m.values[1:], p.values[1:], c.values[1:]
        out["rmse"][lab]["below_persistence_all_leads"] = bool((mv < pv).all())
        day5 = m["prediction_timedelta"].values[1:] <= np.timedelta64(120, "h")
        out["rmse"][lab]["below_climatology_to_day5"] = bool((mv[day5] < cv[day5]).all())
    out["spectrum_ratio_day5_k5_20"] = {k: float(sr[k]) for k in sr.data_vars}
    t0 = time.perf_counter()
    year = rollout(model_dir, None if model_dir is None else truth, "2020-01-01", 366)
    out["year_rollout_s"] = round(time.perf_counter() - t0, 2)
    diag = climate_diagnostics(year, ref)
    out["year"] = {
        "t2m_worst_abs_month_error_K": float(abs(diag["t2m_mean_error"]).max()),
        "z500_std_ratio_range": [float(diag["z500_std_ratio"].min()), float(diag["z500_std_ratio"].max())],
        "z500_variability_ratio_range": [float(diag["z500_variability_ratio"].min()),
                                         float(diag["z500_variability_ratio"].max())],
        "t2m_variability_ratio_range": [float(diag["t2m_variability_ratio"].min()),
                                        float(diag["t2m_variability_ratio"].max())],
        "months_t2m_within_1K": int((abs(diag["t2m_mean_error"]) < 1).sum()),
        "months_z500_std_within_10pct": int((abs(diag["z500_std_ratio"] - 1) < 0.1).sum()),
        "t2m_drift_per_year_K": diag.attrs["t2m_drift_per_year"],
        "blowup": {k: (None if v is None else str(v)) for k, v in blowup_lead(year, ref).items()},
        "all_finite": bool(all(bool(diag[f"{s}_finite"].all()) for s in HEADLINE)),
    }
    return out


def _table(results: dict) -> str:
    rows = [
        "| variant | train min | z500 d5 (pers/clim) | t850 d5 | t2m d5 | spec z500 d5 | 1-yr worst t2m err K | 1-yr z500 std ratio | finite |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, r in results.items():
        s = r["score"]
        cell = lambda lab: "{:.4g} ({:.4g}/{:.4g})".format(*s["rmse"][lab]["d5"])  # noqa: E731
        y = s["year"]
        rows.append(
            f"| {name} | {r.get('train_s', float('nan')) / 60:.1f} | {cell('z500')} | {cell('t850')} | {cell('t2m')} | "
            f"{s['spectrum_ratio_day5_k5_20']['z500']:.2f} | {y['t2m_worst_abs_month_error_K']:.2f} | "
            f"{y['z500_std_ratio_range'][0]:.2f}-{y['z500_std_ratio_range'][1]:.2f} | {y['all_finite']} |"
        )
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=Path("runs/ablation"))
    p.add_argument("--data", type=Path, default=Path(os.environ.get("ATMOS_DATA", REPO.parent / "shared" / "data")))
    p.add_argument("--only", nargs="+", choices=sorted(VARIANTS), help="variants to run (default: all)")
    p.add_argument("--score", type=Path, metavar="CHECKPOINT", help="only score this checkpoint (under --name)")
    p.add_argument("--name", default="default")
    p.add_argument("--table", action="store_true", help="print the accumulated results as markdown")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--inits", default="2019-12-20/2020-01-10/12h",
                   help="validation initial times (a model with 2 history steps needs 2019-12-20T06 or later)")
    p.add_argument("--steps-per-epoch", type=int, default=80,
                   help="optimizer steps per epoch in both stages (default 80 = the default recipe; 40 halves the budget)")
    p.add_argument("--stage3", action="store_true",
                   help="run only stage 3 (24-step) on the finished stage 2 of each --only variant, scored as VARIANT_s3")
    args = p.parse_args(argv)
    STEPS_PER_EPOCH[0] = args.steps_per_epoch
    os.environ.setdefault("ATMOS_DATA", str(args.data))
    import torch

    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    res_path = args.out / "ablation.json"
    results = json.loads(res_path.read_text()) if res_path.is_file() else {}
    if args.table:
        print(_table(results))
        return 0
    todo = [(args.name, args.score, None)] if args.score else [(v, None, v) for v in (args.only or VARIANTS)]
    for name, ckpt, variant in todo:
        entry: dict = {}
        if variant is not None and args.stage3:
            ckpt, entry["train_s_stage3"] = train_stage3(variant, args.out)
            prev = results.get(variant, {}).get("train_s")
            entry["train_s"] = None if prev is None else prev + entry["train_s_stage3"]
            name = f"{variant}_s3"
        elif variant is not None:
            ckpt, entry["train_s"] = train(variant, args.out)
        entry["checkpoint"] = str(ckpt)
        entry["score"] = score(ckpt, args.data, args.inits)
        entry["inits"] = args.inits
        results = json.loads(res_path.read_text()) if res_path.is_file() else {}
        results[name] = entry
        res_path.write_text(json.dumps(results, indent=1))
        print(name, json.dumps(entry["score"]), flush=True)
    print(_table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
