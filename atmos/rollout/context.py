"""The per-data context of a rollout: regridders to and from the model grid, statics, the data's
times and the forcing functions (how each forcing is produced for a future valid time)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import pandas as pd
import torch
import xarray as xr
from torch import nn

from atmos.channels import Channel
from atmos.errors import ConfigError, DataError
from atmos.grids import Grid, HealpixGrid
from atmos.io.forcings import DERIVED_FORCINGS
from atmos.rollout.reading import normalize, read_channels
from atmos.rollout.tables import grid_latlon, model_latlon

__all__ = [
    "FORCING_MODES", "DataContext", "ForcingTable", "ForecasterLike", "build_context", "forcings_at", "regridders",
]

#: How forcings are produced for future times (see :mod:`atmos.rollout.forcings`).
FORCING_MODES = ("auto", "astronomy", "data")

Regrid = Callable[[torch.Tensor], torch.Tensor]
ForcingFn = Callable[[np.ndarray], np.ndarray]


class ForecasterLike(Protocol):
    """What a context is built from (a :class:`atmos.rollout.forecaster.Forecaster`)."""

    name: str
    channels: dict[str, list[Channel]]
    model_grid: Grid
    model_shape: tuple[int, ...]
    regrid_method: str
    grid_from_schema: bool
    device: torch.device


@dataclass
class DataContext:
    """Everything bound to one dataset: grids, regridders, statics, forcing recipes.

    Attributes
    ----------
    to_model, to_data : callable
        ``[..., *data_grid] -> [..., *model_grid]`` and back (no grad).
    to_native_cells : callable or None
        Model tensor layout -> native output layout (HEALPix faces -> cells); None: the same.
    statics : Tensor ``[C_s, *model_grid]`` or None
        Normalized statics.
    forcing_fns : list of callable
        One per forcing channel: valid times ``[T]`` -> normalized ``[T, *model_grid]`` float32.
    forcing_notes : dict
        Forcing name -> how it is produced (the forecast's ``atmos_forcings``).
    model_lat, model_lon : numpy.ndarray ``[*model_grid]``
    """

    ds: xr.Dataset
    data_grid: Grid
    data_dims: tuple[str, ...]
    to_model: Regrid
    to_data: Regrid
    to_native_cells: Regrid | None
    statics: torch.Tensor | None
    forcing_fns: list[ForcingFn]
    forcing_notes: dict[str, str]
    model_lat: np.ndarray
    model_lon: np.ndarray
    data_source: str
    data_times: pd.DatetimeIndex
    forcing_table: ForcingTable | None = field(default=None, repr=False)


def _no_grad(module: nn.Module) -> Regrid:
    def f(x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return module(x)

    return f


def regridders(fc: ForecasterLike, data_grid: Grid) -> tuple[Regrid, Regrid, Regrid | None]:
    """``(to_model, to_data, to_native_cells)`` between a data grid and the model's grid.

    Raises
    ------
    DataError
        HEALPix data of another nside, or HEALPix data for a lat-lon model.
    """
    from atmos.grids.regrid import Regridder

    mg, dev, method = fc.model_grid, fc.device, fc.regrid_method
    if isinstance(mg, HealpixGrid):
        if isinstance(data_grid, HealpixGrid):
            if data_grid.nside != mg.nside:
                raise DataError(
                    f"the data are on HEALPix nside {data_grid.nside}, the model on nside {mg.nside}; regrid the "
                    "data first (ds.atmos.to_healpix) or pass lat-lon data."
                )
            dg = data_grid
            return (lambda x: dg.cells_to_faces(x)), (lambda x: dg.faces_to_cells(x)), None
        rin = Regridder(data_grid, mg, method=method, healpix_layout="faces").to(dev)
        rout = Regridder(mg, data_grid, method=method, healpix_layout="faces").to(dev)
        return _no_grad(rin), _no_grad(rout), (lambda x: mg.faces_to_cells(x))
    if isinstance(data_grid, HealpixGrid):
        raise DataError(
            f"model {fc.name!r} runs on a lat-lon grid {mg.shape} but the data are on HEALPix nside "
            f"{data_grid.nside}; pass lat-lon data (ds.atmos.to_latlon)."
        )
    if data_grid.shape == mg.shape and (mg == data_grid or fc.grid_from_schema):
        ident = lambda x: x  # noqa: E731
        return ident, ident, None
    rin = Regridder(data_grid, mg, method=method).to(dev)
    rout = Regridder(mg, data_grid, method=method).to(dev)
    return _no_grad(rin), _no_grad(rout), (lambda x: x)


def _check_variables(fc: ForecasterLike, ds: xr.Dataset, forcings: str) -> None:
    if forcings not in FORCING_MODES:
        raise ConfigError(f"forcings must be one of {list(FORCING_MODES)}, got {forcings!r}.")
    need = [c.variable for g in ("inputs", "statics") for c in fc.channels[g]]
    missing = sorted({v for v in need if v not in ds.data_vars})
    if missing:
        raise DataError(
            f"the initial-condition data lack variables {missing} that model {fc.name!r} needs; they have "
            f"{sorted(map(str, ds.data_vars))}. Pass --data with a dataset holding "
            f"{sorted(set(need))}."
        )


def build_context(fc: ForecasterLike, ds: xr.Dataset, init: Any, forcings: str) -> DataContext:
    """Bind a forecaster to a canonical dataset (forcings calibrated on the data up to ``init``).

    Raises
    ------
    ConfigError
        ``forcings`` is not one of :data:`FORCING_MODES`, or cannot produce a forcing.
    DataError
        The data lack a variable the model needs, are on an unusable grid, or hold bad values.
    """
    from atmos.io.coords import grid_of, spatial_dims

    _check_variables(fc, ds, forcings)
    data_grid = grid_of(ds)
    to_model, to_data, native = regridders(fc, data_grid)
    mlat, mlon = model_latlon(fc.model_grid)
    ctx = DataContext(
        ds=ds,
        data_grid=data_grid,
        data_dims=spatial_dims(ds),
        to_model=to_model,
        to_data=to_data,
        to_native_cells=native,
        statics=None,
        forcing_fns=[],
        forcing_notes={},
        model_lat=mlat,
        model_lon=mlon,
        data_source=str(ds.attrs.get("atmos_source", "in-memory dataset")),
        data_times=pd.DatetimeIndex(ds.indexes["time"]) if "time" in ds.indexes else pd.DatetimeIndex([]),
    )
    nd = len(fc.model_shape)
    if fc.channels["statics"]:
        raw = read_channels(ds, fc.channels["statics"], None)  # [1, C, *data_grid]
        ctx.statics = normalize(to_model(torch.from_numpy(raw).to(fc.device))[0], fc.channels["statics"], nd)
    t0 = np.datetime64(pd.Timestamp(init).to_datetime64(), "ns")
    for c in fc.channels["forcings"]:
        fn, note = forcing_fn(fc, c, ctx, t0, forcings)
        ctx.forcing_fns.append(fn)
        ctx.forcing_notes[c.name] = note
    return ctx


def _toa_from_astronomy(c: Channel, ctx: DataContext, init: np.datetime64, mode: str) -> tuple[ForcingFn, str] | None:
    """TOA insolation from astronomy, calibrated on the data's TOA up to ``init``; None: read it."""
    from atmos.rollout.forcings import TOA_NAME, ToaCalibration, calibrate_toa

    ds = ctx.ds
    cal: ToaCalibration | None = ToaCalibration()
    if TOA_NAME in ds.data_vars and len(ctx.data_times):
        past = ctx.data_times[ctx.data_times <= pd.Timestamp(init)][-8:]
        if len(past):
            obs = read_channels(ds, [c], past)[:, 0]
            dlat, dlon = grid_latlon(ctx.data_grid)
            try:
                cal = calibrate_toa(obs, past.values, dlat, dlon)
            except DataError:
                if mode == "astronomy":
                    raise
                cal = None  # auto: the data's TOA is not astronomical; read it from the data
    if cal is None:
        return None
    lat, lon, mean, std = ctx.model_lat, ctx.model_lon, c.mean, c.std
    return (lambda t: ((cal(t, lat, lon) - mean) / std).astype(np.float32)), cal.describe()


def _from_data(fc: ForecasterLike, c: Channel, ctx: DataContext) -> ForcingFn:
    chans: Sequence[Channel] = [c]
    nd = len(fc.model_shape)

    def from_data(t: np.ndarray) -> np.ndarray:
        times = pd.DatetimeIndex(t)
        miss = times.difference(ctx.data_times)
        if len(miss):
            raise DataError(
                f"forcing {c.name!r} is read from the data, which do not cover valid time {miss[0]} "
                f"(data: {ctx.data_times[0]} .. {ctx.data_times[-1]}). Use data covering every lead time "
                "or a shorter forecast."
            )
        raw = torch.from_numpy(read_channels(ctx.ds, chans, times)).to(fc.device)
        return normalize(ctx.to_model(raw), chans, nd)[:, 0].cpu().numpy()

    from_data.reads_data = True  # type: ignore[attr-defined]  # per window (see ForcingTable)
    return from_data


def forcing_fn(fc: ForecasterLike, c: Channel, ctx: DataContext, init: np.datetime64, mode: str) -> tuple[ForcingFn, str]:
    """How forcing ``c`` is produced for valid times ``[T]``: ``(fn, note)`` (see :data:`FORCING_MODES`).

    Raises
    ------
    ConfigError
        ``mode`` is unknown, or ``astronomy`` for a forcing other than TOA insolation.
    """
    from atmos.rollout.forcings import TOA_NAME, derived

    if c.source == "derived" or c.name in DERIVED_FORCINGS:
        lon = ctx.model_lon
        return (lambda t, n=c.name: derived(n, t, lon)), "computed from the valid time (atmos.io.forcings)"
    if c.variable == TOA_NAME and mode in ("auto", "astronomy"):
        toa = _toa_from_astronomy(c, ctx, init, mode)
        if toa is not None:
            return toa
    if mode not in FORCING_MODES:
        raise ConfigError(f"forcings must be one of {list(FORCING_MODES)}, got {mode!r}.")
    if mode == "astronomy" and c.variable != TOA_NAME:
        raise ConfigError(f"forcing {c.name!r} cannot be computed from astronomy; use forcings='data' or 'auto'.")
    return _from_data(fc, c, ctx), "read from the data at the valid times (uses data from the future, forcing only)"


#: Bytes a :class:`ForcingTable` may hold (it covers fewer valid times on large grids).
FORCING_TABLE_BYTES = 64 * 2**20
#: Most valid times a :class:`ForcingTable` computes at once.
FORCING_TABLE_TIMES = 256


class ForcingTable:
    """Forcings of consecutive valid times ``start + j dt``, computed a block at a time.

    A model step needs the forcings of ``H + 1`` valid times, ``H`` of which the step before
    needed too; the table computes each valid time once, for a block of them (8 valid times,
    then twice as many at each refill up to :data:`FORCING_TABLE_TIMES`) in one vectorized call
    of each forcing function (the
    values are those of a call per window: the functions work time by time). Forcing functions
    that read the data (``reads_data``, see :func:`forcing_fn`) are called per window instead: a
    block could reach past the data's last time. A change of ``ctx.forcing_fns`` (or of ``dt``)
    recomputes the table.
    """

    def __init__(self) -> None:
        self.start: np.datetime64 | None = None
        self.dt: np.timedelta64 | None = None
        self.values: np.ndarray | None = None  # [T, C_f, *grid] float32 (NaN in the data-read channels)
        self.fns: tuple[ForcingFn, ...] = ()  # the functions the values are from (held: compared by identity)
        self.block = 8  # valid times of the next fill: doubles up to FORCING_TABLE_TIMES (short runs stay cheap)

    def window(self, fns: Sequence[ForcingFn], first: np.datetime64, dt: np.timedelta64, n: int) -> np.ndarray:
        """Forcings ``[n, C_f, *grid]`` float32 at ``first + j dt``, ``j < n`` (C-contiguous)."""
        key = tuple(fns)
        j = self._offset(key, first, dt, n)
        if j is None:
            self._fill(fns, key, first, dt, n)
            j = 0
        assert self.values is not None
        out = self.values[j : j + n]
        live = [k for k, fn in enumerate(fns) if getattr(fn, "reads_data", False)]
        if live:
            times = first + np.arange(n) * dt
            out = out.copy()
            for k in live:
                out[:, k] = fns[k](times)
        return out

    def _offset(self, key: tuple[ForcingFn, ...], first: np.datetime64, dt: np.timedelta64, n: int) -> int | None:
        same = len(key) == len(self.fns) and all(a is b for a, b in zip(key, self.fns, strict=True))
        if self.values is None or not same or dt != self.dt or self.start is None:
            return None
        j, rem = divmod(int((first - self.start).astype("timedelta64[ns]").astype(np.int64)),
                        int(dt.astype("timedelta64[ns]").astype(np.int64)))
        return j if rem == 0 and 0 <= j and j + n <= len(self.values) else None

    def _fill(self, fns: Sequence[ForcingFn], key: tuple[ForcingFn, ...], first: np.datetime64, dt: np.timedelta64,
              n: int) -> None:
        times = first + np.arange(n) * dt
        part = [fn(times) if not getattr(fn, "reads_data", False) else None for fn in fns]
        per_time = sum(int(np.prod(np.shape(p)[1:])) for p in part if p is not None) * 4 or 1
        t = max(n, min(self.block, FORCING_TABLE_TIMES, FORCING_TABLE_BYTES // per_time))
        self.block = min(2 * self.block, FORCING_TABLE_TIMES)
        if t > n:  # the whole block, from the same vectorized calls
            times = first + np.arange(t) * dt
            part = [fn(times) if p is not None else None for fn, p in zip(fns, part, strict=True)]
        shape = next((np.shape(p)[1:] for p in part if p is not None), None)
        if shape is None:  # every forcing reads the data: nothing to keep
            shape = np.shape(fns[0](first + np.arange(n) * dt))[1:]
            t = n
        nan = np.full((t, *shape), np.nan, np.float32)
        self.values = np.ascontiguousarray(np.stack([p if p is not None else nan for p in part], axis=1),
                                           dtype=np.float32)
        self.start, self.dt, self.fns = first, dt, key


def forcings_at(
    ctx: DataContext, time: np.datetime64, history: int, step: pd.Timedelta, batch: int, device: torch.device
) -> torch.Tensor | None:
    """Normalized forcings ``[B, H + 1, C_f, *model_grid]`` at the valid times of the window that
    ends one ``step`` after ``time`` (None without forcings), from the context's
    :class:`ForcingTable`."""
    if not ctx.forcing_fns:
        return None
    dt = step.to_timedelta64().astype("timedelta64[ns]")
    if ctx.forcing_table is None:
        ctx.forcing_table = ForcingTable()
    first = np.datetime64(time, "ns") + (1 - history) * dt
    forc = torch.from_numpy(ctx.forcing_table.window(ctx.forcing_fns, first, dt, history + 1)).to(device)
    return forc.unsqueeze(0).expand(batch, *forc.shape)


def with_noise(forc: torch.Tensor | None, state: Any, history: int, channels: int, grid_shape: Sequence[int],
               device: torch.device) -> torch.Tensor:
    """``forc`` ``[B, H+1, C_f, *grid]`` with a stochastic model's noise inputs of this step appended.

    Member ``b``'s noise comes from ``(state.seed, state.init, state.step, b)`` alone, so it does not
    depend on the ensemble size (:func:`atmos.models.noise.draw_noise`).
    """
    from atmos.models.noise import draw_noise

    B = state.history.shape[0]
    base = (int(state.seed) * 1_000_003 + int(np.datetime64(state.init, "s").astype(np.int64)) * 7_919
            + 104_729 * int(state.step))
    z = torch.cat([draw_noise(1, history + 1, channels, grid_shape, base + 15_485_863 * b, device) for b in range(B)])
    return z if forc is None else torch.cat([forc, z.to(forc.dtype)], dim=2)
