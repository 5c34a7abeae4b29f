"""Forecasts in the WeatherBench2 layout: opening, checking, and aligning the truth to them.

Forecast layout (WeatherBench2): a Dataset with dims ``time`` (initialisation time),
``prediction_timedelta`` (lead, usually starting at 0), optional ``member``, then
``[level]`` and the spatial dims (``latitude``, ``longitude`` or ``cell``), variables
under canonical names. The truth is a canonical cube (``atmos.open_dataset(...)``); it is
aligned to each forecast by valid time ``time + prediction_timedelta`` (:func:`align_truth`).
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import xarray as xr

from atmos.errors import DataError, GridError

__all__ = ["IncompleteForecastWarning", "align_truth", "as_forecast", "check_same_grid", "open_forecast"]


def open_forecast(path: str | Path) -> xr.Dataset:
    """Open a forecast in the WeatherBench2 layout (zarr store or netCDF) lazily and check it.

    ``init_time``/``lead_time``/``step`` are accepted as aliases of ``time`` /
    ``prediction_timedelta``; latitude is made ascending.
    """
    p = str(path)
    if "://" not in p and not Path(p).exists():
        raise DataError(f"forecast {p!r} does not exist; expected a zarr store or netCDF file in the WeatherBench2 layout.")
    try:
        if p.endswith((".nc", ".nc4", ".netcdf")):
            ds = xr.open_dataset(p, chunks={}, decode_timedelta=True)
        else:
            ds = xr.open_zarr(p, decode_timedelta=True)
    except (OSError, ValueError) as err:
        raise DataError(f"cannot read forecast {p!r} ({err}); expected a zarr store or a netCDF file.") from err
    status = ds.attrs.get("atmos_status")
    if status is not None and status != "complete":
        warnings.warn(
            f"the forecast {p!r} is not complete (atmos_status {status!r}: {ds.attrs.get('atmos_completed_steps')} "
            f"of {ds.attrs.get('atmos_total_steps')} leads written); the leads not written are NaN and score as NaN. "
            "Complete it with `atmos rollout ... --resume`.",
            IncompleteForecastWarning,
            stacklevel=2,
        )
    ds.encoding.setdefault("source", p)
    return as_forecast(ds, p)


class IncompleteForecastWarning(UserWarning):
    """A forecast store whose rollout did not finish (interrupted or failed) is being read."""


def as_forecast(ds: xr.Dataset, what: str = "forecast") -> xr.Dataset:
    """Check (and lightly normalise) a Dataset in the WeatherBench2 forecast layout.

    Aliases are renamed to the atmos names: ``init_time`` -> ``time``, ``lead_time`` /
    ``step`` -> ``prediction_timedelta``, ``lat`` / ``lon`` -> ``latitude`` /
    ``longitude``, and WeatherBench2's ensemble dimension ``realization`` -> ``member``
    (the name atmos writes). A forecast with both ``member`` and ``realization`` is refused.
    """
    if not isinstance(ds, xr.Dataset):
        raise DataError(f"{what} must be an xarray Dataset in the forecast layout, got {type(ds).__name__}.")
    if "member" in ds.dims and "realization" in ds.dims:
        raise DataError(
            f"{what} has both ensemble dimensions 'member' and 'realization' (dims {sorted(map(str, ds.dims))}); "
            "keep one (atmos writes 'member'; WeatherBench2 reads 'realization')."
        )
    ren = {a: b for a, b in (("init_time", "time"), ("lead_time", "prediction_timedelta"), ("step", "prediction_timedelta"),
                              ("lat", "latitude"), ("lon", "longitude"), ("realization", "member"))
           if a in ds.dims and b not in ds.dims}
    if ren:
        ds = ds.rename(ren)
    for d in ("time", "prediction_timedelta"):
        if d not in ds.dims:
            raise DataError(
                f"{what} has no {d!r} dimension (dims {sorted(map(str, ds.dims))}); expected the WeatherBench2 "
                "forecast layout: time (init) x prediction_timedelta (lead) x [member] x [level] x latitude x "
                "longitude, as written by atmos.rollout."
            )
    if ds["prediction_timedelta"].dtype.kind != "m":
        raise DataError(
            f"{what}: prediction_timedelta has dtype {ds['prediction_timedelta'].dtype}; expected timedelta64 "
            "(open the file with decode_timedelta=True)."
        )
    if ds["time"].dtype.kind != "M":
        raise DataError(f"{what}: time has dtype {ds['time'].dtype}; expected datetime64 init times.")
    if "latitude" in ds.dims and ds.sizes["latitude"] > 1 and float(ds["latitude"][0]) > float(ds["latitude"][-1]):
        ds = ds.isel(latitude=slice(None, None, -1))
    return ds


def check_same_grid(forecast: xr.Dataset, truth: xr.Dataset, what: str) -> xr.Dataset:
    """Raise unless both are on the same grid; returns the forecast with the truth's coordinate values."""
    for d in ("cell", "latitude", "longitude"):
        if (d in forecast.dims) != (d in truth.dims):
            raise GridError(
                f"{what} and the truth are on different grids ({what} dims {sorted(map(str, forecast.dims))}, truth "
                f"{sorted(map(str, truth.dims))}); regrid the forecast with atmos.io.regrid.regrid(fc, grid_of(truth))."
            )
        if d in ("latitude", "longitude") and d in forecast.dims:
            a, b = forecast[d].values, truth[d].values
            if a.shape != b.shape or not np.allclose(a, b, rtol=0, atol=1e-6):
                raise GridError(
                    f"{what}'s {d} ({a.size} values {a[:1]}..{a[-1:]}) differs from the truth's ({b.size} values "
                    f"{b[:1]}..{b[-1:]}); regrid the forecast with atmos.io.regrid.regrid(fc, atmos.io.grid_of(truth))."
                )
            forecast = forecast.assign_coords({d: truth[d]})
    if "cell" in forecast.dims and forecast.sizes["cell"] != truth.sizes["cell"]:
        raise GridError(f"{what} has {forecast.sizes['cell']} cells, the truth {truth.sizes['cell']}; regrid one of them.")
    return forecast


def align_truth(forecast: xr.Dataset | xr.DataArray, truth: xr.Dataset | xr.DataArray) -> xr.Dataset | xr.DataArray:
    """The truth at the forecast's valid times, with the forecast's ``(time, prediction_timedelta)`` dims.

    ``out[time=t0, prediction_timedelta=dt] = truth[time=t0 + dt]``; a ``valid_time``
    coordinate is attached. Raises DataError if a valid time is not in the truth.
    """
    vt = forecast["time"] + forecast["prediction_timedelta"]
    have = truth.indexes["time"]
    missing = ~np.isin(vt.values, np.asarray(have.values, dtype=vt.dtype))
    if missing.any():
        bad = np.unique(vt.values[missing])
        raise DataError(
            f"{bad.size} valid time(s) of the forecast are not in the truth (e.g. {bad[:3]}); the truth covers "
            f"{have[0]} .. {have[-1]}. Score only init times whose leads stay inside the truth period."
        )
    out = truth.rename(time="valid_time").sel(valid_time=vt)
    return out.transpose("time", "prediction_timedelta", ...)
