"""Baselines: pattern scaling for climate emulation; persistence and climatology forecasts for weather."""

from atmos.baselines.climatology import (
    climatology_at,
    climatology_forecast,
    compute_climatology,
    load_climatology,
    save_climatology,
)
from atmos.baselines.pattern_scaling import GlobalDriverRegression, PatternScaling, ensemble_mean, gmst
from atmos.baselines.persistence import persistence_forecast

__all__ = [
    "GlobalDriverRegression",
    "PatternScaling",
    "climatology_at",
    "climatology_forecast",
    "compute_climatology",
    "ensemble_mean",
    "gmst",
    "load_climatology",
    "persistence_forecast",
    "save_climatology",
]
