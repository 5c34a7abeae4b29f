"""Training-step time of the three atmos backbones at the sizes of the SPEEDY-world comparison.

The models are those of ``scripts/ablation_stability.py`` (issue 10 and 16): the sample ViT
(embed 96, depth 4, patch 2, windows 4x4: 0.46 M parameters), the hybrid ViT/U-Net of
``configs/hybrid_speedy.yaml`` (U-Net [32, 48] around 2 transformer blocks of width 96 at
1/4 resolution: 0.45 M) and the HEALPix U-Net-GRU (nside 16, channels [48, 24, 12], history 2).
All take the sample's 14 channels, 3 forcings and 2 statics on 64x32 (ViT, hybrid) or 12x16x16
(U-Net-GRU). One training step = forward + MSE + backward + AdamW step, on the same random batch;
rounds are interleaved so that load changes hit every model alike. The ViT is the reference.

Run::

    PYTHONPATH=. python benchmarks/bench_backbones.py [--batch 4] [--rounds 5] [--threads 1]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from atmos.models import build

CHANNELS = [f"{v}_{lev}" for v in ("geopotential", "temperature", "u_component_of_wind", "v_component_of_wind")
            for lev in (250, 500, 850)] + ["2m_temperature", "mean_sea_level_pressure"]
COMMON = {
    "inputs": CHANNELS,
    "forcings": ["toa_incident_solar_radiation", "cos_day_of_year", "sin_day_of_year"],
    "statics": ["land_sea_mask", "geopotential_at_surface"],
}
MODELS = {
    "vit": {**COMMON, "history": 1, "embed_dim": 96, "depth": 4, "num_heads": 4, "patch_size": 2, "window_size": [4, 4]},
    "hybrid": {**COMMON, "history": 1, "channels": [32, 48], "embed_dim": 96, "depth": 2, "num_heads": 4,
               "window_size": [4, 4]},
    "unet_gru": {**COMMON, "history": 2, "nside": 16, "channels": [48, 24, 12], "dilations": [1, 2, 4],
                 "upscale_factor": 2},
}


def _batch(model: torch.nn.Module, b: int) -> tuple[torch.Tensor, ...]:
    s, grid = model.schema, model.grid
    g = torch.Generator().manual_seed(0)
    x = torch.randn(b, s.history, len(s.inputs), *grid, generator=g)
    f = torch.randn(b, s.history + 1, len(s.forcings), *grid, generator=g)
    st = torch.randn(len(s.statics), *grid, generator=g)
    y = torch.randn(b, s.n_prognostic, *grid, generator=g)
    return x, f, st, y


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--steps", type=int, default=3, help="timed steps per model per round")
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    runs = {}
    for name, cfg in MODELS.items():
        m = build(name, **cfg)
        opt = torch.optim.AdamW(m.parameters(), lr=1e-4)
        runs[name] = (m, opt, _batch(m, args.batch))

    def step(name: str) -> None:
        m, opt, (x, f, st, y) = runs[name]
        out, _ = m(x, f, st, None)
        loss = torch.nn.functional.mse_loss(out, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    for name in runs:  # warm-up
        step(name)
    times: dict[str, list[float]] = {n: [] for n in runs}
    for _ in range(args.rounds):
        for name in runs:
            t0 = time.perf_counter()
            for _ in range(args.steps):
                step(name)
            times[name].append((time.perf_counter() - t0) / args.steps)
    ref = statistics.median(times["vit"])
    print(f"training step, batch {args.batch}, {args.threads} thread(s), median of {args.rounds} interleaved rounds")
    print(f"{'model':<10}{'params':>10}{'ms/step':>10}{'vs ViT':>8}")
    for name, (m, _, _) in runs.items():
        med = statistics.median(times[name])
        n = sum(p.numel() for p in m.parameters())
        print(f"{name:<10}{n / 1e6:>9.3f}M{1e3 * med:>10.1f}{med / ref:>7.2f}x")


if __name__ == "__main__":
    main()
