"""Random Fourier features against spectral bias: the 4x downscaling head on SPEEDY-world with and without.

Trains ``scripts/train_downscaler_speedy.py`` (16x8 -> 64x32, 2m temperature and z500, orography
and land-sea mask as fine statics, 20 epochs, seed 0, one thread) once without Fourier features and
once per ``--scales`` entry with ``fourier_features: {n: N, scale: S}``, then tabulates the
validation-month RMSE and the mid-latitude zonal power at wavenumbers above the coarse grid's
Nyquist (k > 8) relative to the truth. SPEEDY-world is a simulated atmosphere, not observations.

    ATMOS_DATA=/work/shared/data PYTHONPATH=. python scripts/compare_fourier_features.py --out /tmp/ff
    ... --table-only      # tabulate existing runs ({out}/none, {out}/s1, {out}/s10, ...)

Writes ``{out}/fourier_features.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _label(scale: float | None) -> str:
    return "none" if scale is None else f"s{scale:g}"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=Path("runs/fourier_features"))
    p.add_argument("--n", type=int, default=16, help="frequencies (2n input channels)")
    p.add_argument("--scales", type=float, nargs="+", default=[1.0, 10.0])
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--table-only", action="store_true")
    args = p.parse_args(argv)
    runs: list[float | None] = [None, *args.scales]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    for scale in runs:
        run = args.out / _label(scale)
        if args.table_only or (run / "results.json").is_file():
            continue
        cmd = [sys.executable, str(REPO / "scripts" / "train_downscaler_speedy.py"), "--out", str(run),
               "--epochs", str(args.epochs), "--max-minutes", "60"]
        if scale is not None:
            cmd += ["--fourier", f"{args.n},{scale}"]
        subprocess.run(cmd, check=True, env=env)

    rows = {}
    for scale in runs:
        f = args.out / _label(scale) / "results.json"
        if not f.is_file():
            continue
        r = json.loads(f.read_text())
        rows[_label(scale)] = {
            "fourier_features": None if scale is None else {"n": args.n, "scale": scale},
            "rmse": {k: v["head"]["rmse"] for k, v in r["table"].items()},
            "rmse_bicubic": {k: v["bicubic"]["rmse"] for k, v in r["table"].items()},
            "power_k_gt_8_vs_truth": {k: v["head"] for k, v in r["small_scale_power_ratio_k_gt_8"].items()},
            "train_s": r["training"]["seconds"],
            "epochs": r["training"]["epoch"],
        }
    lines = [
        "| Fourier features | t2m RMSE K | z500 RMSE m² s⁻² | t2m power k>8 / truth | z500 power k>8 / truth | train s |",
        "|---|---|---|---|---|---|",
    ]
    for lab, r in rows.items():
        ff = "none" if r["fourier_features"] is None else f"n={args.n}, scale={r['fourier_features']['scale']:g}"
        lines.append(
            f"| {ff} | {r['rmse']['2m_temperature']:.4f} | {r['rmse']['z500']:.1f} | "
            f"{r['power_k_gt_8_vs_truth']['2m_temperature']:.3f} | {r['power_k_gt_8_vs_truth']['z500']:.3f} | "
            f"{r['train_s']:.0f} |"
        )
    if rows:
        first = next(iter(rows.values()))
        lines.append(
            f"| bicubic (reference) | {first['rmse_bicubic']['2m_temperature']:.4f} | "
            f"{first['rmse_bicubic']['z500']:.1f} | | | |"
        )
    table = "\n".join(lines)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "fourier_features.json").write_text(json.dumps(rows, indent=1))
    (args.out / "fourier_features.md").write_text(table + "\n")
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
