"""The output stores of a rollout: default names, checks of the paths, creating or resuming them
(is it the same model and the same settings?), and closing them.

Forecast stores record ``atmos_checkpoint_sha256`` = weights_hash(model) (HASH_METHOD, in
``atmos_checkpoint_hash``). Stores written before that record, for models loaded from a checkpoint
folder, a SHA-256 of the weights *file*; such a hash is upgraded when the file it names is still
there (the file's hash matches, so its weights are read and weights-hashed). Otherwise resume
refuses with a message saying so.
"""

from __future__ import annotations

import json
import os
import re
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from atmos.errors import AtmosError, ConfigError
from atmos.io.paths import check_writable
from atmos.models.checkpoint import HASH_METHOD
from atmos.rollout.layout import Layout, dataset_from_layout, encoding, lazy_nan, nbytes
from atmos.rollout.plan import RolloutPlan
from atmos.rollout.times import init_label
from atmos.rollout.writer import ForecastWriter, read_progress

__all__ = ["Stores", "check_outputs", "close_stores", "default_output_path", "open_stores"]


def default_output_path(model_name: str, inits: pd.DatetimeIndex, folder: str | os.PathLike = ".") -> Path:
    """``./forecast_<model>_<init>.zarr`` (several inits: ``..._<first>_<n>inits.zarr``)."""
    safe = re.sub(r"[^A-Za-z0-9._-]+", "-", model_name).strip("-") or "model"
    label = init_label(inits[0]) + (f"_{len(inits)}inits" if len(inits) > 1 else "")
    return Path(folder) / f"forecast_{safe}_{label}.zarr"


@dataclass
class Stores:
    """The open writers of a run: the forecast (``main``), the native-grid one, and which were created."""

    main: ForecastWriter | None = None
    native: ForecastWriter | None = None
    created: list[ForecastWriter] = field(default_factory=list)  # made by this run (not resumed)

    @property
    def writers(self) -> list[ForecastWriter]:
        return [w for w in (self.main, self.native) if w is not None]


def check_outputs(plan: RolloutPlan, out: Any, native_out: Any, resume: bool) -> None:
    """Check the output paths of a plan before anything is written.

    Raises
    ------
    ConfigError
        ``resume`` without ``out``, ``native_out`` for a plan made without ``native=True``, or a path
        that cannot be written (or lacks the space for the uncompressed forecast).
    """
    if resume and out is None:
        raise ConfigError("resume=True needs the store to complete: pass out= (--out).")
    if native_out is not None and plan.native_layout is None:
        raise ConfigError("native_out needs a plan with the native layout: plan_rollout(..., native=True).")
    for path, lo in ((out, plan.layout), (native_out, plan.native_layout)):
        if path is not None:  # uncompressed float32 size against the free space
            check_writable(path, "the forecast", nbytes=nbytes(lo), hint="Choose another --out",
                           space_hint="Shorten --days, pass a coarser --step, or choose another --out")


def _file_sha256(path: Path) -> str:
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _upgrade_legacy_hash(sha: Any, folder: Any) -> Any:
    """``weights_hash`` of the checkpoint in ``folder`` when ``sha`` is the old hash of its weights file."""
    from safetensors.torch import load_file

    from atmos.models.checkpoint import CheckpointMeta, find_checkpoint, weights_hash

    try:
        ckpt = find_checkpoint(Path(str(folder)))
        if not isinstance(sha, str) or ckpt is None:
            return sha
        wfile = CheckpointMeta.read(ckpt).model_file(ckpt)
        if _file_sha256(wfile) != sha:
            return sha
        return weights_hash(load_file(str(wfile)))
    except (OSError, ValueError, AtmosError):  # not there any more, or not readable: keep what is recorded
        return sha


def _same_model(prev: Mapping[str, Any], at: Mapping[str, Any]) -> bool:
    """Whether a store's recorded model (``prev`` attrs) is the model now (``at`` attrs)."""
    want, got = prev.get("atmos_checkpoint_sha256"), at["atmos_checkpoint_sha256"]
    if want == got:
        return True
    if prev.get("atmos_checkpoint_hash") == HASH_METHOD:
        return False
    return any(
        _upgrade_legacy_hash(want, folder) == got
        for folder in {prev.get("atmos_checkpoint"), at.get("atmos_checkpoint")}
        if folder
    )


def _decoder_identity(d: Mapping[str, Any], legacy: bool = False) -> dict[str, Any]:
    """What identifies an attached decoder on resume: its variables and weights hash (not its path)."""
    sha = _upgrade_legacy_hash(d.get("sha256"), d.get("checkpoint")) if legacy else d.get("sha256")
    return {"variables": d.get("variables"), "sha256": sha}


def check_resume(path: Path, config: Mapping[str, Any], attrs: Mapping[str, Any]) -> None:
    """Refuse to resume ``path`` when it was written with other settings or another model.

    Raises
    ------
    ConfigError
        Names each differing setting (the store's value and the value now) and the fix.
    """
    prev = read_progress(path)
    old = json.loads(prev.get("atmos_rollout_config", "{}"))
    old.setdefault("decoders", [])  # stores written before decoders existed had none
    if old.get("members") is not None:  # stores written before the ensemble dim could be named had 'member'
        old.setdefault("ensemble_dim", "member")
    # the model and the decoders are identified by their weights hash, not by where they were
    # loaded from: the same weights from a checkpoint folder or in memory resume each other
    legacy = prev.get("atmos_checkpoint_hash") != HASH_METHOD
    old["decoders"] = [_decoder_identity(d, legacy) for d in old["decoders"]]
    now = {**config, "decoders": [_decoder_identity(d) for d in config["decoders"]]}
    diff = {k: (old.get(k), v) for k, v in now.items() if old.get(k) != v and k not in ("data", "model")}
    if not _same_model(prev, attrs):
        diff["checkpoint_sha256"] = (prev.get("atmos_checkpoint_sha256"), attrs["atmos_checkpoint_sha256"])
        if legacy:
            diff["checkpoint_sha256"] = (
                f"{prev.get('atmos_checkpoint_sha256')} (a hash of the weights file, written by atmos "
                f"before {HASH_METHOD!r}; it is recognised only when the model is loaded from that "
                "checkpoint folder: pass --model CHECKPOINT)",
                attrs["atmos_checkpoint_sha256"],
            )
    if diff:
        detail = "; ".join(f"{k}: {a!r} in the store, {b!r} now" for k, (a, b) in diff.items())
        raise ConfigError(
            f"cannot resume {str(path)!r}: it was written with different settings ({detail}). Rerun with "
            "the original arguments, or pass --overwrite to start over."
        )


def _open(plan: RolloutPlan, path: Path, lo: Layout, attrs: dict[str, Any], resume: bool, overwrite: bool,
          stores: Stores, information: float | None = None) -> ForecastWriter:
    if resume and path.exists():
        check_resume(path, plan.config, attrs)
        w = ForecastWriter.open(path)
        if w.information != information:
            w.close("interrupted")
            was = "lossless" if w.information is None else f"--information {w.information:g}"
            raise ConfigError(
                f"cannot resume {str(path)!r}: it was written {was}, now "
                f"{'lossless' if information is None else f'--information {information:g}'} is asked for. Rerun "
                f"with {'no --information' if w.information is None else f'--information {w.information:g}'}, or "
                "pass --overwrite to start over."
            )
        for i, k, reason in w.repaired:
            warnings.warn(
                f"{str(path)!r}: initial time #{i} has a hole at lead {k} ({reason}); --resume rewrites "
                f"leads {k}..{plan.n_lead - 1} of it.",
                UserWarning,
                stacklevel=5,
            )
        return w
    tpl = dataset_from_layout(lo, {n: lazy_nan(v["shape"]) for n, v in lo.variables.items()}, attrs)
    w = ForecastWriter.create(path, tpl, overwrite=overwrite, encoding=encoding(lo), information=information)
    stores.created.append(w)
    return w


def open_stores(plan: RolloutPlan, out: Any, native_out: Any, *, resume: bool, overwrite: bool,
                information: float | None = None) -> Stores:
    """Check the paths (:func:`check_outputs`), then create or resume the stores of a plan.

    ``information`` in (0, 1] bit-rounds every variable to keep that fraction of its real
    information (None: lossless; a resumed store must have been written with the same value).

    A store created here is discarded again when the next one cannot be opened.
    """
    from atmos.io.compression import check_information

    information = check_information(information)
    if information is not None and out is None:
        raise ConfigError("information= (--information) compresses the output store: pass out= (--out) as well.")
    check_outputs(plan, out, native_out, resume)
    stores = Stores()
    if out is not None:
        stores.main = _open(plan, Path(out), plan.layout, plan.attrs, resume, overwrite, stores, information)
    try:
        if native_out is not None:
            assert plan.native_layout is not None  # check_outputs
            stores.native = _open(
                plan, Path(native_out), plan.native_layout, plan.native_attrs, resume, overwrite, stores, information
            )
    except BaseException:
        if stores.main is not None:
            stores.main.discard() if stores.main in stores.created else stores.main.close()
        raise
    return stores


def close_stores(stores: Stores, status: str | None, failed: bool) -> None:
    """Close every store with ``status``; a failed run discards the stores it created and left empty."""
    for w in stores.writers:
        if failed and w in stores.created and not any(w.completed):
            w.discard()  # nothing written: leave nothing behind, the corrected rerun starts clean
        else:
            w.close(status)  # a failed store is replaced by a plain rerun (see ForecastWriter.create)
