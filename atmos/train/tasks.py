"""``atmos.train.fit``: load a config and hand it to the trainer of its ``task``.

=============  ===========================================  ======================
task           trainer                                      resumable
=============  ===========================================  ======================
``forecast``   :func:`atmos.train.loop.fit_forecast`        yes (``--resume``)
``decoder``    :func:`atmos.train.decoder.fit_decoder`      no
``finetune``   :func:`atmos.train.decoder.fit_decoder`      no
``downscale``  :func:`atmos.train.downscale.fit_downscaler`  no
=============  ===========================================  ======================

The trainers share :mod:`atmos.train.core` (optimizer, schedule, EMA, logs, area
weights, validation RMSE) and do not import each other; this module is the only one
that knows all of them.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from atmos.errors import ConfigError
from atmos.io.paths import check_writable
from atmos.train.config import TrainConfig, load_config
from atmos.train.core import FitResult

__all__ = ["fit"]


def fit(
    config: TrainConfig | Mapping[str, Any] | str | os.PathLike,
    *,
    overrides: Sequence[str] = (),
    resume: bool | str | os.PathLike | None = None,
    deadline: float | None = None,
    stop_after: int | None = None,
) -> FitResult:
    """Train what a config describes (see :mod:`atmos.train.config`), for any ``task``.

    Parameters
    ----------
    config : TrainConfig, mapping or path to YAML
    overrides : sequence of str
        ``key=value`` overrides applied on top (``optimizer.lr=3e-4``).
    resume : bool, path or None
        ``task: forecast`` only. ``True``/``"auto"``: continue from the run's last
        checkpoint if there is one (else start fresh); a path: continue from that
        checkpoint or run folder. Continuing reproduces the uninterrupted run bit for
        bit on CPU (same number of processes).
    deadline : float, optional
        ``task: forecast``: Unix time at which to checkpoint and stop (default: env
        ``ATMOS_DEADLINE``, set by the ``atmos slurm`` scripts).
    stop_after : int, optional
        ``task: forecast``: checkpoint and stop after this many optimizer steps in this call.

    Returns
    -------
    FitResult

    Raises
    ------
    ConfigError
        Invalid config, an unwritable ``output.dir``, or ``resume`` for a task other
        than ``forecast``.
    """
    cfg = load_config(config, overrides)
    check_writable(Path(cfg.output.dir) / str(cfg.output.name or "run"), "output.dir",
                   hint="Set output.dir to a writable folder")
    if cfg.task == "forecast":
        from atmos.train.loop import fit_forecast

        return fit_forecast(cfg, resume=resume, deadline=deadline, stop_after=stop_after)
    if resume not in (None, False):
        raise ConfigError(
            f"task: {cfg.task} runs are short and cannot be resumed; rerun without --resume "
            "(with output.overwrite=true to replace the run folder)."
        )
    if cfg.task in ("decoder", "finetune"):
        from atmos.train.decoder import fit_decoder

        res = fit_decoder(cfg)
        return FitResult(res.run_dir, res.checkpoint, "finished", res.epochs, res.steps, res.history,
                         dict(res.validation), res.wall_time_s)
    from atmos.train.downscale import fit_downscaler

    t0 = time.time()
    run_dir = fit_downscaler(cfg)
    ckpt = run_dir / "checkpoints" / "final"
    training: dict[str, Any] = {}
    if (ckpt / "checkpoint.json").is_file():
        training = json.loads((ckpt / "checkpoint.json").read_text()).get("training") or {}
    val = {"rmse": dict(training.get("val_rmse") or {})} if training.get("val_rmse") else {}
    return FitResult(run_dir, ckpt if ckpt.exists() else None, "finished", int(training.get("epoch", 0)),
                     int(training.get("global_step", 0)), list(training.get("history") or []), val,
                     time.time() - t0)
