"""Checkpoints that never pickle code: safetensors weights + JSON metadata + plain-tensor state.

A run directory (``{output.dir}/{output.name}``) holds::

    config.yaml                 the resolved training config
    metrics.csv                 one row per logged training interval / epoch
    validation.csv              RMSE per channel and lead step (model and persistence)
    DONE                        written when training has finished
    checkpoints/
        LATEST                  name of the newest complete checkpoint (text)
        step-00001200/
            model.safetensors   model weights (the EMA weights when EMA is on)
            checkpoint.json     metadata, see below
            training_state.pt   optimizer/scheduler/scaler/RNG/sampler state

``checkpoint.json`` carries everything needed to rebuild and run the model without
the training code, each fact once (:class:`atmos.models.checkpoint.CheckpointMeta`):
``atmos_version``, ``model`` (registry name and constructor params, channels and
history included), ``config`` (the resolved training config), ``data_schema`` (the
channel table with per-channel normalization), ``grid`` (``Grid.to_dict()``),
``time_step_seconds``, ``normalization`` (mode), ``stats`` (the full per-variable
statistics) and ``training`` (epoch, global step, losses, validation summary).

``training_state.pt`` is written with :func:`torch.save` from plain dicts, lists,
numbers, strings and tensors only, so it loads with ``torch.load(weights_only=True)``.

Writes are atomic: a checkpoint is assembled in a hidden temporary directory and
renamed into place, then ``LATEST`` is replaced (temp file + rename). A crash leaves
either the old or the new checkpoint, never a half-written one.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

# the read side (format constants, finding and loading checkpoints) lives with the models
from atmos.models.checkpoint import (
    CHECKPOINT_FORMAT,
    CHECKPOINT_FORMAT_VERSION,
    LATEST_FILE,
    META_FILE,
    MODEL_FILE,
    STATE_FILE,
    Checkpoint,
    CheckpointMeta,
    find_checkpoint,
    list_checkpoints,
    load_checkpoint,
    load_model,
    load_training_state,
)

__all__ = [
    "CHECKPOINT_FORMAT_VERSION",
    "Checkpoint",
    "CheckpointMeta",
    "atomic_write_text",
    "find_checkpoint",
    "get_rng_state",
    "list_checkpoints",
    "load_checkpoint",
    "load_model",
    "load_training_state",
    "save_checkpoint",
    "set_rng_state",
]

# -- atomic file helpers ----------------------------------------------------------------------


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # pragma: no cover - e.g. Windows
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` to ``path`` via a temporary file in the same folder and :func:`os.replace`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp creates 0600 files
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, torch.Tensor):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"cannot store {type(obj).__name__} in checkpoint.json: {obj!r}")


# -- RNG state (plain tensors only) ----------------------------------------------------------


def get_rng_state() -> dict[str, Any]:
    """torch (CPU and CUDA), numpy and Python RNG states as plain tensors/ints."""
    np_state = np.random.get_state()
    py_state = random.getstate()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {
            "keys": torch.from_numpy(np.asarray(np_state[1], dtype=np.int64)),
            "pos": int(np_state[2]),
            "has_gauss": int(np_state[3]),
            "cached_gaussian": float(np_state[4]),
        },
        "python": {
            "version": int(py_state[0]),
            "internal": torch.tensor(py_state[1], dtype=torch.int64),
            "gauss_next": py_state[2],
        },
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: Mapping[str, Any]) -> None:
    """Restore what :func:`get_rng_state` returned."""
    torch.set_rng_state(state["torch"].cpu())
    n = state["numpy"]
    np.random.set_state(
        ("MT19937", n["keys"].numpy().astype(np.uint32), int(n["pos"]), int(n["has_gauss"]), float(n["cached_gaussian"]))
    )
    p = state["python"]
    random.setstate((int(p["version"]), tuple(int(v) for v in p["internal"].tolist()), p["gauss_next"]))
    if "cuda" in state and torch.cuda.is_available():
        cuda = list(state["cuda"])
        if len(cuda) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(cuda)


# -- save ----------------------------------------------------------------------------------


def _plain_state_dict(sd: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Contiguous CPU copies (safetensors refuses shared or strided storage)."""
    return {k: v.detach().to("cpu").contiguous().clone() for k, v in sd.items()}


def save_checkpoint(
    run_dir: str | os.PathLike,
    name: str,
    model_state: Mapping[str, torch.Tensor],
    meta: Mapping[str, Any],
    training_state: Mapping[str, Any] | None = None,
    keep: int | None = None,
    extra_files: Mapping[str, tuple[str, Mapping[str, torch.Tensor]]] | None = None,
) -> Path:
    """Write ``checkpoints/{name}/`` atomically and point ``checkpoints/LATEST`` at it.

    Parameters
    ----------
    run_dir : path
        The run directory.
    name : str
        Checkpoint folder name (e.g. ``step-00001200``); an existing one is replaced.
    model_state : mapping of str to Tensor
        Weights to store in ``model.safetensors``.
    meta : mapping or CheckpointMeta
        Metadata for ``checkpoint.json``, written through :class:`CheckpointMeta` (the
        format fields, ``atmos_version``, ``torch_version`` and ``files`` are set here).
    training_state : mapping, optional
        Plain dicts/lists/tensors for ``training_state.pt``.
    keep : int, optional
        Keep only the newest ``keep`` checkpoints (by global step).
    extra_files : mapping, optional
        Role -> ``(file name, tensors)``: more safetensors files (e.g. the seasonal cycle,
        ``{"seasonal": ("seasonal.safetensors", {"coef": ...})}``), listed in ``files``.

    Returns
    -------
    Path
        The checkpoint folder.
    """
    from safetensors.torch import save_file

    ckpt_root = Path(run_dir) / "checkpoints"
    ckpt_root.mkdir(parents=True, exist_ok=True)
    final = ckpt_root / name
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}.", suffix=".tmp", dir=ckpt_root))
    try:
        os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp creates 0700 folders
        from atmos._version import __version__

        # through the typed class: each fact once, malformed metadata refused before anything is renamed
        # into place (json round trip: numpy/tensor values become plain numbers and lists)
        plain = json.loads(json.dumps(dict(meta), default=_json_default, allow_nan=True))
        full_meta = CheckpointMeta.from_json({
            **plain,
            "format": CHECKPOINT_FORMAT,
            "format_version": CHECKPOINT_FORMAT_VERSION,
            "atmos_version": str(__version__),
            "torch_version": torch.__version__,
            "files": {
                "model": MODEL_FILE,
                **({"training_state": STATE_FILE} if training_state is not None else {}),
                **{role: fname for role, (fname, _) in (extra_files or {}).items()},
            },
        })
        save_file(_plain_state_dict(model_state), str(tmp / MODEL_FILE), metadata={"format": "pt"})
        for fname, tensors in (extra_files or {}).values():
            save_file(_plain_state_dict(tensors), str(tmp / fname), metadata={"format": "pt"})
        full_meta.write(tmp)
        if training_state is not None:
            torch.save(dict(training_state), tmp / STATE_FILE)
        for f in tmp.iterdir():
            os.chmod(f, 0o666 & ~_umask())  # safetensors writes 0600; others on a cluster must read the weights
            with open(f, "rb") as fh:
                os.fsync(fh.fileno())
        _fsync_dir(tmp)
        if final.exists():
            old = ckpt_root / f".{name}.old"
            shutil.rmtree(old, ignore_errors=True)
            os.replace(final, old)
            os.replace(tmp, final)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, final)
        _fsync_dir(ckpt_root)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    atomic_write_text(ckpt_root / LATEST_FILE, name + "\n")
    if keep is not None:
        for old in list_checkpoints(run_dir)[:-keep]:
            if old.name != name:
                shutil.rmtree(old, ignore_errors=True)
    return final


# -- find / load ---------------------------------------------------------------------------
