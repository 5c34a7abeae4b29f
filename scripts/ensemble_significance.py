"""Block-bootstrap significance checks of ``atmos.evaluation.compare`` (issue 14).

Two checks on the SPEEDY-world validation month (a *simulated* atmosphere, not observations), inits
every 12 h, daily leads:

1. a stochastic (CRPS-trained) checkpoint run twice with different ``--seed``: the two ensembles
   differ only in the model's noise, so no CRPS or ensemble-mean RMSE difference should be
   significant at 95 % (a false-positive check of the paired bootstrap);
2. the embedded deterministic default against persistence: the RMSE difference should be
   significant at every lead.

    OMP_NUM_THREADS=1 python scripts/ensemble_significance.py --model out/crps/crps_vit_speedy_ft --out out/sig
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import pandas as pd


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    root = Path(os.environ.get("ATMOS_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
    p.add_argument("--model", required=True, help="a stochastic checkpoint (data.noise_channels > 0)")
    p.add_argument("--data", default=str(root / "speedy-world-2019-12.zarr"))
    p.add_argument("--start", default="2019-12-22")
    p.add_argument("--end", default="2020-01-10")
    p.add_argument("--every", default="12h")
    p.add_argument("--members", type=int, default=8)
    p.add_argument("--days", type=float, default=10)
    p.add_argument("--out", type=Path, default=Path("out/sig"))
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    import torch
    import xarray as xr

    torch.set_num_threads(args.threads)
    from atmos.evaluation import compare
    from atmos.rollout import rollout

    args.out.mkdir(parents=True, exist_ok=True)
    inits = pd.date_range(args.start, args.end, freq=args.every)
    truth = xr.open_zarr(args.data)
    kw = {"days": args.days, "step": "1D"}
    a = rollout(args.model, args.data, inits, members=args.members, seed=0, **kw).load()
    b = rollout(args.model, args.data, inits, members=args.members, seed=1, **kw).load()
    det = rollout(None, args.data, inits, **kw).load()
    variables = ["z500", "t850", "t2m"]
    seeds = compare(a, b, truth, metrics=["crps", "ensemble_mean_rmse"], variables=variables, names=("seed 0", "seed 1"))
    pers = compare(det, "persistence", truth, metrics=["rmse"], variables=variables)
    result = {"n_inits": len(inits), "members": args.members}
    for name, ds in (("seed_0_vs_seed_1", seeds), ("default_vs_persistence", pers)):
        flags = ds["significant"].sel(prediction_timedelta=ds.prediction_timedelta.values[1:])  # leads > 0
        result[name] = {
            "significant_fraction": float(flags.mean()),
            "n_tests": int(flags.size),
            "table": ds.drop_vars([v for v in ds.coords if v not in ds.dims]).to_dataframe().reset_index()
            .astype(str).to_dict("records"),
        }
        print(name, "significant in", f"{int(flags.sum())}/{int(flags.size)}", "tests (leads > 0)", flush=True)
    (args.out / "ensemble_significance.json").write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
