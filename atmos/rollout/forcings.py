"""Forcings for future valid times, computed without reading the future from the data.

A rollout needs the model's forcing channels at every valid time up to the last lead.
They are produced here:

``toa_incident_solar_radiation``
    From astronomy (:func:`toa_incident_solar_radiation`): solar declination and
    Earth-Sun distance from Spencer's (1971) Fourier series in the phase of a
    365-day year counted from 1 January 00 UTC, then either the instantaneous flux
    ``S0 (d0/d)^2 max(0, cos zenith)`` (hour angle from UTC and longitude; the
    equation of time is ignored) or its daily mean
    ``S0/pi (d0/d)^2 (h0 sin(phi) sin(delta) + cos(phi) cos(delta) sin(h0))``
    (``h0`` the sunset hour angle). Which of the two, and a scale factor for the
    data's units and solar constant, are fitted by least squares to the data's own
    TOA field at the initial time(s) (:class:`ToaCalibration`), so the computed
    forcing matches the data it replaces. SPEEDY-world stores SPEEDY's daily-mean,
    zonally uniform insolation; with ``S0 = 1368 W m-2`` the daily-mean formula
    reproduces it to 0.16 W m-2 RMSE over its validation month (values up to 561 W m-2;
    the data keep 12 mantissa bits).
``cos_time_of_day``, ``sin_time_of_day``, ``cos_day_of_year``, ``sin_day_of_year``
    From :func:`atmos.io.forcings.derived_forcing` (time stamps only).
any other dataset forcing
    Read from the data at the valid times (``forcings="data"``): this *uses data
    from the future* (acceptable only for prescribed forcings such as SST; it is
    recorded in the output's attributes) and fails if the data do not cover the lead times.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from atmos.errors import ConfigError, DataError
from atmos.io.forcings import DERIVED_FORCINGS, derived_forcing

__all__ = [
    "SOLAR_CONSTANT",
    "TOA_NAME",
    "ToaCalibration",
    "calibrate_toa",
    "solar_geometry",
    "toa_incident_solar_radiation",
]

#: Solar constant (W m-2) used by SPEEDY (4 x its ``solc`` = 342 W m-2).
SOLAR_CONSTANT = 1368.0
TOA_NAME = "toa_incident_solar_radiation"
_NS_PER_DAY = 86_400_000_000_000
_TOA_KINDS = ("instantaneous", "daily_mean")


def _times_ns(times: np.ndarray | Sequence) -> np.ndarray:
    t = np.atleast_1d(np.asarray(times))
    if np.issubdtype(t.dtype, np.integer):
        return t.astype(np.int64)
    if not np.issubdtype(t.dtype, np.datetime64):
        raise DataError(f"solar geometry needs datetime64 time stamps, got dtype {t.dtype}.")
    return t.astype("datetime64[ns]").astype(np.int64)


def solar_geometry(times: np.ndarray | Sequence) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Solar declination, inverse squared Earth-Sun distance and UTC day fraction.

    Spencer, J. W. (1971): Fourier series representation of the position of the sun.
    Search, 2(5), 172. The year phase is ``2 pi (day of year - 1 + UTC fraction) / 365``.

    Parameters
    ----------
    times : array of datetime64 (or int64 ns since 1970), shape [T]

    Returns
    -------
    declination : [T] radians
    distance_factor : [T] ``(d0 / d)**2``
    day_fraction : [T] UTC time of day in days (0..1)
    """
    ns = _times_ns(times)
    t = ns.astype("datetime64[ns]")
    year_start = t.astype("datetime64[Y]").astype("datetime64[ns]").astype(np.int64)
    days = (ns - year_start).astype(np.float64) / _NS_PER_DAY
    a = 2.0 * np.pi * days / 365.0
    decl = (
        0.006918
        - 0.399912 * np.cos(a)
        + 0.070257 * np.sin(a)
        - 0.006758 * np.cos(2 * a)
        + 0.000907 * np.sin(2 * a)
        - 0.002697 * np.cos(3 * a)
        + 0.00148 * np.sin(3 * a)
    )
    dist = (
        1.000110
        + 0.034221 * np.cos(a)
        + 0.001280 * np.sin(a)
        + 0.000719 * np.cos(2 * a)
        + 0.000077 * np.sin(2 * a)
    )
    frac = (ns % _NS_PER_DAY).astype(np.float64) / _NS_PER_DAY
    return decl, dist, frac


def toa_incident_solar_radiation(
    times: np.ndarray | Sequence,
    lat: np.ndarray,
    lon: np.ndarray,
    *,
    kind: str = "instantaneous",
    solar_constant: float = SOLAR_CONSTANT,
) -> np.ndarray:
    """Incoming shortwave flux at the top of the atmosphere (W m-2) from astronomy.

    Parameters
    ----------
    times : array of datetime64, shape [T]
    lat, lon : numpy.ndarray, shape [*grid]
        Latitude and longitude (degrees) of every grid point (broadcastable to each other).
    kind : {"instantaneous", "daily_mean"}
        Flux at the time stamp, or its mean over the (UTC) day of the time stamp's
        declination (what SPEEDY uses; no dependence on longitude or time of day).
    solar_constant : float
        ``S0`` in W m-2.

    Returns
    -------
    numpy.ndarray of float64, shape [T, *grid]
    """
    if kind not in _TOA_KINDS:
        raise ConfigError(f"kind must be one of {list(_TOA_KINDS)}, got {kind!r}.")
    decl, dist, frac = solar_geometry(times)
    phi = np.deg2rad(np.asarray(lat, np.float64))
    lam = np.deg2rad(np.asarray(lon, np.float64))
    phi, lam = np.broadcast_arrays(phi, lam)
    ex = (slice(None),) + (None,) * phi.ndim
    sd, cd = np.sin(decl)[ex], np.cos(decl)[ex]
    sp, cp = np.sin(phi)[None], np.cos(phi)[None]
    if kind == "daily_mean":
        with np.errstate(divide="ignore", invalid="ignore"):
            ch0 = np.clip(-(sp * sd) / (cp * cd), -1.0, 1.0)
        ch0 = np.where(cp * cd == 0, np.where(sp * sd > 0, -1.0, 1.0), ch0)
        h0 = np.arccos(ch0)
        out = solar_constant / np.pi * dist[ex] * (h0 * sp * sd + np.sin(h0) * cp * cd)
    else:
        hour_angle = 2.0 * np.pi * frac[ex] + lam[None] - np.pi  # 0 at local solar noon
        cosz = sp * sd + cp * cd * np.cos(hour_angle)
        out = solar_constant * dist[ex] * np.maximum(cosz, 0.0)
    return np.maximum(out, 0.0)


@dataclass(frozen=True)
class ToaCalibration:
    """How TOA insolation is computed for a dataset: ``scale * toa(kind, S0=1368)``.

    Attributes
    ----------
    kind : {"instantaneous", "daily_mean"}
    scale : float
        Multiplies the flux computed with :data:`SOLAR_CONSTANT` (accounts for the
        data's solar constant and units, e.g. J m-2 accumulated over an hour).
    rmse : float or None
        RMSE of the fit against the data (data units); None when not fitted.
    relative_rmse : float or None
        ``rmse`` divided by the data's maximum.
    fitted_on : int
        Number of time steps of the data used for the fit (0 = defaults).
    """

    kind: str = "instantaneous"
    scale: float = 1.0
    rmse: float | None = None
    relative_rmse: float | None = None
    fitted_on: int = 0

    def __call__(self, times: np.ndarray, lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
        """TOA insolation ``[T, *grid]`` in the data's units."""
        return self.scale * toa_incident_solar_radiation(times, lat, lon, kind=self.kind)

    def describe(self) -> str:
        s0 = self.scale * SOLAR_CONSTANT
        fit = (
            f", fitted to the data at {self.fitted_on} time step(s) up to the initial time "
            f"(RMSE {self.rmse:.3g}, {100 * (self.relative_rmse or 0):.2g}% of the maximum)"
            if self.fitted_on
            else " (default: no TOA data at the initial time to fit)"
        )
        return (
            f"astronomy ({self.kind} flux, Spencer 1971 declination, effective solar constant "
            f"{s0:.6g} in data units{fit})"
        )


def calibrate_toa(
    values: np.ndarray,
    times: np.ndarray,
    lat: np.ndarray,
    lon: np.ndarray,
    *,
    max_relative_rmse: float = 0.05,
) -> ToaCalibration:
    """Fit :class:`ToaCalibration` (kind and scale) to observed TOA values.

    Parameters
    ----------
    values : numpy.ndarray, shape [T, *grid]
        The data's ``toa_incident_solar_radiation`` at ``times``.
    times : datetime64 array, shape [T]
    lat, lon : numpy.ndarray, shape [*grid]
    max_relative_rmse : float
        The best fit must have an RMSE below this fraction of the data's maximum.

    Raises
    ------
    DataError
        Neither the instantaneous nor the daily-mean flux fits the data (the message
        gives both errors and suggests ``forcings="data"``).
    """
    obs = np.asarray(values, np.float64)
    if not np.all(np.isfinite(obs)):
        raise DataError(f"{TOA_NAME} has NaN/Inf values at the initial time(s) {times}; cannot calibrate it.")
    vmax = float(np.abs(obs).max())
    if vmax == 0:
        raise DataError(
            f"{TOA_NAME} is zero everywhere at {times}; cannot calibrate the astronomical formula."
        )
    fits = []
    for kind in _TOA_KINDS:
        q = toa_incident_solar_radiation(times, lat, lon, kind=kind)
        qq = float((q * q).sum())
        scale = float((q * obs).sum() / qq) if qq > 0 else 1.0
        rmse = float(np.sqrt(np.mean((scale * q - obs) ** 2)))
        fits.append(ToaCalibration(kind, scale, rmse, rmse / vmax, int(np.size(times))))
    best = min(fits, key=lambda c: c.rmse)
    if best.relative_rmse > max_relative_rmse:
        detail = "; ".join(f"{c.kind}: RMSE {c.rmse:.3g} (scale {c.scale:.4g})" for c in fits)
        raise DataError(
            f"the data's {TOA_NAME} does not match the astronomical formula ({detail}; data maximum "
            f"{vmax:.4g}). Pass forcings='data' (--forcings data) to read it from the data at the lead times "
            "instead (this uses data from the future for the forcing)."
        )
    return best


def derived(name: str, times: np.ndarray, lon: np.ndarray) -> np.ndarray:
    """A derived time encoding (see :mod:`atmos.io.forcings`), ``[T, *grid]`` float32."""
    if name not in DERIVED_FORCINGS:
        raise ConfigError(f"{name!r} is not a derived forcing; those are {list(DERIVED_FORCINGS)}.")
    return derived_forcing(name, times, lon)
