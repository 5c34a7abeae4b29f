"""Writing one lead of a forecast store: whole chunks, encoded and written without zarr's machinery.

A lead of a forecast store is exactly one chunk per variable (:mod:`atmos.rollout.writer`). For
the stores atmos creates (a local zarr v3 store, a regular chunk grid, the codecs ``bytes``
(little-endian) + ``blosc``) :class:`ChunkFile` encodes that chunk with the very Blosc settings
the array's metadata records (numcodecs, as zarr does) and writes it atomically (a temporary
file renamed into place, as zarr's local store does): the chunk files are byte-identical to those
``Array.__setitem__`` writes, at a fraction of its cost (zarr's per-call indexing, event-loop
hand-offs and worker threads cost several times the encoding itself). Any other array (another
store, codec chain or chunking) is written through zarr (:func:`write_lead`, concurrently with
zarr's async API).
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["ChunkFile", "write_lead"]


class ChunkFile:
    """Whole-chunk writer of one zarr v3 array of a local store (see the module docstring).

    Build it with :meth:`of`, which returns None for an array it cannot write byte-identically.
    """

    def __init__(self, folder: Path, array: Any, codec: Any, chunk: tuple[int, ...], dtype: np.dtype) -> None:
        self.folder = folder
        self.codec = codec
        self.chunk = chunk
        self.dtype = dtype
        self._key = array.metadata.encode_chunk_key
        self._made: set[Path] = set()

    @classmethod
    def of(cls, array: Any) -> ChunkFile | None:
        """A ChunkFile for ``array`` (chunks ``(1, 1, *rest)`` holding one lead each), or None."""
        try:
            import numcodecs
            import zarr.codecs as zc
            from zarr.core.chunk_grids import RegularChunkGrid
            from zarr.storage import LocalStore
        except ImportError:  # pragma: no cover - another zarr layout
            return None
        meta, store = array.metadata, array.store
        if getattr(meta, "zarr_format", None) != 3 or not isinstance(store, LocalStore) or store.read_only:
            return None
        codecs = tuple(meta.codecs)
        if len(codecs) != 2 or not isinstance(codecs[0], zc.BytesCodec) or not isinstance(codecs[1], zc.BloscCodec):
            return None
        dtype = np.dtype(array.dtype)
        endian = getattr(codecs[0].endian, "value", codecs[0].endian)
        if dtype.kind != "f" or endian != "little" or not isinstance(meta.chunk_grid, RegularChunkGrid):
            return None
        chunk = tuple(int(c) for c in meta.chunk_grid.chunk_shape)
        if chunk[:2] != (1, 1) or chunk[2:] != tuple(int(s) for s in array.shape[2:]):
            return None
        b = codecs[1]
        codec = numcodecs.Blosc(
            cname=b.cname.value, clevel=int(b.clevel), shuffle={"noshuffle": 0, "shuffle": 1, "bitshuffle": 2}[
                b.shuffle.value], blocksize=int(b.blocksize), typesize=int(b.typesize or dtype.itemsize),
        )
        return cls(Path(store.root) / array.path, array, codec, chunk, dtype)

    def write(self, index: tuple[int, int], value: np.ndarray) -> None:
        """Encode ``value`` (the chunk's shape without its first two dims) and write it as chunk
        ``(*index, 0, ...)`` (replacing the file atomically)."""
        v = np.ascontiguousarray(value, dtype=self.dtype.newbyteorder("<"))
        if v.shape != self.chunk[2:]:
            raise ValueError(f"a lead of shape {v.shape} does not fill a chunk of shape {self.chunk[2:]}.")
        data = self.codec.encode(v.reshape(-1).view(np.uint8))
        path = self.folder / self._key((*index, *(0,) * (len(self.chunk) - 2)))
        if path.parent not in self._made:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._made.add(path.parent)
        tmp = path.with_name(f".{path.name}.{os.getpid()}-{threading.get_ident()}.partial")
        try:
            with open(tmp, "wb") as f:
                f.write(data)
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise


def _zarr_setitems(items: Sequence[tuple[Any, np.ndarray]], index: tuple[int, int]) -> None:
    """Several arrays' lead through zarr: concurrently with its async API when available."""
    try:
        from zarr.core.sync import sync
    except ImportError:  # pragma: no cover - another zarr layout
        sync = None
    if sync is None or not all(hasattr(a, "_async_array") for a, _ in items):
        for a, v in items:  # pragma: no cover
            a[index] = v
        return

    async def _all() -> None:
        await asyncio.gather(*(a._async_array.setitem(index, v) for a, v in items))

    sync(_all())


def write_lead(items: Sequence[tuple[Any, ChunkFile | None, np.ndarray]], index: tuple[int, int]) -> None:
    """Write one lead ``index = (init, lead)`` of several arrays: ``(zarr array, its ChunkFile or
    None, value)``; the arrays with a ChunkFile directly, the others through zarr."""
    rest = []
    for arr, direct, v in items:
        if direct is not None:
            direct.write(index, v)
        else:
            rest.append((arr, v))
    if rest:
        _zarr_setitems(rest, index)
