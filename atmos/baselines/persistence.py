"""Persistence forecast baseline: the state at initialisation, held for every lead time.

``forecast[time=t0, prediction_timedelta=dt] = truth[t0]`` for every lead ``dt``, in the
WeatherBench2 forecast layout, so the same metric code scores it. Its RMSE at lead ``dt``
is the RMS of the lagged difference ``truth[t0 + dt] - truth[t0]`` over the init times,
and it is exact (RMSE 0) at lead 0. At long leads its MSE tends to twice the
climatological variance (two independent states), i.e. worse than the climatology
forecast by a factor ``sqrt(2)`` in RMSE.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import xarray as xr

from atmos.baselines.climatology import as_init_times, as_leads
from atmos.errors import DataError

__all__ = ["persistence_forecast"]


def persistence_forecast(
    truth: xr.Dataset,
    init_times: Any,
    leads: Any,
    variables: Sequence[str] | None = None,
) -> xr.Dataset:
    """Persistence forecasts from ``truth`` in the WeatherBench2 forecast layout (lazy).

    Parameters
    ----------
    truth : Dataset
        A canonical cube with dims ``(time, [level], latitude, longitude)`` (or ``cell``).
    init_times : array-like of datetimes
        Initialisation times; each must be a time step of ``truth``.
    leads : array-like of timedeltas or strings (``"6h"``, ``"1D"``)
        Lead times (``prediction_timedelta``), usually including 0.
    variables : sequence of str, optional
        Variables to forecast (default: every variable of ``truth`` with a time dimension).

    Returns
    -------
    Dataset
        Dims ``(time, prediction_timedelta, [level], latitude, longitude)`` where
        ``time`` holds the init times; the values do not depend on the lead (a
        broadcast, no copy) and keep the truth's dtype.

    Raises
    ------
    DataError
        An init time is not in ``truth``, or a variable is missing.
    """
    if "time" not in truth.dims:
        raise DataError(f"the truth has no 'time' dimension (dims {sorted(map(str, truth.dims))}).")
    t0 = as_init_times(init_times)
    dt = as_leads(leads)
    names = list(variables) if variables is not None else [k for k, v in truth.data_vars.items() if "time" in v.dims]
    missing = [v for v in names if v not in truth.data_vars]
    if missing:
        raise DataError(f"variable(s) {missing} are not in the truth (it has {sorted(map(str, truth.data_vars))}).")
    have = truth.indexes["time"]
    absent = ~np.isin(t0, np.asarray(have.values, dtype=t0.dtype)) if have.dtype.kind == "M" else None
    if absent is not None and absent.any():
        bad = t0[absent]
        raise DataError(
            f"{int(absent.sum())} init time(s) are not time steps of the truth, e.g. {bad[:3].tolist()}; "
            f"the truth covers {have[0]} .. {have[-1]}: persistence needs the state at each init time."
        )
    x0 = truth[names].sel(time=t0)
    out = x0.expand_dims(prediction_timedelta=dt, axis=1)
    out = out.transpose("time", "prediction_timedelta", ...)
    out.attrs = {"title": "persistence forecast (atmos.baselines)"}
    return out
