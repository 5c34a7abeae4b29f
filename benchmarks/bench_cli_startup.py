"""CLI start-up benchmark: ``atmos --help``, ``atmos catalog list`` and ``import atmos`` against bare Python.

Each command runs as a fresh process (``subprocess.run``, output discarded); the rounds
interleave the commands so that a change of machine load hits all of them alike, and the
median wall time over the rounds is reported with its ratio to ``python -c pass`` (the
interpreter's own start-up, site and .pth files included). The one-minute load average is
printed beside the ratios: on a busy machine all the numbers grow together.

    python benchmarks/bench_cli_startup.py             # 7 rounds, ~10 s
    python benchmarks/bench_cli_startup.py --rounds 15

The goal of issue 13: ``atmos --help`` and ``atmos catalog list`` under 0.5 s.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
_SCRIPT = Path(sys.executable).with_name("atmos")  # the console script of an installed atmos
#: ``atmos``: the console script beside this Python, else the same ``main`` it runs (see pyproject.toml).
CLI = [str(_SCRIPT)] if _SCRIPT.is_file() else [
    sys.executable, "-c", "import sys; from atmos.cli.main import main; sys.exit(main())"
]

#: label -> argv
COMMANDS: dict[str, list[str]] = {
    "python -c pass": [sys.executable, "-c", "pass"],
    'python -c "import atmos"': [sys.executable, "-c", "import atmos"],
    "atmos --help": [*CLI, "--help"],
    "atmos catalog list": [*CLI, "catalog", "list"],
}


def _once(argv: list[str], env: dict[str, str]) -> float:
    t0 = time.perf_counter()
    proc = subprocess.run(
        argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env, cwd=REPO, check=False
    )
    dt = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"{argv} failed ({proc.returncode}):\n{proc.stderr.decode(errors='replace')}")
    return dt


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=7, help="interleaved rounds (median reported)")
    args = ap.parse_args(argv)
    env = dict(os.environ, OMP_NUM_THREADS="1")
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])])
    for cmd in COMMANDS.values():  # warm the OS file cache and the bytecode caches
        _once(cmd, env)
    times: dict[str, list[float]] = {k: [] for k in COMMANDS}
    loads = []
    for _ in range(args.rounds):
        for label, cmd in COMMANDS.items():
            times[label].append(_once(cmd, env))
        loads.append(os.getloadavg()[0])
    bare = statistics.median(times["python -c pass"])
    print(f"start-up, median of {args.rounds} interleaved rounds (1 thread; load average {min(loads):.2f}-"
          f"{max(loads):.2f}, now {os.getloadavg()[0]:.2f}; {os.cpu_count()} CPUs):")
    for label, ts in times.items():
        med = statistics.median(ts)
        print(f"  {label:28s} {1e3 * med:7.1f} ms  (min {1e3 * min(ts):6.1f})  {med / bare:5.2f}x bare python"
              f"  +{1e3 * (med - bare):6.1f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
