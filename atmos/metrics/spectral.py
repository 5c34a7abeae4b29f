"""Zonal power spectra (WeatherBench2 ``ZonalEnergySpectrum``), per latitude and band-averaged.

Along a latitude circle of circumference ``C = 2 pi R cos(lat)`` sampled at ``L``
equally spaced longitudes ``f[0..L-1]``, with the forward-normalised DFT
``F[k] = (1/L) sum_l f[l] exp(-2 pi i k l / L)``, the one-sided spectrum is::

    S[0] = C |F[0]|^2,   S[k] = 2 C |F[k]|^2  (0 < k < L/2),   S[L/2] = C |F[L/2]|^2  (L even)

so that Parseval's relation holds exactly on the samples::

    sum_k S[k] = (C / L) sum_l f[l]^2      (the discrete integral of f^2 around the circle).

A zonal wave ``a cos(k0 lambda + phi)`` thus has all its power ``C a^2 / 2`` at ``k0``.
Units: ``m * units(f)^2``. This is WeatherBench2's normalisation, except that the
Nyquist wavenumber of an even ``L`` is not doubled (its DFT coefficient is its own
conjugate pair), which keeps Parseval exact.

Spectra of forecasts are usually compared with the truth's (lost power at small scales
= blurring). :class:`ZonalSpectrum` averages the per-latitude spectra over a latitude
band (by default the mid-latitudes ``30 <= |lat| <= 60``) weighted by the rows' cell areas
(:meth:`atmos.grids.LatLonGrid.lat_weights`, the weights of every spatial mean of atmos;
``cos(lat)`` only in the ClimateBench metrics, which define it).
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import numpy as np
import xarray as xr

from atmos.errors import GridError
from atmos.grids.latlon import LatLonGrid
from atmos.metrics.deterministic import LatitudeBand, Metric, Region, XrObj, get_region

__all__ = ["EARTH_RADIUS_M", "MIDLATITUDES", "ZonalSpectrum", "zonal_power_spectrum"]

#: Earth radius in metres (WeatherBench2 ``schema.EARTH_RADIUS_M``).
EARTH_RADIUS_M = 6_371_000.0
#: Default band of :class:`ZonalSpectrum`: both hemispheres' mid-latitudes.
MIDLATITUDES = LatitudeBand("midlatitudes", 30.0, 60.0, absolute=True)


def _power(x: np.ndarray) -> np.ndarray:
    """One-sided power ``|F_k|^2`` (doubled except for k=0 and the even Nyquist) along the last axis."""
    n = x.shape[-1]
    fk = np.fft.rfft(x, axis=-1, norm="forward")
    p = fk.real**2 + fk.imag**2
    factor = np.full(p.shape[-1], 2.0)
    factor[0] = 1.0
    if n % 2 == 0:
        factor[-1] = 1.0
    return p * factor


def zonal_power_spectrum(ds: XrObj) -> XrObj:
    """Per-latitude zonal power spectrum ``S[k]`` (module docstring) of every field.

    Parameters
    ----------
    ds : Dataset or DataArray with a ``longitude`` dim (equally spaced, full circle) and ``latitude``

    Returns
    -------
    Same type, with ``longitude`` replaced by ``zonal_wavenumber = 0..L//2``; coords
    ``wavelength`` (m, per latitude and wavenumber; inf at k=0) are attached.
    """
    if "cell" in ds.dims:
        raise GridError(
            "zonal spectra need a regular latitude-longitude grid, not HEALPix cells; regrid first with "
            "atmos.io.regrid.to_latlon(ds, (nlat, nlon))."
        )
    if "longitude" not in ds.dims or "latitude" not in ds.coords:
        raise GridError(f"zonal spectra need 'latitude' and 'longitude' dims, got {sorted(map(str, ds.dims))}.")
    lon = np.asarray(ds["longitude"].values, dtype=np.float64)
    d = np.diff(lon)
    n = lon.size
    if n < 2 or not np.allclose(d, d[0], atol=1e-6) or not np.isclose(d[0] * n, 360.0, atol=1e-4):
        raise GridError(
            f"longitude must be {n} equally spaced values around the full circle (spacing 360/{n}); "
            "regrid to a regular global grid first."
        )
    circ = 2 * np.pi * EARTH_RADIUS_M * np.cos(np.deg2rad(ds["latitude"].astype(np.float64)))
    spec = xr.apply_ufunc(
        _power,
        ds,
        input_core_dims=[["longitude"]],
        output_core_dims=[["zonal_wavenumber"]],
        exclude_dims={"longitude"},
        dask="parallelized",
        output_dtypes=[np.float64],
        dask_gufunc_kwargs={"output_sizes": {"zonal_wavenumber": n // 2 + 1}},
    )
    k = np.arange(n // 2 + 1)
    spec = spec.assign_coords(zonal_wavenumber=k) * circ
    with np.errstate(divide="ignore"):
        wavelength = circ / xr.DataArray(k.astype(np.float64), dims="zonal_wavenumber", coords={"zonal_wavenumber": k})
    spec = spec.assign_coords(wavelength=wavelength.assign_attrs(units="m"))
    spec["zonal_wavenumber"].attrs.update(long_name="zonal wavenumber (cycles per latitude circle)")
    return spec


def _row_area_weights(lat: xr.DataArray, lon: xr.DataArray) -> xr.DataArray:
    """Cell areas of the latitude rows (:meth:`atmos.grids.LatLonGrid.lat_weights`) on ``lat``'s dim.

    The same cell-area weights as every other spatial mean of atmos (not ``cos(lat)``);
    ``lat`` may be in any order.
    """
    values = np.asarray(lat.values, dtype=np.float64)
    order = np.argsort(values)
    rows = LatLonGrid.from_coords(values[order], np.asarray(lon.values, dtype=np.float64)).lat_weights()
    w = np.empty_like(rows)
    w[order] = rows
    return xr.DataArray(w, dims=lat.dims, coords=lat.coords, name="area_weight")


@dataclasses.dataclass
class ZonalSpectrum(Metric):
    """Zonal power spectrum of the *forecast*, averaged over a latitude band and over init times.

    ``compute_chunk(forecast, truth=None)`` returns the per-time band average of
    :func:`zonal_power_spectrum` (area-weighted over the band's latitudes) with a
    ``zonal_wavenumber`` dimension; ``compute`` averages over ``time``. ``truth`` is
    not used (compute the truth's spectrum by passing it as the forecast). An ensemble
    is scored member by member and the spectra averaged (the ensemble mean would be
    smoother than any member).

    Attributes
    ----------
    band : Region
        Latitude band (default :data:`MIDLATITUDES`, ``30 <= |lat| <= 60``); a
        ``region`` passed to the compute methods replaces it.
    """

    name: ClassVar[str] = "zonal_spectrum"
    band: Region | None = dataclasses.field(default_factory=lambda: MIDLATITUDES)

    def compute_chunk(self, forecast, truth=None, region: str | Region | None = None):
        reg = get_region(region) if region is not None else self.band
        spec = zonal_power_spectrum(forecast)
        lat = forecast["latitude"]
        w = _row_area_weights(lat, forecast["longitude"])
        if reg is not None:
            m = reg.mask(lat, forecast["longitude"])
            if m is not None:
                w = w * m
        if not float(w.sum()) > 0:
            raise GridError(f"the band {getattr(reg, 'name', reg)!r} contains no latitude of this grid.")
        spec = spec.weighted(w).mean("latitude")
        if self.ensemble_dim in spec.dims:
            spec = spec.mean(self.ensemble_dim)
        return spec.drop_vars([c for c in ("wavelength",) if c in spec.coords])

    def compute(self, forecast, truth=None, region: str | Region | None = None, skipna: bool = False):
        """Time-mean band-averaged spectrum of ``forecast`` (``truth`` is ignored)."""
        return super().compute(forecast, truth, region=region, skipna=skipna)
