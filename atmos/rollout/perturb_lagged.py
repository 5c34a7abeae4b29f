"""Lagged ensembles: members started from several earlier initial times, valid at the same times.

Member ``j`` (``j = 0 .. members - 1``) is the deterministic forecast from ``t0 - j x lag``, run
``j x lag / step`` model steps up to ``t0``; from there all members advance together, so every
member of the output is valid at ``t0 + lead``. Member 0 is the deterministic forecast from ``t0``
itself (the control); at lead 0 member ``j`` holds its ``j x lag`` forecast. The method has no
scale: the spread comes from the forecasts' different ages. A recurrent model's members start at
``t0`` from a fresh state (``None``), as a forecast from ``t0`` does; the history window of each
member is its own forecast.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pandas as pd
import torch

from atmos.errors import ConfigError, DataError
from atmos.rollout.perturbation import hours
from atmos.rollout.times import as_timedelta

__all__ = ["LaggedPerturbation"]


@dataclass(frozen=True)
class LaggedPerturbation:
    """Members from ``t0, t0 - lag, t0 - 2 lag, ...``, advanced to ``t0`` (no scale).

    Parameters
    ----------
    lag : timedelta-like or None
        Interval between the members' initial times (a multiple of the model's step; None: the
        model's step).
    scale : float
        Must be 0: a lagged ensemble has no perturbation amplitude.
    """

    lag: Any = None
    scale: float = 0.0
    method = "lagged"

    def __post_init__(self) -> None:
        if self.scale not in (0, 0.0, None):
            raise ConfigError(
                f"the lagged ensemble has no scale (got --perturbation-scale {self.scale!r}); its spread comes "
                "from the members' earlier initial times. Drop --perturbation-scale and set the interval with "
                "--perturbation-option lag=DURATION (e.g. lag=12h)."
            )
        if self.lag is not None:
            self._lag_td()

    def _lag_td(self, forecaster: Any = None) -> pd.Timedelta:
        if self.lag is None:
            if forecaster is None:
                raise ConfigError("the lag of a lagged ensemble defaults to the model's step: pass a forecaster.")
            return pd.Timedelta(forecaster.step)
        return as_timedelta(self.lag, "the lag of a lagged ensemble (--perturbation-option lag=DURATION)")

    def params(self) -> dict[str, Any]:
        """The parameters recorded in ``atmos_perturbation``."""
        return {"lag": None if self.lag is None else str(self._lag_td())}

    def describe(self) -> str:
        """One line for the forecast's attributes."""
        lag = "the model's step" if self.lag is None else hours(self._lag_td())
        return (
            f"lagged ensemble: member j starts from t0 - j x {lag} and is valid at t0 + lead; member 0 is the "
            "deterministic forecast from t0"
        )

    def lag_steps(self, forecaster: Any) -> int:
        """Model steps per lag (the lag must be a multiple of the model's step)."""
        td = self._lag_td(forecaster)
        ratio = td / forecaster.step
        if abs(ratio - round(ratio)) > 1e-9 or round(ratio) < 1:
            raise ConfigError(
                f"the lag {td} is not a multiple of model {forecaster.name!r}'s step {forecaster.step}; pass "
                "--perturbation-option lag=DURATION with a multiple of it."
            )
        return round(ratio)

    def member_inits(self, forecaster: Any, init: Any, members: int) -> list[pd.Timestamp]:
        """Initial time of each member: ``init - j x lag`` for ``j = 0 .. members - 1``."""
        dt = self.lag_steps(forecaster) * pd.Timedelta(forecaster.step)
        return [pd.Timestamp(init) - j * dt for j in range(int(members))]

    def check(self, forecaster: Any, data_times: Any, init: Any, members: int) -> None:
        """Every member's initial time (and its history) must be in the data."""
        inits = self.member_inits(forecaster, init, members)
        try:
            for t in inits:
                forecaster.check_init(data_times, t)
        except DataError as err:
            raise DataError(
                f"the lagged ensemble for initial time {pd.Timestamp(init)} starts its {members} members at "
                f"{inits[-1]} .. {inits[0]}: {err} Use a later --init, fewer --members or a shorter lag "
                "(--perturbation-option lag=DURATION)."
            ) from err

    def apply(self, forecaster: Any, data: Any, init: Any, *, members: int, seed: int, forcings: str = "auto",
              context: Any = None) -> Any:
        """The members' state at ``init``: member ``j`` forecast from ``init - j x lag`` up to ``init``."""
        n = self.lag_steps(forecaster)
        states = []
        for j, t in enumerate(self.member_inits(forecaster, init, members)):
            s = forecaster.encode(data, t, members=1, forcings=forcings, context=context)
            for _ in range(j * n):
                s = forecaster.advance(s)
            states.append(s)
        state = forecaster.encode(data, init, members=1, forcings=forcings, context=context)
        state.history = torch.cat([s.history for s in states], dim=0)
        return state

    def advance(self, forecaster: Any, state: Any, seed: int) -> Any:
        """One model step of all members."""
        return forecaster.advance(state)
