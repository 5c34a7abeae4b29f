"""Deterministic forecast metrics as small dataclasses, following WeatherBench2 ``metrics.py``.

Conventions (WeatherBench2, Rasp et al. 2024, JAMES 16, e2023MS004019):

* ``forecast`` and ``truth`` have identical dims: the truth is aligned to the forecast
  by valid time ``time + prediction_timedelta`` first (:func:`atmos.metrics.align_truth`),
  so ``time`` is the *initialisation* time and ``prediction_timedelta`` the lead.
* Spatial averages use the normalized cell areas of the grid
  (:func:`atmos.io.coords.area_weights`; ``sin`` of the cell's latitude bounds on a
  regular grid, equal weights on HEALPix), optionally multiplied by a region mask.
* Each metric computes a *per time* spatial average in :meth:`Metric.compute_chunk`
  (so that chunks of init times can be processed independently: dask, streaming);
  :meth:`Metric.compute` averages it over ``time`` and applies :meth:`Metric.finalize`
  (e.g. the square root of RMSE: RMSE is the square root of the time-mean MSE, not the
  mean of per-time RMSEs).
* A ``member`` dimension in the forecast (or WeatherBench2's ``realization``) is reduced to
  the ensemble mean by the deterministic metrics (their score is that of the ensemble-mean
  forecast).

Notation below: ``f`` forecast, ``y`` truth, ``<.>`` area-weighted spatial mean over
the region, ``E_t`` mean over init times, ``c`` the climatology at the valid time.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import numpy as np
import xarray as xr

from atmos.io.climatology import climatology_at
from atmos.errors import ConfigError, DataError
from atmos.io.coords import area_weights, grid_of

__all__ = [
    "ACC",
    "MAE",
    "MSE",
    "REGIONS",
    "RMSE",
    "Bias",
    "ENSEMBLE_DIMS",
    "LatitudeBand",
    "Metric",
    "Region",
    "get_region",
    "resolve_ensemble_dim",
    "spatial_average",
    "valid_time_of",
]

XrObj = xr.Dataset | xr.DataArray


# ======================================================================================
# regions
# ======================================================================================
@dataclasses.dataclass(frozen=True)
class Region:
    """The whole globe; base class of region masks (``weights * mask``)."""

    name: str = "global"

    def mask(self, latitude: xr.DataArray, longitude: xr.DataArray) -> xr.DataArray | None:
        """1 inside the region, 0 outside, on the latitude/longitude coordinates (None: everywhere)."""
        return None

    def apply(self, weights: xr.DataArray, ds: XrObj) -> xr.DataArray:
        """Multiply the area weights by the region mask."""
        lat, lon = _cell_latlon(ds)
        m = self.mask(lat, lon)
        if m is None:
            return weights
        w = weights * m
        if not float(w.sum()) > 0:
            raise DataError(f"region {self.name!r} contains no grid cell of this grid; choose another region.")
        return w


@dataclasses.dataclass(frozen=True)
class LatitudeBand(Region):
    """Cells with ``lat_min <= lat <= lat_max`` (of ``|lat|`` when ``absolute``).

    ``min_inclusive=False`` / ``max_inclusive=False`` make the bound strict, so that
    complementary bands (tropics ``|lat| <= 20``, extratropics ``|lat| > 20``) never
    share a row.
    """

    lat_min: float = -90.0
    lat_max: float = 90.0
    absolute: bool = False
    min_inclusive: bool = True
    max_inclusive: bool = True

    def mask(self, latitude: xr.DataArray, longitude: xr.DataArray) -> xr.DataArray:
        x = abs(latitude) if self.absolute else latitude
        lo = x >= self.lat_min if self.min_inclusive else x > self.lat_min
        hi = x <= self.lat_max if self.max_inclusive else x < self.lat_max
        return (lo & hi).astype(np.float64)


#: Named regions (WeatherBench2 uses the same 20-degree tropics/extratropics split).
REGIONS: dict[str, Region] = {
    "global": Region("global"),
    "tropics": LatitudeBand("tropics", 0.0, 20.0, absolute=True),
    "extratropics": LatitudeBand("extratropics", 20.0, 90.0, absolute=True, min_inclusive=False),
    "northern_extratropics": LatitudeBand("northern_extratropics", 20.0, 90.0, min_inclusive=False),
    "southern_extratropics": LatitudeBand("southern_extratropics", -90.0, -20.0, max_inclusive=False),
}


def get_region(region: str | Region | None) -> Region | None:
    """A :class:`Region` from its name (see :data:`REGIONS`); ``None`` and ``"global"`` mean the globe."""
    if region is None or isinstance(region, Region):
        return region
    if region not in REGIONS:
        raise ConfigError(f"unknown region {region!r}; expected one of {sorted(REGIONS)} or a Region instance.")
    return REGIONS[region]


def _cell_latlon(ds: XrObj) -> tuple[xr.DataArray, xr.DataArray]:
    if "cell" in ds.dims:
        g = grid_of(ds)
        return xr.DataArray(g.lat, dims=("cell",)), xr.DataArray(g.lon, dims=("cell",))
    return ds["latitude"], ds["longitude"]


# ======================================================================================
# spatial averaging
# ======================================================================================
def spatial_average(ds: XrObj, region: str | Region | None = None, skipna: bool = False) -> XrObj:
    """Area-weighted mean over the spatial dims, within ``region`` (WeatherBench2 ``_spatial_average``).

    Weights are the normalized cell areas times the region mask; values outside the
    region are set to 0 first so that NaN there does not propagate.
    """
    w = area_weights(ds)  # the grid's cell areas (cached by atmos.grids, a fresh copy each call)
    reg = get_region(region)
    if reg is not None:
        w = reg.apply(w, ds)
        ds = ds.where(w > 0, 0)
    return ds.weighted(w).mean(list(w.dims), skipna=skipna)


def valid_time_of(ds: XrObj) -> xr.DataArray:
    """Valid times of a forecast-layout object: ``time + prediction_timedelta`` (or ``valid_time``, or ``time``)."""
    if "valid_time" in ds.coords:
        return ds["valid_time"]
    if "time" not in ds.coords:
        raise DataError(f"no 'time' coordinate (coords {sorted(map(str, ds.coords))}); cannot find the valid times.")
    if "prediction_timedelta" in ds.coords:
        return ds["time"] + ds["prediction_timedelta"]
    return ds["time"]


#: Names of the ensemble dimension accepted on input: atmos writes ``member``, WeatherBench2's
#: default is ``realization``. A metric's ``ensemble_dim`` falls back to the other one.
ENSEMBLE_DIMS: tuple[str, ...] = ("member", "realization")


def resolve_ensemble_dim(forecast: XrObj, dim: str = "member") -> str:
    """The ensemble dimension of ``forecast``: ``dim`` if present, else ``member`` or ``realization``.

    Returns ``dim`` when the forecast has none of them (a deterministic forecast).

    Raises
    ------
    DataError
        The forecast has both ``member`` and ``realization`` dimensions.
    """
    found = [d for d in ENSEMBLE_DIMS if d in forecast.dims]
    if len(found) > 1:
        raise DataError(
            f"the forecast has both ensemble dimensions {found} (dims {sorted(map(str, forecast.dims))}); "
            "keep one, e.g. ds.rename(realization='member') after merging them."
        )
    if dim in forecast.dims:
        return dim
    return found[0] if found else dim


def _ensemble_mean(forecast: XrObj, dim: str) -> XrObj:
    dim = resolve_ensemble_dim(forecast, dim)
    return forecast.mean(dim, skipna=False) if dim in forecast.dims else forecast


# ======================================================================================
# metrics
# ======================================================================================
@dataclasses.dataclass
class Metric:
    """Base class: a metric is evaluated per time chunk, then averaged over time.

    Subclasses implement :meth:`compute_chunk` (per-time, spatially averaged values)
    and may override :meth:`finalize` (applied to the time mean of the chunk values).
    """

    #: Short name used in scorecards.
    name: ClassVar[str] = "metric"
    #: Dimension of ensemble members in the forecast.
    ensemble_dim: str = "member"

    def compute_chunk(self, forecast: XrObj, truth: XrObj, region: str | Region | None = None) -> XrObj:
        """Per-time, spatially averaged values on a chunk of init times (no latitude/longitude dims)."""
        raise NotImplementedError

    def finalize(self, time_mean: XrObj) -> XrObj:
        """Turn the time mean of :meth:`compute_chunk` into the metric (identity by default)."""
        return time_mean

    def compute(
        self, forecast: XrObj, truth: XrObj, region: str | Region | None = None, skipna: bool = False
    ) -> XrObj:
        """The metric over all init times: ``finalize(mean_time(compute_chunk(...)))``."""
        chunk = self.compute_chunk(forecast, truth, region=region)
        if "time" in chunk.dims:
            chunk = chunk.mean("time", skipna=skipna)
        return self.finalize(chunk)


@dataclasses.dataclass
class MSE(Metric):
    """Mean squared error ``E_t <(f - y)^2>``."""

    name: ClassVar[str] = "mse"

    def compute_chunk(self, forecast, truth, region=None):
        f = _ensemble_mean(forecast, self.ensemble_dim)
        return spatial_average((f - truth) ** 2, region)


@dataclasses.dataclass
class RMSE(MSE):
    """Root mean squared error, WeatherBench2 style: ``sqrt(E_t <(f - y)^2>)``.

    The square root is taken *after* the time mean (:meth:`finalize`); the chunk values
    are per-time MSEs. Reference: Rasp et al. (2024), WeatherBench 2, eq. (1).
    """

    name: ClassVar[str] = "rmse"

    def finalize(self, time_mean):
        return np.sqrt(time_mean)


@dataclasses.dataclass
class MAE(Metric):
    """Mean absolute error ``E_t <|f - y|>``."""

    name: ClassVar[str] = "mae"

    def compute_chunk(self, forecast, truth, region=None):
        f = _ensemble_mean(forecast, self.ensemble_dim)
        return spatial_average(abs(f - truth), region)


@dataclasses.dataclass
class Bias(Metric):
    """Mean error ``E_t <f - y>`` (positive: the forecast is too high)."""

    name: ClassVar[str] = "bias"

    def compute_chunk(self, forecast, truth, region=None):
        f = _ensemble_mean(forecast, self.ensemble_dim)
        return spatial_average(f - truth, region)


@dataclasses.dataclass
class ACC(Metric):
    """Anomaly correlation coefficient against a climatology (WeatherBench2 ``ACC``).

    With anomalies ``f' = f - c`` and ``y' = y - c`` relative to the climatology ``c``
    at each valid time (day of year and hour)::

        ACC_t = <f' y'> / sqrt(<f'^2> <y'^2>),      ACC = E_t ACC_t

    (uncentred correlation, per init time, then averaged over init times; Rasp et al.
    2024, eq. 2). When the forecast has no anomaly (``<f'^2> = 0``, e.g. the climatology
    forecast itself) the correlation is undefined (0/0); it is reported as exactly 0:
    such a forecast carries no information about the anomaly.

    Attributes
    ----------
    climatology : Dataset
        ``(hour, dayofyear, ...)`` climatology with the forecast's variables and levels
        (:func:`atmos.io.climatology.compute_climatology`, or a WeatherBench2 climatology zarr).
    """

    name: ClassVar[str] = "acc"
    climatology: xr.Dataset | xr.DataArray | None = None

    def _climatology_chunk(self, forecast: XrObj) -> XrObj:
        if self.climatology is None:
            raise ConfigError(
                "ACC needs a climatology: ACC(climatology=atmos.io.climatology.compute_climatology(training_cube)) "
                "or load_climatology('clim.nc')."
            )
        clim = self.climatology
        if isinstance(forecast, xr.Dataset):
            if not isinstance(clim, xr.Dataset):
                raise DataError("the forecast is a Dataset but the climatology a DataArray; pass a Dataset.")
            missing = [v for v in forecast.data_vars if v not in clim.data_vars]
            if missing:
                raise DataError(
                    f"the climatology lacks variable(s) {missing} (it has {sorted(map(str, clim.data_vars))})."
                )
            clim = clim[list(forecast.data_vars)]
        if "level" in forecast.dims and "level" in clim.dims:
            clim = clim.sel(level=forecast["level"])
        for d in ("latitude", "longitude"):
            if d in forecast.coords and d in clim.coords:
                a, b = forecast[d].values, clim[d].values
                if a.shape != b.shape or not np.allclose(a, b, rtol=0, atol=1e-6):
                    raise DataError(
                        f"the climatology's {d} ({b.size} values) differs from the forecast's ({a.size}); "
                        "use a climatology on the forecast grid."
                    )
                clim = clim.assign_coords({d: forecast[d]})
        return climatology_at(clim, valid_time_of(forecast))

    def compute_chunk(self, forecast, truth, region=None):
        f = _ensemble_mean(forecast, self.ensemble_dim)
        c = self._climatology_chunk(f)
        fa = f - c
        ya = truth - c
        num = spatial_average(fa * ya, region)
        den = np.sqrt(spatial_average(fa**2, region) * spatial_average(ya**2, region))
        return xr.where(den == 0, 0.0, num / den.where(den != 0))

