"""Fake raw ERA5 / MERRA-2 files from a canonical (or WB2-layout) cube, for round-trip tests.

The renaming uses the inverse of the tables in ``atmos/io/names.yaml`` (the first
source name listed for each canonical name), so a round trip
``canonicalize(to_merra2(ds))`` checks the mapping data and the layout code together.
"""

from __future__ import annotations

import re

import numpy as np
import xarray as xr

from atmos.io.names import canonical_variables, inverse_style

__all__ = ["to_era5_invariants", "to_era5_short_names", "to_merra2"]


def _is_static(name: str) -> bool:
    return bool(canonical_variables().get(name, {}).get("static", False))


def _rename_inverse(ds: xr.Dataset, style: str, units_style) -> xr.Dataset:
    inv = inverse_style(style)
    out = {}
    for name, da in ds.data_vars.items():
        entry = inv.get(str(name))
        if entry is None:
            out[name] = da
            continue
        new = da
        attrs = {k: v for k, v in da.attrs.items() if k != "atmos_original_name"}
        if entry.scale != 1.0 and entry.units is not None:
            new = da / entry.scale
            attrs["units"] = entry.units
        if "units" in attrs:
            attrs["units"] = units_style(str(attrs["units"]))
        new = new.copy(deep=False)
        new.attrs = attrs
        out[entry.source] = new
    return xr.Dataset(out, coords=ds.coords, attrs=ds.attrs)


def _era5_units(u: str) -> str:
    """ERA5 netCDF spelling: ``m2 s-2`` -> ``m**2 s**-2``; ``1`` -> ``(0 - 1)``."""
    if u == "1":
        return "(0 - 1)"
    return re.sub(r"([A-Za-z])(-?\d+)", r"\1**\2", u)


def _merra2_units(u: str) -> str:
    """MERRA-2 spelling: ``m2 s-2`` -> ``m+2 s-2``."""
    return re.sub(r"([A-Za-z])(\d+)", r"\1+\2", u)


def to_era5_short_names(ds: xr.Dataset) -> xr.Dataset:
    """What a raw ERA5 netCDF download (Copernicus CDS) of ``ds``'s time-varying fields looks like.

    ERA5 short names (``z``, ``t``, ``u``, ``t2m``, ``msl``, ...; variables without an ERA5
    short name keep their names), units spelled ``m**2 s**-2``, coordinates
    ``valid_time`` and ``pressure_level`` (float hPa), latitude DESCENDING (90 .. -90),
    dims ``(valid_time, pressure_level, latitude, longitude)``. Static fields are left
    out: ERA5 delivers them in a separate file, see :func:`to_era5_invariants` (both
    would be called ``z``).
    """
    fields = ds[[v for v in ds.data_vars if not _is_static(str(v))]]
    out = _rename_inverse(fields, "era5", _era5_units)
    for name in ("u10", "v10"):
        if name in out:
            out[name].attrs["standard_name"] = "unknown"  # as cfgrib/CDS write it
    out = out.isel(latitude=slice(None, None, -1))
    if "level" in out.coords:
        out = out.assign_coords(level=out["level"].astype(np.float64))
        out["level"].attrs = {"units": "hPa", "long_name": "pressure", "standard_name": "air_pressure"}
    out = out.rename(
        {k: v for k, v in {"time": "valid_time", "level": "pressure_level"}.items() if k in out.coords}
    )
    order = [d for d in ("valid_time", "pressure_level", "latitude", "longitude") if d in out.dims]
    return out.transpose(*order, ...)


def to_era5_invariants(ds: xr.Dataset) -> xr.Dataset:
    """ERA5's invariant file for ``ds``'s static fields: ``z`` (surface geopotential) and ``lsm``.

    Like the CDS download: a ``valid_time`` dimension of length 1, latitude descending.
    """
    statics = ds[[v for v in ds.data_vars if _is_static(str(v))]]
    out = _rename_inverse(statics, "era5", _era5_units)
    t0 = ds["time"].values[:1] if "time" in ds.coords else np.array(["1940-01-01"], dtype="datetime64[ns]")
    out = out.drop_vars([c for c in ("time", "level") if c in out.coords])
    out = out.expand_dims(valid_time=t0)
    out = out.isel(latitude=slice(None, None, -1))
    return out.transpose("valid_time", "latitude", "longitude")


def to_merra2(ds: xr.Dataset) -> xr.Dataset:
    """What MERRA-2 netCDF files with ``ds``'s content look like.

    Upper-case MERRA-2 names (``T``, ``U``, ``H``, ``T2M``, ``SLP``, ``PHIS``, ``FRLAND``,
    ...; variables without a MERRA-2 name keep theirs), geopotential as geopotential
    HEIGHT ``H`` in metres, units spelled ``m+2 s-2``, dims ``(time, lev, lat, lon)``
    with ``lev`` descending (1000 hPa first, float) and longitude in [-180, 180).
    """
    out = _rename_inverse(ds, "merra2", _merra2_units)
    lon = out["longitude"].values
    new_lon = np.where(lon >= 180.0, lon - 360.0, lon)
    out = out.assign_coords(
        longitude=("longitude", new_lon, {"units": "degrees_east", "long_name": "longitude"})
    )
    out = out.sortby("longitude")
    out = out.assign_coords(
        latitude=("latitude", out["latitude"].values, {"units": "degrees_north", "long_name": "latitude"})
    )
    if "level" in out.coords:
        out = out.assign_coords(level=out["level"].astype(np.float64))
        out["level"].attrs = {"units": "hPa", "long_name": "vertical level", "positive": "down"}
        out = out.isel(level=slice(None, None, -1))
    out = out.rename(
        {k: v for k, v in {"level": "lev", "latitude": "lat", "longitude": "lon"}.items() if k in out.coords}
    )
    order = [d for d in ("time", "lev", "lat", "lon") if d in out.dims]
    return out.transpose(*order, ...)
