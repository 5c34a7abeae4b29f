"""Data cubes: opening with canonical names, grids of datasets, statistics, training windows."""

from atmos.io.coords import area_weights, global_mean, grid_of, spatial_dims
from atmos.io.forcings import DERIVED_FORCINGS, derived_forcing, derived_forcings
from atmos.io.names import UnitsWarning, detect_style, rename_variables
from atmos.io.open import CANONICAL_DIM_ORDER, canonicalize, open_dataset, select
from atmos.io.stats import (
    STATISTICS,
    ZeroStdWarning,
    compute_and_save_stats,
    compute_stats,
    denormalize,
    load_stats,
    normalize,
    save_stats,
)
from atmos.io.windows import Channel, WindowDataset, WindowSchema

__all__ = [
    "CANONICAL_DIM_ORDER",
    "DERIVED_FORCINGS",
    "STATISTICS",
    "Channel",
    "UnitsWarning",
    "WindowDataset",
    "WindowSchema",
    "ZeroStdWarning",
    "area_weights",
    "canonicalize",
    "compute_and_save_stats",
    "compute_stats",
    "denormalize",
    "derived_forcing",
    "derived_forcings",
    "detect_style",
    "global_mean",
    "grid_of",
    "load_stats",
    "normalize",
    "open_dataset",
    "rename_variables",
    "save_stats",
    "select",
    "spatial_dims",
]
