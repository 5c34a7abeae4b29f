"""The epoch loop shared by the single-process tasks (decoder, finetune, downscale).

A task supplies only what differs — its batches, its loss and its validation — as a
:class:`StepTask`; :func:`run_epochs` owns everything else, the same way for every task:
the optimizer and the warm-up + cosine schedule (``optimizer.*`` and ``schedule.*`` of the
config, :mod:`atmos.train.core`), gradient clipping, the EMA (validation and the saved
weights use it), the non-finite-loss check, the progress bar, and ``metrics.csv`` (one
row per epoch: ``epoch, step, train_loss, lr, train_time_s, seconds, val_rmse_<channel>``,
rewritten atomically after every epoch).

The forecast task (:mod:`atmos.train.loop`) keeps its own loop for what only it has:
multi-step rollouts with a curriculum, DDP, mixed precision, mid-epoch checkpoints and
bit-exact resume; it uses the same :mod:`atmos.train.core` pieces.
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import nn

from atmos.errors import DataError
from atmos.train.checkpoint import atomic_write_text
from atmos.train.config import OptimizerConfig, ScheduleConfig
from atmos.train.core import EMA, build_optimizer, build_scheduler, clip_gradients, csv_text, ema_weights

__all__ = ["EpochResult", "StepTask", "run_epochs"]

log = logging.getLogger("atmos.train")


class StepTask(Protocol):
    """What one task contributes to :func:`run_epochs`."""

    def train_mode(self) -> None:
        """Put the trained modules in training mode (validation may have switched them to eval)."""
        ...

    def batches(self, epoch: int) -> Iterable[Any]:
        """The batches of epoch ``epoch`` (0-based), in order; the loop takes at most ``per_epoch``."""
        ...

    def loss(self, batch: Any) -> tuple[torch.Tensor, int]:
        """``(loss, n_samples)`` of one batch: a scalar with gradient and the batch size."""
        ...

    def validate(self) -> dict[str, Any]:
        """Validation (called with the EMA weights): a dict with ``"rmse": {channel: value}``
        in physical units, and anything else the task stores with its checkpoint."""
        ...


@dataclass
class EpochResult:
    """What :func:`run_epochs` did.

    Attributes
    ----------
    history : list of dict
        One row per epoch (the rows of ``metrics.csv``).
    steps : int
        Optimizer steps taken.
    epochs : int
        Epochs run (fewer than asked when the time budget ran out).
    train_time_s : float
        Seconds spent in training steps (forward, backward, optimizer).
    validation : dict
        The last :meth:`StepTask.validate` result (``{}`` without validation).
    stopped_by_time_limit : bool
    """

    history: list[dict[str, Any]] = field(default_factory=list)
    steps: int = 0
    epochs: int = 0
    train_time_s: float = 0.0
    validation: dict[str, Any] = field(default_factory=dict)
    stopped_by_time_limit: bool = False


def run_epochs(
    task: StepTask,
    *,
    trained: nn.Module,
    params: Sequence[nn.Parameter],
    optimizer: OptimizerConfig,
    schedule: ScheduleConfig,
    epochs: int,
    per_epoch: int,
    metrics_csv: str | Path,
    validate: bool = True,
    validate_every: int = 1,
    time_budget_s: float | None = None,
    started: float | None = None,
    progress: str | None = None,
    name: str = "training",
) -> EpochResult:
    """Train ``params`` for ``epochs`` epochs of at most ``per_epoch`` batches of ``task``.

    Parameters
    ----------
    task : StepTask
    trained : nn.Module
        The modules whose weights are trained (the EMA averages them; at the end they
        hold the EMA weights when ``optimizer.ema_decay`` is set).
    params : sequence of Parameter
        What the optimizer updates.
    optimizer, schedule : OptimizerConfig, ScheduleConfig
        The config's sections (lr, betas, weight decay, grad clip, EMA; warm-up, min lr).
    epochs, per_epoch : int
        Passes over the data and the most batches per pass (the schedule spans
        ``epochs * per_epoch`` steps).
    metrics_csv : path
        Where the per-epoch rows are written.
    validate : bool
        Whether the task has validation data.
    validate_every : int
        Validate every this many epochs (and after the last).
    time_budget_s : float, optional
        Stop after this many seconds since ``started``; the schedule follows whichever of
        steps or time runs out first.
    started : float, optional
        ``time.time()`` when the task started (default: now).
    progress : str, optional
        Show a progress bar with this description (tqdm, stderr).
    name : str
        The task's name in messages.

    Raises
    ------
    DataError
        The loss became non-finite (the message names the step and suggests a lower lr).
    """
    t_start = time.time() if started is None else float(started)
    opt = build_optimizer(params, optimizer)
    ema = EMA(trained, optimizer.ema_decay) if optimizer.ema_decay else None
    total = int(epochs) * int(per_epoch)

    def time_fraction() -> float:
        return min((time.time() - t_start) / time_budget_s, 1.0) if time_budget_s else 0.0

    sched = build_scheduler(opt, schedule, optimizer.lr, total, time_fraction=time_fraction if time_budget_s else None)
    res = EpochResult()
    with contextlib.ExitStack() as stack:
        bar = None
        if progress:
            from tqdm.auto import tqdm

            bar = stack.enter_context(tqdm(total=total, unit="step", desc=progress, dynamic_ncols=True))
        for epoch in range(int(epochs)):
            tot, cnt = 0.0, 0
            for b, batch in enumerate(task.batches(epoch)):
                if b >= per_epoch:
                    break
                t0 = time.perf_counter()
                task.train_mode()
                loss, n = task.loss(batch)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                clip_gradients(params, optimizer.grad_clip)
                opt.step()
                sched.step()
                if ema is not None:
                    ema.update(trained)
                res.train_time_s += time.perf_counter() - t0
                res.steps += 1
                lv = float(loss.detach())
                if not math.isfinite(lv):
                    raise DataError(
                        f"the {name} loss became non-finite at step {res.steps} (epoch {epoch + 1}); lower "
                        f"optimizer.lr (now {optimizer.lr:g}) or set optimizer.grad_clip."
                    )
                tot, cnt = tot + lv * n, cnt + n
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(loss=f"{lv:.4f}")
                if time_budget_s and time.time() - t_start > time_budget_s:
                    res.stopped_by_time_limit = True
                    break
            res.epochs = epoch + 1
            row: dict[str, Any] = {
                "epoch": epoch + 1,
                "step": res.steps,
                "train_loss": tot / max(cnt, 1),
                "lr": sched.get_last_lr()[0],
                "train_time_s": round(res.train_time_s, 3),
                "seconds": round(time.time() - t_start, 3),
            }
            last = res.stopped_by_time_limit or epoch + 1 == int(epochs)
            if validate and ((epoch + 1) % int(validate_every) == 0 or last):
                with torch.no_grad(), ema_weights(trained, ema):
                    res.validation = task.validate()
                row.update({f"val_rmse_{c}": v for c, v in res.validation.get("rmse", {}).items()})
                log.info("%s epoch %d: loss %.4g, val RMSE %s", name, epoch + 1, row["train_loss"],
                         res.validation.get("rmse"))
            res.history.append(row)
            header = list(dict.fromkeys(k for r in res.history for k in r))
            atomic_write_text(Path(metrics_csv), csv_text(header, res.history))
            if res.stopped_by_time_limit:
                break
    if ema is not None:  # the saved weights are the EMA weights, as for task: forecast
        trained.load_state_dict(ema.shadow)
    return res
