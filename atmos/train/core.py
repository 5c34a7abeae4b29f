"""The pieces every trainer shares (``task: forecast | decoder | finetune | downscale``).

One home each for: seeding and device choice, the AdamW optimizer built from
:class:`~atmos.train.config.OptimizerConfig`, the warm-up + cosine learning-rate
schedule of :class:`~atmos.train.config.ScheduleConfig`, the EMA of the weights,
gradient clipping, the CSV metric logs, the area weights of a grid as a tensor, the
area-weighted validation RMSE, the SIGTERM/SIGUSR1 stop flag and :class:`FitResult`.

The task trainers (:mod:`atmos.train.loop`, :mod:`atmos.train.decoder`,
:mod:`atmos.train.downscale`) import from here and never from each other.
"""

from __future__ import annotations

import contextlib
import csv
import io
import logging
import math
import random
import signal
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self

import numpy as np
import torch
from torch import nn

from atmos.errors import ConfigError
from atmos.train.checkpoint import atomic_write_text
from atmos.train.config import OptimizerConfig, ScheduleConfig
from atmos.train.losses import grid_area_weights, weighted_mse

__all__ = [
    "EMA",
    "CsvLog",
    "FitResult",
    "StopFlag",
    "area_weights",
    "build_optimizer",
    "build_scheduler",
    "clip_gradients",
    "csv_text",
    "ema_weights",
    "resolve_device",
    "rmse",
    "seed_everything",
    "squared_error_sum",
    "warmup_cosine",
]

log = logging.getLogger("atmos.train")


# =============================================================================================
# seeding, device
# =============================================================================================


def seed_everything(seed: int) -> None:
    """Seed Python, numpy and torch (CPU and CUDA)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    """The torch device of a config's ``device`` (``auto`` | ``cpu`` | ``cuda`` | ``cuda:N``).

    ``cuda`` is the process's ``local_rank`` GPU.

    Raises
    ------
    ConfigError
        ``cuda`` when torch sees no GPU.
    """
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ConfigError("device is 'cuda' but torch sees no GPU; set device: cpu (or auto).")
        return torch.device("cuda", local_rank if name == "cuda" else int(name.split(":")[1]))
    return torch.device("cpu")


# =============================================================================================
# optimizer, schedule, EMA
# =============================================================================================


def build_optimizer(params: Iterable[torch.nn.Parameter], opt: OptimizerConfig) -> torch.optim.Optimizer:
    """AdamW with ``lr``, ``betas``, ``eps`` and ``weight_decay`` of ``opt``.

    Raises
    ------
    ConfigError
        An ``opt.name`` other than ``adamw``.
    """
    if opt.name.lower() != "adamw":
        raise ConfigError(f"optimizer.name must be 'adamw', got {opt.name!r}.")
    return torch.optim.AdamW(
        params, lr=opt.lr, betas=tuple(opt.betas), eps=opt.eps, weight_decay=opt.weight_decay
    )


def warmup_cosine(total_steps: int, warmup_steps: int, start_factor: float, min_ratio: float) -> Callable[[int], float]:
    """lr multiplier at optimizer step ``s``: linear warm-up, then cosine to ``min_ratio``."""
    total = max(1, int(total_steps))
    warm = min(int(warmup_steps), total)

    def f(step: float) -> float:
        if warm > 0 and step < warm:
            return start_factor + (1.0 - start_factor) * step / warm
        span = max(1, total - warm)
        t = min(1.0, (step - warm) / span)
        return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * t))

    return f


def build_scheduler(
    optimizer: torch.optim.Optimizer,
    schedule: ScheduleConfig,
    lr: float,
    total_steps: int,
    *,
    time_fraction: Callable[[], float] | None = None,
) -> torch.optim.lr_scheduler.LambdaLR:
    """The warm-up + cosine schedule of ``schedule`` over ``total_steps`` optimizer steps.

    Parameters
    ----------
    optimizer : torch.optim.Optimizer
    schedule : ScheduleConfig
        ``warmup_steps``, ``warmup_start_factor`` and ``min_lr`` are used.
    lr : float
        The peak lr (``optimizer.lr``); ``min_lr / lr`` is the final multiplier.
    total_steps : int
    time_fraction : callable ``() -> float in [0, 1]``, optional
        Fraction of a wall-time budget used so far; the schedule then follows
        whichever of steps or time runs out first (``downscale.max_minutes``).
    """
    f = warmup_cosine(total_steps, schedule.warmup_steps, schedule.warmup_start_factor, schedule.min_lr / lr)
    if time_fraction is None:
        return torch.optim.lr_scheduler.LambdaLR(optimizer, f)
    total = max(1, int(total_steps))
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: f(max(s, time_fraction() * total)))


def clip_gradients(params: Iterable[torch.nn.Parameter], grad_clip: float | None) -> None:
    """Clip the total gradient norm to ``optimizer.grad_clip`` (None or 0: no clipping)."""
    if grad_clip:
        torch.nn.utils.clip_grad_norm_(params, grad_clip)


class EMA:
    """Exponential moving average of a model's floating-point parameters and buffers.

    ``shadow = decay * shadow + (1 - decay) * current`` after each optimizer step
    (buffers are copied). Plain-tensor ``state_dict``.
    """

    def __init__(self, model: nn.Module, decay: float) -> None:
        self.decay = float(decay)
        self.shadow = {k: v.detach().clone() for k, v in model.state_dict().items()}
        self.updates = 0

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        self.updates += 1
        for k, v in model.state_dict().items():
            s = self.shadow[k]
            if v.is_floating_point():
                s.mul_(self.decay).add_(v.detach(), alpha=1.0 - self.decay)
            else:
                s.copy_(v)

    def state_dict(self) -> dict[str, Any]:
        return {"decay": self.decay, "updates": self.updates, "shadow": dict(self.shadow)}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.decay = float(state["decay"])
        self.updates = int(state["updates"])
        for k, v in state["shadow"].items():
            self.shadow[k].copy_(v)


@contextlib.contextmanager
def ema_weights(model: nn.Module, ema: EMA | None) -> Iterator[nn.Module]:
    """``model`` in eval mode with the EMA weights swapped in (if ``ema``); restored on exit."""
    was = model.training
    model.eval()
    saved = None
    if ema is not None:
        saved = {k: v.detach().clone() for k, v in model.state_dict().items()}
        model.load_state_dict(ema.shadow)
    try:
        yield model
    finally:
        if saved is not None:
            model.load_state_dict(saved)
        model.train(was)


# =============================================================================================
# area weights and validation RMSE
# =============================================================================================


def area_weights(grid: Any, grid_shape: Sequence[int] | None = None, *, uniform: bool = False) -> torch.Tensor:
    """Normalized cell areas of an atmos grid as a float32 tensor shaped like the data tensors.

    Parameters
    ----------
    grid : LatLonGrid or HealpixGrid
        Its ``area_weights()`` (exact cell areas, :mod:`atmos.grids`) are used.
    grid_shape : tuple of int, optional
        Spatial shape of the data tensors: ``[nlat, nlon]``, ``[npix]`` or HEALPix
        faces ``[12, nside, nside]`` (the cell vector is then laid out as faces).
    uniform : bool
        Every cell weighs ``1 / ncells`` (``loss.area_weighted: false``).

    Returns
    -------
    Tensor ``[*grid_shape]``, summing to 1.
    """
    area = grid_area_weights(grid)
    if grid_shape is not None and tuple(area.shape) != tuple(grid_shape):  # HEALPix faces
        area = grid.cells_to_faces(area)
    if uniform:
        area = torch.full_like(area, 1.0 / area.numel())
    return area


def squared_error_sum(pred: torch.Tensor, truth: torch.Tensor, area: torch.Tensor) -> torch.Tensor:
    """Area-weighted squared error per channel, summed over the batch, in float64.

    Parameters
    ----------
    pred, truth : Tensor ``[B, C, *grid]``
    area : Tensor ``[*grid]`` summing to 1

    Returns
    -------
    Tensor ``[C]`` float64: ``sum_b sum_g a_g (pred - truth)^2``.
    """
    return weighted_mse(pred.double(), truth.double(), area.double()).sum(0)


def rmse(sse: torch.Tensor, count: torch.Tensor | float) -> torch.Tensor:
    """WeatherBench2's RMSE from :func:`squared_error_sum` totals over ``count`` samples.

    ``sqrt(sse / count)``: the square root of the sample mean of the area-weighted MSE.
    """
    if isinstance(count, torch.Tensor):
        return (sse / count.clamp(min=1)).sqrt()
    return (sse / max(float(count), 1.0)).sqrt()


# =============================================================================================
# CSV logs
# =============================================================================================


def _fmt(v: Any) -> Any:
    if isinstance(v, float):
        return f"{v:.8g}"
    return v


def csv_text(header: Sequence[str], rows: Sequence[Mapping[str, Any]]) -> str:
    """CSV text with ``header``; keys of ``rows`` outside it are dropped."""
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(header), extrasaction="ignore")
    w.writeheader()
    for r in rows:
        w.writerow(r)
    return buf.getvalue()


class CsvLog:
    """Append-only CSV with a fixed header; on resume, rows after ``keep_until_step`` are dropped.

    ``keep_until_step=None`` starts the file afresh.
    """

    def __init__(self, path: Path, header: Sequence[str], keep_until_step: int | None = None) -> None:
        self.path = Path(path)
        self.header = list(header)
        if keep_until_step is not None and self.path.exists():
            with open(self.path, newline="") as f:
                rows = [r for r in csv.DictReader(f) if int(float(r.get("global_step") or 0)) <= keep_until_step]
            atomic_write_text(self.path, csv_text(self.header, rows))
        elif not self.path.exists() or keep_until_step is None:
            atomic_write_text(self.path, csv_text(self.header, []))

    def write(self, rows: Sequence[Mapping[str, Any]]) -> None:
        with open(self.path, "a", newline="") as f:
            w = csv.DictWriter(f, fieldnames=self.header, extrasaction="ignore")
            for r in rows:
                w.writerow({k: _fmt(v) for k, v in r.items()})


# =============================================================================================
# stopping, results
# =============================================================================================


class StopFlag:
    """Set by SIGTERM/SIGUSR1 (installed only in the main thread)."""

    def __init__(self) -> None:
        self.set = False
        self._old: dict[int, Any] = {}

    def __enter__(self) -> Self:
        if threading.current_thread() is threading.main_thread():
            for sig in (getattr(signal, "SIGTERM", None), getattr(signal, "SIGUSR1", None)):
                if sig is None:
                    continue
                try:
                    self._old[sig] = signal.signal(sig, self._handle)
                except (ValueError, OSError):  # pragma: no cover
                    pass
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        log.warning("signal %d received: checkpointing at the next step and stopping", signum)
        self.set = True

    def __exit__(self, *exc: object) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)


@dataclass
class FitResult:
    """What :func:`atmos.train.fit` returns, for every task.

    Attributes
    ----------
    run_dir : Path
    checkpoint : Path or None
        The last checkpoint written.
    status : str
        ``finished`` or ``stopped`` (deadline, signal or ``stop_after`` reached; resume
        with ``resume=True``).
    epoch : int
        Epochs completed.
    global_step : int
        Optimizer steps done.
    history : list of dict
        One summary per completed epoch (train loss, val loss, wall time...).
    validation : dict
        Last validation. Forecast: ``{"lead_hours": [...], "rmse": {channel: [...]},
        "persistence_rmse": {channel: [...]}, "units": {...}, "loss": float}``;
        decoder/finetune/downscale: ``{"rmse": {name: float}, ...}``.
    wall_time_s : float
        Time spent in this call.
    """

    run_dir: Path
    checkpoint: Path | None
    status: str
    epoch: int
    global_step: int
    history: list[dict[str, Any]]
    validation: dict[str, Any]
    wall_time_s: float
