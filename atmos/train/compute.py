"""The GPU and scale paths of the forecast trainer (``compute:`` and ``precision`` of the config).

One place decides how the training step runs; the trainer only asks it:

* **precision** -- :func:`resolve_precision` gives the autocast dtype (bf16, or fp16 with
  the loss scaler of :func:`make_scaler`). Spectral normalization is kept out of the
  low-precision policy (:func:`keep_spectral_norm_fp32`): its power iteration and
  ``W / sigma`` run in fp32 under autocast. CREDIT found that spectral norm and a
  mixed-precision policy interact: in bf16 the estimate of ``sigma`` has ~3 significant
  digits, so the bound the switch promises no longer holds.
* **memory** -- activation checkpointing and channels-last, switched on the model
  (:class:`atmos.models.base.SupportsComputeSwitches`).
* **parallelism** -- :func:`prepare_modules` wraps the model in DDP or shards it with
  FSDP2 (``torch.distributed.fsdp.fully_shard``: every block in a ``ModuleList`` of the
  model, then the root), and compiles the training-step module with ``torch.compile``.
  :class:`TrainModules` hands out full (unsharded) state dicts for checkpoints, so a
  checkpoint written by an FSDP run is the same file a single process writes.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from atmos.errors import ConfigError
from atmos.models.base import SupportsComputeSwitches
from atmos.models.spectral import spectral_norm_layers

__all__ = [
    "TrainModules",
    "keep_spectral_norm_fp32",
    "make_scaler",
    "prepare_modules",
    "resolve_precision",
]

log = logging.getLogger(__name__)


def resolve_precision(precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype of the training step (None = plain fp32).

    ``auto`` is bf16 on a GPU that supports it, fp16 on other GPUs and fp32 on CPU; ``bf16``
    and ``fp16`` asked for explicitly are honoured on CPU too (CPU autocast).
    """
    if precision == "fp32" or (precision == "auto" and device.type != "cuda"):
        return None
    if precision == "bf16":
        return torch.bfloat16
    if precision == "fp16":
        return torch.float16
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def make_scaler(amp_dtype: torch.dtype | None, device: torch.device) -> torch.amp.GradScaler:
    """The loss scaler: enabled for fp16 only (bf16 has fp32's exponent range)."""
    return torch.amp.GradScaler(device.type, enabled=amp_dtype == torch.float16)


def _sn_fp32_enter(module: nn.Module, args: tuple) -> None:
    weight = args[0]
    ctx = torch.autocast(weight.device.type, enabled=False)
    ctx.__enter__()
    module.__dict__.setdefault("_atmos_autocast_off", []).append(ctx)


def _sn_fp32_exit(module: nn.Module, args: tuple, output: Any) -> None:
    stack = module.__dict__.get("_atmos_autocast_off") or []
    if stack:
        stack.pop().__exit__(None, None, None)


def keep_spectral_norm_fp32(model: nn.Module) -> int:
    """Run every spectral-norm parametrization of ``model`` with autocast off (fp32).

    Returns the number of layers affected. Idempotent; weights and state dict are unchanged.
    """
    n = 0
    for _, layer in spectral_norm_layers(model):
        for p in layer.parametrizations.weight:
            if type(p).__name__ == "_SpectralNorm" and not getattr(p, "_atmos_fp32", False):
                p.register_forward_pre_hook(_sn_fp32_enter)
                p.register_forward_hook(_sn_fp32_exit, always_call=True)
                p._atmos_fp32 = True
                n += 1
    return n


def _shard(model: nn.Module) -> None:
    """FSDP2: each block of the model's ``ModuleList``s is one unit, the root the last."""
    from torch.distributed.fsdp import fully_shard

    import torch.distributed as dist

    # every process built (and seeded) its own model: start all from rank 0's weights, as DDP does
    with torch.no_grad():
        for t in model.state_dict().values():
            dist.broadcast(t, src=0)
    units = 0
    for child in model.children():
        if isinstance(child, nn.ModuleList):
            for block in child:
                if any(p.requires_grad for p in block.parameters()):
                    fully_shard(block)
                    units += 1
    fully_shard(model)
    log.info("FSDP2: %d sharded blocks + the root module", units)


@dataclass
class TrainModules:
    """The model of a training run and the module its training step calls.

    Attributes
    ----------
    model : nn.Module
        The model itself (sharded in place under FSDP): validation and checkpoints use it.
    step : nn.Module
        What the training step calls: ``model``, its DDP wrapper, or either compiled.
    parallel : str
        ``none`` (one process), ``ddp`` or ``fsdp``.
    """

    model: nn.Module
    step: nn.Module
    parallel: str
    wrapper: nn.Module | None = None  # the DDP module (for no_sync)

    @contextlib.contextmanager
    def gradient_sync(self, enabled: bool) -> Iterator[None]:
        """Within, backward passes all-reduce (``enabled``) or only accumulate locally."""
        if enabled or self.parallel == "none":
            yield
        elif self.parallel == "ddp":
            with self.wrapper.no_sync():  # type: ignore[union-attr]
                yield
        else:
            self.model.set_requires_gradient_sync(False)  # type: ignore[operator]
            try:
                yield
            finally:
                self.model.set_requires_gradient_sync(True)  # type: ignore[operator]

    def _options(self):
        from torch.distributed.checkpoint.state_dict import StateDictOptions

        return StateDictOptions(full_state_dict=True, cpu_offload=True)

    def model_state(self) -> dict[str, torch.Tensor]:
        """The full model state dict (under FSDP a collective: every rank must call it)."""
        if self.parallel != "fsdp":
            return self.model.state_dict()
        from torch.distributed.checkpoint.state_dict import get_model_state_dict

        return get_model_state_dict(self.model, options=self._options())

    def optimizer_state(self, optimizer: torch.optim.Optimizer) -> dict[str, Any]:
        """The optimizer state (under FSDP: full, keyed by parameter name; a collective)."""
        if self.parallel != "fsdp":
            return optimizer.state_dict()
        from torch.distributed.checkpoint.state_dict import get_optimizer_state_dict

        return get_optimizer_state_dict(self.model, optimizer, options=self._options())

    def load_model_state(self, state: Mapping[str, torch.Tensor]) -> None:
        """Load a full state dict into the (sharded) model; every rank holds the full dict."""
        from torch.distributed.checkpoint.state_dict import StateDictOptions, set_model_state_dict

        set_model_state_dict(self.model, dict(state), options=StateDictOptions(full_state_dict=True, strict=True))

    def load_optimizer_state(self, optimizer: torch.optim.Optimizer, state: Mapping[str, Any]) -> None:
        if self.parallel != "fsdp":
            optimizer.load_state_dict(state)
            return
        from torch.distributed.checkpoint.state_dict import StateDictOptions, set_optimizer_state_dict

        set_optimizer_state_dict(self.model, optimizer, dict(state), options=StateDictOptions(full_state_dict=True))


def _switch_model(model: nn.Module, compute: Any, amp_dtype: torch.dtype | None) -> None:
    wanted = [k for k in ("activation_checkpointing", "channels_last") if getattr(compute, k)]
    if wanted:
        if not isinstance(model, SupportsComputeSwitches):
            raise ConfigError(
                f"compute.{wanted[0]} is on but model {type(model).__name__} does not support the compute switches "
                "(atmos.models.base.SupportsComputeSwitches). Turn it off, or use a model derived from LatentForward."
            )
        for k in wanted:
            setattr(model, k, True)
    if compute.channels_last:
        model.to(memory_format=torch.channels_last)
    if amp_dtype is not None:
        n = keep_spectral_norm_fp32(model)
        if n:
            log.info("spectral norm of %d layers kept in fp32 under %s autocast", n, amp_dtype)


def prepare_modules(model: nn.Module, compute: Any, info: Any, device: torch.device,
                    amp_dtype: torch.dtype | None) -> TrainModules:
    """Apply ``compute`` (:class:`atmos.train.config.ComputeConfig`) to ``model`` (already on ``device``).

    Parameters
    ----------
    model : nn.Module
    compute : ComputeConfig
    info : atmos.train.distributed.DistInfo
        ``info.enabled``: several processes (DDP or FSDP2 apply only then).
    device : torch.device
    amp_dtype : torch.dtype or None
        The autocast dtype of the step (spectral norm is kept in fp32 under it).
    """
    _switch_model(model, compute, amp_dtype)
    parallel, step, wrapper = "none", model, None
    if info.enabled and compute.parallel == "fsdp":
        _shard(model)
        parallel = "fsdp"
    elif info.enabled:
        wrapper = nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None
        )
        step, parallel = wrapper, "ddp"
    elif compute.parallel == "fsdp":
        log.warning("compute.parallel is 'fsdp' but this is a single process: nothing to shard, training the plain "
                    "model (start with torchrun --nproc_per_node N to shard).")
    if compute.compile != "off":
        step = torch.compile(step, mode=None if compute.compile == "default" else compute.compile,
                             backend=compute.compile_backend)
        log.info("training step compiled (mode %s, backend %s)", compute.compile, compute.compile_backend)
    return TrainModules(model=model, step=step, parallel=parallel, wrapper=wrapper)
