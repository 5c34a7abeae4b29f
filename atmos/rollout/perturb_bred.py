"""Bred-vector initial perturbations (Toth & Kalnay 1993): perturbations grown by the model itself.

Breeding starts ``cycles x cycle`` before the initial time ``t0`` from the data there (the
"analysis"), with a white Gaussian seed perturbation of area-weighted RMS ``scale`` (normalized
units) on every member but the control. Each cycle advances the control and the perturbed members
``cycle / step`` model steps, takes each member's difference from the control, rescales it to the
area-weighted RMS ``scale`` (:func:`atmos.rollout.perturbation.weighted_rms`, over the whole input
window, every channel and grid point) and adds it to the analysis of the next cycle time. After the
last cycle, at ``t0``, the members are the analysis at ``t0`` plus their bred vectors: the
directions in which the model's own errors grew fastest in the preceding cycles. With ``paired``
the perturbed members come in ``+d, -d`` pairs (the ensemble mean starts at the analysis).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch

from atmos.errors import ConfigError, DataError
from atmos.rollout.perturbation import area_weights_like, check_scale, hours, weighted_rms
from atmos.rollout.times import as_timedelta

__all__ = ["BredVectorPerturbation", "rescale"]


def rescale(diff: torch.Tensor, weights: torch.Tensor, norm: float) -> torch.Tensor:
    """``diff [B, H, C, *grid]`` rescaled so that each member's area-weighted RMS is ``norm``.

    Members with a zero difference (the control) stay zero.
    """
    rms = weighted_rms(diff, weights)  # [B] float64
    factor = torch.where(rms > 0, norm / rms.clamp_min(1e-300), torch.zeros_like(rms))
    shape = (-1,) + (1,) * (diff.dim() - 1)
    return (diff.double() * factor.view(shape)).to(diff.dtype)


@dataclass(frozen=True)
class BredVectorPerturbation:
    """Bred vectors: cycles of the model itself from ``cycles x cycle`` before the initial time.

    Parameters
    ----------
    scale : float
        Area-weighted RMS of each member's perturbation in normalized units (each channel's std).
    cycles : int
        Breeding cycles (default 4).
    cycle : timedelta-like
        Length of one cycle (default 12 h; a multiple of the model's step).
    paired : bool
        Perturbed members in ``+d, -d`` pairs (default False: independent bred vectors).
    control : bool
        Member 0 is the unperturbed control (required: the bred vectors are differences from it).
    """

    scale: float = 0.0
    cycles: int = 4
    cycle: Any = "12h"
    paired: bool = False
    control: bool = True
    method = "bred"

    def __post_init__(self) -> None:
        check_scale("the bred-vector scale (--perturbation-scale)", self.scale)
        if isinstance(self.cycles, bool) or int(self.cycles) != self.cycles or self.cycles < 1:
            raise ConfigError(f"bred vectors need cycles >= 1 (an integer), got {self.cycles!r}.")
        if not self.control:
            raise ConfigError("bred vectors are differences from the control: control must be True.")
        self._cycle_td()

    def _cycle_td(self) -> pd.Timedelta:
        return as_timedelta(self.cycle, "the bred-vector cycle (--perturbation-option cycle=DURATION)")

    def params(self) -> dict[str, Any]:
        """The parameters recorded in ``atmos_perturbation``."""
        return {"scale": self.scale, "cycles": int(self.cycles), "cycle": str(self._cycle_td()),
                "paired": bool(self.paired), "control": True}

    def describe(self) -> str:
        """One line for the forecast's attributes."""
        pair = ", in +/- pairs" if self.paired else ""
        return (
            f"bred vectors, RMS {self.scale:g} x channel std (normalized space, area-weighted), {int(self.cycles)} "
            f"cycles of {hours(self._cycle_td())}{pair}; member 0 is the unperturbed control"
        )

    def cycle_steps(self, forecaster: Any) -> int:
        """Model steps per cycle (the cycle must be a multiple of the model's step)."""
        ratio = self._cycle_td() / forecaster.step
        if abs(ratio - round(ratio)) > 1e-9 or round(ratio) < 1:
            raise ConfigError(
                f"the bred-vector cycle {self._cycle_td()} is not a multiple of model {forecaster.name!r}'s step "
                f"{forecaster.step}; pass --perturbation-option cycle=DURATION with a multiple of it."
            )
        return round(ratio)

    def cycle_times(self, forecaster: Any, init: Any) -> list[pd.Timestamp]:
        """The analysis times of the cycles, oldest first, ``init`` last (``cycles + 1`` times)."""
        dt = self.cycle_steps(forecaster) * forecaster.step
        t0 = pd.Timestamp(init)
        return [t0 - k * dt for k in range(int(self.cycles), -1, -1)]

    def check(self, forecaster: Any, data_times: Any, init: Any, members: int) -> None:
        """Every cycle's analysis time (and its history) must be in the data."""
        if self.scale == 0:
            return
        times = self.cycle_times(forecaster, init)
        try:
            for t in times:
                forecaster.check_init(data_times, t)
        except DataError as err:
            raise DataError(
                f"bred vectors for initial time {pd.Timestamp(init)} cycle from {times[0]} ({int(self.cycles)} cycles "
                f"of {self._cycle_td()}): {err} Use a later --init, or fewer or shorter cycles "
                "(--perturbation-option cycles=N cycle=DURATION)."
            ) from err

    def _seed_noise(self, shape: torch.Size, weights: torch.Tensor, seed: int) -> torch.Tensor:
        rng = np.random.default_rng(int(seed))
        eps = torch.from_numpy(rng.standard_normal(tuple(shape)).astype(np.float32))
        eps[0] = 0.0
        return rescale(eps, weights, self.scale)

    def _pair(self, d: torch.Tensor) -> torch.Tensor:
        """Members ``2j`` = ``-`` member ``2j - 1`` (``+d, -d`` pairs after the control)."""
        if self.paired:
            d = d.clone()
            d[2::2] = -d[1:-1:2][: d[2::2].shape[0]]
        return d

    def apply(self, forecaster: Any, data: Any, init: Any, *, members: int, seed: int, forcings: str = "auto",
              context: Any = None) -> Any:
        """The members' initial state at ``init``: the analysis plus the bred vectors (member 0: none)."""
        if self.scale == 0 or members < 2:
            return forecaster.encode(data, init, members=members, forcings=forcings, context=context)
        times = self.cycle_times(forecaster, init)
        weights = area_weights_like(forecaster.model_grid)
        n_step = self.cycle_steps(forecaster)
        state = forecaster.encode(data, times[0], members=members, forcings=forcings, context=context)
        d = self._pair(self._seed_noise(state.history.shape, weights, seed).to(state.history.device))
        for t in times[1:]:
            state.history = state.history + d
            for _ in range(n_step):
                state = forecaster.advance(state)
            grown = state.history - state.history[:1]
            d = self._pair(rescale(grown, weights, self.scale))
            state = forecaster.encode(data, t, members=members, forcings=forcings, context=context)
        state.history = state.history + d
        return state

    def advance(self, forecaster: Any, state: Any, seed: int) -> Any:
        """One model step of all members (the perturbation is initial only)."""
        return forecaster.advance(state)
