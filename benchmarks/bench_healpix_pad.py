"""Benchmark: atmos ``HealpixPad`` vs PhysicsNeMo ``HEALPixPadding`` vs circular pad.

Standalone script (not a test). Default case: B=2, C=136, nside=64, pad=1, CPU,
float32, a fixed number of threads. The cases are timed call by call, interleaved
round by round (robust to a shared, drifting machine); the script prints the
median (and minimum) time of each and the ratios of medians against the goals
(atmos >= 5x faster than PhysicsNeMo; atmos <= 1.5x the time of
``torch.nn.functional.pad(mode="circular")`` on a same-sized tensor; atmos <= 1.2x a
``clone()`` of a tensor of the padded output's size, the floor of any out-of-place pad).

Layouts: atmos takes ``[B, C, 12, n, n]``; PhysicsNeMo ``HEALPixPadding`` takes the
DLWP folded layout ``[B*12, C, n, n]`` (faces folded into the batch, face-major),
and so does the circular pad. Each gets its input prepared once in its native
layout, outside the timed region. Before timing, the script checks that atmos and
PhysicsNeMo produce the same halo values.

PhysicsNeMo is a benchmark-only dependency (``pip install --no-deps
nvidia-physicsnemo``). ``import physicsnemo`` needs ``warp`` and
``physicsnemo.nn`` pulls in timm/torchvision, so the padding module is loaded by
file path, with only ``physicsnemo/core/version_check.py`` loaded beside it.

Usage::

    PYTHONPATH=. python benchmarks/bench_healpix_pad.py [--batch 2] [--channels 136]
        [--nside 64] [--pad 1] [--threads 2] [--rounds 40] [--backward]
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import sys
import time
import types
from pathlib import Path

import torch
import torch.nn.functional as F

from atmos.grids.padding import HealpixPad


def load_physicsnemo_padding() -> tuple[types.ModuleType | None, str]:
    """Load ``physicsnemo/nn/module/hpx/padding.py`` by path; (module, message)."""
    try:
        spec = importlib.util.find_spec("physicsnemo")  # locates, does not import
    except (ImportError, ValueError) as exc:
        return None, f"cannot locate physicsnemo: {exc}"
    if spec is None or not spec.submodule_search_locations:
        return None, "physicsnemo is not installed (pip install --no-deps nvidia-physicsnemo jaxtyping)"
    root = Path(next(iter(spec.submodule_search_locations)))
    padding_py = root / "nn" / "module" / "hpx" / "padding.py"
    version_py = root / "core" / "version_check.py"
    if not padding_py.is_file() or not version_py.is_file():
        return None, f"physicsnemo at {root} has no {padding_py.relative_to(root)}"
    try:
        # empty parent packages so that their __init__ (warp, timm, ...) never runs
        for name, sub in (("physicsnemo", root), ("physicsnemo.core", root / "core")):
            if name not in sys.modules:
                pkg = types.ModuleType(name)
                pkg.__path__ = [str(sub)]
                sys.modules[name] = pkg
        mods = {}
        for name, path in (
            ("physicsnemo.core.version_check", version_py),
            ("physicsnemo_hpx_padding", padding_py),
        ):
            s = importlib.util.spec_from_file_location(name, path)
            mod = importlib.util.module_from_spec(s)
            sys.modules[name] = mod
            s.loader.exec_module(mod)
            mods[name] = mod
        return mods["physicsnemo_hpx_padding"], f"loaded {padding_py}"
    except Exception as exc:  # noqa: BLE001 - report any import failure and go on
        return None, f"cannot load {padding_py}: {type(exc).__name__}: {exc}"


def interleaved_times(cases: list[tuple[str, object, torch.Tensor]], rounds: int) -> dict[str, list[float]]:
    """Per-call wall times in ms, cases interleaved round by round (rotating order)
    so that drifting machine load hits all of them alike."""
    for _, fn, arg in cases:  # warm-up: index-table caches, allocator, first touch
        fn(arg)
        fn(arg)
    times: dict[str, list[float]] = {name: [] for name, _, _ in cases}
    for r in range(rounds):
        for k in range(len(cases)):
            name, fn, arg = cases[(r + k) % len(cases)]
            t0 = time.perf_counter()
            fn(arg)
            times[name].append((time.perf_counter() - t0) * 1e3)
    return times


def fwd_bwd(fn):
    def run(x):
        fn(x).sum().backward()

    return run


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--channels", type=int, default=136)
    ap.add_argument("--nside", type=int, default=64)
    ap.add_argument("--pad", type=int, default=1)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=40, help="interleaved timed calls per case")
    ap.add_argument("--backward", action="store_true", help="also time forward+backward")
    args = ap.parse_args()

    torch.manual_seed(0)
    torch.set_num_threads(args.threads)
    B, C, n, p = args.batch, args.channels, args.nside, args.pad
    m = n + 2 * p
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPU float32, "
        f"B={B} C={C} nside={n} pad={p}"
    )

    x = torch.randn(B, C, 12, n, n)  # atmos layout
    x_folded = x.permute(0, 2, 1, 3, 4).reshape(B * 12, C, n, n).contiguous()  # DLWP layout
    atmos_pad = HealpixPad(n, p)

    def circular(t):
        return F.pad(t, (p, p, p, p), mode="circular")

    pn_mod, msg = load_physicsnemo_padding()
    pn_pad = None
    if pn_mod is None:
        print(f"PhysicsNeMo: NOT AVAILABLE -- {msg}. Only the circular-pad ratio is reported.")
    else:
        print(f"PhysicsNeMo: {msg}")
        pn_pad = pn_mod.HEALPixPadding(p)
        # apples-to-apples check: same halo values (compare in the atmos layout)
        with torch.no_grad():
            ours = atmos_pad(x)
            ref = pn_pad(x_folded).reshape(B, 12, C, m, m).permute(0, 2, 1, 3, 4)
        corner = torch.zeros(m, m, dtype=torch.bool)
        for rs in (slice(0, p), slice(m - p, m)):
            for cs in (slice(0, p), slice(m - p, m)):
                corner[rs, cs] = True
        diff = (ours - ref).abs()
        print(
            f"  max |atmos - PhysicsNeMo| on all non-corner cells (centre + edge strips): "
            f"{diff[..., ~corner].max().item():.3g}"
        )
        print(
            f"  max |atmos - PhysicsNeMo| on the corner blocks of equatorial faces 4-7: "
            f"{diff[:, :, 4:8][..., corner].max().item():.3g}"
        )
        print(
            f"  max |atmos - PhysicsNeMo| on the corner blocks of polar faces 0-3, 8-11: "
            f"{diff[:, :, [0, 1, 2, 3, 8, 9, 10, 11]][..., corner].max().item():.3g} "
            "(expected > 0: at three-face vertices PhysicsNeMo copies on polar faces, "
            "atmos averages everywhere)"
        )

    # the floor of any out-of-place pad: one copy of a tensor of the padded size (issue 13: <= 1.2x)
    out_like = torch.randn(B, C, 12, m, m)
    cases = [("atmos HealpixPad", atmos_pad, x), ("circular F.pad", circular, x_folded),
             ("clone() of the output size", torch.clone, out_like)]
    if pn_pad is not None:
        cases.insert(1, ("PhysicsNeMo HEALPixPadding", pn_pad, x_folded))

    def report(title: str, times: dict[str, list[float]]) -> None:
        print(f"\n{title}: ms per call over {args.rounds} interleaved rounds")
        print(f"  {'':28s} {'median':>9s} {'min':>9s}")
        med = {k: statistics.median(v) for k, v in times.items()}
        low = {k: min(v) for k, v in times.items()}
        for name in times:
            print(f"  {name:28s} {med[name]:9.2f} {low[name]:9.2f}")
        a = "atmos HealpixPad"
        pn = "PhysicsNeMo HEALPixPadding"
        if pn in times:
            r = med[pn] / med[a]
            print(
                f"  speed-up vs PhysicsNeMo       {r:9.2f}x (from minima {low[pn] / low[a]:.2f}x)"
                f"  goal >= 5x: {'MET' if r >= 5 else 'NOT MET'}"
            )
        else:
            print("  speed-up vs PhysicsNeMo       n/a (PhysicsNeMo not loaded)")
        r = med[a] / med["circular F.pad"]
        print(
            f"  time / circular pad           {r:9.2f}x (from minima {low[a] / low['circular F.pad']:.2f}x)"
            f"  goal <= 1.5x: {'MET' if r <= 1.5 else 'NOT MET'}"
        )
        c = "clone() of the output size"
        r = med[a] / med[c]
        print(
            f"  time / clone of the output    {r:9.2f}x (from minima {low[a] / low[c]:.2f}x)"
            f"  goal <= 1.2x: {'MET' if r <= 1.2 else 'NOT MET'}"
        )

    with torch.no_grad():
        report("forward", interleaved_times(cases, args.rounds))

    if args.backward:
        grad_cases = [(name, fwd_bwd(fn), inp.clone().requires_grad_(True)) for name, fn, inp in cases]
        report("forward + backward of .sum()", interleaved_times(grad_cases, args.rounds))


if __name__ == "__main__":
    main()
