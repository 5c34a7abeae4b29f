"""Training-step time of atmos' UNetGRU vs PhysicsNeMo's HEALPixRecUNet (DLWP-HPX) on CPU.

Both models are built with the DLWP-HPX configuration (channels [136, 68, 34],
ConvNeXt blocks with 4x latent width and GELU capped at 10, dilations 1/2/4 in the
encoder and 4/2/1 in the decoder, average pooling, 2x2 transposed convolutions +
capped GELU, 1x1 ConvGRU at each decoder level, 1x1 output conv; 7 prognostic
variables, TOA insolation, 2 constants, 2 input steps) and timed on the same batch:
one training step = forward + MSE loss + backward + Adam step, GRU state reset
(a fresh sequence) at every step.

PhysicsNeMo is run with ``presteps=0`` and ``output_time_dim=2`` so that one
forward is one U-Net evaluation, like one atmos call (DLWP-HPX's default
``presteps=1`` adds a warm-up evaluation per forward). PhysicsNeMo's top-level
package pulls in warp and timm/torchvision, which are not needed here, so its HEALPix
modules are loaded by file path from the installed ``nvidia-physicsnemo`` wheel
(needs ``hydra-core``, ``omegaconf``, ``jaxtyping``, ``pandas``).

Run::

    PYTHONPATH=. python benchmarks/bench_unet_gru.py [--nside 16] [--batch 2] [--steps 5]
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import statistics
import sys
import time
import types
from pathlib import Path

import torch

from atmos.models.unet_gru import UNetGRU, UNetGRUConfig


# -----------------------------------------------------------------------------
# PhysicsNeMo loader (by file path, bypassing physicsnemo/__init__.py)
# -----------------------------------------------------------------------------
def load_physicsnemo() -> types.ModuleType:
    """Return the module ``physicsnemo.models.dlwp_healpix.HEALPixRecUNet``."""
    spec = importlib.util.find_spec("physicsnemo")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit(
            "nvidia-physicsnemo is not installed; install the wheel with "
            "`pip install --no-deps nvidia_physicsnemo-*.whl` (+ hydra-core omegaconf jaxtyping)."
        )
    root = Path(next(iter(spec.submodule_search_locations)))

    def stub(name: str, path: Path | None = None) -> types.ModuleType:
        mod = types.ModuleType(name)
        mod.__path__ = [str(path)] if path is not None else []
        sys.modules[name] = mod
        return mod

    stub("physicsnemo", root)
    stub("physicsnemo.core", root / "core")
    importlib.import_module("physicsnemo.core.version_check")
    meta = importlib.import_module("physicsnemo.core.meta")

    class Module(torch.nn.Module):  # the checkpointing base class is not needed
        def __init__(self, meta: object = None) -> None:
            super().__init__()
            self.meta = meta

    module_stub = stub("physicsnemo.core.module")
    module_stub.Module = Module
    sys.modules["physicsnemo.core"].Module = Module
    sys.modules["physicsnemo.core"].ModelMetaData = meta.ModelMetaData

    nn_stub = stub("physicsnemo.nn", root / "nn")
    stub("physicsnemo.nn.module", root / "nn" / "module")
    hpx_stub = stub("physicsnemo.nn.module.hpx", root / "nn" / "module" / "hpx")
    padding = importlib.import_module("physicsnemo.nn.module.hpx.padding")
    layers = importlib.import_module("physicsnemo.nn.module.hpx.layers")
    pool = importlib.import_module("physicsnemo.nn.module.hpx.pool")
    activations = importlib.import_module("physicsnemo.nn.module.activations")
    for mod in (padding, layers, pool):
        for k, v in vars(mod).items():
            if k.startswith("HEALPix"):
                setattr(hpx_stub, k, v)
                setattr(nn_stub, k, v)
    nn_stub.CappedGELU = activations.CappedGELU

    stub("physicsnemo.models", root / "models")
    stub("physicsnemo.models.dlwp_healpix", root / "models" / "dlwp_healpix")
    importlib.import_module("physicsnemo.models.dlwp_healpix.layers")
    return importlib.import_module("physicsnemo.models.dlwp_healpix.HEALPixRecUNet")


def build_physicsnemo(cfg: UNetGRUConfig) -> torch.nn.Module:
    from omegaconf import OmegaConf

    rec = load_physicsnemo()
    L = "physicsnemo.models.dlwp_healpix.layers"
    act = {"_target_": "physicsnemo.nn.CappedGELU", "cap_value": cfg.activation_cap}
    conv = {
        "_target_": f"{L}.ConvNeXtBlock",
        "activation": act,
        "kernel_size": cfg.kernel_size,
        "upscale_factor": cfg.upscale_factor,
    }
    encoder = {
        "_target_": f"{L}.UNetEncoder",
        "_recursive_": False,
        "conv_block": conv,
        "down_sampling_block": {"_target_": "physicsnemo.nn.HEALPixAvgPool", "pooling": 2},
        "n_channels": list(cfg.channels),
        "n_layers": [1] * len(cfg.channels),
        "dilations": list(cfg.dilations),
    }
    decoder = {
        "_target_": f"{L}.UNetDecoder",
        "_recursive_": False,
        "conv_block": conv,
        "up_sampling_block": {"_target_": f"{L}.TransposedConvUpsample", "activation": act, "upsampling": 2},
        "recurrent_block": {"_target_": f"{L}.ConvGRUBlock", "kernel_size": 1},
        "output_layer": {"_target_": f"{L}.BasicConvBlock", "kernel_size": 1, "n_layers": 1},
        "n_channels": list(reversed(cfg.channels)),
        "n_layers": [1] * len(cfg.channels),
        "dilations": list(reversed(cfg.dilations)),
    }
    return rec.HEALPixRecUNet(
        encoder=OmegaConf.create(encoder),
        decoder=OmegaConf.create(decoder),
        input_channels=len(cfg.inputs),
        output_channels=len(cfg.inputs),
        n_constants=len(cfg.statics),
        decoder_input_channels=len(cfg.forcings),
        input_time_dim=cfg.history,
        output_time_dim=cfg.history,
        presteps=0,
    )


# -----------------------------------------------------------------------------
# benchmark
# -----------------------------------------------------------------------------
def n_params(m: torch.nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--nside", type=int, default=16)
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--steps", type=int, default=5, help="timed steps per model (after 1 warm-up)")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: leave default)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    torch.manual_seed(0)
    cfg = UNetGRUConfig(nside=args.nside)
    ours = UNetGRU(cfg)
    ref = build_physicsnemo(cfg)
    B, n, T = args.batch, args.nside, cfg.history
    C, Cf, Cs = len(cfg.inputs), len(cfg.forcings), len(cfg.statics)

    # the same data in both layouts
    x = torch.randn(B, T, C, 12, n, n)
    f = torch.randn(B, T + 1, Cf, 12, n, n)
    s = torch.randn(Cs, 12, n, n)
    y = torch.randn(B, C, 12, n, n)
    ref_inputs = [
        x.permute(0, 3, 1, 2, 4, 5).contiguous(),  # [B, F, T, C, H, W]
        f[:, :T].permute(0, 3, 1, 2, 4, 5).contiguous(),  # [B, F, T, Cf, H, W]
        s.transpose(0, 1).contiguous(),  # [F, Cs, H, W]
    ]
    ref_target = torch.randn(B, 12, T, C, n, n)

    def step_ours(opt: torch.optim.Optimizer) -> None:
        delta, _ = ours(x, f, s, state=None)
        loss = torch.nn.functional.mse_loss(delta, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    def step_ref(opt: torch.optim.Optimizer) -> None:
        out = ref(ref_inputs)
        loss = torch.nn.functional.mse_loss(out, ref_target)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    opt_o = torch.optim.Adam(ours.parameters(), lr=1e-4)
    opt_r = torch.optim.Adam(ref.parameters(), lr=1e-4)
    step_ours(opt_o)  # warm-up (allocations, index buffers)
    step_ref(opt_r)
    t_o, t_r, c_o, c_r = [], [], [], []
    for _ in range(args.steps):  # interleaved, so that load changes hit both alike
        for fn, opt, wall, cpu in ((step_ours, opt_o, t_o, c_o), (step_ref, opt_r, t_r, c_r)):
            t0, p0 = time.perf_counter(), time.process_time()
            fn(opt)
            wall.append(time.perf_counter() - t0)
            cpu.append(time.process_time() - p0)

    mo, mr = statistics.median(t_o) * 1e3, statistics.median(t_r) * 1e3
    lo, lr = min(t_o) * 1e3, min(t_r) * 1e3
    print(
        f"config: nside={n}, batch={B}, channels={cfg.channels}, dilations={cfg.dilations}, "
        f"history={T}, torch threads={torch.get_num_threads()}, {args.steps} timed steps each (interleaved)"
    )
    print(
        f"parameters: atmos UNetGRU {n_params(ours):,} | PhysicsNeMo HEALPixRecUNet {n_params(ref):,} "
        f"(diff {n_params(ours) - n_params(ref):+,}: 19 vs 18 input and 7 vs 14 output channels)"
    )
    print(
        f"train step ms, median: atmos {mo:.0f} | physicsnemo {mr:.0f} | ratio atmos/physicsnemo = "
        f"{mo / mr:.3f} (goal <= 1.0)"
    )
    print(
        f"train step ms, best:   atmos {lo:.0f} | physicsnemo {lr:.0f} | ratio atmos/physicsnemo = "
        f"{lo / lr:.3f}"
    )
    co, cr = statistics.median(c_o) * 1e3, statistics.median(c_r) * 1e3
    print(
        f"process CPU ms, median: atmos {co:.0f} | physicsnemo {cr:.0f} | ratio atmos/physicsnemo = "
        f"{co / cr:.3f} (less sensitive to other load on the machine)"
    )
    print(f"  all atmos ms: {[round(t * 1e3) for t in t_o]}")
    print(f"  all physicsnemo ms: {[round(t * 1e3) for t in t_r]}")


if __name__ == "__main__":
    main()
