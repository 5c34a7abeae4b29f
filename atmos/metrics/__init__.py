"""Evaluation metrics: WeatherBench2-style forecast scores and the ClimateBench NRMSE.

Forecast metrics are small dataclasses (``compute_chunk`` per time chunk, ``compute``
averaging over init times) on forecasts in the WeatherBench2 layout; :func:`evaluate`
builds a tidy scorecard including persistence and climatology baselines.
"""

from atmos.baselines.climatology import (
    climatology_at,
    compute_climatology,
    load_climatology,
    save_climatology,
)
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
from atmos.metrics.evaluation import (
    HEADLINE_VARIABLES,
    align_truth,
    evaluate,
    evaluate_spectra,
    format_scorecard,
    open_forecast,
    parse_variable,
    read_scorecard,
    scorecard_to_dataframe,
    select_variables,
    write_scorecard,
)
from atmos.metrics.probabilistic import CRPS, EnsembleMeanRMSE, EnsembleSpread, SpreadSkill
from atmos.metrics.spectral import ZonalSpectrum, zonal_power_spectrum
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
    "HEADLINE_VARIABLES",
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
    "SpreadSkill",
    "ZonalSpectrum",
    "align_truth",
    "climatebench_scores",
    "climatebench_weights",
    "climatology_at",
    "compute_climatology",
    "evaluate",
    "evaluate_spectra",
    "format_scorecard",
    "get_region",
    "global_nrmse",
    "load_climatology",
    "open_forecast",
    "parse_variable",
    "read_scorecard",
    "save_climatology",
    "scorecard_to_dataframe",
    "select_variables",
    "spatial_average",
    "spatial_nrmse",
    "total_nrmse",
    "write_scorecard",
    "zonal_power_spectrum",
]
