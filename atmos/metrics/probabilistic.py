"""Ensemble (probabilistic) metrics as small dataclasses, following WeatherBench2 ``metrics.py``.

Conventions as in :mod:`atmos.metrics.deterministic` (aligned forecast/truth, area
weights, per-time chunks then a time mean). The ensemble dimension is ``member``
(WeatherBench2 calls it ``realization``); a forecast without it is a one-member
ensemble.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import numpy as np
import xarray as xr

from atmos.errors import DataError
from atmos.metrics.deterministic import Metric, Region, XrObj, spatial_average

__all__ = ["CRPS", "EnsembleMeanRMSE", "EnsembleSpread", "SpreadSkill", "crps_pointwise"]


def _n_members(forecast: XrObj, dim: str) -> int:
    return int(forecast.sizes[dim]) if dim in forecast.dims else 1


def _sorted_weighted_sum(x: np.ndarray, axis: int) -> np.ndarray:
    """``sum_i (2 i - m - 1) x_(i)`` over the sorted members (i = 1..m) along ``axis``."""
    m = x.shape[axis]
    s = np.sort(np.asarray(x, dtype=np.float64), axis=axis)
    # the coefficients sum to 0: subtracting the smallest member changes nothing but the rounding
    # (identical members give exactly 0, large offsets such as geopotential lose no precision)
    s = s - np.take(s, [0], axis=axis)
    coef = (2.0 * np.arange(1, m + 1) - m - 1).reshape([-1 if a == axis % x.ndim else 1 for a in range(x.ndim)])
    return np.sum(coef * s, axis=axis)


def crps_pointwise(forecast: XrObj, truth: XrObj, ensemble_dim: str = "member", fair: bool = True) -> XrObj:
    """CRPS of the ensemble at every point (no spatial averaging).

    With ``m`` members ``X_1..X_m`` and the truth ``y``::

        CRPS_fair = (1/m) sum_i |X_i - y|  -  1/(2 m (m-1)) sum_{i,j} |X_i - X_j|
        CRPS_ens  = (1/m) sum_i |X_i - y|  -  1/(2 m^2)     sum_{i,j} |X_i - X_j|

    The double sum is computed in ``O(m log m)`` from the sorted members,
    ``sum_{i,j} |X_i - X_j| = 2 sum_i (2 i - m - 1) X_(i)`` (Zamo & Naveau 2018, as in
    WeatherBench2's ``_pointwise_crps_spread``). The *fair* estimator (Ferro 2014;
    Leutbecher 2019) is unbiased for the CRPS of the distribution the members are drawn
    from; with one member its spread term is 0, so CRPS = MAE.
    """
    m = _n_members(forecast, ensemble_dim)
    if m == 1:
        f = forecast.squeeze(ensemble_dim, drop=True) if ensemble_dim in forecast.dims else forecast
        return abs(f - truth)
    skill = abs(forecast - truth).mean(ensemble_dim, skipna=False)
    wsum = xr.apply_ufunc(
        _sorted_weighted_sum,
        forecast,
        input_core_dims=[[ensemble_dim]],
        kwargs={"axis": -1},
        dask="parallelized",
        output_dtypes=[np.float64],
    )
    # 1/(2 m (m-1)) * 2 * wsum  (fair)   or   1/(2 m^2) * 2 * wsum
    spread = wsum / (m * (m - 1)) if fair else wsum / (m * m)
    return skill - spread


@dataclasses.dataclass
class CRPS(Metric):
    """Continuous ranked probability score of an ensemble, averaged over space and time.

    ``CRPS(F, y) = E|X - y| - 1/2 E|X - X'|`` (Gneiting & Raftery 2007) with ``X, X'``
    independent draws from the forecast distribution ``F``. From ``m`` members the
    default *fair* estimator is (see :func:`crps_pointwise`)::

        CRPS = (1/m) sum_i |X_i - y| - 1/(2 m (m-1)) sum_{i,j} |X_i - X_j|,

    the estimator of WeatherBench2's ``CRPS`` (``CRPSSkill - 0.5 CRPSSpread`` with the
    PWM form of the spread). It is 0 for a perfect ensemble (all members equal the truth)
    and equals the MAE for a single member. Lower is better; same units as the variable.

    References
    ----------
    Gneiting, T. & Raftery, A. E. (2007), Strictly proper scoring rules, prediction and
    estimation, JASA 102, 359-378. Zamo, M. & Naveau, P. (2018), Estimation of the CRPS
    with limited information and applications to ensemble weather forecasts, Math.
    Geosci. 50, 209-234. Ferro, C. A. T. (2014), Fair scores for ensemble forecasts,
    QJRMS 140, 1917-1923.

    Attributes
    ----------
    fair : bool
        The fair (unbiased) estimator (default) or the plain ensemble CRPS (``1/(2m^2)``).
    """

    name: ClassVar[str] = "crps"
    fair: bool = True

    def compute_chunk(self, forecast, truth, region: str | Region | None = None):
        return spatial_average(crps_pointwise(forecast, truth, self.ensemble_dim, self.fair), region)


@dataclasses.dataclass
class EnsembleSpread(Metric):
    """Ensemble spread ``sqrt(E_t <var_m(X)>)``, the unbiased (``ddof=1``) member variance.

    WeatherBench2 ``EnsembleVariance`` followed by the square root of its time mean. A
    one-member forecast has spread 0.
    """

    name: ClassVar[str] = "spread"

    def compute_chunk(self, forecast, truth, region=None):
        if _n_members(forecast, self.ensemble_dim) < 2:
            f = forecast.isel({self.ensemble_dim: 0}, drop=True) if self.ensemble_dim in forecast.dims else forecast
            return spatial_average(xr.zeros_like(f, dtype=np.float64), region)
        return spatial_average(forecast.var(self.ensemble_dim, ddof=1, skipna=False), region)

    def finalize(self, time_mean):
        return np.sqrt(time_mean)


@dataclasses.dataclass
class EnsembleMeanRMSE(Metric):
    """RMSE of the ensemble mean, ``sqrt(E_t <(mean_m(X) - y)^2>)`` (WeatherBench2 ``EnsembleMeanMSE``)."""

    name: ClassVar[str] = "ensemble_mean_rmse"

    def compute_chunk(self, forecast, truth, region=None):
        f = forecast.mean(self.ensemble_dim, skipna=False) if self.ensemble_dim in forecast.dims else forecast
        return spatial_average((f - truth) ** 2, region)

    def finalize(self, time_mean):
        return np.sqrt(time_mean)


@dataclasses.dataclass
class SpreadSkill(Metric):
    """Spread/skill ratio: ensemble spread over the RMSE of the ensemble mean.

    As WeatherBench2 forms it from its ``EnsembleVariance`` (unbiased, ``ddof=1``) and
    ``EnsembleMeanMSE`` metrics (Rasp et al. 2024): spread = square root of the time- and
    area-mean ensemble variance, skill = RMSE of the ensemble mean::

        SSR = sqrt(E_t <var_m(X)>) / sqrt(E_t <(mean_m(X) - y)^2>)

    A reliable ensemble has SSR close to 1; below 1 it is under-dispersive (over-
    confident). For a finite ensemble of ``m`` exchangeable members the expected MSE of
    the mean is ``(m+1)/m`` times the expected variance (Fortin et al. 2014);
    ``finite_ensemble_correction=True`` multiplies the ratio by ``sqrt((m+1)/m)`` so
    that a perfect ``m``-member ensemble scores 1 (default off, as in WeatherBench2).

    The chunk values are the two time-averageable parts, stacked on a
    ``spread_skill_part = ["variance", "mse"]`` dimension; :meth:`finalize` forms the
    ratio (the finite-ensemble factor, when requested, is applied to the variance part).
    A deterministic forecast scores 0.

    References
    ----------
    Fortin, V., Abaza, M., Anctil, F. & Turcotte, R. (2014), Why should ensemble spread
    match the RMSE of the ensemble mean?, J. Hydrometeor. 15, 1708-1713.
    """

    name: ClassVar[str] = "spread_skill"
    finite_ensemble_correction: bool = False

    def compute_chunk(self, forecast, truth, region=None):
        var = EnsembleSpread(self.ensemble_dim).compute_chunk(forecast, truth, region)
        m = _n_members(forecast, self.ensemble_dim)
        if self.finite_ensemble_correction and m > 1:
            var = var * ((m + 1) / m)
        mse = EnsembleMeanRMSE(self.ensemble_dim).compute_chunk(forecast, truth, region)
        out = xr.concat([var, mse], dim="spread_skill_part", coords="minimal", compat="override")
        return out.assign_coords(spread_skill_part=["variance", "mse"])

    def finalize(self, time_mean):
        if "spread_skill_part" not in time_mean.dims:
            raise DataError("SpreadSkill.finalize expects the chunk values of SpreadSkill.compute_chunk.")
        var = time_mean.sel(spread_skill_part="variance", drop=True)
        mse = time_mean.sel(spread_skill_part="mse", drop=True)
        return np.sqrt(var) / np.sqrt(mse)
