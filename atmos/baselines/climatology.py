"""The climatology forecast baseline: predict, for every valid time, the climatological mean.

The climatology itself (its layout, how :func:`compute_climatology` estimates it, reading
and writing it, :func:`climatology_at`) lives in :mod:`atmos.io.climatology`, the one home
of the climatology dataset, which the anomaly correlation coefficient
(:class:`atmos.metrics.ACC`) uses too; its functions are re-exported here. A skilful
forecast must beat the climatology forecast (:func:`climatology_forecast`) at long leads;
its ACC is 0 by construction.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from atmos.errors import ConfigError, DataError
from atmos.io.climatology import (
    DAYS,
    _time_varying,
    as_init_times,
    climatology_at,
    compute_climatology,
    load_climatology,
    save_climatology,
)

__all__ = [
    "DAYS",
    "as_init_times",
    "as_leads",
    "climatology_at",
    "climatology_forecast",
    "compute_climatology",
    "load_climatology",
    "save_climatology",
    "valid_times",
]

_SPATIAL = ("latitude", "longitude", "cell")


# ======================================================================================
# helpers shared with the persistence baseline
# ======================================================================================
def as_leads(leads: Any) -> np.ndarray:
    """Lead times as a 1-D ``timedelta64[ns]`` array (``"6h"``, ``np.timedelta64``, an index ...)."""
    if isinstance(leads, xr.DataArray):
        leads = leads.values
    if isinstance(leads, (str, pd.Timedelta, np.timedelta64)):
        leads = [leads]
    try:
        out = pd.to_timedelta(list(np.atleast_1d(leads))).to_numpy("timedelta64[ns]")
    except (TypeError, ValueError) as err:
        raise ConfigError(
            f"lead times {leads!r} are not time spans; pass timedeltas or strings such as '6h', '1D'."
        ) from err
    if out.size == 0:
        raise ConfigError("no lead times given; pass at least one, e.g. pd.timedelta_range('0h', '10D', freq='6h').")
    return out


def valid_times(init_times: Any, leads: Any) -> xr.DataArray:
    """Valid times ``time + prediction_timedelta`` as a DataArray with dims ``(time, prediction_timedelta)``."""
    t0 = as_init_times(init_times)
    dt = as_leads(leads)
    return xr.DataArray(
        t0[:, None] + dt[None, :],
        dims=("time", "prediction_timedelta"),
        coords={"time": t0, "prediction_timedelta": dt},
        name="valid_time",
    )


def climatology_forecast(
    clim: xr.Dataset,
    init_times: Any,
    leads: Any,
    like: xr.Dataset | None = None,
    variables: Sequence[str] | None = None,
) -> xr.Dataset:
    """The climatology forecast in the WeatherBench2 forecast layout.

    ``forecast[time=t0, prediction_timedelta=dt] = clim[dayofyear(t0 + dt), hour(t0 + dt)]``.

    Parameters
    ----------
    clim : Dataset
        From :func:`compute_climatology` / :func:`load_climatology`.
    init_times, leads
        Initialisation times and lead times (``"6h"``, timedeltas ...).
    like : Dataset, optional
        A canonical cube (the truth): its time-varying variables present in ``clim`` and
        its levels are selected, and its grid must match the climatology's.
    variables : sequence of str, optional
        Variables to forecast (default: those of ``like``, else all of ``clim``).

    Returns
    -------
    Dataset
        Dims ``(time, prediction_timedelta, [level], latitude, longitude)``; values are
        exactly the climatology's (same dtype), so its ACC against that climatology is 0.
    """
    if variables is None:
        variables = [v for v in _time_varying(like) if v in clim.data_vars] if like is not None else list(clim.data_vars)
        if not variables:
            raise DataError(
                f"the climatology has none of the variables of the reference cube "
                f"(climatology: {sorted(map(str, clim.data_vars))}; cube: {sorted(map(str, like.data_vars))})."
            )
    missing = [v for v in variables if v not in clim.data_vars]
    if missing:
        raise DataError(
            f"variable(s) {missing} are not in the climatology (it has {sorted(map(str, clim.data_vars))}); "
            "recompute it with those variables."
        )
    c = clim[list(variables)]
    if like is not None:
        for d in _SPATIAL:
            if (d in like.dims) != (d in c.dims) or (
                d in like.coords and d in c.coords and not _same_coord(like[d].values, c[d].values)
            ):
                raise DataError(
                    f"the climatology's {d!r} differs from the reference cube's; compute the climatology on "
                    "the same grid (or regrid it with atmos.io.regrid.regrid)."
                )
        if "level" in like.dims and "level" in c.dims:
            lev = like["level"].values
            absent = sorted(set(lev.tolist()) - set(c["level"].values.tolist()))
            if absent:
                raise DataError(f"levels {absent} of the reference cube are not in the climatology.")
            c = c.sel(level=lev)
        c = c.assign_coords({d: like[d] for d in ("latitude", "longitude") if d in like.coords and d in c.dims})
    vt = valid_times(init_times, leads)
    out = climatology_at(c, vt).assign_coords(valid_time=vt)
    out = out.transpose("time", "prediction_timedelta", ...)
    out.attrs = {"title": "climatology forecast (atmos.baselines)", **{f"climatology_{k}": v for k, v in clim.attrs.items()
                                                                     if isinstance(v, (str, int, float))}}
    return out


def _same_coord(a: np.ndarray, b: np.ndarray) -> bool:
    a, b = np.asarray(a), np.asarray(b)
    if a.shape != b.shape:
        return False
    if np.issubdtype(a.dtype, np.number) and np.issubdtype(b.dtype, np.number):
        return bool(np.allclose(a, b, rtol=0, atol=1e-6))
    return bool(np.array_equal(a, b))
