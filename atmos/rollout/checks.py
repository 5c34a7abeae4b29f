"""Checks of a rollout against its data and of its states: the history an initial time needs,
and NaN/Inf in a new state (which stops the rollout, naming the step and the variable)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch

from atmos.channels import Channel
from atmos.errors import DataError

__all__ = ["check_finite", "history_times"]


def history_times(data_times: pd.DatetimeIndex, init: Any, history: int, step: pd.Timedelta) -> pd.DatetimeIndex:
    """The ``history`` input times ``init - (history-1) step .. init``, checked against the data.

    Raises
    ------
    DataError
        A needed time is not in ``data_times``: the message says whether ``init`` lies off the
        data's time grid (and names the nearest valid times) or outside its period.
    """
    t0 = pd.Timestamp(init)
    times = pd.DatetimeIndex([t0 - k * step for k in range(history - 1, -1, -1)])
    miss = times.difference(data_times)
    if not len(miss):
        return times
    if not len(data_times):
        raise DataError(f"initial time {t0} cannot be used: the data have no time steps.")
    span = f"{data_times[0]} .. {data_times[-1]}"
    if data_times[0] <= t0 <= data_times[-1] and t0 not in data_times:
        j = int(data_times.searchsorted(t0))
        near = [str(data_times[k]) for k in (j - 1, j) if 0 <= k < len(data_times)]
        steps = np.unique(np.diff(data_times.values[:50]))
        grid = f"every {pd.Timedelta(steps[0])}" if len(steps) == 1 else "its time steps"
        raise DataError(
            f"initial time {t0} is inside the data's period ({span}) but not on its time grid ({grid}); "
            f"the nearest valid times are {' and '.join(near)}. Choose an --init on the grid."
        )
    raise DataError(
        f"initial time {t0} needs the data at {list(map(str, times))} (history of "
        f"{history} step(s) of {step}), but {list(map(str, miss))} are not in the data "
        f"({span}). Choose an --init inside the data's period."
    )


def check_finite(
    x: torch.Tensor,
    chans: Sequence[Channel],
    *,
    init: np.datetime64,
    step: int,
    time: np.datetime64,
    diagnostics: bool = False,
) -> None:
    """Raise when a new state has NaN or Inf values.

    Parameters
    ----------
    x : Tensor ``[B, C, *grid]``
        The new state (prognostic channels, or decoder diagnostics with ``diagnostics=True``).
    chans : sequence of Channel
        The ``C`` channels.
    init, time : numpy.datetime64
        Initial time and valid time of ``x``.
    step : int
        The model step that produced ``x`` (1 = the first).

    Raises
    ------
    DataError
        Names the step, lead, valid time, the first bad variable, its count, the members and other
        bad channels.
    """
    finite = torch.isfinite(x)
    if bool(finite.all()):
        return
    bad = (~finite).flatten(2).sum(-1)  # [B, C]
    per_channel = bad.sum(0)
    ch = int(torch.nonzero(per_channel)[0])
    c = chans[ch]
    members = torch.nonzero(bad[:, ch]).flatten().tolist()
    lead = pd.Timedelta(time - init)
    others = [chans[i].name for i in torch.nonzero(per_channel).flatten().tolist()[1:]]
    if diagnostics:
        what = f"variable {c.variable!r} (diagnosed by a lightweight decoder from the backbone's latent)"
        who = "The decoder diverged"
    else:
        what = f"variable {c.variable!r}{'' if c.level is None else f' at level {c.level}'} (channel {c.name!r})"
        who = "The model diverged"
    raise DataError(
        f"the forecast from {pd.Timestamp(init)} became non-finite at step {step} "
        f"(lead {lead}, valid time {pd.Timestamp(time)}): {what} has {int(per_channel[ch])} "
        f"NaN/Inf values{f' in member(s) {members[:5]}' if bad.shape[0] > 1 else ''}"
        f"{f'; also {others[:5]}' if others else ''}. {who}: the rollout was stopped, "
        "nothing after the previous lead was written."
    )
