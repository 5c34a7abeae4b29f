"""Latents of a frozen backbone computed once per sample and reused every epoch (``decoder.latent_cache``).

``task: decoder`` trains small decoders on the latent of a backbone that never changes, so
the latent of a training window is the same at every epoch. :class:`LatentCache` holds
them, computed once before the first epoch, so that an epoch costs only the decoder:

``memory``
    One tensor ``[N, *latent]`` (float32, on the training device).
``disk``
    ``{run_dir}/latent_cache/{split}-{key[:16]}/latents.npy`` (a plain ``.npy`` that
    ``np.load`` reads) and ``meta.json``; the batches are read back with ``pread``, so the
    cache is not counted in the process's resident memory. It is written in a temporary
    folder next to it and renamed into place when complete (an interrupted run leaves a
    ``.tmp-*`` folder, removed by the next run, never a half-written cache), and reused by
    a later run in the same run folder only if its key matches: a SHA-256 of the backbone's
    weights hash, its normalization statistics, the data selection (source, period, the
    ``data`` section: channels, levels, history, grid, batch size) and the sample
    indices. Any other cache of the same split is removed.

The cache holds the latents the uncached run recomputes (the same eval-mode backbone
under ``torch.no_grad``; the sample order comes from the same generator, which the cache
does not touch), so the trained weights and the validation RMSE are those of an uncached
run: bitwise where a window's latent does not depend on the batch it is computed in (the
ViT on CPU, for batches of two or more windows), else to float rounding (a batch of one
window, e.g. the last of an epoch, takes another matmul path, ~1e-7 apart; the training
cache therefore never encodes a chunk of one). The validation cache is encoded in the
batches that validation uses, so its RMSE is bitwise that of the uncached run; it also
stores the backbone's own one-step squared error (constant while the backbone is frozen).

It is refused (:func:`choose_mode`) where the latents would not be the same every epoch:
``task: finetune`` (the backbone is trained; its prognostic loss needs gradients through
it) and stochastic backbones (``data.noise_channels`` > 0: fresh noise each call).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import shutil
import uuid
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from atmos.errors import ConfigError

__all__ = ["CACHE_MODES", "LatentCache", "build_latent_cache", "cache_key", "choose_mode", "latent_numel"]

log = logging.getLogger("atmos.train")

#: Values of ``decoder.latent_cache``.
CACHE_MODES = ("auto", "memory", "disk", "none")

_FOLDER = "latent_cache"
_DTYPE = np.dtype("<f4")


def latent_numel(spec: Mapping[str, Any]) -> int:
    """Floats in one sample's latent from a backbone's ``latent_spec()`` (``dim`` x token or pixel grid)."""
    cells = spec.get("tokens") if spec.get("kind") == "tokens" else spec.get("grid")
    return int(spec["dim"]) * int(math.prod(int(c) for c in (cells or [1])))


def choose_mode(
    requested: str,
    *,
    task: str,
    stochastic: bool,
    size_mb: float,
    max_mb: float,
    reused: bool,
) -> tuple[str, str]:
    """The cache mode to use and why: ``("memory" | "disk" | "none", reason)``.

    Parameters
    ----------
    requested : str
        ``decoder.latent_cache`` (one of :data:`CACHE_MODES`).
    task : str
        ``decoder`` or ``finetune``.
    stochastic : bool
        Whether the backbone draws noise (its latent differs per call).
    size_mb : float
        Estimated size of the cache (training + validation latents).
    max_mb : float
        ``decoder.latent_cache_max_mb``: ``auto`` keeps a cache up to this size in memory.
    reused : bool
        Whether a cache would be read more than once (more than one pass over the samples).

    Raises
    ------
    ConfigError
        ``memory``/``disk`` asked for where the latents change between epochs.
    """
    if requested not in CACHE_MODES:
        raise ConfigError(
            f"decoder.latent_cache must be one of {list(CACHE_MODES)}, got {requested!r}; 'auto' picks one."
        )
    if requested == "none":
        return "none", "decoder.latent_cache is 'none'"
    if task != "decoder":
        if requested != "auto":
            raise ConfigError(
                f"decoder.latent_cache is {requested!r} but task is {task!r}: the backbone is trained, so its latents "
                "change every step (and the prognostic loss needs gradients through it). Set decoder.latent_cache "
                "to 'auto' or 'none', or use task: decoder."
            )
        return "none", f"task: {task} trains the backbone"
    if stochastic:
        if requested != "auto":
            raise ConfigError(
                f"decoder.latent_cache is {requested!r} but the backbone is stochastic (data.noise_channels > 0): "
                "its latent differs at every call, so a cache would freeze one noise draw. Set "
                "decoder.latent_cache to 'auto' or 'none'."
            )
        return "none", "the backbone is stochastic (noise inputs)"
    if requested != "auto":
        return requested, f"decoder.latent_cache is {requested!r}"
    if not reused:
        return "none", "auto: every latent would be used once (one pass), nothing to reuse"
    if size_mb <= max_mb:
        return "memory", f"auto: {size_mb:.0f} MB <= decoder.latent_cache_max_mb {max_mb:g}"
    return "disk", f"auto: {size_mb:.0f} MB > decoder.latent_cache_max_mb {max_mb:g}"


def cache_key(parts: Mapping[str, Any]) -> str:
    """SHA-256 of a JSON-able mapping (keys sorted): the identity of a disk cache."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


class LatentCache:
    """The latents of one split (training or validation), in sample order of ``indices``.

    Parameters
    ----------
    indices : sequence of int
        Window indices of the split; :meth:`get` takes window indices.
    latents : Tensor, optional
        ``memory``: ``[N, *shape]``.
    path : Path, optional
        ``disk``: the ``latents.npy`` file.
    shape : tuple of int
        Shape of one sample's latent.
    extra : dict
        What the build stored beside the latents (``prognostic_se``: the validation's
        one-step squared error per channel).
    reused : bool
        Whether a disk cache was found valid and read instead of computed.
    """

    def __init__(
        self,
        indices: Sequence[int],
        *,
        latents: torch.Tensor | None = None,
        path: Path | None = None,
        shape: tuple[int, ...] = (),
        extra: Mapping[str, Any] | None = None,
        reused: bool = False,
    ) -> None:
        self.row = {int(i): k for k, i in enumerate(indices)}
        self.latents, self.path, self.shape = latents, path, tuple(int(s) for s in shape)
        self.extra = dict(extra or {})
        self.reused = reused
        self.mode = "memory" if latents is not None else "disk"
        self._file = None
        self._offset = 0
        if path is not None:
            with open(path, "rb") as f:
                np.lib.format.read_magic(f)
                np.lib.format.read_array_header_2_0(f)
                self._offset = f.tell()
            self._file = open(path, "rb")  # noqa: SIM115 - closed by close()

    @property
    def nbytes(self) -> int:
        """Size of the latents in bytes."""
        return len(self.row) * int(math.prod(self.shape)) * _DTYPE.itemsize

    def get(self, ids: Sequence[int], device: torch.device) -> torch.Tensor:
        """The latents ``[len(ids), *shape]`` of window indices ``ids`` (in that order) on ``device``."""
        rows = [self.row[int(i)] for i in ids]
        if self.latents is not None:
            return self.latents[torch.tensor(rows, device=self.latents.device)].to(device)
        n = int(math.prod(self.shape)) * _DTYPE.itemsize
        out = np.empty((len(rows), *self.shape), dtype=_DTYPE)
        fd = self._file.fileno()
        for k, r in enumerate(rows):
            buf = os.pread(fd, n, self._offset + r * n)
            if len(buf) != n:
                raise OSError(
                    f"latent cache {str(self.path)!r} is truncated at sample {r}; delete its folder to rebuild it."
                )
            out[k] = np.frombuffer(buf, dtype=_DTYPE).reshape(self.shape)
        return torch.from_numpy(out).to(device)

    def close(self) -> None:
        """Close the disk cache's file (memory caches: nothing to do)."""
        if self._file is not None:
            self._file.close()
            self._file = None


def _valid(folder: Path, key: str, n: int) -> tuple[tuple[int, ...], dict[str, Any]] | None:
    """``(shape, extra)`` of a complete disk cache with ``key`` and ``n`` samples in ``folder``, else None."""
    try:
        meta = json.loads((folder / "meta.json").read_text())
        if meta.get("key") != key or int(meta.get("samples", -1)) != n:
            return None
        shape = tuple(int(s) for s in meta["shape"])
        with open(folder / "latents.npy", "rb") as f:
            np.lib.format.read_magic(f)
            full, _, dtype = np.lib.format.read_array_header_2_0(f)
            offset = f.tell()
        size = (folder / "latents.npy").stat().st_size
        if tuple(full) != (n, *shape) or np.dtype(dtype) != _DTYPE or size != offset + n * math.prod(shape) * 4:
            return None
        return shape, dict(meta.get("extra") or {})
    except (OSError, ValueError, KeyError, TypeError):
        return None


def build_latent_cache(
    mode: str,
    indices: Sequence[int],
    encode: Callable[[list[int]], tuple[torch.Tensor, dict[str, torch.Tensor]]],
    *,
    batch_size: int,
    device: torch.device,
    run_dir: Path | None = None,
    split: str = "train",
    key: str = "",
    avoid_single: bool = False,
) -> LatentCache:
    """Compute (or, ``disk``, find) the latents of ``indices``.

    Parameters
    ----------
    mode : str
        ``memory`` or ``disk``.
    indices : sequence of int
        Window indices, encoded in this order in chunks of ``batch_size``.
    encode : callable
        ``encode(ids) -> (latent [len(ids), *shape], sums)``: the backbone's latents of a
        chunk, and tensors summed over the chunks in float64 (stored as ``extra``, as float
        lists).
    batch_size : int
    device : torch.device
        Where a memory cache lives.
    run_dir : Path, optional
        ``disk``: the run folder (the cache goes to ``run_dir/latent_cache``).
    split : str
        Name of the split in the folder name (``train``, ``val``).
    key : str
        ``disk``: :func:`cache_key` of what the latents depend on.
    avoid_single : bool
        Never encode a chunk of one window (a last chunk of one joins the one before):
        some backbones take another kernel path for a batch of one, a float rounding
        apart from the batched one that training batches mostly use.

    Returns
    -------
    LatentCache
    """
    ids = [int(i) for i in indices]
    n = len(ids)
    starts = list(range(0, n, batch_size))
    if avoid_single and len(starts) > 1 and n - starts[-1] == 1:
        starts.pop()
    chunks = [ids[a:b] for a, b in zip(starts, [*starts[1:], n], strict=True)]
    if mode == "memory":
        latents: torch.Tensor | None = None
        sums: dict[str, torch.Tensor] = {}
        for b, chunk in zip(starts, chunks, strict=True):
            lat, s = encode(chunk)
            if latents is None:
                latents = torch.empty((n, *lat.shape[1:]), dtype=torch.float32, device=device)
            latents[b : b + len(lat)] = lat.to(device)
            for k, v in s.items():
                sums[k] = sums[k] + v if k in sums else v.double()  # float64 totals, as _validate's
        if latents is None:
            raise ValueError(f"no {split} samples to cache")
        return LatentCache(ids, latents=latents, shape=tuple(latents.shape[1:]),
                           extra={k: v.tolist() for k, v in sums.items()})
    if mode != "disk":
        raise ValueError(f"mode must be 'memory' or 'disk', got {mode!r}")
    if run_dir is None or not key:
        raise ValueError("a disk latent cache needs run_dir and key")
    root = Path(run_dir) / _FOLDER
    root.mkdir(parents=True, exist_ok=True)
    for stale in root.glob(f".tmp-{split}-*"):  # an interrupted build
        shutil.rmtree(stale, ignore_errors=True)
    final = root / f"{split}-{key[:16]}"
    found = _valid(final, key, n)
    if found is not None:
        shape, extra = found
        return LatentCache(ids, path=final / "latents.npy", shape=shape, extra=extra, reused=True)
    tmp = root / f".tmp-{split}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        sums = {}
        shape: tuple[int, ...] = ()
        with open(tmp / "latents.npy", "wb") as f:
            for b, chunk in zip(starts, chunks, strict=True):
                lat, s = encode(chunk)
                arr = np.ascontiguousarray(lat.detach().cpu().numpy(), dtype=_DTYPE)
                if b == 0:
                    shape = tuple(arr.shape[1:])
                    header = {"descr": np.lib.format.dtype_to_descr(_DTYPE), "fortran_order": False,
                              "shape": (n, *shape)}
                    np.lib.format.write_array_header_2_0(f, header)
                f.write(arr.tobytes())
                for k, v in s.items():
                    sums[k] = sums[k] + v if k in sums else v.double()  # float64 totals, as _validate's
            f.flush()
            os.fsync(f.fileno())
        meta = {"key": key, "split": split, "samples": n, "shape": list(shape), "dtype": "float32",
                "extra": {k: v.tolist() for k, v in sums.items()}}
        (tmp / "meta.json").write_text(json.dumps(meta))
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    for other in root.glob(f"{split}-*"):  # caches of another backbone or selection
        if other != final:
            shutil.rmtree(other, ignore_errors=True)
    return LatentCache(ids, path=final / "latents.npy", shape=shape, extra=meta["extra"])
