"""Reading atmos checkpoints (no training code needed).

A checkpoint is a folder with ``model.safetensors`` (weights), ``checkpoint.json``
(model name and params, channels, grid, normalization, ...) and, for training runs,
``training_state.pt`` (loadable with ``torch.load(weights_only=True)``). Run folders
keep them under ``checkpoints/`` with a ``LATEST`` pointer. Writing lives in
:mod:`atmos.train.checkpoint`; this module is what inference (``atmos.rollout``) and
``atmos.train`` both read with.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from atmos.errors import ConfigError, SourceError

__all__ = [
    "CHECKPOINT_FORMAT_VERSION",
    "LATEST_FILE",
    "META_FILE",
    "MODEL_FILE",
    "STATE_FILE",
    "Checkpoint",
    "find_checkpoint",
    "list_checkpoints",
    "load_checkpoint",
    "load_decoder",
    "load_model",
    "load_training_state",
    "weights_hash",
]

CHECKPOINT_FORMAT_VERSION = 1
MODEL_FILE = "model.safetensors"
META_FILE = "checkpoint.json"
STATE_FILE = "training_state.pt"
LATEST_FILE = "LATEST"


def _step_of(path: Path) -> int:
    try:
        meta = json.loads((path / META_FILE).read_text())
        return int(meta.get("training", {}).get("global_step", -1))
    except (OSError, ValueError):
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
    """A loaded checkpoint: ``meta`` (checkpoint.json), ``model_state`` (weights), ``path``."""

    path: Path
    meta: dict[str, Any]
    model_state: dict[str, torch.Tensor] = field(repr=False)

    def training_state(self, map_location: str | torch.device = "cpu") -> dict[str, Any] | None:
        """The optimizer/scheduler/RNG state (``torch.load(weights_only=True)``), or None."""
        return load_training_state(self.path, map_location)


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> Checkpoint:
    """Load ``checkpoint.json`` and ``model.safetensors`` from a checkpoint or run folder.

    Raises
    ------
    SourceError
        No checkpoint at ``path``.
    """
    from safetensors.torch import load_file

    ckpt = find_checkpoint(path)
    if ckpt is None:
        raise SourceError(
            f"no atmos checkpoint under {str(path)!r}: expected a folder with {META_FILE} and {MODEL_FILE}, "
            "a run folder with checkpoints/, or checkpoints/LATEST."
        )
    try:
        meta = json.loads((ckpt / META_FILE).read_text())
    except (OSError, UnicodeDecodeError, ValueError) as err:
        raise SourceError(
            f"{str(ckpt / META_FILE)!r} cannot be read as JSON ({err}); the checkpoint is truncated or damaged. "
            "Use another checkpoint of the run (checkpoints/step-*) or copy it again."
        ) from None
    if not isinstance(meta, dict) or meta.get("format") != "atmos-checkpoint":
        meta = meta if isinstance(meta, dict) else {}
        raise SourceError(f"{str(ckpt / META_FILE)!r} is not an atmos checkpoint (format={meta.get('format')!r}).")
    if int(meta.get("format_version", 0)) > CHECKPOINT_FORMAT_VERSION:
        raise SourceError(
            f"checkpoint {str(ckpt)!r} has format version {meta.get('format_version')}, newer than this atmos "
            f"supports ({CHECKPOINT_FORMAT_VERSION}); upgrade atmos."
        )
    try:
        state = load_file(str(ckpt / MODEL_FILE), device=str(map_location))
    except Exception as err:  # safetensors raises SafetensorError / OSError for truncated or empty files
        raise SourceError(
            f"the weights {str(ckpt / MODEL_FILE)!r} cannot be read ({type(err).__name__}: {err}); the file is "
            "truncated or damaged. Use another checkpoint of the run (checkpoints/step-*) or copy it again."
        ) from None
    return Checkpoint(ckpt, meta, state)


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


def load_model(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> tuple[torch.nn.Module, dict[str, Any]]:
    """Rebuild a trained model from a checkpoint without the training code.

    Returns
    -------
    model : torch.nn.Module
        ``atmos.models.build(meta["model"]["name"], **meta["model"]["params"])`` with
        the stored weights, in eval mode.
    meta : dict
        The parsed ``checkpoint.json`` (normalization, channels, grid, time step...).
    """
    from atmos.models.registry import build

    ckpt = load_checkpoint(path, map_location)
    model = build(ckpt.meta["model"]["name"], **ckpt.meta["model"]["params"])
    try:
        missing, unexpected = model.load_state_dict(ckpt.model_state, strict=False)
    except RuntimeError as err:  # shapes in checkpoint.json do not match the weights
        raise SourceError(
            "the checkpoint's weights do not fit the model its checkpoint.json describes "
            f"({str(err).splitlines()[1].strip() if len(str(err).splitlines()) > 1 else err}); "
            "checkpoint.json and model.safetensors come from different runs or one was edited."
        ) from None
    if missing or unexpected:
        raise ConfigError(
            f"checkpoint {str(ckpt.path)!r} does not match model {ckpt.meta['model']['name']!r}: "
            f"missing weights {missing[:8]}, unexpected weights {unexpected[:8]}."
        )
    return model.to(map_location).eval(), ckpt.meta


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
) -> tuple[torch.nn.Module, dict[str, Any]]:
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
    meta : dict
        ``checkpoint.json`` (``meta["backbone"]`` holds the backbone's path and hash).

    Raises
    ------
    ConfigError
        Not a decoder checkpoint, or ``backbone`` is not the one it was trained on.
    """
    ckpt = load_checkpoint(path, map_location)
    meta = ckpt.meta
    if meta.get("task") != "decoder" or "backbone" not in meta:
        raise ConfigError(
            f"{str(ckpt.path)!r} is not a decoder checkpoint (task={meta.get('task', 'forecast')!r}); pass a run "
            "written by `atmos train` with `task: decoder`."
        )
    if backbone is not None:
        want = meta["backbone"].get("sha256")
        got = weights_hash(backbone)
        if want != got:
            raise ConfigError(
                f"decoder {str(ckpt.path)!r} was trained on backbone {meta['backbone'].get('path')!r} with weights "
                f"hash {str(want)[:16]}…, but the backbone given has hash {got[:16]}…. A decoder only fits the exact "
                "backbone it was trained on: use that checkpoint, or retrain the decoder on this backbone "
                "(`atmos train` with `task: decoder` and `backbone: PATH`)."
            )
    from atmos.models.registry import build

    model = build(meta["model"]["name"], **meta["model"]["params"])
    try:
        missing, unexpected = model.load_state_dict(ckpt.model_state, strict=False)
    except RuntimeError as err:  # shapes in checkpoint.json do not match the weights
        raise SourceError(
            "the checkpoint's weights do not fit the model its checkpoint.json describes "
            f"({str(err).splitlines()[1].strip() if len(str(err).splitlines()) > 1 else err}); "
            "checkpoint.json and model.safetensors come from different runs or one was edited."
        ) from None
    if missing or unexpected:
        raise ConfigError(
            f"decoder checkpoint {str(ckpt.path)!r} does not match its config: missing weights {missing[:8]}, "
            f"unexpected weights {unexpected[:8]}."
        )
    return model.to(map_location).eval(), meta
