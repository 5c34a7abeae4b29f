"""A smooth seasonal cycle per grid point, for predicting anomalies (``data.seasonal_harmonics``).

With ``data.seasonal_harmonics: N`` (N >= 1) a forecast model sees and predicts
*anomalies* from the seasonal cycle of its training period instead of full states:

    z(t) = (x(t) - mean) / std - c(t),      c(t) = (clim(t) - mean) / std

where ``clim(t)`` is, for each time-of-day slot (4 for 6-hourly data) and each channel and
grid point, a least-squares fit of a mean plus ``N`` annual harmonics to the training
period. The residual step is unchanged (``z(t+1) = z(t) + out * ratio``); the physical state
is ``x = (z + c(t)) * std + mean``. The seasonal and diurnal cycles are then carried by
``c(t)`` exactly, and a model whose anomalies decay returns to its training climate rather
than drifting away from it (the issue-10 failure of the full-state default: a t2m cycle
peaking in April). What it cannot do: represent a climate other than the training period's
(a forced trend, another decade's seasonal cycle).

The fit is an :class:`torch.nn.Module` with one buffer, ``coef``
``[S, 2N + 1, C, *grid]`` (normalized units), stored in checkpoints as
``seasonal.safetensors``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from atmos.errors import ConfigError, DataError, SourceError

__all__ = ["SEASONAL_FILE", "SeasonalCycle", "fit_seasonal_cycle", "load_seasonal"]

#: File name of the seasonal-cycle coefficients inside a checkpoint folder.
SEASONAL_FILE = "seasonal.safetensors"

_NS_PER_DAY = 86_400 * 10**9
_YEAR_DAYS = 365.2425


def _slots(step_ns: int) -> int:
    """Time-of-day slots for a time step: one per step in a day when the step divides a day, else 1."""
    if step_ns <= 0 or _NS_PER_DAY % step_ns:
        return 1
    return _NS_PER_DAY // step_ns


def _basis(times_ns: np.ndarray, harmonics: int) -> np.ndarray:
    """``[T, 2N + 1]`` float64: 1, cos(k phi), sin(k phi) for k = 1..N, phi the phase in the year."""
    days = times_ns.astype(np.float64) / _NS_PER_DAY
    phi = 2.0 * np.pi * np.mod(days, _YEAR_DAYS) / _YEAR_DAYS
    cols = [np.ones_like(phi)]
    for k in range(1, harmonics + 1):
        cols += [np.cos(k * phi), np.sin(k * phi)]
    return np.stack(cols, axis=-1)


class SeasonalCycle(nn.Module):
    """The seasonal cycle ``c(t)`` of a model's input channels, in normalized units.

    Parameters
    ----------
    coef : torch.Tensor ``[S, 2N + 1, C, *grid]``
        Coefficients per time-of-day slot: the mean, then cos/sin pairs of the annual
        harmonics 1..N.
    step_ns : int
        The data's time step in nanoseconds (fixes the time-of-day slots: ``S`` slots of
        ``1 day / S``).
    names : sequence of str
        The channel names, in order.
    """

    coef: torch.Tensor

    def __init__(self, coef: torch.Tensor, step_ns: int, names: Sequence[str]) -> None:
        super().__init__()
        if coef.ndim < 3 or coef.shape[1] % 2 != 1:
            raise DataError(f"seasonal-cycle coefficients must be [S, 2N+1, C, *grid]; got shape {tuple(coef.shape)}.")
        if coef.shape[2] != len(names):
            raise DataError(f"seasonal-cycle coefficients hold {coef.shape[2]} channels, names list {len(names)}.")
        self.harmonics = (coef.shape[1] - 1) // 2
        self.step_ns = int(step_ns)
        self.names = list(names)
        self.register_buffer("coef", coef.float().contiguous(), persistent=False)

    @property
    def slots(self) -> int:
        return int(self.coef.shape[0])

    def offset(self, times_ns: Any) -> torch.Tensor:
        """``c(t)`` at ``times_ns`` (int64 nanoseconds since 1970, any shape ``S_t``): ``[*S_t, C, *grid]``."""
        t = np.asarray(times_ns.cpu() if isinstance(times_ns, torch.Tensor) else times_ns, dtype=np.int64)
        flat = t.reshape(-1)
        slot = ((flat % _NS_PER_DAY) * self.slots // _NS_PER_DAY).astype(np.int64)
        basis = torch.from_numpy(_basis(flat, self.harmonics)).to(self.coef)  # [T, 2N+1]
        coef = self.coef[torch.from_numpy(slot).to(self.coef.device)]  # [T, 2N+1, C, *grid]
        out = torch.einsum("tk,tk...->t...", basis, coef)
        return out.reshape(*t.shape, *out.shape[1:])

    def window_offsets(self, last_input_ns: torch.Tensor, history: int, steps: int) -> torch.Tensor:
        """``c(t)`` of training windows: ``[B, history + steps, C, *grid]`` for windows whose last
        input time is ``last_input_ns`` ``[B]`` (int64 ns)."""
        rel = np.arange(-(history - 1), steps + 1, dtype=np.int64) * self.step_ns
        t = np.asarray(last_input_ns.cpu(), dtype=np.int64).reshape(-1, 1) + rel
        return self.offset(t)

    # -- storage ----------------------------------------------------------------------------
    def to_meta(self) -> dict[str, Any]:
        """The checkpoint's ``seasonal`` section (the coefficients go to :data:`SEASONAL_FILE`)."""
        return {"harmonics": self.harmonics, "slots": self.slots, "step_ns": self.step_ns,
                "channels": self.names, "file": SEASONAL_FILE}

    @classmethod
    def from_tensors(cls, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> SeasonalCycle:
        if "coef" not in tensors:
            raise DataError(f"{SEASONAL_FILE} has no 'coef' tensor (found {sorted(tensors)}); re-save the checkpoint.")
        return cls(tensors["coef"], int(meta["step_ns"]), meta["channels"])

    def extra_repr(self) -> str:
        return f"harmonics={self.harmonics}, slots={self.slots}, channels={len(self.names)}"


def fit_seasonal_cycle(
    z: np.ndarray, times_ns: np.ndarray, step_ns: int, harmonics: int, names: Sequence[str]
) -> SeasonalCycle:
    """Least-squares fit of a mean plus ``harmonics`` annual harmonics per time-of-day slot.

    Parameters
    ----------
    z : numpy.ndarray ``[T, C, *grid]``
        Normalized states of the training period.
    times_ns : numpy.ndarray ``[T]`` int64
    step_ns : int
        The data's time step.
    harmonics : int
        Annual harmonics N >= 1. One year of data supports about N <= 4 before the fit
        starts following that year's weather (365 days / N is the shortest period fitted).
    names : sequence of str

    Raises
    ------
    ConfigError
        ``harmonics`` < 1, or too few times in a slot for the fit (the message says how many).
    """
    if isinstance(harmonics, bool) or int(harmonics) < 1:
        raise ConfigError(f"seasonal harmonics must be an integer >= 1, got {harmonics!r}.")
    harmonics = int(harmonics)
    S = _slots(int(step_ns))
    t = np.asarray(times_ns, np.int64)
    slot = (t % _NS_PER_DAY) * S // _NS_PER_DAY
    coef = np.zeros((S, 2 * harmonics + 1, *z.shape[1:]), np.float32)
    flat = z.reshape(z.shape[0], -1)
    for s in range(S):
        rows = np.flatnonzero(slot == s)
        need = 4 * (2 * harmonics + 1)
        span = (t[rows].max() - t[rows].min()) / _NS_PER_DAY if rows.size else 0.0
        if rows.size < need or span < 300:
            raise ConfigError(
                f"fitting {harmonics} seasonal harmonics needs at least {need} times per time-of-day slot over "
                f"about a year; slot {s} of {S} has {rows.size} times over {span:.0f} days. Train on a full year, or "
                "set data.seasonal_harmonics: 0."
            )
        B = _basis(t[rows], harmonics)
        sol, *_ = np.linalg.lstsq(B, flat[rows].astype(np.float64), rcond=None)
        coef[s] = sol.reshape(coef.shape[1:]).astype(np.float32)
    return SeasonalCycle(torch.from_numpy(coef), int(step_ns), names)


def load_seasonal(folder: Any, meta: Any) -> SeasonalCycle | None:
    """The seasonal cycle of a checkpoint folder (``meta.files["seasonal"]``, described by
    ``meta.normalization["seasonal"]``; ``meta`` a :class:`atmos.models.checkpoint.CheckpointMeta`),
    or None when the model has none.

    Raises
    ------
    SourceError
        The metadata names a seasonal cycle whose file is missing or damaged.
    """
    sec = (meta.normalization or {}).get("seasonal")
    if not sec:
        return None
    from pathlib import Path

    from safetensors.torch import load_file

    f = Path(folder) / str(meta.files.get("seasonal", SEASONAL_FILE))
    try:
        tensors = load_file(str(f))
    except Exception as err:
        raise SourceError(
            f"the checkpoint's seasonal cycle {str(f)!r} cannot be read ({type(err).__name__}: {err}); the model "
            "predicts anomalies from it and cannot run without it. Copy the checkpoint folder again, whole."
        ) from None
    return SeasonalCycle.from_tensors(tensors, sec)
