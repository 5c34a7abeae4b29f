"""Normalization statistics: area-weighted mean/std and 1-step residual mean/std.

Layout of a statistics dataset
------------------------------
:func:`compute_stats` returns an :class:`xarray.Dataset` with **the same variable
names** as the data. Every variable gains a leading dimension ``statistic`` with
the coordinate ``["mean", "std", "residual_mean", "residual_std"]`` and keeps the
dimensions that were not reduced (normally ``level`` for 3-D variables; nothing
else)::

    <xarray.Dataset>
    Dimensions:       (statistic: 4, level: 5)
    Coordinates:
      * statistic     (statistic) <U13 'mean' 'std' 'residual_mean' 'residual_std'
      * level         (level) int64 250 500 700 850 1000
    Data variables:
        geopotential  (statistic, level) float64 ...
        2m_temperature (statistic) float64 ...

* ``mean``/``std``: area-weighted mean and (population) standard deviation of the
  values over ``dims`` (time steps weigh equally; cells by their area,
  :func:`atmos.io.coords.area_weights`).
* ``residual_mean``/``residual_std``: the same for the 1-step differences
  ``x[t + 1] - x[t]`` along ``time`` (differences across a gap in the time axis,
  i.e. a spacing other than the most common one, are left out). This is what
  residual ("predict the increment") models normalize their outputs with.
* Static variables (no ``time`` dimension, e.g. ``land_sea_mask``) get ``mean`` and
  ``std`` over space only; their residual statistics are NaN. So is every
  residual statistic when ``time`` is not among ``dims`` or the data has one step.
* NaN values in the data are skipped (weights are renormalized over valid cells).
* Values are float64. Each variable keeps its ``units`` attribute. Dataset attributes
  record ``atmos_stats_version``, ``dims`` (space separated), ``time_start``,
  ``time_end``, ``n_time``, ``atmos_version`` and ``weighting``.

Computation is lazy (dask) and single-pass: per chunk, weighted sums of
``x - ref`` and ``(x - ref)**2`` are accumulated in float64, where ``ref`` is a
cheap per-variable (per-level) reference (the weighted mean of the first time
step). Subtracting it avoids the cancellation of ``E[x^2] - E[x]^2`` for fields with a
large mean (geopotential, pressure) and makes the std of a constant field exactly
0. The same graph runs on the local schedulers and on ``dask.distributed``.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Hashable, Iterable, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import xarray as xr

from atmos.errors import ConfigError, DataError
from atmos.io.coords import area_weights, grid_of
from atmos.io.write import CONVENTIONS, write_netcdf

__all__ = [
    "STATISTICS",
    "ZeroStdWarning",
    "safe_std",
    "zero_std",
    "compute_and_save_stats",
    "compute_stats",
    "denormalize",
    "load_stats",
    "normalize",
    "save_stats",
    "stat_values",
]

#: The ``statistic`` coordinate of a statistics dataset.
STATISTICS: tuple[str, ...] = ("mean", "std", "residual_mean", "residual_std")
_STATS_FORMAT_VERSION = 1

Kind = Literal["state", "residual"]


#: A std at or below this fraction of |mean| is "zero" (below float64 resolution of the field).
ZERO_STD_RELATIVE = 1e-10


def zero_std(std: Any, mean: Any = 0.0) -> np.ndarray:
    """Where ``std`` is 0 or below float resolution relative to ``mean`` (a constant field).

    Parameters
    ----------
    std, mean : array_like
        Standard deviations and means, broadcastable.

    Returns
    -------
    numpy.ndarray of bool
    """
    sv = np.asarray(std, dtype=np.float64)
    mv = np.asarray(mean, dtype=np.float64)
    return (sv == 0) | (sv <= ZERO_STD_RELATIVE * np.abs(mv))


def safe_std(std: Any, mean: Any = 0.0) -> Any:
    """``std`` with the zero-std rule applied (constant fields get std 1); a float for a scalar."""
    sv = np.asarray(std, dtype=np.float64)
    out = np.where(zero_std(sv, mean), 1.0, sv)
    return float(out) if out.ndim == 0 else out


class ZeroStdWarning(UserWarning):
    """A statistic std is 0 (a constant field); 1 is used instead so that x -> x - mean."""


def _atmos_version() -> str:
    try:
        from atmos._version import __version__

        return str(__version__)
    except ImportError:  # pragma: no cover - partial installs
        return "unknown"


DEFAULT_DIMS = ("time", "latitude", "longitude")


def _reduction_dims(ds: xr.Dataset, dims: Sequence[str] | None) -> tuple[str, ...]:
    """Map the requested dims onto the dataset (latitude/longitude -> cell on HEALPix)."""
    if dims is None:  # the default: time only where there is one (a statics-only dataset has none)
        dims = tuple(d for d in DEFAULT_DIMS if d != "time" or "time" in ds.dims)
    dims = (dims,) if isinstance(dims, str) else tuple(dims)
    healpix = "cell" in ds.dims
    out: list[str] = []
    for d in dims:
        if healpix and d in ("latitude", "longitude"):
            d = "cell"
        if d not in ds.dims:
            raise DataError(
                f"cannot reduce over dimension {d!r}: the dataset has dims {sorted(map(str, ds.dims))}. "
                "Pass dims= a subset of these (default ('time', 'latitude', 'longitude'))."
            )
        if d not in out:
            out.append(d)
    return tuple(out)


def _select_variables(ds: xr.Dataset, variables: Iterable[Hashable] | None) -> list[Hashable]:
    if variables is None:
        names = [k for k, v in ds.data_vars.items() if np.issubdtype(v.dtype, np.number)]
        if not names:
            raise DataError("the dataset has no numeric data variables to compute statistics of.")
        return names
    names = [variables] if isinstance(variables, str) else list(variables)
    missing = [n for n in names if n not in ds.data_vars]
    if missing:
        raise DataError(
            f"variables {missing} are not in the dataset; it has {sorted(map(str, ds.data_vars))}."
        )
    return names


def _regular_step_ok(time: np.ndarray) -> np.ndarray:
    """``ok[i]``: the difference ``x[i] - x[i-1]`` spans the modal time spacing (``ok[0]`` is False)."""
    t = np.asarray(time)
    ok = np.zeros(t.size, dtype=bool)
    if t.size > 1:
        dt = np.diff(t)
        vals, counts = np.unique(dt, return_counts=True)
        ok[1:] = dt == vals[np.argmax(counts)]
    return ok


def _first_valid(a: np.ndarray, nspace: int) -> np.ndarray:
    """First non-NaN value over the last ``nspace`` axes (0 where all are NaN), as float64."""
    flat = np.asarray(a, dtype=np.float64).reshape(*a.shape[: a.ndim - nspace], -1)
    valid = ~np.isnan(flat)
    idx = np.argmax(valid, axis=-1)
    out = np.take_along_axis(flat, idx[..., None], axis=-1)[..., 0]
    return np.where(valid.any(axis=-1), out, 0.0)


def _sums(y: np.ndarray, w: np.ndarray, ref: np.ndarray, axes: tuple[int, ...]) -> list[np.ndarray]:
    """``[sum w, sum w (y - ref), sum w (y - ref)**2]`` over ``axes`` (keepdims), NaNs skipped.

    ``w`` broadcasts against ``y`` and is constant along its size-1 axes: the
    unweighted sums along those are taken first (cheap), then the weights applied.
    """
    target = [1 if i in axes else n for i, n in enumerate(y.shape)]
    flat = tuple(a for a in axes if w.shape[a] == 1)
    wax = tuple(a for a in axes if w.shape[a] != 1)
    yy = y - ref
    nan = np.isnan(yy)
    if nan.any():
        yy[nan] = 0.0
        cnt = (~nan).sum(flat, keepdims=True, dtype=np.float64)
    else:
        cnt = np.full([1] * y.ndim, float(np.prod([y.shape[a] for a in flat])))
    a1 = yy.sum(flat, keepdims=True)
    a2 = np.square(yy, out=yy).sum(flat, keepdims=True)
    out = [(w * c).sum(wax, keepdims=True) for c in (cnt, a1, a2)]
    return [np.broadcast_to(o, target) for o in out]


def _block_sums(
    xb, wb, refb, rrefb, okb, *, axes: tuple[int, ...], tax: int | None, diffs: bool
) -> np.ndarray:
    """Weighted partial sums of one block, keepdims along ``axes``, trailing axis of 6.

    ``[n, s1, s2]`` of ``x - ref`` then ``[n, s1, s2]`` of the in-block 1-step
    differences minus ``rref`` (gaps masked by ``ok``). With ``diffs=True`` the
    block already holds differences (the pairs across block boundaries): only the
    residual part is filled.
    """
    x = np.asarray(xb, dtype=np.float64)
    w = np.asarray(wb, dtype=np.float64)
    parts: list[np.ndarray]
    if diffs:
        shape = list(x.shape)
        for a in axes:
            shape[a] = 1
        parts = [np.zeros(shape)] * 3
        d = np.where(okb, x, np.nan)
        parts += _sums(d, w, rrefb, axes)
    else:
        parts = _sums(x, w, refb, axes)
        if tax is None:
            parts += [np.zeros_like(parts[0])] * 3
        else:
            d = np.diff(x, axis=tax)
            ok = np.take(okb, np.arange(1, okb.shape[tax]), axis=tax)
            d = np.where(ok, d, np.nan)
            parts += _sums(d, w, rrefb, axes)
    return np.stack(parts, axis=-1)


def _variable_stats(
    x: xr.DataArray, red: tuple[str, ...], w: xr.DataArray, ok: np.ndarray | None
) -> xr.DataArray:
    """Lazy ``[statistic, *kept]`` statistics of one variable (see :func:`compute_stats`)."""
    import dask.array as da

    data = x.data if hasattr(x.data, "dask") else da.from_array(np.asarray(x.values), chunks=-1)
    dims = x.dims
    axes = tuple(dims.index(d) for d in red)
    kept = [d for d in dims if d not in red]
    space = tuple(d for d in dims if d in w.dims)  # spatial dims of the variable (weights)
    space_red = tuple(d for d in space if d in red)  # ... that are reduced
    nonspace_red = [d for d in red if d not in space_red]
    residual = ok is not None and "time" in red and x.sizes["time"] > 1
    tax = dims.index("time") if residual else None

    def bshape(keep: Sequence[str]) -> list[int]:
        return [x.sizes[d] if d in keep else 1 for d in dims]

    def chunks_for(keep: Sequence[str]) -> tuple[tuple[int, ...], ...]:
        return tuple(data.chunks[i] if d in keep else (1,) for i, d in enumerate(dims))

    # area weights broadcast to the variable's dims (1 where the dim is not spatial)
    wv = w.transpose(*[d for d in dims if d in w.dims]).values if space else np.ones(())
    wfull = da.from_array(np.asarray(wv, dtype=np.float64).reshape(bshape(space)), chunks=chunks_for(space))

    # references: a data value of the first (non-spatial) index -> exact 0 std for constant fields
    def reference(arr: xr.DataArray) -> da.Array:
        # reduced spatial dims last, single chunk
        order = [d for d in dims if d in arr.dims and d not in space_red] + list(space_red)
        arr = arr.transpose(*order)
        nsp = len([d for d in arr.dims if d in space_red])
        r = (
            arr.data.map_blocks(
                _first_valid, nsp, drop_axis=list(range(arr.ndim - nsp, arr.ndim)), dtype=np.float64
            )
            if hasattr(arr.data, "dask")
            else da.from_array(_first_valid(np.asarray(arr.values), nsp))
        )
        keep = [d for d in arr.dims if d not in space_red]
        return r.reshape(bshape(keep)).rechunk(chunks_for(keep))

    first = {d: 0 for d in nonspace_red}
    x0 = x.isel(first) if first else x
    x0 = x0.chunk({d: -1 for d in space_red}) if hasattr(x0.data, "dask") else x0
    ref = reference(x0)
    if residual:
        d1 = x.isel(time=1).astype(np.float64) - x.isel(time=0).astype(np.float64)
        d1 = d1.isel({d: 0 for d in nonspace_red if d != "time"})
        d1 = d1.chunk({d: -1 for d in space_red}) if hasattr(d1.data, "dask") else d1
        rref = reference(d1)
        okfull = da.from_array(ok.reshape(bshape(["time"])), chunks=chunks_for(["time"]))
    else:
        rref = da.zeros(bshape([]), chunks=chunks_for([]))
        okfull = da.ones(bshape([]), dtype=bool, chunks=chunks_for([]))

    out_chunks = tuple((1,) * len(c) if i in axes else c for i, c in enumerate(data.chunks)) + ((6,),)
    parts = da.map_blocks(
        _block_sums,
        data,
        wfull,
        ref,
        rref,
        okfull,
        axes=axes,
        tax=tax,
        diffs=False,
        chunks=out_chunks,
        new_axis=[data.ndim],
        dtype=np.float64,
        meta=np.empty((0,) * (data.ndim + 1)),
    )
    total = parts.sum(axis=axes)
    if residual and data.numblocks[tax] > 1:
        # differences across block boundaries (x[start] - x[start - 1])
        starts = np.cumsum(data.chunks[tax])[:-1]
        xt = data.astype(np.float64)
        bd = da.take(xt, starts, axis=tax) - da.take(xt, starts - 1, axis=tax)
        bd = bd.rechunk({tax: -1})
        okb = da.from_array(ok[starts].reshape([len(starts) if i == tax else 1 for i in range(data.ndim)]))
        okb = okb.rechunk(tuple((len(starts),) if i == tax else (1,) for i in range(data.ndim)))
        bchunks = tuple((1,) * len(c) if i in axes else c for i, c in enumerate(bd.chunks)) + ((6,),)
        bparts = da.map_blocks(
            _block_sums,
            bd,
            wfull,
            ref,
            rref,
            okb,
            axes=axes,
            tax=tax,
            diffs=True,
            chunks=bchunks,
            new_axis=[data.ndim],
            dtype=np.float64,
            meta=np.empty((0,) * (data.ndim + 1)),
        )
        total = total + bparts.sum(axis=axes)
    ref_k = ref.reshape([x.sizes[d] for d in kept]) if kept else ref.reshape(())
    rref_k = (rref.reshape([x.sizes[d] for d in kept]) if kept else rref.reshape(())) if residual else None
    with np.errstate(invalid="ignore", divide="ignore"):
        m1 = total[..., 1] / total[..., 0]
        var = da.maximum(total[..., 2] / total[..., 0] - m1 * m1, 0.0)
        r1 = total[..., 4] / total[..., 3]
        rvar = da.maximum(total[..., 5] / total[..., 3] - r1 * r1, 0.0)
    stack = [ref_k + m1, da.sqrt(var)]
    if residual:
        stack += [rref_k + r1, da.sqrt(rvar)]
    else:
        stack += [da.full_like(m1, np.nan)] * 2
    arr = da.stack(stack, axis=0)
    coords = {d: x[d] for d in kept if d in x.coords}
    return xr.DataArray(arr, dims=("statistic", *kept), coords={"statistic": list(STATISTICS), **coords})


def compute_stats(
    ds: xr.Dataset,
    dims: Sequence[str] | None = None,
    variables: Iterable[Hashable] | None = None,
) -> xr.Dataset:
    """Area-weighted normalization statistics of a canonical dataset (lazy).

    Parameters
    ----------
    ds : xarray.Dataset
        Canonical cube (lat-lon or HEALPix ``cell``). Dask-backed data stay lazy.
    dims : sequence of str, optional
        Dimensions to reduce over (default ``("time", "latitude", "longitude")``,
        without ``time`` for a dataset that has none). On a HEALPix dataset ``latitude``/``longitude``
        mean ``cell``. Dimensions a variable lacks are ignored for it (statics have
        no ``time``).
    variables : iterable of str, optional
        Variables to include (default: every numeric data variable).

    Returns
    -------
    xarray.Dataset
        Same variable names, each with a leading ``statistic`` dimension
        (``mean``, ``std``, ``residual_mean``, ``residual_std``) and the
        non-reduced dims (usually ``level``); float64. Lazy when ``ds`` is: call
        ``.compute()`` (or :func:`compute_and_save_stats`). See the module docstring.

    Raises
    ------
    DataError
        Unknown variables or dims, or no recognisable grid.
    """
    red_all = _reduction_dims(ds, dims)
    names = _select_variables(ds, variables)
    w = area_weights(ds)
    ok = _regular_step_ok(ds["time"].values) if "time" in ds.dims and "time" in ds.coords else None

    out: dict[Hashable, xr.DataArray] = {}
    for name in names:
        x = ds[name]
        red = tuple(d for d in red_all if d in x.dims)
        arr = _variable_stats(x, red, w, ok)
        arr.attrs = {k: v for k, v in x.attrs.items() if k in ("units", "long_name", "standard_name")}
        out[name] = arr

    stats = xr.Dataset(out)
    # drop stray scalar coords (e.g. a selected level kept as a scalar coordinate)
    stats = stats.drop_vars([c for c in stats.coords if c not in stats.dims and c != "statistic"])
    attrs: dict[str, object] = {
        "atmos_stats_version": _STATS_FORMAT_VERSION,
        "dims": " ".join(red_all),
        "weighting": "normalized cell area (atmos.io.coords.area_weights)",
        "atmos_version": _atmos_version(),
        "grid": type(grid_of(ds)).__name__,
    }
    if "time" in ds.coords and ds["time"].size:
        t = ds["time"].values
        attrs.update(time_start=str(t.min()), time_end=str(t.max()), n_time=int(t.size))
    stats.attrs = attrs
    return stats


# -- I/O -----------------------------------------------------------------------------------


def _format(path: str | os.PathLike) -> str:
    p = str(path).rstrip("/")
    if p.endswith((".nc", ".nc4", ".netcdf")):
        return "netcdf"
    if p.endswith(".zarr"):
        return "zarr"
    raise ConfigError(
        f"cannot tell the format of statistics path {str(path)!r}: use a name ending in '.nc' "
        "(netCDF) or '.zarr' (zarr store)."
    )


def save_stats(stats: xr.Dataset, path: str | os.PathLike) -> None:
    """Write a statistics dataset to ``path`` (``.nc`` -> netCDF, ``.zarr`` -> zarr; overwrites).

    Lazy statistics are computed while writing.
    """
    fmt = _format(path)
    _check_layout(stats, str(path))
    if fmt == "netcdf":
        write_netcdf(stats, path, what="atmos stats")
    else:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # zarr v3 warns that string arrays are not in the spec yet
            from atmos.io.compression import zarr_encoding

            stats.assign_attrs(Conventions=CONVENTIONS).to_zarr(
                path, mode="w", consolidated=True, encoding=zarr_encoding(stats)  # lossless Blosc/Zstandard
            )


def load_stats(path: str | os.PathLike) -> xr.Dataset:
    """Read statistics written by :func:`save_stats` (loaded into memory)."""
    fmt = _format(path)
    if not Path(path).exists():
        from atmos.errors import SourceError

        raise SourceError(f"statistics file {str(path)!r} does not exist; create it with `atmos stats`.")
    if fmt == "netcdf":
        with xr.open_dataset(path) as f:
            stats = f.load()
    else:
        stats = xr.open_zarr(path).load()
    stats["statistic"] = stats["statistic"].astype(str)
    _check_layout(stats, str(path))
    return stats


def compute_and_save_stats(
    ds: xr.Dataset,
    path: str | os.PathLike | None = None,
    *,
    dims: Sequence[str] | None = None,
    variables: Iterable[Hashable] | None = None,
    progress: bool = True,
) -> xr.Dataset:
    """Compute statistics (with an optional tqdm progress bar on stderr) and save them.

    Parameters
    ----------
    ds, dims, variables
        As for :func:`compute_stats`.
    path : path, optional
        Where to save (``.nc`` or ``.zarr``); not saved when None.
    progress : bool
        Show a tqdm progress bar of dask tasks (local schedulers; under a
        ``dask.distributed`` client use its dashboard instead).

    Returns
    -------
    xarray.Dataset
        The computed (in-memory) statistics.
    """
    if path is not None:
        _format(path)  # fail before the expensive part
    stats = compute_stats(ds, dims=dims, variables=variables)
    if progress:
        from tqdm.dask import TqdmCallback

        with TqdmCallback(desc="atmos stats", leave=False):
            stats = stats.compute()
    else:
        stats = stats.compute()
    if path is not None:
        save_stats(stats, path)
    return stats


def _check_layout(stats: xr.Dataset, where: str = "stats") -> None:
    if "statistic" not in stats.coords:
        raise DataError(
            f"{where} is not an atmos statistics dataset: it has no 'statistic' coordinate "
            f"(variables {sorted(map(str, stats.data_vars))}). Create one with atmos.io.stats.compute_stats."
        )
    have = [str(s) for s in np.asarray(stats["statistic"].values)]
    missing = [s for s in ("mean", "std") if s not in have]
    if missing:
        raise DataError(f"{where} lacks statistics {missing}; its 'statistic' coordinate holds {have}.")


# -- normalization ---------------------------------------------------------------------------


def _stat_names(kind: Kind) -> tuple[str, str]:
    if kind == "state":
        return "mean", "std"
    if kind == "residual":
        return "residual_mean", "residual_std"
    raise ConfigError(f"kind must be 'state' or 'residual', got {kind!r}.")


def _stat_for(stats: xr.Dataset, name: Hashable, stat: str, like: xr.DataArray | None) -> xr.DataArray:
    """One statistic of one variable, selected to match ``like``'s non-grid coords (e.g. levels)."""
    if name not in stats.data_vars:
        raise DataError(
            f"variable {name!r} has no normalization statistics; the statistics hold "
            f"{sorted(map(str, stats.data_vars))}. Recompute them with the variable included."
        )
    s = stats[name].sel(statistic=stat)
    for d in [d for d in s.dims]:
        if like is None:
            continue
        if d in like.coords:
            want = like[d].values
            have = s[d].values
            miss = np.setdiff1d(np.atleast_1d(want), have)
            if miss.size:
                raise DataError(
                    f"statistics of {name!r} have no {d} {miss.tolist()}; they cover {d} {have.tolist()}."
                )
            s = s.sel({d: want})
        else:
            raise DataError(
                f"statistics of {name!r} vary along {d!r} but the data has no {d!r} coordinate "
                f"(dims {like.dims}); select it with .sel({d}=...) keeping the coordinate."
            )
    return s.drop_vars("statistic")


def stat_values(
    stats: xr.Dataset,
    name: Hashable,
    kind: Kind = "state",
    like: xr.DataArray | None = None,
    *,
    guard: bool = True,
) -> tuple[xr.DataArray, xr.DataArray]:
    """``(mean, std)`` of ``name`` for ``kind``, with the std-0 guard applied (std 0 -> 1, warned).

    ``like`` (data of the variable) selects the matching levels. ``guard=False``
    returns the std as stored, without the std-0 replacement and warning.

    Raises
    ------
    DataError
        If the variable (or a level of ``like``) is missing, or the statistic is NaN
        (e.g. residual statistics of a static variable).
    """
    mname, sname = _stat_names(kind)
    mean = _stat_for(stats, name, mname, like)
    std = _stat_for(stats, name, sname, like)
    if hasattr(std.data, "dask") or hasattr(mean.data, "dask"):
        mean, std = mean.compute(), std.compute()
    sv = np.asarray(std.values, dtype=np.float64)
    mv = np.asarray(mean.values, dtype=np.float64)
    if not (np.all(np.isfinite(sv)) and np.all(np.isfinite(mv))):
        raise DataError(
            f"{kind} statistics of {name!r} are not finite ({mname}={mv.tolist()}, {sname}={sv.tolist()}); "
            + (
                "static variables have no residual statistics: normalize them with kind='state'."
                if kind == "residual"
                else "recompute the statistics."
            )
        )
    # 0, or below float resolution relative to the mean: a constant field
    zero = zero_std(sv, mv)
    if guard and np.any(zero):
        warnings.warn(
            f"{sname} of {name!r} is 0 (a constant field): using std=1 so that normalizing only removes the mean.",
            ZeroStdWarning,
            stacklevel=3,
        )
        std = std.copy(data=np.where(zero, 1.0, sv))
    return mean, std


def _apply(ds, stats, kind, inverse, variables):
    if not isinstance(stats, xr.Dataset):
        raise DataError(
            f"stats must be an xarray.Dataset from atmos.io.compute_stats / load_stats, got {type(stats).__name__}."
        )
    _check_layout(stats, "the stats argument")
    single = isinstance(ds, xr.DataArray)
    if single:
        if ds.name is None:
            raise DataError("normalize needs a named DataArray (its name selects the statistics); set .name.")
        dset = ds.to_dataset()
    else:
        dset = ds
    names = list(dset.data_vars) if variables is None else list(variables)
    out = dset.copy()
    for name in names:
        x = dset[name]
        mean, std = stat_values(stats, name, kind, like=x)
        if np.issubdtype(x.dtype, np.floating):
            mean, std = mean.astype(x.dtype), std.astype(x.dtype)
        y = x * std + mean if inverse else (x - mean) / std
        attrs = dict(x.attrs)
        if inverse:
            attrs.pop("atmos_normalized", None)
            if "units" in stats[name].attrs:
                attrs["units"] = stats[name].attrs["units"]
        else:
            attrs["atmos_normalized"] = kind
            attrs["units"] = "1"
        y.attrs = attrs
        out[name] = y.transpose(*x.dims)
    return out[ds.name] if single else out


def normalize(
    ds: xr.Dataset | xr.DataArray,
    stats: xr.Dataset,
    kind: Kind = "state",
    *,
    variables: Iterable[Hashable] | None = None,
) -> xr.Dataset | xr.DataArray:
    """``x -> (x - mean) / std`` per variable (and level) using a statistics dataset.

    Parameters
    ----------
    ds : xarray.Dataset or named DataArray
        Data to normalize (lazy data stay lazy). Levels are matched by label.
    stats : xarray.Dataset
        From :func:`compute_stats` / :func:`load_stats` (load it first: the std
        values are inspected).
    kind : {"state", "residual"}
        ``"state"`` uses ``mean``/``std``; ``"residual"`` uses ``residual_mean``/
        ``residual_std`` (for 1-step increments ``x[t+1] - x[t]``).
    variables : iterable of str, optional
        Variables to normalize (default: all data variables); others pass through.

    Notes
    -----
    A std of 0 (a constant field such as an all-ones land-sea mask) would divide
    by zero: std=1 is used instead and a :class:`ZeroStdWarning` is issued.
    Floating data keep their dtype; ``units`` becomes ``"1"`` and the attribute
    ``atmos_normalized`` records ``kind`` (:func:`denormalize` undoes both).

    Raises
    ------
    DataError
        A variable or level missing from ``stats`` (the message lists what is there),
        or non-finite statistics (e.g. residual stats of a static).
    """
    return _apply(ds, stats, kind, False, variables)


def denormalize(
    ds: xr.Dataset | xr.DataArray,
    stats: xr.Dataset,
    kind: Kind = "state",
    *,
    variables: Iterable[Hashable] | None = None,
) -> xr.Dataset | xr.DataArray:
    """Inverse of :func:`normalize`: ``x -> x * std + mean`` (same guards)."""
    return _apply(ds, stats, kind, True, variables)
