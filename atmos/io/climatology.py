"""Day-of-year x hour-of-day climatology: computing, reading, writing, and indexing it at valid times.

The climatology is laid out like the WeatherBench2 climatology zarr
(``gs://weatherbench2/datasets/era5-hourly-climatology/...``): one variable per field
with dims ``(hour, dayofyear, [level], latitude, longitude)`` (or ``(..., cell)``),
``hour`` = 0, 6, 12, 18 and ``dayofyear`` = 1..366. It serves two purposes:

* the reference for anomalies in the anomaly correlation coefficient
  (:class:`atmos.metrics.ACC`), and
* the *climatology forecast* (:func:`atmos.baselines.climatology_forecast`): predict, for every valid
  time, the climatological mean of its day of year and hour. A skilful forecast must beat
  it at long leads; its ACC is 0 by construction.

How :func:`compute_climatology` estimates it: as WeatherBench2's
``weatherbench2.utils.compute_hourly_stat`` (``scripts/compute_climatology.py``, the
default ``--method=explicit``). For every variable, the value at ``(hour h, day d)`` is
the weighted mean of *all* samples whose hour of day is ``h`` and whose day of year ``d'``
lies within ``h_w = window // 2`` days of ``d`` on the day-of-year circle, pooled over all
years::

    clim[h, d] = sum_{y, d'} w(d' - d) x[y, d', h]  /  sum_{y, d' with a sample} w(d' - d)

with WeatherBench2's linearly decaying ("triangular") weights ``w(k) = 1 - |k| / h_w``
(1 at the centre, 0 at ``|k| = h_w``; ``window_weights="triangular"``, the default) or
equal weights ``w(k) = 1`` (``window_weights="flat"``). Normalizing by the weights of
the samples present makes it exact when some days are missing, as WB2's NaN-skipping
weighted mean.

The circle, as WB2 stacks calendar years on a ``dayofyear`` axis: when some year of the
data has a day 366 (31 Dec of a leap year) the circle has 366 days and each year
without a day 366 counts its day 365 again as its day 366 (WB2 fills the gap with day
365), so every window near New Year holds ``window`` days of every year; when no year
has a day 366 the circle has 365 days (31 Dec and 1 Jan are neighbours) and the output's
day 366 copies day 365. (WB2 fills *every* missing day of a year with its day 365; here
other missing days simply carry no weight.) WeatherBench2's ERA5 climatology averages
1990-2019 with a 61-day window; that is the default here.

Smoothing matters most with little data. With a single year (e.g. SPEEDY-world 2018,
1460 six-hourly steps) every ``(day, hour)`` has exactly one sample, so without
smoothing (``window=1``) the "climatology" would *be* that year's weather, synoptic
systems included; the 61-day window averages 59 days per value (its end weights are
0), which keeps the seasonal cycle (the triangle damps the annual harmonic by ~2 %, the
flat 2-month boxcar by ~5 %) and removes most of the synoptic noise. It is still a
one-year estimate: scores against it (ACC, the climatology baseline) carry that year's
interannual anomaly. Measured with the flat window on SPEEDY-world (climatology from 2018, scored on 43 inits from 20 Dec 2019 to 10 Jan 2020,
``scripts/score_baselines_speedy.py``): the climatology forecast's global z500 RMSE at
1 day is 743 m2 s-2 with ``window=1``, 617 with 15 days and 594 with 61 days; the day-10
ACC of persistence drops from 0.47 (``window=1``: the anomalies share the noise of the
"climatology") to 0.22 (15 days) and 0.14 (61 days).

Lead times are not involved: days of year come from ``time.dt.dayofyear`` as in
WeatherBench2 (so 1 March is day 60 in common years and day 61 in leap years).
"""


from __future__ import annotations

from collections.abc import Hashable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from atmos.errors import ConfigError, DataError

__all__ = [
    "DAYS",
    "WINDOW_WEIGHTS",
    "as_init_times",
    "climatology_at",
    "compute_climatology",
    "load_climatology",
    "save_climatology",
]

#: Length of the day-of-year axis (1..366).
DAYS = 366


def as_init_times(init_times: Any) -> np.ndarray:
    """Initialisation times as a 1-D ``datetime64[ns]`` array (strings, Timestamps, an index ...)."""
    if isinstance(init_times, xr.DataArray):
        init_times = init_times.values
    if isinstance(init_times, (str, pd.Timestamp, np.datetime64)):
        init_times = [init_times]
    try:
        out = pd.DatetimeIndex(pd.to_datetime(list(np.atleast_1d(init_times)))).to_numpy("datetime64[ns]")
    except (TypeError, ValueError) as err:
        raise ConfigError(
            f"init times {init_times!r} are not dates; pass datetimes or ISO strings such as '2020-01-01T00'."
        ) from err
    if out.size == 0:
        raise ConfigError("no init times given; pass at least one, e.g. ['2020-01-01T00'].")
    return out



def _time_varying(ds: xr.Dataset) -> list[Hashable]:
    return [k for k, v in ds.data_vars.items() if "time" in v.dims]


# ======================================================================================
# computing a climatology
# ======================================================================================
def _hour_axis(hour_step: int | None) -> np.ndarray | None:
    if hour_step is None:
        return None
    if not isinstance(hour_step, (int, np.integer)) or hour_step < 1 or 24 % int(hour_step):
        raise ConfigError(
            f"hour_step={hour_step!r}: expected a divisor of 24 (1, 2, 3, 4, 6, 8, 12, 24), or None to pool "
            "all hours of the day into a daily climatology."
        )
    return np.arange(0, 24, int(hour_step))


def _circular_window_sum(a: np.ndarray, width: int, axis: int, lo: int) -> np.ndarray:
    """``out[d] = sum_{j=lo}^{lo+width-1} a[(d + j) % n]`` along a circular ``axis`` (running sum, float64)."""
    x = np.moveaxis(a, axis, 0)
    n = x.shape[0]
    out = np.empty(x.shape, dtype=np.float64)
    run = np.sum(x[np.arange(lo, lo + width) % n], axis=0, dtype=np.float64)
    out[0] = run
    for d in range(1, n):
        run += x[(d + lo + width - 1) % n]
        run -= x[(d + lo - 1) % n]
        out[d] = run
    return np.moveaxis(out, 0, axis)


#: Values of ``compute_climatology(window_weights=...)``.
WINDOW_WEIGHTS = ("triangular", "flat")


def _circular_smooth(a: np.ndarray, window: int, weights: str, axis: int) -> np.ndarray:
    """Weighted circular sum over a centred window of ``window`` days along ``axis``.

    ``flat``: weight 1 at offsets ``|k| <= window // 2``. ``triangular`` (WeatherBench2's
    ``create_window_weights``): weight ``1 - |k| / h`` with ``h = window // 2``, i.e. 1 at the
    centre decaying linearly to 0 at ``|k| = h``; computed exactly (up to the common factor
    ``h``) as two running sums of width ``h`` whose convolution is that triangle.
    """
    half = window // 2
    if weights == "flat":
        return a.astype(np.float64, copy=False) if half == 0 else _circular_window_sum(a, window, axis, -half)
    if half <= 1:  # weights [1] or [0, 1, 0]: no smoothing
        return a.astype(np.float64, copy=False)
    first = -(half // 2)
    once = _circular_window_sum(a, half, axis, first)
    return _circular_window_sum(once, half, axis, 1 - half - first)


def compute_climatology(
    ds: xr.Dataset,
    hour_step: int | None = 6,
    window: int = 61,
    variables: Sequence[str] | None = None,
    block_size: int = 512,
    allow_gaps: bool = False,
    window_weights: str = "triangular",
) -> xr.Dataset:
    """Day-of-year x hour climatology, smoothed with a circular moving window over day of year.

    Parameters
    ----------
    ds : Dataset
        A canonical cube with a ``time`` dimension (``atmos.open_dataset(...)``); it is
        read in blocks of ``block_size`` time steps (memory: two float64 arrays of
        ``366 x len(hours)`` fields per variable). A ``member`` dimension is pooled.
    hour_step : int or None
        Hours of the climatology: ``0, hour_step, ..., 24 - hour_step``; time steps at
        other hours are not used. ``None``: one daily climatology over all hours (no
        ``hour`` dimension).
    window : int
        Width in days (odd, 1..365) of the moving window over day of year; 61 as in
        WeatherBench2. ``1`` = no smoothing.
    variables : sequence of str, optional
        Variables to include (default: every variable with a ``time`` dimension).
    allow_gaps : bool
        Leave NaN at days of year without any sample in their window (data covering
        part of the year) instead of raising.
    window_weights : {"triangular", "flat"}
        ``triangular`` (default, WeatherBench2): weights decaying linearly from 1 at the
        centre to 0 at ``+-window // 2`` days. ``flat``: every day of the window weighs
        the same (a plain moving average; atmos's earlier default).

    Returns
    -------
    Dataset
        Dims ``(hour, dayofyear, [level], latitude, longitude)`` (or ``(..., cell)``),
        ``dayofyear = 1..366``, the dtype of the input; attrs record the window, its
        weights, the day-of-year circle, the hours and the period used.

    Raises
    ------
    DataError
        No time dimension, no time step at the requested hours, or days of year left
        without any sample inside their window (widen ``window``).
    ConfigError
        Bad ``window``, ``window_weights`` or ``hour_step``.
    """
    if not isinstance(ds, xr.Dataset):
        raise DataError(f"compute_climatology expects an xarray Dataset, got {type(ds).__name__}.")
    if "time" not in ds.dims:
        raise DataError(
            f"the dataset has no 'time' dimension (dims {sorted(map(str, ds.dims))}); a climatology "
            "averages a time series: open it with atmos.open_dataset."
        )
    if not isinstance(window, (int, np.integer)) or window < 1 or window % 2 == 0 or window >= DAYS:
        raise ConfigError(f"window={window!r}: expected an odd number of days between 1 and 365 (61 as in WeatherBench2).")
    if window_weights not in WINDOW_WEIGHTS:
        raise ConfigError(
            f"window_weights={window_weights!r}: expected one of {list(WINDOW_WEIGHTS)} ('triangular' is "
            "WeatherBench2's linearly decaying window, 'flat' a plain moving average)."
        )
    hours = _hour_axis(hour_step)
    names = list(variables) if variables is not None else _time_varying(ds)
    missing = [v for v in names if v not in ds.data_vars]
    if missing:
        raise DataError(f"variable(s) {missing} are not in the dataset (it has {sorted(map(str, ds.data_vars))}).")
    static = [v for v in names if "time" not in ds[v].dims]
    if static:
        raise DataError(f"variable(s) {static} have no time dimension; a climatology needs time series.")
    if not names:
        raise DataError("the dataset has no variable with a time dimension.")

    time_vals = ds["time"]
    doy = time_vals.dt.dayofyear.values.astype(np.int64)
    year = time_vals.dt.year.values.astype(np.int64)
    hod = time_vals.dt.hour.values.astype(np.int64)
    on_hour = (time_vals.dt.minute.values == 0) & (time_vals.dt.second.values == 0)
    if hours is None:
        use = np.ones(doy.size, dtype=bool)
        hidx = np.zeros(doy.size, dtype=np.int64)
        nh = 1
    else:
        use = on_hour & (hod % int(hour_step) == 0)
        hidx = hod // int(hour_step)
        nh = hours.size
        present = np.unique(hod[use])
        if present.size != nh:
            absent = sorted(set(hours.tolist()) - set(present.tolist()))
            raise DataError(
                f"the data have no time step at hour(s) {absent} of the {hour_step}-hourly climatology "
                f"(hours present: {sorted(set(hod.tolist()))}); pass hour_step=None (atmos climatology --daily) "
                "for a daily climatology or an hour_step (--hour-step) that matches the data."
            )
    if not use.any():
        raise DataError(f"no time step falls on the hours {hours.tolist() if hours is not None else 'any'}.")
    key = hidx * DAYS + (doy - 1)
    sel = np.nonzero(use)[0]
    # The day-of-year circle, as WeatherBench2 stacks the years: 366 days when some year
    # has a day 366, and then a year without one (a common year) counts its day 365 again
    # as its day 366; 365 days when no year has a day 366 (day 366 then copies day 365).
    ndays = DAYS if bool(np.any(doy[sel] == DAYS)) else DAYS - 1
    src, dst = sel, key[sel]
    if ndays == DAYS:
        has366 = {(y, h) for y, h in zip(year[sel][doy[sel] == DAYS], hidx[sel][doy[sel] == DAYS])}
        at365 = sel[doy[sel] == DAYS - 1]
        dup = np.array([i for i in at365 if (year[i], hidx[i]) not in has366], dtype=np.int64)
        if dup.size:
            src = np.concatenate([sel, dup])
            dst = np.concatenate([key[sel], hidx[dup] * DAYS + (DAYS - 1)])
    counts = np.bincount(dst, minlength=nh * DAYS).astype(np.float64).reshape(nh, DAYS)[:, :ndays]
    n_smooth = _circular_smooth(counts, int(window), window_weights, axis=1)
    empty = n_smooth == 0
    if empty.any() and not allow_gaps:
        days = np.unique(np.nonzero(empty)[1] + 1)
        raise DataError(
            f"days of year {days[:10].tolist()}{' ...' if days.size > 10 else ''} have no sample within "
            f"their {window}-day window; the data cover too little of the year ({sel.size} steps): "
            "widen window (--window), use a longer period or pass allow_gaps=True."
        )

    out: dict[Hashable, xr.DataArray] = {}
    for name in names:
        da = ds[name]
        if "member" in da.dims:
            da = da.mean("member")
        da = da.transpose("time", ...)
        rest = da.dims[1:]
        shape = tuple(da.sizes[d] for d in rest)
        sums = np.zeros((nh * DAYS, *shape), dtype=np.float64)
        for start in range(0, src.size, int(block_size)):
            idx = src[start : start + int(block_size)]
            block = np.asarray(da.isel(time=idx).values, dtype=np.float64)
            k = dst[start : start + int(block_size)]
            if np.unique(k).size == k.size:  # the usual case: consecutive steps of one year
                sums[k] += block
            else:
                order = np.argsort(k, kind="stable")
                uniq, first = np.unique(k[order], return_index=True)
                sums[uniq] += np.add.reduceat(block[order], first, axis=0)
        sums = sums.reshape(nh, DAYS, *shape)[:, :ndays]
        s_smooth = _circular_smooth(sums, int(window), window_weights, axis=1)
        clim = np.empty((nh, DAYS, *shape), dtype=np.float64)
        with np.errstate(invalid="ignore", divide="ignore"):
            clim[:, :ndays] = s_smooth / n_smooth.reshape(nh, ndays, *([1] * len(shape)))
        clim[:, :ndays][empty] = np.nan
        if ndays < DAYS:
            clim[:, DAYS - 1] = clim[:, DAYS - 2]
        dtype = da.dtype if np.issubdtype(da.dtype, np.floating) else np.float64
        coords = {d: da[d].values for d in rest if d in da.coords}
        arr = xr.DataArray(clim.astype(dtype), dims=("hour", "dayofyear", *rest), coords=coords, attrs=dict(da.attrs))
        if hours is None:
            arr = arr.isel(hour=0, drop=True)
        out[name] = arr
    clim_ds = xr.Dataset(out)
    clim_ds = clim_ds.assign_coords(dayofyear=np.arange(1, DAYS + 1))
    if hours is not None:
        clim_ds = clim_ds.assign_coords(hour=hours)
    for extra in ("cell_ids",):
        if extra in ds.coords:
            clim_ds = clim_ds.assign_coords({extra: ds[extra]})
    used = time_vals.values[sel]
    clim_ds.attrs = {
        "title": "atmos day-of-year x hour climatology",
        "window_days": int(window),
        "window_weights": window_weights,
        "dayofyear_circle": int(ndays),
        "hour_step": "none (daily)" if hours is None else int(hour_step),
        "period": f"{used.min()} .. {used.max()}",
        "n_samples": int(sel.size),
        "method": (
            f"{window_weights}-weighted mean over all samples within +-window//2 days of year on a "
            f"{ndays}-day circle, per hour of day (WeatherBench2 compute_hourly_stat convention)"
        ),
    }
    if "atmos_source" in ds.attrs:
        clim_ds.attrs["source"] = str(ds.attrs["atmos_source"])
    return clim_ds


# ======================================================================================
# reading / writing / looking up
# ======================================================================================
def _normalize_climatology(clim: xr.Dataset) -> xr.Dataset:
    ren = {}
    for old, new in (("lat", "latitude"), ("lon", "longitude"), ("day_of_year", "dayofyear"), ("doy", "dayofyear")):
        if old in clim.dims and new not in clim.dims:
            ren[old] = new
    if ren:
        clim = clim.rename(ren)
    if "dayofyear" not in clim.dims:
        raise DataError(
            f"not a climatology: no 'dayofyear' dimension (dims {sorted(map(str, clim.dims))}); expected the "
            "layout of atmos.io.climatology.compute_climatology / the WeatherBench2 climatology zarr "
            "(hour, dayofyear, [level], latitude, longitude)."
        )
    if "latitude" in clim.dims and clim.sizes["latitude"] > 1 and float(clim["latitude"][0]) > float(clim["latitude"][-1]):
        clim = clim.isel(latitude=slice(None, None, -1))
    if "longitude" in clim.dims:
        lon = np.mod(clim["longitude"].values, 360.0)
        if not np.array_equal(lon, clim["longitude"].values):
            clim = clim.assign_coords(longitude=lon)
        if np.any(np.diff(lon) < 0):
            clim = clim.sortby("longitude")
    lead = [d for d in ("hour", "dayofyear") if d in clim.dims]
    trail = [d for d in ("level", "latitude", "longitude", "cell") if d in clim.dims]
    return clim.transpose(*lead, ..., *trail)


def load_climatology(path: str | Path) -> xr.Dataset:
    """Open a climatology written by :func:`save_climatology` or a WeatherBench2 climatology zarr (lazily).

    netCDF files (``.nc``) and zarr stores (local folders or URLs such as
    ``gs://weatherbench2/datasets/era5-hourly-climatology/...zarr``) are accepted;
    ``lat``/``lon`` are renamed, latitude made ascending and dims ordered
    ``(hour, dayofyear, ..., level, latitude, longitude)``.
    """
    p = str(path)
    is_remote = "://" in p
    if not is_remote and not Path(p).exists():
        raise DataError(f"climatology {p!r} does not exist; create one with `atmos climatology SOURCE -o {p}`.")
    try:
        if p.endswith((".nc", ".nc4", ".netcdf")):
            clim = xr.open_dataset(p, chunks={})
        else:
            clim = xr.open_zarr(p)
    except (OSError, ValueError) as err:
        raise DataError(f"cannot read climatology {p!r} ({err}); expected a netCDF file or a zarr store.") from err
    return _normalize_climatology(clim)


def save_climatology(clim: xr.Dataset, path: str | Path, *, information: float | None = None) -> Path:
    """Write a climatology to netCDF (``.nc``) or zarr (any other suffix), compressed; returns the path.

    Lossless by default (netCDF: zlib + shuffle; zarr: :data:`atmos.io.compression.LOSSLESS`);
    ``information`` in (0, 1] bit-rounds each variable to keep that fraction of its real information
    first. Ratio, errors and kept bits are recorded in ``attrs["atmos_compression"]``
    (:func:`atmos.io.compression.write_compressed`); the write is atomic.
    """
    from atmos.io.compression import write_compressed

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_compressed(clim, path, information=information, what="atmos climatology")
    return path


def climatology_at(clim: xr.Dataset | xr.DataArray, times: Any) -> xr.Dataset | xr.DataArray:
    """Climatological values at the given valid times.

    Parameters
    ----------
    clim : Dataset or DataArray, dims ``(hour, dayofyear, ...)`` or ``(dayofyear, ...)``
    times : DataArray of datetime64 (any dims, e.g. ``(time, prediction_timedelta)``) or 1-D array-like
        A 1-D array-like becomes a DataArray on a ``time`` dimension.

    Returns
    -------
    The climatology indexed by ``times.dt.dayofyear`` (and ``times.dt.hour``), with the
    dims of ``times`` in front of the remaining climatology dims.

    Raises
    ------
    DataError
        An hour of ``times`` is not among the climatology's hours.
    """
    if not isinstance(times, xr.DataArray):
        t = as_init_times(times)
        times = xr.DataArray(t, dims=("time",), coords={"time": t})
    if "dayofyear" not in clim.dims:
        raise DataError(f"not a climatology: no 'dayofyear' dimension (dims {sorted(map(str, clim.dims))}).")
    sel: dict[str, xr.DataArray] = {"dayofyear": times.dt.dayofyear}
    if "hour" in clim.dims:
        hours = times.dt.hour
        have = set(np.asarray(clim["hour"].values).tolist())
        need = set(np.unique(hours.values).tolist())
        if not need <= have:
            raise DataError(
                f"valid times fall at hour(s) {sorted(need - have)} but the climatology has hours {sorted(have)}; "
                "compute one with a matching hour_step (atmos climatology --hour-step) or hour_step=None."
            )
        sel["hour"] = hours
    out = clim.sel(sel)
    drop = [c for c in ("dayofyear", "hour") if c in out.coords]
    return out.drop_vars(drop)
