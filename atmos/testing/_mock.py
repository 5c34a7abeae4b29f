"""Synthetic WeatherBench2-layout cubes for tests, examples and benchmarks."""

from __future__ import annotations

from collections.abc import Sequence

import dask.array as da
import numpy as np
import pandas as pd
import xarray as xr

__all__ = ["VARIABLE_INFO", "mock_era5"]

# name: (units, standard_name, typical mean, typical anomaly amplitude, on levels)
VARIABLE_INFO: dict[str, tuple[str, str, float, float, bool]] = {
    "geopotential": ("m2 s-2", "geopotential", 5.0e4, 2.0e3, True),
    "temperature": ("K", "air_temperature", 260.0, 15.0, True),
    "u_component_of_wind": ("m s-1", "eastward_wind", 5.0, 10.0, True),
    "v_component_of_wind": ("m s-1", "northward_wind", 0.0, 8.0, True),
    "specific_humidity": ("kg kg-1", "specific_humidity", 3.0e-3, 2.0e-3, True),
    "2m_temperature": ("K", "air_temperature", 285.0, 20.0, False),
    "10m_u_component_of_wind": ("m s-1", "eastward_wind", 0.0, 6.0, False),
    "10m_v_component_of_wind": ("m s-1", "northward_wind", 0.0, 5.0, False),
    "mean_sea_level_pressure": ("Pa", "air_pressure_at_mean_sea_level", 1.011e5, 1.0e3, False),
    "surface_pressure": ("Pa", "surface_air_pressure", 9.8e4, 3.0e3, False),
    "total_column_water_vapour": ("kg m-2", "atmosphere_mass_content_of_water_vapor", 25.0, 15.0, False),
    "toa_incident_solar_radiation": ("W m-2", "toa_incoming_shortwave_flux", 340.0, 300.0, False),
    "total_precipitation_6hr": ("m", "precipitation_amount", 5.0e-4, 5.0e-4, False),
}
STATIC_INFO: dict[str, tuple[str, str]] = {
    "land_sea_mask": ("1", "land_binary_mask"),
    "geopotential_at_surface": ("m2 s-2", "surface_geopotential"),
}
_LEVEL_SCALE = {"geopotential": lambda p: 9.80665 * 7000.0 * np.log(1000.0 / np.asarray(p, float) + 0.05)}


def mock_era5(
    time: str | pd.DatetimeIndex = "2020-01-01",
    periods: int = 8,
    freq: str = "6h",
    *,
    levels: Sequence[int] = (500, 850),
    nlat: int = 32,
    nlon: int = 64,
    variables: Sequence[str] | None = None,
    statics: bool = True,
    time_chunk: int = 4,
    seed: int = 0,
    poles: bool = False,
    canonical: bool = False,
) -> xr.Dataset:
    """A lazy synthetic cube in exactly the WeatherBench2 ERA5 layout.

    Dims are ``(time, level, longitude, latitude)`` as in the WB2 zarr stores
    (latitude ascending, longitude 0..360), with CF ``units``/``standard_name``
    attributes. Fields are smooth planetary waves plus small noise, with
    realistic magnitudes, drifting eastward in time so that consecutive steps
    differ. Deterministic for a given ``seed``.

    Parameters
    ----------
    time, periods, freq
        First time stamp, number of steps and step (pandas frequency).
    levels
        Pressure levels in hPa for the 3-D variables.
    nlat, nlon
        Equiangular grid size (WB2 64x32 by default: no pole points).
    variables
        Names from :data:`VARIABLE_INFO` (default: all of them).
    statics
        Add ``land_sea_mask`` and ``geopotential_at_surface``.
    time_chunk
        Dask chunk size along time.
    canonical
        Return the atmos canonical dim order ``(time, level, latitude, longitude)``
        instead of the WB2 storage order.
    """
    times = time if isinstance(time, pd.DatetimeIndex) else pd.date_range(time, periods=periods, freq=freq)
    if poles:
        lat = np.linspace(-90.0, 90.0, nlat)
    else:
        lat = -90.0 + (180.0 / nlat) * (np.arange(nlat) + 0.5)
    lon = np.arange(nlon) * (360.0 / nlon)
    names = list(VARIABLE_INFO) if variables is None else list(variables)
    rng = np.random.default_rng(seed)
    hours = ((times - pd.Timestamp("2000-01-01")) / pd.Timedelta("1h")).to_numpy(float)
    lam = np.radians(lon)[:, None]  # [lon, 1]
    phi = np.radians(lat)[None, :]  # [1, lat]
    hours_da = da.from_array(hours, chunks=max(1, min(time_chunk, len(times))))
    chunks_t = hours_da.chunks[0]

    data_vars: dict[str, xr.DataArray] = {}
    for k, name in enumerate(names):
        if name not in VARIABLE_INFO:
            raise KeyError(f"mock_era5 has no variable {name!r}; choose from {sorted(VARIABLE_INFO)}")
        units, std_name, mean, amp, on_levels = VARIABLE_INFO[name]
        phase = rng.uniform(0, 2 * np.pi, size=3)
        wn = 1 + (k % 3)
        noise = rng.standard_normal((nlon, nlat)) * 0.02

        def block(t_hours: np.ndarray, scale: float, offset: float, phase=phase, wn=wn, noise=noise, amp=amp):
            w = 2 * np.pi * t_hours[:, None, None] / (24.0 * 5.0)  # 5-day eastward drift
            f = (
                np.cos(phi) ** 2 * np.cos(wn * lam - w + phase[0])[..., :] * 0.6
                + np.sin(phi) * np.cos(phase[1]) * 0.8
                + np.cos(2 * phi) * np.sin(lam + phase[2]) * 0.2
                + noise
            )
            return (offset + scale * amp * f).astype(np.float32)

        if on_levels:
            lev_means = (
                _LEVEL_SCALE[name](levels)
                if name in _LEVEL_SCALE
                else mean * (1 + 0.1 * np.log(np.asarray(levels, float) / 500.0))
            )
            cols = [
                hours_da.map_blocks(
                    block, scale=1.0 + 0.2 * j, offset=float(m), new_axis=[1, 2], chunks=(chunks_t, (nlon,), (nlat,)),
                    dtype=np.float32,
                )
                for j, m in enumerate(lev_means)
            ]
            arr = da.stack(cols, axis=1)
            data_vars[name] = xr.DataArray(arr, dims=("time", "level", "longitude", "latitude"))
        else:
            arr = hours_da.map_blocks(
                block, scale=1.0, offset=float(mean), new_axis=[1, 2], chunks=(chunks_t, (nlon,), (nlat,)),
                dtype=np.float32,
            )
            data_vars[name] = xr.DataArray(arr, dims=("time", "longitude", "latitude"))
        data_vars[name].attrs.update(units=units, standard_name=std_name)

    if statics:
        lsm = (np.cos(3 * lam) * np.cos(2 * phi) + 0.3 * np.sin(phi) > 0.2).astype(np.float32)
        orog = (9.80665 * 1500.0 * lsm * (0.5 + 0.5 * np.cos(lam) ** 2)).astype(np.float32)
        for name, vals in (("land_sea_mask", lsm), ("geopotential_at_surface", orog)):
            units, std_name = STATIC_INFO[name]
            data_vars[name] = xr.DataArray(
                da.from_array(vals, chunks=vals.shape), dims=("longitude", "latitude"),
                attrs={"units": units, "standard_name": std_name},
            )

    coords = {
        "time": ("time", times.to_numpy(), {"standard_name": "time", "axis": "T"}),
        "latitude": ("latitude", lat, {"units": "degrees_north", "standard_name": "latitude", "axis": "Y"}),
        "longitude": ("longitude", lon, {"units": "degrees_east", "standard_name": "longitude", "axis": "X"}),
    }
    if any(VARIABLE_INFO[n][4] for n in names):
        coords["level"] = ("level", np.asarray(levels, dtype=np.int64), {"units": "hPa", "long_name": "pressure level"})
    ds = xr.Dataset(data_vars, coords=coords, attrs={"title": "atmos synthetic mock cube (not real data)"})
    if canonical:
        ds = ds.transpose("time", ..., "latitude", "longitude")
    return ds
