"""Open data cubes (catalog names, local zarr/netCDF, remote URLs) in the canonical layout.

:func:`open_dataset` = open the source lazily + :func:`canonicalize`. The canonical
layout of an atmos dataset:

* variables named with WeatherBench2 / ERA5 long names (``atmos/io/names.yaml``), with
  CF ``units`` and ``standard_name`` attributes;
* coordinates ``time``, ``member`` (ensembles), ``level`` (pressure in hPa, ascending),
  ``latitude`` (ascending, degrees north), ``longitude`` (ascending in [0, 360)), or a
  HEALPix ``cell`` dimension instead of latitude/longitude;
* dimensions in the order ``(time, [member], [other dims], [level], latitude,
  longitude)`` (or ``(..., [level], cell)``);
* static fields (``land_sea_mask``, ``geopotential_at_surface``) without a time
  dimension.

Everything is lazy: renaming, unit scaling, latitude flips and longitude rolls are dask
operations; only coordinate values (always in memory) are read.
"""

from __future__ import annotations

import glob as _glob
import importlib
import os
import socket
import threading
import urllib.parse
import urllib.request
import warnings
from collections.abc import Callable, Hashable, Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pandas as pd
import xarray as xr

from atmos.errors import CatalogError, DataError, SourceError
from atmos.io.names import coordinate_spec, load_names, rename_variables

__all__ = ["CANONICAL_DIM_ORDER", "canonicalize", "open_dataset", "select"]

#: Leading and trailing dimensions of the canonical order; other dims go in between.
CANONICAL_DIM_ORDER: tuple[tuple[str, ...], tuple[str, ...]] = (
    ("time", "member"),
    ("level", "latitude", "longitude", "cell"),
)

_NETCDF_SUFFIXES = (".nc", ".nc4", ".netcdf", ".cdf", ".h5", ".hdf5", ".he5")
_ZARR_MARKERS = (".zgroup", ".zattrs", ".zmetadata", "zarr.json")
_REMOTE_PACKAGES = {
    "gs": "gcsfs",
    "gcs": "gcsfs",
    "s3": "s3fs",
    "s3a": "s3fs",
    "http": "aiohttp",
    "https": "aiohttp",
    "az": "adlfs",
    "abfs": "adlfs",
}
_DEFAULT_HOSTS = {"gs": "storage.googleapis.com", "gcs": "storage.googleapis.com", "s3": "s3.amazonaws.com"}
#: Seconds to wait for a remote host to accept a connection (env ``ATMOS_CONNECT_TIMEOUT``).
DEFAULT_CONNECT_TIMEOUT = 5.0


# ======================================================================================
# canonicalize
# ======================================================================================
def canonicalize(
    ds: xr.Dataset,
    style: str | None = None,
    *,
    on_units: str = "warn",
    source: str | None = None,
) -> xr.Dataset:
    """Rename and reorder an open dataset into the canonical atmos layout (lazily).

    Parameters
    ----------
    ds
        Any dataset: WeatherBench2 / canonical names, ERA5 short names (``z``, ``t2m``,
        ``valid_time``, ``pressure_level``, latitude descending ...), MERRA-2 (``T2M``,
        ``H`` in m, ``lev``/``lat``/``lon``, longitude -180..180 ...), CMIP6 (``tas``,
        ``plev`` in Pa ...).
    style
        Naming style of the variables: ``"era5"``, ``"merra2"``, ``"cmip6"``,
        ``"canonical"`` (rename nothing), or ``None`` to detect it (see
        :func:`atmos.io.names.detect_style`).
    on_units
        Canonical variables whose units conflict with the canonical ones (and cannot be
        converted): ``"warn"`` (default), ``"raise"`` or ``"ignore"``.
    source
        Recorded as ``attrs["atmos_source"]`` when given.

    Returns
    -------
    xarray.Dataset
        The canonical dataset (see the module docstring); ``ds.attrs`` is kept, with
        ``atmos_style`` (the naming style used) added. Nothing is computed.

    Raises
    ------
    DataError
        No recognisable latitude/longitude (and no HEALPix ``cell`` dimension), 2-D
        (curvilinear) coordinates, duplicated or non-monotonic ``time``, duplicated
        levels, an ambiguous naming style, or two variables mapping to one name.
    """
    if not isinstance(ds, xr.Dataset):
        raise DataError(
            f"canonicalize expects an xarray.Dataset, got {type(ds).__name__}. "
            "Convert a DataArray with da.to_dataset(name=...)."
        )
    attrs = dict(ds.attrs)
    ds = _rename_coordinates(ds)
    ds = _fix_level(ds)
    ds, style = rename_variables(ds, style, on_units=on_units)
    ds = _squeeze_statics(ds)
    if "cell" not in ds.dims:
        ds = _fix_latlon(ds)
    _check_time(ds)
    ds = _transpose(ds)
    ds = _coordinate_attrs(ds)
    ds.attrs = attrs
    ds.attrs["atmos_style"] = style
    if source is not None:
        ds.attrs["atmos_source"] = str(source)
    return ds


def _is_coord_or_dim(ds: xr.Dataset, name: str, dims_only: bool) -> bool:
    if name in ds.dims:
        return True
    return (not dims_only) and name in ds.coords


def _pressure_factor(coord: xr.DataArray) -> float | None:
    """Factor turning a vertical coordinate into hPa, or None if it is not a pressure."""
    spec = coordinate_spec("level")
    convert = spec["convert"]
    units = coord.attrs.get("units")
    if units is None or str(units).strip() == "":
        if coord.size == 0 or not np.issubdtype(coord.dtype, np.number):
            return None
        return 0.01 if float(np.nanmax(np.abs(coord.values))) > float(spec["pa_threshold"]) else 1.0
    units = str(units).strip()
    for key, factor in convert.items():
        if units == key or units.lower() == str(key).lower():
            return float(factor)
    return None


def _rename_coordinates(ds: xr.Dataset) -> xr.Dataset:
    names = load_names()
    renames: dict[Hashable, str] = {}
    moved: dict[Hashable, str] = {}
    for canon, spec in names.coordinates.items():
        dims_only = bool(spec.get("dims_only", False))
        if canon in ds.dims:
            continue
        found = None
        for alias in spec["aliases"]:
            if alias == canon or alias in renames or alias in ds.data_vars:
                continue
            if alias in ds.dims:
                found = alias
                break
        if found is None and not dims_only and canon not in ds.coords:
            found = next(
                (a for a in spec["aliases"] if a != canon and a in ds.coords and a not in renames), None
            )
        if found is None and not dims_only and canon not in ds.coords:
            found = _cf_guess(ds, canon, exclude=set(renames))
        if found is None:
            continue
        if canon == "level" and found in ds.coords and _pressure_factor(ds[found]) is None:
            warnings.warn(
                f"vertical coordinate {found!r} has units {ds[found].attrs.get('units')!r}, which is "
                "not a pressure; it is left as it is (atmos datasets use pressure levels in hPa).",
                UserWarning,
                stacklevel=3,
            )
            continue
        if canon in ds.coords:  # e.g. cfgrib's scalar `time` next to a `valid_time` dimension
            moved[canon] = f"source_{canon}"
        renames[found] = canon
    if moved:
        ds = ds.rename(moved)
    if renames:
        ds = ds.rename(renames)
    return ds


_CF_KEYS = {
    "time": ("time", "T"),
    "latitude": ("latitude", "Y"),
    "longitude": ("longitude", "X"),
    "level": ("vertical", "Z"),
}


def _cf_guess(ds: xr.Dataset, canon: str, exclude: set) -> Hashable | None:
    """Find a coordinate by its CF attributes with cf_xarray (standard_name, units, axis)."""
    if canon not in _CF_KEYS:
        return None
    import cf_xarray  # noqa: F401  (registers the .cf accessor)

    key, axis = _CF_KEYS[canon]
    try:
        cands = list(ds.cf.coordinates.get(key, [])) + list(ds.cf.axes.get(axis, []))
    except (KeyError, ValueError, AttributeError, TypeError):  # pragma: no cover - odd attributes
        return None
    for c in cands:
        if c in exclude or c == canon or c in ds.data_vars:
            continue
        if ds[c].ndim <= 1:
            return c
    return None


def _fix_level(ds: xr.Dataset) -> xr.Dataset:
    if "level" not in ds.coords:
        return ds
    coord = ds["level"]
    factor = _pressure_factor(coord)
    if factor is None:
        return ds
    values = np.asarray(coord.values, dtype=np.float64) * factor
    if (
        values.size
        and np.all(np.isfinite(values))
        and np.allclose(values, np.round(values), rtol=0, atol=1e-6)
    ):
        values = np.round(values).astype(np.int64)
    elif np.issubdtype(coord.dtype, np.floating):
        values = values.astype(coord.dtype)
    ds = ds.assign_coords(level=(coord.dims, values, dict(coord.attrs)))
    if "level" in ds.dims:
        idx = pd.Index(np.asarray(ds["level"].values))
        if not idx.is_unique:
            dup = sorted(set(idx[idx.duplicated()].tolist()))
            raise DataError(
                f"pressure levels {dup} (hPa) appear more than once in the 'level' coordinate "
                f"{idx.tolist()}; expected unique levels. Select one of each, e.g. "
                "ds.drop_duplicates('level')."
            )
        ds = _make_ascending(ds, "level")
    return ds


def _make_ascending(ds: xr.Dataset, dim: str) -> xr.Dataset:
    """Sort a dimension ascending lazily (a reversed slice when it is descending)."""
    values = np.asarray(ds[dim].values)
    if values.size < 2 or np.all(np.diff(values) > 0):
        return ds
    if np.all(np.diff(values) < 0):
        return ds.isel({dim: slice(None, None, -1)})
    return ds.isel({dim: np.argsort(values, kind="stable")})


def _squeeze_statics(ds: xr.Dataset) -> xr.Dataset:
    canonical = load_names().canonical
    squeezed = False
    new = {}
    for name, da in ds.data_vars.items():
        info = canonical.get(str(name), {})
        if info.get("static") and "time" in da.dims and da.sizes["time"] == 1:
            new[name] = da.isel(time=0, drop=True)
            squeezed = True
    if not squeezed:
        return ds
    ds = ds.assign(new)
    if "time" in ds.dims and not any("time" in da.dims for da in ds.data_vars.values()):
        ds = ds.drop_dims("time")  # an invariants-only file: its single time stamp means nothing
    return ds


def _degree_units_ok(coord: xr.DataArray, canon: str) -> bool:
    units = coord.attrs.get("units")
    if units is None:
        return True
    u = str(units).strip().lower().replace(" ", "")
    ok = {"degree", "degrees", "deg", "°"}
    ok |= (
        {"degrees_north", "degree_north", "degrees_n", "degree_n", "degreen", "degreesn"}
        if canon == "latitude"
        else {"degrees_east", "degree_east", "degrees_e", "degree_e", "degreee", "degreese"}
    )
    return u in ok


def _fix_latlon(ds: xr.Dataset) -> xr.Dataset:
    missing = [c for c in ("latitude", "longitude") if c not in ds.coords]
    if missing:
        raise DataError(
            f"no recognisable {' and '.join(missing)} coordinate: found coordinates "
            f"{sorted(map(str, ds.coords))} and dimensions {sorted(map(str, ds.dims))}. Expected "
            "latitude/longitude (or lat/lon, nav_lat/nav_lon, or coordinates with CF attributes "
            "standard_name='latitude'/'longitude' or units='degrees_north'/'degrees_east'), or a "
            "HEALPix 'cell' dimension. Rename them, e.g. ds.rename({'y': 'latitude', 'x': 'longitude'})."
        )
    for canon in ("latitude", "longitude"):
        coord = ds[canon]
        if coord.ndim != 1:
            raise DataError(
                f"coordinate {canon!r} has dimensions {coord.dims}; expected a 1-D coordinate of a "
                "regular latitude-longitude grid. Curvilinear / 2-D grids are not supported: regrid "
                "the data to a regular grid first."
            )
        if coord.dims[0] != canon:
            ds = ds.swap_dims({coord.dims[0]: canon})
        if not _degree_units_ok(ds[canon], canon):
            raise DataError(
                f"coordinate {canon!r} has units {ds[canon].attrs.get('units')!r}; expected degrees. "
                f"Convert it, e.g. ds.assign_coords({canon}=np.degrees(ds.{canon}))."
            )
    lat = np.asarray(ds["latitude"].values, dtype=np.float64)
    if lat.size and np.nanmax(np.abs(lat)) > 90.0 + 1e-6:
        raise DataError(
            f"latitude values span [{np.nanmin(lat)}, {np.nanmax(lat)}]; expected degrees within "
            "[-90, 90]. Check that latitude and longitude are not swapped."
        )
    if not pd.Index(lat).is_unique:
        raise DataError(
            f"latitude has repeated values {sorted(set(pd.Index(lat)[pd.Index(lat).duplicated()]))}; "
            "expected a grid with unique latitudes."
        )
    ds = _make_ascending(ds, "latitude")

    lon_coord = ds["longitude"]
    lon = np.asarray(lon_coord.values, dtype=np.float64)
    wrapped = np.mod(lon, 360.0)
    wrapped[wrapped >= 360.0] -= 360.0
    if not np.array_equal(wrapped, lon):
        new = wrapped.astype(lon_coord.dtype) if np.issubdtype(lon_coord.dtype, np.floating) else wrapped
        ds = ds.assign_coords(longitude=("longitude", new, dict(lon_coord.attrs)))
    idx = pd.Index(wrapped)
    if not idx.is_unique:
        dups = sorted(set(idx[idx.duplicated()].tolist()))
        warnings.warn(
            f"longitudes {dups} appear twice after wrapping to [0, 360) (a cyclic point such as both "
            "0 and 360); the later copy is dropped.",
            UserWarning,
            stacklevel=3,
        )
        ds = ds.isel(longitude=np.flatnonzero(~idx.duplicated()))
        wrapped = wrapped[~idx.duplicated()]
    n = wrapped.size
    if n > 1 and not np.all(np.diff(wrapped) > 0):
        k = int(np.argmin(wrapped))
        if np.all(np.diff(np.roll(wrapped, -k)) > 0):
            ds = ds.roll(longitude=-k, roll_coords=True)  # e.g. -180..180 -> 0..360
        else:
            ds = ds.isel(longitude=np.argsort(wrapped, kind="stable"))
    return ds


def _check_time(ds: xr.Dataset) -> None:
    if "time" not in ds.dims or "time" not in ds.indexes:
        return
    idx = ds.indexes["time"]
    if not idx.is_unique:
        dup = idx[idx.duplicated()].unique()
        shown = ", ".join(str(t) for t in dup[:10]) + (" ..." if len(dup) > 10 else "")
        raise DataError(
            f"time stamps {shown} appear more than once ({len(dup)} duplicated); expected each time "
            "once. Drop the repeats with ds.drop_duplicates('time') (e.g. overlapping files), or "
            "select the period you need."
        )
    if not idx.is_monotonic_increasing:
        vals = list(idx)
        bad = [i for i in range(len(vals) - 1) if not vals[i] < vals[i + 1]]
        shown = "; ".join(f"{vals[i]} is followed by {vals[i + 1]}" for i in bad[:5])
        raise DataError(
            f"time is not increasing: {shown}{' ...' if len(bad) > 5 else ''}. Expected time stamps "
            "in increasing order; sort them with ds.sortby('time')."
        )


def _transpose(ds: xr.Dataset) -> xr.Dataset:
    lead, trail = CANONICAL_DIM_ORDER
    order = [*lead, ..., *trail]
    return ds.transpose(*order, missing_dims="ignore")


def _coordinate_attrs(ds: xr.Dataset) -> xr.Dataset:
    coords = load_names().coordinates
    for canon in ("time", "member", "level", "latitude", "longitude"):
        if canon not in ds.coords:
            continue
        extra = dict(coords[canon].get("attrs", {}))
        if canon == "time":
            extra.pop("units", None)  # time units live in the encoding
        if canon == "level" and _pressure_factor(ds["level"]) is None:
            continue
        ds[canon].attrs = {**ds[canon].attrs, **extra}
    return ds


# ======================================================================================
# selection
# ======================================================================================
def select(
    ds: xr.Dataset,
    variables: str | Sequence[str] | None = None,
    time: Any = None,
) -> xr.Dataset:
    """Subset a canonical dataset by variable names and time (lazily).

    Parameters
    ----------
    variables
        Canonical variable name(s) to keep; coordinates follow.
    time
        A ``slice`` of times, a string (``"2020-01"`` selects the month), a pair
        ``(start, end)`` (inclusive, like a slice), or a list of time stamps.

    Raises
    ------
    DataError
        A requested variable is missing (the message lists those present), or the time
        selection is empty or outside the data.
    """
    if variables is not None:
        wanted = [variables] if isinstance(variables, str) else list(variables)
        missing = [v for v in wanted if v not in ds.data_vars]
        if missing:
            raise DataError(
                f"variables {missing} are not in the dataset; it has {sorted(map(str, ds.data_vars))}. "
                "Choose from those (names are canonical: WeatherBench2 long names such as "
                "'2m_temperature'), or open a source that has them."
            )
        ds = ds[wanted]
    if time is not None:
        if "time" not in ds.dims:
            raise DataError(
                f"time={time!r} was given but the dataset has no 'time' dimension (dims "
                f"{sorted(map(str, ds.dims))}). Drop the time selection."
            )
        if isinstance(time, tuple) and len(time) == 2:
            time = slice(*time)
        span = _time_span(ds)
        try:
            out = ds.sel(time=time)
        except (KeyError, ValueError, TypeError) as e:
            raise DataError(
                f"time={time!r} does not select anything valid in the data's period {span} ({e}). "
                "Pass a slice('2020-01-01', '2020-01-31'), a date string or a list of time stamps "
                "within that period."
            ) from e
        if "time" not in out.dims:  # a single stamp: keep the dimension
            out = out.expand_dims("time")
            out = _transpose(out)
        if out.sizes["time"] == 0:
            raise DataError(
                f"time={time!r} selects no time step; the data covers {span}. Choose times within it."
            )
        ds = out
    return ds


def _time_span(ds: xr.Dataset) -> str:
    t = ds.indexes["time"]
    return f"{t[0]} .. {t[-1]} ({len(t)} steps)" if len(t) else "nothing (0 steps)"


# ======================================================================================
# open_dataset
# ======================================================================================
def open_dataset(
    source: str | os.PathLike | Sequence[str | os.PathLike] | xr.Dataset,
    *,
    variables: str | Sequence[str] | None = None,
    time: Any = None,
    chunks: Mapping[str, int] | str | int | None = "store",
    storage_options: Mapping[str, Any] | None = None,
    engine: str | None = None,
    style: str | None = None,
    on_units: str = "warn",
    units: Mapping[str, str] | None = None,
    **kwargs: Any,
) -> xr.Dataset:
    """Open a data cube lazily in the canonical atmos layout.

    Parameters
    ----------
    source
        One of

        * a catalog name (``atmos.catalog.list_entries()``), e.g. ``"speedy-world-val"``;
        * a local path: a zarr store, a netCDF file, a directory of netCDF files, a glob
          (``"/data/MERRA2_*.nc4"``) or a list of netCDF files (opened with
          ``xarray.open_mfdataset``);
        * a URL (``gs://``, ``s3://``, ``https://``...) opened through fsspec. The host is
          first probed with a short connection timeout (``ATMOS_CONNECT_TIMEOUT``
          seconds, default 5), so an unreachable URL fails fast;
        * an already open ``xarray.Dataset`` (only canonicalized).
    variables
        Canonical names of the variables to keep (default: all).
    time
        Time selection (see :func:`select`): slice, date string, (start, end) or list.
    chunks
        ``"store"`` (default): dask chunks = the store's own chunks. A dict of canonical
        dimension names to sizes, ``"auto"`` or an int rechunks after opening; ``None``
        gives numpy-backed lazily indexed arrays (no dask; variables that need a unit
        scaling, such as MERRA-2 ``H``, are then read at open time).
    storage_options
        fsspec options for URLs (e.g. ``{"token": "anon"}``); merged over the catalog
        entry's own.
    engine
        xarray backend (``"zarr"``, ``"netcdf4"``, ``"h5netcdf"``...); guessed when None.
    style, on_units
        Passed to :func:`canonicalize`.
    units
        Declared units per variable (names as in the data), e.g. ``{"t2m": "degC"}``: they replace
        the ``units`` attributes before the conversion to canonical units (for data whose
        attributes are missing or wrong).
    **kwargs
        Passed to ``xarray.open_dataset`` / ``open_mfdataset`` (e.g. ``decode_timedelta``).

    Returns
    -------
    xarray.Dataset
        Lazy (dask) dataset in the canonical layout; ``attrs["atmos_source"]`` records
        where it came from (catalog name and resolved path or URL).

    Raises
    ------
    CatalogError
        ``source`` looks like a catalog name but there is no such entry.
    SourceError
        The path does not exist, the URL cannot be reached, or an fsspec backend
        (``gcsfs``, ``s3fs``, ``aiohttp``) is not installed.
    DataError
        Missing variables, no latitude/longitude, bad time axis (see :func:`canonicalize`).
    """
    so: dict[str, Any] = {}
    open_kw: dict[str, Any] = {}
    label: str | None
    if isinstance(source, xr.Dataset):
        ds = source
        label = source.attrs.get("atmos_source")
    else:
        if isinstance(source, (str, os.PathLike)) and not str(os.fspath(source)).strip():
            raise SourceError(
                "the data source is an empty string; pass a catalog name (atmos catalog list), a path to a "
                "zarr store or netCDF file(s), or a URL."
            )
        target, label, entry_kw = _resolve_source(source)
        so.update(entry_kw.pop("storage_options", {}) or {})
        entry_style = entry_kw.pop("style", None)
        style = entry_style if style is None else style
        open_kw.update(entry_kw)
        so.update(storage_options or {})
        open_kw.update(kwargs)
        if engine is not None:
            open_kw["engine"] = engine
        if chunks is None:
            open_kw["chunks"] = None
        else:
            open_kw.setdefault("chunks", {})
            if chunks != "store":
                open_kw["chunks"] = {}
        ds = _open_target(target, label, so, open_kw)
    if units:
        missing = sorted(set(units) - set(map(str, ds.data_vars)))
        if missing:
            raise DataError(
                f"units declared for {missing}, which are not variables of the data; it has "
                f"{sorted(map(str, ds.data_vars))}. Use the names as they are in the data."
            )
        ds = ds.assign({k: ds[k].assign_attrs(units=str(v)) for k, v in units.items()})
    from atmos.io.dggs import from_dggs, is_dggs_healpix

    if is_dggs_healpix(ds):  # xdggs / CF healpix cell ids -> atmos's HEALPix layout
        ds = from_dggs(ds)
    ds = canonicalize(ds, style, on_units=on_units, source=label)
    if chunks not in (None, "store"):
        try:
            ds = ds.chunk(chunks)
        except (ValueError, KeyError) as e:
            raise DataError(
                f"chunks={chunks!r} cannot be applied: {e}. Use canonical dimension names "
                f"{sorted(map(str, ds.dims))}."
            ) from e
    return select(ds, variables, time)


def _resolve_source(source: Any, allow_catalog: bool = True) -> tuple[Any, str, dict[str, Any]]:
    """Turn ``source`` into (path(s) or URL, label, open kwargs from the catalog)."""
    if isinstance(source, (list, tuple)):
        paths = [_local_path(p) for p in source]
        missing = [str(p) for p in paths if not p.exists()]
        if missing:
            raise SourceError(
                f"files {missing} do not exist (of the {len(paths)} given). Check the paths, or "
                "pass only existing files."
            )
        if not paths:
            raise SourceError("an empty list of files was given; pass at least one path.")
        return paths, f"{len(paths)} files: {paths[0]} ...", {}
    if isinstance(source, os.PathLike):
        source = os.fspath(source)
    if not isinstance(source, str):
        raise SourceError(
            f"source {source!r} of type {type(source).__name__} is not understood; expected a "
            "catalog name, a path, a URL, a list of paths or an xarray.Dataset."
        )
    source = source.removeprefix("file://")
    if "://" in source:
        return source, source, {}
    resolver = _NAME_RESOLVER
    if allow_catalog and resolver is not None and _looks_like_name(source):
        found = resolver.lookup(source)
        if found is not None:
            target, entry_kw = found
            inner, _, kw = _resolve_source(target, allow_catalog=False)
            return inner, f"{source} ({target})", {**dict(entry_kw), **kw}
        if not _local_path(source).exists():
            raise CatalogError(
                f"{source!r} is neither a catalog entry nor an existing path. Catalog entries: "
                f"{resolver.names()}. Use one of those, a path to a zarr/netCDF file, or a URL "
                "(add catalogs with the ATMOS_CATALOG_PATH environment variable)."
            )
    if any(ch in source for ch in "*?["):
        files = sorted(_glob.glob(os.path.expanduser(source)))
        if not files:
            raise SourceError(
                f"no files match the pattern {source!r}; expected at least one netCDF file. Check "
                "the directory and the pattern."
            )
        return [Path(f) for f in files], source, {}
    path = _local_path(source)
    if not path.exists():
        parent = path.parent
        hint = (
            f"the folder {str(parent)!r} exists but has no {path.name!r}"
            if parent.exists()
            else f"the folder {str(parent)!r} does not exist either"
        )
        raise SourceError(
            f"path {str(path)!r} does not exist ({hint}). Expected a zarr store or netCDF file(s); "
            "check the path, or use a catalog name (atmos.catalog.list_entries())."
        )
    return path, str(path), {}


class NameResolver(NamedTuple):
    """How :func:`open_dataset` turns a dataset name into a location.

    ``atmos.io`` does not know the catalog (it sits above io); :mod:`atmos` installs
    :func:`atmos.catalog.lookup` / :func:`atmos.catalog.entry_names` here on import.
    """

    #: ``lookup(name)`` -> (location, open keyword arguments), or None for an unknown name.
    lookup: Callable[[str], tuple[str, Mapping[str, Any]] | None]
    #: ``names()`` -> the known names (for error messages).
    names: Callable[[], list[str]]


_NAME_RESOLVER: NameResolver | None = None


def set_name_resolver(resolver: NameResolver | None) -> NameResolver | None:
    """Install the resolver of dataset names (``None``: only paths and URLs); returns the previous one.

    Parameters
    ----------
    resolver
        A :class:`NameResolver`; :mod:`atmos` installs the catalog's
        (``NameResolver(atmos.catalog.lookup, atmos.catalog.entry_names)``).
    """
    global _NAME_RESOLVER
    if resolver is not None and not isinstance(resolver, NameResolver):
        raise TypeError(
            f"resolver is {resolver!r}; expected an atmos.io.open.NameResolver(lookup, names) or None."
        )
    previous, _NAME_RESOLVER = _NAME_RESOLVER, resolver
    return previous


def _looks_like_name(s: str) -> bool:
    return not any(ch in s for ch in "/\\*?[~") and Path(s).suffix.lower() not in (
        ".zarr",
        *_NETCDF_SUFFIXES,
        ".grib",
        ".grb",
        ".grib2",
        ".zip",
    )


def _local_path(p: str | os.PathLike) -> Path:
    return Path(os.path.expanduser(os.fspath(p)))


def _is_zarr(path: Path) -> bool:
    if path.suffix.lower() == ".zarr" or path.name.lower().endswith(".zarr.zip"):
        return True
    return path.is_dir() and any((path / m).exists() for m in _ZARR_MARKERS)


def _open_target(target: Any, label: str, so: dict[str, Any], kw: dict[str, Any]) -> xr.Dataset:
    if isinstance(target, str) and "://" in target:
        return _open_remote(target, so, kw)
    if isinstance(target, list):
        return _open_many(target, label, kw)
    path: Path = target
    if _is_zarr(path):
        from atmos.io.anemoi_layout import is_anemoi_store, read_anemoi

        if is_anemoi_store(path):  # anemoi-datasets layout: data(time, variable, ensemble, cell)
            return read_anemoi(path, chunks=kw.get("chunks"))
        kw.setdefault("engine", "zarr")
        with warnings.catch_warnings():
            # local stores are cheap to list: falling back from consolidated metadata is fine
            warnings.filterwarnings("ignore", message="Failed to open Zarr store with consolidated")
            return _call_open(xr.open_dataset, str(path), label, kw)
    if path.is_dir():
        files = sorted(f for f in path.iterdir() if f.suffix.lower() in _NETCDF_SUFFIXES)
        if not files:
            raise SourceError(
                f"directory {str(path)!r} is neither a zarr store (no {list(_ZARR_MARKERS)}) nor a "
                f"folder of netCDF files (no {list(_NETCDF_SUFFIXES)} files). Point to the store or "
                "the files themselves."
            )
        return _open_many(files, label, kw)
    return _call_open(xr.open_dataset, str(path), label, kw)


def _open_many(files: list[Path], label: str, kw: dict[str, Any]) -> xr.Dataset:
    if len(files) == 1:
        return _call_open(xr.open_dataset, str(files[0]), label, kw)
    mf = {
        "combine": "by_coords",
        "data_vars": "minimal",
        "coords": "minimal",
        "compat": "override",
        "join": "outer",
        "combine_attrs": "override",
        **kw,
    }
    return _call_open(xr.open_mfdataset, [str(f) for f in files], label, mf)


def _call_open(fn: Any, target: Any, label: str, kw: dict[str, Any]) -> xr.Dataset:
    try:
        return fn(target, **kw)
    except (OSError, ValueError, KeyError, RuntimeError, TypeError) as e:
        if isinstance(e, SourceError):
            raise
        raise SourceError(
            f"could not open {label!r} with xarray ({type(e).__name__}: {e}). Expected a readable "
            "zarr store or netCDF file; check that the file is complete, or pass engine= explicitly."
        ) from e


# -- remote ----------------------------------------------------------------------------
def _connect_timeout() -> float:
    raw = os.environ.get("ATMOS_CONNECT_TIMEOUT")
    if raw is None:
        return DEFAULT_CONNECT_TIMEOUT
    try:
        return float(raw)
    except ValueError as e:
        raise SourceError(
            f"ATMOS_CONNECT_TIMEOUT={raw!r} is not a number of seconds; set it to e.g. 10."
        ) from e


def _endpoint(url: str, so: Mapping[str, Any]) -> tuple[str, int]:
    parsed = urllib.parse.urlparse(url)
    scheme = parsed.scheme.lower()
    if scheme in ("http", "https"):
        return parsed.hostname or "", parsed.port or (443 if scheme == "https" else 80)
    endpoint = (
        so.get("endpoint_url") or (so.get("client_kwargs") or {}).get("endpoint_url") or so.get("endpoint")
    )
    if endpoint:
        ep = urllib.parse.urlparse(str(endpoint))
        return ep.hostname or "", ep.port or (80 if ep.scheme == "http" else 443)
    return _DEFAULT_HOSTS.get(scheme, parsed.hostname or ""), 443


def _probe(url: str, so: Mapping[str, Any], timeout: float) -> None:
    """Raise SourceError unless the URL's host accepts a TCP connection within ``timeout``."""
    host, port = _endpoint(url, so)
    if not host:
        return
    via = ""
    proxies = urllib.request.getproxies()
    scheme = "http" if urllib.parse.urlparse(url).scheme == "http" else "https"
    proxy = proxies.get(scheme) or proxies.get("all")
    if proxy and not urllib.request.proxy_bypass(host):
        p = urllib.parse.urlparse(proxy if "://" in proxy else f"http://{proxy}")
        host, port, via = p.hostname or host, p.port or 8080, f" (through the proxy {proxy})"
    result: dict[str, BaseException] = {}

    def connect() -> None:
        try:
            with socket.create_connection((host, port), timeout=timeout):
                pass
        except OSError as e:
            result["error"] = e

    th = threading.Thread(target=connect, daemon=True)
    th.start()
    th.join(timeout + 1.0)
    err: BaseException | None = result.get("error")
    if th.is_alive():
        err = TimeoutError(f"no answer within {timeout:g} s")
    if err is not None:
        raise SourceError(
            f"cannot reach {url!r}: connecting to {host}:{port}{via} failed ({type(err).__name__}: "
            f"{err}). Expected a reachable server; check the network connection and proxy settings, "
            "or use a local copy of the data (atmos.open_dataset('/path/to/copy.zarr')). Set "
            "ATMOS_CONNECT_TIMEOUT (seconds) to wait longer."
        ) from err


def _require_package(url: str) -> None:
    scheme = urllib.parse.urlparse(url).scheme.lower()
    pkg = _REMOTE_PACKAGES.get(scheme)
    if pkg is None:
        return
    try:
        importlib.import_module(pkg)
    except ImportError as e:
        raise SourceError(
            f"opening {url!r} needs the fsspec backend for '{scheme}://', which is not installed. "
            f"Install it with `pip install {pkg}` (or `pip install atmos[remote]`)."
        ) from e


def _open_remote(url: str, so: dict[str, Any], kw: dict[str, Any]) -> xr.Dataset:
    _probe(url, so, _connect_timeout())
    _require_package(url)
    path = urllib.parse.urlparse(url).path.lower().rstrip("/")
    if path.endswith(_NETCDF_SUFFIXES):
        try:
            importlib.import_module("h5netcdf")
        except ImportError as e:
            raise SourceError(
                f"opening the remote netCDF file {url!r} needs h5netcdf; `pip install h5netcdf`, or "
                "download the file and open the local copy."
            ) from e
        import fsspec

        try:
            fobj = fsspec.open(url, mode="rb", **so).open()
        except Exception as e:
            raise SourceError(f"could not open {url!r} ({type(e).__name__}: {e}); check the URL.") from e
        kw.setdefault("engine", "h5netcdf")
        return _call_open(xr.open_dataset, fobj, url, kw)
    kw.setdefault("engine", "zarr")
    if so:
        kw["storage_options"] = so
    try:
        return xr.open_dataset(url, **kw)
    except Exception as e:
        raise SourceError(
            f"could not open {url!r} as a zarr store ({type(e).__name__}: {e}). Expected a zarr "
            "store at that URL; check the URL and credentials (public Google buckets need "
            "storage_options={'token': 'anon'})."
        ) from e
