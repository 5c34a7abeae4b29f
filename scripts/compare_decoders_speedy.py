"""Lightweight decoders vs full fine-tuning for new variables on SPEEDY-world (issue 6).

SPEEDY-world is a simulated atmosphere (the SPEEDY-physics GCM), not observations.

The backbone is the embedded sample ViT (``atmos/sample``), which never saw
``total_precipitation_6hr``, ``evaporation`` or ``total_cloud_cover``. Both runs use the
same data (SPEEDY 2018 for training, 2019-12-20..2020-01-20 for validation), the same
decoders, epochs, batch size, optimizer and seed:

* ``decoder``  - backbone frozen, only the decoders are trained (``task: decoder``);
* ``finetune`` - decoders and every backbone weight trained together on the decoder
  loss plus the backbone's own one-step loss (``task: finetune``).

Each run is a separate process (clean allocator state), run one after the other. The
script prints training wall time, peak memory added by training (process RSS sampled
every 5 ms), validation RMSE of each new variable, the backbone's own one-step RMSE
afterwards, and two baselines on the same validation samples: a day-of-year x hour
climatology of 2018 (61-day window, WeatherBench2 style) and persistence of the
variable from the input time.

    ATMOS_DATA=../shared/data python scripts/compare_decoders_speedy.py --epochs 10 --out runs/decoders
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

VARIABLES = ["total_precipitation_6hr", "evaporation", "total_cloud_cover"]


def config(args: argparse.Namespace, task: str) -> dict:
    return {
        "task": task,
        "backbone": args.backbone,
        "data": {"source": "speedy-world", "batch_size": args.batch_size},
        "validation": {"source": "speedy-world-val", "samples": None},
        "decoder": {"variables": VARIABLES, "hidden": args.hidden, "transforms": {"total_precipitation_6hr": "log1p"}},
        "optimizer": {"lr": args.lr, "weight_decay": 0.01, "grad_clip": 1.0},
        "schedule": {"epochs": args.epochs, "warmup_steps": 50},
        "output": {"dir": args.out, "name": task, "overwrite": True, "progress": False},
        "seed": args.seed,
        "device": "cpu",
    }


def run_one(args: argparse.Namespace) -> None:
    import torch

    from atmos.train.config import config_from_dict
    from atmos.train.decoder import fit_decoder

    if args.threads:
        torch.set_num_threads(args.threads)
    res = fit_decoder(config_from_dict(config(args, args.one)))
    out = {
        "task": res.task,
        "train_time_s": res.train_time_s,
        "wall_time_s": res.wall_time_s,
        "steps": res.steps,
        "trainable_parameters": res.trainable_parameters,
        "frozen_parameters": res.frozen_parameters,
        "memory": res.memory,
        "latent_cache": res.latent_cache,
        "validation": res.validation,
        "history": res.history,
    }
    Path(args.out, f"{args.one}.json").write_text(json.dumps(out, indent=1))


def baselines(args: argparse.Namespace) -> dict:
    """Climatology and persistence RMSE of the new variables on the validation windows."""
    import numpy as np

    from atmos.baselines.climatology import climatology_at, compute_climatology
    from atmos.grids.latlon import LatLonGrid
    from atmos.io import open_dataset

    train = open_dataset("speedy-world")[VARIABLES].load()
    val = open_dataset("speedy-world-val")[VARIABLES].load()
    clim = compute_climatology(train, hour_step=6, window=61)
    w = LatLonGrid.from_coords(val["latitude"].values, val["longitude"].values).area_weights()
    times = val["time"].values
    tgt = times[1:]  # every validation window: input at t, target at t + 6 h (history 1)
    out = {}
    for v in VARIABLES:
        y = val[v].sel(time=tgt).values
        c = climatology_at(clim[v], tgt).values
        p = val[v].sel(time=times[:-1]).values
        out[v] = {
            "climatology": float(np.sqrt((((c - y) ** 2) * w).sum((-2, -1)).mean())),
            "persistence": float(np.sqrt((((p - y) ** 2) * w).sum((-2, -1)).mean())),
            "units": str(val[v].attrs.get("units", "")),
        }
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--backbone", default="sample", help="backbone checkpoint (default: the embedded sample ViT)")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--hidden", type=int, nargs="+", default=[256, 128])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--out", default="runs/decoders")
    p.add_argument("--one", choices=["decoder", "finetune"], help=argparse.SUPPRESS)
    args = p.parse_args()
    Path(args.out).mkdir(parents=True, exist_ok=True)
    if args.one:
        run_one(args)
        return
    for task in ("decoder", "finetune"):
        subprocess.run([sys.executable, __file__, *sys.argv[1:], "--one", task], check=True)
    res = {t: json.loads(Path(args.out, f"{t}.json").read_text()) for t in ("decoder", "finetune")}
    base = baselines(args)
    d, f = res["decoder"], res["finetune"]
    lines = ["SPEEDY-world (simulated atmosphere, not observations); validation 2019-12-20..2020-01-20", ""]
    lines.append(f"{'':24s}{'decoders (frozen)':>20s}{'full fine-tuning':>20s}{'ratio':>8s}")
    tt = (d["train_time_s"], f["train_time_s"])
    lines.append(f"{'training time (s)':24s}{tt[0]:20.1f}{tt[1]:20.1f}{tt[0] / tt[1]:8.3f}")
    mem = [r["memory"]["peak_rss_mb"] - r["memory"]["rss_at_start_mb"] for r in (d, f)]
    lines.append(f"{'training memory (MB)':24s}{mem[0]:20.1f}{mem[1]:20.1f}{mem[0] / mem[1]:8.3f}")
    pk = [r["memory"]["peak_rss_mb"] for r in (d, f)]
    lines.append(f"{'peak process RSS (MB)':24s}{pk[0]:20.1f}{pk[1]:20.1f}{pk[0] / pk[1]:8.3f}")
    lc = d.get("latent_cache") or {}
    if lc.get("mode", "none") != "none":  # decoder.latent_cache: built once before the first epoch
        lines.append(f"{'  latent cache (s)':24s}{lc['build_s']:20.1f}{'':20s}  ({lc['mode']}, {lc['mb']:.0f} MB, "
                     "not in the training time)")
    lines.append(f"{'trainable parameters':24s}{d['trainable_parameters']:20d}{f['trainable_parameters']:20d}")
    lines.append("")
    lines.append(f"{'validation RMSE':24s}{'decoders':>14s}{'fine-tuning':>14s}{'climatology':>14s}{'persistence':>14s}")
    for v in VARIABLES:
        lines.append(
            f"{v + ' (' + base[v]['units'] + ')':24s}{d['validation']['rmse'][v]:14.4g}{f['validation']['rmse'][v]:14.4g}"
            f"{base[v]['climatology']:14.4g}{base[v]['persistence']:14.4g}"
        )
    lines.append("")
    lines.append("backbone one-step RMSE after training (decoders: unchanged backbone)")
    for c in ("geopotential_500", "temperature_850", "2m_temperature"):
        lines.append(f"{c:24s}{d['validation']['prognostic_rmse'][c]:14.4g}{f['validation']['prognostic_rmse'][c]:14.4g}")
    text = "\n".join(lines)
    Path(args.out, "summary.txt").write_text(text + "\n")
    Path(args.out, "baselines.json").write_text(json.dumps(base, indent=1))
    print(text)


if __name__ == "__main__":
    main()
