"""Train the example configs on SPEEDY-world and print validation RMSE vs persistence.

SPEEDY-world is a simulated atmosphere (SPEEDY physics, T31), not observations.

    ATMOS_DATA=../shared/data python scripts/train_speedy_demo.py                 # both configs
    python scripts/train_speedy_demo.py configs/vit_speedy.yaml --out /tmp/runs
    python scripts/train_speedy_demo.py --summarize /tmp/runs/vit_speedy          # table of a finished run
"""

from __future__ import annotations

import argparse
import csv
import logging
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_CONFIGS = [REPO / "configs" / "vit_speedy.yaml", REPO / "configs" / "unet_gru_speedy.yaml"]
HEADLINE = ("geopotential_500", "temperature_850")


def summarize(run_dir: Path, channels=HEADLINE) -> list[str]:
    """Rows 'channel lead rmse persistence' of the last validation in ``run_dir/validation.csv``."""
    with open(run_dir / "validation.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        return [f"{run_dir}: no validation yet"]
    last = max(int(r["global_step"]) for r in rows)
    out = []
    for r in rows:
        if int(r["global_step"]) == last and r["channel"] in channels:
            rmse, pers = float(r["rmse"]), float(r["persistence_rmse"])
            out.append(f"{run_dir.name:18s} {r['channel']:18s} {float(r['lead_hours']):5.0f} h  "
                       f"RMSE {rmse:10.4g} {r['units']:7s} persistence {pers:10.4g}  ratio {rmse / pers:.3f}")
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("configs", nargs="*", type=Path, help="training configs (default: the two SPEEDY configs)")
    p.add_argument("--out", type=Path, default=Path("runs"), help="output.dir for the runs (default runs/)")
    p.add_argument("--summarize", nargs="+", type=Path, metavar="RUN_DIR", help="only print finished runs")
    args = p.parse_args(argv)
    if args.summarize:
        for run in args.summarize:
            print("\n".join(summarize(run)))
        return 0
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from atmos.train import fit, load_config

    for path in args.configs or DEFAULT_CONFIGS:
        cfg = load_config(path, [f"output.dir={args.out}", "output.overwrite=true"])
        t0 = time.perf_counter()
        res = fit(cfg)
        wall = time.perf_counter() - t0
        print(f"\n{path.name}: {res.status}, {res.global_step} steps, wall time {wall / 60:.1f} min")
        print("\n".join(summarize(res.run_dir)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
