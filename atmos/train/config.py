"""Training configuration: nested dataclasses loaded from YAML, with ``key=value`` overrides.

A config file mirrors :class:`TrainConfig`::

    model:      {name: vit, params: {embed_dim: 64, depth: 2}}
    data:       {source: speedy-world, variables: [geopotential, temperature], levels: [500, 850], ...}
    validation: {source: speedy-world-val, samples: 32, steps: 4}
    optimizer:  {lr: 1.0e-3, betas: [0.9, 0.95], weight_decay: 0.01, grad_clip: 1.0}
    schedule:   {epochs: 4, warmup_steps: 50, min_lr: 1.0e-5}
    multistep:  {steps: 1, gradient: detached, maximum: 2, epoch_increment: 1}
    loss:       {area_weighted: true, level_weighting: linear}
    output:     {dir: runs, name: vit-speedy}
    seed: 0

``task`` selects what is trained: ``forecast`` (default, the emulator itself),
``decoder`` (lightweight decoders for new variables on the frozen ``backbone``
checkpoint, or ``sample`` for the embedded sample model; ``decoder:`` section), ``finetune`` (the baseline: the same decoders
trained together with the whole backbone) or ``downscale`` (a downscaling head;
``downscale:`` section, :class:`DownscaleConfig`). ``optimizer``, ``schedule``,
``seed`` and ``output`` apply to every task.
For ``decoder``/``finetune`` the channels, grid and normalization come from the
backbone's checkpoint; ``data`` gives the source, period and batch size.

Every field has a default, so ``{}`` is a valid (if not useful) config. Unknown keys
are errors that list the valid ones. :func:`load_config` reads YAML (or takes a
dict), applies overrides such as ``optimizer.lr=3e-4`` or ``model.params.depth=4``
(values are parsed as YAML scalars/lists) and validates the result;
:func:`config_to_dict` gives the plain, YAML/JSON-serializable form that is saved
with every run and inside every checkpoint.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import re
import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Union

import yaml

from atmos.errors import ConfigError

__all__ = [
    "ANEMOI_VARIABLE_WEIGHTS",
    "ComputeConfig",
    "DataConfig",
    "DecoderConfig",
    "DownscaleConfig",
    "LossConfig",
    "ModelConfig",
    "MultistepConfig",
    "OptimizerConfig",
    "OutputConfig",
    "ScheduleConfig",
    "TrainConfig",
    "ValidationConfig",
    "config_from_dict",
    "config_to_dict",
    "load_config",
    "parse_gradient_mode",
    "save_config",
]

#: Per-variable loss weights after anemoi's defaults (z 12, t 6, sp 10, u 0.8, v 0.5,
#: q 0.6, 2d 0.5, 10u/10v 0.1, tp 0.025; everything else 1), keyed by WB2 names.
ANEMOI_VARIABLE_WEIGHTS: dict[str, float] = {
    "default": 1.0,
    "geopotential": 12.0,
    "temperature": 6.0,
    "surface_pressure": 10.0,
    "u_component_of_wind": 0.8,
    "v_component_of_wind": 0.5,
    "specific_humidity": 0.6,
    "2m_dewpoint_temperature": 0.5,
    "10m_u_component_of_wind": 0.1,
    "10m_v_component_of_wind": 0.1,
    "total_precipitation_6hr": 0.025,
}


@dataclass
class ModelConfig:
    """Which model to build: ``atmos.models.build(name, **params)``.

    The trainer adds what it knows from the data (channel schema, grid) to ``params``;
    see :func:`atmos.train.loop.build_model`.

    Attributes
    ----------
    name : str
        Registered model name (``vit``, ``unet_gru``, ...).
    params : dict
        Constructor parameters of the model.
    init_from : str or None
        Warm start: a checkpoint (or run folder) of the same model whose weights, normalization
        statistics and seasonal cycle a *new* run starts from (a resumed run ignores it). The new model
        may have more inputs (e.g. ``data.noise_channels`` to fine-tune a stochastic model from a
        deterministic one): their weights start at zero, so step 0 computes what the source computed.
        See :func:`atmos.models.warmstart.warm_start_state`.
    """

    name: str = "vit"
    params: dict[str, Any] = field(default_factory=dict)
    init_from: str | None = None


@dataclass
class DataConfig:
    """Training data: where it is, which channels, which grid, how it is normalized.

    Attributes
    ----------
    source : str
        Catalog name (``speedy-world``), local path (zarr/netCDF) or URL, opened with
        :func:`atmos.io.open_dataset`.
    period : [start, end] or None
        Inclusive time slice of the training data (ISO strings); None = all of it.
    variables : list of str
        Prognostic variables (model inputs and outputs).
    levels : list of int or None
        Pressure levels (hPa) of the 3-D variables; None = all levels in the data.
    forcings : list of str
        Known-in-advance inputs (e.g. ``toa_incident_solar_radiation``).
    statics : list of str
        Time-invariant inputs (``land_sea_mask``, ``geopotential_at_surface``).
    history : int
        Number of input time steps.
    grid : {"latlon", "healpix"}
        Grid the model runs on. ``healpix`` regrids the lat-lon data to HEALPix
        ``nside`` (nested order) with :func:`atmos.io.regrid.to_healpix` once, before
        the windows are cut.
    nside : int or None
        HEALPix resolution (required for ``grid: healpix``).
    regrid_method : str
        ``bilinear`` | ``conservative`` | ``nearest``.
    normalization : {"residual", "state"}
        ``residual``: the model predicts the increment ``x[t+1] - x[t]`` divided by the
        residual std (``compute_stats``' ``residual_std``); the loss is the state error
        divided by the residual std. ``state``: the model predicts the normalized next
        state; the loss is the state error divided by the state std. Inputs are always
        ``(x - mean) / std``.
    noise_channels : int
        0 (default): a deterministic model. N >= 1: N extra forcing channels of N(0, 1)
        noise, spatially white and drawn anew for every step and member, are fed to the
        model (named ``noise_0`` ...): the source of randomness of a stochastic emulator
        (``loss.name: crps``). ``atmos rollout --members M`` then draws members from the
        model's own noise (``--seed`` fixes it).
    seasonal_harmonics : int
        0 (default): the model sees normalized states. N >= 1: it sees and predicts anomalies
        from a seasonal cycle (per time of day, a mean plus N annual harmonics per channel and
        grid point, fit on the training period; :mod:`atmos.io.seasonal`), stored in the
        checkpoint. The seasonal and diurnal cycles are then exact and a decaying anomaly
        returns the model to its training climate. Needs about a year of training data.
    stats : str or None
        Path of precomputed statistics (``.nc``/``.zarr``, :func:`atmos.io.stats.save_stats`);
        None = computed from the training period at the start of the run.
    batch_size : int
        Samples per optimizer step **per process**.
    num_workers : int
        DataLoader workers.
    in_memory : bool
        Load the selected data into memory before training (fast for small cubes).
    sample_stride : int
        Use every n-th window start for training.
    units : dict of str to str, optional
        Units of variables whose ``units`` attribute is missing or wrong (``{"geopotential":
        "m"}``), as ``open_dataset(units=...)`` / ``atmos rollout --assume-units``: converted to
        the canonical units. The data are checked against plausible ranges either way.
    """

    source: str = "speedy-world"
    period: list[str] | None = None
    variables: list[str] = field(default_factory=lambda: ["geopotential", "temperature"])
    levels: list[int] | None = None
    forcings: list[str] = field(default_factory=list)
    statics: list[str] = field(default_factory=list)
    history: int = 1
    grid: str = "latlon"
    nside: int | None = None
    regrid_method: str = "bilinear"
    normalization: str = "residual"
    seasonal_harmonics: int = 0
    noise_channels: int = 0
    stats: str | None = None
    batch_size: int = 8
    num_workers: int = 0
    in_memory: bool = True
    sample_stride: int = 1
    units: dict[str, str] | None = None


@dataclass
class ValidationConfig:
    """Validation at the end of each epoch: RMSE per channel at each lead step, in
    physical units, for the model and for persistence on the same samples.

    ``source: null`` disables validation. ``samples`` windows are taken evenly spaced
    over the validation period (None = all windows); ``steps`` lead steps are rolled out.
    """

    source: str | None = "speedy-world-val"
    period: list[str] | None = None
    samples: int | None = 32
    steps: int = 4
    batch_size: int | None = None
    every_epochs: int = 1


@dataclass
class OptimizerConfig:
    """AdamW (betas default to anemoi's (0.9, 0.95)); optional EMA of the weights.

    ``grad_clip`` is the max total gradient norm (None disables clipping).
    ``ema_decay`` (e.g. 0.999) keeps an exponential moving average of the weights;
    checkpoints then store the EMA weights in ``model.safetensors`` (used for
    validation and inference) and the raw weights in the training state.
    """

    name: str = "adamw"
    lr: float = 1.0e-3
    betas: list[float] = field(default_factory=lambda: [0.9, 0.95])
    eps: float = 1.0e-8
    weight_decay: float = 0.01
    grad_clip: float | None = 1.0
    ema_decay: float | None = None


@dataclass
class ScheduleConfig:
    """Cosine learning-rate schedule with linear warm-up.

    The lr rises linearly from ``lr * warmup_start_factor`` to ``lr`` over
    ``warmup_steps`` optimizer steps, then follows a cosine down to ``min_lr`` at the
    last step of the last epoch. ``max_steps_per_epoch`` caps an epoch (quick runs).
    """

    epochs: int = 10
    warmup_steps: int = 100
    warmup_start_factor: float = 0.01
    min_lr: float = 0.0
    max_steps_per_epoch: int | None = None


@dataclass
class MultistepConfig:
    """Autoregressive multi-step training with a rollout curriculum.

    Attributes
    ----------
    steps : int
        Rollout length K at epoch 0.
    gradient : str
        ``detached`` (CREDIT: each step's input is the previous prediction detached;
        every step's loss is backpropagated at once), ``full`` (anemoi: backprop
        through the whole rollout) or ``truncated:N`` (gradients flow through at most
        N consecutive steps: the state is detached every N steps).
    step_weights : list of float or None
        Loss weight of each step (length >= ``maximum``); None = equal weights.
        The per-sample loss is ``sum_k w_k L_k / sum_k w_k`` over the K steps used.
    epoch_increment : int
        K grows by this much every ``increment_every`` epochs (anemoi's
        ``rollout.epoch_increment``), up to ``maximum``.
    maximum : int or None
        Largest K (anemoi's ``rollout.maximum``); None = ``steps``. Training windows
        always hold ``maximum`` targets, so the sample set is the same at every K.
    input_noise : float
        Noise injection for stability: the std, in normalized state units, of Gaussian
        noise added to the input states of the first step of every training rollout
        (the targets stay clean, so the model learns to pull perturbed states back
        towards the data; validation and inference see no noise). 0 disables it. The
        noise is drawn from a generator seeded by ``(seed, rank, global step)``, so a
        resumed run draws the same noise.
    """

    steps: int = 1
    gradient: str = "detached"
    step_weights: list[float] | None = None
    epoch_increment: int = 0
    increment_every: int = 1
    maximum: int | None = None
    input_noise: float = 0.0

    def steps_at(self, epoch: int) -> int:
        """Rollout length K used in ``epoch`` (0-based)."""
        k = self.steps + self.epoch_increment * (epoch // max(1, self.increment_every))
        return int(min(k, self.max_steps))

    @property
    def max_steps(self) -> int:
        return int(self.maximum if self.maximum is not None else self.steps)


@dataclass
class LossConfig:
    """Area-weighted MSE in normalized units with per-variable and per-level weights.

    ``variable_weights`` maps variable names to weights (``default`` for the rest;
    anemoi's defaults). ``level_weighting``: ``linear`` (``0.2 + 0.001 p``),
    ``relu`` (``max(0.2, 0.001 p)``), or ``none``; it applies to variables on pressure
    levels. ``area_weighted: false`` treats every cell equally. ``name: amse`` uses the
    adjusted MSE on spherical harmonics up to degree ``lmax`` instead (Subich et al. 2025;
    :class:`atmos.train.losses.SpectralAMSE`): it does not reward blurring the scales a
    model cannot place, which plain MSE over long rollouts does.

    ``name: crps`` trains a *stochastic* emulator: every window is rolled out for
    ``members`` members that differ by the model's noise inputs (``data.noise_channels``)
    and scored with the area-weighted fair CRPS (:class:`atmos.train.losses.AreaWeightedCRPS`;
    Ferro 2014, as anemoi's and AIFS-CRPS's ensemble training), in units of the loss scale.
    """

    name: str = "mse"
    lmax: int | None = None
    members: int = 4
    area_weighted: bool = True
    variable_weights: dict[str, float] = field(default_factory=lambda: dict(ANEMOI_VARIABLE_WEIGHTS))
    level_weighting: str = "linear"


@dataclass
class OutputConfig:
    """Where the run is written: ``{dir}/{name}/`` (see :mod:`atmos.train.checkpoint`).

    ``name`` defaults to the config file's stem (or the model name). An existing run
    directory with checkpoints is only reused with ``resume`` (``--resume``) or
    ``overwrite: true``.
    """

    dir: str = "runs"
    name: str | None = None
    overwrite: bool = False
    checkpoint_every_steps: int | None = None
    keep_checkpoints: int = 2
    log_every_steps: int = 10
    progress: bool = True
    tensorboard: bool = False


#: Default ``decoder.transforms``; entries for variables that are not decoded are dropped.
_DEFAULT_TRANSFORMS: dict[str, Any] = {"total_precipitation_6hr": "log1p"}


@dataclass
class DecoderConfig:
    """Decoders for new variables (``task: decoder`` / ``task: finetune``).

    Attributes
    ----------
    variables : list of str
        New variables the backbone never saw (one decoder MLP each).
    hidden : list of int
        Hidden widths of each decoder MLP (per ViT token: ``D -> 512 -> 256 -> patch**2``;
        per U-Net pixel: 1x1 convolutions).
    transforms : dict
        ``variable -> "log1p"`` (scale = the training mean of the variable) or
        ``{"kind": "log1p", "scale": s}``; other variables are learnt as they are
        (standardized).
    prognostic_weight : float
        ``task: finetune`` only: weight of the backbone's own one-step loss added to the
        decoder loss, so that fine-tuning keeps the backbone a forecaster.
    latent_cache : str
        ``task: decoder``: compute the frozen backbone's latent of every training and
        validation window once and reuse it every epoch (:mod:`atmos.train.latent_cache`),
        so that an epoch costs only the decoders; the trained weights and the validation
        RMSE are the same as without it. ``memory`` (a tensor on the training device),
        ``disk`` (``{run_dir}/latent_cache/``, written atomically, reused by a rerun in the
        same folder while the backbone, its statistics and the data selection are
        unchanged), ``none`` (recompute every step), or ``auto`` (default): ``memory`` up
        to ``latent_cache_max_mb``, ``disk`` above, ``none`` when the run makes a single
        pass over the windows, for ``task: finetune`` (the backbone is trained) and for a
        stochastic backbone (``data.noise_channels`` > 0). ``memory``/``disk`` are refused
        for those two. The run logs which one it uses.
    latent_cache_max_mb : float
        Largest cache (training + validation, MB) that ``auto`` keeps in memory; a larger
        one goes to disk, which is read back as fast (the OS page cache) without adding to
        the process's memory (the sample ViT on a year of SPEEDY-world: 393 MB of latents).
    """

    variables: list[str] = field(
        default_factory=lambda: ["total_precipitation_6hr", "evaporation", "total_cloud_cover"]
    )
    hidden: list[int] = field(default_factory=lambda: [512, 256])
    transforms: dict[str, Any] = field(default_factory=lambda: dict(_DEFAULT_TRANSFORMS))
    prognostic_weight: float = 1.0
    latent_cache: str = "auto"
    latent_cache_max_mb: float = 256.0


@dataclass
class DownscaleConfig:
    """A downscaling head (``task: downscale``, :func:`atmos.train.downscale.fit_downscaler`).

    The fine training data are ``data.source`` over ``data.period`` (validation:
    ``validation.source``/``validation.period``); the coarse inputs are their
    conservative coarsening by ``factor``. The optimizer and the learning-rate
    schedule are ``optimizer`` and ``schedule``, as for every task.

    Attributes
    ----------
    channels : list of str
        Downscaled channels (``variable`` or ``variable_level``).
    statics : list of str
        Fine-grid static inputs (stored in the checkpoint with the weights).
    factor : int
        Coarsening factor (the fine grid's size must be a multiple of it).
    model : dict
        Extra :class:`~atmos.models.heads.DownscalingHeadConfig` fields (``hidden``,
        ``fine_hidden``, ...).
    epochs : int or None
        Passes over the training pairs; None = ``schedule.epochs``.
    batch_size : int or None
        Pairs per optimizer step; None = ``data.batch_size``.
    max_minutes : float or None
        Stop after this much wall time (counted from the start, data loading
        included); the schedule then follows whichever of steps or time runs out
        first, so the learning rate is annealed by the time limit.
    threads : int or None
        ``torch.set_num_threads`` (None: leave as is).
    """

    channels: list[str] = field(default_factory=lambda: ["2m_temperature", "geopotential_500"])
    statics: list[str] = field(default_factory=lambda: ["geopotential_at_surface", "land_sea_mask"])
    factor: int = 4
    model: dict[str, Any] = field(default_factory=dict)
    epochs: int | None = None
    batch_size: int | None = None
    max_minutes: float | None = None
    threads: int | None = None


#: Keys of other sections that people look for in ``downscale:``; the error names their home.
_DOWNSCALE_MOVED = {
    "lr": "optimizer.lr", "weight_decay": "optimizer.weight_decay", "data": "data.source",
    "time": "data.period", "val_data": "validation.source", "val_time": "validation.period",
    "seed": "seed", "output_dir": "output.dir", "name": "output.name",
}


#: Values of ``compute.parallel``.
PARALLEL_MODES = ("ddp", "fsdp")
#: Values of ``compute.compile``.
COMPILE_MODES = ("off", "default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")


@dataclass
class ComputeConfig:
    """How the forecast task's training step runs: the GPU and scale switches.

    None of them changes what is learned, only its cost; each is off by default. The
    precision of the step is the top-level ``precision`` (autocast, with a loss scaler for
    fp16).

    Attributes
    ----------
    compile : str or bool
        ``off`` (or false) or a ``torch.compile`` mode (true = ``default``) (``default``, ``reduce-overhead``,
        ``max-autotune``...) for the model of the training step. Validation and
        checkpoints use the uncompiled module (same weights).
    compile_backend : str
        ``torch.compile`` backend: ``inductor`` (generates kernels; needs a C++ compiler on
        CPU), ``aot_eager`` or ``eager`` (no code generation: a check of the graph capture).
    channels_last : bool
        Run the convolutions in channels-last memory layout (the U-Net-GRU's 2-D
        convolutions; on GPUs this enables the NHWC tensor-core kernels).
    activation_checkpointing : bool
        Recompute each transformer block / U-Net stage in the backward pass instead of
        storing its activations (less memory, about one more forward of compute).
    grad_accumulation : int
        Micro-batches of ``data.batch_size`` per optimizer step: the step's gradient is the
        mean over ``grad_accumulation * data.batch_size`` windows per process. An epoch of
        ``max_steps_per_epoch`` steps then reads that many times more windows.
    parallel : str
        With several processes (torchrun / ``atmos slurm``): ``ddp`` (every process holds
        the whole model) or ``fsdp`` (FSDP2 ``fully_shard``: parameters, gradients and
        optimizer state are sharded over the processes, for models that do not fit one
        device). With one process both are the plain model.
    """

    compile: str | bool = "off"
    compile_backend: str = "inductor"
    channels_last: bool = False
    activation_checkpointing: bool = False
    grad_accumulation: int = 1
    parallel: str = "ddp"


#: Values of ``TrainConfig.task``.
TASKS = ("forecast", "decoder", "finetune", "downscale")


@dataclass
class TrainConfig:
    """The whole training configuration (see the module docstring for the YAML form).

    ``device``: ``auto`` (cuda if available, else cpu), ``cpu`` or ``cuda``.
    ``precision``: ``auto`` (bf16 autocast on a GPU that supports it, else fp16 with
    loss scaling; fp32 on CPU), ``fp32``, ``bf16`` or ``fp16`` (asked for explicitly, these
    also run on CPU: bf16 autocast, or fp16 autocast with a loss scaler).
    ``compute``: compilation, memory layout, activation checkpointing, gradient
    accumulation and DDP/FSDP2 (:class:`ComputeConfig`).
    ``deterministic`` asks torch for deterministic GPU kernels (warn-only; CPU kernels already are).
    """

    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    validation: ValidationConfig = field(default_factory=ValidationConfig)
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    multistep: MultistepConfig = field(default_factory=MultistepConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    output: OutputConfig = field(default_factory=OutputConfig)
    task: str = "forecast"
    backbone: str | None = None
    decoder: DecoderConfig = field(default_factory=DecoderConfig)
    downscale: DownscaleConfig = field(default_factory=DownscaleConfig)
    compute: ComputeConfig = field(default_factory=ComputeConfig)
    seed: int = 0
    device: str = "auto"
    precision: str = "auto"
    deterministic: bool = True


# -- conversion ---------------------------------------------------------------------------


def _suggest(key: str, valid: Sequence[str]) -> str:
    close = difflib.get_close_matches(key, list(valid), n=1)
    return f" Did you mean {close[0]!r}?" if close else ""


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _coerce(value: Any, tp: Any, where: str) -> Any:
    """Check/convert a YAML value against a (simple) type hint; raise ConfigError otherwise."""
    origin = typing.get_origin(tp)
    if tp is Any:
        return value
    if origin in (Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None:
            if type(None) in args:
                return None
            raise ConfigError(f"{where} must not be null (expected {_type_name(tp)}).")
        errors = []
        for a in args:
            if a is type(None):
                continue
            try:
                return _coerce(value, a, where)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(errors[0] if len(errors) == 1 else f"{where}: {value!r} does not fit {_type_name(tp)}.")
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, Mapping):
            raise ConfigError(f"{where} must be a mapping of {sorted(f.name for f in dataclasses.fields(tp))}, got {value!r}.")
        return _from_mapping(tp, value, where)
    if origin is list:
        (item,) = typing.get_args(tp) or (Any,)
        if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
            raise ConfigError(f"{where} must be a list, got {value!r} ({type(value).__name__}).")
        return [_coerce(v, item, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        _, vt = typing.get_args(tp) or (str, Any)
        if not isinstance(value, Mapping):
            raise ConfigError(f"{where} must be a mapping, got {value!r} ({type(value).__name__}).")
        return {str(k): _coerce(v, vt, f"{where}.{k}") for k, v in value.items()}
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{where} must be true or false, got {value!r}.")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise ConfigError(f"{where} must be an integer, got {value!r}.")
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)  # YAML 1.1 reads "1e-3" as a string
            except ValueError:
                pass
        raise ConfigError(f"{where} must be a number, got {value!r}.")
    if tp is str:
        if isinstance(value, str):
            return value
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value)
        raise ConfigError(f"{where} must be a string, got {value!r}.")
    return value


def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _from_mapping(cls: type, d: Mapping[str, Any], where: str) -> Any:
    hints = _hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    kwargs = {}
    for key, value in d.items():
        key = str(key)
        if key not in names:
            section = where or "the config"
            moved = f" {key!r} is set in `{_DOWNSCALE_MOVED[key]}` for every task." if (
                cls is DownscaleConfig and key in _DOWNSCALE_MOVED) else _suggest(key, names)
            raise ConfigError(f"unknown key {key!r} in {section}; valid keys are {names}.{moved}")
        kwargs[key] = _coerce(value, hints[key], f"{where}.{key}" if where else key)
    return cls(**kwargs)


def config_from_dict(d: Mapping[str, Any] | None) -> TrainConfig:
    """Build and validate a :class:`TrainConfig` from a nested mapping."""
    cfg = _from_mapping(TrainConfig, d or {}, "")
    validate_config(cfg)
    return cfg


def config_to_dict(cfg: TrainConfig) -> dict[str, Any]:
    """The config as plain nested dicts/lists (YAML and JSON serializable)."""
    return dataclasses.asdict(cfg)


# -- overrides ----------------------------------------------------------------------------

_OVERRIDE = re.compile(r"^([A-Za-z_][\w.\-]*)=(.*)$", re.DOTALL)


def _apply_override(d: dict[str, Any], text: str) -> None:
    m = _OVERRIDE.match(text.strip())
    if not m:
        raise ConfigError(
            f"cannot parse override {text!r}: expected KEY=VALUE with a dotted key, "
            "e.g. optimizer.lr=3e-4 or model.params.depth=4."
        )
    key, raw = m.group(1), m.group(2)
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError as err:
        raise ConfigError(f"cannot parse the value of override {text!r} as YAML: {err}") from None
    parts = key.split(".")
    node: Any = d
    cls: Any = TrainConfig
    for i, part in enumerate(parts[:-1]):
        if cls is not None:
            names = [f.name for f in dataclasses.fields(cls)]
            if part not in names:
                where = ".".join(parts[:i]) or "the config"
                raise ConfigError(
                    f"unknown key {part!r} in {where} (override {text!r}); valid keys are {names}.{_suggest(part, names)}"
                )
            tp = _hints(cls)[part]
            cls = tp if dataclasses.is_dataclass(tp) else None
        nxt = node.get(part)
        if nxt is None:
            nxt = {}
            node[part] = nxt
        if not isinstance(nxt, dict):
            raise ConfigError(f"override {text!r}: {'.'.join(parts[: i + 1])} is not a section.")
        node = nxt
    node[parts[-1]] = value


def _deep_copy(d: Any) -> Any:
    if isinstance(d, Mapping):
        return {str(k): _deep_copy(v) for k, v in d.items()}
    if isinstance(d, list):
        return [_deep_copy(v) for v in d]
    return d


def load_config(
    source: str | os.PathLike | Mapping[str, Any] | TrainConfig | None = None,
    overrides: Sequence[str] = (),
) -> TrainConfig:
    """Load a training config from YAML (path), a mapping or a TrainConfig, then apply overrides.

    Parameters
    ----------
    source : path, mapping, TrainConfig or None
        YAML file, nested dict, or an existing config (copied). None = all defaults.
    overrides : sequence of str
        ``"section.key=value"`` strings; values are parsed as YAML
        (``optimizer.lr=3e-4``, ``data.levels=[500,850]``, ``validation.source=null``).

    Returns
    -------
    TrainConfig
        Validated. When read from a file and ``output.name`` is unset, the run name
        is the file's stem.

    Raises
    ------
    ConfigError
        Missing file, invalid YAML, unknown keys (the valid ones are listed), wrong
        types or inconsistent values.
    """
    stem = None
    if source is None:
        d: dict[str, Any] = {}
    elif isinstance(source, TrainConfig):
        d = config_to_dict(source)
    elif isinstance(source, Mapping):
        d = _deep_copy(source)
    else:
        path = Path(source)
        if not path.is_file():
            raise ConfigError(f"config file {str(path)!r} does not exist; pass the path of a YAML training config.")
        try:
            loaded = yaml.safe_load(path.read_text())
        except yaml.YAMLError as err:
            raise ConfigError(f"config file {str(path)!r} is not valid YAML: {err}") from None
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, Mapping):
            raise ConfigError(f"config file {str(path)!r} must hold a mapping at top level, got {type(loaded).__name__}.")
        d = _deep_copy(loaded)
        stem = path.stem
    for text in overrides:
        _apply_override(d, text)
    cfg = config_from_dict(d)
    if cfg.output.name is None:
        cfg.output.name = stem or cfg.model.name
    return cfg


def save_config(cfg: TrainConfig, path: str | os.PathLike) -> None:
    """Write the resolved config as YAML (atomically)."""
    from atmos.train.checkpoint import atomic_write_text

    atomic_write_text(path, yaml.safe_dump(config_to_dict(cfg), sort_keys=False))


# -- validation ---------------------------------------------------------------------------


def parse_gradient_mode(mode: str) -> int | None:
    """Chunk length of a gradient mode: ``detached`` -> 1, ``truncated:N`` -> N, ``full`` -> None.

    Raises
    ------
    ConfigError
        For anything else.
    """
    m = str(mode).strip().lower()
    if m == "detached":
        return 1
    if m == "full":
        return None
    if m.startswith("truncated:"):
        try:
            n = int(m.split(":", 1)[1])
        except ValueError:
            n = 0
        if n >= 1:
            return n
    raise ConfigError(
        f"multistep.gradient must be 'detached', 'full' or 'truncated:N' with N >= 1, got {mode!r}."
    )


def _choice(value: str, valid: Sequence[str], where: str) -> None:
    if value not in valid:
        raise ConfigError(f"{where} must be one of {list(valid)}, got {value!r}.{_suggest(str(value), valid)}")


def _positive(value: float | None, where: str, allow_zero: bool = False, allow_none: bool = False) -> None:
    if value is None and allow_none:
        return
    if value is None or value < 0 or (value == 0 and not allow_zero):
        raise ConfigError(f"{where} must be {'>= 0' if allow_zero else '> 0'}, got {value!r}.")


def validate_config(cfg: TrainConfig) -> None:
    """Check values that types alone do not constrain; raise ConfigError naming the field."""
    d, ms, opt, sch, val = cfg.data, cfg.multistep, cfg.optimizer, cfg.schedule, cfg.validation
    _choice(cfg.task, TASKS, "task")
    if cfg.task in ("decoder", "finetune"):
        if not cfg.backbone:
            raise ConfigError(
                f"task: {cfg.task} needs `backbone: PATH` (a checkpoint or run folder written by atmos train); "
                "set it in the config or pass backbone=PATH."
            )
        dc = cfg.decoder
        if not dc.variables:
            raise ConfigError("decoder.variables is empty: list the new variables to decode.")
        dup = sorted({v for v in dc.variables if dc.variables.count(v) > 1})
        if dup:
            raise ConfigError(f"decoder.variables lists {dup} more than once.")
        if not dc.hidden or any(h < 1 for h in dc.hidden):
            raise ConfigError(f"decoder.hidden must be a list of positive widths, got {dc.hidden!r}.")
        dc.transforms = {
            k: v for k, v in dc.transforms.items() if k in dc.variables or _DEFAULT_TRANSFORMS.get(k) != v
        }
        extra = sorted(set(dc.transforms) - set(dc.variables))
        if extra:
            raise ConfigError(f"decoder.transforms names {extra}, which are not in decoder.variables {dc.variables}.")
        _positive(dc.prognostic_weight, "decoder.prognostic_weight", allow_zero=True)
        _choice(dc.latent_cache, ("auto", "memory", "disk", "none"), "decoder.latent_cache")
        if cfg.task == "finetune" and dc.latent_cache in ("memory", "disk"):
            raise ConfigError(
                f"decoder.latent_cache is {dc.latent_cache!r} but task is 'finetune': the backbone is trained, so its "
                "latents change every step. Set decoder.latent_cache to 'auto' or 'none', or use task: decoder."
            )
        _positive(dc.latent_cache_max_mb, "decoder.latent_cache_max_mb", allow_zero=True)
    if cfg.task == "downscale":
        _validate_downscale(cfg.downscale)
    if not cfg.model.name:
        raise ConfigError("model.name is empty; set it to a registered model (see atmos.models).")
    if not d.variables:
        raise ConfigError("data.variables is empty: list the prognostic variables to train on.")
    for name in ("variables", "forcings", "statics"):
        vals = getattr(d, name)
        dup = sorted({v for v in vals if vals.count(v) > 1})
        if dup:
            raise ConfigError(f"data.{name} lists {dup} more than once.")
    both = sorted(set(d.variables) & (set(d.forcings) | set(d.statics)))
    if both:
        raise ConfigError(f"{both} are listed as prognostic variables and as forcings/statics; use one role each.")
    _choice(d.grid, ("latlon", "healpix"), "data.grid")
    if d.grid == "healpix" and (d.nside is None or d.nside < 1 or d.nside & (d.nside - 1)):
        raise ConfigError(
            f"data.grid is 'healpix' but data.nside is {d.nside!r}; set a power of two such as 16 or 32."
        )
    _choice(d.regrid_method, ("bilinear", "conservative", "nearest"), "data.regrid_method")
    _choice(d.normalization, ("residual", "state"), "data.normalization")
    _positive(d.history, "data.history")
    _positive(d.seasonal_harmonics, "data.seasonal_harmonics", allow_zero=True)
    _positive(d.batch_size, "data.batch_size")
    _positive(d.num_workers, "data.num_workers", allow_zero=True)
    _positive(d.sample_stride, "data.sample_stride")
    for where, period in (("data.period", d.period), ("validation.period", val.period)):
        if period is not None and len(period) != 2:
            raise ConfigError(f"{where} must be [start, end] (ISO dates), got {period!r}.")
    _positive(val.steps, "validation.steps")
    _positive(val.samples, "validation.samples", allow_none=True)
    _positive(val.batch_size, "validation.batch_size", allow_none=True)
    _positive(val.every_epochs, "validation.every_epochs")
    _choice(opt.name.lower(), ("adamw",), "optimizer.name")
    _positive(opt.lr, "optimizer.lr")
    if len(opt.betas) != 2 or not all(0 <= b < 1 for b in opt.betas):
        raise ConfigError(f"optimizer.betas must be two numbers in [0, 1), got {opt.betas!r}.")
    _positive(opt.weight_decay, "optimizer.weight_decay", allow_zero=True)
    _positive(opt.grad_clip, "optimizer.grad_clip", allow_none=True)
    if opt.ema_decay is not None and not 0 < opt.ema_decay < 1:
        raise ConfigError(f"optimizer.ema_decay must be in (0, 1) (e.g. 0.999) or null, got {opt.ema_decay!r}.")
    _positive(sch.epochs, "schedule.epochs")
    _positive(sch.warmup_steps, "schedule.warmup_steps", allow_zero=True)
    _positive(sch.min_lr, "schedule.min_lr", allow_zero=True)
    if sch.min_lr > opt.lr:
        raise ConfigError(f"schedule.min_lr ({sch.min_lr}) is larger than optimizer.lr ({opt.lr}).")
    if not 0 < sch.warmup_start_factor <= 1:
        raise ConfigError(f"schedule.warmup_start_factor must be in (0, 1], got {sch.warmup_start_factor!r}.")
    _positive(sch.max_steps_per_epoch, "schedule.max_steps_per_epoch", allow_none=True)
    _positive(ms.steps, "multistep.steps")
    parse_gradient_mode(ms.gradient)
    _positive(ms.epoch_increment, "multistep.epoch_increment", allow_zero=True)
    _positive(ms.increment_every, "multistep.increment_every")
    _positive(ms.input_noise, "multistep.input_noise", allow_zero=True)
    if ms.maximum is not None and ms.maximum < ms.steps:
        raise ConfigError(f"multistep.maximum ({ms.maximum}) is smaller than multistep.steps ({ms.steps}).")
    if ms.step_weights is not None:
        if len(ms.step_weights) < ms.max_steps:
            raise ConfigError(
                f"multistep.step_weights has {len(ms.step_weights)} entries but up to {ms.max_steps} steps are "
                "trained; give one weight per step (or null for equal weights)."
            )
        if any(w < 0 for w in ms.step_weights) or sum(ms.step_weights[: ms.steps]) <= 0:
            raise ConfigError(f"multistep.step_weights must be >= 0 with a positive sum, got {ms.step_weights!r}.")
    _choice(cfg.loss.name, ("mse", "amse", "crps"), "loss.name")
    _positive(cfg.data.noise_channels, "data.noise_channels", allow_zero=True)
    if cfg.loss.name == "crps":
        if isinstance(cfg.loss.members, bool) or not isinstance(cfg.loss.members, int) or cfg.loss.members < 2:
            raise ConfigError(
                f"loss.members is {cfg.loss.members!r}; the CRPS needs an ensemble: set an integer >= 2 (e.g. 4)."
            )
        if cfg.data.noise_channels < 1:
            raise ConfigError(
                "loss.name is 'crps' but data.noise_channels is 0: the members would be identical. Set "
                "data.noise_channels (e.g. 4) so that the model has noise inputs to draw members from."
            )
    _positive(cfg.loss.lmax, "loss.lmax", allow_none=True)
    _choice(cfg.loss.level_weighting, ("linear", "relu", "none"), "loss.level_weighting")
    bad = {k: v for k, v in cfg.loss.variable_weights.items() if not isinstance(v, float) or v < 0}
    if bad:
        raise ConfigError(f"loss.variable_weights must be numbers >= 0, got {bad!r}.")
    _positive(cfg.output.checkpoint_every_steps, "output.checkpoint_every_steps", allow_none=True)
    _positive(cfg.output.keep_checkpoints, "output.keep_checkpoints")
    _positive(cfg.output.log_every_steps, "output.log_every_steps")
    _choice(cfg.device.split(":")[0], ("auto", "cpu", "cuda"), "device")
    _choice(cfg.precision, ("auto", "fp32", "bf16", "fp16"), "precision")
    _validate_compute(cfg)


def _validate_compute(cfg: TrainConfig) -> None:
    """Check the ``compute:`` section."""
    c = cfg.compute
    if isinstance(c.compile, bool):
        c.compile = "default" if c.compile else "off"
    _choice(c.compile, COMPILE_MODES, "compute.compile")
    _choice(c.compile_backend, ("inductor", "aot_eager", "eager", "cudagraphs"), "compute.compile_backend")
    _choice(c.parallel, PARALLEL_MODES, "compute.parallel")
    _positive(c.grad_accumulation, "compute.grad_accumulation")
    if cfg.task != "forecast":
        default = ComputeConfig()
        changed = [f.name for f in dataclasses.fields(c) if getattr(c, f.name) != getattr(default, f.name)]
        if changed:
            raise ConfigError(
                f"compute.{changed[0]} is set but task is {cfg.task!r}: the compute switches apply to task: forecast "
                "only. Remove the compute section for this task."
            )
    if c.parallel == "fsdp" and cfg.optimizer.ema_decay:
        raise ConfigError(
            "compute.parallel is 'fsdp' and optimizer.ema_decay is set: an EMA of sharded weights is not supported "
            "yet. Set optimizer.ema_decay: null, or use compute.parallel: ddp."
        )


def _validate_downscale(ds: DownscaleConfig) -> None:
    """Check the ``downscale:`` section (``task: downscale``)."""
    if not ds.channels:
        raise ConfigError("downscale.channels is empty: list the channels to downscale (e.g. [2m_temperature]).")
    for name in ("channels", "statics"):
        vals = getattr(ds, name)
        dup = sorted({v for v in vals if vals.count(v) > 1})
        if dup:
            raise ConfigError(f"downscale.{name} lists {dup} more than once.")
    _positive(ds.factor, "downscale.factor")
    _positive(ds.epochs, "downscale.epochs", allow_none=True)
    _positive(ds.batch_size, "downscale.batch_size", allow_none=True)
    _positive(ds.max_minutes, "downscale.max_minutes", allow_none=True)
    _positive(ds.threads, "downscale.threads", allow_none=True)
