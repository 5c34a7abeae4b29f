"""Rollout benchmark: marginal cost per model step against the bare model forward, on CPU.

Uses the embedded sample model (a small ViT on 64x32, trained on SPEEDY-world, a simulated
atmosphere) and its embedded initial conditions, in one process, on ``--threads`` threads
(default 1), in interleaved rounds (medians over rounds; the load average is printed, since
a busy machine shifts every figure).

* Marginal cost: ``atmos.rollout.rollout`` streaming to a zarr store, ``(wall(long) -
  wall(short)) / (extra model steps)`` (``--short`` / ``--long`` days, 4 steps of 6 h per day),
  against the peer "bare forward": the model alone, ``model(inputs, forcings, statics, None)``
  under ``torch.inference_mode`` on the same tensors, in a plain loop (no data opening, no
  encoding, no forcings, no decoding, no writing). The ratio is the issue-13 figure (goal <= 1.15).
* Fixed cost per call: the intercept of the fit of wall time against model steps.
* Linearity: wall time against lead time (``--days``, default 10, 40, 160 days) and against
  ensemble members (``--members``, default 1, 4, 16, at ``--member-days``): least-squares slope,
  intercept and the largest deviation of a point from the line.
* ``--sync`` adds the same marginal cost with the writes made in the calling thread
  (``run_plan(threaded_writes=False)``); ``--memory`` the peak-RSS section (subprocesses):
  streaming to zarr vs keeping the forecast in memory, at 10 and 40 days.

    python benchmarks/bench_rollout.py                        # about 2-4 minutes (1 thread)
    python benchmarks/bench_rollout.py --rounds 5 --sync --dir /var/tmp
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
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
STEPS_PER_DAY = 4
INIT = "2020-01-01"


def _load() -> str:
    return "load average " + " ".join(f"{x:.2f}" for x in os.getloadavg())


class Bench:
    """The sample Forecaster, its data and the bare-forward tensors, loaded once."""

    def __init__(self, threads: int, folder: str | None) -> None:
        import torch

        torch.set_num_threads(threads)
        from atmos.io.open import open_dataset
        from atmos.rollout import Forecaster
        from atmos.rollout.context import forcings_at
        from atmos.rollout.sample import sample_data_path

        self.torch = torch
        self.fc = Forecaster.from_checkpoint(None)
        self.data = sample_data_path()
        self.folder = tempfile.mkdtemp(prefix="bench_rollout_", dir=folder)
        self.runs = 0
        st = self.fc.encode(open_dataset(self.data), INIT)
        forc = forcings_at(st.context, st.time, self.fc.history, self.fc.step, 1, self.fc.device)
        self.tensors = (st.history, forc, st.context.statics)

    def rollout(self, days: float, members: int | None = None, threaded: bool = True) -> tuple[float, float]:
        """Wall and CPU seconds of one ``rollout()`` call to a new zarr store (setup included)."""
        import shutil

        from atmos.rollout.plan import plan_rollout
        from atmos.rollout.run import run_plan

        self.runs += 1
        out = Path(self.folder) / f"f{self.runs}.zarr"
        t0, c0 = time.perf_counter(), time.process_time()
        # rollout() is plan_rollout + run_plan; run_plan also takes threaded_writes (--sync)
        plan = plan_rollout(self.fc, self.data, INIT, days, members=members, perturb=0.05 if members else 0.0)
        if threaded:  # (older atmos versions have no threaded_writes; the default is threaded)
            run_plan(plan, out=out)
        else:
            run_plan(plan, out=out, threaded_writes=False)
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        shutil.rmtree(out)
        return wall, cpu

    def bare(self, steps: int, members: int = 1) -> tuple[float, float]:
        """Wall and CPU seconds of ``steps`` bare model forwards (batch ``members``)."""
        hist, forc, stat = self.tensors
        hist = hist.expand(members, *hist.shape[1:]).contiguous()
        forc = None if forc is None else forc.expand(members, *forc.shape[1:])
        model = self.fc.model
        with self.torch.inference_mode():
            model(hist, forc, stat, None)  # warm
            t0, c0 = time.perf_counter(), time.process_time()
            for _ in range(steps):
                model(hist, forc, stat, None)
            return time.perf_counter() - t0, time.process_time() - c0


def _fit(xs: list[float], ys: list[float]) -> tuple[float, float, float]:
    """Least squares ``y = a + b x``: ``(a, b, largest |y - fit| / fit)``."""
    n = len(xs)
    mx, my = sum(xs) / n, sum(ys) / n
    b = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sum((x - mx) ** 2 for x in xs)
    a = my - b * mx
    dev = max(abs(y - (a + b * x)) / (a + b * x) for x, y in zip(xs, ys, strict=True))
    return a, b, dev


def _median(rows: list[tuple[float, float]], k: int = 0) -> float:
    return statistics.median(r[k] for r in rows)


def timing(args: argparse.Namespace) -> None:
    b = Bench(args.threads, args.dir)
    short, long_ = round(args.short * STEPS_PER_DAY), round(args.long * STEPS_PER_DAY)
    days = [float(d) for d in args.days.split(",")]
    members = [int(m) for m in args.members.split(",")]
    b.rollout(1)  # warm-up (imports, first calls, caches)
    b.rollout(1, members=2)
    res: dict[tuple, list[tuple[float, float]]] = {}
    load = [os.getloadavg()[0]]
    for r in range(args.rounds):
        for m in (1, *[m for m in members if m > 1]):
            res.setdefault(("bare", m), []).append(b.bare(long_, m))
        res.setdefault(("short", True), []).append(b.rollout(args.short))
        res.setdefault(("long", True), []).append(b.rollout(args.long))
        if args.sync:
            res.setdefault(("short", False), []).append(b.rollout(args.short, threaded=False))
            res.setdefault(("long", False), []).append(b.rollout(args.long, threaded=False))
        for d in days:
            res.setdefault(("days", d), []).append(b.rollout(d))
        for m in members:
            res.setdefault(("members", m), []).append(b.rollout(args.member_days, members=m if m > 1 else None))
        load.append(os.getloadavg()[0])
        print(f"  round {r + 1}/{args.rounds} done ({_load()})", file=sys.stderr)
    bare = _median(res["bare", 1]) / long_
    bare_cpu = _median(res["bare", 1], 1) / long_
    extra = long_ - short
    print(f"\n-- marginal cost per model step ({args.long:g} d - {args.short:g} d = {extra} steps; medians of "
          f"{args.rounds} interleaved rounds; 1-min load during the rounds {min(load):.2f}..{max(load):.2f})")
    print(f"  peer: bare model forward        : {bare * 1e3:7.2f} ms/step wall ({bare_cpu * 1e3:.2f} ms CPU)")
    for threaded in (True, False) if args.sync else (True,):
        rows = [(lg[0] - sh[0], lg[1] - sh[1]) for sh, lg in zip(res["short", threaded], res["long", threaded],
                                                                   strict=True)]
        marg, marg_cpu = _median(rows) / extra, _median(rows, 1) / extra
        fixed = _median(res["short", threaded]) - short * marg
        label = "rollout -> zarr" + ("" if threaded else " (sync writes)")
        print(f"  {label:32s}: {marg * 1e3:7.2f} ms/step wall ({marg_cpu * 1e3:.2f} ms CPU, all threads); "
              f"fixed cost {fixed * 1e3:.0f} ms per call")
        print(f"  {'ratio marginal / bare forward':32s}: {marg / bare:7.2f}x wall, {marg_cpu / bare_cpu:.2f}x CPU  "
              f"(issue 13 goal: <= 1.15x wall)")
    steps = [d * STEPS_PER_DAY for d in days]
    walls = [_median(res["days", d]) for d in days]
    a, s, dev = _fit(steps, walls)
    print(f"\n-- wall time vs lead time ({', '.join(f'{d:g}' for d in days)} days; medians)")
    for d, w in zip(days, walls, strict=True):
        print(f"  {d:6g} days ({d * STEPS_PER_DAY:5.0f} steps): {w:8.3f} s  ({w / (d * STEPS_PER_DAY) * 1e3:.2f} ms/step "
              "in all)")
    print(f"  fit: {s * 1e3:.2f} ms per step + {a * 1e3:.0f} ms fixed; largest deviation from the line "
          f"{dev * 100:.1f}%  (slope / bare forward {s / bare:.2f}x)")
    walls = [_median(res["members", m]) for m in members]
    a, s, dev = _fit([float(m) for m in members], walls)
    print(f"\n-- wall time vs members (1 = deterministic; {', '.join(map(str, members))} members, {args.member_days:g} days; medians)")
    for m, w in zip(members, walls, strict=True):
        bm = _median(res["bare", m]) / long_
        print(f"  {m:3d} members: {w:8.3f} s   (bare forward at {m} members: {bm * 1e3:.2f} ms/step)")
    print(f"  fit: {s * 1e3:.0f} ms per member + {a * 1e3:.0f} ms; largest deviation from the line {dev * 100:.1f}%")
    import shutil

    shutil.rmtree(b.folder, ignore_errors=True)
    print(f"\n{_load()} at the end")


# -- memory (one subprocess per measurement, so that each peak RSS is its own) ------------------------
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
        rollout(fc, data, INIT, steps=1, members=ens, perturb=pert)  # warm-up (imports, first calls)
        base = _rss_mb()
        t0 = time.perf_counter()
        out = None if mode == "memory" else Path(tmp) / "f.zarr"
        with _PeakSampler() as ps:
            ds = rollout(fc, data, INIT, days, members=ens, perturb=pert, out=out)
            if mode == "memory":
                assert np.isfinite(ds["geopotential"].values).all()
        wall = time.perf_counter() - t0
    return {"mode": mode, "days": days, "members": members, "wall_s": wall, "per_day_s": wall / days,
            "rss_growth_mb": ps.peak - base, "rss_base_mb": base,
            "maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def run_child(mode: str, days: float, members: int, threads: int) -> dict:
    env = {**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    cmd = [sys.executable, __file__, "--child", mode, str(days), str(members), str(threads)]
    res = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    if res.returncode != 0:
        raise SystemExit(f"child {cmd} failed:\n{res.stderr[-3000:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def memory(m: int, threads: int) -> None:
    print(f"\n-- memory vs lead time ({m}-member ensemble; peak RSS growth during the rollout)")
    rows = {}
    for mode in ("stream", "memory"):
        for days in (10, 40):
            rows[mode, days] = x = run_child(mode, days, m, threads)
            print(f"  {mode:6s} {days:3d} days: +{x['rss_growth_mb']:7.1f} MB (base {x['rss_base_mb']:.0f} MB, "
                  f"peak {x['maxrss_mb']:.0f} MB), {x['per_day_s'] * 1e3:.0f} ms per forecast day")
    s10, s40, m10, m40 = rows["stream", 10], rows["stream", 40], rows["memory", 10], rows["memory", 40]
    print(f"  streaming: peak RSS at 40 days / at 10 days = {s40['maxrss_mb'] / s10['maxrss_mb']:.3f} "
          f"(growth {s10['rss_growth_mb']:.1f} -> {s40['rss_growth_mb']:.1f} MB)")
    print(f"  peer in-memory: peak RSS at 40 days / at 10 days = {m40['maxrss_mb'] / m10['maxrss_mb']:.3f} "
          f"(growth {m10['rss_growth_mb']:.1f} -> {m40['rss_growth_mb']:.1f} MB)")
    print(f"  at 40 days: streaming peak / in-memory peak = {s40['maxrss_mb'] / m40['maxrss_mb']:.3f}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--short", type=float, default=2.0, help="days of the short rollout (marginal cost)")
    p.add_argument("--long", type=float, default=8.0, help="days of the long rollout (marginal cost)")
    p.add_argument("--days", default="10,40,160", help="lead times of the linearity fit (days)")
    p.add_argument("--members", default="1,4,16", help="ensemble sizes of the linearity fit")
    p.add_argument("--member-days", type=float, default=5.0, help="forecast length of the member runs")
    p.add_argument("--dir", default=None, help="folder of the stores (default: the system's temporary folder)")
    p.add_argument("--sync", action="store_true", help="also time writes in the calling thread")
    p.add_argument("--memory", type=int, default=0, metavar="M", help="also the peak-RSS section, M members")
    p.add_argument("--child", nargs=4, metavar=("MODE", "DAYS", "MEMBERS", "THREADS"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        mode, days, members, threads = args.child
        print(json.dumps(child(mode, float(days), int(members), int(threads))))
        return 0
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    import torch

    print(f"atmos rollout benchmark: sample model (ViT on 64x32, SPEEDY-world: a simulated atmosphere), CPU, "
          f"torch {torch.__version__}, {args.threads} thread(s), {os.cpu_count()} cores visible, stores in "
          f"{args.dir or tempfile.gettempdir()}; {_load()}")
    timing(args)
    if args.memory:
        memory(args.memory, args.threads)
    return 0


if __name__ == "__main__":
    sys.exit(main())
