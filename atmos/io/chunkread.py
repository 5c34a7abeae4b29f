"""Concurrent chunk-aligned reads of zarr-backed variables, bypassing dask graphs.

:class:`atmos.io.windows.WindowDataset` reads blocks of time steps of many
variables. Through dask, every block costs a graph cull and a sequential,
one-chunk-at-a-time execution. This module reads the *same values* straight from
the zarr arrays underneath the lazy xarray variables, with zarr's asynchronous API:
every (variable, block) request of a batch is issued at once on zarr's event loop,
chunks are decoded concurrently in zarr's thread pool, and each variable's result
is scattered into the output block (transposed, gathered into HEALPix faces and
normalized) in a worker thread as soon as it arrives.

Which variables qualify
-----------------------
:func:`probe_zarr` accepts a dask-backed ``xarray.DataArray`` only when its dask
graph is a single xarray ``open_dataset`` read of one zarr array (no CF
scale/offset or mask decoding wrappers: the stored values *are* the values),
followed only by pure data-movement layers (``getitem``, ``transpose``,
``rechunk``, ``concatenate``: slicing, level selection, latitude flips, longitude
rolls, transposes). Anything else (arithmetic such as unit conversions,
``astype``, several sources, netCDF, in-memory data) returns ``None`` and the
caller keeps its dask path.

The mapping from output elements to stored elements is not inferred from
metadata: the graph is *executed* once on index probes (a stand-in for the zarr
array whose values are the stored element indices), so the map is exactly what
dask would compute. Because only data-movement layers are allowed, the
transform is separable into a time map ``[T]`` and a map of the other axes
``[C, npoints]``; both are checked. Reads therefore give bit-identical values to
computing the dask array.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["ZarrVariable", "probe_zarr", "read_blocks"]

_MOVE_LAYERS = ("getitem", "transpose", "rechunk", "concatenate")


class _Probe:
    """Stand-in for a stored array: ``probe[key]`` gives int64 indices of the region.

    ``axis=None``: flat index over all axes but the first; ``axis=k``: index along axis ``k``.
    """

    def __init__(self, shape: tuple[int, ...], axis: int | None) -> None:
        self.shape = shape
        self.ndim = len(shape)
        self.dtype = np.dtype(np.int64)
        self.axis = axis

    def __getitem__(self, key: Any) -> np.ndarray:
        if not isinstance(key, tuple):
            key = (key,)
        if len(key) != self.ndim or not all(isinstance(k, slice) for k in key):
            raise TypeError(f"index probe supports a tuple of slices, got {key!r}")
        ranges = [np.arange(n)[k] for n, k in zip(self.shape, key)]
        region = tuple(r.size for r in ranges)
        if self.axis is None:
            rest = np.ravel_multi_index(np.ix_(*ranges[1:]), self.shape[1:]) if self.ndim > 1 else np.zeros((), np.int64)
            vals = np.asarray(rest, np.int64)[None]
        else:
            shape = [1] * self.ndim
            shape[self.axis] = -1
            vals = ranges[self.axis].astype(np.int64).reshape(shape)
        return np.broadcast_to(vals, region)


def _unwrap_zarr(obj: Any) -> Any | None:
    """The zarr array behind xarray's lazy backend wrappers, if nothing else is in between."""
    from xarray.backends.zarr import ZarrArrayWrapper
    from xarray.core import indexing

    passthrough = tuple(
        getattr(indexing, n)
        for n in ("ImplicitToExplicitIndexingAdapter", "CopyOnWriteArray", "MemoryCachedArray")
        if hasattr(indexing, n)
    )
    for _ in range(8):
        if isinstance(obj, ZarrArrayWrapper):
            arr = obj._array
            return arr if tuple(arr.shape) == tuple(obj.shape) else None
        if isinstance(obj, indexing.LazilyIndexedArray):
            key = obj.key.tuple
            full = all(isinstance(k, slice) and k == slice(None) for k in key)
            if not full or tuple(obj.shape) != tuple(obj.array.shape):
                return None
            obj = obj.array
        elif isinstance(obj, passthrough):
            obj = obj.array
        else:
            return None
    return None


def _run_on(array: Any, orig_key: str, fake: Any, sub: Any) -> np.ndarray:
    """Compute the dask array ``sub`` with the graph's source array replaced by ``fake``."""
    import dask.core
    from dask.core import flatten

    hlg = sub.__dask_graph__()
    keys = sub.__dask_keys__()
    dsk = dict(hlg.cull(set(flatten(keys))))
    dsk[orig_key] = fake
    return nested_block(dask.core.get(dsk, keys))


def nested_block(r: Any) -> np.ndarray:
    """Assemble the nested (per-chunk) results of one dask array into one numpy array."""

    def as_lists(x: Any) -> Any:
        return [as_lists(y) for y in x] if isinstance(x, (list, tuple)) else x

    while isinstance(r, (list, tuple)) and len(r) == 1:
        r = r[0]
    if not isinstance(r, (list, tuple)):
        return np.asarray(r)
    return np.block(as_lists(r))


def _affine(m: np.ndarray) -> tuple[int, tuple[int, ...]] | None:
    """``(offset, strides)`` in elements if ``m[i] == offset + sum_j i_j * strides_j``, else None."""
    off = int(m.flat[0])
    strides = []
    for j, n in enumerate(m.shape):
        if n > 1:
            idx = [0] * m.ndim
            idx[j] = 1
            strides.append(int(m[tuple(idx)]) - off)
        else:
            strides.append(0)
    grids = np.ix_(*[np.arange(n, dtype=np.int64) for n in m.shape])
    want = off + sum(g * s for g, s in zip(grids, strides))
    if not np.array_equal(np.broadcast_to(want, m.shape), m):
        return None
    return off, tuple(strides)


@dataclass
class ZarrVariable:
    """How to read one variable of a window dataset straight from its zarr array.

    Attributes
    ----------
    array : zarr.Array
        The stored array, shape ``[T_raw, *rest]`` (picklable; reopened lazily by zarr).
    tmap : numpy.ndarray of int64, shape [T]
        Stored index (first axis) of every time step of the lazy variable.
    box : tuple of slice
        Bounding box, over the stored axes but the first, of everything the variable uses.
    maps : list
        Per output channel ``c`` (level): ``("strided", offset, strides)`` (elements of
        the box, for grids that are a strided view of it: slices, flips, transposes)
        or ``("take", index)`` (int64 ``[npoints]`` flat box index, e.g. HEALPix faces).
    """

    array: Any
    tmap: np.ndarray
    box: tuple[slice, ...]
    maps: list[tuple[Any, ...]]

    @property
    def box_size(self) -> int:
        return int(np.prod([s.stop - s.start for s in self.box]))


def probe_zarr(
    x: Any, grid_shape: Sequence[int], face_index: np.ndarray | None = None
) -> ZarrVariable | None:
    """Map a lazy variable onto the zarr array it was read from, or ``None``.

    Parameters
    ----------
    x : xarray.DataArray
        Dims ``(time, [level], *spatial)``, dask-backed.
    grid_shape : sequence of int
        Spatial shape of ``x`` (e.g. ``(nlat, nlon)`` or ``(npix,)``).
    face_index : numpy.ndarray of int64, shape [npix], optional
        Final layout gather over the flattened grid (HEALPix faces), applied to the map.

    Returns
    -------
    ZarrVariable or None
        None when ``x`` is not a plain read of one zarr array followed by data movement.
    """
    data = getattr(x, "data", None)
    if not hasattr(data, "__dask_graph__") or data.ndim < 2:
        return None
    try:
        hlg = data.__dask_graph__()
        names = list(hlg.layers)
        originals = [n for n in names if n.startswith("original-")]
        reads = [n for n in names if n.startswith("open_dataset-")]
        others = [n for n in names if n not in originals and n not in reads]
        if len(originals) != 1 or len(reads) != 1:
            return None
        if not all(n.split("-")[0] in _MOVE_LAYERS for n in others):
            return None
        orig_key = originals[0]
        layer = dict(hlg.layers[orig_key])
        if list(layer) != [orig_key]:
            return None
        obj = layer[orig_key]
        obj = getattr(obj, "value", obj)  # dask DataNode
        arr = _unwrap_zarr(obj)
        if arr is None:
            return None
        raw_shape = tuple(int(n) for n in arr.shape)
        if len(raw_shape) < 1:
            return None
        npts = int(np.prod(grid_shape))
        nt = data.shape[0]
        first = data[0:1]
        space = _run_on(data, orig_key, _Probe(raw_shape, None), first).reshape(-1, npts)
        t_of_first = _run_on(data, orig_key, _Probe(raw_shape, 0), first)
        if np.unique(t_of_first).size != 1:
            return None  # time mixed with other axes
        along_t = data[(slice(None),) + (slice(0, 1),) * (data.ndim - 1)]
        tmap = _run_on(data, orig_key, _Probe(raw_shape, 0), along_t).reshape(nt)
        space_along_t = _run_on(data, orig_key, _Probe(raw_shape, None), along_t).reshape(nt)
        if np.unique(space_along_t).size != 1 or int(space_along_t[0]) != int(space[0, 0]):
            return None
    except Exception:  # noqa: BLE001 - any surprise in the graph: use dask
        return None

    rest = raw_shape[1:]
    if face_index is not None:
        space = space[:, face_index]
    if rest:
        unr = np.unravel_index(space, rest)
        lo = [int(u.min()) for u in unr]
        hi = [int(u.max()) + 1 for u in unr]
        box = tuple(slice(a, b) for a, b in zip(lo, hi))
        local = np.ravel_multi_index(tuple(u - a for u, a in zip(unr, lo)), tuple(b - a for a, b in zip(lo, hi)))
    else:
        box, local = (), space
    out_grid = tuple(grid_shape) if face_index is None else (npts,)
    maps: list[tuple[Any, ...]] = []
    for c in range(local.shape[0]):
        m = local[c].reshape(out_grid)
        aff = _affine(m) if face_index is None else None
        maps.append(("strided", *aff) if aff is not None else ("take", np.ascontiguousarray(local[c], np.int64)))
    return ZarrVariable(arr, np.ascontiguousarray(tmap, np.int64), box, maps)


def _scatter(
    var: ZarrVariable,
    raw: np.ndarray,
    rel_t: np.ndarray,
    dst: np.ndarray,
    chans: np.ndarray,
    mean: np.ndarray | None,
    std: np.ndarray | None,
) -> None:
    """Copy one variable's stored block into ``dst[:, chans]`` (normalized when ``mean`` is given).

    ``raw``: ``[n_raw, *box]`` as read; ``rel_t``: int64 ``[n]`` rows of ``raw`` for
    the rows of ``dst`` (``[n, C, *grid]`` float32).
    """
    n = rel_t.size
    raw2 = np.ascontiguousarray(raw).reshape(raw.shape[0], -1)
    contiguous = n > 0 and np.array_equal(rel_t, rel_t[0] + np.arange(n))
    base = raw2[rel_t[0] : rel_t[0] + n] if contiguous else raw2[rel_t]
    item = base.itemsize
    grid = dst.shape[2:]
    fuse = base.dtype == np.float32
    for (kind, *spec), c in zip(var.maps, chans.tolist()):
        out = dst[:, c]
        if kind == "strided":
            off, strides = spec
            src = np.lib.stride_tricks.as_strided(
                base[:, off:] if off >= 0 else base,
                shape=(n, *grid),
                strides=(base.strides[0], *(s * item for s in strides)),
                writeable=False,
            )
        else:
            src = np.take(base, spec[0], axis=1).reshape(n, *grid)
        if mean is None:
            out[...] = src
        elif fuse:  # float32 arithmetic, exactly as copy-then-subtract
            np.subtract(src, mean[c], out=out)
            out /= std[c]
        else:
            out[...] = src
            out -= mean[c]
            out /= std[c]


def read_blocks(
    plan: Sequence[tuple[ZarrVariable, np.ndarray]],
    runs: Sequence[tuple[int, int]],
    n_channels: int,
    grid_shape: Sequence[int],
    mean: np.ndarray | None = None,
    std: np.ndarray | None = None,
) -> list[np.ndarray]:
    """Read time steps ``[a, b)`` of every variable for every run, concurrently.

    Parameters
    ----------
    plan : sequence of (ZarrVariable, int64 array of channels)
        Every variable and the output channels its levels go to.
    runs : sequence of (a, b)
        Time ranges (rows of the lazy variables).
    n_channels : int
        ``C``, the number of output channels.
    grid_shape : sequence of int
        Output grid shape (after the layout: ``(nlat, nlon)``, ``(12, nside, nside)``, ``(npix,)``).
    mean, std : numpy.ndarray of float32, shape [C], optional
        Normalization ``(x - mean) / std`` per channel.

    Returns
    -------
    list of numpy.ndarray of float32, each ``[b - a, C, *grid_shape]``.
    """
    from zarr.core.sync import sync

    outs = [np.empty((b - a, n_channels, *grid_shape), np.float32) for a, b in runs]

    async def one(var: ZarrVariable, chans: np.ndarray, k: int) -> None:
        a, b = runs[k]
        rows = var.tmap[a:b]
        r0, r1 = int(rows.min()), int(rows.max()) + 1
        raw = await var.array.async_array.getitem((slice(r0, r1), *var.box))
        raw = np.asarray(raw)
        await asyncio.to_thread(_scatter, var, raw, rows - r0, outs[k], chans, mean, std)

    async def all_() -> None:
        await asyncio.gather(*(one(v, c, k) for k in range(len(runs)) for v, c in plan))

    if runs:
        sync(all_())
    return outs


def submit_raw(plan: Sequence[tuple[ZarrVariable, np.ndarray]], spans: Sequence[tuple[int, int]]) -> Any:
    """Start reading the stored values of every variable for every span; returns a future.

    ``future.result()`` is ``[[(r0, raw) for each variable] for each span]``: ``raw`` is
    the stored block ``[n_raw, box_size]`` (stored dtype) whose row ``k`` is stored
    time ``r0 + k``. The reads run on zarr's event loop (chunks decoded concurrently in
    its thread pool) while the caller goes on: this is how the next windows are prefetched.
    """
    from zarr.core.sync import _get_loop

    async def one(var: ZarrVariable, a: int, b: int) -> tuple[int, np.ndarray]:
        rows = var.tmap[a:b]
        r0, r1 = int(rows.min()), int(rows.max()) + 1
        raw = np.asarray(await var.array.async_array.getitem((slice(r0, r1), *var.box)))
        return r0, raw.reshape(raw.shape[0], -1)

    async def all_() -> list[list[tuple[int, np.ndarray]]]:
        flat = await asyncio.gather(*(one(v, a, b) for a, b in spans for v, _ in plan))
        n = len(plan)
        return [list(flat[k * n : (k + 1) * n]) for k in range(len(spans))]

    return asyncio.run_coroutine_threadsafe(all_(), _get_loop())


def copy_channel(
    var: ZarrVariable,
    level: int,
    row: np.ndarray,
    dst: np.ndarray,
    mean: np.float32 | None = None,
    std: np.float32 | None = None,
) -> None:
    """One stored time step of one channel into ``dst`` (``[*grid]`` float32), normalized if asked.

    ``row`` is the stored step ``[box_size]``; ``level`` the channel's index in ``var.maps``.
    Arithmetic is float32 ``(x - mean) / std`` exactly as in the dask path.
    """
    kind, *spec = var.maps[level]
    if kind == "strided":
        off, strides = spec
        src = np.lib.stride_tricks.as_strided(
            row[off:], shape=dst.shape, strides=tuple(s * row.itemsize for s in strides), writeable=False
        )
    else:
        src = np.take(row, spec[0]).reshape(dst.shape)
    if mean is None:
        dst[...] = src
    elif row.dtype == np.float32:
        np.subtract(src, mean, out=dst)
        dst /= std
    else:
        dst[...] = src
        dst -= mean
        dst /= std
