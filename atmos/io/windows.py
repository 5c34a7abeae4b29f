"""Training windows over a canonical cube: a fast ``torch.utils.data.Dataset``.

:class:`WindowDataset` turns a canonical dataset (dims ``(time, level, latitude,
longitude)`` or ``(time, level, cell)``) into samples for training emulators. Each
sample around a time ``t0`` is a dict of float32 tensors shaped
``[time, channel, *grid]``:

==============  ====================================  ======================================
key             shape                                 times
==============  ====================================  ======================================
``inputs``      ``[history, C_in, *grid]``            ``t0 - (history-1)*step ... t0``
``targets``     ``[lead_steps, C_out, *grid]``        ``t0 + step ... t0 + lead_steps*step``
``forcings``    ``[history+lead_steps, C_f, *grid]``  both of the above, in order
``statics``     ``[1, C_s, *grid]``                   (no time)
``time``        int64 scalar                          ``t0`` in ns since 1970
==============  ====================================  ======================================

``*grid`` is ``(nlat, nlon)`` on lat-lon grids, ``(12, nside, nside)`` on HEALPix
grids with ``healpix_layout="faces"`` (:meth:`atmos.grids.HealpixGrid.cells_to_faces`)
and ``(npix,)`` with ``healpix_layout="cells"``.

Reading strategy
----------------
Samples are assembled by numpy slicing of in-memory blocks of time steps, never
by per-variable, per-step reads:

* ``cache="blocks"`` (default, streaming): the time axis is cut into blocks aligned
  with the data's dask/zarr time chunks (32 steps for the SPEEDY-world cubes).
  A missing block is read for all needed variables in one synchronous dask
  compute (one read per zarr chunk), converted to ``[time, channel, *grid]``
  float32 (normalized, HEALPix faces applied) and kept in an LRU cache bounded by
  ``cache_bytes``. Windows in nearby times reuse the same blocks.
* ``cache="memory"``: the whole selected period is read once, at construction, into
  one array ``[time, channel, *grid]`` (about ``T * C * npoints * 4`` bytes; e.g.
  one year of 6-hourly SPEEDY-world with 30 channels on 64x32 is ~360 MB). DataLoader
  workers started with ``fork`` share it copy-on-write.

A block costs about as much to read as one window (the zarr chunks must be
decompressed whole either way), so streaming pays off when windows reuse blocks:
consecutive windows, or shuffled windows over a period whose blocks fit in
``cache_bytes`` (per process). For shuffled training over data much larger than the
cache, expect roughly one block read per window; for data that fit in memory use
``cache="memory"``. ``benchmarks/bench_windows.py`` measures both against xbatcher.

The dataset holds only picklable objects (the xarray dataset, numpy arrays); the
block cache is dropped when pickled, so it also works with the ``spawn`` start method.
Reads use dask's graph with a plain in-thread executor (no scheduler threads),
which is safe in forked DataLoader workers.

Time axis
---------
The time coordinate must be strictly increasing (a duplicated or decreasing time
stamp raises :class:`~atmos.errors.DataError` naming it). ``step`` must be a
multiple of the data spacing (the smallest difference between time stamps). A
window is valid when every one of its time stamps exists in the data, so windows
across gaps in the record are skipped. With ``time=slice(a, b)`` every time stamp
of a window (inputs, targets and forcings) lies in ``[a, b]``, so train and
validation periods never share data.
"""

from __future__ import annotations

import itertools
import json
import threading
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd
import torch
import xarray as xr

from atmos.channels import Channel, channel_name, level_label
from atmos.errors import ConfigError, DataError
from atmos.grids import HealpixGrid
from atmos.io.chunkread import nested_block
from atmos.io.coords import grid_of, spatial_dims
from atmos.io.forcings import _NS_PER_DAY, DERIVED_FORCINGS, derived_forcing

__all__ = ["Channel", "WindowDataset", "WindowSchema"]

GROUPS = ("inputs", "targets", "forcings", "statics")
VarSpec = str | Sequence[Any] | Mapping[str, Any] | None


# -- channel schema -----------------------------------------------------------------------------


@dataclass
class WindowSchema:
    """Channel order of every group of a :class:`WindowDataset`, JSON-serialisable.

    Stored in checkpoints so that a model knows which channel is which.
    """

    groups: dict[str, list[Channel]]
    history: int = 1
    lead_steps: int = 1
    step: str = ""
    grid: dict[str, Any] = field(default_factory=dict)
    layout: str = "latlon"
    normalized: bool = False

    def names(self, group: str) -> list[str]:
        """Channel names of ``group`` (``inputs``, ``targets``, ``forcings``, ``statics``)."""
        if group not in self.groups:
            raise ConfigError(f"unknown channel group {group!r}; expected one of {list(self.groups)}.")
        return [c.name for c in self.groups[group]]

    def __getitem__(self, group: str) -> list[str]:
        return self.names(group)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["groups"] = {g: [asdict(c) for c in chans] for g, chans in self.groups.items()}
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> WindowSchema:
        d = dict(d)
        d["groups"] = {g: [Channel.from_dict(c) for c in chans] for g, chans in d["groups"].items()}
        return cls(**d)

    def to_json(self, **kwargs: Any) -> str:
        return json.dumps(self.to_dict(), **kwargs)

    @classmethod
    def from_json(cls, s: str) -> WindowSchema:
        return cls.from_dict(json.loads(s))


# -- helpers -------------------------------------------------------------------------------------


def _as_timedelta(step: Any, what: str = "step") -> pd.Timedelta:
    try:
        td = pd.Timedelta(step)
    except (ValueError, TypeError) as err:
        raise ConfigError(
            f"{what} must be a time interval such as '6h' or timedelta(hours=6), got {step!r}."
        ) from err
    if td <= pd.Timedelta(0):
        raise ConfigError(f"{what} must be positive, got {step!r}.")
    return td


def _td_str(td: pd.Timedelta) -> str:
    try:
        return pd.tseries.frequencies.to_offset(td).freqstr
    except ValueError:  # pragma: no cover
        return str(td)


def _parse_spec(spec: VarSpec, levels: Sequence[Any] | None, group: str) -> list[tuple[str, Any]]:
    """Normalise a variable spec to ``[(name, levels or None)]``."""
    if spec is None:
        return []
    if isinstance(spec, str):
        return [(spec, levels)]
    if isinstance(spec, Mapping):
        return [(str(k), levels if v is None else v) for k, v in spec.items()]
    out = []
    for item in spec:
        if isinstance(item, str):
            out.append((item, levels))
        elif isinstance(item, Sequence) and len(item) == 2 and isinstance(item[0], str):
            out.append((item[0], levels if item[1] is None else item[1]))
        else:
            raise ConfigError(f"{group}: each entry must be a variable name or (name, levels), got {item!r}.")
    return out


def _time_index(ds: xr.Dataset) -> np.ndarray:
    if "time" not in ds.dims or "time" not in ds.coords:
        raise DataError(
            f"a window dataset needs a 'time' dimension with a coordinate; dims are {sorted(map(str, ds.dims))}."
        )
    t = np.asarray(ds["time"].values)
    if not np.issubdtype(t.dtype, np.datetime64):
        raise DataError(
            f"time must be numpy datetime64, got dtype {t.dtype}; convert cftime dates with "
            "ds.convert_calendar('standard', use_cftime=False)."
        )
    t = t.astype("datetime64[ns]")
    if t.size > 1:
        d = np.diff(t.astype(np.int64))
        dup = np.flatnonzero(d == 0)
        if dup.size:
            stamps = sorted({str(t[i]) for i in dup[:5]})
            raise DataError(
                f"duplicated time stamps {stamps}{' ...' if dup.size > 5 else ''} ({dup.size} in all); "
                "drop them, e.g. ds.drop_duplicates('time')."
            )
        back = np.flatnonzero(d < 0)
        if back.size:
            pairs = [f"{t[i]} -> {t[i + 1]}" for i in back[:5]]
            raise DataError(
                f"time is not increasing: {pairs}{' ...' if back.size > 5 else ''}; sort it with ds.sortby('time')."
            )
    return t


_FAST_DASK = True


def _compute_dask(arrays: list) -> list[np.ndarray]:
    """Compute small dask arrays in this thread with little overhead.

    The fast path culls the graph to the wanted keys and runs it with
    ``dask.core.get`` (a plain recursive executor): no graph optimization or
    scheduling, which dominate the cost of reading one block. Falls back to
    ``dask.compute(scheduler="synchronous")`` if the graph API is not what it expects.
    """
    global _FAST_DASK
    import dask

    if _FAST_DASK:
        try:
            import dask.core
            from dask.core import flatten
            from dask.highlevelgraph import HighLevelGraph

            keys = [a.__dask_keys__() for a in arrays]
            graph = HighLevelGraph.merge(*[a.__dask_graph__() for a in arrays])
            graph = graph.cull(set(flatten(keys)))
            res = dask.core.get(dict(graph), keys)
            return [nested_block(r) for r in res]
        except (
            AttributeError,
            ImportError,
            KeyError,
            TypeError,
            ValueError,
        ):  # pragma: no cover - dask version
            _FAST_DASK = False
    return list(dask.compute(*arrays, scheduler="synchronous"))


# -- batches assembled in place -----------------------------------------------------------------


class _BatchRow(torch.Tensor):
    """Row ``_atmos_row`` of a batch tensor ``_atmos_batch`` (a sample of :meth:`WindowDataset.__getitems__`).

    Behaves as a plain tensor (every operation runs on, and returns, plain tensors), except
    that ``torch.stack`` of all rows of one batch, in order, along dim 0 (what the default
    ``DataLoader`` collate does) returns the batch tensor itself, which already holds
    exactly the values the stack would produce: the copy of every sample is skipped. With
    ``out=`` (the collate inside a worker, into shared memory) the batch is returned when it
    is already in shared memory, else it is copied into ``out``.
    """

    _atmos_batch: torch.Tensor
    _atmos_row: int

    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):  # noqa: ANN001, ANN206
        kwargs = kwargs or {}
        if func is torch.stack:
            got = _stack_rows(*args, **kwargs)
            if got is not None:
                return got
        with torch._C.DisableTorchFunctionSubclass():
            return func(*args, **kwargs)


def _stack_rows(tensors: Any, dim: int = 0, *, out: torch.Tensor | None = None) -> torch.Tensor | None:
    """The batch tensor if ``tensors`` are all its rows in order (see :class:`_BatchRow`), else None."""
    if dim != 0 or not isinstance(tensors, (list, tuple)) or not tensors:
        return None
    first = tensors[0]
    base = getattr(first, "_atmos_batch", None)
    if base is None or len(tensors) != base.shape[0]:
        return None
    for k, t in enumerate(tensors):
        if type(t) is not _BatchRow or t._atmos_batch is not base or t._atmos_row != k:
            return None
    if out is None or base.is_shared():
        return base
    with torch._C.DisableTorchFunctionSubclass():
        out.resize_(base.shape).copy_(base)
    return out


def _empty(shape: tuple[int, ...], dtype: type, shared: bool) -> torch.Tensor:
    """An uninitialised contiguous tensor, in shared memory if ``shared`` (as the collate of a worker)."""
    tdt = torch.from_numpy(np.empty(0, dtype)).dtype
    if not shared:
        return torch.empty(shape, dtype=tdt)
    nbytes = max(1, int(np.prod(shape)) * np.dtype(dtype).itemsize)
    storage = torch.UntypedStorage._new_shared(nbytes)
    return torch.empty(0, dtype=tdt).set_(storage, 0, shape)


def _batch_rows(bufs: Mapping[str, torch.Tensor], n: int) -> list[dict[str, torch.Tensor]]:
    """``n`` samples whose tensors are the rows of ``bufs`` (one batch tensor per key)."""
    out = []
    for b in range(n):
        sample = {}
        for k, base in bufs.items():
            row = base[b].as_subclass(_BatchRow)
            row._atmos_batch = base
            row._atmos_row = b
            sample[k] = row
        out.append(sample)
    return out


# -- the dataset ---------------------------------------------------------------------------------


class WindowDataset(torch.utils.data.Dataset):
    """Windows of consecutive time steps of a canonical cube as float32 tensors.

    Parameters
    ----------
    ds : xarray.Dataset
        Canonical cube (see :func:`atmos.open_dataset`); lazy (dask) or in memory.
    inputs : str, sequence or mapping
        Variables of the input state. Each ``(variable, level)`` pair is a channel,
        in the given variable order and ascending level order of the request. An
        entry is a name, or ``(name, levels)``; a mapping ``{name: levels}`` works
        too (``None`` = the default levels).
    targets : same as ``inputs``, optional
        Variables of the target states (default: the same as ``inputs``).
    forcings : sequence of str
        Known-in-advance fields given for every input and target time: dataset
        variables (e.g. ``toa_incident_solar_radiation``, normalized like the
        state when ``stats`` are given) and/or derived encodings from
        :data:`atmos.io.forcings.DERIVED_FORCINGS` (``cos_time_of_day``, ... ; local
        solar time; never normalized).
    statics : sequence of str
        Time-invariant dataset variables (``land_sea_mask``, ``geopotential_at_surface``).
        NaNs raise a DataError.
    history : int
        Number of input time steps (>= 1).
    lead_steps : int
        Number of target time steps (>= 0).
    step : str, timedelta or None
        Time between consecutive steps of a window (default: the data spacing). Must
        be a multiple of the data spacing.
    time : slice, optional
        Period every time stamp of a window must lie in (label based, e.g.
        ``slice("2018-01-01", "2018-10-31")``).
    levels : sequence of numbers, optional
        Pressure levels for variables on levels whose entry does not list its own
        (default: all levels of the data).
    stats : xarray.Dataset, optional
        Statistics (:func:`atmos.io.stats.compute_stats`); if given, dataset channels
        are returned normalized, ``(x - mean) / std`` (state statistics).
    cache : {"blocks", "memory"}
        Streaming with an LRU cache of chunk-aligned time blocks, or the whole
        selected period in memory (see the module docstring).
    cache_bytes : int
        Budget of the block cache, 256 MiB by default (per process; each DataLoader
        worker has its own). Blocks longer than a quarter of it are split.
    block_size : int, optional
        Time steps per block (default: the data's dask time chunks, else 32).
    healpix_layout : {"faces", "cells"}
        Grid layout of HEALPix data: ``[..., 12, nside, nside]`` or ``[..., npix]``.

    Attributes
    ----------
    channels : dict[str, list[str]]
        Channel names per group, in tensor order.
    times : numpy.ndarray of datetime64[ns]
        ``t0`` of every sample, in index order.
    grid : LatLonGrid or HealpixGrid
    """

    def __init__(
        self,
        ds: xr.Dataset,
        inputs: VarSpec,
        targets: VarSpec = None,
        *,
        forcings: Sequence[str] = (),
        statics: Sequence[str] = (),
        history: int = 1,
        lead_steps: int = 1,
        step: Any = None,
        time: slice | None = None,
        levels: Sequence[Any] | None = None,
        stats: xr.Dataset | None = None,
        cache: Literal["blocks", "memory"] = "blocks",
        cache_bytes: int = 256 * 2**20,
        block_size: int | None = None,
        healpix_layout: Literal["faces", "cells"] = "faces",
        reader: Literal["auto", "zarr", "dask"] = "auto",
    ) -> None:
        super().__init__()
        if not isinstance(ds, xr.Dataset):
            raise DataError(f"WindowDataset needs an xarray.Dataset, got {type(ds).__name__}.")
        for name, val, lo in (("history", history, 1), ("lead_steps", lead_steps, 0)):
            if isinstance(val, bool) or not isinstance(val, (int, np.integer)) or val < lo:
                raise ConfigError(f"{name} must be an integer >= {lo}, got {val!r}.")
        if cache not in ("blocks", "memory"):
            raise ConfigError(f"cache must be 'blocks' or 'memory', got {cache!r}.")
        if healpix_layout not in ("faces", "cells"):
            raise ConfigError(f"healpix_layout must be 'faces' or 'cells', got {healpix_layout!r}.")
        if reader not in ("auto", "zarr", "dask"):
            raise ConfigError(f"reader must be 'auto', 'zarr' or 'dask', got {reader!r}.")
        self.history = int(history)
        self.lead_steps = int(lead_steps)
        self.cache_mode = cache
        self.cache_bytes = int(cache_bytes)
        self.healpix_layout = healpix_layout
        self.normalized = stats is not None

        # --- time axis ---
        t_all = _time_index(ds)
        spacing = int(np.diff(t_all.astype(np.int64)).min()) if t_all.size > 1 else None
        if time is not None:
            if not isinstance(time, slice):
                raise ConfigError(
                    f"time must be a slice such as slice('2018-01-01', '2018-06-30'), got {time!r}."
                )
            ds = ds.sel(time=time)
        times = _time_index(ds)
        if times.size == 0:
            raise DataError(f"no time stamps in time={time!r}; the data covers {t_all[:1]}..{t_all[-1:]}.")
        n_steps = self.history + self.lead_steps
        if step is None:
            if spacing is None:
                raise DataError("the dataset has a single time step: cannot make windows (step unknown).")
            step_ns = spacing
        else:
            step_ns = int(_as_timedelta(step).value)
            if spacing is not None and step_ns % spacing != 0:
                raise DataError(
                    f"step {_td_str(pd.Timedelta(step_ns))} is not a multiple of the data spacing "
                    f"{_td_str(pd.Timedelta(spacing))}; use step = k * {_td_str(pd.Timedelta(spacing))}."
                )
        self.step = pd.Timedelta(step_ns)
        tns = times.astype(np.int64)
        offsets = step_ns * np.arange(-(self.history - 1), self.lead_steps + 1, dtype=np.int64)
        want = tns[:, None] + offsets[None, :]
        pos = np.searchsorted(tns, want)
        ok = (pos < tns.size) & (tns[np.minimum(pos, tns.size - 1)] == want)
        valid = ok.all(axis=1)
        self._pos = np.ascontiguousarray(pos[valid], dtype=np.int64)  # [N, history + lead_steps]
        if self._pos.shape[0] == 0:
            span = _td_str(pd.Timedelta(int(offsets[-1] - offsets[0])))
            raise DataError(
                f"no complete window: {n_steps} steps of {_td_str(self.step)} (span {span}) do not fit in "
                f"the {times.size} time stamps {times[:1]}..{times[-1:]} (time={time!r}). "
                "Use a longer period or fewer history/lead steps."
            )
        self._times_ns = tns

        # --- grid ---
        self.grid = grid_of(ds)
        self._sdims = spatial_dims(ds)
        healpix = isinstance(self.grid, HealpixGrid)
        if healpix and healpix_layout == "faces":
            self._face_index: np.ndarray | None = self.grid.face_index.ravel()
            self.grid_shape: tuple[int, ...] = self.grid.face_shape
        else:
            self._face_index = None
            self.grid_shape = tuple(self.grid.shape)
        if healpix:
            lon = self.grid.lon
            self._lon = (
                lon[self._face_index].reshape(self.grid_shape) if self._face_index is not None else lon
            )
        else:
            self._lon = np.broadcast_to(self.grid.lon[None, :], self.grid.shape).copy()
        self._layout = "latlon" if not healpix else healpix_layout

        # --- channels ---
        in_spec = _parse_spec(inputs, levels, "inputs")
        if not in_spec:
            raise ConfigError("inputs must name at least one variable.")
        tg_spec = in_spec if targets is None else _parse_spec(targets, levels, "targets")
        fo_names = [forcings] if isinstance(forcings, str) else list(forcings)
        st_names = [statics] if isinstance(statics, str) else list(statics)

        self._dyn: list[tuple[str, Any]] = []  # (variable, level) of every dataset time-varying channel
        self._dyn_index: dict[tuple[str, Any], int] = {}
        chans: dict[str, list[Channel]] = {g: [] for g in GROUPS}
        idx: dict[str, list[int]] = {"inputs": [], "targets": [], "forcings": []}
        self._derived: list[tuple[int, str]] = []  # (position in forcings, name)

        for group, spec in (("inputs", in_spec), ("targets", tg_spec)):
            for var, lev in spec:
                for level in self._resolve_levels(ds, var, lev, group, dynamic=True):
                    idx[group].append(self._add_dyn(var, level))
                    chans[group].append(self._channel(ds, var, level))
        for k, var in enumerate(fo_names):
            if var in ds.data_vars:
                for level in self._resolve_levels(ds, var, levels, "forcings", dynamic=True):
                    idx["forcings"].append(self._add_dyn(var, level))
                    chans["forcings"].append(self._channel(ds, var, level))
            elif var in DERIVED_FORCINGS:
                self._derived.append((len(chans["forcings"]), var))
                idx["forcings"].append(-1)
                chans["forcings"].append(Channel(var, var, None, "1", "derived"))
            else:
                raise DataError(
                    f"forcing {var!r} is neither a dataset variable ({sorted(map(str, ds.data_vars))}) nor a "
                    f"derived forcing ({list(DERIVED_FORCINGS)})."
                )
        # storage order: each variable's channels contiguous (one strided copy per variable and block)
        first_seen = {v: k for k, (v, _) in reversed(list(enumerate(self._dyn)))}
        order = sorted(range(len(self._dyn)), key=lambda c: (first_seen[self._dyn[c][0]], c))
        remap = np.empty(len(order), np.int64)
        remap[order] = np.arange(len(order))
        self._dyn = [self._dyn[c] for c in order]
        self._dyn_index = {key: c for c, key in enumerate(self._dyn)}
        idx = {g: [int(remap[c]) if c >= 0 else -1 for c in lst] for g, lst in idx.items()}

        static_chans: list[tuple[str, Any]] = []
        for var in st_names:
            for level in self._resolve_levels(ds, var, levels, "statics", dynamic=False):
                static_chans.append((var, level))
                chans["statics"].append(self._channel(ds, var, level))

        # --- statistics ---
        self._mean = np.zeros(len(self._dyn), np.float32)
        self._std = np.ones(len(self._dyn), np.float32)
        if stats is not None:
            lookup = self._lookup_stats(ds, stats, set(self._dyn) | set(static_chans))
            for c, key in enumerate(self._dyn):
                self._mean[c], self._std[c] = lookup[key][0], lookup[key][1]
            for g in GROUPS:
                chans[g] = [
                    c
                    if c.source == "derived"
                    else Channel(
                        c.name, c.variable, c.level, c.units, c.source, *lookup[(c.variable, c.level)]
                    )
                    for c in chans[g]
                ]
        self._ch_in = np.asarray(idx["inputs"], np.int64)
        self._ch_out = np.asarray(idx["targets"], np.int64)
        fidx = np.asarray(idx["forcings"], np.int64)
        self._f_ds_pos = np.flatnonzero(fidx >= 0)
        self._ch_f = fidx[self._f_ds_pos]
        self._n_forcings = len(fidx)
        self._chans = chans

        # --- read plan: one entry per variable, the levels it needs and their channels ---
        plan: dict[str, list[tuple[Any, int]]] = {}
        for c, (var, level) in enumerate(self._dyn):
            plan.setdefault(var, []).append((level, c))
        self._plan: list[tuple[str, xr.DataArray, np.ndarray]] = []
        for var, items in plan.items():
            da_ = ds[var]
            if items[0][0] is not None:
                da_ = da_.sel(level=[lev for lev, _ in items])
                da_ = da_.transpose("time", "level", *self._sdims)
            else:
                da_ = da_.transpose("time", *self._sdims)
            self._plan.append((var, da_, np.asarray([c for _, c in items], np.int64)))

        # --- direct zarr reads (bit-identical to the dask path; see atmos.io.chunkread) ---
        self._zarr: list[tuple[Any, np.ndarray]] | None = None
        if reader != "dask":
            self._zarr = self._probe_zarr()
            if self._zarr is None and reader == "zarr":
                raise DataError(
                    "reader='zarr' needs every dataset channel to be a plain read of one zarr array "
                    f"(variables {[v for v, _, _ in self._plan]}); arithmetic, CF scale/offset decoding, "
                    "several files or in-memory data are read through dask. Use reader='auto'."
                )
        self.reader = "zarr" if self._zarr is not None else "dask"
        self._dyn_src: list[tuple[int, int]] = [(0, 0)] * len(self._dyn)  # channel -> (variable, level index)
        for vi, (_, chans) in enumerate(self._zarr or []):
            for li, c in enumerate(chans.tolist()):
                self._dyn_src[c] = (vi, li)
        self._tod_cache: dict[tuple[str, int], np.ndarray] = {}
        self._seg_cache: dict[bytes, list[tuple[int, int, int, int]]] = {}

        # --- statics (small, loaded now) ---
        self._statics = self._load_statics(ds, static_chans, stats)

        # --- blocks ---
        n_t = times.size
        step_bytes = max(1, len(self._dyn) * int(np.prod(self.grid_shape)) * 4)
        if block_size is None:
            bounds = self._chunk_bounds(n_t)
            max_len = max(1, self.cache_bytes // (4 * step_bytes)) if cache == "blocks" else n_t
            bounds = self._split_long(bounds, max_len)
        else:
            if int(block_size) < 1:
                raise ConfigError(f"block_size must be >= 1, got {block_size!r}.")
            bounds = np.unique(np.r_[np.arange(0, n_t, int(block_size)), n_t])
        self._bounds = bounds.astype(np.int64)  # block b covers [bounds[b], bounds[b+1])
        self._block_of = np.repeat(np.arange(len(bounds) - 1), np.diff(bounds))
        self._cache: OrderedDict[int, np.ndarray] = OrderedDict()
        self._cached_bytes = 0
        self._cache_nbytes: dict[int, int] = {}
        self._lock = threading.Lock()  # the cache may be shared by threads (e.g. a prefetching loader)
        self._data: np.ndarray | None = None
        if cache == "memory":
            self._data = self._read_all(n_t)

    # -- construction helpers -----------------------------------------------------------------
    def _resolve_levels(self, ds: xr.Dataset, var: str, lev: Any, group: str, dynamic: bool) -> list[Any]:
        if var not in ds.data_vars:
            raise DataError(
                f"{group}: variable {var!r} is not in the dataset; it has {sorted(map(str, ds.data_vars))}."
            )
        x = ds[var]
        allowed = {"time", "level", *self._sdims}
        extra = [d for d in x.dims if d not in allowed]
        missing_sp = [d for d in self._sdims if d not in x.dims]
        if extra or missing_sp:
            raise DataError(
                f"{group}: variable {var!r} has dims {x.dims}; expected a subset of "
                f"('time', 'level', {', '.join(map(repr, self._sdims))}) including the grid dims."
            )
        if dynamic and "time" not in x.dims:
            raise DataError(
                f"{group}: variable {var!r} has no time dimension; pass time-invariant fields as statics=."
            )
        if not dynamic and "time" in x.dims:
            raise DataError(
                f"statics: variable {var!r} varies in time (dims {x.dims}); pass it as a forcing, or select "
                f"one time step (ds[{var!r}] = ds[{var!r}].isel(time=0, drop=True))."
            )
        if "level" not in x.dims:
            return [None]
        have = np.asarray(x["level"].values)
        if lev is None:
            return [level_label(v) for v in have]
        want = [lev] if np.ndim(lev) == 0 else list(lev)
        miss = [w for w in want if not np.any(np.isclose(have.astype(float), float(w)))]
        if miss:
            raise DataError(
                f"{group}: variable {var!r} has no level(s) {miss}; available levels: "
                f"{[level_label(v) for v in have]}."
            )
        return [level_label(have[np.flatnonzero(np.isclose(have.astype(float), float(w)))[0]]) for w in want]

    def _add_dyn(self, var: str, level: Any) -> int:
        key = (var, level)
        if key not in self._dyn_index:
            self._dyn_index[key] = len(self._dyn)
            self._dyn.append(key)
        return self._dyn_index[key]

    @staticmethod
    def _channel(ds: xr.Dataset, var: str, level: Any) -> Channel:
        units = ds[var].attrs.get("units")
        return Channel(
            channel_name(var, level), var, level, None if units is None else str(units), "dataset"
        )

    @staticmethod
    def _lookup_stats(ds: xr.Dataset, stats: xr.Dataset, keys: set[tuple[str, Any]]) -> dict:
        from atmos.io.stats import stat_values

        missing = sorted({v for v, _ in keys if v not in stats.data_vars})
        if missing:
            raise DataError(
                f"stats have no entry for {missing}; they hold {sorted(map(str, stats.data_vars))}. "
                "Recompute them (atmos.io.stats.compute_stats) including these variables."
            )
        out: dict[tuple[str, Any], tuple[float | None, ...]] = {}
        for var in sorted({v for v, _ in keys}):
            levs = [lev for v, lev in keys if v == var]
            like = ds[var].sel(level=levs) if levs[0] is not None else ds[var]
            like = like.isel({d: 0 for d in like.dims if d not in ("level",)}, drop=True)
            vals = []
            for kind in ("state", "residual"):
                try:
                    m, s = stat_values(stats, var, kind, like=like, guard=kind == "state")
                except DataError:
                    if kind == "state":
                        raise
                    m = s = None
                if m is not None and (m.ndim != (1 if levs[0] is not None else 0) or s.ndim != m.ndim):
                    raise DataError(
                        f"stats of {var!r} must be one value per variable and level; got dims {m.dims}. "
                        "Compute them with dims=('time', 'latitude', 'longitude')."
                    )
                vals.append((m, s))
            for k, lev in enumerate(levs):
                row = []
                for m, s in vals:
                    for a in (m, s):
                        if a is None:
                            row.append(None)
                        else:
                            v = np.asarray(a.values, np.float64)
                            row.append(float(v[k] if v.ndim else v))
                out[(var, lev)] = tuple(row)
        return out

    def _load_statics(
        self, ds: xr.Dataset, chans: list[tuple[str, Any]], stats: xr.Dataset | None
    ) -> np.ndarray:
        npts = int(np.prod(self.grid.shape))
        arr = np.empty((1, len(chans), npts), np.float32)
        for c, (var, level) in enumerate(chans):
            x = ds[var] if level is None else ds[var].sel(level=level)
            vals = np.asarray(x.transpose(*self._sdims).values, dtype=np.float32).reshape(npts)
            nans = int(np.isnan(vals).sum())
            if nans:
                raise DataError(
                    f"static variable {channel_name(var, level)!r} has {nans} NaN values (of {npts}); "
                    f"fill them first, e.g. ds[{var!r}] = ds[{var!r}].fillna(0)."
                )
            arr[0, c] = vals
        if stats is not None and chans:
            lookup = self._lookup_stats(ds, stats, set(chans))
            mean = np.asarray([lookup[k][0] for k in chans], np.float32)
            std = np.asarray([lookup[k][1] for k in chans], np.float32)
            arr = (arr - mean[None, :, None]) / std[None, :, None]
        return self._layout_grid(arr.astype(np.float32, copy=False))

    def _layout_grid(self, arr: np.ndarray) -> np.ndarray:
        """``[t, c, npoints]`` -> ``[t, c, *grid_shape]`` (HEALPix faces applied)."""
        if self._face_index is not None:
            arr = np.take(arr, self._face_index, axis=-1)
        return np.ascontiguousarray(arr.reshape(*arr.shape[:2], *self.grid_shape))

    def _chunk_bounds(self, n_t: int) -> np.ndarray:
        """Block boundaries: the dask time chunks, else the storage chunks, else 32 steps."""
        size = 32
        for _, x, _ in self._plan:
            if x.chunks is not None:
                return np.r_[0, np.cumsum(x.chunks[0])].astype(np.int64)
        for _, x, _ in self._plan:
            pref = x.encoding.get("preferred_chunks", {}).get("time")
            if pref:
                size = int(pref)
                break
        return np.unique(np.r_[np.arange(0, n_t, size), n_t]).astype(np.int64)

    @staticmethod
    def _split_long(bounds: np.ndarray, max_len: int) -> np.ndarray:
        out = [int(bounds[0])]
        for a, b in itertools.pairwise(bounds.tolist()):
            cuts = list(range(int(a) + max_len, int(b), max_len))
            out += cuts + [int(b)]
        return np.asarray(out, np.int64)

    def _probe_zarr(self) -> list[tuple[Any, np.ndarray]] | None:
        """The zarr read plan of every variable, or None if one of them is not zarr-backed."""
        try:
            from atmos.io.chunkread import probe_zarr
        except ImportError:  # pragma: no cover - zarr missing
            return None
        out = []
        for _, x, chans in self._plan:
            z = probe_zarr(x, self.grid.shape, self._face_index)
            if z is None:
                return None
            out.append((z, chans))
        return out

    # -- reading ------------------------------------------------------------------------------
    def _read_all(self, n_t: int) -> np.ndarray:
        """Every time step, read block by block into one array ``[T, C, *grid]``."""
        data = np.empty((n_t, len(self._dyn), *self.grid_shape), np.float32)
        runs = list(itertools.pairwise(self._bounds.tolist()))
        for k in range(0, len(runs), 16):  # a few blocks at a time, read concurrently
            group = runs[k : k + 16]
            for (a, b), blk in zip(group, self._read_many(group)):
                data[a:b] = blk
        return data

    def _read_many(self, runs: list[tuple[int, int]]) -> list[np.ndarray]:
        """:meth:`_read` of every ``(a, b)`` in ``runs``; concurrently when reading zarr directly."""
        if self._zarr is None or len(runs) <= 1:
            return [self._read(a, b) for a, b in runs]
        from atmos.io.chunkread import read_blocks

        norm = (self._mean, self._std) if self.normalized else (None, None)
        return read_blocks(self._zarr, runs, len(self._dyn), self.grid_shape, *norm)

    def _read(self, a: int, b: int) -> np.ndarray:
        """Time steps ``[a, b)`` of every dataset channel: ``[b - a, C, *grid]`` float32, normalized."""
        if self._zarr is not None:
            from atmos.io.chunkread import read_blocks

            norm = (self._mean, self._std) if self.normalized else (None, None)
            return read_blocks(self._zarr, [(a, b)], len(self._dyn), self.grid_shape, *norm)[0]
        npts = int(np.prod(self.grid.shape))
        out = np.empty((b - a, len(self._dyn), *self.grid.shape), np.float32)
        lazy, eager = [], []
        for var, x, chans in self._plan:
            if hasattr(x.data, "dask"):  # time is the first axis: slice the dask array directly
                lazy.append((x.data[a:b], chans))
            else:
                eager.append((x.variable[a:b], chans))
        vals = _compute_dask([d for d, _ in lazy]) if lazy else []
        for (sub, chans), v in zip(lazy + eager, list(vals) + [None] * len(eager)):
            arr = np.asarray(sub.values if v is None else v)
            if arr.ndim == out.ndim - 1:  # no level dim
                arr = arr[:, None]
            c0 = int(chans[0])
            if np.array_equal(chans, np.arange(c0, c0 + chans.size)):
                out[:, c0 : c0 + chans.size] = arr  # one strided copy (also transposes if needed)
            else:  # not reached: the storage order keeps a variable's channels contiguous
                out[:, chans] = arr
        if self.normalized:
            shape = (1, -1) + (1,) * len(self.grid.shape)
            out -= self._mean.reshape(shape)
            out /= self._std.reshape(shape)
        return self._layout_grid(out.reshape(b - a, len(self._dyn), npts))

    @property
    def _raw_blocks(self) -> bool:
        """Whether cached blocks hold the stored zarr values (normalized per window) rather than tensors."""
        return self._zarr is not None and self._data is None

    def _blocks(self, ids: np.ndarray) -> dict[int, Any]:
        """The cached blocks ``ids``, reading the missing ones (contiguous runs in one read each)."""
        return self._finish(self._start(ids))

    def _start(
        self, ids: np.ndarray, pending: set[int] | frozenset[int] = frozenset()
    ) -> tuple[np.ndarray, list[list[int]], Any]:
        """Start reading the missing blocks of ``ids``: ``(ids, runs, pending read)``.

        Blocks in ``pending`` are being read for an earlier group (not read again).

        For zarr-backed data the read runs in the background (see
        :func:`atmos.io.chunkread.submit_raw`) until :meth:`_finish`; otherwise it is
        done in :meth:`_finish`.
        """
        with self._lock:
            missing = [b for b in ids.tolist() if b not in self._cache and b not in pending]
        runs: list[list[int]] = []
        for b in missing:
            if runs and b == runs[-1][-1] + 1:
                runs[-1].append(b)  # one read (one zarr request per variable) for consecutive blocks
            else:
                runs.append([b])
        spans = [(int(self._bounds[r[0]]), int(self._bounds[r[-1] + 1])) for r in runs]
        pending = None
        if spans and self._raw_blocks:
            from atmos.io.chunkread import submit_raw

            pending = submit_raw(self._zarr, spans)
        return ids, runs, pending

    def _finish(self, started: tuple[np.ndarray, list[list[int]], Any]) -> dict[int, Any]:
        ids, runs, pending = started
        spans = [(int(self._bounds[r[0]]), int(self._bounds[r[-1] + 1])) for r in runs]
        if pending is not None:
            raws = pending.result()
            with self._lock:
                for run, (a0, b0), raw in zip(runs, spans, raws):
                    nbytes = sum(x.nbytes for _, x in raw)
                    for r in run:  # blocks of a run share the arrays read for it
                        n = int(self._bounds[r + 1] - self._bounds[r])
                        self._insert(r, raw, nbytes * n // (b0 - a0))
        elif spans:
            datas = self._read_many(spans)
            with self._lock:
                for run, (a0, _), data in zip(runs, spans, datas):
                    for r in run:
                        blk = data[self._bounds[r] - a0 : self._bounds[r + 1] - a0]
                        blk = blk.copy() if len(run) > 1 else blk  # own memory: evicting frees it
                        self._insert(r, blk, blk.nbytes)
        with self._lock:
            have = {}
            for b in ids.tolist():
                if b not in self._cache:  # evicted meanwhile (another thread, an earlier group): read again
                    break
                self._cache.move_to_end(b)
                have[b] = self._cache[b]
            else:
                self._evict(keep=set(ids.tolist()))
                return have
        return self._finish(self._start(ids))  # outside the (non-reentrant) lock

    def _insert(self, b: int, blk: Any, nbytes: int) -> None:
        if b in self._cache:
            self._cached_bytes -= self._cache_nbytes.pop(b)
        self._cache[b] = blk
        self._cache_nbytes[b] = int(nbytes)
        self._cached_bytes += int(nbytes)

    def _evict(self, keep: set[int]) -> None:
        while self._cached_bytes > self.cache_bytes and len(self._cache) > len(keep):
            b = next(iter(self._cache))
            if b in keep:
                self._cache.move_to_end(b)
                continue
            self._cache.pop(b)
            self._cached_bytes -= self._cache_nbytes.pop(b)

    # -- Dataset protocol --------------------------------------------------------------------------
    def __len__(self) -> int:
        return int(self._pos.shape[0])

    def _index(self, i: Any) -> int:
        n = len(self)
        try:
            i = int(i)
        except TypeError as err:
            raise TypeError(f"WindowDataset indices must be integers, got {type(i).__name__}") from err
        if i < 0:
            i += n
        if not 0 <= i < n:
            raise IndexError(f"window index {i} out of range for {n} windows")
        return i

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return self._sample(self._pos[self._index(i)])

    def __getitems__(self, indices: Sequence[int]) -> list[dict[str, torch.Tensor]]:
        """Several windows at once (used by ``DataLoader`` for a batch).

        Windows are taken in groups whose blocks fit in ``cache_bytes`` (one window per
        group for zarr-backed data); the reads of the next group are issued before the
        current group is assembled, so reading and decoding overlap assembly. The
        samples equal ``[self[i] for i in indices]``, bit for bit.

        The whole batch is assembled in place in one preallocated array per key (in shared
        memory inside a DataLoader worker); the samples are row views of these arrays (see
        :class:`_BatchRow`), so the default collate's ``torch.stack`` of the rows, in order,
        returns the batch arrays themselves instead of copying every sample once more.
        """
        idx = [self._index(i) for i in indices]
        if not idx:
            return []
        bufs = self._batch_buffers(len(idx))
        views = {k: v.numpy() for k, v in bufs.items()}
        if self._data is not None:
            for b, i in enumerate(idx):
                self._fill(self._pos[i], None, views, b)
            return _batch_rows(bufs, len(idx))
        step_bytes = len(self._dyn) * int(np.prod(self.grid_shape)) * 4
        sizes = np.diff(self._bounds) * step_bytes
        groups: list[tuple[list[int], np.ndarray]] = []
        group: list[int] = []
        blocks: set[int] = set()
        for i in idx + [None]:
            new = set() if i is None else set(self._block_of[self._pos[i]].tolist())
            merged = blocks | new
            full = self._raw_blocks or sum(int(sizes[b]) for b in merged) > self.cache_bytes
            if group and (i is None or full):
                groups.append((group, np.asarray(sorted(blocks), np.int64)))
                group, merged = [], new
            if i is not None:
                group.append(i)
            blocks = merged
        # prefetch: the reads of the next group are in flight while a group is assembled (one
        # group ahead; a block already being read for an earlier group is not read again)
        queue: list[tuple[Any, int, set[int]]] = []  # (started read, bytes, blocks) in group order
        in_flight: set[int] = set()
        nxt = 0

        def launch() -> None:
            nonlocal nxt
            while nxt < len(groups):
                ids = groups[nxt][1]
                new = [x for x in ids.tolist() if x not in in_flight]
                nbytes = sum(int(sizes[x]) for x in new)
                if queue:  # deeper prefetch measured no better on 2 loaded cores
                    break
                queue.append((self._start(ids, pending=in_flight), nbytes, set(new)))
                in_flight.update(new)
                nxt += 1

        b = 0
        for group, _ in groups:
            launch()
            started, _, blks = queue.pop(0)
            got = self._finish(started)
            in_flight.difference_update(blks)
            launch()
            for j in group:
                self._fill(self._pos[j], got, views, b)
                b += 1
        return _batch_rows(bufs, len(idx))

    def _sample_shapes(self) -> dict[str, tuple[tuple[int, ...], type]]:
        n, h = self.history + self.lead_steps, self.history
        g = tuple(self.grid_shape)
        return {
            "inputs": ((h, self._ch_in.size, *g), np.float32),
            "targets": ((n - h, self._ch_out.size, *g), np.float32),
            "forcings": ((n, self._n_forcings, *g), np.float32),
            "statics": (tuple(self._statics.shape), np.float32),
            "time": ((), np.int64),
        }

    def _batch_buffers(self, n: int) -> dict[str, torch.Tensor]:
        """Uninitialised ``[n, *sample shape]`` tensors for every key (shared memory in a worker)."""
        shared = torch.utils.data.get_worker_info() is not None
        return {k: _empty((n, *shape), dt, shared) for k, (shape, dt) in self._sample_shapes().items()}

    def _sample(self, rows: np.ndarray, got: dict[int, Any] | None = None) -> dict[str, torch.Tensor]:
        """The window over time positions ``rows`` (``[history + lead_steps]``)."""
        bufs = {k: np.empty(shape, dt) for k, (shape, dt) in self._sample_shapes().items()}
        self._fill(rows, got, {k: v[None] for k, v in bufs.items()}, 0)
        return {k: torch.from_numpy(v) if v.ndim else torch.tensor(int(v), dtype=torch.int64) for k, v in bufs.items()}

    def _fill(self, rows: np.ndarray, got: dict[int, Any] | None, out: dict[str, np.ndarray], b: int) -> None:
        """Write the window over time positions ``rows`` into row ``b`` of every array of ``out``."""
        h = self.history
        if self._data is not None:
            steps: list[Any] = [self._data[r] for r in rows.tolist()]
        else:
            blocks = self._block_of[rows]
            if got is None:
                got = self._blocks(np.unique(blocks))
            if self._raw_blocks:
                steps = [(r, got[b_]) for b_, r in zip(blocks.tolist(), rows.tolist())]
            else:
                steps = [got[b_][r - self._bounds[b_]] for b_, r in zip(blocks.tolist(), rows.tolist())]
        gather = self._gather_raw if self._data is None and self._raw_blocks else self._gather
        gather(steps[:h], self._ch_in, out["inputs"][b])
        gather(steps[h:], self._ch_out, out["targets"][b])
        forc = out["forcings"][b]
        if self._ch_f.size:
            p = self._f_ds_pos
            if p[-1] - p[0] + 1 == p.size:  # dataset forcings first or last: gather in place
                gather(steps, self._ch_f, forc[:, int(p[0]) : int(p[-1]) + 1])
            else:
                forc[:, p] = gather(steps, self._ch_f)
        if self._derived:
            self._derived_into(forc, rows)
        out["statics"][b] = self._statics
        out["time"][b] = self._times_ns[rows[h - 1]]

    def _segments(self, chans: np.ndarray) -> list[tuple[int, int, int, int]]:
        """``chans`` cut into ``(k0, variable, level0, n)``: output channels ``k0 .. k0+n`` are
        levels ``level0 .. level0+n`` of one variable whose maps form one strided view."""
        key = chans.tobytes()
        segs = self._seg_cache.get(key)
        if segs is not None:
            return segs
        segs = []
        for k, c in enumerate(chans.tolist()):
            vi, li = self._dyn_src[c]
            if segs:
                k0, v0, l0, n = segs[-1]
                maps = self._zarr[vi][0].maps
                if (
                    v0 == vi and li == l0 + n and maps[li][0] == "strided" and maps[l0][0] == "strided"
                    and maps[li][2] == maps[l0][2]
                    and (n == 1 or maps[li][1] - maps[li - 1][1] == maps[l0 + 1][1] - maps[l0][1])
                ):
                    segs[-1] = (k0, v0, l0, n + 1)
                    continue
            segs.append((k, vi, li, 1))
        self._seg_cache[key] = segs
        return segs

    def _gather_raw(
        self,
        steps: list[tuple[int, list[tuple[int, np.ndarray]]]],
        chans: np.ndarray,
        out: np.ndarray | None = None,
    ) -> np.ndarray:
        """Like :meth:`_gather` from stored zarr blocks: ``steps`` are ``(row, [(r0, raw)] per variable)``.

        Each (variable, run of levels, run of steps read together) is one strided numpy
        operation ``(x - mean) / std`` in float32, exactly as in the dask path.
        """
        from atmos.io.chunkread import copy_channel

        if out is None:
            out = np.empty((len(steps), chans.size, *self.grid_shape), np.float32)
        for k0, vi, l0, n in self._segments(chans):
            var = self._zarr[vi][0]
            cs = chans[k0 : k0 + n]
            mean = self._mean[cs].reshape(1, n, *([1] * len(self.grid_shape))) if self.normalized else None
            std = self._std[cs].reshape(mean.shape) if self.normalized else None
            s = 0
            while s < len(steps):
                r0, raw = steps[s][1][vi]
                rows = [int(var.tmap[steps[s][0]]) - r0]
                while s + len(rows) < len(steps) and steps[s + len(rows)][1][vi][1] is raw:
                    nxt = int(var.tmap[steps[s + len(rows)][0]]) - r0
                    if len(rows) > 1 and nxt - rows[-1] != rows[1] - rows[0]:
                        break
                    rows.append(nxt)
                ns = len(rows)
                dst = out[s : s + ns, k0 : k0 + n]
                kind, *spec = var.maps[l0]
                if kind == "strided":
                    off, strides = spec
                    dl = var.maps[l0 + 1][1] - off if n > 1 else 0
                    dr = rows[1] - rows[0] if ns > 1 else 0
                    it = raw.itemsize
                    src = np.lib.stride_tricks.as_strided(
                        raw[rows[0], off:],
                        shape=dst.shape,
                        strides=(dr * raw.strides[0], dl * it, *(st * it for st in strides)),
                        writeable=False,
                    )
                    if mean is None:
                        dst[...] = src
                    elif raw.dtype == np.float32:
                        np.subtract(src, mean, out=dst)
                        dst /= std
                    else:
                        dst[...] = src
                        dst -= mean
                        dst /= std
                else:
                    for j, rr in enumerate(rows):
                        m_, s_ = (self._mean[cs[0]], self._std[cs[0]]) if self.normalized else (None, None)
                        copy_channel(var, l0, raw[rr], dst[j, 0], m_, s_)
                s += ns
        return out

    def _gather(self, steps: list[np.ndarray], chans: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """Channels ``chans`` of every step (``[C, *grid]`` each) as ``[len(steps), len(chans), *grid]``
        (written into ``out`` when given)."""
        if out is None:
            out = np.empty((len(steps), chans.size, *self.grid_shape), np.float32)
        c0 = int(chans[0]) if chans.size else 0
        contiguous = np.array_equal(chans, np.arange(c0, c0 + chans.size))
        for s, x in enumerate(steps):
            if contiguous:
                out[s] = x[c0 : c0 + chans.size]
            else:
                np.take(x, chans, axis=0, out=out[s])
        return out

    def _derived_into(self, forc: np.ndarray, rows: np.ndarray) -> None:
        """Fill the derived forcings of ``forc`` (``[n, C_f, *grid]``) for time positions ``rows``.

        Time-of-day fields depend only on the time of day: each is computed once per
        process and kept (a few fields for regular data); day-of-year fields are spatially
        uniform: one value per time, broadcast. Values equal :func:`derived_forcing` exactly.
        """
        t = self._times_ns[rows]
        tail = (1,) * len(self.grid_shape)
        for k, name in self._derived:
            if name.endswith("time_of_day"):
                for s, tt in enumerate(t.tolist()):
                    key = (name, tt % _NS_PER_DAY)
                    f = self._tod_cache.get(key)
                    if f is None:
                        if len(self._tod_cache) >= 1024:
                            self._tod_cache.clear()
                        f = derived_forcing(name, np.asarray([tt], np.int64), self._lon)[0]
                        self._tod_cache[key] = f
                    forc[s, k] = f
            else:
                forc[:, k] = derived_forcing(name, t, np.zeros(())).reshape(-1, *tail)

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_cache"] = OrderedDict()  # blocks are re-read on demand in the new process
        state["_cached_bytes"] = 0
        state["_cache_nbytes"] = {}
        state["_tod_cache"] = {}
        del state["_lock"]
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()

    def input_series(self) -> tuple[np.ndarray, np.ndarray]:
        """Every time step of the input channels: times ``[T]`` (int64 ns) and values
        ``[T, C_in, *grid]`` float32 (normalized when the dataset has statistics), in tensor order.
        Reads the whole period unless it is cached in memory (used to fit :mod:`atmos.io.seasonal`)."""
        data = self._data if self._data is not None else self._read_all(len(self._times_ns))
        return self._times_ns.copy(), np.ascontiguousarray(data[:, self._ch_in])

    # -- description ---------------------------------------------------------------------------
    @property
    def channels(self) -> dict[str, list[str]]:
        """Channel names per group (``inputs``, ``targets``, ``forcings``, ``statics``), in tensor order."""
        return {g: [c.name for c in chans] for g, chans in self._chans.items()}

    def schema(self) -> WindowSchema:
        """The :class:`WindowSchema` of this dataset (channel order, units, statistics, grid, step)."""
        return WindowSchema(
            groups={g: list(chans) for g, chans in self._chans.items()},
            history=self.history,
            lead_steps=self.lead_steps,
            step=_td_str(self.step),
            grid=self.grid.to_dict(),
            layout=self._layout,
            normalized=self.normalized,
        )

    @property
    def times(self) -> np.ndarray:
        """``t0`` (the last input time) of every window, datetime64[ns], shape [len(self)]."""
        return self._times_ns[self._pos[:, self.history - 1]].astype("datetime64[ns]")

    def __repr__(self) -> str:
        c = self.channels
        return (
            f"WindowDataset({len(self)} windows, history={self.history}, lead_steps={self.lead_steps}, "
            f"step={_td_str(self.step)}, grid={self.grid_shape}, channels: inputs={len(c['inputs'])} "
            f"targets={len(c['targets'])} forcings={len(c['forcings'])} statics={len(c['statics'])}, "
            f"cache={self.cache_mode!r})"
        )
