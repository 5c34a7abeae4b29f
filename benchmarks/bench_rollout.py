"""Rollout benchmark: wall time per forecast day on CPU, and memory vs lead time.

Uses the embedded sample model (a small ViT trained on SPEEDY-world, a simulated
atmosphere) and its embedded initial conditions. Each measurement runs in a fresh
subprocess so that peak memory (``ru_maxrss``) is its own.

* Time: ``atmos.rollout.rollout`` streaming to a zarr store, per forecast day, vs the
  peer "bare loop" (the same model called in a plain torch loop with precomputed
  inputs: no forcings, no decoding, no writing) measured in the same run.
* Memory: peak RSS growth during the rollout (above the RSS after warm-up) at 10 and
  40 days, streaming to zarr vs the peer "in memory" (``out=None``: the whole forecast
  is kept in RAM), for an ensemble large enough that the forecast itself is big.

    python benchmarks/bench_rollout.py                 # about 2-4 minutes on 2 cores
    python benchmarks/bench_rollout.py --members 8 --threads 1
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


class _PeakSampler:
    """Samples the RSS every 5 ms in a thread; ``peak`` is the maximum seen."""

    def __init__(self) -> None:
        self.peak = _rss_mb()
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, _rss_mb())
            time.sleep(0.005)

    def __enter__(self) -> _PeakSampler:  # noqa: PYI034
        self._t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._t.join()
        self.peak = max(self.peak, _rss_mb())


def child(mode: str, days: float, members: int, threads: int) -> dict:
    import numpy as np
    import torch

    torch.set_num_threads(threads)
    from atmos.rollout import Forecaster, rollout
    from atmos.rollout.sample import sample_data_path

    fc = Forecaster.from_checkpoint(None)
    data = sample_data_path()
    ens = members if members > 1 else None
    pert = 0.05 if ens else 0.0
    with tempfile.TemporaryDirectory() as tmp:
        rollout(fc, data, "2020-01-01", steps=1, members=ens, perturb=pert)  # warm-up (imports, first calls)
        base = _rss_mb()
        t0 = time.perf_counter()
        if mode == "bare":
            state = fc.encode(fc_data(data), "2020-01-01", members=members)
            hist = state.history
            n = round(days * 4)
            forc = torch.zeros(hist.shape[0], 2, len(fc.channels["forcings"]), *hist.shape[3:])
            stat = state.context.statics
            ratio = fc.normalizer.ratio.view(1, -1, 1, 1)
            with torch.no_grad(), _PeakSampler() as ps:
                for _ in range(n):
                    out, _ = fc.model(hist, forc, stat, None)
                    hist = (hist[:, -1] + out * ratio).unsqueeze(1)
            wall = time.perf_counter() - t0
        else:
            out = None if mode == "memory" else Path(tmp) / "f.zarr"
            with _PeakSampler() as ps:
                ds = rollout(fc, data, "2020-01-01", days, members=ens, perturb=pert, out=out)
                if mode == "memory":
                    assert np.isfinite(ds["geopotential"].values).all()
            wall = time.perf_counter() - t0
    return {
        "mode": mode,
        "days": days,
        "members": members,
        "wall_s": wall,
        "per_day_s": wall / days,
        "rss_growth_mb": ps.peak - base,
        "rss_base_mb": base,
        "maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def fc_data(path):
    from atmos.io.open import open_dataset

    return open_dataset(path)


def run_child(mode: str, days: float, members: int, threads: int) -> dict:
    env = {**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    cmd = [sys.executable, __file__, "--child", mode, str(days), str(members), str(threads)]
    res = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    if res.returncode != 0:
        raise SystemExit(f"child {cmd} failed:\n{res.stderr[-3000:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--members", type=int, default=16, help="ensemble size of the memory measurement")
    p.add_argument("--threads", type=int, default=max(1, min(4, os.cpu_count() or 1)))
    p.add_argument("--child", nargs=4, metavar=("MODE", "DAYS", "MEMBERS", "THREADS"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        mode, days, members, threads = args.child
        print(json.dumps(child(mode, float(days), int(members), int(threads))))
        return 0

    import torch

    print(
        f"atmos rollout benchmark: sample model (ViT on 64x32, SPEEDY-world: a simulated atmosphere), "
        f"CPU, torch {torch.__version__}, {args.threads} thread(s), {os.cpu_count()} cores visible"
    )
    print("\n-- wall time per forecast day (deterministic, 4 model steps of 6 h per day)")
    r = run_child("stream", 10, 1, args.threads)
    r40 = run_child("stream", 40, 1, args.threads)
    b = run_child("bare", 10, 1, args.threads)
    marginal = (r40["wall_s"] - r["wall_s"]) / 30.0
    print(
        f"  atmos rollout -> zarr, 10 days : {r['per_day_s'] * 1e3:7.1f} ms per forecast day ({r['wall_s']:.2f} s "
        "in all, setup and store creation included)"
    )
    print(
        f"  atmos rollout -> zarr, 40 days : {r40['per_day_s'] * 1e3:7.1f} ms per forecast day ({r40['wall_s']:.2f} s)"
    )
    print(f"  marginal cost (40 d - 10 d)/30 : {marginal * 1e3:7.1f} ms per forecast day")
    print(f"  peer: bare model loop          : {b['per_day_s'] * 1e3:7.1f} ms per forecast day")
    print(
        f"  ratio rollout / bare loop      : {r['per_day_s'] / b['per_day_s']:.2f}x at 10 days, "
        f"{marginal / b['per_day_s']:.2f}x marginal (forcings, decoding, per-lead zarr writes and progress "
        "attributes included)"
    )

    m = args.members
    print(f"\n-- memory vs lead time ({m}-member ensemble; peak RSS growth during the rollout)")
    rows = {}
    for mode in ("stream", "memory"):
        for days in (10, 40):
            rows[mode, days] = run_child(mode, days, m, args.threads)
            x = rows[mode, days]
            print(
                f"  {mode:6s} {days:3d} days: +{x['rss_growth_mb']:7.1f} MB (base {x['rss_base_mb']:.0f} MB, "
                f"peak {x['maxrss_mb']:.0f} MB), {x['per_day_s'] * 1e3:.0f} ms per forecast day"
            )
    s10, s40 = rows["stream", 10], rows["stream", 40]
    m10, m40 = rows["memory", 10], rows["memory", 40]
    print(
        f"  streaming: peak RSS at 40 days / at 10 days = {s40['maxrss_mb'] / s10['maxrss_mb']:.3f} "
        f"(growth {s10['rss_growth_mb']:.1f} -> {s40['rss_growth_mb']:.1f} MB)"
    )
    print(
        f"  peer in-memory: peak RSS at 40 days / at 10 days = {m40['maxrss_mb'] / m10['maxrss_mb']:.3f} "
        f"(growth {m10['rss_growth_mb']:.1f} -> {m40['rss_growth_mb']:.1f} MB)"
    )
    print(f"  at 40 days: streaming peak / in-memory peak = {s40['maxrss_mb'] / m40['maxrss_mb']:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
