"""Train the embedded sample model and copy it into ``atmos/sample/``.

The sample model is the small lat-lon ViT of ``configs/vit_speedy.yaml`` trained on
SPEEDY-world 2018 (a *simulated* atmosphere from the SPEEDY-physics GCM run via jcm,
not observations) with atmos's own training code (:func:`atmos.train.fit`), with a
multi-step curriculum (K = 1, 1, 2, 2, 3, 3 steps per epoch, gradients detached between
steps) for long-lead skill. ``atmos rollout`` uses it when no ``--model`` is given.

    ATMOS_DATA=../shared/data python scripts/train_sample_model.py        # ~20-25 min on 2 CPU cores
    python scripts/train_sample_model.py --out /tmp/sample_runs KEY=VALUE ...   # extra config overrides
    python scripts/train_sample_model.py --copy-only /tmp/sample_runs/sample_vit_speedy

The last checkpoint's ``model.safetensors`` and ``checkpoint.json`` (without the
optimizer state) are copied to ``atmos/sample/``; then run ``scripts/make_sample_data.py``
to (re)write the matching initial-condition file.
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
    "model.params.embed_dim=64",
    "model.params.depth=4",
    "optimizer.lr=2.0e-3",
    "schedule.epochs=6",
    "schedule.max_steps_per_epoch=64",
    "schedule.warmup_steps=30",
    "schedule.min_lr=1.0e-5",
    "multistep.steps=1",
    "multistep.epoch_increment=1",
    "multistep.increment_every=2",
    "multistep.maximum=3",
    "multistep.gradient=detached",
    "validation.samples=16",
    "validation.steps=4",
    "validation.every_epochs=2",
    "device=cpu",
    "seed=0",
]


def copy_checkpoint(run_dir: Path, dest: Path = SAMPLE_DIR) -> Path:
    """Copy the run's latest checkpoint (weights + metadata, no optimizer state) into ``dest``."""
    from atmos.train.checkpoint import find_checkpoint

    ckpt = find_checkpoint(run_dir)
    if ckpt is None:
        raise SystemExit(f"no checkpoint under {run_dir}")
    dest.mkdir(parents=True, exist_ok=True)
    meta = json.loads((ckpt / "checkpoint.json").read_text())
    meta["files"] = {"model": "model.safetensors"}
    meta["sample"] = {
        "name": "atmos-sample-vit-speedy",
        "description": (
            "small lat-lon ViT trained on SPEEDY-world 2018, a simulated atmosphere (SPEEDY physics GCM via "
            "jcm), not observations; for demonstrations and tests only"
        ),
        "trained_by": "scripts/train_sample_model.py",
        "source_checkpoint": ckpt.name,
    }
    shutil.copyfile(ckpt / "model.safetensors", dest / "model.safetensors.tmp")
    os.replace(dest / "model.safetensors.tmp", dest / "model.safetensors")
    (dest / "checkpoint.json.tmp").write_text(json.dumps(meta, indent=1))
    os.replace(dest / "checkpoint.json.tmp", dest / "checkpoint.json")
    return ckpt


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="extra config overrides")
    p.add_argument("--out", type=Path, default=Path(os.environ.get("SAMPLE_RUNS", "runs")), help="output.dir")
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    p.add_argument("--copy-only", type=Path, metavar="RUN_DIR", help="only copy RUN_DIR's checkpoint")
    args = p.parse_args(argv)
    if args.copy_only:
        ck = copy_checkpoint(args.copy_only)
        print(f"copied {ck} -> {SAMPLE_DIR}")
        return 0
    if "ATMOS_DATA" not in os.environ and (REPO.parent / "shared" / "data").is_dir():
        os.environ["ATMOS_DATA"] = str(REPO.parent / "shared" / "data")

    import torch

    torch.set_num_threads(args.threads)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from atmos.train import fit, load_config

    cfg = load_config(BASE_CONFIG, [*SAMPLE_OVERRIDES, f"output.dir={args.out}", *args.overrides])
    t0 = time.perf_counter()
    res = fit(cfg)
    wall = time.perf_counter() - t0
    print(f"{res.status}: {res.global_step} optimizer steps in {wall / 60:.1f} min; run dir {res.run_dir}")
    if res.status != "finished":
        return 1
    ck = copy_checkpoint(res.run_dir)
    size = sum((SAMPLE_DIR / f).stat().st_size for f in ("model.safetensors", "checkpoint.json")) / 2**20
    print(f"copied {ck} -> {SAMPLE_DIR} ({size:.2f} MiB)")
    val = res.validation
    for c in ("geopotential_500", "temperature_850", "2m_temperature"):
        if val and c in val.get("rmse", {}):
            pairs = ", ".join(
                f"{h:g}h {m:.4g}/{q:.4g}"
                for h, m, q in zip(val["lead_hours"], val["rmse"][c], val["persistence_rmse"][c])
            )
            print(f"  {c}: RMSE model/persistence {pairs}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
