"""Train a :class:`~atmos.models.heads.DownscalingHead` on pairs made by conservative coarsening.

The fine data are the truth; the input is their conservative coarsening by ``factor``
(:func:`atmos.io.downscale.coarsen_conservative`). Both are normalized with the
area-weighted statistics of the fine training data (:func:`atmos.io.compute_stats`;
coarsening is a weighted mean, so the same mean/std apply to both). The loss is the
area-weighted MSE of :class:`atmos.train.losses.AreaWeightedMSE` on the fine grid.
The optimizer, the learning-rate schedule, the EMA, gradient clipping and the CSV log
are those of every task (:mod:`atmos.train.core`, from the config's ``optimizer`` and
``schedule``); the head's settings are the ``downscale:`` section
(:class:`atmos.train.config.DownscaleConfig`).

A run folder ``{output.dir}/{output.name}`` holds ``metrics.csv`` (one row per epoch),
``DONE`` and ``checkpoints/final/`` (``model.safetensors`` + ``checkpoint.json`` with
``task: "downscale"``, the head's registry name and params, the per-channel
normalization, the fine and coarse grids). Load it with
:func:`atmos.rollout.downscale.load_downscaler` or use it with
:func:`atmos.rollout.downscale.downscale`.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from atmos.channels import Channel, split_name
from atmos.errors import ConfigError
from atmos.io.stats import safe_std
from atmos.train.config import TrainConfig
from atmos.train.core import area_weights, rmse, seed_everything, squared_error_sum
from atmos.train.epochs import run_epochs

__all__ = ["DownscaleTrainConfig", "fit_downscaler", "load_pairs"]


@dataclass
class DownscaleTrainConfig:
    """Flat settings of :func:`fit_downscaler` for calls from Python (``atmos train`` uses a
    :class:`~atmos.train.config.TrainConfig` with ``task: downscale``).

    :meth:`to_train_config` maps them onto the config sections: ``data``/``time`` ->
    ``data.source``/``data.period``, ``batch_size`` -> ``data.batch_size``,
    ``val_data``/``val_time`` -> ``validation``, ``lr``/``weight_decay`` -> ``optimizer``
    (AdamW with torch's betas (0.9, 0.999), no gradient clipping), ``epochs`` ->
    ``schedule.epochs`` (no warm-up: a cosine from ``lr`` to 0), ``output_dir``/``name``
    -> ``output``, the rest -> ``downscale``.

    Attributes
    ----------
    data : str
        Catalog name or path of the fine training data (canonical lat-lon).
    time : (start, end), optional
        Time range of the training data.
    channels : list of str
        Downscaled channels (``variable`` or ``variable_level``).
    statics : list of str
        Fine-grid static inputs (stored in the checkpoint with the weights).
    factor : int
        Coarsening factor.
    model : dict
        Extra :class:`~atmos.models.heads.DownscalingHeadConfig` fields (hidden, fine_hidden, ...).
    epochs, batch_size, lr, weight_decay : training schedule.
    max_minutes : float, optional
        Stop after this much wall time (counted from the start, data loading included);
        the cosine schedule then follows whichever of steps or time runs out first, so
        the learning rate is annealed to 0 by the time limit.
    val_data, val_time : optional validation data (area-weighted RMSE per channel each epoch).
    seed : int
    output_dir, name : run folder ``{output_dir}/{name}``.
    threads : int, optional
        ``torch.set_num_threads`` (default: leave as is).
    """

    data: str = "speedy-world"
    time: tuple[str, str] | None = None
    channels: list[str] = field(default_factory=lambda: ["2m_temperature", "geopotential_500"])
    statics: list[str] = field(default_factory=lambda: ["geopotential_at_surface", "land_sea_mask"])
    factor: int = 4
    model: dict[str, Any] = field(default_factory=dict)
    epochs: int = 10
    batch_size: int = 32
    lr: float = 2e-3
    weight_decay: float = 1e-4
    max_minutes: float | None = None
    val_data: str | None = None
    val_time: tuple[str, str] | None = None
    seed: int = 0
    output_dir: str = "runs"
    name: str = "downscale"
    threads: int | None = None

    def to_train_config(self) -> TrainConfig:
        """The equivalent ``task: downscale`` :class:`~atmos.train.config.TrainConfig` (validated).

        Raises
        ------
        ConfigError
            Values the config rejects (non-positive epochs, batch size or lr...), naming the config field.
        """
        from atmos.train.config import load_config

        return load_config({
            "task": "downscale",
            "data": {"source": self.data, "period": list(self.time) if self.time else None,
                     "batch_size": self.batch_size},
            "validation": {"source": self.val_data, "period": list(self.val_time) if self.val_time else None},
            "optimizer": {"lr": self.lr, "weight_decay": self.weight_decay, "betas": [0.9, 0.999],
                          "grad_clip": None},
            "schedule": {"epochs": self.epochs, "warmup_steps": 0, "min_lr": 0.0},
            "output": {"dir": self.output_dir, "name": self.name},
            "seed": self.seed,
            "downscale": {"channels": list(self.channels), "statics": list(self.statics), "factor": self.factor,
                          "model": dict(self.model), "max_minutes": self.max_minutes, "threads": self.threads},
        })


def _train_config(config: TrainConfig | DownscaleTrainConfig) -> TrainConfig:
    if isinstance(config, DownscaleTrainConfig):
        return config.to_train_config()
    if not isinstance(config, TrainConfig):
        raise ConfigError(
            f"fit_downscaler takes a TrainConfig with task: downscale or a DownscaleTrainConfig, got "
            f"{type(config).__name__}; build one with atmos.train.load_config(..., ['task=downscale'])."
        )
    if config.task != "downscale":
        raise ConfigError(f"fit_downscaler trains task 'downscale', got task {config.task!r}; use atmos.train.fit.")
    return config


def load_pairs(ds, channels: list[str], factor: int) -> tuple[np.ndarray, np.ndarray]:
    """``(coarse [T, C, nlat/f, nlon/f], fine [T, C, nlat, nlon])`` float32 arrays of ``ds``."""
    from atmos.io.downscale import channel_array, coarsen_conservative

    fine = np.stack(
        [
            np.asarray(channel_array(ds, c).transpose("time", "latitude", "longitude").values, np.float32)
            for c in channels
        ],
        axis=1,
    )
    import xarray as xr

    da = xr.DataArray(
        fine,
        dims=("time", "channel", "latitude", "longitude"),
        coords={"latitude": ds["latitude"].values, "longitude": ds["longitude"].values},
    )
    coarse = np.asarray(coarsen_conservative(da.astype(np.float64), factor).values, np.float32)
    return coarse, fine


class _DownscaleTask:
    """The downscaling step for :func:`atmos.train.epochs.run_epochs`: area-weighted MSE of the
    normalized fine fields predicted from the coarse ones."""

    def __init__(self, model: nn.Module, loss_fn: nn.Module, xc: torch.Tensor, yf: torch.Tensor,
                 val: tuple[torch.Tensor, torch.Tensor] | None, mean: np.ndarray, std: np.ndarray,
                 channels: list[str], batch_size: int, rng: np.random.Generator) -> None:
        self.model, self.loss_fn, self.xc, self.yf, self.val = model, loss_fn, xc, yf, val
        self.mean, self.std = torch.from_numpy(mean), torch.from_numpy(std)
        self.channels, self.bs, self.rng = channels, batch_size, rng

    def train_mode(self) -> None:
        self.model.train()

    def batches(self, epoch: int) -> Iterator[torch.Tensor]:
        perm = torch.from_numpy(self.rng.permutation(self.xc.shape[0]))
        for b in range(0, perm.numel(), self.bs):
            yield perm[b : b + self.bs]

    def loss(self, idx: torch.Tensor) -> tuple[torch.Tensor, int]:
        return self.loss_fn(self.model(self.xc[idx]), self.yf[idx]), int(idx.numel())

    def validate(self) -> dict[str, Any]:
        """Area-weighted RMSE per channel in physical units."""
        coarse, fine = self.val
        se = torch.zeros(len(self.channels), dtype=torch.float64)
        for i in range(0, coarse.shape[0], 64):
            pred = self.model(coarse[i : i + 64]) * self.std + self.mean
            se += squared_error_sum(pred, fine[i : i + 64], self.loss_fn.area)
        rm = rmse(se, coarse.shape[0])
        return {"rmse": {c: float(rm[k]) for k, c in enumerate(self.channels)}}


def fit_downscaler(config: TrainConfig | DownscaleTrainConfig) -> Path:
    """Train a downscaling head and write its run folder; returns the run folder.

    Parameters
    ----------
    config : TrainConfig or DownscaleTrainConfig
        ``task: downscale``: the ``downscale:`` section, the fine data ``data.source``/
        ``data.period``, ``validation.source``/``validation.period`` (area-weighted RMSE
        per channel each epoch, physical units), ``optimizer``, ``schedule`` (with
        ``max_steps_per_epoch``), ``seed`` and ``output``, as for every task; or the flat
        :class:`DownscaleTrainConfig` (:meth:`~DownscaleTrainConfig.to_train_config`).

    Raises
    ------
    ConfigError
        Bad settings (unknown model fields, non-positive epochs...).
    DataError, CatalogError
        Data that cannot be opened or lack a channel.
    """
    from atmos.io import compute_stats, open_dataset
    from atmos.io.coords import grid_of
    from atmos.io.downscale import channel_array
    from atmos.models.heads import DownscalingHeadConfig
    from atmos.models.registry import build, config_to_dict
    from atmos.train.checkpoint import atomic_write_text, save_checkpoint
    from atmos.train.config import config_to_dict as train_config_to_dict
    from atmos.train.losses import AreaWeightedMSE

    train_cfg = _train_config(config)
    cfg = train_cfg.downscale
    source = train_cfg.data.source
    opt_cfg, sch = train_cfg.optimizer, train_cfg.schedule
    epochs = int(cfg.epochs or sch.epochs)
    batch_size = int(cfg.batch_size or train_cfg.data.batch_size)
    if cfg.threads:
        torch.set_num_threads(int(cfg.threads))
    seed_everything(train_cfg.seed)
    rng = np.random.default_rng(train_cfg.seed)
    t_start = time.time()

    variables = sorted({split_name(c)[0] for c in cfg.channels} | set(cfg.statics))
    ds = open_dataset(source, time=tuple(train_cfg.data.period) if train_cfg.data.period else None)
    missing = [v for v in variables if v not in ds.data_vars]
    if missing:
        channel_array(ds, missing[0])  # raises a DataError naming what exists
    ds = ds[[v for v in variables if v in ds.data_vars]].load()
    from atmos.io.names import check_plausible_dataset

    check_plausible_dataset(
        ds, f" in the training data {source!r}",
        fix="Fix the variable's units attribute in the data so that atmos converts it to the canonical units.",
    )
    grid = grid_of(ds)
    stats = compute_stats(ds).compute()
    norm: dict[str, dict[str, Any]] = {}
    for name in [*cfg.channels, *cfg.statics]:
        channel_array(ds, name)  # raises a DataError naming what exists
        var, level = Channel.parse(name, ds).key
        st = stats[var]
        if level is not None:
            st = st.sel(level=level)
        mean, std = float(st.sel(statistic="mean")), float(st.sel(statistic="std"))
        norm[name] = {"variable": var, "level": level, "mean": mean, "std": safe_std(std, mean)}

    coarse, fine = load_pairs(ds, cfg.channels, cfg.factor)
    mean = np.array([norm[c]["mean"] for c in cfg.channels], np.float32)[:, None, None]
    std = np.array([norm[c]["std"] for c in cfg.channels], np.float32)[:, None, None]
    xc = torch.from_numpy((coarse - mean) / std)
    yf = torch.from_numpy((fine - mean) / std)

    valid_fields = {f.name for f in dataclasses.fields(DownscalingHeadConfig)}
    unknown = sorted(set(cfg.model) - valid_fields)
    if unknown:
        raise ConfigError(f"unknown head setting(s) {unknown}; valid: {sorted(valid_fields)}.")
    params = {
        **cfg.model,
        "channels": list(cfg.channels),
        "statics": list(cfg.statics),
        "nlat": grid.nlat,
        "nlon": grid.nlon,
        "poles": grid.kind == "equiangular_with_poles",
        "factor": int(cfg.factor),
    }
    model = build("downscale", **params)
    if model.fine_grid != grid:
        raise ConfigError(f"the head supports equiangular grids; the data are on {grid!r}.")
    if cfg.statics:
        s = np.stack(
            [(np.asarray(ds[v].values, np.float32) - norm[v]["mean"]) / norm[v]["std"] for v in cfg.statics]
        )
        model.static_fields.copy_(torch.from_numpy(s))

    val = None
    vcfg = train_cfg.validation
    if vcfg.source:
        vds = open_dataset(vcfg.source, time=tuple(vcfg.period) if vcfg.period else None)
        vds = vds[[v for v in variables if v in vds.data_vars]].load()
        vc, vf = load_pairs(vds, cfg.channels, cfg.factor)
        val = (torch.from_numpy((vc - mean) / std), torch.from_numpy(vf))

    loss_fn = AreaWeightedMSE(area_weights(grid))
    steps_per_epoch = math.ceil(xc.shape[0] / batch_size)
    if sch.max_steps_per_epoch:
        steps_per_epoch = min(steps_per_epoch, int(sch.max_steps_per_epoch))
    run_dir = Path(train_cfg.output.dir) / (train_cfg.output.name or "downscale")
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "DONE").unlink(missing_ok=True)
    task = _DownscaleTask(model, loss_fn, xc, yf, val, mean, std, list(cfg.channels), batch_size, rng)
    res = run_epochs(
        task, trained=model, params=list(model.parameters()), optimizer=opt_cfg, schedule=sch, epochs=epochs,
        per_epoch=steps_per_epoch, metrics_csv=run_dir / "metrics.csv", validate=val is not None,
        time_budget_s=None if cfg.max_minutes is None else 60.0 * cfg.max_minutes, started=t_start,
        name="downscale",
    )
    last = res.history[-1] if res.history else {}
    model_params = config_to_dict(model)
    model_params.pop("name")
    meta = {
        "task": "downscale",
        "model": {"name": "downscale", "params": model_params},
        "config": train_config_to_dict(train_cfg),
        "channels": list(cfg.channels),
        "statics": list(cfg.statics),
        "normalization": norm,
        "grid": grid.to_dict(),
        "coarse_grid": model.coarse_grid.to_dict(),
        "factor": int(cfg.factor),
        "data": {"source": str(source), "attrs_notes": str(ds.attrs.get("notes", ""))},
        "training": {
            "epoch": res.epochs,
            "global_step": res.steps,
            "train_loss": last.get("train_loss", float("nan")),
            "val_rmse": res.validation.get("rmse", {}),
            "seconds": time.time() - t_start,
            "stopped_by_time_limit": res.stopped_by_time_limit,
            "n_samples": int(xc.shape[0]),
            "history": res.history,
        },
    }
    save_checkpoint(run_dir, "final", model.state_dict(), meta)
    atomic_write_text(run_dir / "DONE", f"{time.time() - t_start:.1f} s\n")
    return run_dir
