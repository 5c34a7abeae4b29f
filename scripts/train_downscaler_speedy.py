"""Train a 4x downscaling head on SPEEDY-world 2018 and score it against bilinear and bicubic.

Pairs: the 64x32 SPEEDY-world fields are the truth; their conservative coarsening to
16x8 (atmos.io.downscale.coarsen_conservative) is the input. Static fine-grid inputs:
orography (geopotential_at_surface) and land-sea mask. Evaluation on speedy-world-val
(2019-12-20 .. 2020-01-20, 6-hourly): area-weighted RMSE and bias per variable, and
the mid-latitude (30-60 deg) zonal power spectra of truth, head and baselines.

SPEEDY-world is a simulated atmosphere (SPEEDY physics on a spectral dynamical core),
not observations.

    ATMOS_DATA=/work/shared/data PYTHONPATH=. python scripts/train_downscaler_speedy.py \
        --out /work/train_runs/downscale_speedy
    # score an existing run only:
    ... scripts/train_downscaler_speedy.py --out /work/train_runs/downscale_speedy --eval-only
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np


def evaluate(run: Path, out: Path) -> dict:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    import atmos
    from atmos.io.downscale import coarsen_conservative, interpolate_baseline
    from atmos.metrics.deterministic import RMSE, Bias
    from atmos.metrics.spectral import ZonalSpectrum
    from atmos.rollout.downscale import downscale

    truth = atmos.open_dataset("speedy-world-val")[["2m_temperature", "geopotential"]].sel(level=[500]).load()
    coarse = coarsen_conservative(truth, 4)
    t0 = time.time()
    preds = {
        "head": downscale(coarse, run),
        "bilinear": interpolate_baseline(coarse, truth, "bilinear"),
        "bicubic": interpolate_baseline(coarse, truth, "bicubic"),
    }
    infer_s = time.time() - t0
    fields = {"2m_temperature": ("2m_temperature", None, "K"), "z500": ("geopotential", 500, "m2 s-2")}

    def pick(ds, var, lev):
        da = ds[var]
        return da.sel(level=lev) if lev is not None else da

    table: dict = {}
    for label, (var, lev, units) in fields.items():
        t = pick(truth, var, lev).astype("float64")
        row = {}
        for name, ds in preds.items():
            f = pick(ds, var, lev).astype("float64").assign_coords(latitude=t.latitude, longitude=t.longitude)
            row[name] = {
                "rmse": float(RMSE().compute(f, t)),
                "bias": float(Bias().compute(f, t)),
            }
        row["improvement_vs_bicubic_pct"] = 100.0 * (1.0 - row["head"]["rmse"] / row["bicubic"]["rmse"])
        row["units"] = units
        table[label] = row

    # spectra (mid-latitudes 30-60 deg, both hemispheres, time mean)
    spec = ZonalSpectrum()
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    small_scale = {}
    for ax, (label, (var, lev, units)) in zip(axes, fields.items(), strict=True):
        t = pick(truth, var, lev).astype("float64")
        curves = {"truth (64x32)": spec.compute(t)}
        for name, ds in preds.items():
            f = pick(ds, var, lev).astype("float64").assign_coords(latitude=t.latitude, longitude=t.longitude)
            curves[name] = spec.compute(f)
        k = curves["truth (64x32)"]["zonal_wavenumber"].values
        sel = k >= 1
        styles = {"truth (64x32)": "k-", "head": "C3-", "bilinear": "C0--", "bicubic": "C2-."}
        for name, c in curves.items():
            ax.loglog(k[sel], np.asarray(c.values)[sel], styles[name], label=name, lw=1.6)
        tv = np.asarray(curves["truth (64x32)"].values)[sel]
        # the interpolation kernels have exact nulls at k = 16, 32: clip the axis near the truth
        ax.set_ylim(tv.min() / 300.0, tv.max() * 3.0)
        ax.axvline(8, color="0.6", lw=0.8, ls=":")
        ax.text(8.2, ax.get_ylim()[0] * 3, "coarse Nyquist (k=8)", fontsize=8, color="0.4")
        ax.set_xlabel("zonal wavenumber")
        ax.set_ylabel(f"power (m {units}^2)")
        ax.set_title(f"{label}: 30-60 deg zonal spectrum")
        ax.legend(fontsize=8)
        hi = k > 8
        tp = float(np.asarray(curves["truth (64x32)"].values)[hi].sum())
        small_scale[label] = {
            n: float(np.asarray(c.values)[hi].sum()) / tp for n, c in curves.items() if n != "truth (64x32)"
        }
    fig.suptitle(
        "4x downscaling 16x8 -> 64x32, SPEEDY-world val (simulated atmosphere, not observations)", fontsize=10
    )
    fig.tight_layout()
    png = out / "spectra.png"
    fig.savefig(png, dpi=120)
    plt.close(fig)
    return {
        "table": table,
        "small_scale_power_ratio_k_gt_8": small_scale,
        "spectra_png": str(png),
        "inference_s": infer_s,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="/work/train_runs/downscale_speedy", help="run folder")
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--max-minutes", type=float, default=12.0)
    p.add_argument("--eval-only", action="store_true")
    p.add_argument(
        "--fourier",
        default=None,
        metavar="N,SCALE",
        help="random Fourier features of position (fourier_features: {n: N, scale: SCALE}); default: none",
    )
    args = p.parse_args()
    out = Path(args.out)
    print("Data: SPEEDY-world (a simulated atmosphere from SPEEDY physics, not observations).", flush=True)

    model = {"hidden": 64, "fine_hidden": 32, "coarse_blocks": 2, "fine_blocks": 2}
    if args.fourier:
        n, scale = args.fourier.split(",")
        model["fourier_features"] = {"n": int(n), "scale": float(scale)}
    if not args.eval_only:
        from atmos.train.downscale import DownscaleTrainConfig, fit_downscaler

        cfg = DownscaleTrainConfig(
            data="speedy-world",
            channels=["2m_temperature", "geopotential_500"],
            statics=["geopotential_at_surface", "land_sea_mask"],
            factor=4,
            model=model,
            epochs=args.epochs,
            batch_size=32,
            lr=2e-3,
            max_minutes=args.max_minutes,
            val_data="speedy-world-val",
            output_dir=str(out.parent),
            name=out.name,
            threads=1,
        )
        t0 = time.time()
        run = fit_downscaler(cfg)
        print(f"trained in {time.time() - t0:.0f} s -> {run}", flush=True)
        print((run / "metrics.csv").read_text(), flush=True)

    res = evaluate(out, out)
    meta = json.loads((out / "checkpoints" / "final" / "checkpoint.json").read_text())
    res["training"] = meta["training"]
    print("\nArea-weighted RMSE / bias on speedy-world-val (128 times), 16x8 -> 64x32 (x4):")
    print(f"{'field':<16}{'method':<10}{'RMSE':>12}{'bias':>12}")
    for label, row in res["table"].items():
        for name in ("head", "bilinear", "bicubic"):
            print(f"{label:<16}{name:<10}{row[name]['rmse']:>12.4g}{row[name]['bias']:>12.3g}")
        print(
            f"{label:<16}head RMSE vs bicubic: {row['improvement_vs_bicubic_pct']:+.1f}% lower ({row['units']})"
        )
    print("\nsmall-scale (k > 8) zonal power relative to truth, 30-60 deg:")
    for label, r in res["small_scale_power_ratio_k_gt_8"].items():
        print(f"  {label}: " + ", ".join(f"{n} {v:.3f}" for n, v in r.items()))
    print(
        f"\ntraining: {res['training']['seconds']:.0f} s, {res['training']['epoch']} epochs, "
        f"{res['training']['global_step']} steps; spectra: {res['spectra_png']}"
    )
    (out / "results.json").write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
