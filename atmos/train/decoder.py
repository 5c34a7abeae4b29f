"""Train lightweight decoders for new variables on a frozen backbone (``task: decoder``),
or fine-tune the whole backbone with the same decoders (``task: finetune``, the baseline).

See :mod:`atmos.models.decoder` for the decoders. A decoder run folder holds
``checkpoints/final/`` with ``model.safetensors`` (decoder weights) and
``checkpoint.json``::

    {"task": "decoder",
     "model": {"name": "decoder", "params": LatentDecoderConfig as a dict},
     "backbone": {"path": ..., "sha256": weights_hash(backbone), "model": backbone model name},
     "grid": backbone grid, "time_step_seconds": ..., "config": the train config,
     "training": {...}, "validation": {...}}

(written through :class:`atmos.models.checkpoint.CheckpointMeta`: the predicted variables are
``model.params.variables``, ``meta.variables``).

:func:`atmos.models.checkpoint.load_decoder` reads it back and refuses a backbone
whose weights hash differs.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self

import numpy as np
import torch
from torch import nn

from atmos.errors import ConfigError, DataError
from atmos.io.normalizer import Normalizer
from atmos.io.stats import safe_std
from atmos.models.base import LatentBackbone
from atmos.models.checkpoint import weights_hash
from atmos.train.core import (
    area_weights,
    resolve_device,
    rmse,
    seed_everything,
    squared_error_sum,
)
from atmos.train.data import open_selected, stats_from_json
from atmos.train.epochs import run_epochs
from atmos.train.latent_cache import LatentCache, build_latent_cache, cache_key, choose_mode, latent_numel

__all__ = ["DecoderFitResult", "PeakRss", "fit_decoder", "save_decoder"]

log = logging.getLogger("atmos.train")


def save_decoder(
    run_dir: str | Path,
    decoder: nn.Module,
    *,
    backbone: nn.Module,
    backbone_path: str | Path,
    backbone_meta: Mapping[str, Any] | None = None,
    extra: Mapping[str, Any] | None = None,
    name: str = "final",
) -> Path:
    """Write a decoder checkpoint ``{run_dir}/checkpoints/{name}`` (atomic); returns its folder.

    The checkpoint records ``weights_hash(backbone)`` so that it can refuse any other backbone.
    """
    from atmos.train.checkpoint import save_checkpoint

    bm = dict(backbone_meta or {})
    meta: dict[str, Any] = {
        "task": "decoder",
        "model": {"name": "decoder", "params": dataclasses.asdict(decoder.config)},
        "backbone": {
            "path": str(Path(backbone_path).resolve()) if backbone_path else None,
            "sha256": weights_hash(backbone),
            "model": (bm.get("model") or {}).get("name"),
        },
        "variables": list(decoder.config.variables),
        "grid": bm.get("grid"),
        "time_step": bm.get("time_step"),
        "time_step_seconds": bm.get("time_step_seconds"),
        **dict(extra or {}),
    }
    state = {k: v.detach().cpu() for k, v in decoder.state_dict().items()}
    return save_checkpoint(run_dir, name, state, meta)


def _freeze(model: nn.Module) -> None:
    for p in model.parameters():
        p.requires_grad_(False)
    model.eval()


def _trainable(model: nn.Module) -> list[torch.nn.Parameter]:
    return [p for p in model.parameters() if p.requires_grad]


# =============================================================================================
# training
# =============================================================================================


@dataclass
class DecoderFitResult:
    """What :func:`fit_decoder` returns.

    Attributes
    ----------
    run_dir, checkpoint : Path
        The run folder and the decoder checkpoint (``checkpoints/final``).
    backbone_checkpoint : Path or None
        ``task: finetune``: the fine-tuned backbone (a forecast checkpoint); None for
        ``task: decoder`` (the backbone is unchanged).
    task : str
    train_time_s : float
        Wall time of the optimizer steps (data loading and validation excluded).
    wall_time_s : float
        Wall time of the whole call.
    steps, epochs : int
    trainable_parameters, frozen_parameters : int
    memory : dict
        ``rss_at_start_mb``/``peak_rss_mb`` (process RSS when the optimizer steps began
        and its peak during them, sampled every 5 ms; Linux; the latent cache's build
        and memory count as training) and ``peak_cuda_mb``.
    latent_cache : dict
        ``mode`` (``memory``/``disk``/``none``), ``reason``, ``mb``, ``build_s`` (seconds
        spent computing or finding it, part of ``wall_time_s``, not of ``train_time_s``)
        and ``reused`` (a disk cache of an earlier run was read).
    history : list of dict
        Per epoch: train loss, validation RMSE per variable.
    validation : dict
        Last validation: ``{"rmse": {var: float}, "units": {var: str},
        "prognostic_rmse": {channel: float}, "samples": int}`` (RMSE area-weighted, physical units).
    """

    run_dir: Path
    checkpoint: Path
    backbone_checkpoint: Path | None
    task: str
    train_time_s: float
    wall_time_s: float
    steps: int
    epochs: int
    trainable_parameters: int
    frozen_parameters: int
    memory: dict[str, Any] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)
    validation: dict[str, Any] = field(default_factory=dict)
    latent_cache: dict[str, Any] = field(default_factory=dict)


class PeakRss:
    """Peak resident memory of this process while active (Linux ``/proc/self/statm``; None elsewhere).

    Samples every ``interval`` seconds in a daemon thread; ``start_mb`` is the RSS when
    it started, so ``peak_mb - start_mb`` is what training added on top of the data and
    the models already in memory.
    """

    def __init__(self, interval: float = 0.005) -> None:
        import os
        import threading

        self._path = "/proc/self/statm"
        self._page = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
        self.available = os.path.exists(self._path)
        self.interval = interval
        self.start_mb: float | None = None
        self.peak_mb: float | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _rss(self) -> float:
        with open(self._path) as f:
            return int(f.read().split()[1]) * self._page / 2**20

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak_mb = max(self.peak_mb or 0.0, self._rss())
            self._stop.wait(self.interval)

    def __enter__(self) -> Self:
        if self.available:
            self.start_mb = self.peak_mb = self._rss()
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.available:
            self._stop.set()
            self._thread.join()
            self.peak_mb = max(self.peak_mb or 0.0, self._rss())


@dataclass
class _Windows:
    backbone: Any  # WindowDataset of the backbone's channels (normalized)
    new: Any  # WindowDataset of the new variables (physical units)
    indices: list[int]
    units: dict[str, str] = field(default_factory=dict)
    seasonal: Any = None  # the backbone's atmos.io.seasonal.SeasonalCycle (it works on anomalies), or None


def _backbone_config(cfg, bmeta: Mapping[str, Any]):
    """``cfg`` with the data channels, grid and normalization of the backbone's training config."""
    from atmos.train.config import DataConfig

    bdata = dict((bmeta.get("config") or {}).get("data") or {})
    if not bdata:
        raise ConfigError(
            f"backbone checkpoint {cfg.backbone!r} has no training config (config.data) in its checkpoint.json; "
            "decoders need a backbone written by atmos train."
        )
    keep = {f.name for f in dataclasses.fields(DataConfig)} - {
        "source", "period", "stats", "batch_size", "num_workers", "in_memory", "sample_stride",
    }
    data = dataclasses.replace(cfg.data, **{k: bdata[k] for k in keep if k in bdata})
    return dataclasses.replace(cfg, data=data)


def _open_windows(cfg, source: str, period, what: str, stats, samples: int | None) -> _Windows:
    from atmos.io.windows import WindowDataset

    d = cfg.data
    new = list(cfg.decoder.variables)
    clash = sorted(set(new) & set(d.variables))
    if clash:
        raise ConfigError(
            f"decoder.variables {clash} are prognostic variables of the backbone already; decoders add new variables."
        )
    from atmos.io.open import open_dataset

    have = open_dataset(source).data_vars
    missing = [v for v in new if v not in have]
    if missing:
        raise DataError(
            f"{what} source {source!r} lacks decoder.variables {missing}; it has {sorted(map(str, have))}. "
            "Fix decoder.variables or the source."
        )
    sel = dataclasses.replace(cfg, data=dataclasses.replace(d, variables=[*d.variables, *new]))
    ds = open_selected(source, sel, period, what)
    common = {"history": d.history, "lead_steps": 1, "cache": "memory", "healpix_layout": "faces"}
    bb = WindowDataset(
        ds, list(d.variables), forcings=list(d.forcings), statics=list(d.statics), levels=d.levels,
        stats=stats, **common,
    )
    nw = WindowDataset(ds, new, **common)
    if not np.array_equal(bb.times, nw.times):  # pragma: no cover - same data, same windows
        raise DataError(f"{what} windows of the backbone channels and of {new} do not line up.")
    n = len(bb)
    idx = list(range(0, n, max(1, int(d.sample_stride)))) if samples is None else (
        list(range(n)) if samples >= n else sorted({round(float(i)) for i in np.linspace(0, n - 1, samples)})
    )
    return _Windows(bb, nw, idx, {v: str(ds[v].attrs.get("units", "")) for v in new})


def _batch(w: _Windows, ids: list[int], device: torch.device) -> dict[str, torch.Tensor]:
    items = [w.backbone[i] for i in ids]
    out = {k: torch.stack([it[k] for it in items]).to(device) for k in ("inputs", "targets", "forcings", "statics")}
    if w.seasonal is not None:  # a backbone on anomalies: the inputs and targets it was trained on
        H, L, C = out["inputs"].shape[1], out["targets"].shape[1], out["targets"].shape[2]
        off = w.seasonal.window_offsets(torch.stack([it["time"] for it in items]), H, L).to(out["inputs"])
        out["inputs"] = out["inputs"] - off[:, :H]
        out["targets"] = out["targets"] - off[:, H:, :C]
    out["new"] = torch.stack([w.new[i]["targets"][0] for i in ids]).to(device)  # [B, V, *grid] physical
    return out


def _new_batch(w: _Windows, ids: list[int], device: torch.device) -> torch.Tensor:
    """The new variables' targets ``[B, V, *grid]`` (physical units), as in :func:`_batch`."""
    return torch.stack([w.new[i]["targets"][0] for i in ids]).to(device)


def _target_stats(w: _Windows, transforms: Mapping[str, Any], variables: list[str]) -> tuple[dict, dict, dict]:
    """Resolved transforms and the mean/std of the transformed training targets."""
    ys = torch.stack([w.new[i]["targets"][0] for i in w.indices]).double()  # [N, V, *grid]
    resolved: dict[str, dict[str, Any]] = {}
    mean: dict[str, float] = {}
    std: dict[str, float] = {}
    for k, v in enumerate(variables):
        y = ys[:, k]
        t = transforms.get(v)
        if isinstance(t, str):
            t = {"kind": t}
        t = dict(t or {"kind": "identity"})
        if t.get("kind") == "log1p":
            if t.get("scale") in (None, "auto"):
                scale = float(y.clamp_min(0).mean())
                if not scale > 0:
                    raise DataError(f"cannot use a log1p transform for {v!r}: its training mean is {scale!r} (not > 0).")
                t["scale"] = scale
            y = torch.log1p(y.clamp_min(0) / float(t["scale"]))
        resolved[v] = t
        mean[v] = float(y.mean())
        std[v] = safe_std(float(y.std()), mean[v])
    return resolved, mean, std


def _wmse(pred: torch.Tensor, target: torch.Tensor, area: torch.Tensor) -> torch.Tensor:
    """Area-weighted MSE per channel ``[B, C, *grid]`` -> ``[C]`` (mean over the batch)."""
    from atmos.train.losses import weighted_mse

    return weighted_mse(pred, target, area).mean(0)


class _Prognostic:
    """The backbone's one-step prediction and loss in its own normalization."""

    def __init__(self, bmeta: Mapping[str, Any], names: list[str], device: torch.device) -> None:
        from atmos.models.checkpoint import CheckpointMeta

        meta = CheckpointMeta.from_json(bmeta)
        section = {"outputs": meta.output_normalization, "channels": meta.channel_stats}
        self.norm = Normalizer.from_dict(section, names).to(device)  # the Forecaster's normalization
        self.n = len(names)

    def next_state(self, inputs: torch.Tensor, delta: torch.Tensor) -> torch.Tensor:
        return self.norm.step(inputs[:, -1, : self.n], delta)

    def loss(self, inputs, delta, target, area) -> torch.Tensor:
        r = self.norm.ratio.view(1, -1, *([1] * (delta.ndim - 2)))
        return _wmse(self.next_state(inputs, delta) / r, target / r, area).mean()

    def physical(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm.denormalize(x)


class _DecoderTask:
    """The decoder/finetune step for :func:`atmos.train.epochs.run_epochs`.

    The latent of the step ``t -> t+1`` predicts each new variable at ``t+1``; the loss is
    the area-weighted MSE of the standardized transformed targets, plus (finetune)
    ``prognostic_weight`` times the backbone's one-step loss.

    With ``cache`` (``task: decoder`` only) the batches carry the cached latents
    (``"latent"``) and the new variables' targets instead of the backbone's inputs; the
    sample order (the same generator) and the loss are unchanged.
    """

    def __init__(self, backbone, decoder, train: _Windows, val: _Windows | None, area: torch.Tensor,
                 prog: _Prognostic, names: list[str], bs: int, device: torch.device, frozen: bool,
                 prognostic_weight: float, seed: int, cache: LatentCache | None = None,
                 val_cache: LatentCache | None = None) -> None:
        self.backbone, self.decoder, self.train, self.val = backbone, decoder, train, val
        self.area, self.prog, self.names, self.bs, self.device = area, prog, names, bs, device
        self.frozen, self.weight = frozen, prognostic_weight
        if (cache is not None or val_cache is not None) and not frozen:
            raise ValueError("a latent cache needs a frozen backbone (task: decoder)")
        self.cache, self.val_cache = cache, val_cache
        self.gen = torch.Generator().manual_seed(seed)

    def train_mode(self) -> None:
        self.decoder.train()
        if not self.frozen:
            self.backbone.train()  # validation switched it to eval

    def batches(self, epoch: int) -> Iterator[dict[str, torch.Tensor]]:
        idx = self.train.indices
        perm = torch.randperm(len(idx), generator=self.gen).tolist()
        for b in range(0, len(perm), self.bs):
            ids = [idx[j] for j in perm[b : b + self.bs]]
            if self.cache is not None:
                yield {"latent": self.cache.get(ids, self.device), "new": _new_batch(self.train, ids, self.device)}
            else:
                yield _batch(self.train, ids, self.device)

    def loss(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, int]:
        if "latent" in batch:  # cached: the frozen backbone's latent of these windows
            latent = batch["latent"]
        else:
            with torch.no_grad() if self.frozen else contextlib.nullcontext():
                latent, _ = self.backbone.forward_latent(batch["inputs"], batch["forcings"], batch["statics"], None)
        loss = _wmse(self.decoder(latent), self.decoder.from_physical(batch["new"]), self.area).mean()
        if not self.frozen and self.weight > 0:
            delta = self.backbone.decode_latent(latent)
            loss = loss + self.weight * self.prog.loss(batch["inputs"], delta, batch["targets"][:, 0], self.area)
        return loss, int(batch["new"].shape[0])

    def validate(self) -> dict[str, Any]:
        return _validate(self.backbone, self.decoder, self.val, self.area, self.prog, self.names, self.bs, self.device,
                         cache=self.val_cache)


def fit_decoder(cfg, *, progress: bool | None = None) -> DecoderFitResult:
    """Train decoders for new variables on a backbone checkpoint (``cfg.task`` ``decoder`` or ``finetune``).

    ``task: decoder`` freezes the backbone (``requires_grad=False``, eval mode, latents
    computed under ``torch.no_grad``) and trains only the decoders on the one-step
    latent: the latent of the step ``t -> t+1`` predicts each new variable at ``t+1``.
    ``task: finetune`` is the baseline of Lehmann et al.: the same decoders and the
    whole backbone are trained together, on the decoder loss plus
    ``decoder.prognostic_weight`` times the backbone's one-step loss (area-weighted MSE
    of the normalized residual), so that the backbone stays a forecaster.

    The decoder loss is the area-weighted MSE of the standardized transformed targets
    (:class:`atmos.models.decoder.LatentDecoder`), averaged over the variables. AdamW
    and the warm-up + cosine schedule of ``optimizer``/``schedule``; ``schedule.epochs``
    passes over the training windows (``data.period``, every ``data.sample_stride``-th).

    Returns
    -------
    DecoderFitResult

    Raises
    ------
    ConfigError
        Wrong task, no backbone, a backbone without a latent, new variables that are
        prognostic already.
    DataError, SourceError
        Data lacking a variable, a missing backbone checkpoint.
    """
    from atmos.models.checkpoint import load_model
    from atmos.models.decoder import LatentDecoder
    from atmos.train.checkpoint import atomic_write_text, save_checkpoint
    from atmos.train.config import config_to_dict, save_config

    t_call = time.time()
    if cfg.task not in ("decoder", "finetune"):
        raise ConfigError(f"fit_decoder trains task 'decoder' or 'finetune', got task {cfg.task!r}.")
    frozen = cfg.task == "decoder"
    seed_everything(cfg.seed)
    device = resolve_device(cfg.device)
    if str(cfg.backbone) == "sample":  # the embedded sample model
        from importlib.resources import files

        cfg = dataclasses.replace(cfg, backbone=str(files("atmos.sample")))
    from atmos.models.checkpoint import find_checkpoint

    if find_checkpoint(Path(str(cfg.backbone)).expanduser()) is None:
        from atmos.errors import SourceError

        raise SourceError(
            f"backbone: {cfg.backbone!r} is not an atmos checkpoint or run folder (no checkpoint.json there); set "
            "`backbone:` to a folder written by `atmos train`, or `sample` for the embedded sample model."
        )
    backbone, bmeta = load_model(cfg.backbone)
    if not isinstance(backbone, LatentBackbone):
        raise ConfigError(
            f"backbone {cfg.backbone!r} ({type(backbone).__name__}) exposes no latent; decoders need a ViT or UNetGRU."
        )
    backbone_hash_before = weights_hash(backbone)
    cfg = _backbone_config(cfg, bmeta)
    stats = stats_from_json(bmeta["stats"]) if bmeta.get("stats") else None
    if stats is None:
        raise ConfigError(f"backbone checkpoint {cfg.backbone!r} has no normalization statistics (stats).")
    variables = list(cfg.decoder.variables)

    if int(cfg.data.noise_channels or 0):
        raise ConfigError(
            f"backbone {cfg.backbone!r} is a stochastic model (data.noise_channels: {cfg.data.noise_channels}); "
            "decoders and fine-tuning need a deterministic backbone (noise_channels: 0)."
        )
    from atmos.io.seasonal import load_seasonal

    bfolder = find_checkpoint(Path(str(cfg.backbone)).expanduser())
    seasonal = load_seasonal(bfolder, bmeta)
    train = _open_windows(cfg, cfg.data.source, cfg.data.period, "training", stats, None)
    train.seasonal = seasonal
    val = None
    if cfg.validation.source:
        val = _open_windows(cfg, cfg.validation.source, cfg.validation.period, "validation", stats,
                            cfg.validation.samples)
        val.seasonal = seasonal
    area = area_weights(train.backbone.grid, tuple(train.backbone.grid_shape)).to(device)
    transforms, mean, std = _target_stats(train, dict(cfg.decoder.transforms), variables)
    units = dict(train.units)
    decoder = LatentDecoder.for_backbone(
        backbone, variables, hidden=list(cfg.decoder.hidden), transforms=transforms, mean=mean, std=std, units=units
    )
    backbone.to(device)
    decoder.to(device)
    names = list(backbone.schema.outputs)
    prog = _Prognostic(bmeta, names, device)
    if frozen:
        for p in backbone.parameters():
            p.requires_grad_(False)
        backbone.eval()
        params = list(decoder.parameters())
        trained = nn.ModuleDict({"decoder": decoder})  # what the optimizer (and the EMA) update
    else:
        backbone.train()
        params = list(backbone.parameters()) + list(decoder.parameters())
        trained = nn.ModuleDict({"backbone": backbone, "decoder": decoder})
    n_train = sum(p.numel() for p in params)
    n_frozen = sum(p.numel() for p in backbone.parameters()) if frozen else 0

    bs = int(cfg.data.batch_size)
    per_epoch = math.ceil(len(train.indices) / bs)
    if cfg.schedule.max_steps_per_epoch:
        per_epoch = min(per_epoch, int(cfg.schedule.max_steps_per_epoch))

    out = cfg.output
    run_dir = Path(out.dir) / (out.name or f"{cfg.task}-{Path(str(cfg.backbone)).name}")
    if (run_dir / "checkpoints").exists() and not out.overwrite:
        raise ConfigError(
            f"run folder {str(run_dir)!r} already has checkpoints; pass output.overwrite=true or another output.name."
        )
    run_dir.mkdir(parents=True, exist_ok=True)
    save_config(cfg, run_dir / "config.yaml")
    show = out.progress if progress is None else progress

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    with PeakRss() as mem:
        caches, cache_info = _latent_caches(cfg, bmeta, backbone, train, val, area, prog, bs, device, run_dir,
                                            frozen=frozen, passes=int(cfg.schedule.epochs) * per_epoch * bs)
        task = _DecoderTask(backbone, decoder, train, val, area, prog, names, bs, device, frozen,
                            float(cfg.decoder.prognostic_weight), int(cfg.seed), *caches)
        try:
            res = run_epochs(
                task, trained=trained, params=params, optimizer=cfg.optimizer, schedule=cfg.schedule,
                epochs=int(cfg.schedule.epochs), per_epoch=per_epoch, metrics_csv=run_dir / "metrics.csv",
                validate=val is not None, validate_every=int(cfg.validation.every_epochs),
                progress=f"{cfg.task} {','.join(variables)}" if show else None, name=cfg.task,
            )
        finally:
            for c in caches:
                if c is not None:
                    c.close()
    history, validation, train_time, step = res.history, res.validation, res.train_time_s, res.steps
    backbone.eval()
    decoder.eval()
    if frozen and weights_hash(backbone) != backbone_hash_before:  # pragma: no cover - guarded by requires_grad
        raise RuntimeError("the frozen backbone's weights changed during decoder training")
    backbone_ckpt = None
    backbone_path: str | Path = cfg.backbone
    training = {
        "task": cfg.task,
        "epochs": int(cfg.schedule.epochs),
        "global_step": step,
        "train_time_s": train_time,
        "trainable_parameters": n_train,
        "frozen_parameters": n_frozen,
        "backbone_sha256_before": backbone_hash_before,
        "rss_at_start_mb": mem.start_mb,
        "peak_rss_mb": mem.peak_mb,
        "peak_cuda_mb": torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None,
        "latent_cache": cache_info,
    }
    if not frozen:
        bm = {k: v for k, v in bmeta.items() if k not in ("format", "format_version", "atmos_version", "torch_version", "files")}
        bm["training"] = {**(bm.get("training") or {}), "finetuned_from": str(Path(str(cfg.backbone)).resolve()),
                          "finetune_steps": step}
        extra_files = {}
        if seasonal is not None:  # the fine-tuned backbone works on the same anomalies
            from atmos.io.seasonal import SEASONAL_FILE

            extra_files["seasonal"] = (SEASONAL_FILE, {"coef": seasonal.coef.detach().cpu()})
        backbone_ckpt = save_checkpoint(run_dir / "backbone", "final",
                                        {k: v.detach().cpu() for k, v in backbone.state_dict().items()}, bm,
                                        extra_files=extra_files)
        backbone_path = backbone_ckpt
    ckpt = save_decoder(
        run_dir, decoder, backbone=backbone, backbone_path=backbone_path, backbone_meta=bmeta,
        extra={"config": config_to_dict(cfg), "training": training, "validation": validation},
    )
    atomic_write_text(run_dir / "DONE", f"{cfg.task} finished at step {step}\n")
    return DecoderFitResult(
        run_dir=run_dir, checkpoint=ckpt, backbone_checkpoint=backbone_ckpt, task=cfg.task, train_time_s=train_time,
        wall_time_s=time.time() - t_call, steps=step, epochs=int(cfg.schedule.epochs), trainable_parameters=n_train,
        frozen_parameters=n_frozen, history=history, validation=validation,
        memory={k: training[k] for k in ("rss_at_start_mb", "peak_rss_mb", "peak_cuda_mb")},
        latent_cache=cache_info,
    )


def _latent_caches(cfg, bmeta: Mapping[str, Any], backbone, train: _Windows, val: _Windows | None, area, prog,
                   bs: int, device: torch.device, run_dir: Path, *, frozen: bool, passes: int,
                   ) -> tuple[tuple[LatentCache | None, LatentCache | None], dict[str, Any]]:
    """The training and validation latent caches of ``decoder.latent_cache`` (or None) and what was chosen.

    ``passes`` is the number of training samples the run will encode without a cache
    (``epochs * per_epoch * batch_size``): ``auto`` caches only when that exceeds the
    number of training windows (a latent is used more than once).
    """
    import json as _json

    dc = cfg.decoder
    n_val = len(val.indices) if val is not None else 0
    numel = latent_numel(backbone.latent_spec())
    size_mb = (len(train.indices) + n_val) * numel * 4 / 2**20
    stochastic = int(getattr(cfg.data, "noise_channels", 0) or 0) > 0
    mode, reason = choose_mode(str(dc.latent_cache), task=cfg.task if frozen else "finetune",
                               stochastic=stochastic, size_mb=size_mb, max_mb=float(dc.latent_cache_max_mb),
                               reused=passes > len(train.indices))
    info: dict[str, Any] = {"mode": mode, "reason": reason, "build_s": 0.0, "reused": False,
                            "mb": round(size_mb, 3) if mode != "none" else 0.0}
    if mode == "none":
        log.info("%s: no latent cache (%s); the backbone runs at every step", cfg.task, reason)
        return (None, None), info
    t0 = time.perf_counter()
    base = {
        "backbone_sha256": weights_hash(backbone),
        "stats_sha256": cache_key({"stats": bmeta.get("stats")}),
        "latent_spec": backbone.latent_spec(),
        # channels, levels, history, grid, regridding, normalization; batch_size sets the encoding chunks
        "data": _json.loads(_json.dumps({k: v for k, v in dataclasses.asdict(cfg.data).items()
                                         if k not in ("num_workers", "source", "period")}, default=str)),
        "format": 1,
    }

    def encoder(w: _Windows, with_prog: bool):
        @torch.no_grad()
        def encode(ids: list[int]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
            batch = _batch(w, ids, device)
            latent, _ = backbone.forward_latent(batch["inputs"], batch["forcings"], batch["statics"], None)
            sums: dict[str, torch.Tensor] = {}
            if with_prog:  # what _validate adds for these windows (the backbone is frozen: constant)
                nxt = prog.physical(prog.next_state(batch["inputs"], backbone.decode_latent(latent)))
                sums["prognostic_se"] = squared_error_sum(nxt, prog.physical(batch["targets"][:, 0]), area).cpu()
            return latent, sums

        return encode

    backbone.eval()
    out: list[LatentCache | None] = []
    splits = [("train", train, cfg.data.source, cfg.data.period, False), ("val", val, cfg.validation.source,
                                                                           cfg.validation.period, True)]
    for split, w, source, period, with_prog in splits:
        if w is None:
            out.append(None)
            continue
        key = cache_key({**base, "split": split, "source": str(source), "period": period,
                         "indices": [int(i) for i in w.indices]})
        out.append(build_latent_cache(mode, w.indices, encoder(w, with_prog), batch_size=bs, device=device,
                                      run_dir=run_dir, split=split, key=key, avoid_single=split == "train"))
    info["build_s"] = round(time.perf_counter() - t0, 3)
    info["reused"] = any(c is not None and c.reused for c in out)
    log.info("%s: latent cache %s (%s): %.1f MB for %d training + %d validation windows, %s in %.1f s",
             cfg.task, mode, reason, size_mb, len(train.indices), n_val,
             "read from an earlier run" if info["reused"] else "computed", info["build_s"])
    return (out[0], out[1]), info


@torch.no_grad()
def _validate(backbone, decoder, val: _Windows, area, prog: _Prognostic, names, bs, device,
              cache: LatentCache | None = None) -> dict[str, Any]:
    """Area-weighted RMSE (physical units) of every new variable and of the backbone's one-step forecast.

    With ``cache`` (a frozen backbone) the latents and the backbone's one-step squared
    error come from it; the batches are the same, so the result is the same.
    """
    backbone.eval()
    decoder.eval()
    se_new = torch.zeros(len(decoder.variables), dtype=torch.float64)
    se_prog = torch.zeros(len(names), dtype=torch.float64)
    n = 0
    for b in range(0, len(val.indices), bs):
        ids = val.indices[b : b + bs]
        if cache is not None:
            y = decoder.to_physical(decoder(cache.get(ids, device)))
            se_new += squared_error_sum(y, _new_batch(val, ids, device), area).cpu()
            n += len(ids)
            continue
        batch = _batch(val, ids, device)
        latent, _ = backbone.forward_latent(batch["inputs"], batch["forcings"], batch["statics"], None)
        y = decoder.to_physical(decoder(latent))
        se_new += squared_error_sum(y, batch["new"], area).cpu()
        nxt = prog.physical(prog.next_state(batch["inputs"], backbone.decode_latent(latent)))
        tgt = prog.physical(batch["targets"][:, 0])
        se_prog += squared_error_sum(nxt, tgt, area).cpu()
        n += len(ids)
    if cache is not None:
        se_prog = torch.tensor(cache.extra["prognostic_se"], dtype=torch.float64)
    rm_new, rm_prog = rmse(se_new, n), rmse(se_prog, n)
    return {
        "rmse": {v: float(rm_new[k]) for k, v in enumerate(decoder.variables)},
        "units": dict(decoder.config.units),
        "prognostic_rmse": {c: float(rm_prog[k]) for k, c in enumerate(names)},
        "samples": n,
    }
