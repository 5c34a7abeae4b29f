"""Monte-Carlo temporal dropout: input-level uncertainty from dropping history steps at inference.

A model whose input window holds ``H > 1`` steps sees, at every model step (or only at the
first, with ``every_step=False``), each of the ``H - 1`` older steps of every perturbed member
dropped with probability ``rate``; the newest state is always kept. A dropped step is filled
with the nearest newer kept step (``fill="nearest"``: the model sees no tendency there) or with
zeros (``fill="zero"``: the climatological mean in normalized space). The dropout acts on what
the model reads only: the window carried forward holds the members' own states. Member 0 is the
control (never dropped). The masks of step ``s`` are drawn from ``(seed, s)``, so a resumed
rollout draws the same ones. A model with ``H = 1`` has nothing to drop: the method refuses it.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from atmos.errors import ConfigError
from atmos.rollout.perturbation import check_scale

__all__ = ["FILLS", "TemporalDropoutPerturbation", "dropout_window"]

#: How a dropped history step is filled.
FILLS = ("nearest", "zero")


def dropout_window(history: torch.Tensor, keep: np.ndarray, fill: str) -> torch.Tensor:
    """The input window with dropped steps filled.

    Parameters
    ----------
    history : Tensor ``[B, H, C, *grid]``
    keep : bool array ``[B, H]``
        Steps kept (the newest, ``keep[:, -1]``, must be True).
    fill : {"nearest", "zero"}

    Returns
    -------
    Tensor ``[B, H, C, *grid]``: dropped steps replaced by the nearest newer kept step, or zeros.
    """
    out = history.clone()
    b, h = keep.shape
    for m in range(b):
        for k in range(h - 2, -1, -1):
            if keep[m, k]:
                continue
            out[m, k] = out[m, k + 1] if fill == "nearest" else 0.0
    return out


@dataclass(frozen=True)
class TemporalDropoutPerturbation:
    """Drop older history steps of the input window at inference (members >= 1).

    Parameters
    ----------
    scale : float
        The dropout rate per older history step, in ``[0, 1)``.
    fill : {"nearest", "zero"}
        What a dropped step becomes (see the module docstring).
    every_step : bool
        Drop at every model step (default) or only at the first.
    control : bool
        Member 0 is never dropped.
    """

    scale: float = 0.0
    fill: str = "nearest"
    every_step: bool = True
    control: bool = True
    method = "temporal-dropout"

    def __post_init__(self) -> None:
        check_scale("the temporal-dropout rate (--perturbation-scale)", self.scale, upper=1.0)
        if self.fill not in FILLS:
            raise ConfigError(
                f"temporal-dropout fill must be one of {list(FILLS)}, got {self.fill!r}; pass "
                "--perturbation-option fill=nearest or fill=zero."
            )

    def params(self) -> dict[str, Any]:
        """The parameters recorded in ``atmos_perturbation``."""
        return {"scale": self.scale, "fill": self.fill, "every_step": bool(self.every_step), "control": self.control}

    def describe(self) -> str:
        """One line for the forecast's attributes."""
        when = "at every model step" if self.every_step else "at the first model step"
        ctl = "; member 0 is the control (never dropped)" if self.control else ""
        return (
            f"Monte-Carlo temporal dropout: each older input history step dropped with probability {self.scale:g} "
            f"{when}, filled with {'the nearest newer step' if self.fill == 'nearest' else 'zeros'}{ctl}"
        )

    def check(self, forecaster: Any, data_times: Any, init: Any, members: int) -> None:
        """Refuse a model without older history steps to drop."""
        if int(forecaster.history) < 2:
            raise ConfigError(
                f"temporal dropout drops history steps of the input window, but model {forecaster.name!r} has a "
                f"history of {int(forecaster.history)} step (nothing to drop); use a model trained with history >= 2 "
                "or another method: --perturbation gaussian, spherical, bred or lagged."
            )

    def apply(self, forecaster: Any, data: Any, init: Any, *, members: int, seed: int, forcings: str = "auto",
              context: Any = None) -> Any:
        """The unperturbed initial state (the dropout acts in :meth:`advance`)."""
        self.check(forecaster, None, init, members)
        return forecaster.encode(data, init, members=members, forcings=forcings, context=context)

    def keep_mask(self, batch: int, history: int, step: int, seed: int) -> np.ndarray:
        """Bool ``[batch, history]``: the steps the model sees at model step ``step`` (newest always)."""
        rng = np.random.default_rng([int(seed), int(step)])
        keep = rng.random((batch, history)) >= self.scale
        keep[:, -1] = True
        if self.control:
            keep[0] = True
        return keep

    def advance(self, forecaster: Any, state: Any, seed: int) -> Any:
        """One model step from the window with dropped steps; the window carried on is the members' own."""
        if self.scale == 0 or (not self.every_step and state.step > 0):
            return forecaster.advance(state)
        hist = state.history
        keep = self.keep_mask(hist.shape[0], hist.shape[1], state.step, seed)
        if keep.all():
            return forecaster.advance(state)
        new = forecaster.advance(dataclasses.replace(state, history=dropout_window(hist, keep, self.fill)))
        new.history = torch.cat([hist[:, 1:], new.history[:, -1:]], dim=1)
        return new
