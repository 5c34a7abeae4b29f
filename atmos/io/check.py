"""Integrity of zarr stores: every chunk decodes, which chunks are missing, forecast progress.

A truncated or damaged chunk makes the codec (Blosc, Zstd) raise deep inside zarr; users saw a raw
``RuntimeError: error during blosc decompression: -1`` (or worse). :func:`check_store` decodes every
chunk of a local store (``atmos check STORE``) and :func:`decode_guard` turns a decoding failure
while reading data into a :class:`~atmos.errors.DataError` that names the variable and the chunk.
"""

from __future__ import annotations

import contextlib
import json
import os
import traceback
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from atmos.errors import DataError, SourceError

__all__ = ["ChunkProblem", "StoreCheck", "check_store", "decode_guard", "is_decode_error"]

#: Scanning for the damaged chunk after a decoding failure stops after this many chunks.
SCAN_LIMIT = 20_000


@dataclass(frozen=True)
class ChunkProblem:
    """One chunk that cannot be decoded: variable, chunk key (e.g. ``c/1/0/0``) and the codec's error."""

    variable: str
    key: str
    error: str

    def __str__(self) -> str:
        return f"{self.variable} chunk {self.key} ({self.error})"


@dataclass
class StoreCheck:
    """Result of :func:`check_store`.

    ``missing`` counts chunks without a file (they read as the fill value: normal for the leads an
    unfinished forecast has not written yet, a hole otherwise); ``progress`` holds the
    ``atmos_*`` progress attributes of a forecast store (empty for other stores).
    """

    path: str
    n_arrays: int = 0
    n_chunks: int = 0
    damaged: list[ChunkProblem] = field(default_factory=list)
    missing: dict[str, int] = field(default_factory=dict)
    progress: dict[str, Any] = field(default_factory=dict)

    @property
    def complete(self) -> bool:
        """Forecast stores: status ``complete``; other stores: no missing chunk."""
        if self.progress and str(self.progress.get("atmos_status")) != "complete":
            return False
        return not any(self.missing.values())

    @property
    def ok(self) -> bool:
        return not self.damaged and self.complete

    def format(self) -> str:
        lines = [f"{self.path}: {self.n_arrays} arrays, {self.n_chunks} chunks read, {len(self.damaged)} damaged"]
        if self.progress:
            lines.append(
                f"forecast status {self.progress.get('atmos_status')!r}: "
                f"{self.progress.get('atmos_completed_steps')} of {self.progress.get('atmos_total_steps')} leads written"
            )
        for p in self.damaged:
            lines.append(f"DAMAGED {p}")
        for name, n in self.missing.items():
            if n:
                lines.append(f"missing {n} chunk(s) of {name} (read as the fill value)")
        lines.append("OK" if self.ok else ("DAMAGED" if self.damaged else "INCOMPLETE"))
        return "\n".join(lines)


def _local_root(path: str | os.PathLike) -> Path:
    p = Path(path)
    if "://" in str(path):
        raise SourceError(f"{str(path)!r} is a URL; the integrity check reads local stores. Copy it first.")
    if not p.is_dir():
        raise SourceError(f"no zarr store at {str(p)!r} (not a folder).")
    return p


def _arrays(root: Path, variables: Sequence[str] | None) -> list[tuple[str, Any]]:
    import zarr

    try:
        g = zarr.open_group(str(root), mode="r")
    except Exception as err:  # zarr raises several types for a non-store folder
        raise SourceError(f"{str(root)!r} is not a zarr store ({err}).") from err
    arrays = sorted(g.arrays(), key=lambda kv: kv[0])
    if variables is not None:
        want = set(variables)
        arrays = [(n, a) for n, a in arrays if n in want]
    return arrays


def _chunk_problems(root: Path, name: str, arr: Any, limit: int | None) -> tuple[int, list[ChunkProblem], int]:
    """(chunks decoded, damaged, missing) of one array, decoding chunk by chunk."""
    n = 0
    bad: list[ChunkProblem] = []
    missing = 0
    for idx in np.ndindex(*arr.cdata_shape):
        if limit is not None and n >= limit:
            break
        key = arr.metadata.encode_chunk_key(idx)
        n += 1
        if not (root / name / key).exists():
            missing += 1
            continue
        try:
            arr.blocks[idx]
        except Exception as err:  # the codec's own error type (RuntimeError, ValueError, ...)
            bad.append(ChunkProblem(name, key, f"{type(err).__name__}: {err}"))
    return n, bad, missing


def check_store(path: str | os.PathLike, variables: Sequence[str] | None = None) -> StoreCheck:
    """Decode every chunk of a local zarr store.

    Parameters
    ----------
    path : path
        A local zarr store (v2 or v3).
    variables : sequence of str, optional
        Only these arrays (default: all, coordinates included).

    Returns
    -------
    StoreCheck
        Damaged chunks, missing chunks per array and, for a forecast store, its progress.
    """
    root = _local_root(path)
    rep = StoreCheck(str(path))
    for name, arr in _arrays(root, variables):
        n, bad, missing = _chunk_problems(root, name, arr, None)
        rep.n_arrays += 1
        rep.n_chunks += n - missing
        rep.damaged += bad
        rep.missing[name] = missing
    meta = root / "zarr.json"
    if meta.exists():
        try:
            attrs = json.loads(meta.read_text()).get("attributes", {})
        except ValueError:
            attrs = {}
        rep.progress = {k: v for k, v in attrs.items() if k.startswith("atmos_") and k in (
            "atmos_status", "atmos_completed_steps", "atmos_total_steps", "atmos_completed_leads")}
    if rep.progress:
        # unwritten leads of an unfinished forecast are expected; only a 'complete' store must be whole
        if str(rep.progress.get("atmos_status")) != "complete":
            rep.missing = {k: 0 for k in rep.missing}
    return rep


def is_decode_error(err: BaseException) -> bool:
    """Whether ``err`` was raised while a codec decoded a chunk (numcodecs / zarr codecs)."""
    tb = traceback.extract_tb(err.__traceback__)
    return any(("numcodecs" in f.filename or os.sep + "codecs" + os.sep in f.filename) for f in tb) or (
        "decompress" in str(err).lower()
    )


@contextlib.contextmanager
def decode_guard(ds: Any, variables: Sequence[str] | None = None, what: str = "the data") -> Iterator[None]:
    """Turn a chunk-decoding failure inside the block into a DataError naming the damaged chunk(s).

    Parameters
    ----------
    ds : xarray.Dataset or a sequence of them
        The dataset(s) being read; ``encoding["source"]`` locates a local store to scan.
    variables : sequence of str, optional
        The variables being read (scanned first; default: all).
    what : str
        How the message names the data (e.g. ``"the initial conditions"``).
    """
    try:
        yield
    except (DataError, KeyboardInterrupt):
        raise
    except Exception as err:
        if not is_decode_error(err):
            raise
        dss = ds if isinstance(ds, (list, tuple)) else [ds]
        srcs = [d.encoding.get("source") for d in dss if d is not None and getattr(d, "encoding", None)]
        found: list[ChunkProblem] = []
        src = None
        for cand in srcs:
            if cand and Path(str(cand)).is_dir():
                root = Path(str(cand))
                for name, arr in _arrays(root, variables):
                    found += _chunk_problems(root, name, arr, SCAN_LIMIT)[1]
                    if found:
                        src = cand
                        break
            if found:
                break
        if src is None and len(srcs) == 1:
            src = srcs[0]
        where = f" {str(src)!r}" if src else ""
        detail = "; ".join(map(str, found[:5])) if found else f"{type(err).__name__}: {err}"
        raise DataError(
            f"{what}{where} hold a chunk that cannot be decoded: {detail}. The file is damaged or truncated "
            f"(an interrupted copy or download?): copy or download it again. "
            f"`atmos check {src or 'STORE'}` lists every damaged chunk."
        ) from err
