"""Read anemoi-datasets zarr stores as canonical atmos cubes.

An anemoi-datasets store (what ``anemoi-datasets create`` writes, read by
``anemoi.datasets.open_dataset``) is a zarr group holding

* ``data``: ``(time, variable, ensemble, cell)`` float32 (``_ARRAY_DIMENSIONS``
  attribute ``["time", "variable", "ensemble", "cell"]``), the grid flattened to one
  ``cell`` axis;
* ``dates`` (``datetime64[s]``, along ``time``), ``latitudes`` and ``longitudes``
  (float64, along ``cell``);
* statistics along ``variable``: ``mean``, ``stdev``, ``minimum``, ``maximum`` (and
  in older stores ``sums``, ``squares``, ``count``, ``has_nans``), optionally the
  tendency statistics ``statistics_tendencies_<freq>_{mean,stdev,minimum,maximum}``;
* group attributes: ``variables`` (ECMWF parameter names, pressure-level fields named
  ``{param}_{levelist}``: ``z_500``, ``t_850``, ``2t``, ``msl``, ``10u``, ``lsm``,
  ``z`` for the orography ...), ``variables_metadata`` (per variable its ``mars``
  keys ``param``/``levtype``/``levelist`` and ``units``), ``frequency``,
  ``resolution``, ``field_shape``, ``constant_fields``, ``missing_dates``,
  ``statistics_start_date``/``statistics_end_date`` ...

:func:`open_anemoi` turns it into the canonical layout of :func:`atmos.open_dataset`:
WeatherBench2 names (the ERA5 table of ``names.yaml``), pressure-level fields gathered
on a ``level`` dimension, time-invariant fields (``land_sea_mask``,
``geopotential_at_surface``) without ``time``, ``(time, [member], [level], latitude,
longitude)`` with latitude ascending when the cells form a regular latitude-longitude
grid, a HEALPix ``cell`` dimension with xdggs ``cell_ids`` when they are the centres
of a HEALPix grid, and otherwise a ``cell`` dimension with ``latitude``/``longitude``
coordinates. :func:`anemoi_stats` gives the store's statistics in the format of
:mod:`atmos.io.stats`.

Only zarr (always a dependency of atmos) is used; anemoi-datasets itself is not
needed to read a store.
"""

from __future__ import annotations

import os
from collections.abc import Hashable, Mapping
from typing import Any

import numpy as np
import xarray as xr

from atmos.errors import DataError
from atmos.io.anemoi_layout import (
    _check_store,
    _healpix_layout,
    _open_raw,
    _regular_layout,
    _root_attrs,
    _static_names,
    _timedelta,
    _variable_names,
    anemoi_variable,
    is_anemoi_store,
    read_anemoi,
)
from atmos.io.names import convert_units, load_names, units_equal

__all__ = ["anemoi_stats", "anemoi_variable", "is_anemoi_store", "open_anemoi", "read_anemoi"]


def open_anemoi(
    path: str | os.PathLike,
    *,
    chunks: Mapping[str, int] | str | int | None = None,
    on_units: str = "warn",
) -> xr.Dataset:
    """Open an anemoi-datasets zarr store lazily in the canonical atmos layout.

    Parameters
    ----------
    path : path
        A local anemoi-datasets gridded store (see the module docstring).
    chunks
        Passed to ``xarray.open_dataset``: ``None`` (default) or ``{}`` give dask arrays
        on the store's chunks, a dict of the store's dimension names (``time``, ``variable``,
        ``ensemble``, ``cell``) or ``"auto"`` other dask chunks. The result is always
        dask-backed (the grid is rebuilt lazily from the flat ``cell`` axis).
    on_units
        Canonical variables whose units conflict with the canonical ones: ``"warn"``,
        ``"raise"`` or ``"ignore"`` (see :func:`atmos.io.open.canonicalize`).

    Returns
    -------
    xarray.Dataset
        The canonical cube: WeatherBench2 names, pressure-level parameters
        (``z_500``, ``z_850``...) on a ``level`` dimension, the ensemble dimension as
        ``member`` (dropped when of size 1), static fields (``constant_in_time`` in the
        store's metadata, and canonical statics such as ``land_sea_mask``) without
        ``time`` (nor ``member``), dims ``(time, [member], [level], latitude, longitude)`` with latitude
        ascending and longitude in [0, 360) for a regular grid, ``(..., cell)`` with
        xdggs ``cell_ids`` for a HEALPix grid, and ``(..., cell)`` with
        ``latitude``/``longitude`` coordinates on ``cell`` otherwise (an unstructured
        grid, e.g. reduced Gaussian; atmos models cannot run on it). Missing dates are
        NaN. Selected store attributes are kept as ``anemoi_<name>``.

    Raises
    ------
    SourceError
        The path is not an anemoi-datasets store.
    DataError
        An unexpected ``data`` layout, or two store variables with one canonical name.
    """
    from atmos.io.open import canonicalize

    ds = read_anemoi(path, chunks=chunks)
    return canonicalize(ds, "canonical", on_units=on_units, source=str(_check_store(path)))

# ======================================================================================
# statistics
# ======================================================================================
def _stat_array(raw: xr.Dataset, name: str) -> np.ndarray | None:
    return np.asarray(raw[name].values, dtype=np.float64) if name in raw.variables else None


def _tendency_prefix(raw: xr.Dataset, frequency: Any) -> str | None:
    """Prefix of the 1-step tendency statistics (``statistics_tendencies_6h_``), if present."""
    keys = [
        str(k) for k in raw.variables if str(k).startswith("statistics_tendencies_") and str(k).endswith("_mean")
    ]
    if not keys:
        return None
    if frequency is not None:
        try:
            hours = _timedelta(frequency).total_seconds() / 3600.0
        except (TypeError, ValueError):
            hours = None
        for k in keys:
            delta = k[len("statistics_tendencies_") : -len("_mean")]
            try:
                if hours is not None and _timedelta(delta).total_seconds() / 3600.0 == hours:
                    return k[: -len("mean")]
            except (TypeError, ValueError):
                continue
    return None


def anemoi_stats(path: str | os.PathLike) -> xr.Dataset:
    """The statistics stored in an anemoi-datasets store, in the format of :mod:`atmos.io.stats`.

    Parameters
    ----------
    path : path
        A local anemoi-datasets store.

    Returns
    -------
    xarray.Dataset
        Canonical variable names (as :func:`open_anemoi` gives them), each with a leading
        ``statistic`` dimension (``mean``, ``std``, ``residual_mean``, ``residual_std``,
        :data:`atmos.io.stats.STATISTICS`) and ``level`` for pressure-level fields;
        float64, with ``units``. ``mean``/``std`` are the store's ``mean``/``stdev``;
        ``residual_*`` its 1-step tendency statistics
        (``statistics_tendencies_<frequency>_mean``/``_stdev``) where the store has them,
        NaN otherwise and for static fields. Values are converted to the canonical units
        like the data. Attributes as :func:`atmos.io.stats.compute_stats` writes them;
        ``weighting`` says that anemoi statistics weigh every grid point equally
        (atmos's own are area-weighted).

    Raises
    ------
    SourceError
        Not an anemoi-datasets store.
    DataError
        The store has no ``mean``/``stdev`` arrays (statistics not computed: run
        ``anemoi-datasets finalise``/``create`` to the end), or they do not match its variables.
    """
    from atmos._version import __version__
    from atmos.io.stats import _STATS_FORMAT_VERSION, STATISTICS

    p = _check_store(path)
    raw = _open_raw(p, None)
    attrs = dict(_root_attrs(p) or {})
    names = _variable_names(attrs)
    mean, std = _stat_array(raw, "mean"), _stat_array(raw, "stdev")
    if mean is None or std is None:
        raise DataError(
            f"anemoi-datasets store {str(p)!r} has no 'mean'/'stdev' statistics arrays; expected them "
            "after `anemoi-datasets create` (or `finalise`). Compute atmos statistics instead with "
            "atmos.io.compute_stats(atmos.open_dataset(path))."
        )
    if mean.shape != (len(names),) or std.shape != (len(names),):
        raise DataError(
            f"statistics of {str(p)!r} have shapes mean {mean.shape}, stdev {std.shape}; expected "
            f"({len(names)},), one value per variable."
        )
    frequency = attrs.get("frequency")
    prefix = _tendency_prefix(raw, frequency)
    rmean = _stat_array(raw, prefix + "mean") if prefix else None
    rstd = _stat_array(raw, prefix + "stdev") if prefix else None
    meta_all = attrs.get("variables_metadata") or {}
    static = _static_names(meta_all)
    canonical = load_names().canonical

    groups: dict[str, list[tuple[int | None, int, str]]] = {}
    for i, name in enumerate(names):
        target, level = anemoi_variable(name, meta_all.get(name), frequency)
        groups.setdefault(target, []).append((level, i, name))

    out: dict[Hashable, xr.DataArray] = {}
    for target, members in groups.items():
        members = sorted(members, key=lambda m: -1 if m[0] is None else m[0])
        idx = [m[1] for m in members]
        is_static = all(m[2] in static for m in members) or canonical.get(target, {}).get("static", False)
        nan = np.full(len(idx), np.nan)
        vals = np.stack([
            mean[idx],
            std[idx],
            nan if (rmean is None or is_static) else rmean[idx],
            nan if (rstd is None or is_static) else rstd[idx],
        ])
        m0 = meta_all.get(members[0][2]) or {}
        src_units = m0.get("units") if isinstance(m0, Mapping) else None
        info = canonical.get(target)
        units = src_units
        if info is not None and src_units is not None and not units_equal(src_units, info["units"]):
            conv = _linear(src_units, info["units"])
            if conv is not None:
                scale, offset = conv
                vals = vals * np.array([[scale], [abs(scale)], [scale], [abs(scale)]])
                vals[0] += offset
                units = info["units"]
        elif info is not None:
            units = info["units"]
        if members[0][0] is None:
            arr = xr.DataArray(vals[:, 0], dims=("statistic",))
        else:
            lv = np.asarray([m[0] for m in members], dtype=np.int64)
            arr = xr.DataArray(vals, dims=("statistic", "level"), coords={"level": ("level", lv)})
        if units is not None:
            arr.attrs["units"] = str(units)
        out[target] = arr
    stats = xr.Dataset(out).assign_coords(statistic=("statistic", list(STATISTICS)))
    grid = "HealpixGrid" if _healpix_layout(
        np.asarray(raw["latitudes"].values, np.float64), np.asarray(raw["longitudes"].values, np.float64)
    ) is not None else ("LatLonGrid" if _regular_layout(
        np.asarray(raw["latitudes"].values, np.float64), np.asarray(raw["longitudes"].values, np.float64)
    ) is not None else "unstructured")
    dates = np.asarray(raw["dates"].values).astype("datetime64[ns]")
    start = np.datetime64(attrs.get("statistics_start_date") or dates[0]).astype("datetime64[ns]")
    end = np.datetime64(attrs.get("statistics_end_date") or dates[-1]).astype("datetime64[ns]")
    n_time = int(np.sum((dates >= start) & (dates <= end)))
    stats.attrs = {
        "atmos_stats_version": _STATS_FORMAT_VERSION,
        "dims": "time cell" if grid != "LatLonGrid" else "time latitude longitude",
        "weighting": "none: anemoi-datasets statistics weigh every grid point equally",
        "atmos_version": str(__version__),
        "grid": grid,
        "time_start": str(start),
        "time_end": str(end),
        "n_time": n_time,
        "source": f"anemoi-datasets store {str(p)}",
        "residual": "anemoi tendency statistics " + prefix[:-1] if prefix else "not in the store (NaN)",
    }
    return stats


def _linear(src: str, target: str) -> tuple[float, float] | None:
    """``(scale, offset)`` of the linear conversion ``src`` -> ``target`` of ``names.yaml``."""
    one = xr.DataArray(np.array([0.0, 1.0]), attrs={"units": src})
    conv = convert_units(one, target)
    if conv is None:
        return None
    v = np.asarray(conv.values, dtype=np.float64)
    return float(v[1] - v[0]), float(v[0])
