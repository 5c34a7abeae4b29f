"""Benchmark: a decoder epoch on cached latents vs full fine-tuning and vs the uncached decoder epoch.

Standalone script (not a test). Real training runs (:func:`atmos.train.decoder.fit_decoder`)
of the embedded sample ViT (``atmos/sample``) with the decoders of
``configs/decoders_speedy.yaml`` on SPEEDY-world (a simulated atmosphere, not
observations; ``ATMOS_DATA``), one process per run:

* ``finetune``  - ``task: finetune``: decoders and every backbone weight trained (the baseline);
* ``uncached``  - ``task: decoder``, ``decoder.latent_cache: none`` (the backbone runs every step);
* ``memory``    - ``task: decoder``, ``decoder.latent_cache: memory``;
* ``disk``      - ``task: decoder``, ``decoder.latent_cache: disk`` (a fresh run folder: built, not reused).

Each round runs every mode once, in a rotated order (robust to a shared, drifting
machine); ``--rounds`` rounds. Reported (medians over rounds):

* epoch time: wall seconds of one epoch after the first (batches, steps and
  validation; from ``metrics.csv``), and the whole training including the cache build
  divided by the epochs (``amortized``);
* step time: the optimizer steps of one epoch alone (``train_time_s``);
* memory: peak RSS of the process (``ru_maxrss``) and the peak RSS added by training
  (cache build included) over the RSS before it;
* validation RMSE of the new variables: cached vs uncached (same seed; the cache is exact,
  so they agree to float rounding, see ``tests/train/test_decoder_cache.py``).

Goals (issue 13): decoder epoch <= 0.3x a fine-tuning epoch, memory <= 0.65x, same
validation RMSE. ``os.getloadavg()`` is printed beside the ratios.

Usage::

    ATMOS_DATA=../shared/data PYTHONPATH=. python benchmarks/bench_decoder_cache.py \\
        [--period 2018-01-01 2018-01-31T18] [--epochs 3] [--rounds 3] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile

VARIABLES = ["total_precipitation_6hr", "evaporation", "total_cloud_cover"]
MODES = ("finetune", "uncached", "memory", "disk")


def config(args: argparse.Namespace, mode: str, out: str) -> dict:
    return {
        "task": "finetune" if mode == "finetune" else "decoder",
        "backbone": "sample",
        "data": {"source": "speedy-world", "period": list(args.period), "batch_size": args.batch_size},
        "validation": {"source": "speedy-world-val", "samples": args.val_samples},
        "decoder": {"variables": VARIABLES, "hidden": args.hidden, "transforms": {"total_precipitation_6hr": "log1p"},
                    "latent_cache": {"finetune": "auto", "uncached": "none"}.get(mode, mode)},
        "optimizer": {"lr": 1e-3, "weight_decay": 0.01, "grad_clip": 1.0},
        "schedule": {"epochs": args.epochs, "warmup_steps": 5},
        "output": {"dir": out, "name": mode, "overwrite": True, "progress": False},
        "seed": 0,
        "device": "cpu",
    }


def child(args: argparse.Namespace) -> None:
    import torch

    from atmos.train.config import config_from_dict
    from atmos.train.decoder import fit_decoder

    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as out:
        res = fit_decoder(config_from_dict(config(args, args.child, out)), progress=False)
    secs = [h["seconds"] for h in res.history]
    epoch_s = [b - a for a, b in zip(secs, secs[1:], strict=False)]
    tts = [h["train_time_s"] for h in res.history]
    steps_s = [b - a for a, b in zip(tts, tts[1:], strict=False)]
    mem = res.memory
    print(json.dumps({
        "epoch_s": epoch_s,  # epochs 2.. (wall: batches, steps, validation)
        "steps_s": steps_s,  # epochs 2..: the optimizer steps alone (forward, backward, AdamW)
        "first_epoch_s": secs[0],
        "amortized_s": (secs[-1] + res.latent_cache.get("build_s", 0.0)) / len(secs),
        "cache": res.latent_cache,
        "added_mb": mem["peak_rss_mb"] - mem["rss_at_start_mb"],
        "maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "rmse": res.validation["rmse"],
        "steps": res.steps,
    }))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--period", nargs=2, default=["2018-01-01", "2018-01-31T18"])
    p.add_argument("--val-samples", type=int, default=32)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--hidden", type=int, nargs="+", default=[256, 128])
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--modes", nargs="+", default=list(MODES), choices=MODES)
    p.add_argument("--child", choices=MODES, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        child(args)
        return
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "MKL_NUM_THREADS": str(args.threads)}
    runs: dict[str, list[dict]] = {m: [] for m in args.modes}
    for r in range(args.rounds):
        order = args.modes[r % len(args.modes):] + args.modes[: r % len(args.modes)]
        for mode in order:
            out = subprocess.run([sys.executable, __file__, *sys.argv[1:], "--child", mode], check=True,
                                 capture_output=True, text=True, env=env).stdout
            runs[mode].append(json.loads(out.strip().splitlines()[-1]))
        print(f"round {r + 1}/{args.rounds} done, load average {os.getloadavg()}", file=sys.stderr)

    def med(mode: str, key: str) -> float:
        vals = [v for run in runs[mode] for v in (run[key] if isinstance(run[key], list) else [run[key]])]
        return statistics.median(vals)

    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    ref = "finetune" if "finetune" in runs else args.modes[0]
    print(f"sample ViT on SPEEDY-world {args.period[0]}..{args.period[1]} ({runs[ref][0]['steps'] // args.epochs} "
          f"steps of {args.batch_size}/epoch), {args.val_samples} validation windows, decoders {VARIABLES} "
          f"hidden {args.hidden}, {args.epochs} epochs, {args.rounds} interleaved rounds, {args.threads} thread(s)")
    print(f"load average (1, 5, 15 min) at the end: {load}")
    head = f"{'':30s}" + "".join(f"{m:>11s}" for m in args.modes)
    ratios = [m for m in args.modes if m != ref]
    print(head + "".join(f"{m + '/' + ref[:2]:>11s}" for m in ratios) + f"{'goal':>8s}")
    rows = [("epoch time, median (s)", "epoch_s", "<=0.30"), ("epoch incl. cache build (s)", "amortized_s", ""),
            ("optimizer steps / epoch (s)", "steps_s", ""),
            ("training memory added (MB)", "added_mb", "<=0.65"), ("process peak RSS (MB)", "maxrss_mb", "")]
    for label, key, goal in rows:
        vals = {m: med(m, key) for m in args.modes}
        print(f"{label:30s}" + "".join(f"{vals[m]:11.2f}" for m in args.modes)
              + "".join(f"{vals[m] / vals[ref]:11.3f}" for m in ratios) + f"{goal:>8s}")
    if "uncached" in runs:
        u = runs["uncached"]
        for m in ("memory", "disk"):
            if m in runs:
                build = statistics.median(x["cache"]["build_s"] for x in runs[m])
                print(f"epoch time {m} / uncached: {med(m, 'epoch_s') / med('uncached', 'epoch_s'):.3f}   "
                      f"(cache {runs[m][0]['cache']['mb']:.0f} MB, built in {build:.2f} s, load average {load})")
                diff = max(abs(x["rmse"][v] - y["rmse"][v]) / abs(y["rmse"][v])
                           for x, y in zip(runs[m], u, strict=True) for v in VARIABLES)
                print(f"validation RMSE {m} vs uncached: max relative difference {diff:.2e}")
        for m in args.modes:
            print(f"validation RMSE {m:9s} " + ", ".join(f"{v} {runs[m][0]['rmse'][v]:.4g}" for v in VARIABLES))


if __name__ == "__main__":
    main()
