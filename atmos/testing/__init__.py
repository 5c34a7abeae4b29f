"""Synthetic data helpers for tests, examples and benchmarks (public API)."""

from atmos.testing._mock import VARIABLE_INFO, mock_era5

__all__ = ["VARIABLE_INFO", "mock_era5"]
