"""Synthetic data helpers for tests, examples and benchmarks (public API)."""

from atmos.testing._mock import VARIABLE_INFO, mock_era5
from atmos.testing._models import TINY_MODEL_CONFIGS
from atmos.testing._styles import to_era5_invariants, to_era5_short_names, to_merra2

__all__ = ["TINY_MODEL_CONFIGS", "VARIABLE_INFO", "mock_era5", "to_era5_invariants", "to_era5_short_names", "to_merra2"]
