"""Compatibility module: the rollout engine now lives in modules of one job each.

:class:`~atmos.rollout.forecaster.Forecaster` (``encode / advance / decode / unroll``),
:class:`~atmos.rollout.perturbation.Perturbation`, :class:`~atmos.rollout.state.RolloutState`,
:func:`~atmos.rollout.loading.load_checkpoint_files`, :data:`~atmos.rollout.context.FORCING_MODES`;
see :mod:`atmos.rollout` for the module list. Import from there (or from ``atmos.rollout``).
"""

from __future__ import annotations

from atmos.rollout.context import FORCING_MODES
from atmos.rollout.forecaster import Forecaster
from atmos.rollout.loading import load_checkpoint_files
from atmos.rollout.perturbation import Perturbation
from atmos.rollout.state import RolloutState

__all__ = ["FORCING_MODES", "Forecaster", "Perturbation", "RolloutState", "load_checkpoint_files"]
