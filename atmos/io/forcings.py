"""Derived forcings: time-of-day and day-of-year encodings computed from time stamps.

Emulators are usually given the time of day and the season as inputs. atmos
computes them from the time coordinate instead of storing them:

``cos_time_of_day`` / ``sin_time_of_day``
    Phase of the *local mean solar time*, ``2 pi (hour_utc + longitude / 15) / 24``.
    Using local time (rather than UTC) makes the encoding a field that varies with
    longitude, so a model sees where it is noon at every grid point: with UTC time
    the value would be the same everywhere and the model would have to learn the
    longitude dependence itself. The equation of time (a +-16 min correction to
    the apparent solar time) is ignored.
``cos_day_of_year`` / ``sin_day_of_year``
    Phase of the year, ``2 pi * frac((t - 2000-01-01T00) / 365.24219 days)``, the
    mean tropical year measured continuously from 2000-01-01 (no jump at the new
    year, no leap-day special case). Spatially uniform.

All four lie in [-1, 1] and are *not* normalized by :func:`atmos.io.stats.normalize`
or by :class:`atmos.io.windows.WindowDataset`. Time stamps must be numpy
``datetime64`` values (cftime calendars are not supported here).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import xarray as xr

from atmos.errors import DataError

__all__ = ["DERIVED_FORCINGS", "derived_forcing", "derived_forcings", "is_derived_forcing"]

#: Names of the forcings atmos can compute from time stamps (and longitude).
DERIVED_FORCINGS: tuple[str, ...] = (
    "cos_time_of_day",
    "sin_time_of_day",
    "cos_day_of_year",
    "sin_day_of_year",
)
_NS_PER_HOUR = 3_600_000_000_000
_NS_PER_DAY = 24 * _NS_PER_HOUR
_TROPICAL_YEAR_DAYS = 365.24219
_EPOCH_2000 = np.datetime64("2000-01-01T00:00:00", "ns").astype(np.int64)


def is_derived_forcing(name: str) -> bool:
    """Whether ``name`` is one of :data:`DERIVED_FORCINGS`."""
    return name in DERIVED_FORCINGS


def _as_ns(times: np.ndarray | Sequence) -> np.ndarray:
    t = np.asarray(times)
    if np.issubdtype(t.dtype, np.integer):
        return t.astype(np.int64)  # already ns since the epoch
    if not np.issubdtype(t.dtype, np.datetime64):
        raise DataError(
            f"derived forcings need numpy datetime64 time stamps, got dtype {t.dtype} "
            f"(first value {t.ravel()[:1]!r}). Decode times with xarray (use_cftime=False) or convert "
            "cftime dates with ds.convert_calendar('standard')."
        )
    return t.astype("datetime64[ns]").astype(np.int64)


def _check_name(name: str) -> None:
    if name not in DERIVED_FORCINGS:
        raise DataError(f"unknown derived forcing {name!r}; choose from {list(DERIVED_FORCINGS)}.")


def derived_forcing(name: str, times: np.ndarray | Sequence, lon: np.ndarray) -> np.ndarray:
    """One derived forcing on a grid, as numpy.

    Parameters
    ----------
    name : str
        One of :data:`DERIVED_FORCINGS`.
    times : array of datetime64 (or int64 nanoseconds since 1970), shape [T]
    lon : numpy.ndarray, shape [*grid]
        Longitude in degrees of every grid point (e.g. ``LatLonGrid.centers()[1]``
        of shape [nlat, nlon], or ``HealpixGrid.lon`` of shape [npix]).

    Returns
    -------
    numpy.ndarray of float32, shape [T, *grid]
    """
    _check_name(name)
    t = _as_ns(times)
    lon = np.asarray(lon, dtype=np.float64)
    shape = (t.size, *lon.shape)
    if name.endswith("time_of_day"):
        hours = (t % _NS_PER_DAY).astype(np.float64) / _NS_PER_HOUR  # UTC hour of day
        phase = (2.0 * np.pi / 24.0) * (hours.reshape(-1, *([1] * lon.ndim)) + lon[None] / 15.0)
    else:
        days = (t - _EPOCH_2000).astype(np.float64) / _NS_PER_DAY
        frac = np.mod(days / _TROPICAL_YEAR_DAYS, 1.0)
        phase = np.broadcast_to((2.0 * np.pi * frac).reshape(-1, *([1] * lon.ndim)), shape)
    out = np.cos(phase) if name.startswith("cos") else np.sin(phase)
    return np.ascontiguousarray(np.broadcast_to(out, shape), dtype=np.float32)


def derived_forcings(ds: xr.Dataset | xr.DataArray, names: Sequence[str] = DERIVED_FORCINGS) -> xr.Dataset:
    """Derived forcings for the time stamps and grid of a canonical dataset.

    The result stays small: time-of-day fields have dims ``(time, longitude)``
    (or ``(time, cell)`` on HEALPix) and day-of-year fields ``(time,)``; xarray
    broadcasts them against the grid when combined with the data.

    Parameters
    ----------
    ds : xarray.Dataset or DataArray
        Needs a ``time`` coordinate and ``longitude`` (lat-lon) or a HEALPix ``cell`` grid.
    names : sequence of str
        Which of :data:`DERIVED_FORCINGS` to compute.

    Returns
    -------
    xarray.Dataset of float32 variables named like ``names`` (units ``1``).
    """
    if "time" not in ds.coords:
        raise DataError("derived forcings need a 'time' coordinate; the dataset has none.")
    times = ds["time"].values
    out = {}
    for name in names:
        _check_name(name)
        if name.endswith("day_of_year"):
            vals = derived_forcing(name, times, np.zeros(()))
            out[name] = xr.DataArray(vals, dims=("time",), coords={"time": ds["time"]})
            continue
        if "cell" in ds.dims:
            from atmos.io.coords import grid_of

            lon = grid_of(ds).lon
            dims = ("time", "cell")
            coords = {"time": ds["time"]}
        elif "longitude" in ds.coords:
            lon = np.asarray(ds["longitude"].values, dtype=np.float64)
            dims = ("time", "longitude")
            coords = {"time": ds["time"], "longitude": ds["longitude"]}
        else:
            raise DataError(
                f"{name} needs a 'longitude' coordinate or a HEALPix 'cell' dimension; found coordinates "
                f"{sorted(map(str, ds.coords))}."
            )
        out[name] = xr.DataArray(derived_forcing(name, times, lon), dims=dims, coords=coords)
    for name, arr in out.items():
        arr.attrs.update(units="1", long_name=name.replace("_", " "), atmos_derived_forcing=1)
    return xr.Dataset(out)
