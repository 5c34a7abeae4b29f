"""Where a Forecaster's model comes from: checkpoint files, provenance attributes, the torch device.

Checkpoints are read through :mod:`atmos.models.checkpoint` (read-only; never through the trainer).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from atmos.channels import Channel
from atmos.errors import ConfigError, DataError, SourceError
from atmos.models.checkpoint import HASH_METHOD, CheckpointMeta, weights_hash

__all__ = ["checkpoint_info", "checkpoint_path", "load_checkpoint_files", "model_info", "resolve_device"]


def checkpoint_path(path: str | os.PathLike) -> Path:
    """``path`` (``~`` expanded) when it exists.

    Raises
    ------
    SourceError
        It does not exist.
    """
    p = Path(os.path.expanduser(os.fspath(path)))
    if not p.exists():
        raise SourceError(
            f"--model {str(p)!r} does not exist; pass a checkpoint or run folder written by atmos train."
        )
    return p


def load_checkpoint_files(path: str | os.PathLike) -> tuple[Path, CheckpointMeta, dict[str, torch.Tensor]]:
    """Read an atmos checkpoint: ``(folder, checkpoint.json as CheckpointMeta, weights)``.

    ``path`` is a checkpoint folder, a run folder (``checkpoints/LATEST``) or its
    ``checkpoints/`` folder (the layout of :mod:`atmos.train.checkpoint`).

    Raises
    ------
    SourceError
        No checkpoint there, or not an atmos checkpoint.
    """
    from atmos.models.checkpoint import load_checkpoint

    ckpt = load_checkpoint(checkpoint_path(path))
    return ckpt.path, ckpt.meta, ckpt.model_state


def model_info(model: nn.Module, name: str, checkpoint: str, model_type: str | None) -> dict[str, Any]:
    """The provenance attributes every forecast records: name, type, size and weights hash of the model."""
    return {
        "atmos_model": name,
        "atmos_model_type": model_type,
        "atmos_model_parameters": int(sum(p.numel() for p in model.parameters())),
        "atmos_checkpoint": checkpoint,
        "atmos_checkpoint_sha256": weights_hash(model),
        "atmos_checkpoint_hash": HASH_METHOD,
    }


def checkpoint_info(model: nn.Module, meta: CheckpointMeta, folder: Path, name: str) -> dict[str, Any]:
    """Provenance attributes of a model loaded from the checkpoint ``folder`` (see :func:`model_info`)."""
    from atmos.rollout.sample import SAMPLE_NOTE, is_sample_checkpoint

    info = model_info(model, name, str(folder), meta.model.name if meta.model is not None else None)
    info["atmos_checkpoint_atmos_version"] = meta.atmos_version
    if meta.sample or is_sample_checkpoint(folder):
        info["atmos_model_note"] = f"atmos sample model, {SAMPLE_NOTE}"
    if meta.global_step is not None:
        info["atmos_checkpoint_global_step"] = meta.global_step
    data_cfg = meta.config.get("data") or {}
    if data_cfg.get("source"):
        info["atmos_training_data"] = str(data_cfg["source"])
    return info


def resolve_device(device: str | torch.device) -> torch.device:
    """``"auto"`` (a GPU when torch sees one), ``"cpu"``, ``"cuda"`` or ``"cuda:N"`` as a torch device.

    Raises
    ------
    ConfigError
        An unknown device, or a GPU that torch does not see.
    """
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as err:
        raise ConfigError(f"unknown device {device!r}; use 'cpu', 'cuda', 'cuda:N' or 'auto'.") from err
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(
            f"device {device!r} was requested but torch sees no GPU; use --device cpu (or auto)."
        )
    return dev


def check_seasonal(seasonal: Any, inputs: Sequence[Channel], device: torch.device) -> Any:
    """``seasonal`` on ``device`` after checking that it covers the model inputs (None passes through).

    Raises
    ------
    DataError
        Its channels differ from the inputs (the seasonal file belongs to another run).
    """
    if seasonal is None:
        return None
    names_in = [c.name for c in inputs]
    if list(seasonal.names) != names_in:
        raise DataError(
            f"the seasonal cycle's channels {list(seasonal.names)} differ from the model inputs {names_in}; "
            "the checkpoint's seasonal.safetensors belongs to another run."
        )
    return seasonal.to(device)
