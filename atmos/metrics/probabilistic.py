"""Ensemble (probabilistic) metrics as small dataclasses, following WeatherBench2 ``metrics.py``.

Conventions as in :mod:`atmos.metrics.deterministic` (aligned forecast/truth, area
weights, per-time chunks then a time mean). The ensemble dimension atmos writes is
``member``; WeatherBench2's default, ``realization``, is accepted on input by every metric
here (:func:`atmos.metrics.deterministic.resolve_ensemble_dim`: a metric's
``ensemble_dim`` falls back to the other name). A forecast without either is a
one-member ensemble.

Metrics: :class:`CRPS` (fair), :class:`EnsembleSpread`, :class:`EnsembleMeanRMSE`,
:class:`SpreadSkill` (WeatherBench2-exact); :class:`UnbiasedEnsembleMeanRMSE` and
:class:`UnbiasedSpreadSkill` (WeatherBench-X's unbiased estimators); :class:`EnergyScore`
(multivariate over the spatial field); :class:`CRPSS` (skill against a climatology);
:class:`RankHistogram` (Talagrand) with :func:`rank_histogram_flatness` and the scalar
:class:`RankReliability`.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import numpy as np
import xarray as xr

from atmos.errors import ConfigError, DataError
from atmos.metrics.deterministic import ACC, Metric, Region, XrObj, resolve_ensemble_dim, spatial_average

__all__ = [
    "CRPS",
    "CRPSS",
    "EnergyScore",
    "EnsembleMeanRMSE",
    "EnsembleSpread",
    "RankHistogram",
    "RankReliability",
    "SpreadSkill",
    "UnbiasedEnsembleMeanRMSE",
    "UnbiasedSpreadSkill",
    "crps_pointwise",
    "rank_histogram_counts",
    "rank_histogram_flatness",
    "rank_histogram_pointwise",
]


def _n_members(forecast: XrObj, dim: str) -> int:
    dim = resolve_ensemble_dim(forecast, dim)
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
    from; with one member its spread term is 0, so CRPS = MAE. ``ensemble_dim`` falls back to ``member`` / ``realization``.
    """
    ensemble_dim = resolve_ensemble_dim(forecast, ensemble_dim)
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
        dim = resolve_ensemble_dim(forecast, self.ensemble_dim)
        if _n_members(forecast, dim) < 2:
            f = forecast.isel({dim: 0}, drop=True) if dim in forecast.dims else forecast
            return spatial_average(xr.zeros_like(f, dtype=np.float64), region)
        return spatial_average(forecast.var(dim, ddof=1, skipna=False), region)

    def finalize(self, time_mean):
        return np.sqrt(time_mean)


@dataclasses.dataclass
class EnsembleMeanRMSE(Metric):
    """RMSE of the ensemble mean, ``sqrt(E_t <(mean_m(X) - y)^2>)`` (WeatherBench2 ``EnsembleMeanMSE``)."""

    name: ClassVar[str] = "ensemble_mean_rmse"

    def compute_chunk(self, forecast, truth, region=None):
        dim = resolve_ensemble_dim(forecast, self.ensemble_dim)
        f = forecast.mean(dim, skipna=False) if dim in forecast.dims else forecast
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


# ======================================================================================
# unbiased ensemble-mean error and spread/skill (WeatherBench-X)
# ======================================================================================
def _unbiased_mean_sq_error(forecast: XrObj, truth: XrObj, dim: str) -> XrObj:
    """``(mean_m(X) - y)^2 - var_m(X) / m`` pointwise (NaN for one member)."""
    m = _n_members(forecast, dim)
    if dim not in forecast.dims or m < 2:
        f = forecast.isel({dim: 0}, drop=True) if dim in forecast.dims else forecast
        return xr.full_like(f, np.nan, dtype=np.float64)
    mean = forecast.mean(dim, skipna=False)
    var = forecast.var(dim, ddof=1, skipna=False)
    return (mean - truth) ** 2 - var / m


@dataclasses.dataclass
class UnbiasedEnsembleMeanRMSE(Metric):
    """RMSE of the ensemble mean from the unbiased MSE estimator (WeatherBench-X ``UnbiasedEnsembleMeanRMSE``).

    With ``m`` exchangeable members of mean ``mu`` and variance ``s^2``, the MSE of the
    ``m``-member mean overestimates that of the distribution's mean by ``s^2 / m``;
    subtracting the sample variance over ``m`` removes it (WeatherBench2
    ``_debiased_ensemble_mean_mse``)::

        MSE_u = E_t <(mean_m(X) - y)^2 - var_m(X) / m>,     RMSE_u = sqrt(MSE_u)

    (``var_m`` with ``ddof=1``). It estimates the skill of the infinite ensemble, so scores
    of ensembles of different sizes are comparable. NaN for fewer than 2 members; for a
    very good small ensemble the time mean can be negative (sampling), its root NaN.
    """

    name: ClassVar[str] = "ensemble_mean_rmse_unbiased"

    def compute_chunk(self, forecast, truth, region=None):
        dim = resolve_ensemble_dim(forecast, self.ensemble_dim)
        return spatial_average(_unbiased_mean_sq_error(forecast, truth, dim), region)

    def finalize(self, time_mean):
        with np.errstate(invalid="ignore"):  # a negative unbiased MSE (sampling) has no root: NaN
            return np.sqrt(time_mean)


@dataclasses.dataclass
class UnbiasedSpreadSkill(Metric):
    """Spread/skill ratio with the unbiased skill estimator (WeatherBench-X ``UnbiasedSpreadSkillRatio``)::

        SSR_u = sqrt(E_t <var_m(X)>) / sqrt(E_t <(mean_m(X) - y)^2 - var_m(X) / m>)

    Numerator and denominator have the same expectation for a perfect ensemble (truth and
    members exchangeable) whatever its size ``m``, so ``SSR_u`` is close to 1 for a
    reliable ensemble (the ratio and roots leave a bias that vanishes as the number of
    init times grows) and below 1 for an under-dispersive one. This is the estimator
    WeatherBench-X standardised on (its biased ``SpreadSkillRatio`` was withdrawn);
    :class:`SpreadSkill` with ``finite_ensemble_correction=True`` is the other common
    fix, the ``sqrt((m+1)/m)`` factor of Fortin et al. (2014): both are 1 in expectation
    for a perfect ensemble and differ by ``O(1/m)`` otherwise.

    Chunk values are ``spread_skill_part = ["variance", "mse_unbiased"]`` (both
    time-averageable); :meth:`finalize` forms the ratio. NaN for fewer than 2 members and
    where the unbiased MSE's time mean is not positive (possible by sampling when the
    ensemble-mean error is tiny, e.g. at lead 0 with an unperturbed control member).

    References
    ----------
    Fortin, V., Abaza, M., Anctil, F. & Turcotte, R. (2014), Why should ensemble spread
    match the RMSE of the ensemble mean?, J. Hydrometeor. 15, 1708-1713. Rasp, S. et al.
    (2024), WeatherBench 2, JAMES 16, e2023MS004019.
    """

    name: ClassVar[str] = "spread_skill_unbiased"

    def compute_chunk(self, forecast, truth, region=None):
        var = EnsembleSpread(self.ensemble_dim).compute_chunk(forecast, truth, region)
        mse = UnbiasedEnsembleMeanRMSE(self.ensemble_dim).compute_chunk(forecast, truth, region)
        out = xr.concat([var, mse], dim="spread_skill_part", coords="minimal", compat="override")
        return out.assign_coords(spread_skill_part=["variance", "mse_unbiased"])

    def finalize(self, time_mean):
        if "spread_skill_part" not in time_mean.dims:
            raise DataError("UnbiasedSpreadSkill.finalize expects the chunk values of UnbiasedSpreadSkill.compute_chunk.")
        var = time_mean.sel(spread_skill_part="variance", drop=True)
        mse = time_mean.sel(spread_skill_part="mse_unbiased", drop=True)
        with np.errstate(invalid="ignore", divide="ignore"):  # negative unbiased MSE (sampling): NaN
            return np.sqrt(var) / np.sqrt(mse.where(mse > 0))


# ======================================================================================
# energy score
# ======================================================================================
def _field_norm(diff: XrObj, region: str | Region | None) -> XrObj:
    """Area-weighted L2 norm over the spatial dims, ``sqrt(<d^2>)`` (weights sum to 1)."""
    return np.sqrt(spatial_average(diff**2, region))


@dataclasses.dataclass
class EnergyScore(Metric):
    """Energy score of an ensemble of spatial fields (Gneiting & Raftery 2007; WeatherBench2 ``EnergyScore``).

    For the forecast distribution ``F`` of a field ``X`` and the true field ``y``::

        ES(F, y) = E||X - y|| - 1/2 E||X - X'||,

    ``||.||`` the area-weighted L2 norm over the spatial dims, ``||d|| = sqrt(<d^2>)``
    (normalized cell areas, as WeatherBench2), computed separately per variable, level,
    lead and init time, then averaged over init times. It is the multivariate
    generalisation of the CRPS: for a one-cell field ``||d|| = |d|`` and ES = CRPS. ES
    is strictly proper for the joint distribution of the field, so it penalises members
    with the right marginals but the wrong spatial structure. From ``m`` members::

        ES = (1/m) sum_i ||X_i - y|| - 1/2 S

    with the spread ``S`` estimated without bias by

    * ``spread_estimator="adjacent"`` (default, WeatherBench2-exact):
      ``S = 1/(m-1) sum_i ||X_i - X_{i+1}||`` over the ``m-1`` adjacent pairs;
    * ``"all_pairs"``: ``S = 2/(m(m-1)) sum_{i<j} ||X_i - X_j||``, lower variance at
      ``O(m^2)`` cost; for a one-cell field it makes ES equal to the fair
      :class:`CRPS` exactly.

    One member (or a deterministic forecast): ``S = 0``, ES = ``E_t ||f - y||``. Lower is
    better; units of the variable. Unlike WeatherBench2 (whose energy score ignores the
    region), the norm is taken within ``region``; for the globe they agree.

    References
    ----------
    Gneiting, T. & Raftery, A. E. (2007), Strictly proper scoring rules, prediction and
    estimation, JASA 102, 359-378. Gneiting, T., Stanberry, L. I., Grimit, E. P., Held,
    L. & Johnson, N. A. (2008), Assessing probabilistic forecasts of multivariate
    quantities, Test 17, 211-235.
    """

    name: ClassVar[str] = "energy_score"
    spread_estimator: str = "adjacent"

    def __post_init__(self) -> None:
        if self.spread_estimator not in ("adjacent", "all_pairs"):
            raise ConfigError(
                f"EnergyScore(spread_estimator={self.spread_estimator!r}): expected 'adjacent' (WeatherBench2) "
                "or 'all_pairs'."
            )

    def compute_chunk(self, forecast, truth, region=None):
        dim = resolve_ensemble_dim(forecast, self.ensemble_dim)
        if dim not in forecast.dims:
            return _field_norm(forecast - truth, region)
        skill = _field_norm(forecast - truth, region).mean(dim, skipna=False)
        m = forecast.sizes[dim]
        if m < 2:
            return skill
        x = forecast.drop_vars(dim, errors="ignore")
        if self.spread_estimator == "adjacent":
            d = x.isel({dim: slice(None, -1)}) - x.isel({dim: slice(1, None)})
            spread = _field_norm(d, region).mean(dim, skipna=False)
        else:
            total = None
            for i in range(m - 1):
                d = x.isel({dim: slice(i + 1, None)}) - x.isel({dim: i})
                part = _field_norm(d, region).sum(dim, skipna=False)
                total = part if total is None else total + part
            spread = total * (2.0 / (m * (m - 1)))
        return skill - 0.5 * spread


# ======================================================================================
# CRPS skill score against a climatology
# ======================================================================================
@dataclasses.dataclass
class CRPSS(Metric):
    """CRPS skill score against the climatology, ``CRPSS = 1 - E_t CRPS / E_t CRPS_clim``.

    ``CRPS`` is the forecast's fair :class:`CRPS`; ``CRPS_clim`` that of the reference
    built from ``climatology`` at each valid time (day of year and hour, as for
    :class:`ACC`):

    * a climatology without an ensemble dimension (the day-of-year mean of
      :func:`atmos.io.climatology.compute_climatology`, the default) is a
      **deterministic** reference, a one-member forecast whose CRPS is its MAE;
    * a climatology with a ``member`` / ``realization`` dimension (e.g. the same calendar
      date in past years) is an **ensemble** reference, scored with the same (fair) CRPS.

    The ratio is of time means (area-weighted, per variable, level and lead), not a mean
    of per-init ratios. 1 is a perfect forecast, 0 no better than the reference, negative
    worse; the climatology scored against itself is exactly 0. Note that a
    deterministic mean climatology is a weak CRPS reference (its spread is 0): an ensemble
    reference gives lower CRPSS values.

    Chunk values are ``crpss_part = ["crps", "crps_reference"]``; :meth:`finalize` forms
    the score.

    Attributes
    ----------
    climatology : Dataset
        ``(hour, dayofyear, [member], ...)`` climatology with the forecast's variables and
        levels on its grid.
    fair : bool
        Fair CRPS estimator for forecast and ensemble reference (default).

    References
    ----------
    Hersbach, H. (2000), Decomposition of the continuous ranked probability score for
    ensemble prediction systems, Wea. Forecasting 15, 559-570. Wilks, D. S. (2019),
    Statistical Methods in the Atmospheric Sciences, 4th ed., sec. 9.4.
    """

    name: ClassVar[str] = "crpss"
    climatology: xr.Dataset | xr.DataArray | None = None
    fair: bool = True

    def reference(self, truth: XrObj) -> XrObj:
        """The climatology at the truth's valid times (with its ensemble dim, if any)."""
        if self.climatology is None:
            raise ConfigError(
                "CRPSS needs a climatology: CRPSS(climatology=atmos.io.climatology.compute_climatology(training_cube)) "
                "(CLI: --climatology CLIM.nc or --climatology-source NAME)."
            )
        return ACC(climatology=self.climatology)._climatology_chunk(truth)

    def compute_chunk(self, forecast, truth, region=None):
        ref = self.reference(truth)
        crps = CRPS(self.ensemble_dim, fair=self.fair).compute_chunk(forecast, truth, region)
        ref_dim = resolve_ensemble_dim(ref, self.ensemble_dim)
        crps_ref = CRPS(ref_dim, fair=self.fair).compute_chunk(ref, truth, region)
        out = xr.concat([crps, crps_ref], dim="crpss_part", coords="minimal", compat="override", join="override")
        return out.assign_coords(crpss_part=["crps", "crps_reference"])

    def finalize(self, time_mean):
        if "crpss_part" not in time_mean.dims:
            raise DataError("CRPSS.finalize expects the chunk values of CRPSS.compute_chunk.")
        crps = time_mean.sel(crpss_part="crps", drop=True)
        ref = time_mean.sel(crpss_part="crps_reference", drop=True)
        return 1.0 - crps / ref


# ======================================================================================
# rank histogram
# ======================================================================================
def rank_histogram_pointwise(forecast: XrObj, truth: XrObj, ensemble_dim: str = "member") -> XrObj:
    """One-hot rank of the truth among the members at every point, on a trailing ``bins`` dim.

    With ``m`` members the rank ``r = #{i : X_i < y}`` takes ``m + 1`` values (bins
    ``0..m``). Ties (``n_eq`` members equal to the truth, e.g. an unperturbed control at
    lead 0) are split evenly over the bins ``r .. r + n_eq`` (weight ``1/(n_eq+1)`` each),
    the expectation of the usual random tie-breaking (Hamill 2001), so every case still
    contributes exactly 1. NaN in the truth or a member gives NaN in every bin.
    """
    dim = resolve_ensemble_dim(forecast, ensemble_dim)
    if dim not in forecast.dims:
        raise DataError(
            f"a rank histogram needs an ensemble: the forecast has no {ensemble_dim!r} / 'realization' dimension "
            f"(dims {sorted(map(str, forecast.dims))}); roll out with --members N."
        )
    m = forecast.sizes[dim]
    x = forecast.drop_vars(dim, errors="ignore")
    n_less = (x < truth).sum(dim)
    n_eq = (x == truth).sum(dim)
    valid = truth.notnull() & x.notnull().all(dim)
    k = xr.DataArray(np.arange(m + 1), dims=("bins",), coords={"bins": np.arange(m + 1)})
    onehot = ((k >= n_less) & (k <= n_less + n_eq)) / (n_eq + 1.0)
    return onehot.where(valid)


def rank_histogram_counts(
    forecast: XrObj, truth: XrObj, ensemble_dim: str = "member", keep: tuple[str, ...] = ()
) -> XrObj:
    """Unweighted rank counts: the number of cases (points x times ...) in each bin.

    Sums :func:`rank_histogram_pointwise` over every dimension except ``bins`` and
    ``keep`` (e.g. ``("prediction_timedelta",)``); the bins of each histogram sum to its
    number of cases (non-NaN points). Use these counts for :func:`rank_histogram_flatness`'s
    chi-square when the cases are independent.
    """
    oh = rank_histogram_pointwise(forecast, truth, ensemble_dim)
    dims = [d for d in oh.dims if d != "bins" and d not in keep]
    return oh.sum(dims, skipna=True)


@dataclasses.dataclass
class RankHistogram(Metric):
    """Talagrand rank histogram (Anderson 1996; Hamill 2001; WeatherBench2 ``RankHistogram``).

    The rank of the truth among ``m`` members falls in one of ``K = m + 1`` bins
    (:func:`rank_histogram_pointwise`). :meth:`compute_chunk` gives, per init time, the
    area-weighted fraction of cells in each bin (a trailing ``bins`` dim, summing to 1);
    :meth:`compute` averages them over init times. A reliable ensemble (truth and members
    drawn from the same distribution) is flat at ``1/K``; U-shaped is under-dispersive,
    dome-shaped over-dispersive, sloped biased. WeatherBench2 returns the one-hot ranks
    per cell (no spatial mean); atmos averages with the cell areas so that the histogram
    is that of the area of the region. :func:`rank_histogram_flatness` summarises it.
    """

    name: ClassVar[str] = "rank_histogram"

    def compute_chunk(self, forecast, truth, region=None):
        return spatial_average(rank_histogram_pointwise(forecast, truth, self.ensemble_dim), region)


def rank_histogram_flatness(hist: XrObj, n_cases: float | XrObj | None = None) -> xr.Dataset:
    """Flatness statistics of rank histograms (``bins`` dim: frequencies summing to 1, or counts).

    With ``K`` bins, relative frequencies ``f_k`` and ``N`` cases:

    * ``reliability_index`` ``RI = sum_k |f_k - 1/K|`` (Delle Monache et al. 2006): 0 when
      flat, at most ``2 (K-1)/K``; independent of ``N``, the statistic to compare
      ensembles with;
    * ``chi2 = sum_k (N f_k - N/K)^2 / (N/K)`` with ``K - 1`` degrees of freedom and its
      ``p_value`` (Pearson's test of flatness), and ``delta = chi2 / (K - 1)``, the
      Candille & Talagrand (2005) ratio ``Delta / Delta_0``, close to 1 for a reliable
      ensemble. These assume ``N`` *independent* cases: cells of one field and nearby init
      times are correlated, so with ``N`` = cells x inits they overstate significance;
      pass an effective number of cases (e.g. the number of init times) for a fair test.

    ``n_cases`` defaults to the sum over bins (pass counts, e.g. from
    :func:`rank_histogram_counts`); frequencies without ``n_cases`` give only ``RI``.
    """
    from scipy import stats

    if "bins" not in hist.dims:
        raise DataError(f"expected a rank histogram with a 'bins' dimension, got dims {sorted(map(str, hist.dims))}.")
    if isinstance(hist, xr.Dataset):
        hist = hist.to_dataarray("variable")
    k = hist.sizes["bins"]
    total = hist.sum("bins", skipna=False)
    f = hist / total
    out = xr.Dataset({"reliability_index": abs(f - 1.0 / k).sum("bins", skipna=False)})
    is_freq = bool(np.allclose(np.asarray(total), 1.0, rtol=1e-6, atol=1e-9, equal_nan=True))
    if n_cases is None and not is_freq:
        n_cases = total
    if n_cases is not None:
        n = n_cases if isinstance(n_cases, xr.DataArray) else xr.DataArray(float(n_cases))
        expected = n / k
        chi2 = ((n * f - expected) ** 2 / expected).sum("bins", skipna=False)
        out["chi2"] = chi2
        out["delta"] = chi2 / (k - 1)
        out["p_value"] = xr.apply_ufunc(lambda c: stats.chi2.sf(c, k - 1), chi2)
        out["n_cases"] = n + 0 * chi2
    out.attrs["n_bins"] = k
    return out


@dataclasses.dataclass
class RankReliability(Metric):
    """Reliability index of the time-mean rank histogram, a scalar flatness score for scorecards.

    ``RI = sum_k |f_k - 1/K|`` over the ``K = m + 1`` bins of the area-weighted rank
    histogram averaged over init times (:class:`RankHistogram`,
    :func:`rank_histogram_flatness`; Delle Monache et al. 2006). 0 is flat (reliable);
    larger is less reliable. Chunk values are the per-init histograms (``bins`` dim), so
    the score bootstraps over init times like any other.
    """

    name: ClassVar[str] = "rank_reliability"

    def compute_chunk(self, forecast, truth, region=None):
        return RankHistogram(self.ensemble_dim).compute_chunk(forecast, truth, region)

    def finalize(self, time_mean):
        if "bins" not in time_mean.dims:
            raise DataError("RankReliability.finalize expects the chunk values of RankHistogram.compute_chunk.")
        k = time_mean.sizes["bins"]
        return abs(time_mean - 1.0 / k).sum("bins", skipna=False)
