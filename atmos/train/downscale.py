"""Train a :class:`~atmos.models.heads.DownscalingHead` on pairs made by conservative coarsening.

The fine data are the truth; the input is their conservative coarsening by ``factor``
(:func:`atmos.io.downscale.coarsen_conservative`). Both are normalized with the
area-weighted statistics of the fine training data (:func:`atmos.io.compute_stats`;
coarsening is a weighted mean, so the same mean/std apply to both). The loss is the
area-weighted MSE of :class:`atmos.train.losses.AreaWeightedMSE` on the fine grid;
the optimizer is AdamW with a cosine learning-rate schedule.

A run folder ``{output_dir}/{name}`` holds ``metrics.csv`` (one row per epoch),
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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from atmos.errors import ConfigError

__all__ = ["DownscaleTrainConfig", "fit_downscaler", "load_pairs"]


@dataclass
class DownscaleTrainConfig:
    """Settings of :func:`fit_downscaler`.

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


def _channel_info(ds, name: str) -> tuple[str, float | None]:
    from atmos.io.downscale import channel_array

    da = channel_array(ds, name)
    if name in ds.data_vars:
        return name, None
    var = name.rpartition("_")[0]
    return var, float(da["level"].values) if "level" in da.coords else float(name.rpartition("_")[2])


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


def fit_downscaler(config: DownscaleTrainConfig) -> Path:
    """Train a downscaling head and write its run folder; returns the run folder.

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
    from atmos.train.losses import AreaWeightedMSE

    cfg = config
    if cfg.epochs < 1 or cfg.batch_size < 1 or cfg.lr <= 0:
        raise ConfigError(
            f"epochs, batch_size and lr must be positive, got {cfg.epochs}, {cfg.batch_size}, {cfg.lr}."
        )
    if cfg.threads:
        torch.set_num_threads(int(cfg.threads))
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    t_start = time.time()

    variables = sorted({_channel_info_var(c) for c in cfg.channels} | set(cfg.statics))
    ds = open_dataset(cfg.data, time=tuple(cfg.time) if cfg.time else None)
    missing = [v for v in variables if v not in ds.data_vars]
    if missing:
        channel_array(ds, missing[0])  # raises a DataError naming what exists
    ds = ds[[v for v in variables if v in ds.data_vars]].load()
    from atmos.io.names import check_plausible_dataset

    check_plausible_dataset(
        ds, f" in the training data {cfg.data!r}",
        fix="Fix the variable's units attribute in the data so that atmos converts it to the canonical units.",
    )
    grid = grid_of(ds)
    stats = compute_stats(ds).compute()
    norm: dict[str, dict[str, Any]] = {}
    for name in [*cfg.channels, *cfg.statics]:
        var, level = _channel_info(ds, name)
        st = stats[var]
        if level is not None:
            st = st.sel(level=level)
        mean, std = float(st.sel(statistic="mean")), float(st.sel(statistic="std"))
        norm[name] = {"variable": var, "level": level, "mean": mean, "std": std if std > 0 else 1.0}

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
    if cfg.val_data:
        vds = open_dataset(cfg.val_data, time=tuple(cfg.val_time) if cfg.val_time else None)
        vds = vds[[v for v in variables if v in vds.data_vars]].load()
        vc, vf = load_pairs(vds, cfg.channels, cfg.factor)
        val = (torch.from_numpy((vc - mean) / std), torch.from_numpy(vf))

    loss_fn = AreaWeightedMSE(torch.as_tensor(grid.area_weights()))
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    n = xc.shape[0]
    steps_per_epoch = math.ceil(n / cfg.batch_size)
    total = cfg.epochs * steps_per_epoch
    budget = None if cfg.max_minutes is None else 60.0 * cfg.max_minutes

    def _progress(s: int) -> float:
        """Fraction of the schedule done: by steps, or by wall time when that runs out first."""
        frac = min(s, total) / total
        if budget is not None:
            frac = max(frac, min((time.time() - t_start) / budget, 1.0))
        return frac

    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.5 * (1 + math.cos(math.pi * _progress(s))))
    run_dir = Path(cfg.output_dir) / cfg.name
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "DONE").unlink(missing_ok=True)
    rows = ["epoch,step,train_loss,seconds" + "".join(f",val_rmse_{c}" for c in cfg.channels)]
    area = loss_fn.area
    step, epoch, train_loss, val_rmse = 0, 0, float("nan"), {}
    stopped = False
    for epoch in range(1, cfg.epochs + 1):
        model.train()
        perm = torch.from_numpy(rng.permutation(n))
        tot, cnt = 0.0, 0
        for i in range(0, n, cfg.batch_size):
            idx = perm[i : i + cfg.batch_size]
            loss = loss_fn(model(xc[idx]), yf[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            step += 1
            tot += float(loss.detach()) * idx.numel()
            cnt += idx.numel()
            if cfg.max_minutes is not None and time.time() - t_start > 60 * cfg.max_minutes:
                stopped = True
                break
        train_loss = tot / max(cnt, 1)
        val_rmse = {}
        if val is not None:
            model.eval()
            with torch.no_grad():
                se = torch.zeros(len(cfg.channels), dtype=torch.float64)
                for i in range(0, val[0].shape[0], 64):
                    pred = model(val[0][i : i + 64]) * torch.from_numpy(std) + torch.from_numpy(mean)
                    se += ((pred - val[1][i : i + 64]) ** 2 * area).sum((-2, -1)).sum(0).double()
                rm = (se / val[0].shape[0]).sqrt()
            val_rmse = {c: float(rm[k]) for k, c in enumerate(cfg.channels)}
        rows.append(
            f"{epoch},{step},{train_loss:.6g},{time.time() - t_start:.1f}"
            + "".join(f",{val_rmse.get(c, float('nan')):.6g}" for c in cfg.channels)
        )
        atomic_write_text(run_dir / "metrics.csv", "\n".join(rows) + "\n")
        if stopped:
            break

    model_params = config_to_dict(model)
    model_params.pop("name")
    meta = {
        "task": "downscale",
        "model": {"name": "downscale", "params": model_params},
        "config": dataclasses.asdict(cfg),
        "channels": list(cfg.channels),
        "statics": list(cfg.statics),
        "normalization": norm,
        "grid": grid.to_dict(),
        "coarse_grid": model.coarse_grid.to_dict(),
        "factor": int(cfg.factor),
        "data": {"source": str(cfg.data), "attrs_notes": str(ds.attrs.get("notes", ""))},
        "training": {
            "epoch": epoch,
            "global_step": step,
            "train_loss": train_loss,
            "val_rmse": val_rmse,
            "seconds": time.time() - t_start,
            "stopped_by_time_limit": stopped,
            "n_samples": n,
        },
    }
    save_checkpoint(run_dir, "final", model.state_dict(), meta)
    atomic_write_text(run_dir / "DONE", f"{time.time() - t_start:.1f} s\n")
    return run_dir


def _channel_info_var(name: str) -> str:
    """Variable of a channel name by its spelling (``geopotential_500`` -> ``geopotential``)."""
    var, _, lev = name.rpartition("_")
    try:
        float(lev)
    except ValueError:
        return name
    return var if var else name
