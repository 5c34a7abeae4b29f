"""The forecast trainer (``task: forecast``): :func:`fit_forecast`, called by :func:`atmos.train.fit`.

One optimizer step = one batch of windows rolled out for K steps (the curriculum's
K for the epoch), with the gradient mode of ``multistep.gradient``:

* ``detached`` (CREDIT): the input of each step is the previous prediction,
  detached; each step's loss is backpropagated as soon as it is computed, so memory
  does not grow with K;
* ``full`` (anemoi): gradients flow through the whole rollout (one backward);
* ``truncated:N``: the rollout is cut into chunks of N steps; gradients flow within a
  chunk, the state is detached between chunks, each chunk is backpropagated on its own.

Normalization
-------------
The windows are normalized per channel with the *state* statistics of the training
period (``(x - mean) / std``; :class:`atmos.io.windows.WindowDataset` does this).
With ``data.normalization: residual`` (default) the model output is the increment
in units of the residual std: ``x[t+1] = x[t] + delta * residual_std`` (``delta *
residual_std / std`` in normalized units) and the loss is the state error divided by
the residual std — the MSE of the normalized residual. With ``state`` the model output
is the normalized next state and the loss is the state error divided by the std.
The statistics, per channel and per variable, go into every checkpoint.

Distributed
-----------
Under ``torchrun`` the model is wrapped in DistributedDataParallel, each rank reads
its share of every epoch's permutation (:class:`ResumableDistributedSampler`), and
only rank 0 logs and writes checkpoints. A single process needs no changes.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import shutil
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from atmos.errors import ConfigError, DataError, SourceError
from atmos.io.normalizer import Normalizer
from atmos.models.checkpoint import load_weights
from atmos.train import checkpoint as ckpt_io
from atmos.train import distributed as dist_utils
from atmos.train.compute import make_scaler, prepare_modules, resolve_precision
from atmos.train.config import TrainConfig, config_to_dict, parse_gradient_mode, save_config
from atmos.train.core import (
    EMA,
    CsvLog,
    FitResult,
    StopFlag,
    build_optimizer,
    build_scheduler,
    clip_gradients,
    ema_weights,
    resolve_device,
    seed_everything,
    squared_error_sum,
    warmup_cosine,
)
from atmos.train.data import DataBundle, prepare_data, stats_from_json, stats_to_json
from atmos.train.losses import build_loss, channel_weights

__all__ = [
    "EMA",
    "FitResult",
    "RolloutResult",
    "build_model",
    "check_model_name",
    "fit_forecast",
    "prepare_data",
    "rollout",
    "seed_everything",
    "warmup_cosine",
]

#: Old private names, kept for callers (tests, scripts) that import them from here.
_stats_from_json = stats_from_json
_stats_to_json = stats_to_json

log = logging.getLogger("atmos.train")

_DATA_KEYS = ("inputs", "targets", "forcings", "statics")


# =============================================================================================
# small utilities
# =============================================================================================


def _detach_tree(x: Any) -> Any:
    if isinstance(x, torch.Tensor):
        return x.detach()
    if isinstance(x, (tuple, list)):
        return type(x)(_detach_tree(v) for v in x)
    return x


# =============================================================================================
# multi-step rollout (the core of the gradient modes)
# =============================================================================================


@dataclass
class RolloutResult:
    """Predictions (``[B, C, *grid]`` per step), weighted per-step losses (detached) and their sum."""

    predictions: list[torch.Tensor]
    step_losses: list[torch.Tensor]
    loss: torch.Tensor | None


def rollout(
    step: Callable[[torch.Tensor, int, Any], tuple[torch.Tensor, Any]],
    history: torch.Tensor,
    steps: int,
    *,
    chunk: int | None = None,
    targets: torch.Tensor | None = None,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
    step_weights: Sequence[float] | None = None,
    backward: Callable[[torch.Tensor], None] | None = None,
    chunk_context: Callable[[bool], contextlib.AbstractContextManager] | None = None,
) -> RolloutResult:
    """Roll a one-step model out for ``steps`` steps with a gradient mode.

    Parameters
    ----------
    step : callable ``(history [B, H, C, *grid], k, carry) -> (next [B, C, *grid], carry)``
        One model step (``k`` is the 0-based step, for forcings); ``carry`` is any
        recurrent state (None at the start).
    history : Tensor ``[B, H, C, *grid]``
        The input states (oldest first).
    steps : int
        Rollout length K.
    chunk : int or None
        Gradient chunk length: 1 = ``detached``, N = ``truncated:N``, None = ``full``.
        At the end of each chunk the state fed to the next step (and ``carry``) is
        detached, so no gradient crosses a chunk boundary.
    targets : Tensor ``[B, >=K, C, *grid]``, optional
        Targets of each step, for ``loss_fn``.
    loss_fn : callable ``(prediction, target) -> scalar``, optional
    step_weights : sequence of float, optional
        Weights ``w_k``; the loss is ``sum_k w_k L_k / sum_k w_k`` (default equal).
    backward : callable ``(loss) -> None``, optional
        Called on each chunk's (weighted) loss at the end of the chunk, e.g.
        ``lambda l: l.backward()``; the chunk's graph is freed before the next chunk.
        Without it the summed loss keeps its graph (call ``.backward()`` yourself).
    chunk_context : callable ``(is_last_chunk) -> context manager``, optional
        Entered around each chunk's forward and backward (DDP's ``no_sync`` for all
        chunks but the last one).

    Returns
    -------
    RolloutResult
    """
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    w = [1.0] * steps if step_weights is None else [float(v) for v in step_weights[:steps]]
    if len(w) < steps:
        raise ConfigError(f"{len(w)} step weights for {steps} rollout steps; give one per step.")
    wsum = sum(w)
    clen = steps if chunk is None else max(1, int(chunk))
    preds: list[torch.Tensor] = []
    step_losses: list[torch.Tensor] = []
    total: torch.Tensor | None = None
    hist, carry = history, None
    starts = list(range(0, steps, clen))
    for ci, k0 in enumerate(starts):
        last = ci == len(starts) - 1
        ctx = chunk_context(last) if chunk_context is not None else contextlib.nullcontext()
        with ctx:
            acc: torch.Tensor | None = None
            pred = None
            for k in range(k0, min(steps, k0 + clen)):
                pred, carry = step(hist, k, carry)
                preds.append(pred)
                if loss_fn is not None and targets is not None:
                    lk = loss_fn(pred, targets[:, k]) * (w[k] / wsum)
                    step_losses.append(lk.detach())
                    acc = lk if acc is None else acc + lk
                if k < steps - 1:
                    hist = torch.cat([hist[:, 1:], pred.unsqueeze(1).to(hist.dtype)], dim=1)
                    if k == k0 + clen - 1:  # chunk boundary: no gradient into the next chunk
                        hist = hist.detach()
            if acc is not None:
                if backward is not None:
                    backward(acc)
                    acc = acc.detach()
                total = acc if total is None else total + acc
            carry = _detach_tree(carry)
    return RolloutResult(preds, step_losses, total)


# =============================================================================================
# model
# =============================================================================================


def check_model_name(name: str) -> None:
    """Raise ConfigError listing the registered models if ``name`` is not one of them."""
    from atmos.models.registry import MODELS

    if name not in MODELS:
        import difflib

        close = difflib.get_close_matches(str(name), list(MODELS), n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise ConfigError(f"unknown model name {name!r} (config model.name); valid names are {sorted(MODELS)}.{hint}")


def _registry_build(name: str, params: Mapping[str, Any]) -> nn.Module:
    from atmos import models

    build = getattr(models, "build", None)
    if build is None:  # pragma: no cover - partial installs
        raise ConfigError("atmos.models has no build(); cannot construct models by name.")
    return build(name, **dict(params))


def _forcing_names(cfg: TrainConfig, data: DataBundle) -> list[str]:
    """The model's forcing channels: the data's, then ``data.noise_channels`` noise inputs."""
    from atmos.models.noise import noise_names

    return [*data.schema.names("forcings"), *noise_names(cfg.data.noise_channels)]


def _model_params(cfg: TrainConfig, data: DataBundle) -> dict[str, Any]:
    """The config's model params completed with the channels and grid of the data.

    The model's config class says which of its fields describe the data
    (:meth:`atmos.models.schema.ChannelConfig.data_params`); values set in ``model.params`` win
    (and are checked against the data by :func:`build_model`).
    """
    from atmos.models.registry import config_class
    from atmos.models.schema import ChannelConfig

    cfg_cls = config_class(cfg.model.name)
    if not (isinstance(cfg_cls, type) and issubclass(cfg_cls, ChannelConfig)):
        raise ConfigError(
            f"model {cfg.model.name!r} has config class {cfg_cls.__name__}, which does not derive from "
            "atmos.models.schema.ChannelConfig, so atmos train cannot build it for the data's channels and grid; "
            "derive its config from ChannelConfig (and override grid_params) to train it."
        )
    params = dict(cfg.model.params)
    ch = data.schema
    channels = {"inputs": ch.names("inputs"), "outputs": ch.names("targets"),
                "forcings": _forcing_names(cfg, data), "statics": ch.names("statics")}
    filled = cfg_cls.data_params(channels, cfg.data.history, data.grid.to_dict())
    if "inputs" in params or "outputs" in params:  # user-chosen prognostic channels: checked, not completed
        filled.pop("inputs")
        filled.pop("outputs")
    for k, v in filled.items():
        params.setdefault(k, v)
    return params


def build_model(cfg: TrainConfig, data: DataBundle) -> tuple[nn.Module, dict[str, Any]]:
    """Build ``cfg.model`` for the data's channels and grid; check that they match.

    Returns
    -------
    model, params
        The model and the full constructor params (stored in checkpoints).

    Raises
    ------
    ConfigError
        Unknown model name (the registry lists the valid ones), channel lists in
        ``model.params`` that differ from the data (the message names the channels),
        or a grid the model is not built for.
    """
    check_model_name(cfg.model.name)
    params = _model_params(cfg, data)
    model = _registry_build(cfg.model.name, params)
    try:
        from atmos.models.registry import config_to_dict as model_config_to_dict

        full = model_config_to_dict(model)
        full.pop("name", None)
        params = full
    except ConfigError:  # a model registered without a config dataclass: keep what was passed
        pass
    schema = getattr(model, "schema", None)
    ch = data.schema
    if schema is not None:
        schema.check_against(
            {
                "inputs": ch.names("inputs"),
                "outputs": ch.names("targets"),
                "forcings": _forcing_names(cfg, data),
                "statics": ch.names("statics"),
                "history": cfg.data.history,
            },
            label="the data (config data.variables/levels/forcings/statics/history)",
        )
    mgrid = getattr(model, "grid", None)
    if mgrid is not None and tuple(mgrid) != tuple(data.grid_shape):
        raise ConfigError(
            f"model {cfg.model.name!r} is built for grid shape {tuple(mgrid)} but the data tensors are "
            f"{tuple(data.grid_shape)} ({data.grid!r}, layout {data.layout}). Set data.grid/data.nside to the "
            "model's grid (a HEALPix model needs data.grid: healpix) or drop the grid keys from model.params."
        )
    return model, params


# =============================================================================================
# metrics logging
# =============================================================================================


TRAIN_COLUMNS = ("epoch", "global_step", "split", "loss", "lr", "rollout_steps", "samples_per_s", "elapsed_s")
VAL_COLUMNS = ("epoch", "global_step", "channel", "units", "lead_hours", "rmse", "persistence_rmse")


# =============================================================================================
# the trainer
# =============================================================================================


class _Trainer:
    def __init__(self, cfg: TrainConfig, info: dist_utils.DistInfo, resume: Any, deadline: float | None,
                 stop_after: int | None) -> None:
        self.cfg = cfg
        self.info = info
        self.device = resolve_device(cfg.device, info.local_rank)
        self.amp_dtype = resolve_precision(cfg.precision, self.device)
        self.deadline = deadline
        self.stop_after = stop_after
        self.run_dir = Path(cfg.output.dir) / str(cfg.output.name)
        self.t_start = time.perf_counter()
        self.elapsed_before = 0.0

        if cfg.deterministic and self.device.type == "cuda":  # CPU kernels are deterministic already
            os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
            torch.use_deterministic_algorithms(True, warn_only=True)
            torch.backends.cudnn.benchmark = False
        seed_everything(cfg.seed + info.rank)

        check_model_name(cfg.model.name)  # fail before the data are read

        # --- resume point ---
        self.resume_ckpt: ckpt_io.Checkpoint | None = self._find_resume(resume)
        # --- warm start (a new run only) ---
        self.init_ckpt: ckpt_io.Checkpoint | None = None
        if self.resume_ckpt is None and cfg.model.init_from:
            self.init_ckpt = self._find_init(cfg.model.init_from)
        stats = None
        source = self.resume_ckpt or self.init_ckpt
        if source is not None and source.meta.get("stats"):
            stats = stats_from_json(source.meta["stats"])
        self._check_run_dir()

        # --- data ---
        self.data = prepare_data(cfg, stats=stats)
        self.step_seconds = self.data.time_step.total_seconds()
        chans = self.data.schema.groups["targets"]
        # the one normalization of atmos: the Forecaster rebuilds the same object from the checkpoint
        self.normalizer = Normalizer(chans, cfg.data.normalization).to(self.device)
        self.phys_mean, self.phys_std = self.normalizer.mean, self.normalizer.std
        self.phys_scale = self.normalizer.scale  # loss unit per channel, physical
        self.ratio = self.normalizer.ratio  # loss unit per channel, normalized
        self.channel_names = [c.name for c in chans]
        self.channel_units = [c.units or "" for c in chans]
        cw = channel_weights([(c.variable, c.level) for c in chans], cfg.loss.variable_weights, cfg.loss.level_weighting)
        self.channel_w = cw.to(self.device)
        self.criterion = build_loss(
            cfg.loss.name, self.data.grid, self.data.area, cw, self.ratio.cpu(), cfg.loss.lmax
        ).to(self.device)
        self.area = self.data.area.to(self.device)
        self.seasonal = self._init_seasonal() if self.init_ckpt is not None else self._fit_seasonal()

        # --- model / optimizer / schedule ---
        self.model, self.model_params = build_model(cfg, self.data)
        if self.init_ckpt is not None:
            self._warm_start(self.init_ckpt)
        self.model.to(self.device)
        self._prepare_run_dir()  # only now: a config error leaves nothing behind
        self.n_params = sum(p.numel() for p in self.model.parameters())
        self.mods = prepare_modules(self.model, cfg.compute, info, self.device, self.amp_dtype)
        self.accum = int(cfg.compute.grad_accumulation)
        o = cfg.optimizer
        self.optimizer = build_optimizer(self.model.parameters(), o)
        self.sampler = dist_utils.ResumableDistributedSampler(
            self._n_train(), info.world_size, info.rank, shuffle=True, seed=cfg.seed
        )
        per_rank = self.sampler.num_samples // (cfg.data.batch_size * self.accum)
        if per_rank < 1:
            raise ConfigError(
                f"data.batch_size {cfg.data.batch_size} x compute.grad_accumulation {self.accum} (per process, "
                f"x{info.world_size} processes) is larger than the {self._n_train()} training windows; lower them or "
                "use a longer data.period."
            )
        self.steps_per_epoch = per_rank
        if cfg.schedule.max_steps_per_epoch:
            self.steps_per_epoch = min(per_rank, cfg.schedule.max_steps_per_epoch)
        self.total_steps = self.steps_per_epoch * cfg.schedule.epochs
        self.scheduler = build_scheduler(self.optimizer, cfg.schedule, o.lr, self.total_steps)
        self.scaler = make_scaler(self.amp_dtype, self.device)
        self.ema = EMA(self.model, o.ema_decay) if o.ema_decay else None
        self.chunk = parse_gradient_mode(cfg.multistep.gradient)

        self.epoch = 0
        self.position = 0  # batches done in the current epoch
        # running sum and count of the current epoch's training losses: checkpointed, so that the epoch's
        # mean after a mid-epoch resume covers every step of the epoch
        self.epoch_loss: list[float | int] = [0.0, 0]
        self.global_step = 0
        self.history: list[dict[str, Any]] = []
        self.last_val: dict[str, Any] = {}
        if self.resume_ckpt is not None:
            self._load_resume(self.resume_ckpt)

        # --- logging ---
        self.writer = None
        if info.is_main:
            keep = self.global_step if self.resume_ckpt is not None else None
            self.train_log = CsvLog(self.run_dir / "metrics.csv", TRAIN_COLUMNS, keep)
            self.val_log = CsvLog(self.run_dir / "validation.csv", VAL_COLUMNS, keep)
            save_config(cfg, self.run_dir / "config.yaml")
            if cfg.output.tensorboard:
                try:
                    from torch.utils.tensorboard import SummaryWriter
                except ImportError as err:
                    raise ConfigError(
                        "output.tensorboard is true but TensorBoard is not installed: pip install tensorboard "
                        "(or set output.tensorboard: false)."
                    ) from err
                self.writer = SummaryWriter(str(self.run_dir / "tensorboard"))

    # -- setup helpers ------------------------------------------------------------------------
    def _n_train(self) -> int:
        return len(range(0, len(self.data.train), self.cfg.data.sample_stride))

    def _train_index(self, i: int) -> int:
        return i * self.cfg.data.sample_stride

    def _find_resume(self, resume: Any) -> ckpt_io.Checkpoint | None:
        if resume in (None, False):
            return None
        if resume in (True, "auto", "last", "latest"):
            path = ckpt_io.find_checkpoint(Path(self.cfg.output.dir) / str(self.cfg.output.name))
            if path is None:
                if self.info.is_main:
                    log.info("resume: no checkpoint in %s yet; starting a new run",
                             Path(self.cfg.output.dir) / str(self.cfg.output.name))
                return None
        else:
            path = ckpt_io.find_checkpoint(resume)
            if path is None:
                raise ConfigError(f"--resume {resume!r}: no atmos checkpoint there (expected checkpoint.json).")
        ck = ckpt_io.load_checkpoint(path, "cpu")
        if self.info.is_main:
            log.info("resuming from %s (epoch %s, step %s)", path, ck.meta["training"]["epoch"],
                     ck.meta["training"]["global_step"])
        return ck

    def _find_init(self, path: str) -> ckpt_io.Checkpoint:
        found = ckpt_io.find_checkpoint(path)
        if found is None:
            raise ConfigError(
                f"model.init_from {path!r}: no atmos checkpoint there (expected a folder with checkpoint.json, or "
                "a run folder with checkpoints/). Give the checkpoint folder of the run to start from."
            )
        ck = ckpt_io.load_checkpoint(found, "cpu")
        name = ck.meta.model.name if ck.meta.model is not None else None
        if name != self.cfg.model.name:
            raise ConfigError(
                f"model.init_from {path!r} is a {name!r} model, the config builds {self.cfg.model.name!r}: set "
                f"model.name: {name} (and its model.params) or start from a {self.cfg.model.name!r} checkpoint."
            )
        outputs = (ck.meta.normalization or {}).get("outputs", self.cfg.data.normalization)
        if self.cfg.data.normalization != outputs:
            raise ConfigError(
                f"model.init_from {path!r} predicts normalization {outputs!r} outputs, this run sets "
                f"data.normalization={self.cfg.data.normalization!r}: set data.normalization={outputs} to "
                "warm-start from it."
            )
        if self.info.is_main:
            log.info("warm start from %s (%s, step %s)", found, name, (ck.meta.get("training") or {}).get("global_step"))
        return ck

    def _init_seasonal(self) -> Any:
        """The warm-start source's seasonal cycle (the weights were trained on its anomalies)."""
        from atmos.io.seasonal import load_seasonal

        assert self.init_ckpt is not None
        cyc = load_seasonal(self.init_ckpt.path, self.init_ckpt.meta)
        have = 0 if cyc is None else cyc.harmonics
        if have != int(self.cfg.data.seasonal_harmonics or 0):
            raise ConfigError(
                f"model.init_from {str(self.init_ckpt.path)!r} predicts anomalies from a seasonal cycle of {have} "
                f"harmonics, this run sets data.seasonal_harmonics={self.cfg.data.seasonal_harmonics}: set "
                f"data.seasonal_harmonics={have} to warm-start from it."
            )
        if cyc is not None:
            names_in = self.data.schema.names("inputs")
            if list(cyc.names) != list(names_in):
                raise ConfigError(
                    f"model.init_from's seasonal cycle covers {list(cyc.names)}, this run's inputs are {names_in}: "
                    "use the source's data.variables and data.levels."
                )
            cyc = cyc.to(self.device)
        return cyc

    def _warm_start(self, ck: ckpt_io.Checkpoint) -> None:
        from atmos.models.schema import ChannelSchema
        from atmos.models.warmstart import warm_start_state

        channels = ck.meta.model_channels or {}
        src = ChannelSchema.from_dict({k: channels[k] for k in ("inputs", "outputs", "forcings", "statics", "history")
                                       if k in channels})
        state, rep = warm_start_state(self.model, self.model.schema, ck.model_state, src,
                                      source=f"model.init_from {str(ck.path)!r}")
        load_weights(self.model, state, source=f"model.init_from {str(ck.path)!r}")
        if self.info.is_main:
            log.info("warm start: %d tensors copied, %d input layers remapped, new inputs %s",
                     len(rep.copied), len(rep.remapped), sorted({lab.split("@")[0] for lab in rep.new_inputs}))

    def _check_run_dir(self) -> None:
        if self.resume_ckpt is None and not self.cfg.output.overwrite and ckpt_io.list_checkpoints(self.run_dir):
            raise ConfigError(
                f"run directory {str(self.run_dir)!r} already has checkpoints; pass --resume to continue "
                "it, choose another output.name, or set output.overwrite=true to start over."
            )

    def _prepare_run_dir(self) -> None:
        if self.info.is_main:
            if self.resume_ckpt is None and ckpt_io.list_checkpoints(self.run_dir):  # overwrite: true
                shutil.rmtree(self.run_dir / "checkpoints", ignore_errors=True)
            self.run_dir.mkdir(parents=True, exist_ok=True)
            (self.run_dir / "DONE").unlink(missing_ok=True)
            (self.run_dir / "STOPPED").unlink(missing_ok=True)
        dist_utils.barrier()

    def _load_resume(self, ck: ckpt_io.Checkpoint) -> None:
        meta = ck.meta
        ck_model = meta.model.name if meta.model is not None else None
        if ck_model != self.cfg.model.name:
            raise ConfigError(
                f"cannot resume: the checkpoint is a {ck_model!r} model, the config builds "
                f"{self.cfg.model.name!r}."
            )
        channels = meta.model_channels
        if channels and hasattr(self.model, "schema"):
            self.model.schema.check_against(
                {k: channels.get(k) for k in ("inputs", "outputs", "forcings", "statics", "history")},
                label="the checkpoint",
            )
        state = ck.training_state("cpu")
        if state is None:
            raise ConfigError(f"checkpoint {str(ck.path)!r} has no training_state.pt: it cannot be resumed.")
        weights = state.get("raw_model") or ck.model_state
        saved_fsdp = state.get("parallel") == "fsdp"
        if saved_fsdp != (self.mods.parallel == "fsdp"):
            raise ConfigError(
                f"cannot resume: checkpoint {str(ck.path)!r} was written with compute.parallel "
                f"{'fsdp' if saved_fsdp else 'ddp (or one process)'}, this run uses {self.mods.parallel!r}; their "
                "optimizer states differ in layout. Resume with the run's own compute.parallel and process count."
            )
        try:
            if self.mods.parallel == "fsdp":
                self.mods.load_model_state(weights)
            else:
                load_weights(self.model, weights, source=f"checkpoint {str(ck.path)!r}")
        except (ConfigError, SourceError, RuntimeError) as err:
            raise ConfigError(
                f"cannot resume: {err} The model is built from the config: resume with the run's own config.yaml."
            ) from None
        self.mods.load_optimizer_state(self.optimizer, state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        if state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        if self.ema is not None:
            if state.get("ema"):
                self.ema.load_state_dict(state["ema"])
            else:
                self.ema = EMA(self.model, self.cfg.optimizer.ema_decay)
        tr = meta["training"]
        self.epoch = int(tr["epoch"])
        self.position = int(tr["position"])
        el = state.get("epoch_loss", (0.0, 0))
        self.epoch_loss = [float(el[0]), int(el[1])]
        self.global_step = int(tr["global_step"])
        self.elapsed_before = float(tr.get("train_time_s", 0.0))
        self.history = list(state.get("history", []))
        rng = state.get("rng", [])
        if len(rng) == self.info.world_size:
            ckpt_io.set_rng_state(rng[self.info.rank])
        else:
            log.warning("checkpoint holds RNG states of %d processes, this run has %d: reseeding "
                        "(the run will not be bit-identical to an uninterrupted one)", len(rng), self.info.world_size)
            seed_everything(self.cfg.seed + self.info.rank + 7919 * self.global_step)

    # -- batches --------------------------------------------------------------------------------
    def _loader(self, epoch: int, start_batch: int) -> Iterator[dict[str, torch.Tensor]]:
        from torch.utils.data import DataLoader, Subset

        B = self.cfg.data.batch_size
        self.sampler.set_epoch(epoch, start=start_batch * B)
        ds = self.data.train
        if self.cfg.data.sample_stride > 1:
            ds = Subset(ds, list(range(0, len(ds), self.cfg.data.sample_stride)))
        g = torch.Generator()
        g.manual_seed(self.cfg.seed + 104729 * epoch)
        return iter(
            DataLoader(
                ds, batch_size=B, sampler=self.sampler, drop_last=True, num_workers=self.cfg.data.num_workers,
                generator=g, persistent_workers=False, pin_memory=self.device.type == "cuda",
            )
        )

    def _to_device(self, batch: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        nb = self.device.type == "cuda"
        return {k: v.to(self.device, non_blocking=nb) for k, v in batch.items()}

    def _step_fn(self, model: nn.Module, batch: Mapping[str, torch.Tensor], noise_seed: int = 0):
        """One model step ``(hist, k, carry) -> (next, carry)`` on ``batch``; with noise inputs
        (``data.noise_channels``) the noise of step ``k`` is drawn from ``(noise_seed, k)``."""
        H = self.cfg.data.history
        forc = batch["forcings"]
        stat = batch["statics"]
        n_noise = self.cfg.data.noise_channels
        has_f = forc.shape[2] > 0 or n_noise > 0
        has_s = stat.shape[2] > 0
        amp = self.amp_dtype
        norm = self.normalizer

        def step(hist: torch.Tensor, k: int, carry: Any) -> tuple[torch.Tensor, Any]:
            f = forc[:, k : k + H + 1] if has_f else None
            if n_noise:
                from atmos.models.noise import draw_noise

                z = draw_noise(hist.shape[0], H + 1, n_noise, hist.shape[3:], noise_seed * 1_000_003 + k, hist.device)
                f = torch.cat([f.expand(hist.shape[0], *f.shape[1:]), z.to(f.dtype)], dim=2)
            with torch.autocast(self.device.type, dtype=amp, enabled=amp is not None):
                out, carry = model(hist, f, stat if has_s else None, carry)
            out = out.float()
            nxt = norm.step(hist[:, -1].float(), out)
            return nxt, carry

        return step

    def _fit_seasonal(self) -> Any:
        """The seasonal cycle of ``data.seasonal_harmonics`` fit on the training windows' inputs, or None."""
        n = self.cfg.data.seasonal_harmonics
        if not n:
            return None
        from atmos.io.seasonal import fit_seasonal_cycle

        names_in = self.data.schema.names("inputs")
        if names_in[: len(self.channel_names)] != self.channel_names:
            raise ConfigError(
                f"data.seasonal_harmonics needs the targets {self.channel_names} to be the first input channels; "
                f"the inputs are {names_in}. Use the same prognostic variables for both, or seasonal_harmonics: 0."
            )
        times, z = self.data.train.input_series()
        cyc = fit_seasonal_cycle(z, times, int(self.data.time_step.value), n, names_in)
        if self.info.is_main:
            log.info("anomalies from a seasonal cycle of %d annual harmonics x %d times of day, fit on %d times",
                     n, cyc.slots, len(times))
        return cyc.to(self.device)

    def _anomalies(self, b: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], torch.Tensor | None]:
        """With a seasonal cycle: the batch's inputs/targets minus ``c(t)``, and the offsets
        ``[B, history + lead, C_in, *grid]`` (else the batch itself and None)."""
        if self.seasonal is None:
            return b, None
        H, L = b["inputs"].shape[1], b["targets"].shape[1]
        off = self.seasonal.window_offsets(b["time"], H, L).to(b["inputs"].dtype)
        C = b["targets"].shape[2]
        return {**b, "inputs": b["inputs"] - off[:, :H], "targets": b["targets"] - off[:, H:, :C]}, off

    # -- one optimizer step ---------------------------------------------------------------------
    def train_step(self, batches: Sequence[Mapping[str, torch.Tensor]], K: int) -> float:
        """One optimizer step on ``compute.grad_accumulation`` micro-batches; the mean loss."""
        self.mods.step.train()
        self.optimizer.zero_grad(set_to_none=True)
        n = len(batches)
        total = 0.0
        for m, batch in enumerate(batches):
            total += self._micro_step(batch, K, m, n)
        if self.cfg.optimizer.grad_clip:
            self.scaler.unscale_(self.optimizer)
            clip_gradients(self.model.parameters(), self.cfg.optimizer.grad_clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        if self.ema is not None:
            self.ema.update(self.model)
        return total / n

    def _micro_step(self, batch: Mapping[str, torch.Tensor], K: int, m: int, n: int) -> float:
        """Forward and backward of micro-batch ``m`` of ``n`` (loss scaled by 1/n; the gradients
        are all-reduced in the backward of the last chunk of the last micro-batch only)."""
        b, _ = self._anomalies(self._to_device(batch))
        if self.cfg.loss.name == "crps":  # members of each window side by side: [B * M, ...]
            M = self.cfg.loss.members
            b = {**b, **{k: b[k].repeat_interleave(M, 0) for k in ("inputs", "forcings", "statics")}}
        step = self._step_fn(self.mods.step, b, noise_seed=int(self.cfg.seed) * 7_919 + 104_729 * self.info.rank
                             + 15_485_863 * self.global_step + 32_452_843 * m)

        def chunk_ctx(last: bool):
            return self.mods.gradient_sync(last and m == n - 1)

        inputs = b["inputs"]
        sigma = self.cfg.multistep.input_noise
        if sigma > 0:
            gen = torch.Generator(device=inputs.device)
            gen.manual_seed(int(self.cfg.seed) * 1_000_003 + 7919 * self.info.rank + self.global_step + 49_979_687 * m)
            noise = torch.randn(inputs.shape, generator=gen, device=inputs.device, dtype=inputs.dtype)
            inputs = inputs + sigma * noise
        scale = 1.0 / n
        res = rollout(
            step, inputs, K, chunk=self.chunk, targets=b["targets"], loss_fn=self.criterion,
            step_weights=self.cfg.multistep.step_weights,
            backward=lambda l: self.scaler.scale(l * scale if n > 1 else l).backward(),
            chunk_context=chunk_ctx,
        )
        return float(res.loss.item())

    # -- validation ----------------------------------------------------------------------------
    @torch.no_grad()
    def validate(self) -> dict[str, Any]:
        """RMSE per channel and lead step in physical units, for the model and persistence.

        RMSE is WeatherBench2's: the square root of the sample mean of the area-weighted
        MSE. ``loss`` is the training loss (same channel weights and units) averaged over
        the validation lead steps with equal weights, so it grows with ``validation.steps``.
        """
        data = self.data
        K = self.cfg.validation.steps
        C = len(self.channel_names)
        idx = data.val_indices[self.info.rank :: self.info.world_size]
        sse = torch.zeros(2, K, C, dtype=torch.float64, device=self.device)
        count = torch.zeros(1, dtype=torch.float64, device=self.device)
        bs = self.cfg.validation.batch_size or self.cfg.data.batch_size
        shape = (1, -1, *([1] * len(data.grid_shape)))
        mean, std = self.phys_mean.view(shape), self.phys_std.view(shape)
        # under FSDP every forward is a collective: every rank runs the same number of batches
        n_batches = -(-len(idx) // bs)
        if self.mods.parallel == "fsdp":
            n_batches = -(-(-(-len(data.val_indices) // self.info.world_size)) // bs)
        with ema_weights(self.model, self.ema) as model:
            for s in range(0, n_batches * bs, bs):
                items = [data.val[i] for i in idx[s : s + bs]]
                if not items:  # FSDP padding batch: run, do not count
                    it0 = data.val[data.val_indices[0]]
                    b0, _ = self._anomalies(self._to_device({k: torch.stack([it0[k]]) for k in (*_DATA_KEYS, "time")}))
                    rollout(self._step_fn(model, b0, noise_seed=int(self.cfg.seed) + s), b0["inputs"], K)
                    continue
                b = self._to_device({k: torch.stack([it[k] for it in items]) for k in (*_DATA_KEYS, "time")})
                b, off = self._anomalies(b)
                H = b["inputs"].shape[1]

                def back(z: torch.Tensor, j: int) -> torch.Tensor:  # physical units at window position j
                    if off is not None:
                        z = z + off[:, j, : z.shape[1]]
                    return z.double() * std + mean

                res = rollout(self._step_fn(model, b, noise_seed=int(self.cfg.seed) + s), b["inputs"], K)
                persist = back(b["inputs"][:, -1, :C], H - 1)
                for k, pred in enumerate(res.predictions):
                    truth = back(b["targets"][:, k], H + k)
                    p = back(pred, H + k)
                    sse[0, k] += squared_error_sum(p, truth, self.area)
                    sse[1, k] += squared_error_sum(persist, truth, self.area)
                count += len(items)
        sse = dist_utils.all_reduce_sum(sse)
        count = dist_utils.all_reduce_sum(count)
        mse = (sse / count.clamp(min=1)).cpu()  # WeatherBench2: RMSE = sqrt(sample mean of the area-weighted MSE)
        rm = mse.sqrt()
        scale = self.phys_scale.double().cpu()
        w = self.channel_w.double().cpu()
        loss = float(((mse[0] / scale**2) * w).sum(-1).div(w.sum()).mean())
        leads = [(k + 1) * self.step_seconds / 3600.0 for k in range(K)]
        return {
            "lead_hours": leads,
            "rmse": {c: rm[0, :, i].tolist() for i, c in enumerate(self.channel_names)},
            "persistence_rmse": {c: rm[1, :, i].tolist() for i, c in enumerate(self.channel_names)},
            "units": dict(zip(self.channel_names, self.channel_units)),
            "loss": loss,
            "samples": int(count.item()),
        }

    # -- checkpoints ----------------------------------------------------------------------------
    def _meta(self, train_loss: float | None) -> dict[str, Any]:
        cfg, d, data = self.cfg, self.cfg.data, self.data
        model_schema = getattr(self.model, "schema", None)
        channels = {
            c.name: {k: getattr(c, k) for k in ("variable", "level", "units", "mean", "std", "residual_mean", "residual_std")}
            for g in ("targets", "forcings", "statics") for c in data.schema.groups[g]
        }
        val = self.last_val
        return {
            "model": {"name": cfg.model.name, "params": self.model_params, "parameters": self.n_params},
            "weights": "ema" if self.ema is not None else "raw",
            "config": config_to_dict(cfg),
            "channels": model_schema.to_dict() if model_schema is not None else None,
            "data_schema": data.schema.to_dict(),
            "variables": list(d.variables),
            "levels": None if d.levels is None else list(d.levels),
            "forcings": list(d.forcings),
            "statics": list(d.statics),
            "grid": {**data.grid.to_dict(), "layout": data.layout, "shape": list(data.grid_shape)},
            "time_step": str(data.time_step),
            "time_step_seconds": self.step_seconds,
            "history": d.history,
            "normalization": {
                "inputs": "state",
                "outputs": d.normalization,
                "description": (
                    "inputs/targets/forcings/statics are (x - mean) / std per channel; derived forcings are not "
                    "normalized. outputs='residual': x[t+1] = x[t] + model_output * residual_std; "
                    "outputs='state': x[t+1] = model_output * std + mean."
                ),
                "channels": channels,
                **({"seasonal": self.seasonal.to_meta()} if self.seasonal is not None else {}),
            },
            "stats": stats_to_json(data.stats),
            "training": {
                "epoch": self.epoch,
                "position": self.position,
                "global_step": self.global_step,
                "steps_per_epoch": self.steps_per_epoch,
                "total_steps": self.total_steps,
                "rollout_steps": self.cfg.multistep.steps_at(self.epoch),
                "world_size": self.info.world_size,
                "train_loss": train_loss,
                "train_time_s": self.elapsed_before + (time.perf_counter() - self.t_start),
                "validation": {
                    "loss": val.get("loss"),
                    "lead_hours": val.get("lead_hours"),
                    "rmse": val.get("rmse"),
                    "persistence_rmse": val.get("persistence_rmse"),
                } if val else None,
            },
        }

    def _extra_files(self) -> dict[str, tuple[str, dict[str, torch.Tensor]]]:
        if self.seasonal is None:
            return {}
        from atmos.io.seasonal import SEASONAL_FILE

        return {"seasonal": (SEASONAL_FILE, {"coef": self.seasonal.coef.detach().cpu()})}

    def save(self, train_loss: float | None) -> Path | None:
        rng = dist_utils.all_gather_objects(ckpt_io.get_rng_state())
        path = None
        model_state = self.mods.model_state()  # under FSDP these two gather the shards: every rank takes part
        optimizer_state = self.mods.optimizer_state(self.optimizer)
        if self.info.is_main:
            weights = self.ema.shadow if self.ema is not None else model_state
            state = {
                "optimizer": optimizer_state,
                "parallel": self.mods.parallel,
                "scheduler": self.scheduler.state_dict(),
                "scaler": self.scaler.state_dict() if self.scaler.is_enabled() else {},
                "ema": self.ema.state_dict() if self.ema is not None else {},
                "raw_model": dict(model_state) if self.ema is not None else {},
                "rng": rng,
                "sampler": {"epoch": self.epoch, "position": self.position, "seed": self.cfg.seed,
                            "batch_size": self.cfg.data.batch_size, "world_size": self.info.world_size},
                "history": self.history,
                "epoch_loss": list(self.epoch_loss),
            }
            path = ckpt_io.save_checkpoint(
                self.run_dir, f"step-{self.global_step:08d}", weights, self._meta(train_loss), state,
                keep=self.cfg.output.keep_checkpoints, extra_files=self._extra_files(),
            )
            log.info("checkpoint written: %s", path)
        dist_utils.barrier()
        return path

    # -- main loop --------------------------------------------------------------------------------
    def _should_stop(self, flag: StopFlag, steps_this_call: int) -> bool:
        local = flag.set
        if self.deadline is not None and time.time() >= self.deadline:
            local = True
        if self.stop_after is not None and steps_this_call >= self.stop_after:
            local = True
        return dist_utils.any_rank(local, self.device)

    def run(self) -> FitResult:
        cfg, info = self.cfg, self.info
        if info.is_main:
            log.info(
                "training %s (%s parameters) on %s, %d process(es); %d windows, %d steps/epoch x %d epochs; run dir %s",
                cfg.model.name, f"{self.n_params:,}", self.device, info.world_size, self._n_train(),
                self.steps_per_epoch, cfg.schedule.epochs, self.run_dir,
            )
        last_path: Path | None = None
        status = "finished"
        steps_this_call = 0
        loss_val: float | None = None
        with StopFlag() as flag:
            while self.epoch < cfg.schedule.epochs:
                K = cfg.multistep.steps_at(self.epoch)
                start = self.position
                it = self._loader(self.epoch, start * self.accum)
                bar = None
                # a bar only on a terminal: in a redirected log (SLURM, nohup) it would write thousands
                # of carriage-return lines; the per-epoch log lines remain
                if info.is_main and cfg.output.progress and sys.stderr.isatty():
                    from tqdm.auto import tqdm

                    bar = tqdm(total=self.steps_per_epoch, initial=start, desc=f"epoch {self.epoch + 1}/{cfg.schedule.epochs}",
                               unit="step", leave=False, dynamic_ncols=True)
                run_loss, run_n, epoch_n = 0.0, 0, 0
                if self.position == 0:
                    self.epoch_loss = [0.0, 0]
                t_log = time.perf_counter()
                t_epoch = time.perf_counter()
                gbs = cfg.data.batch_size * info.world_size * self.accum
                stopped = False
                while self.position < self.steps_per_epoch:
                    if self._should_stop(flag, steps_this_call):
                        stopped = True
                        break
                    batches = [next(it) for _ in range(self.accum)]
                    loss = self.train_step(batches, K)
                    loss_t = dist_utils.all_reduce_mean(torch.tensor([loss], device=self.device))
                    loss = float(loss_t.item())
                    if not math.isfinite(loss):
                        raise DataError(
                            f"the training loss became {loss} at step {self.global_step + 1}; lower optimizer.lr, "
                            "enable optimizer.grad_clip, or check the data for NaNs."
                        )
                    self.position += 1
                    self.global_step += 1
                    steps_this_call += 1
                    run_loss += loss
                    run_n += 1
                    self.epoch_loss[0] += loss
                    self.epoch_loss[1] += 1
                    epoch_n += 1
                    loss_val = loss
                    if bar is not None:
                        bar.update(1)
                        dt = time.perf_counter() - t_epoch
                        bar.set_postfix(loss=f"{loss:.4g}", lr=f"{self.scheduler.get_last_lr()[0]:.2e}", K=K,
                                        samples_s=f"{epoch_n * gbs / max(dt, 1e-9):.1f}")
                    if self.global_step % cfg.output.log_every_steps == 0 and info.is_main:
                        now = time.perf_counter()
                        row = {
                            "epoch": self.epoch, "global_step": self.global_step, "split": "train",
                            "loss": run_loss / run_n, "lr": self.scheduler.get_last_lr()[0], "rollout_steps": K,
                            "samples_per_s": run_n * gbs / max(now - t_log, 1e-9),
                            "elapsed_s": self.elapsed_before + now - self.t_start,
                        }
                        self.train_log.write([row])
                        if self.writer is not None:
                            self.writer.add_scalar("train/loss", row["loss"], self.global_step)
                            self.writer.add_scalar("train/lr", row["lr"], self.global_step)
                        run_loss, run_n, t_log = 0.0, 0, now
                    ce = cfg.output.checkpoint_every_steps
                    if ce and self.global_step % ce == 0 and self.position < self.steps_per_epoch:
                        last_path = self.save(loss_val) or last_path
                if bar is not None:
                    bar.close()
                if stopped:
                    status = "stopped"
                    last_path = self.save(loss_val) or last_path
                    break
                # --- end of epoch ---
                epoch_time = time.perf_counter() - t_epoch
                summary: dict[str, Any] = {
                    "epoch": self.epoch + 1, "global_step": self.global_step, "rollout_steps": K,
                    "train_loss": self.epoch_loss[0] / max(1, self.epoch_loss[1]), "epoch_time_s": epoch_time,
                    "samples_per_s": epoch_n * gbs / max(epoch_time, 1e-9),
                }
                do_val = self.data.val is not None and (self.epoch + 1) % cfg.validation.every_epochs == 0
                if do_val or self.data.val is not None and self.epoch + 1 == cfg.schedule.epochs:
                    self.last_val = self.validate()
                    summary["val_loss"] = self.last_val["loss"]
                    if info.is_main:
                        self._log_validation(self.last_val)
                self.epoch += 1
                self.position = 0
                summary["elapsed_s"] = self.elapsed_before + time.perf_counter() - self.t_start
                self.history.append(summary)
                if info.is_main:
                    self.train_log.write([{
                        "epoch": summary["epoch"], "global_step": self.global_step, "split": "epoch",
                        "loss": summary["train_loss"], "lr": self.scheduler.get_last_lr()[0], "rollout_steps": K,
                        "samples_per_s": summary["samples_per_s"], "elapsed_s": summary["elapsed_s"],
                    }])
                    if "val_loss" in summary:
                        self.train_log.write([{
                            "epoch": summary["epoch"], "global_step": self.global_step, "split": "val",
                            "loss": summary["val_loss"], "elapsed_s": summary["elapsed_s"],
                        }])
                    log.info("epoch %d/%d: train loss %.4g%s (%.1f s, %.1f samples/s)", summary["epoch"],
                             cfg.schedule.epochs, summary["train_loss"],
                             f", val loss {summary['val_loss']:.4g}" if "val_loss" in summary else "",
                             epoch_time, summary["samples_per_s"])
                last_path = self.save(summary["train_loss"]) or last_path
        if status == "finished" and info.is_main:
            ckpt_io.atomic_write_text(self.run_dir / "DONE", f"finished at step {self.global_step}\n")
        elif status == "stopped" and info.is_main:
            # tells a batch script (atmos slurm) that this process stopped cleanly with a checkpoint
            ckpt_io.atomic_write_text(self.run_dir / "STOPPED", f"stopped at step {self.global_step}\n")
        if self.writer is not None:
            self.writer.close()
        return FitResult(
            run_dir=self.run_dir, checkpoint=last_path, status=status, epoch=self.epoch,
            global_step=self.global_step, history=list(self.history), validation=dict(self.last_val),
            wall_time_s=time.perf_counter() - self.t_start,
        )

    def _log_validation(self, val: Mapping[str, Any]) -> None:
        rows = []
        for c in self.channel_names:
            for k, lead in enumerate(val["lead_hours"]):
                rows.append({
                    "epoch": self.epoch + 1, "global_step": self.global_step, "channel": c,
                    "units": val["units"][c], "lead_hours": lead, "rmse": val["rmse"][c][k],
                    "persistence_rmse": val["persistence_rmse"][c][k],
                })
                if self.writer is not None:
                    self.writer.add_scalar(f"val_rmse/{c}/{lead:g}h", val["rmse"][c][k], self.global_step)
        self.val_log.write(rows)
        lead = val["lead_hours"][0]
        parts = [
            f"{c} {val['rmse'][c][0]:.4g} (persistence {val['persistence_rmse'][c][0]:.4g})"
            for c in self.channel_names
        ]
        log.info("validation RMSE at %gh [%d samples]: %s", lead, val["samples"], "; ".join(parts))


# =============================================================================================
# entry point
# =============================================================================================


def fit_forecast(
    cfg: TrainConfig,
    *,
    resume: bool | str | os.PathLike | None = None,
    deadline: float | None = None,
    stop_after: int | None = None,
) -> FitResult:
    """Train ``task: forecast`` (the emulator); :func:`atmos.train.fit` is the entry point for every task.

    Parameters
    ----------
    cfg : TrainConfig
        A loaded, validated config.
    resume : bool, path or None
        ``True``/``"auto"``: continue from the run's last checkpoint if there is one
        (else start fresh); a path: continue from that checkpoint or run folder.
        Continuing reproduces the uninterrupted run bit for bit on CPU (same number
        of processes).
    deadline : float, optional
        Unix time at which to checkpoint and stop (default: env ``ATMOS_DEADLINE``, set
        by the ``atmos slurm`` scripts).
    stop_after : int, optional
        Checkpoint and stop after this many optimizer steps in this call.

    Returns
    -------
    FitResult
    """
    if cfg.task != "forecast":
        raise ConfigError(f"fit_forecast trains task 'forecast', got task {cfg.task!r}; use atmos.train.fit.")
    if deadline is None and os.environ.get("ATMOS_DEADLINE"):
        try:
            deadline = float(os.environ["ATMOS_DEADLINE"])
        except ValueError as err:
            raise ConfigError(f"ATMOS_DEADLINE must be Unix seconds, got {os.environ['ATMOS_DEADLINE']!r}.") from err
    already = torch.distributed.is_available() and torch.distributed.is_initialized()
    info = dist_utils.init_distributed(cfg.device)
    created_group = info.enabled and not already
    try:
        trainer = _Trainer(cfg, info, resume, deadline, stop_after)
        return trainer.run()
    finally:
        if created_group:
            dist_utils.cleanup_distributed()
