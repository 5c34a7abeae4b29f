"""Zonal power spectra (WeatherBench2 ``ZonalEnergySpectrum``), per latitude and band-averaged.

Along a latitude circle of circumference ``C = 2 pi R cos(lat)`` (``R`` =
:data:`EARTH_RADIUS_M` = 6,367,500 m, WeatherBench2's ``schema.EARTH_RADIUS_M``, the mean
of the equatorial and polar radii) sampled at ``L`` equally spaced longitudes
``f[0..L-1]``, with the forward-normalised DFT
``F[k] = (1/L) sum_l f[l] exp(-2 pi i k l / L)``, the one-sided spectrum is, exactly as
WeatherBench2's ``ZonalEnergySpectrum.compute``::

    S[0] = C |F[0]|^2,   S[k] = 2 C |F[k]|^2  (0 < k <= L // 2)

(``nyquist="weatherbench2"``, the default). For odd ``L`` Parseval's relation holds
exactly on the samples::

    sum_k S[k] = (C / L) sum_l f[l]^2      (the discrete integral of f^2 around the circle).

For even ``L`` WeatherBench2 also doubles the Nyquist wavenumber ``k = L/2``, whose DFT
coefficient is its own conjugate pair, so the sum exceeds the integral by
``C |F[L/2]|^2``; ``nyquist="parseval"`` leaves it single, which keeps Parseval exact
(the two differ only at ``k = L/2``). A zonal wave ``a cos(k0 lambda + phi)`` with
``0 < k0 < L/2`` has all its power ``C a^2 / 2`` at ``k0``. Units: ``m * units(f)^2``.

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

from atmos.errors import ConfigError, GridError
from atmos.grids.latlon import LatLonGrid
from atmos.metrics.deterministic import LatitudeBand, Metric, Region, XrObj, get_region

__all__ = ["EARTH_RADIUS_M", "MIDLATITUDES", "NYQUIST", "ZonalSpectrum", "zonal_power_spectrum"]

#: Earth radius in metres: WeatherBench2's ``schema.EARTH_RADIUS_M = 1000 * (6357 + 6378) / 2``,
#: the mean of the polar and equatorial radii (not the mean radius 6,371,000 m).
EARTH_RADIUS_M = 6_367_500.0
#: Values of ``nyquist``: how the Nyquist wavenumber of an even number of longitudes is counted.
NYQUIST = ("weatherbench2", "parseval")
#: Default band of :class:`ZonalSpectrum`: both hemispheres' mid-latitudes.
MIDLATITUDES = LatitudeBand("midlatitudes", 30.0, 60.0, absolute=True)


def _power(x: np.ndarray, double_nyquist: bool = True) -> np.ndarray:
    """One-sided power ``|F_k|^2`` along the last axis, doubled for k > 0 (and the even Nyquist if asked)."""
    n = x.shape[-1]
    fk = np.fft.rfft(np.asarray(x, dtype=np.float64), axis=-1, norm="forward")  # float64 even for float32 data
    p = fk.real**2 + fk.imag**2
    factor = np.full(p.shape[-1], 2.0)
    factor[0] = 1.0
    if n % 2 == 0 and not double_nyquist:
        factor[-1] = 1.0
    return p * factor


def zonal_power_spectrum(ds: XrObj, nyquist: str = "weatherbench2") -> XrObj:
    """Per-latitude zonal power spectrum ``S[k]`` (module docstring) of every field.

    Parameters
    ----------
    ds : Dataset or DataArray with a ``longitude`` dim (equally spaced, full circle) and ``latitude``
    nyquist : {"weatherbench2", "parseval"}
        ``weatherbench2`` (default): the Nyquist wavenumber of an even number of
        longitudes is doubled like every ``k > 0``, as WeatherBench2's
        ``ZonalEnergySpectrum``; ``parseval``: it is counted once, so that the spectrum
        sums exactly to the discrete integral of ``f**2`` around the circle.

    Returns
    -------
    Same type, with ``longitude`` replaced by ``zonal_wavenumber = 0..L//2``; coords
    ``wavelength`` (m, per latitude and wavenumber; inf at k=0) are attached.

    Raises
    ------
    GridError
        HEALPix cells, or longitudes that are not equally spaced around the full circle.
    ConfigError
        ``nyquist`` not one of :data:`NYQUIST`.
    """
    if nyquist not in NYQUIST:
        raise ConfigError(
            f"nyquist={nyquist!r}: expected one of {list(NYQUIST)} ('weatherbench2' doubles the even Nyquist "
            "wavenumber as WB2 does, 'parseval' keeps the sum equal to the integral of f**2)."
        )
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
        kwargs={"double_nyquist": nyquist == "weatherbench2"},
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
    nyquist : {"weatherbench2", "parseval"}
        Counting of the even Nyquist wavenumber (:func:`zonal_power_spectrum`).
    """

    name: ClassVar[str] = "zonal_spectrum"
    band: Region | None = dataclasses.field(default_factory=lambda: MIDLATITUDES)
    nyquist: str = "weatherbench2"

    def compute_chunk(self, forecast, truth=None, region: str | Region | None = None):
        reg = get_region(region) if region is not None else self.band
        spec = zonal_power_spectrum(forecast, nyquist=self.nyquist)
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
