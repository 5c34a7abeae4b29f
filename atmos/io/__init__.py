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

from atmos.channels import Channel

#: Names served lazily (their modules import torch; ``import atmos.io`` must not).
_LAZY = {"WindowDataset": "atmos.io.windows", "WindowSchema": "atmos.io.windows"}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'atmos.io' has no attribute {name!r}")

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
