"""Time intervals and initial times: :func:`as_timedelta` and :func:`parse_init`."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from atmos.errors import ConfigError

__all__ = ["as_timedelta", "init_label", "parse_init", "reset_steps"]


def as_timedelta(x: Any, what: str) -> pd.Timedelta:
    """``x`` as a positive :class:`pandas.Timedelta` (``"6h"``, ``pd.Timedelta``, ...).

    Raises
    ------
    ConfigError
        ``x`` is not a time interval, or not positive (the message names ``what``).
    """
    try:
        td = pd.Timedelta(x)
    except (TypeError, ValueError) as err:
        raise ConfigError(f"{what} must be a time interval such as '6h', got {x!r}.") from err
    if td <= pd.Timedelta(0):
        raise ConfigError(f"{what} must be positive, got {x!r}.")
    return td


def _parse_one(s: Any) -> pd.Timestamp:
    try:
        t = pd.Timestamp(s)
    except (TypeError, ValueError) as err:
        raise ConfigError(
            f"cannot read the initial time {s!r}; use a date or datetime such as 2020-01-01 or 2020-01-01T06."
        ) from err
    if t.tzinfo is not None:
        t = t.tz_convert("UTC").tz_localize(None)
    return t


def _parse_range(init: str, s: str) -> pd.DatetimeIndex:
    parts = s.split("/") if "/" in s else s.split("..")
    if len(parts) not in (2, 3) or not all(p.strip() for p in parts):
        raise ConfigError(
            f"cannot read the range {init!r}; use START/END or START/END/FREQ (e.g. 2020-01-01/2020-01-05/12h)."
        )
    freq = as_timedelta(parts[2].strip(), "the range step") if len(parts) == 3 else pd.Timedelta("1D")
    start, end = _parse_one(parts[0].strip()), _parse_one(parts[1].strip())
    idx = pd.date_range(start, end, freq=freq)
    if len(idx) == 0:
        raise ConfigError(f"the range {init!r} is empty (its end is before its start).")
    return idx


def parse_init(init: Any) -> pd.DatetimeIndex:
    """Initial times from a date/datetime, a list, or a range.

    Accepted: a datetime-like; a sequence of them; a ``pandas.DatetimeIndex``; or a
    string: ``"2020-01-01"``, ``"2020-01-01T06"``, a comma-separated list
    ``"2020-01-01,2020-01-03T12"``, or a range ``"START/END"`` / ``"START..END"``
    (daily) or ``"START/END/12h"`` (every 12 h), end included.

    Returns
    -------
    pandas.DatetimeIndex
        ``datetime64[ns]``, timezone-naive (UTC).

    Raises
    ------
    ConfigError
        Unreadable dates, an empty range or duplicated times.
    """
    if init is None:
        raise ConfigError("no initial time given; pass init= (--init), e.g. 2020-01-01.")
    if isinstance(init, pd.DatetimeIndex):
        idx = init
    elif isinstance(init, str):
        s = init.strip()
        if "," in s:
            idx = pd.DatetimeIndex([_parse_one(p.strip()) for p in s.split(",") if p.strip()])
        elif "/" in s or ".." in s:
            idx = _parse_range(init, s)
        else:
            idx = pd.DatetimeIndex([_parse_one(s)])
    elif isinstance(init, (list, tuple, np.ndarray)):
        idx = pd.DatetimeIndex([_parse_one(v) for v in init])
    else:
        idx = pd.DatetimeIndex([_parse_one(init)])
    if len(idx) == 0:
        raise ConfigError(f"no initial time in {init!r}.")
    if idx.has_duplicates:
        raise ConfigError(
            f"initial times are repeated in {init!r}: {sorted(set(idx[idx.duplicated()].astype(str)))}."
        )
    return pd.DatetimeIndex(idx.values.astype("datetime64[ns]"))


def init_label(t: pd.Timestamp) -> str:
    """``2020-01-01T06`` (minutes appended when not 0): an initial time in file names."""
    return t.strftime("%Y-%m-%dT%H") + (t.strftime("%M") if t.minute else "")


def reset_steps(state_reset: Any, recurrent: bool, step: pd.Timedelta) -> tuple[pd.Timedelta | None, int]:
    """``(interval, steps)`` of a recurrent state reset (``"auto"``: 24 h for recurrent models, else none).

    Raises
    ------
    ConfigError
        The interval is not a time interval, or not a multiple of the model step ``step``.
    """
    if state_reset == "auto":
        state_reset = "24h" if recurrent else None
    reset = None if state_reset is None else as_timedelta(state_reset, "state_reset")
    if reset is None:
        return None, 0
    n = reset / step
    if abs(n - round(n)) > 1e-9:
        raise ConfigError(f"state_reset {reset} must be a multiple of the model step {step}.")
    return reset, round(n)
