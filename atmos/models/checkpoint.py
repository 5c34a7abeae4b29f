"""Reading atmos checkpoints (no training code needed).

A checkpoint is a folder with ``model.safetensors`` (weights), ``checkpoint.json``
(model name and params, channels, grid, normalization, ...) and, for training runs,
``training_state.pt`` (loadable with ``torch.load(weights_only=True)``). Run folders
keep them under ``checkpoints/`` with a ``LATEST`` pointer. Writing lives in
:mod:`atmos.train.checkpoint`; this module is what inference (``atmos.rollout``) and
``atmos.train`` both read with.

One home for each concept:

* :class:`CheckpointMeta` is the typed form of ``checkpoint.json``: every fact has
  one field (the time step is ``time_step_seconds``, the model's channels are its
  ``model.params``, the channel table is ``data_schema``...). It reads the files
  atmos has written so far (older copies of a fact are checked against the one
  kept and then dropped) and is what :func:`atmos.train.checkpoint.save_checkpoint`
  writes through.
* :func:`load_model` is the one "build the model from a checkpoint" (registry
  build + strict ``load_state_dict`` via :func:`load_weights`).
* :func:`weights_hash` is the one model identity: a hash of the state-dict tensors,
  independent of the file they were read from.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import torch

from atmos.errors import ConfigError, SourceError

__all__ = [
    "CHECKPOINT_FORMAT",
    "CHECKPOINT_FORMAT_VERSION",
    "HASH_METHOD",
    "LATEST_FILE",
    "META_FILE",
    "MODEL_FILE",
    "STATE_FILE",
    "BackboneRef",
    "Checkpoint",
    "CheckpointMeta",
    "ModelSpec",
    "find_checkpoint",
    "list_checkpoints",
    "load_checkpoint",
    "load_decoder",
    "load_model",
    "load_training_state",
    "load_weights",
    "weights_hash",
]

CHECKPOINT_FORMAT = "atmos-checkpoint"
CHECKPOINT_FORMAT_VERSION = 1
MODEL_FILE = "model.safetensors"
META_FILE = "checkpoint.json"
STATE_FILE = "training_state.pt"
LATEST_FILE = "LATEST"
HASH_METHOD = "weights-sha256"
"""Name of the :func:`weights_hash` definition (recorded next to hashes, e.g. in forecast stores)."""

TASKS = ("forecast", "decoder", "finetune", "downscale")

# -- checkpoint.json, typed ---------------------------------------------------------------------


def _where(source: str | None) -> str:
    return f"{source!r}" if source else "checkpoint.json"


@dataclass(frozen=True)
class ModelSpec:
    """The registry model a checkpoint holds: ``atmos.models.build(name, **params)``.

    Attributes
    ----------
    name : str
        Registry name (``"vit"``, ``"unet_gru"``, ``"decoder"``, ``"downscale"``...).
    params : mapping
        Full constructor parameters (channels, history and grid included).
    parameters : int or None
        Number of trainable parameters when it was saved (informational).
    """

    name: str
    params: Mapping[str, Any] = field(default_factory=dict)
    parameters: int | None = None

    def to_json(self) -> dict[str, Any]:
        """The ``model`` entry of ``checkpoint.json``."""
        out: dict[str, Any] = {"name": self.name, "params": dict(self.params)}
        if self.parameters is not None:
            out["parameters"] = int(self.parameters)
        return out


@dataclass(frozen=True)
class BackboneRef:
    """The backbone a decoder checkpoint was trained on.

    Attributes
    ----------
    path : str or None
        The backbone checkpoint folder at training time.
    sha256 : str or None
        Its :func:`weights_hash`; a decoder refuses any other backbone.
    model : str or None
        The backbone's registry model name.
    """

    path: str | None = None
    sha256: str | None = None
    model: str | None = None

    def to_json(self) -> dict[str, Any]:
        """The ``backbone`` entry of ``checkpoint.json``."""
        return {"path": self.path, "sha256": self.sha256, "model": self.model}


# older checkpoint.json files (atmos <= 0.1) repeat facts that have one home now; each is
# read only to check it agrees with that home (or to fill it when absent), then dropped
_FORECAST_COPIES = ("variables", "levels", "forcings", "statics", "history")
_CHANNEL_KEYS = ("inputs", "outputs", "forcings", "statics", "history")


def _conflict(source: str | None, key: str, copy: Any, home: str, value: Any) -> SourceError:
    return SourceError(
        f"{_where(source)} stores {key}={copy!r} but {home}={value!r}; the copies of one fact disagree, so the "
        "file was edited by hand or assembled from two runs. Fix or remove the copy "
        f"({key!r}; {home} is the one atmos reads), or use another checkpoint of the run."
    )


def _seconds(value: Any, source: str | None) -> float:
    """A time step from seconds or a pandas-style string (``"0 days 06:00:00"``, ``"6h"``)."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        seconds = float(value)
    else:
        import pandas as pd

        try:
            seconds = pd.Timedelta(str(value)).total_seconds()
        except ValueError:
            seconds = float("nan")
    if not math.isfinite(seconds) or seconds <= 0:
        raise SourceError(
            f"{_where(source)} has time step {value!r}; expected a positive number of seconds "
            "(time_step_seconds, e.g. 21600.0). Fix checkpoint.json or use another checkpoint of the run."
        )
    return seconds


@dataclass(frozen=True, eq=True)
class CheckpointMeta(Mapping[str, Any]):
    """The contents of ``checkpoint.json``, one field per fact.

    Build with :meth:`from_json` / :meth:`read`, write with :meth:`to_json` /
    :meth:`write` (:func:`atmos.train.checkpoint.save_checkpoint` does). For code
    written against the raw JSON dict it is also a read-only mapping over
    :meth:`to_json` (``meta["model"]["name"]``, ``meta.get("stats")``); do not mutate
    what it returns.

    Attributes
    ----------
    model : ModelSpec or None
        The registry model (None only in hand-made test checkpoints).
    task : str
        ``"forecast"`` (default), ``"decoder"``, ``"finetune"`` or ``"downscale"``.
    format_version, atmos_version, torch_version :
        Who wrote it.
    files : mapping
        Role -> file name (``{"model": "model.safetensors", "training_state": ...}``).
    weights : str or None
        ``"raw"`` or ``"ema"`` (which weights ``model.safetensors`` holds).
    grid : mapping or None
        The model grid (:meth:`atmos.grids.Grid.to_dict` plus ``layout`` and ``shape``).
    data_schema : mapping or None
        The channel table with per-channel normalization (forecast checkpoints).
    time_step_seconds : float or None
        The model's time step.
    normalization : mapping or None
        Normalization mode (``outputs``: ``"residual"`` or ``"state"``) and its description.
    stats : mapping or None
        Full per-variable statistics (``xarray.Dataset.to_dict`` form).
    config : mapping
        The resolved training config, as data.
    training : mapping
        Training progress (epoch, global step, losses, validation...).
    sample : mapping or None
        Provenance of the embedded sample model.
    backbone : BackboneRef or None
        Decoder checkpoints: the backbone they were trained on.
    extra : mapping
        Any other top-level entries (kept as they are, e.g. ``validation``, ``factor``).
    """

    model: ModelSpec | None = None
    task: str = "forecast"
    format_version: int = CHECKPOINT_FORMAT_VERSION
    atmos_version: str = ""
    torch_version: str | None = None
    files: Mapping[str, str] = field(default_factory=lambda: {"model": MODEL_FILE})
    weights: str | None = None
    grid: Mapping[str, Any] | None = None
    data_schema: Mapping[str, Any] | None = None
    time_step_seconds: float | None = None
    normalization: Mapping[str, Any] | None = None
    stats: Mapping[str, Any] | None = None
    config: Mapping[str, Any] = field(default_factory=dict)
    training: Mapping[str, Any] = field(default_factory=dict)
    sample: Mapping[str, Any] | None = None
    backbone: BackboneRef | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)

    # -- reading ---------------------------------------------------------------------------------
    @classmethod
    def from_json(cls, data: Mapping[str, Any] | str, *, source: str | os.PathLike | None = None) -> CheckpointMeta:
        """Parse ``checkpoint.json`` (a dict, or its text).

        Parameters
        ----------
        data : mapping or str
            The parsed JSON object, or the JSON text.
        source : path, optional
            Where it came from (for error messages).

        Raises
        ------
        SourceError
            Not JSON, not an atmos checkpoint, a newer format, a malformed field (the
            message names the field, the value and what it should be) or two copies of
            one fact that disagree.
        """
        src = None if source is None else str(source)
        if isinstance(data, CheckpointMeta):
            return data
        if isinstance(data, (str, bytes)):
            try:
                data = json.loads(data)
            except ValueError as err:
                raise SourceError(
                    f"{_where(src)} cannot be read as JSON ({err}); the checkpoint is truncated or damaged. Use "
                    "another checkpoint of the run (checkpoints/step-*) or copy it again."
                ) from None
        if not isinstance(data, Mapping) or data.get("format") != CHECKPOINT_FORMAT:
            fmt = data.get("format") if isinstance(data, Mapping) else type(data).__name__
            raise SourceError(
                f"{_where(src)} is not an atmos checkpoint (format={fmt!r}, expected {CHECKPOINT_FORMAT!r}); pass a "
                "checkpoint or run folder written by `atmos train`."
            )
        d = dict(data)

        def get(key: str, kind: type | tuple[type, ...], what: str) -> Any:
            v = d.pop(key, None)
            if v is not None and not isinstance(v, kind):
                raise SourceError(
                    f"{_where(src)} has {key}={v!r} ({type(v).__name__}); expected {what}. Fix checkpoint.json or "
                    "use another checkpoint of the run."
                )
            return v

        d.pop("format")
        try:
            version = int(get("format_version", (int, str), "an integer") or 0)
        except ValueError:
            raise SourceError(f"{_where(src)} has format_version={data.get('format_version')!r}; expected an integer.") from None
        if version > CHECKPOINT_FORMAT_VERSION:
            raise SourceError(
                f"{_where(src)} has format version {version}, newer than this atmos supports "
                f"({CHECKPOINT_FORMAT_VERSION}); upgrade atmos."
            )
        task = get("task", str, f"one of {list(TASKS)}") or "forecast"
        model = None
        m = get("model", Mapping, "an object {name, params}")
        if m is not None:
            if not isinstance(m.get("name"), str) or not isinstance(m.get("params", {}), Mapping):
                raise SourceError(
                    f"{_where(src)} has model={ {k: m.get(k) for k in ('name', 'params')}!r}; expected "
                    "{'name': registry model name, 'params': {constructor params}}. Fix checkpoint.json or use "
                    "another checkpoint of the run."
                )
            n = m.get("parameters")
            model = ModelSpec(str(m["name"]), dict(m.get("params") or {}), None if n is None else int(n))
        bb = get("backbone", Mapping, "an object {path, sha256, model}")
        backbone = None if bb is None else BackboneRef(bb.get("path"), bb.get("sha256"), bb.get("model"))
        step = d.pop("time_step_seconds", None)
        step_copy = d.pop("time_step", None)
        seconds = None if step is None else _seconds(step, src)
        if step_copy is not None:
            copy_s = _seconds(step_copy, src)
            if seconds is None:
                seconds = copy_s
            elif abs(copy_s - seconds) > 1e-6:
                raise _conflict(src, "time_step", step_copy, "time_step_seconds", step)
        params = dict(model.params) if model is not None else {}
        if task == "forecast":
            channels = d.get("channels")
            if isinstance(channels, Mapping) and all(k in params for k in _CHANNEL_KEYS):
                for k in _CHANNEL_KEYS:  # the model schema: a copy of model.params
                    if k in channels and channels[k] != params[k]:
                        raise _conflict(src, f"channels.{k}", channels[k], f"model.params.{k}", params[k])
                d.pop("channels")
            dcfg = (d.get("config") or {}).get("data") or {} if isinstance(d.get("config"), Mapping) else {}
            for k in _FORECAST_COPIES:  # copies of config.data
                if k in d and k in dcfg:
                    if d[k] != dcfg[k]:
                        raise _conflict(src, k, d[k], f"config.data.{k}", dcfg[k])
                    d.pop(k)
        elif task == "decoder" and "variables" in d and "variables" in params:
            if list(d["variables"]) != list(params["variables"]):
                raise _conflict(src, "variables", d["variables"], "model.params.variables", params["variables"])
            d.pop("variables")
        norm = get("normalization", Mapping, "an object {outputs, description, ...}")
        schema = get("data_schema", Mapping, "the channel table {groups: ...}")
        if norm is not None and schema is not None and "channels" in norm:
            norm = {k: v for k, v in norm.items() if k != "channels"}  # a copy of data_schema's mean/std
        kw: dict[str, Any] = {
            "model": model,
            "task": task,
            "format_version": version or CHECKPOINT_FORMAT_VERSION,
            "atmos_version": str(get("atmos_version", str, "a version string") or ""),
            "torch_version": get("torch_version", str, "a version string"),
            "files": dict(get("files", Mapping, "an object {role: file name}") or {"model": MODEL_FILE}),
            "weights": get("weights", str, "'raw' or 'ema'"),
            "grid": get("grid", Mapping, "an object (Grid.to_dict())"),
            "data_schema": schema,
            "time_step_seconds": seconds,
            "normalization": norm,
            "stats": get("stats", Mapping, "an object (xarray.Dataset.to_dict())"),
            "config": dict(get("config", Mapping, "an object (the training config)") or {}),
            "training": dict(get("training", Mapping, "an object (training progress)") or {}),
            "sample": get("sample", Mapping, "an object (sample provenance)"),
            "backbone": backbone,
        }
        return cls(**kw, extra=d)

    @classmethod
    def read(cls, folder: str | os.PathLike) -> CheckpointMeta:
        """Read ``folder/checkpoint.json``.

        Raises
        ------
        SourceError
            Missing, unreadable or malformed (see :meth:`from_json`).
        """
        path = Path(folder) / META_FILE
        try:
            text = path.read_text()
        except (OSError, UnicodeDecodeError) as err:
            raise SourceError(
                f"{str(path)!r} cannot be read ({type(err).__name__}: {err}); pass a checkpoint folder written by "
                "`atmos train`, or copy it again."
            ) from None
        return cls.from_json(text, source=path)

    # -- writing ---------------------------------------------------------------------------------
    def to_json(self) -> dict[str, Any]:
        """The JSON object of ``checkpoint.json`` (each fact once; ``None`` fields left out)."""
        out: dict[str, Any] = {
            "format": CHECKPOINT_FORMAT,
            "format_version": int(self.format_version),
            "atmos_version": self.atmos_version,
        }
        if self.torch_version is not None:
            out["torch_version"] = self.torch_version
        out["files"] = dict(self.files)
        if self.task != "forecast":
            out["task"] = self.task
        if self.model is not None:
            out["model"] = self.model.to_json()
        for f in ("weights", "config", "data_schema", "grid", "time_step_seconds", "normalization", "stats"):
            v = getattr(self, f)
            if v is not None:
                out[f] = dict(v) if isinstance(v, Mapping) else v
        if self.backbone is not None:
            out["backbone"] = self.backbone.to_json()
        out["training"] = dict(self.training)
        if self.sample is not None:
            out["sample"] = dict(self.sample)
        out.update(self.extra)
        return out

    def write(self, folder: str | os.PathLike, default: Any = None) -> Path:
        """Write ``folder/checkpoint.json`` (not atomic: write into a temporary folder and rename).

        ``default`` converts values JSON does not know (``json.dumps(default=...)``).
        """
        path = Path(folder) / META_FILE
        path.write_text(json.dumps(self.to_json(), indent=1, default=default, allow_nan=True))
        return path

    # -- one accessor per fact -------------------------------------------------------------------
    @property
    def time_step(self) -> Any:
        """The time step as a :class:`datetime.timedelta` (None when not recorded)."""
        import datetime

        return None if self.time_step_seconds is None else datetime.timedelta(seconds=self.time_step_seconds)

    @property
    def model_channels(self) -> dict[str, Any]:
        """The model's channel lists and history (``inputs``, ``outputs``, ``forcings``, ``statics``,
        ``history``), from ``model.params``; empty for models without them."""
        params = self.model.params if self.model is not None else {}
        legacy = self.extra.get("channels")
        legacy = legacy if isinstance(legacy, Mapping) else {}
        return {k: params[k] if k in params else legacy[k] for k in _CHANNEL_KEYS if k in params or k in legacy}

    @property
    def history(self) -> int | None:
        """Input history steps of the model."""
        h = self.model_channels.get("history")
        return None if h is None else int(h)

    @property
    def variables(self) -> list[str]:
        """Decoders: the variables they predict; otherwise the training data's variables."""
        if self.task == "decoder" and self.model is not None and "variables" in self.model.params:
            return list(self.model.params["variables"])
        return list((self.config.get("data") or {}).get("variables") or [])

    @property
    def channel_stats(self) -> dict[str, dict[str, Any]]:
        """Per-channel normalization (``mean``, ``std``, ``residual_mean``, ``residual_std``...) by channel
        name, from the channel table ``data_schema`` (older files without it: ``normalization.channels``)."""
        out: dict[str, dict[str, Any]] = {}
        groups = (self.data_schema or {}).get("groups") or {}
        for group in ("inputs", "targets", "forcings", "statics"):
            for c in groups.get(group) or []:
                out.setdefault(str(c["name"]), dict(c))
        if not out:
            legacy = (self.normalization or {}).get("channels") or {}
            out = {str(k): dict(v) for k, v in legacy.items()}
        return out

    @property
    def global_step(self) -> int | None:
        """Optimizer steps done when it was written."""
        g = self.training.get("global_step")
        return None if g is None else int(g)

    @property
    def output_normalization(self) -> str:
        """``"residual"`` or ``"state"`` (how model outputs become the next state)."""
        return str((self.normalization or {}).get("outputs", "residual"))

    @property
    def name(self) -> str | None:
        """The sample model's name, else the training run's ``output.name`` (None when neither)."""
        if self.sample and self.sample.get("name"):
            return str(self.sample["name"])
        return (self.config.get("output") or {}).get("name")

    def model_file(self, folder: str | os.PathLike) -> Path:
        """Path of the weights file of the checkpoint in ``folder``."""
        return Path(folder) / str(self.files.get("model", MODEL_FILE))

    # -- read-only mapping over to_json() (code written against the raw dict) -----------------------
    @cached_property
    def _json(self) -> dict[str, Any]:
        return self.to_json()

    def __getitem__(self, key: str) -> Any:
        return self._json[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._json)

    def __len__(self) -> int:
        return len(self._json)

    def __repr__(self) -> str:
        name = self.model.name if self.model is not None else None
        return (
            f"CheckpointMeta(task={self.task!r}, model={name!r}, time_step_seconds={self.time_step_seconds}, "
            f"global_step={self.global_step}, atmos_version={self.atmos_version!r})"
        )


def _step_of(path: Path) -> int:
    try:
        meta = json.loads((path / META_FILE).read_text())
        return int(meta.get("training", {}).get("global_step", -1))
    except (OSError, ValueError, AttributeError, TypeError):
        return -1


def list_checkpoints(run_dir: str | os.PathLike) -> list[Path]:
    """Complete checkpoints of a run (folders with ``checkpoint.json``), oldest first."""
    root = Path(run_dir) / "checkpoints"
    if not root.is_dir():
        return []
    found = [p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".") and (p / META_FILE).is_file()]
    return sorted(found, key=lambda p: (_step_of(p), p.name))


def find_checkpoint(path: str | os.PathLike) -> Path | None:
    """Resolve a checkpoint folder from a checkpoint folder, a ``checkpoints/`` folder or a run folder.

    Uses ``LATEST`` when present and valid, else the checkpoint with the highest global
    step. Returns None when there is none.
    """
    p = Path(path)
    if (p / META_FILE).is_file():
        return p
    for root in (p / "checkpoints", p):
        latest = root / LATEST_FILE
        if latest.is_file():
            cand = root / latest.read_text().strip()
            if (cand / META_FILE).is_file():
                return cand
    run = p.parent if p.name == "checkpoints" else p
    found = list_checkpoints(run)
    return found[-1] if found else None


@dataclass
class Checkpoint:
    """A loaded checkpoint: ``meta`` (:class:`CheckpointMeta`), ``model_state`` (weights), ``path``."""

    path: Path
    meta: CheckpointMeta
    model_state: dict[str, torch.Tensor] = field(repr=False)

    def training_state(self, map_location: str | torch.device = "cpu") -> dict[str, Any] | None:
        """The optimizer/scheduler/RNG state (``torch.load(weights_only=True)``), or None."""
        return load_training_state(self.path, map_location)


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> Checkpoint:
    """Load ``checkpoint.json`` and ``model.safetensors`` from a checkpoint or run folder.

    Raises
    ------
    SourceError
        No checkpoint at ``path``, or its files are damaged or malformed.
    """
    from safetensors.torch import load_file

    ckpt = find_checkpoint(path)
    if ckpt is None:
        raise SourceError(
            f"no atmos checkpoint under {str(path)!r}: expected a folder with {META_FILE} and {MODEL_FILE}, "
            "a run folder with checkpoints/, or checkpoints/LATEST."
        )
    meta = CheckpointMeta.read(ckpt)
    wfile = meta.model_file(ckpt)
    try:
        state = load_file(str(wfile), device=str(map_location))
    except Exception as err:  # safetensors raises SafetensorError / OSError for truncated or empty files
        raise SourceError(
            f"the weights {str(wfile)!r} cannot be read ({type(err).__name__}: {err}); the file is "
            "truncated or damaged. Use another checkpoint of the run (checkpoints/step-*) or copy it again."
        ) from None
    _check_extra_files(ckpt, meta)
    return Checkpoint(ckpt, meta, state)


def _check_extra_files(ckpt: Path, meta: CheckpointMeta) -> None:
    """Every other safetensors file the metadata lists (e.g. ``seasonal``) is present and whole.

    Raises
    ------
    SourceError
        A listed file is missing, truncated or damaged (names the role and the file).
    """
    from safetensors import safe_open

    for role, fname in meta.files.items():
        if role in ("model", "training_state") or not str(fname).endswith(".safetensors"):
            continue
        f = ckpt / str(fname)
        try:
            with safe_open(str(f), "pt") as fh:
                fh.keys()
        except Exception as err:
            raise SourceError(
                f"the checkpoint's {role} file {str(f)!r} cannot be read ({type(err).__name__}: {err}); it is missing, "
                "truncated or damaged, and the model cannot run without it. Copy the checkpoint folder again, whole."
            ) from None


def load_training_state(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict[str, Any] | None:
    """``training_state.pt`` of a checkpoint (weights_only load), or None when absent."""
    ckpt = find_checkpoint(path)
    if ckpt is None or not (ckpt / STATE_FILE).is_file():
        return None
    try:
        return torch.load(ckpt / STATE_FILE, map_location=map_location, weights_only=True)
    except Exception as err:  # truncated zip, or a pickle that weights_only refuses
        raise SourceError(
            f"the training state {str(ckpt / STATE_FILE)!r} cannot be loaded safely ({type(err).__name__}); it is "
            "truncated, damaged or holds pickled objects (atmos never loads those: weights_only=True). Resume "
            "from another checkpoint of the run, or start the run again with output.overwrite=true."
        ) from None


def load_weights(model: torch.nn.Module, state: Mapping[str, torch.Tensor], *, source: str) -> torch.nn.Module:
    """``model.load_state_dict(state, strict=True)`` with errors that say what to do.

    Parameters
    ----------
    model : nn.Module
        The model to fill (built from the checkpoint's metadata, or from a config).
    state : mapping of str to Tensor
        The weights.
    source : str
        What the weights are (for messages), e.g. ``"checkpoint '/runs/a/checkpoints/step-00000100'"``.

    Raises
    ------
    SourceError
        A tensor's shape differs from the model's (the metadata and the weights come
        from different runs, or one was edited).
    ConfigError
        Weights missing or left over (names listed).
    """
    try:
        missing, unexpected = model.load_state_dict(state, strict=False)
    except RuntimeError as err:  # shapes in checkpoint.json do not match the weights
        lines = str(err).splitlines()
        raise SourceError(
            f"the weights of {source} do not fit the model its checkpoint.json describes "
            f"({lines[1].strip() if len(lines) > 1 else err}); "
            "checkpoint.json and model.safetensors come from different runs or one was edited."
        ) from None
    if missing or unexpected:
        raise ConfigError(
            f"the weights of {source} do not match model {type(model).__name__}: missing weights {missing[:8]}, "
            f"unexpected weights {unexpected[:8]}. Use the checkpoint.json written with these weights."
        )
    return model


def _build(ckpt: Checkpoint, map_location: str | torch.device) -> torch.nn.Module:
    from atmos.models.registry import build

    if ckpt.meta.model is None:
        raise SourceError(
            f"{str(ckpt.path / META_FILE)!r} has no 'model' entry ({{name, params}}), so there is no model to "
            "build; pass a checkpoint written by `atmos train`."
        )
    spec = ckpt.meta.model
    model = build(spec.name, **dict(spec.params))
    load_weights(model, ckpt.model_state, source=f"checkpoint {str(ckpt.path)!r}")
    return model.to(map_location).eval()


def load_model(
    path: str | os.PathLike, map_location: str | torch.device = "cpu"
) -> tuple[torch.nn.Module, CheckpointMeta]:
    """Rebuild a trained model from a checkpoint without the training code.

    The one "build the model from a checkpoint": :class:`atmos.rollout.Forecaster`,
    ``atmos train`` (decoder backbones) and :func:`load_decoder` all use it.

    Parameters
    ----------
    path : path
        A checkpoint folder, a run folder (``checkpoints/LATEST``) or its ``checkpoints/``.
    map_location : str or torch.device
        Device of the returned model.

    Returns
    -------
    model : torch.nn.Module
        ``atmos.models.build(meta.model.name, **meta.model.params)`` with the stored
        weights (strict), in eval mode.
    meta : CheckpointMeta
        The parsed ``checkpoint.json`` (normalization, channels, grid, time step...).

    Raises
    ------
    SourceError
        No checkpoint there, damaged files, or weights that do not fit the model.
    ConfigError
        Weights missing or left over.
    """
    ckpt = load_checkpoint(path, map_location)
    return _build(ckpt, map_location), ckpt.meta


def weights_hash(model: torch.nn.Module | Mapping[str, torch.Tensor]) -> str:
    """SHA-256 of a model's weights (or a state dict), independent of the file they came from.

    Hashes every ``(name, dtype, shape, bytes)`` of the state dict in name order, so
    the same weights give the same hash whether loaded from safetensors, built in
    memory or moved between devices; any changed bit changes it.
    """
    sd = model.state_dict() if isinstance(model, torch.nn.Module) else model
    h = hashlib.sha256()
    for k in sorted(sd):
        v = sd[k].detach().cpu().contiguous()
        h.update(k.encode())
        h.update(f"{v.dtype}{tuple(v.shape)}".encode())
        h.update(v.reshape(-1).view(torch.uint8).numpy().tobytes() if v.numel() else b"")
    return h.hexdigest()


def load_decoder(
    path: str | os.PathLike,
    backbone: torch.nn.Module | None = None,
    map_location: str | torch.device = "cpu",
) -> tuple[torch.nn.Module, CheckpointMeta]:
    """Load a decoder checkpoint (``task: decoder``) and check it against its backbone.

    Parameters
    ----------
    path : path
        Decoder checkpoint or run folder written by ``atmos train`` with ``task: decoder``.
    backbone : nn.Module, optional
        The backbone it will run on; its :func:`weights_hash` must equal the hash the
        decoder recorded at training time.

    Returns
    -------
    decoder : :class:`atmos.models.decoder.LatentDecoder` (eval mode)
    meta : CheckpointMeta
        ``checkpoint.json`` (``meta.backbone`` holds the backbone's path and :func:`weights_hash`).

    Raises
    ------
    ConfigError
        Not a decoder checkpoint, or ``backbone`` is not the one it was trained on.
    """
    ckpt = load_checkpoint(path, map_location)
    meta = ckpt.meta
    if meta.task != "decoder" or meta.backbone is None:
        raise ConfigError(
            f"{str(ckpt.path)!r} is not a decoder checkpoint (task={meta.task!r}); pass a run "
            "written by `atmos train` with `task: decoder`."
        )
    if backbone is not None:
        want = meta.backbone.sha256
        got = weights_hash(backbone)
        if want != got:
            raise ConfigError(
                f"decoder {str(ckpt.path)!r} was trained on backbone {meta.backbone.path!r} with weights "
                f"hash {str(want)[:16]}…, but the backbone given has hash {got[:16]}…. A decoder only fits the exact "
                "backbone it was trained on: use that checkpoint, or retrain the decoder on this backbone "
                "(`atmos train` with `task: decoder` and `backbone: PATH`)."
            )
    return _build(ckpt, map_location), meta
