"""Evaluation metrics: WeatherBench2-style forecast scores and the ClimateBench NRMSE.

Forecast metrics are small dataclasses (``compute_chunk`` per time chunk, ``compute``
averaging over init times) on forecasts in the WeatherBench2 layout. Metrics know no
baselines: scorecards of forecasts and baselines together are :func:`atmos.evaluation.evaluate`
(the layer above both); climatologies (for :class:`ACC`) are :mod:`atmos.io.climatology`.
"""

from atmos.metrics.climatebench import (
    climatebench_scores,
    climatebench_weights,
    global_nrmse,
    spatial_nrmse,
    total_nrmse,
)
from atmos.metrics.deterministic import (
    ACC,
    MAE,
    MSE,
    REGIONS,
    RMSE,
    Bias,
    LatitudeBand,
    Metric,
    Region,
    get_region,
    spatial_average,
)
from atmos.metrics.forecast import IncompleteForecastWarning, align_truth, as_forecast, open_forecast
from atmos.metrics.bootstrap import (
    block_bootstrap_indices,
    bootstrap_difference,
    bootstrap_score,
    default_block_length,
)
from atmos.metrics.deterministic import ENSEMBLE_DIMS, resolve_ensemble_dim
from atmos.metrics.probabilistic import (
    CRPS,
    CRPSS,
    EnergyScore,
    EnsembleMeanRMSE,
    EnsembleSpread,
    RankHistogram,
    RankReliability,
    SpreadSkill,
    UnbiasedEnsembleMeanRMSE,
    UnbiasedSpreadSkill,
    rank_histogram_counts,
    rank_histogram_flatness,
)
from atmos.metrics.spectral import ZonalSpectrum, zonal_power_spectrum
from atmos.metrics.variables import (
    HEADLINE_VARIABLES,
    VariableSpec,
    parse_variable,
    resolve_variables,
    select_variables,
    short_label,
)
from atmos.metrics.stability import (
    blowup_lead,
    climate_diagnostics,
    drift_per_year,
    plot_climate_diagnostics,
    spectrum_ratio,
)

__all__ = [
    "blowup_lead",
    "climate_diagnostics",
    "drift_per_year",
    "plot_climate_diagnostics",
    "spectrum_ratio",
    "ACC",
    "CRPS",
    "CRPSS",
    "ENSEMBLE_DIMS",
    "EnergyScore",
    "RankHistogram",
    "RankReliability",
    "UnbiasedEnsembleMeanRMSE",
    "UnbiasedSpreadSkill",
    "block_bootstrap_indices",
    "bootstrap_difference",
    "bootstrap_score",
    "default_block_length",
    "rank_histogram_counts",
    "rank_histogram_flatness",
    "resolve_ensemble_dim",
    "HEADLINE_VARIABLES",
    "IncompleteForecastWarning",
    "MAE",
    "MSE",
    "REGIONS",
    "RMSE",
    "Bias",
    "EnsembleMeanRMSE",
    "EnsembleSpread",
    "LatitudeBand",
    "Metric",
    "Region",
    "VariableSpec",
    "SpreadSkill",
    "ZonalSpectrum",
    "align_truth",
    "as_forecast",
    "climatebench_scores",
    "climatebench_weights",
    "get_region",
    "global_nrmse",
    "open_forecast",
    "parse_variable",
    "resolve_variables",
    "select_variables",
    "short_label",
    "spatial_average",
    "spatial_nrmse",
    "total_nrmse",
    "zonal_power_spectrum",
]
