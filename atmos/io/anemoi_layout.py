"""The layout of anemoi-datasets zarr stores: detection, variable names, grids, lazy reading.

The reading half of :mod:`atmos.io.anemoi` (which documents the layout and the
result); kept apart so that :mod:`atmos.io.open` can dispatch to it without an import
cycle. Only zarr (a dependency of atmos) is used, not anemoi-datasets.
"""

from __future__ import annotations

import json
import os
import re
import warnings
from collections.abc import Hashable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from atmos.errors import DataError, SourceError
from atmos.io.names import load_names

__all__ = ["anemoi_variable", "is_anemoi_store", "read_anemoi"]

#: Arrays every anemoi-datasets gridded store has.
_REQUIRED_ARRAYS = ("data", "dates", "latitudes", "longitudes")
#: The ``_ARRAY_DIMENSIONS`` of ``data`` in an anemoi-datasets store.
_DATA_DIMS = ("time", "variable", "ensemble", "cell")
#: Naming of pressure-level fields without ``variables_metadata`` (anemoi's default remapping).
_PARAM_LEVEL = re.compile(r"^(?P<param>.+)_(?P<level>\d+)$")
#: Group attributes copied onto the opened dataset (prefixed ``anemoi_``).
_KEPT_ATTRS = (
    "name",
    "description",
    "frequency",
    "resolution",
    "start_date",
    "end_date",
    "statistics_start_date",
    "statistics_end_date",
    "missing_dates",
    "constant_fields",
    "field_shape",
    "licence",
    "attribution",
    "uuid",
    "version",
)
#: Absolute tolerance when matching cell centres to a regular or HEALPix grid (degrees).
_COORD_ATOL = 1e-6


# ======================================================================================
# detection
# ======================================================================================
def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        with open(path, encoding="utf-8") as f:
            out = json.load(f)
    except (OSError, ValueError):
        return None
    return out if isinstance(out, dict) else None


def _root_attrs(path: Path) -> dict[str, Any] | None:
    """Attributes of the root group of a local zarr store (v2 or v3), None if not a zarr group."""
    v3 = _read_json(path / "zarr.json")
    if v3 is not None:
        return dict(v3.get("attributes") or {})
    if (path / ".zgroup").exists():
        return _read_json(path / ".zattrs") or {}
    return None


def _has_array(path: Path, name: str) -> bool:
    return (path / name / ".zarray").exists() or (path / name / "zarr.json").exists()


def is_anemoi_store(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a local anemoi-datasets (gridded) zarr store.

    Reads only the store's metadata (a few small JSON files).

    Parameters
    ----------
    path : path
        A local folder (zarr v2 or v3 layout). URLs and files give False.

    Returns
    -------
    bool
        True when the root group has the arrays ``data``, ``dates``, ``latitudes``
        and ``longitudes`` and a ``variables`` (or ``name_to_index``) attribute.
    """
    if isinstance(path, str) and "://" in path:
        return False
    p = Path(os.path.expanduser(os.fspath(path)))
    if not p.is_dir():
        return False
    attrs = _root_attrs(p)
    if attrs is None or not ("variables" in attrs or "name_to_index" in attrs):
        return False
    return all(_has_array(p, a) for a in _REQUIRED_ARRAYS)


def _check_store(path: str | os.PathLike) -> Path:
    p = Path(os.path.expanduser(os.fspath(path)))
    if not p.exists():
        raise SourceError(f"anemoi-datasets store {str(p)!r} does not exist; check the path.")
    if not is_anemoi_store(p):
        missing = [a for a in _REQUIRED_ARRAYS if not (p.is_dir() and _has_array(p, a))]
        raise SourceError(
            f"{str(p)!r} is not an anemoi-datasets store: expected a zarr group with the arrays "
            f"{list(_REQUIRED_ARRAYS)} (missing {missing}) and a 'variables' attribute. Open other "
            "zarr stores with atmos.open_dataset, or create the store with `anemoi-datasets create`."
        )
    return p


# ======================================================================================
# variable names
# ======================================================================================
def _variable_names(attrs: Mapping[str, Any]) -> list[str]:
    if "variables" in attrs:
        return [str(v) for v in attrs["variables"]]
    n2i = attrs["name_to_index"]
    return [str(k) for k, _ in sorted(n2i.items(), key=lambda kv: kv[1])]


def _split(name: str, meta: Mapping[str, Any]) -> tuple[str, int | None, str | None]:
    """``(param, pressure level or None, levtype)`` of an anemoi variable name."""
    mars = meta.get("mars") if isinstance(meta, Mapping) else None
    if isinstance(mars, Mapping) and "param" in mars:
        levtype = mars.get("levtype")
        level = mars.get("levelist", mars.get("level"))
        if levtype == "pl" and level is not None:
            return str(mars["param"]), int(level), "pl"
        if levtype in (None, "sfc") or level is None:
            return (str(mars["param"]) if levtype == "sfc" else name), None, levtype
        return name, None, str(levtype)  # model / theta / pv levels: kept under their anemoi name
    m = _PARAM_LEVEL.match(name)
    if m:
        return m["param"], int(m["level"]), "pl"
    return name, None, None


def _accumulation_hours(meta: Mapping[str, Any], frequency: Any) -> float | None:
    period = meta.get("period") if isinstance(meta, Mapping) else None
    for value in (period, frequency):
        if value is None:
            continue
        if isinstance(value, (list, tuple)) and len(value) == 2:
            try:
                return float(value[1]) - float(value[0])
            except (TypeError, ValueError):
                continue
        try:
            td = _timedelta(value)
        except (TypeError, ValueError):
            continue
        return td.total_seconds() / 3600.0
    return None


def _timedelta(value: Any) -> Any:
    """A :class:`pandas.Timedelta` of an anemoi frequency (``"6h"``, ``6`` hours, ``"1d"``)."""
    import pandas as pd

    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return pd.Timedelta(hours=float(value))
    return pd.Timedelta(str(value))


def anemoi_variable(
    name: str, metadata: Mapping[str, Any] | None = None, frequency: Any = None
) -> tuple[str, int | None]:
    """Canonical name and pressure level of one anemoi-datasets variable.

    Parameters
    ----------
    name : str
        Variable name in the store (``"z_500"``, ``"2t"``, ``"lsm"``, ``"z"``, ``"tp"`` ...).
    metadata : mapping, optional
        Its entry of the store's ``variables_metadata`` (``mars`` keys ``param``,
        ``levtype``, ``levelist``); without it ``{param}_{level}`` names are taken
        as pressure levels.
    frequency : str or timedelta, optional
        The store's ``frequency``: the accumulation period of ``tp`` when its metadata
        gives none (``tp`` of a 6-hourly store is ``total_precipitation_6hr``).

    Returns
    -------
    tuple
        ``(canonical name, level in hPa or None)``. ECMWF parameters of the ERA5 table of
        ``names.yaml`` get their WeatherBench2 name (``z`` with a level is
        ``geopotential``, without one ``geopotential_at_surface``); other variables
        (``cos_latitude``, ``insolation``, ``skt`` ...) keep their anemoi name.
    """
    meta = metadata or {}
    param, level, levtype = _split(name, meta)
    if levtype not in (None, "pl", "sfc"):
        return name, None
    entry = load_names().styles["era5"].get(param)
    if entry is None:
        return (param if level is not None else name), level
    target = entry.name
    if level is None and entry.without_level is not None:
        target = entry.without_level
    if target == "total_precipitation":
        hours = _accumulation_hours(meta, frequency)
        if hours is not None and f"total_precipitation_{hours:g}hr" in load_names().canonical:
            target = f"total_precipitation_{hours:g}hr"
    return target, level


# ======================================================================================
# grids
# ======================================================================================
def _regular_layout(
    lat: np.ndarray, lon: np.ndarray
) -> tuple[np.ndarray | None, np.ndarray, np.ndarray] | None:
    """``(order, lat values, lon values)`` when the cells form a full regular lat-lon grid.

    ``order`` (None: the cells are already row-major, latitude rows by longitude
    columns in any monotonic order) puts the cells in row-major order; the values are
    those of the rows and the columns in that order.
    """
    n = lat.size
    ulat = np.unique(np.round(lat, 9))
    ulon = np.unique(np.round(np.mod(lon, 360.0), 9))
    nlat, nlon = ulat.size, ulon.size
    if nlat * nlon != n or nlat < 2 or nlon < 2:
        return None

    def rows_ok(la: np.ndarray, lo: np.ndarray) -> bool:
        la2, lo2 = la.reshape(nlat, nlon), np.mod(lo, 360.0).reshape(nlat, nlon)
        return bool(
            np.allclose(la2, la2[:, :1], rtol=0, atol=_COORD_ATOL)
            and np.allclose(lo2, lo2[:1, :], rtol=0, atol=_COORD_ATOL)
        )

    if rows_ok(lat, lon):
        return None, lat.reshape(nlat, nlon)[:, 0].copy(), lon.reshape(nlat, nlon)[0, :].copy()
    order = np.lexsort((np.mod(lon, 360.0), lat))
    la, lo = lat[order], lon[order]
    if rows_ok(la, lo):
        return order, la.reshape(nlat, nlon)[:, 0].copy(), lo.reshape(nlat, nlon)[0, :].copy()
    return None  # not a full regular grid


def _healpix_layout(lat: np.ndarray, lon: np.ndarray) -> Any | None:
    """The :class:`~atmos.grids.HealpixGrid` whose cell centres are these cells, in this order."""
    n = lat.size
    nside = int(round(np.sqrt(n / 12)))
    if nside < 1 or 12 * nside * nside != n or nside & (nside - 1):
        return None
    from atmos.grids import HealpixGrid

    for order in ("ring", "nest"):
        g = HealpixGrid(nside, order)
        glat, glon = g.centers()
        dlon = np.abs((np.mod(lon, 360.0) - glon + 180.0) % 360.0 - 180.0)
        polar = np.abs(glat) > 90.0 - _COORD_ATOL
        if np.allclose(lat, glat, rtol=0, atol=_COORD_ATOL) and np.all((dlon < _COORD_ATOL) | polar):
            return g
    return None


def _spatial(arr: xr.DataArray, lat: np.ndarray, lon: np.ndarray) -> tuple[xr.DataArray, str]:
    """Put ``arr``'s ``cell`` axis on the store's grid: (array, grid kind)."""
    layout = _regular_layout(lat, lon)
    if layout is not None:
        order, la, lo = layout
        if order is not None:
            arr = arr.isel(cell=order)
        out = arr.coarsen(cell=lo.size).construct(cell=("latitude", "longitude"))
        out = out.assign_coords(latitude=("latitude", la), longitude=("longitude", lo))
        return out, "latlon"
    grid = _healpix_layout(lat, lon)
    if grid is not None:
        glat, glon = grid.centers()
        return arr.assign_coords(
            cell_ids=("cell", grid.cell_ids, grid.xdggs_attrs()),
            latitude=("cell", glat, {"units": "degrees_north", "standard_name": "latitude"}),
            longitude=("cell", glon, {"units": "degrees_east", "standard_name": "longitude"}),
        ), "healpix"
    return arr.assign_coords(
        latitude=("cell", lat, {"units": "degrees_north", "standard_name": "latitude"}),
        longitude=("cell", lon, {"units": "degrees_east", "standard_name": "longitude"}),
    ), "unstructured"


# ======================================================================================
# open
# ======================================================================================
def _open_raw(path: Path, chunks: Any) -> xr.Dataset:
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Failed to open Zarr store with consolidated")
        warnings.filterwarnings("ignore", category=RuntimeWarning, message=".*consolidated.*")
        try:
            raw = xr.open_dataset(
                str(path), engine="zarr", chunks=chunks, consolidated=None, decode_times=True,
                mask_and_scale=False,  # zarr v2 fill values (0 for latitudes/longitudes) are data
            )
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise SourceError(
                f"could not open the anemoi-datasets store {str(path)!r} with zarr "
                f"({type(e).__name__}: {e}). "
                "Check that the store is complete (`anemoi-datasets inspect` it)."
            ) from e
    if tuple(raw["data"].dims) != _DATA_DIMS:
        raise DataError(
            f"array 'data' of the anemoi-datasets store {str(path)!r} has dimensions {raw['data'].dims}; "
            f"expected {_DATA_DIMS}. Only gridded anemoi-datasets stores are supported (not tabular "
            "or trajectory layouts)."
        )
    return raw


def _attr_value(v: Any) -> Any:
    if isinstance(v, (str, int, float, np.integer, np.floating)) and not isinstance(v, bool):
        return v
    return json.dumps(v, default=str)


def _static_names(meta: Mapping[str, Any]) -> set[str]:
    """Store variables marked ``constant_in_time`` in ``variables_metadata``."""
    return {str(n) for n, m in meta.items() if isinstance(m, Mapping) and m.get("constant_in_time")}

def read_anemoi(
    path: str | os.PathLike, *, chunks: Mapping[str, int] | str | int | None = None
) -> xr.Dataset:
    """An anemoi-datasets store as a dataset with canonical names, before :func:`~atmos.io.open.canonicalize`.

    :func:`atmos.io.anemoi.open_anemoi` (and :func:`atmos.open_dataset`, which calls
    this for anemoi stores) canonicalize the result: latitude ascending, longitude in
    [0, 360), units converted, CF attributes, canonical dimension order.

    Parameters
    ----------
    path : path
        A local anemoi-datasets gridded store.
    chunks
        Passed to ``xarray.open_dataset``: ``None`` or ``{}`` give dask arrays on the
        store's chunks, a dict of the store's dimension names (``time``, ``variable``,
        ``ensemble``, ``cell``) or ``"auto"`` other chunks. Always dask-backed (the grid
        is rebuilt lazily from the flat ``cell`` axis).

    Returns
    -------
    xarray.Dataset
        Variables named canonically (see :func:`anemoi_variable`) with the store's
        ``units`` and ``atmos_original_name``; pressure-level parameters on ``level``,
        statics without ``time``/``member``; ``latitude``/``longitude`` dimensions for a
        regular grid, else ``cell`` (with xdggs ``cell_ids`` on a HEALPix grid). Store
        attributes as ``anemoi_<name>``, ``anemoi_grid`` = ``latlon``, ``healpix`` or
        ``unstructured``.

    Raises
    ------
    SourceError
        The path is not an anemoi-datasets store.
    DataError
        An unexpected ``data`` layout, or two store variables with one canonical name.
    """
    p = _check_store(path)
    raw = _open_raw(p, {} if chunks is None else chunks)
    attrs = dict(_root_attrs(p) or {})
    names = _variable_names(attrs)
    data = raw["data"]
    if data.sizes["variable"] != len(names):
        raise DataError(
            f"anemoi-datasets store {str(p)!r} lists {len(names)} variables but its 'data' array has "
            f"{data.sizes['variable']} along 'variable'; the store is inconsistent (recreate it)."
        )
    meta_all = attrs.get("variables_metadata") or {}
    frequency = attrs.get("frequency")
    static = _static_names(meta_all)
    canonical = load_names().canonical

    time = np.asarray(raw["dates"].values).astype("datetime64[ns]")
    data = data.drop_vars([c for c in data.coords]).assign_coords(time=("time", time))
    if data.sizes["ensemble"] == 1:
        data = data.isel(ensemble=0, drop=True)
    else:
        data = data.rename(ensemble="member").assign_coords(member=np.arange(data.sizes["ensemble"]))
    lat = np.asarray(raw["latitudes"].values, dtype=np.float64)
    lon = np.asarray(raw["longitudes"].values, dtype=np.float64)

    # group the store's variables: canonical name -> [(level, index, store name)]
    groups: dict[str, list[tuple[int | None, int, str]]] = {}
    for i, name in enumerate(names):
        target, level = anemoi_variable(name, meta_all.get(name), frequency)
        groups.setdefault(target, []).append((level, i, name))

    out: dict[Hashable, xr.DataArray] = {}
    grid_kind = "latlon"
    for target, members in groups.items():
        levels = [m[0] for m in members]
        if len(members) > 1 and any(lv is None for lv in levels):
            dup = [m[2] for m in members]
            raise DataError(
                f"anemoi-datasets variables {dup} of {str(p)!r} all map to the canonical name {target!r}; "
                "expected one variable per name (or one per pressure level). Select the variables with "
                "anemoi.datasets.open_dataset(..., select=[...]) and save a subset first."
            )
        if levels[0] is None:
            _, i, name = members[0]
            arr = data.isel(variable=i, drop=True)
        else:
            if len(set(levels)) != len(levels):
                raise DataError(
                    f"anemoi-datasets variables {[m[2] for m in members]} of {str(p)!r} repeat a pressure "
                    f"level of {target!r}; expected each level once."
                )
            members = sorted(members, key=lambda m: m[0])
            arr = data.isel(variable=[m[1] for m in members]).rename(variable="level")
            arr = arr.assign_coords(level=("level", np.asarray([m[0] for m in members], dtype=np.int64),
                                           {"units": "hPa"}))
            name = members[0][2]
        is_static = all(m[2] in static for m in members) or canonical.get(target, {}).get("static", False)
        if is_static:  # one field for all dates (and all members)
            arr = arr.isel({d: 0 for d in ("time", "member") if d in arr.dims}, drop=True)
        arr, grid_kind = _spatial(arr, lat, lon)
        va: dict[str, Any] = {"atmos_original_name": ",".join(m[2] for m in members)}
        m0 = meta_all.get(name) or {}
        units = m0.get("units") if isinstance(m0, Mapping) else None
        if units is not None:
            va["units"] = str(units)
        arr.attrs = va
        out[target] = arr

    ds = xr.Dataset(out)
    ds.attrs = {f"anemoi_{k}": _attr_value(attrs[k]) for k in _KEPT_ATTRS if attrs.get(k) is not None}
    ds.attrs["anemoi_grid"] = grid_kind
    return ds
