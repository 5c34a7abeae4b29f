"""Benchmark: a training step of lightweight decoders on a frozen backbone vs full fine-tuning.

Standalone script (not a test). The peer is full fine-tuning of the same backbone
with the same decoders (``task: finetune``): backbone forward + backward + AdamW on
all weights, against the decoder step (``task: decoder``): backbone forward under
``no_grad`` + decoder forward/backward + AdamW on the decoder weights. Random inputs
of the backbone's shapes; the loss is a placeholder (time and memory do not depend
on it).

* time: the two steps are timed call by call, interleaved round by round (robust to
  a shared, drifting machine); medians and their ratio.
* memory: each mode runs in its own process; peak RSS during the steps minus RSS
  before them (sampled every 2 ms from ``/proc/self/statm``, Linux).

Goals after Lehmann et al. (2025): decoders take <= 50 % of the fine-tuning time and
<= 65 % of its memory.

Backbones: ``vit`` = the embedded sample ViT (210k parameters, 64x32), ``unet_gru`` =
a DLWP-HPX U-Net-GRU (``--channels``, nside ``--nside``, random weights).

Usage::

    PYTHONPATH=. python benchmarks/bench_decoders.py [--backbone vit|unet_gru] [--batch 16]
        [--hidden 256 128] [--threads 2] [--rounds 15]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time

import torch

VARS = ["total_precipitation_6hr", "evaporation", "total_cloud_cover"]


def build(args: argparse.Namespace):
    from atmos.models import build as build_model
    from atmos.models.decoder import LatentDecoder

    torch.manual_seed(0)
    if args.backbone == "vit":
        from atmos.models.checkpoint import load_model
        from atmos.rollout.sample import sample_checkpoint_dir

        bb, _ = load_model(sample_checkpoint_dir())
    else:
        bb = build_model(
            "unet_gru", nside=args.nside, channels=args.channels, dilations=[1, 2, 4][: len(args.channels)],
            inputs=["a", "b", "c", "d"], outputs=["a", "b", "c", "d"], forcings=["e"], statics=["f", "g"], history=2,
        )
    s = bb.schema
    grid = tuple(bb.grid)
    b = args.batch
    x = torch.randn(b, s.history, len(s.inputs), *grid)
    f = torch.randn(b, s.history + 1, len(s.forcings), *grid) if s.forcings else None
    st = torch.randn(len(s.statics), *grid) if s.statics else None
    dec = LatentDecoder.for_backbone(bb, VARS, hidden=args.hidden)
    return bb, dec, (x, f, st)


def make_steps(bb, dec, data):
    x, f, st = data
    for p in bb.parameters():
        p.requires_grad_(True)
    opt_ft = torch.optim.AdamW(list(bb.parameters()) + list(dec.parameters()), lr=1e-4)
    opt_dec = torch.optim.AdamW(dec.parameters(), lr=1e-4)

    def decoder_step() -> None:
        bb.eval()
        with torch.no_grad():
            lat, _ = bb.forward_latent(x, f, st, None)
        loss = dec(lat).square().mean()
        opt_dec.zero_grad(set_to_none=True)
        loss.backward()
        opt_dec.step()

    def finetune_step() -> None:
        bb.train()
        lat, _ = bb.forward_latent(x, f, st, None)
        loss = dec(lat).square().mean() + bb.decode_latent(lat).square().mean()
        opt_ft.zero_grad(set_to_none=True)
        loss.backward()
        opt_ft.step()

    return {"decoder": decoder_step, "finetune": finetune_step}


def memory_child(args: argparse.Namespace) -> None:
    from atmos.train.decoder import PeakRss

    bb, dec, data = build(args)
    if args.mode == "decoder":
        for p in bb.parameters():
            p.requires_grad_(False)
    step = make_steps(bb, dec, data)[args.mode]
    with PeakRss(interval=0.002) as mem:
        for _ in range(3):
            step()
    print(json.dumps({"start_mb": mem.start_mb, "peak_mb": mem.peak_mb}))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--backbone", choices=["vit", "unet_gru"], default="vit")
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--hidden", type=int, nargs="+", default=[256, 128])
    p.add_argument("--nside", type=int, default=16)
    p.add_argument("--channels", type=int, nargs="+", default=[136, 68, 34])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--rounds", type=int, default=15)
    p.add_argument("--mode", choices=["decoder", "finetune"], help=argparse.SUPPRESS)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    if args.mode:
        memory_child(args)
        return
    bb, dec, data = build(args)
    steps = make_steps(bb, dec, data)
    n_bb = sum(q.numel() for q in bb.parameters())
    n_dec = sum(q.numel() for q in dec.parameters())
    for fn in steps.values():  # warm-up
        fn()
        fn()
    times: dict[str, list[float]] = {k: [] for k in steps}
    for _ in range(args.rounds):
        for k, fn in steps.items():
            t0 = time.perf_counter()
            fn()
            times[k].append(time.perf_counter() - t0)
    med = {k: statistics.median(v) * 1e3 for k, v in times.items()}
    mem = {}
    for mode in ("decoder", "finetune"):
        out = subprocess.run(
            [sys.executable, __file__, *sys.argv[1:], "--mode", mode], check=True, capture_output=True, text=True
        ).stdout
        r = json.loads(out.strip().splitlines()[-1])
        mem[mode] = r["peak_mb"] - r["start_mb"]
    print(
        f"backbone {args.backbone} ({n_bb:,} parameters), decoders {VARS} hidden {args.hidden} ({n_dec:,} parameters), "
        f"batch {args.batch}, {args.threads} thread(s), {args.rounds} interleaved rounds"
    )
    print(f"{'':28s}{'decoders (frozen)':>18s}{'full fine-tuning':>18s}{'ratio':>8s}{'goal':>8s}")
    print(f"{'step time, median (ms)':28s}{med['decoder']:18.1f}{med['finetune']:18.1f}"
          f"{med['decoder'] / med['finetune']:8.3f}{'<=0.50':>8s}")
    print(f"{'step time, min (ms)':28s}{min(times['decoder']) * 1e3:18.1f}{min(times['finetune']) * 1e3:18.1f}"
          f"{min(times['decoder']) / min(times['finetune']):8.3f}")
    print(f"{'training memory (MB)':28s}{mem['decoder']:18.1f}{mem['finetune']:18.1f}"
          f"{mem['decoder'] / mem['finetune']:8.3f}{'<=0.65':>8s}")


if __name__ == "__main__":
    main()
