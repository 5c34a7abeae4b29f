"""Data cubes: opening with canonical names, grids of datasets, statistics, training windows."""

from atmos.io.coords import area_weights, global_mean, grid_of, spatial_dims
from atmos.io.names import UnitsWarning, detect_style, rename_variables
from atmos.io.open import CANONICAL_DIM_ORDER, canonicalize, open_dataset, select

__all__ = [
    "CANONICAL_DIM_ORDER",
    "UnitsWarning",
    "area_weights",
    "canonicalize",
    "detect_style",
    "global_mean",
    "grid_of",
    "open_dataset",
    "rename_variables",
    "select",
    "spatial_dims",
]
