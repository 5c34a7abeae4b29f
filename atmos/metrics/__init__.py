"""Evaluation metrics (ClimateBench NRMSE; WeatherBench2 deterministic metrics to come)."""

from atmos.metrics.climatebench import (
    climatebench_scores,
    climatebench_weights,
    global_nrmse,
    spatial_nrmse,
    total_nrmse,
)

__all__ = ["climatebench_scores", "climatebench_weights", "global_nrmse", "spatial_nrmse", "total_nrmse"]
