"""Training cost of the CRPS-trained stochastic emulator against the deterministic task (issue 14).

Both runs use atmos's own trainer (``atmos.train.fit``) with the embedded default's stage-1 recipe
(``scripts/train_sample_model.py``: ViT, 2-step rollouts) on SPEEDY-world 2018 (a *simulated*
atmosphere, not observations; January-March only, so without the seasonal cycle, which needs a full
year), validation off, the same number of optimizer steps:

* ``deterministic``: MSE, ``data.batch_size`` windows per step;
* ``crps``: ``data.noise_channels=4``, ``loss.name=crps``, ``loss.members=M``, the same windows per
  step, each rolled out for M members (so M times the model evaluations);
* ``crps, equal samples``: batch / M windows x M members = the deterministic run's samples per step
  (the recipe ``scripts/ensemble_crps.py`` trains).

Each run is a fresh process (``resource.getrusage`` peak RSS is per process); the table gives the
median step time over rounds (first epoch's steps skipped as warm-up), windows/s and peak memory,
and their ratios to the deterministic run, with the load average.

    ATMOS_DATA=../shared/data OMP_NUM_THREADS=1 python benchmarks/bench_crps_training.py [--steps 12] [--rounds 2]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

CHILD = r"""
import json, resource, sys, time
sys.path.insert(0, sys.argv[1])
import torch
torch.set_num_threads(1)
import train_sample_model as tsm
from atmos.train import fit, load_config
over = json.loads(sys.argv[2])
cfg = load_config(tsm.BASE_CONFIG, [*tsm.SAMPLE_OVERRIDES, *over])
res = fit(cfg)
print(json.dumps({"history": res.history, "wall_s": res.wall_time_s,
                  "maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def run(name: str, overrides: list[str], out: Path) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    p = subprocess.run([sys.executable, "-c", CHILD, str(REPO / "scripts"), json.dumps(overrides)],
                       capture_output=True, text=True, env=env, cwd=REPO)
    if p.returncode:
        raise SystemExit(f"{name} failed:\n{p.stderr[-3000:]}")
    return json.loads(p.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=12, help="optimizer steps per epoch (2 epochs: 1 warm-up, 1 timed)")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--members", type=int, default=4)
    args = ap.parse_args()
    M, B = args.members, args.batch
    with tempfile.TemporaryDirectory() as tmp:
        common = ["validation.source=null", "schedule.epochs=2", f"schedule.max_steps_per_epoch={args.steps}",
                  "multistep.steps=2", "multistep.maximum=2", "multistep.epoch_increment=0",
                  f"output.dir={tmp}", "output.overwrite=true", 'data.period=["2018-01-01","2018-03-31"]',
                  "data.seasonal_harmonics=0"]
        variants = {
            "deterministic": [f"data.batch_size={B}"],
            f"crps, {M} members, same windows": [f"data.batch_size={B}", "data.noise_channels=4",
                                                 "loss.name=crps", f"loss.members={M}"],
            f"crps, {B // M} windows x {M} members": [f"data.batch_size={max(1, B // M)}", "data.noise_channels=4",
                                                      "loss.name=crps", f"loss.members={M}"],
        }
        res: dict[str, list[dict]] = {k: [] for k in variants}
        for _ in range(args.rounds):
            for k, ov in variants.items():
                res[k].append(run(k, [*common, *ov, f"output.name={abs(hash(k))}"], Path(tmp)))
    print(f"SPEEDY-world (simulated), sample ViT recipe, 2-step rollouts, {args.steps} timed steps, "
          f"{args.rounds} rounds, 1 thread, load {os.getloadavg()[0]:.2f}")
    print("| run | windows/step | s/step | / det. | windows/s | peak RSS MB | / det. |")
    print("|---|---|---|---|---|---|---|")
    ref_t = ref_m = None
    for k, rs in res.items():
        step = statistics.median(r["history"][1]["epoch_time_s"] / args.steps for r in rs)
        mem = statistics.median(r["maxrss_mb"] for r in rs)
        ref_t, ref_m = ref_t or step, ref_m or mem
        wins = B if "same" in k or k == "deterministic" else max(1, B // M)
        print(f"| {k} | {wins} | {step:.3f} | {step / ref_t:.2f} | {wins / step:.1f} | {mem:.0f} | {mem / ref_m:.2f} |")
    print(f"load after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
