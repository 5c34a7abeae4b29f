"""ClimateBench NRMSE metrics (Watson-Parris et al. 2022, JAMES 14, e2021MS002954).

Definitions, exactly as the benchmark computes them (``get_rmse`` / the evaluation
notebooks of ClimateBench, also used by Lütjens et al.). Let ``y`` be the truth
and ``x`` the prediction on the evaluation years ``t`` in the window (2080-2100
inclusive by default; ClimateBench's ``sel(time=slice(2080, None))`` on its test
scenario that ends in 2100), ``<.>`` the weighted spatial mean with weights
``w_i = cos(latitude_i)`` and ``|.|_t`` the mean over those years:

* spatial NRMSE: ``sqrt(< (|x|_t - |y|_t)^2 >) / |< |y|_t >|`` - the weighted RMSE
  between the time-mean maps, divided by the absolute global mean of the time-mean truth;
* global NRMSE: ``sqrt(| (<x> - <y>)^2 |_t) / |< |y|_t >|`` - the RMSE over years of
  the global-mean series, divided by the same normaliser;
* total NRMSE: ``spatial + alpha * global`` with ``alpha = 5``.

The truth is the ensemble mean: a ``member`` dimension is averaged away in the
truth (and in the prediction, for a stochastic emulator's members) before scoring.
ClimateBench targets are *changes* relative to a pre-industrial control, so that
the normaliser is the mean warming (or precipitation change) of the window; score
anomalies, not absolute temperatures in kelvin (the normaliser would be ~288 K).

Weights: ``cos(latitude)`` at cell centres, as ClimateBench does - **not** the
WeatherBench2 cell-area weights of :func:`atmos.io.coords.area_weights`. On an
equiangular grid without pole points (ClimateBench's 96x144 NorESM2 grid, the
cmip6-ng 2.5-degree grid) the two are proportional (cell area ``∝ cos(lat) *
2 sin(dlat/2)``), so the scores agree; on grids with pole points ``cos(±90) = 0``
drops the polar rows that the area weights keep, and Gaussian grids differ
slightly. On a HEALPix ``cell`` grid (equal-area cells) every cell gets the same
weight, which is what ``cos(latitude)`` approximates on a regular grid.

This module imports only numpy and xarray (no atmos.io, no torch).
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any

import numpy as np
import xarray as xr

from atmos.errors import DataError, GridError

__all__ = [
    "ALPHA",
    "WINDOW",
    "climatebench_scores",
    "climatebench_weights",
    "global_nrmse",
    "spatial_nrmse",
    "total_nrmse",
]

WINDOW: tuple[int, int] = (2080, 2100)
ALPHA: float = 5.0
_LAT = ("latitude", "lat")
_LON = ("longitude", "lon")


def _spatial(da: xr.DataArray | xr.Dataset) -> tuple[tuple[str, ...], str | None]:
    """Spatial dims and the latitude name (None for HEALPix)."""
    if "cell" in da.dims:
        return ("cell",), None
    lat = next((n for n in _LAT if n in da.dims), None)
    lon = next((n for n in _LON if n in da.dims), None)
    if lat is None or lon is None:
        raise GridError(
            f"no spatial grid in dims {sorted(map(str, da.dims))}: ClimateBench metrics need 'latitude' and "
            "'longitude' (or 'lat'/'lon') dimensions, or a HEALPix 'cell' dimension."
        )
    if lat not in da.coords:
        raise GridError(f"dimension {lat!r} has no coordinate values; cos-latitude weights need them.")
    return (lat, lon), lat


def climatebench_weights(da: xr.DataArray | xr.Dataset) -> xr.DataArray:
    """ClimateBench spatial weights: ``cos(latitude)`` (1-D on the latitude dim), or ones on HEALPix ``cell``.

    Not normalized (xarray's weighted mean normalizes); see the module docstring for
    how they relate to cell-area weights.
    """
    _, lat = _spatial(da)
    if lat is None:
        return xr.DataArray(np.ones(da.sizes["cell"]), dims=("cell",), name="weights")
    w = np.cos(np.deg2rad(da[lat].astype(np.float64)))
    w = w.clip(min=0.0)  # cos(90.000001 deg) rounding
    w.name = "weights"
    return w


def _years(da: xr.DataArray | xr.Dataset, what: str) -> np.ndarray:
    if "time" not in da.dims:
        raise DataError(f"{what} has no 'time' dimension (dims {sorted(map(str, da.dims))}); expected yearly data.")
    t = da["time"]
    if np.issubdtype(t.dtype, np.integer) or (
        np.issubdtype(t.dtype, np.floating) and np.all(np.mod(t.values, 1) == 0)
    ):
        years = np.asarray(t.values, dtype=np.int64)
    else:
        try:
            years = np.asarray(t.dt.year.values, dtype=np.int64)
        except (AttributeError, TypeError) as err:
            raise DataError(
                f"{what} time coordinate of dtype {t.dtype} is neither integer years nor dates; "
                "expected years (e.g. 2080) or datetimes/cftime dates."
            ) from err
    if np.unique(years).size != years.size:
        raise DataError(
            f"{what} has several time steps in the same year ({years.size} steps, {np.unique(years).size} years); "
            "ClimateBench scores annual means: average per year first (.groupby('time.year').mean())."
        )
    return years


def _window_select(da: Any, window: tuple[int | None, int | None], what: str) -> tuple[Any, np.ndarray]:
    years = _years(da, what)
    lo, hi = window
    sel = np.ones(years.size, dtype=bool)
    if lo is not None:
        sel &= years >= lo
    if hi is not None:
        sel &= years <= hi
    if not sel.any():
        raise DataError(
            f"{what} has no year in the evaluation window {lo}-{hi} (its years: {years.min()}-{years.max()}); "
            "pass window=(first, last) years that the data covers."
        )
    return da.isel(time=np.nonzero(sel)[0]), years[sel]


def _member_mean(da: Any) -> Any:
    return da.mean("member", keep_attrs=True) if "member" in da.dims else da


def _prepare(truth: xr.DataArray, pred: xr.DataArray, window: tuple[int | None, int | None], name: Hashable):
    truth, pred = _member_mean(truth), _member_mean(pred)
    dims, lat = _spatial(truth)
    pdims, _ = _spatial(pred)
    if pdims != dims:
        raise GridError(f"{name}: truth is on spatial dims {dims} but the prediction on {pdims}; regrid one of them.")
    for d in dims:
        if d in truth.coords or d in pred.coords:
            a = np.asarray(truth[d].values) if d in truth.coords else np.arange(truth.sizes[d])
            b = np.asarray(pred[d].values) if d in pred.coords else np.arange(pred.sizes[d])
            if a.shape != b.shape or not np.allclose(a, b, rtol=0, atol=1e-6):
                raise GridError(
                    f"{name}: the prediction's {d!r} ({b.size} values, {b.ravel()[:1]}..{b.ravel()[-1:]}) differs "
                    f"from the truth's ({a.size} values, {a.ravel()[:1]}..{a.ravel()[-1:]}); both must be on the "
                    "same grid: regrid the prediction to the truth grid first."
                )
    for obj, what in ((truth, "truth"), (pred, "prediction")):
        extra = [d for d in obj.dims if d not in (*dims, "time")]
        if extra:
            raise DataError(
                f"{name}: {what} has extra dims {extra}; expected only 'time' and the spatial dims "
                "(and 'member'). Select one scenario/level first, e.g. .sel(scenario='ssp245')."
            )
    truth, ty = _window_select(truth, window, f"{name}: truth")
    pred, py = _window_select(pred, window, f"{name}: prediction")
    if ty.shape != py.shape or not np.array_equal(ty, py):
        raise DataError(
            f"{name}: the prediction covers years {py.tolist()} of the window but the truth {ty.tolist()}; "
            "predict every year of the evaluation window."
        )
    t = truth.transpose("time", *dims).values.astype(np.float64)
    p = pred.transpose("time", *dims).values.astype(np.float64)
    for arr, what in ((t, "truth"), (p, "prediction")):
        bad = ~np.isfinite(arr)
        if bad.any():
            raise DataError(
                f"{name}: {what} has {int(bad.sum())} NaN/inf value(s) in the evaluation window "
                f"{window[0]}-{window[1]}; ClimateBench scores complete fields: fill or mask them consistently."
            )
    w = climatebench_weights(truth)
    if lat is None:
        wfull = np.ones(t.shape[1:])
    else:
        wfull = np.broadcast_to(w.values[:, None] if dims[0] == lat else w.values[None, :], t.shape[1:])
    return t, p, wfull / wfull.sum()


def _nrmse_arrays(t: np.ndarray, p: np.ndarray, w: np.ndarray, name: Hashable) -> tuple[float, float]:
    """(spatial, global) NRMSE of [time, *space] arrays with normalized weights ``w``."""
    axes = tuple(range(1, t.ndim))
    tm, pm = t.mean(axis=0), p.mean(axis=0)
    norm = abs(float(np.sum(w * tm)))
    if not norm > 0:
        raise DataError(
            f"{name}: the global mean of the time-mean truth is 0, so NRMSE is undefined; ClimateBench "
            "normalises by it (score changes relative to pre-industrial, not centred anomalies)."
        )
    spatial = float(np.sqrt(np.sum(w * (pm - tm) ** 2))) / norm
    gt = np.sum(w * t, axis=axes)
    gp = np.sum(w * p, axis=axes)
    glob = float(np.sqrt(np.mean((gp - gt) ** 2))) / norm
    return spatial, glob


def _apply(truth: Any, pred: Any, window: Any, fn) -> Any:
    if isinstance(truth, xr.Dataset) != isinstance(pred, xr.Dataset):
        raise DataError("truth and prediction must both be Datasets or both DataArrays.")
    if isinstance(truth, xr.DataArray):
        return fn(*_nrmse_arrays(*_prepare(truth, pred, window, truth.name or "field"), truth.name))
    if not isinstance(truth, xr.Dataset):
        raise DataError(f"truth is a {type(truth).__name__}; expected an xarray Dataset or DataArray.")
    missing = [v for v in truth.data_vars if v not in pred.data_vars]
    if missing:
        raise DataError(
            f"the prediction lacks variable(s) {missing} of the truth (it has {list(pred.data_vars)}); "
            "select the common variables first, e.g. truth[['tas']]."
        )
    return xr.Dataset(
        {v: fn(*_nrmse_arrays(*_prepare(truth[v], pred[v], window, v), v)) for v in truth.data_vars}
    )


def spatial_nrmse(truth: Any, pred: Any, window: tuple[int | None, int | None] = WINDOW) -> Any:
    """ClimateBench spatial NRMSE (see module docstring).

    Parameters
    ----------
    truth, pred : DataArray or Dataset, dims ``(member?, time, latitude, longitude)`` or ``(time, cell)``
        Yearly values; ``time`` as integer years or dates. ``member`` is averaged.
    window : (int, int)
        First and last year scored, inclusive (``None`` = open end).

    Returns
    -------
    float for DataArrays; a Dataset of 0-d values (one per variable) for Datasets.
    """
    return _apply(truth, pred, window, lambda s, g: s)


def global_nrmse(truth: Any, pred: Any, window: tuple[int | None, int | None] = WINDOW) -> Any:
    """ClimateBench global NRMSE: RMSE over years of the cos-lat global means / |global mean of time-mean truth|."""
    return _apply(truth, pred, window, lambda s, g: g)


def total_nrmse(truth: Any, pred: Any, window: tuple[int | None, int | None] = WINDOW, alpha: float = ALPHA) -> Any:
    """ClimateBench total NRMSE: ``spatial + alpha * global`` (``alpha = 5``)."""
    return _apply(truth, pred, window, lambda s, g: s + alpha * g)


def climatebench_scores(
    truth: xr.Dataset | xr.DataArray,
    pred: xr.Dataset | xr.DataArray,
    window: tuple[int | None, int | None] = WINDOW,
    alpha: float = ALPHA,
) -> xr.Dataset:
    """All three ClimateBench scores per variable.

    Returns
    -------
    Dataset
        One variable per field, dim ``metric = ["spatial", "global", "total"]``;
        ``scores.to_dataframe()`` gives the usual table.
    """
    if isinstance(truth, xr.DataArray):
        name = truth.name if truth.name is not None else "field"
        truth = truth.to_dataset(name=name)
        if not isinstance(pred, xr.DataArray):
            raise DataError("truth is a DataArray but the prediction is not; pass two DataArrays or two Datasets.")
        pred = pred.to_dataset(name=name)
    out = _apply(truth, pred, window, lambda s, g: xr.DataArray([s, g, s + alpha * g], dims=("metric",)))
    out = out.assign_coords(metric=["spatial", "global", "total"])
    out.attrs = {"window": f"{window[0]}-{window[1]}", "alpha": alpha, "weights": "cos(latitude)"}
    return out
