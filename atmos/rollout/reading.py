"""xarray -> arrays and tensors: channels read from canonical data, checked, and normalized.

Every value read is checked: a NaN/Inf raises, and a value outside the plausible range of
its variable raises (:func:`atmos.io.names.check_plausible`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import torch
import xarray as xr

from atmos.channels import Channel, level_label
from atmos.errors import DataError
from atmos.io.check import decode_guard
from atmos.io.names import check_plausible
from atmos.io.normalizer import Normalizer

__all__ = ["normalize", "read_channels"]


def read_channels(ds: xr.Dataset, chans: Sequence[Channel], times: pd.DatetimeIndex | None) -> np.ndarray:
    """Channels at ``times`` (None: statics, the first time if any) in physical units.

    Returns
    -------
    numpy.ndarray ``[T, C, *data_grid]`` float32 (``T = 1`` for statics)

    Raises
    ------
    DataError
        A channel's variable lacks its level (or has levels it should not), holds NaN/Inf,
        implausible values, or cannot be decoded.
    """
    from atmos.io.coords import spatial_dims

    sdims = spatial_dims(ds)
    with decode_guard(ds, sorted({c.variable for c in chans}), "the input data"):
        out = None
        for k, (c, vals) in enumerate(zip(chans, _all_values(ds, chans, times, sdims), strict=True)):
            if isinstance(vals, Exception):
                raise vals  # in channel order, as when read one by one
            if out is None:
                out = np.empty((vals.shape[0], len(chans), *vals.shape[1:]), np.float32)
            out[:, k] = vals
            _check_values(c, vals, times)
        assert out is not None
        return out


def _all_values(
    ds: xr.Dataset, chans: Sequence[Channel], times: pd.DatetimeIndex | None, sdims: tuple[str, ...]
) -> list[np.ndarray | DataError]:
    """Every channel's values (or the DataError selecting it raised), lazy (dask) data computed in
    one graph: one read of each chunk, not one graph per channel."""
    sel: list[xr.DataArray | DataError] = []
    timed = ds
    if times is not None:  # the times selected once for every variable (one index lookup)
        names = list(dict.fromkeys(c.variable for c in chans))
        if all("time" in ds[v].dims for v in names):
            timed = ds[names].sel(time=times.values)
    for c in chans:
        try:
            sel.append(_channel_array(timed, c, times, sdims, timed is not ds))
        except DataError as err:
            sel.append(err)
    lazy = [k for k, x in enumerate(sel) if isinstance(x, xr.DataArray) and x.chunks is not None]
    if len(lazy) > 1:
        import dask

        for k, v in zip(lazy, dask.compute(*(sel[k].data for k in lazy)), strict=True):  # type: ignore[union-attr]
            sel[k] = sel[k].copy(data=v)  # type: ignore[union-attr]
    return [x if isinstance(x, DataError) else np.asarray(x.values, dtype=np.float32) for x in sel]


def _select_level(x: xr.DataArray, c: Channel) -> xr.DataArray:
    if c.level is not None:
        if "level" not in x.dims:
            raise DataError(f"channel {c.name!r} needs {c.variable!r} on pressure levels; it has dims {x.dims}.")
        have = np.asarray(x["level"].values, dtype=float)
        hit = np.flatnonzero(np.isclose(have, float(c.level)))
        if not hit.size:
            raise DataError(
                f"channel {c.name!r}: {c.variable!r} has no level {c.level}; levels are "
                f"{[level_label(v) for v in have]}."
            )
        return x.isel(level=int(hit[0]))
    if "level" in x.dims:
        raise DataError(f"channel {c.name!r} is a single field but {c.variable!r} has levels {x['level'].values}.")
    return x


def _channel_array(
    ds: xr.Dataset, c: Channel, times: pd.DatetimeIndex | None, sdims: tuple[str, ...], selected: bool = False
) -> xr.DataArray:
    """Channel ``c`` at ``times`` as a (possibly lazy) ``[T, *grid]`` DataArray (``T = 1`` for statics;
    ``selected``: ``ds`` holds ``times`` only)."""
    x = _select_level(ds[c.variable], c)
    if times is None:
        if "time" in x.dims:
            x = x.isel(time=0)
        return x.transpose(*sdims).expand_dims("_one")
    return (x if selected else x.sel(time=times.values)).transpose("time", *sdims)


def _check_values(c: Channel, vals: np.ndarray, times: pd.DatetimeIndex | None) -> None:
    if c.source == "dataset":
        check_plausible(c.variable, vals, f" (channel {c.name!r} of the input data)")
    bad = ~np.isfinite(vals)
    if bad.any():
        where = "" if times is None else f" at {times[np.flatnonzero(bad.reshape(len(vals), -1).any(1))[0]]}"
        raise DataError(
            f"the data's {c.name!r} ({c.variable}) has {int(bad.sum())} NaN/Inf values{where}; the initial "
            "conditions must be complete. Fill them or choose another initial time."
        )


def normalize(x: torch.Tensor, chans: Sequence[Channel], grid_ndim: int) -> torch.Tensor:
    """``(x - mean) / std`` per channel (the zero-std rule of :class:`~atmos.io.normalizer.Normalizer`).

    Parameters
    ----------
    x : Tensor ``[..., C, *grid]``
        Physical values; the channel axis is ``-1 - grid_ndim``.
    chans : sequence of Channel
        The ``C`` channels (their ``mean`` and ``std``).
    grid_ndim : int
        Number of grid dims (2 for lat-lon ``[nlat, nlon]``, 3 for HEALPix faces ``[12, n, n]``).

    Returns
    -------
    Tensor, shaped like ``x``
    """
    return Normalizer(chans, "state").normalize(x, dim=-1 - grid_ndim)
