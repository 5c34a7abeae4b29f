"""Train the embedded sample model and copy it into ``atmos/sample/``.

The sample model is the small lat-lon ViT of ``configs/vit_speedy.yaml`` (embed 96, depth 4,
464k parameters, 14 channels: z/t/u/v at 250/500/850 hPa, t2m, mslp; forcings TOA insolation and
the day-of-year encoding (cos/sin); land-sea mask and orography) trained on SPEEDY-world 2018 (a
*simulated* atmosphere from the SPEEDY-physics GCM run via jcm, not observations) with atmos's own
training code (:func:`atmos.train.fit`). It predicts **anomalies from a seasonal cycle**
(``data.seasonal_harmonics: 3``: per time of day, a mean plus 3 annual harmonics per channel and grid
point, fit on 2018 and shipped as ``seasonal.safetensors``, :mod:`atmos.io.seasonal`); measured
(docs/ablation_issue10.md) this is what holds the 1-year climate (worst monthly t2m error 3.1 K with
full states, 0.35 K with anomalies) and it also lowers the day-5 RMSE. Three stages:

1. 10 epochs x 80 steps, batch 8, multi-step curriculum K = 1, 1, 2, 2, 3, 3, 4, 4, 4, 4 (gradients
   detached between steps), Gaussian noise of 0.05 std (normalized units) on the first input of
   every rollout (``multistep.input_noise``), AdamW lr 2e-3 with warm-up and cosine decay;
2. continuing that run (``fit(..., resume=stage-1 run)``): 3 epochs x 80 steps of 12-step
   (3-day) rollouts, batch 4, for long-lead skill;
3. continuing again: 2 epochs x 80 steps of 24-step (6-day) rollouts, batch 2.

Measured training wall time on this 2-core machine with 3-5 other jobs running: 46.6 min
(22.3 + 13.2 + 11.1 min); not measured on a quiet machine.

``atmos rollout`` uses it when no ``--model`` is given.

    python scripts/train_sample_model.py --out /tmp/sample_runs        # 46.6 min measured on a loaded machine, 1 thread
    python scripts/train_sample_model.py --out /tmp/sample_runs --stage 2   # redo only the fine-tuning
    python scripts/train_sample_model.py --copy-only /tmp/sample_runs/sample_vit_speedy_ft
    python scripts/train_sample_model.py --evaluate                     # score the embedded model

After training, the last checkpoint's ``model.safetensors``, ``seasonal.safetensors`` and ``checkpoint.json``
(without the optimizer state) are copied to ``atmos/sample/`` and the model is scored
against persistence on the SPEEDY-world validation month (10-day forecasts every 12 h);
then run ``scripts/make_sample_data.py`` to (re)write the matching initial-condition file.
``ATMOS_DATA`` defaults to ``../shared/data`` (the SPEEDY-world cubes).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SAMPLE_DIR = REPO / "atmos" / "sample"
BASE_CONFIG = REPO / "configs" / "vit_speedy.yaml"
RUN_NAME = "sample_vit_speedy"

#: Overrides of configs/vit_speedy.yaml that make the sample model.
SAMPLE_OVERRIDES = [
    f"output.name={RUN_NAME}",
    "output.overwrite=true",
    "output.progress=false",
    "output.keep_checkpoints=1",
    "model.params.embed_dim=96",
    "model.params.depth=4",
    "data.forcings=[toa_incident_solar_radiation,cos_day_of_year,sin_day_of_year]",
    "data.seasonal_harmonics=3",
    "optimizer.lr=2.0e-3",
    "schedule.epochs=10",
    "schedule.max_steps_per_epoch=80",
    "schedule.warmup_steps=30",
    "schedule.min_lr=1.0e-5",
    "multistep.steps=1",
    "multistep.epoch_increment=1",
    "multistep.increment_every=2",
    "multistep.maximum=4",
    "multistep.gradient=detached",
    "multistep.input_noise=0.05",
    "validation.samples=16",
    "validation.steps=4",
    "validation.every_epochs=2",
    "device=cpu",
    "seed=0",
]

#: Stage 2: continue the stage-1 run (weights, optimizer and schedule state, via ``fit(resume=...)``)
#: for three more epochs of 12-step rollouts (3 days at 6 h), batch 4, gradients detached between
#: steps. The cosine schedule is recomputed for 13 epochs of 80 steps, so the learning rate restarts
#: where step 800 of the new 1040 lies on it and decays to 1e-5.
FINETUNE_NAME = f"{RUN_NAME}_ft"
FINETUNE_OVERRIDES = [
    f"output.name={FINETUNE_NAME}",
    "schedule.epochs=13",
    "multistep.steps=12",
    "multistep.maximum=12",
    "multistep.epoch_increment=0",
    "data.batch_size=4",
    "validation.every_epochs=1",
]


#: Stage 3: continue stage 2's run for two more epochs of 24-step (6-day) rollouts, batch 2 (the
#: model meets its own errors over longer horizons; this is what holds the 1-year climate).
STAGE3_NAME = f"{RUN_NAME}_s3"
STAGE3_OVERRIDES = [
    *FINETUNE_OVERRIDES,
    f"output.name={STAGE3_NAME}",
    "schedule.epochs=15",
    "multistep.steps=24",
    "multistep.maximum=24",
    "data.batch_size=2",
]


#: The HEALPix U-Net-GRU recipe (``--arch unet_gru``): configs/unet_gru_speedy.yaml (nside 16, history 2)
#: with channels [48, 24, 12] and the same three stages, forcings, noise and optimizer as the ViT's.
UNET_CONFIG = REPO / "configs" / "unet_gru_speedy.yaml"
UNET_RUN_NAME = "sample_unet_gru_speedy"
UNET_OVERRIDES = [
    *(o.replace(RUN_NAME, UNET_RUN_NAME) for o in SAMPLE_OVERRIDES if o.split("=")[0] not in
      ("model.params.embed_dim", "model.params.depth")),
    "model.params.channels=[48,24,12]",
]

#: arch -> (base config, stage-1 overrides, run name, sample name, description)
RECIPES = {
    "vit": (BASE_CONFIG, SAMPLE_OVERRIDES, RUN_NAME, "atmos-sample-vit-speedy", "small lat-lon ViT"),
    "unet_gru": (UNET_CONFIG, UNET_OVERRIDES, UNET_RUN_NAME, "atmos-sample-unet-gru-speedy",
                 "small HEALPix (nside 16) U-Net-GRU"),
}


def stage_overrides(arch: str, stage: int) -> list[str]:
    """The overrides of stage 2 or 3 for ``arch`` (run names follow the recipe's)."""
    run = RECIPES[arch][2]
    ov = FINETUNE_OVERRIDES if stage == 2 else STAGE3_OVERRIDES
    return [o.replace(RUN_NAME, run) for o in ov]


def copy_checkpoint(run_dir: Path, dest: Path = SAMPLE_DIR, arch: str | None = None) -> Path:
    """Copy the run's latest checkpoint (weights + metadata, no optimizer state) into ``dest``."""
    from atmos.train.checkpoint import find_checkpoint

    ckpt = find_checkpoint(run_dir)
    if ckpt is None:
        raise SystemExit(f"no checkpoint under {run_dir}")
    dest.mkdir(parents=True, exist_ok=True)
    meta = json.loads((ckpt / "checkpoint.json").read_text())
    extra = [f for role, f in meta.get("files", {}).items() if role not in ("model", "training_state")]
    meta["files"] = {"model": "model.safetensors",
                     **{r: f for r, f in meta.get("files", {}).items() if r not in ("model", "training_state")}}
    arch = arch or meta["model"]["name"]
    _, _, _, name, what = RECIPES[arch]
    meta["sample"] = {
        "name": name,
        "description": (
            f"{what} trained on SPEEDY-world 2018, a simulated atmosphere (SPEEDY physics GCM via "
            "jcm), not observations; for demonstrations and tests only"
        ),
        "trained_by": "scripts/train_sample_model.py",
        "source_checkpoint": ckpt.name,
    }
    shutil.copyfile(ckpt / "model.safetensors", dest / "model.safetensors.tmp")
    os.replace(dest / "model.safetensors.tmp", dest / "model.safetensors")
    for f in extra:  # e.g. seasonal.safetensors (data.seasonal_harmonics)
        shutil.copyfile(ckpt / f, dest / f"{f}.tmp")
        os.replace(dest / f"{f}.tmp", dest / f)
    for old in dest.glob("*.safetensors"):
        if old.name not in meta["files"].values():
            old.unlink()
    (dest / "checkpoint.json.tmp").write_text(json.dumps(meta, indent=1))
    os.replace(dest / "checkpoint.json.tmp", dest / "checkpoint.json")
    return ckpt


HEADLINE = {
    "geopotential_500": ("geopotential", 500),
    "temperature_850": ("temperature", 850),
    "2m_temperature": ("2m_temperature", None),
}
REPORT_LEADS_H = (6, 24, 72, 120, 240)


def evaluate(model_dir: Path | None, data: str, inits: str, days: float = 10.0) -> dict:
    """RMSE of the model and of persistence per lead on the validation cube (WeatherBench2 RMSE:
    square root of the init-mean of the area-weighted MSE). Returns ``{channel: (leads_h, rmse, persistence)}``."""
    import numpy as np

    from atmos.io.coords import area_weights
    from atmos.io.open import open_dataset
    from atmos.rollout import rollout

    truth = open_dataset(data)
    fc = rollout(model_dir, truth, inits, days)
    w = area_weights(truth)
    leads = fc.prediction_timedelta.values
    out = {}
    for name, (var, lev) in HEADLINE.items():
        f = fc[var] if lev is None else fc[var].sel(level=lev)
        t = truth[var] if lev is None else truth[var].sel(level=lev)
        t = t.load()
        valid = fc.valid_time
        obs = t.sel(time=valid.values.ravel()).values.reshape(f.shape)
        pers = np.broadcast_to(t.sel(time=fc.time.values).values[:, None], f.shape)
        wv = w.values / w.values.sum()
        mse_m = ((f.values - obs) ** 2 * wv).sum((-2, -1)).mean(0)
        mse_p = ((pers - obs) ** 2 * wv).sum((-2, -1)).mean(0)
        out[name] = (leads / np.timedelta64(1, "h"), np.sqrt(mse_m), np.sqrt(mse_p))
    return out


def print_evaluation(scores: dict) -> bool:
    ok = True
    print("RMSE on SPEEDY-world validation (a simulated atmosphere, not observations): model / persistence")
    for name, (h, m, p) in scores.items():
        beats = bool((m[1:] < p[1:]).all())
        ok &= beats
        cells = "  ".join(
            f"{int(x)}h {m[list(h).index(x)]:.4g}/{p[list(h).index(x)]:.4g}"
            for x in REPORT_LEADS_H
            if x in list(h)
        )
        worst = float((m[1:] / p[1:]).max())
        print(f"  {name:17s} {cells}   beats persistence at every lead: {beats} (worst ratio {worst:.3f})")
    return ok


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="extra config overrides")
    p.add_argument(
        "--out",
        type=Path,
        default=Path(os.environ.get("SAMPLE_RUNS", "runs")),
        help="output.dir of the training runs (default runs/)",
    )
    p.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch CPU threads (default 1: on a small shared machine more threads are much slower)",
    )
    p.add_argument("--copy-only", type=Path, metavar="RUN_DIR", help="only copy RUN_DIR's checkpoint")
    p.add_argument(
        "--evaluate",
        nargs="?",
        const="sample",
        metavar="CHECKPOINT",
        help="only score a checkpoint (default: the embedded sample) against persistence",
    )
    p.add_argument("--arch", choices=sorted(RECIPES), default="vit",
                   help="backbone of the recipe (default vit, the embedded default: it holds the 1-year climate "
                   "better; unet_gru forecasts better to day 10, see docs/ablation_issue10.md)")
    p.add_argument(
        "--stage",
        choices=["all", "1", "2", "3"],
        default="all",
        help="1: the curriculum run; 2: 12-step fine-tuning continuing stage 1's run; 3: 24-step fine-tuning "
        "continuing stage 2's (default: all three)",
    )
    p.add_argument(
        "--eval-inits",
        default="2019-12-20/2020-01-10/12h",
        help="initial times of the evaluation forecasts (10 days each)",
    )
    args = p.parse_args(argv)
    if args.copy_only:
        ck = copy_checkpoint(args.copy_only)
        print(f"copied {ck} -> {SAMPLE_DIR}")
        return 0
    if "ATMOS_DATA" not in os.environ and (REPO.parent / "shared" / "data").is_dir():
        os.environ["ATMOS_DATA"] = str(REPO.parent / "shared" / "data")
    if args.evaluate:
        import torch

        torch.set_num_threads(args.threads)
        model = None if args.evaluate == "sample" else Path(args.evaluate)
        ok = print_evaluation(evaluate(model, "speedy-world-val", args.eval_inits))
        return 0 if ok else 1

    import torch

    torch.set_num_threads(args.threads)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from atmos.train import fit, load_config

    config, stage1, run_name, _, _ = RECIPES[args.arch]
    base = [*stage1, f"output.dir={args.out}", *args.overrides]
    t0 = time.perf_counter()
    if args.stage in ("all", "1"):
        res = fit(load_config(config, base))
        print(
            f"stage 1 {res.status}: {res.global_step} optimizer steps, {(time.perf_counter() - t0) / 60:.1f} min"
        )
        if res.status != "finished":
            return 1
    if args.stage in ("all", "2"):
        res = fit(load_config(config, [*base, *stage_overrides(args.arch, 2)]), resume=args.out / run_name)
        print(
            f"stage 2 {res.status}: {res.global_step} optimizer steps, {(time.perf_counter() - t0) / 60:.1f} min"
        )
        if res.status != "finished":
            return 1
    if args.stage in ("all", "3"):
        res = fit(load_config(config, [*base, *stage_overrides(args.arch, 3)]), resume=args.out / f"{run_name}_ft")
        print(
            f"stage 3 {res.status}: {res.global_step} optimizer steps, {(time.perf_counter() - t0) / 60:.1f} min"
        )
        if res.status != "finished":
            return 1
    wall = time.perf_counter() - t0
    print(f"training wall time {wall / 60:.1f} min; run dir {res.run_dir}")
    ck = copy_checkpoint(res.run_dir, arch=args.arch)
    size = sum(f.stat().st_size for f in SAMPLE_DIR.iterdir() if f.suffix in (".safetensors", ".json")) / 2**20
    print(f"copied {ck} -> {SAMPLE_DIR} ({size:.2f} MiB)")
    from atmos.rollout.validate import write_scorecard

    print(f"wrote the known-answer scorecard {write_scorecard()} (run scripts/make_sample_data.py first if the "
          "model's variables changed, then `atmos validate --write`)")
    ok = print_evaluation(evaluate(None, "speedy-world-val", args.eval_inits))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
