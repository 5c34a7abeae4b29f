"""Training-step cost of the ``compute:`` switches (fp32, bf16, fp16, compiled, activation
checkpointing, channels-last) for the embedded sample ViT and a DLWP-HPX-size U-Net-GRU.

One training step = forward + area-free MSE + backward + AdamW step on random data of the
model's shapes (the data path is benchmarked by ``bench_loader.py``). Each variant is timed in
interleaved rounds (median over rounds of the mean step time) and reported as samples/s and as
a ratio to fp32 eager measured in the same run. "activations" is the memory autograd keeps for
the backward pass during one forward (summed sizes of the saved tensors, exact and independent of
the allocator); on a GPU the peak allocated memory is printed too.

On a CPU, bf16/fp16 autocast only pays off with AMX/AVX512-BF16 units, and ``torch.compile``
with inductor needs a C++ compiler and minutes of compilation: the CPU figures show that the
switches run and what they cost here; the GPU figures are what they are for.

Run::

    PYTHONPATH=. python benchmarks/bench_train_paths.py [--model vit|unet_gru|both] [--nside 32]
        [--batch 2] [--steps 3] [--rounds 3] [--variants fp32 bf16 ckpt ...] [--threads 1]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import torch

from atmos.train.compute import keep_spectral_norm_fp32

VARIANTS = ("fp32", "bf16", "fp16", "compiled", "ckpt", "channels_last")


def build(kind: str, nside: int) -> tuple[torch.nn.Module, tuple]:
    """The model and one batch ``(inputs, forcings, statics)`` of its shapes."""
    g = torch.Generator().manual_seed(0)
    if kind == "vit":
        from atmos.models.checkpoint import load_model
        from atmos.rollout.sample import sample_checkpoint_dir

        model, _ = load_model(sample_checkpoint_dir())
        cfg = model.config
        grid = tuple(model.grid)
    else:
        from atmos.models.unet_gru import UNetGRU, UNetGRUConfig

        cfg = UNetGRUConfig(nside=nside)  # DLWP-HPX: channels [136, 68, 34], 2 input steps
        model = UNetGRU(cfg)
        grid = (12, nside, nside)
    n_in, n_f, n_s = len(cfg.inputs), len(cfg.forcings), len(cfg.statics)
    x = torch.randn(1, cfg.history, n_in, *grid, generator=g)
    f = torch.randn(1, cfg.history + 1, n_f, *grid, generator=g) if n_f else None
    s = torch.randn(n_s, *grid, generator=g) if n_s else None
    return model.train(), (x, f, s)


def activation_bytes(model: torch.nn.Module, batch: tuple, amp: torch.dtype | None, device: torch.device) -> int:
    sizes: list[int] = []

    def pack(t: torch.Tensor) -> torch.Tensor:
        sizes.append(t.numel() * t.element_size())
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        with torch.autocast(device.type, dtype=amp, enabled=amp is not None):
            out, _ = model(*batch)
    out.float().square().mean().backward()
    model.zero_grad(set_to_none=True)
    return sum(sizes)


class Runner:
    """One variant: its model copy, optimizer, scaler and step function."""

    def __init__(self, kind: str, variant: str, nside: int, batch_size: int, device: torch.device) -> None:
        model, b = build(kind, nside)
        self.amp = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(variant)
        if variant == "ckpt":
            model.activation_checkpointing = True
        if variant == "channels_last":
            model.channels_last = True
            model.to(memory_format=torch.channels_last)
        if self.amp is not None:
            keep_spectral_norm_fp32(model)
        self.model = model.to(device)
        self.batch = tuple(None if t is None else t.to(device).expand(batch_size, *t.shape[1:]).contiguous()
                           if t.dim() > 3 + (kind != "vit") else t.to(device) for t in b)
        self.step_model = torch.compile(self.model) if variant == "compiled" else self.model
        self.opt = torch.optim.AdamW(self.model.parameters(), lr=1e-4)
        self.scaler = torch.amp.GradScaler(device.type, enabled=self.amp is torch.float16)
        self.device = device
        self.activations = activation_bytes(self.model, self.batch, self.amp, device)

    def step(self) -> None:
        self.opt.zero_grad(set_to_none=True)
        with torch.autocast(self.device.type, dtype=self.amp, enabled=self.amp is not None):
            out, _ = self.step_model(*self.batch)
        loss = out.float().square().mean()
        self.scaler.scale(loss).backward()
        self.scaler.step(self.opt)
        self.scaler.update()

    def sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize()


def run(kind: str, variants: list[str], args: argparse.Namespace, device: torch.device) -> None:
    runners = {}
    for v in variants:
        if v == "channels_last" and kind == "vit":
            continue  # the ViT has one patch-embedding convolution: nothing to measure
        t0 = time.perf_counter()
        r = Runner(kind, v, args.nside, args.batch, device)
        r.step()  # warm-up (and compilation for "compiled")
        r.sync()
        runners[v] = (r, time.perf_counter() - t0)
    times: dict[str, list[float]] = {v: [] for v in runners}
    for _ in range(args.rounds):
        for v, (r, _) in runners.items():
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats()
            r.sync()
            t0 = time.perf_counter()
            for _ in range(args.steps):
                r.step()
            r.sync()
            times[v].append((time.perf_counter() - t0) / args.steps)
    n_params = sum(p.numel() for p in next(iter(runners.values()))[0].model.parameters())
    print(f"\n## {kind} ({n_params / 1e6:.2f} M parameters), batch {args.batch}, device {device}, "
          f"{torch.get_num_threads()} thread(s), load {os.getloadavg()[0]:.2f}")
    print("| variant | step ms | samples/s | / fp32 time | activations MB | / fp32 | set-up s |")
    print("|---|---|---|---|---|---|---|")
    ref_t = statistics.median(times["fp32"]) if "fp32" in times else None
    ref_a = runners["fp32"][0].activations if "fp32" in runners else None
    for v, (r, setup) in runners.items():
        t = statistics.median(times[v])
        rt = f"{t / ref_t:.2f}" if ref_t else "-"
        ra = f"{r.activations / ref_a:.2f}" if ref_a else "-"
        print(f"| {v} | {1e3 * t:.1f} | {args.batch / t:.2f} | {rt} | {r.activations / 2**20:.1f} | {ra} | {setup:.1f} |")
    print(f"load after: {os.getloadavg()[0]:.2f}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", choices=("vit", "unet_gru", "both"), default="both")
    p.add_argument("--nside", type=int, default=32, help="U-Net-GRU nside (DLWP-HPX uses 64)")
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--variants", nargs="+", choices=VARIANTS, default=["fp32", "bf16", "fp16", "ckpt", "channels_last"])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if "fp32" not in args.variants:
        args.variants = ["fp32", *args.variants]
    for kind in (("vit", "unet_gru") if args.model == "both" else (args.model,)):
        run(kind, args.variants, args, device)


if __name__ == "__main__":
    main()
