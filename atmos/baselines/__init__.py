"""Statistical baselines for climate emulation (pattern scaling)."""

from atmos.baselines.pattern_scaling import GlobalDriverRegression, PatternScaling, ensemble_mean, gmst

__all__ = ["GlobalDriverRegression", "PatternScaling", "ensemble_mean", "gmst"]
