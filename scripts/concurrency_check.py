"""Two `atmos rollout` writers on one --out under every order of events: the store is never mixed.

Runs the embedded sample model on the embedded sample data (no ../shared needed) as real
processes. Writer A forecasts from 2020-01-01, writer B from 2020-01-02, both into the same store.
For each timing the final store must equal, bit for bit and in every variable, one of the two
reference forecasts (written alone beforehand), with the store's ``time`` coordinate naming that
same initial time, and every refused writer must exit 2 with a one-line reason (no traceback).
Then a rollout is stopped with SIGTERM at a random lead and resumed: bit-identical, and the
resumed run's time is compared to the remaining fraction of the leads.

    python scripts/concurrency_check.py [--days 100] [--seed 0]
"""

from __future__ import annotations

import argparse
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import xarray as xr

INITS = {"A": "2020-01-01", "B": "2020-01-02"}


def _cmd(init: str, out: Path, days: int, *extra: str) -> list[str]:
    return [sys.executable, "-m", "atmos.cli.main", "rollout", "--init", init, "--days", str(days),
            "--out", str(out), "--no-progress", *extra]


def _start(who: str, out: Path, days: int, *extra: str) -> subprocess.Popen:
    return subprocess.Popen(_cmd(INITS[who], out, days, *extra), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _wait_leads(out: Path, n: int, timeout: float = 120) -> None:
    from atmos.rollout import read_progress

    end = time.time() + timeout
    while time.time() < end:
        try:
            if read_progress(out)["atmos_completed_steps"] >= n:
                return
        except Exception:  # not created yet
            pass
        time.sleep(0.02)
    raise TimeoutError(f"{out} did not reach {n} leads")


def _finish(p: subprocess.Popen) -> tuple[int, str]:
    code = p.wait(timeout=600)
    return code, p.communicate()[1]


def _which(out: Path, refs: dict[str, xr.Dataset]) -> str:
    """'A' or 'B' when the store is exactly that forecast, else 'MIXED' (or 'NONE' if absent)."""
    if not out.exists():
        return "NONE"
    ds = xr.open_zarr(out)
    for who, ref in refs.items():
        same_time = str(ds.time.values[0])[:10] == INITS[who]
        if same_time and all(np.array_equal(ds[n].values, ref[n].values, equal_nan=True) for n in ref.data_vars):
            return who
    return "MIXED"


def _refused_ok(code: int, err: str) -> bool:
    return code == 2 and "Traceback" not in err and ("already exists" in err or "being written" in err)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--days", type=int, default=100,
                    help="rollout length; long enough that B starts while A still writes (default 100)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    d = args.days
    rng = random.Random(args.seed)
    tmp = Path(tempfile.mkdtemp(prefix="atmos-conc-"))
    refs = {}
    for who in INITS:
        ref = tmp / f"ref_{who}.zarr"
        subprocess.run(_cmd(INITS[who], ref, d), check=True, capture_output=True)
        refs[who] = xr.open_zarr(ref).load()

    rows = []

    def case(name: str, run) -> None:
        out = tmp / f"case{len(rows)}.zarr"
        expect, codes, ok_codes = run(out)
        got = _which(out, refs)
        rows.append((name, got, expect, codes, got == expect and ok_codes))

    def simultaneous(out):
        a, b = _start("A", out, d), _start("B", out, d)
        (ca, ea), (cb, eb) = _finish(a), _finish(b)
        winner = "A" if ca == 0 else "B"
        ok = sorted([ca, cb]) == [0, 2] and _refused_ok(*((cb, eb) if ca == 0 else (ca, ea)))
        return winner, f"A={ca} B={cb}", ok

    def b_during_a(out, extra=()):
        a = _start("A", out, d)
        _wait_leads(out, 5)
        cb, eb = _finish(_start("B", out, d, *extra))
        overlapped = a.poll() is None  # A was still writing when B gave up
        ca, _ = _finish(a)
        ok = ca == 0 and overlapped and _refused_ok(cb, eb) and (not extra or "being written" in eb)
        return "A", f"A={ca} B={cb}", ok

    def b_after_a(out, extra=()):
        ca, _ = _finish(_start("A", out, d))
        cb, eb = _finish(_start("B", out, d, *extra))
        if extra:
            return "B", f"A={ca} B={cb}", ca == 0 and cb == 0
        return "A", f"A={ca} B={cb}", ca == 0 and _refused_ok(cb, eb)

    def b_after_a_killed(out):
        a = _start("A", out, d)
        _wait_leads(out, 5)
        a.send_signal(signal.SIGKILL)  # no clean-up at all: a stale lock and an unfinished store
        a.wait()
        cb, eb = _finish(_start("B", out, d, "--overwrite"))
        return "B", f"A=killed B={cb}", cb == 0

    case("simultaneous start", simultaneous)
    case("B starts while A writes", b_during_a)
    case("B --overwrite while A writes", lambda o: b_during_a(o, ("--overwrite",)))
    case("B after A finished", b_after_a)
    case("B --overwrite after A finished", lambda o: b_after_a(o, ("--overwrite",)))
    case("B --overwrite after A was kill -9", b_after_a_killed)

    print(f"two writers, one store ({d}-day rollouts of the embedded sample model)")
    print(f"{'timing':36s} {'store holds':12s} {'expected':9s} {'exit codes':14s} ok")
    for name, got, expect, codes, ok in rows:
        print(f"{name:36s} {got:12s} {expect:9s} {codes:14s} {'yes' if ok else 'NO'}")

    # SIGTERM at a random lead, then --resume
    from atmos.rollout import read_progress

    n_total = int(read_progress(tmp / "ref_A.zarr")["atmos_total_steps"])
    stop_at = rng.randrange(5, n_total - 5)
    out = tmp / "term.zarr"
    t = time.perf_counter()
    subprocess.run(_cmd(INITS["A"], tmp / "zero.zarr", 0), check=True, capture_output=True)
    t_zero = time.perf_counter() - t  # start-up, model loading, store creation: one lead
    t = time.perf_counter()
    subprocess.run(_cmd(INITS["A"], tmp / "full.zarr", d), check=True, capture_output=True)
    t_full = time.perf_counter() - t
    p = _start("A", out, d)
    _wait_leads(out, stop_at)
    p.send_signal(signal.SIGTERM)
    code, err = _finish(p)
    prog = read_progress(out)
    done = int(prog["atmos_completed_steps"])
    t = time.perf_counter()
    subprocess.run(_cmd(INITS["A"], out, d, "--resume"), check=True, capture_output=True)
    t_resume = time.perf_counter() - t
    same = _which(out, refs) == "A"
    print(f"\nSIGTERM at lead {done} of {n_total}: exit {code}, status {prog['atmos_status']!r}, "
          f"traceback {'yes' if 'Traceback' in err else 'no'}")
    print(f"--resume: bit-identical {'yes' if same else 'NO'}; {t_resume:.2f} s vs full run {t_full:.2f} s "
          f"(ratio {t_resume / t_full:.2f}); without the {t_zero:.2f} s of a 0-day run (start-up, loading): "
          f"ratio {(t_resume - t_zero) / (t_full - t_zero):.2f}, remaining leads {(n_total - done) / n_total:.2f}")
    return 0 if all(r[-1] for r in rows) and same else 1


if __name__ == "__main__":
    sys.exit(main())
