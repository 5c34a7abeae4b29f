"""Stability and climate diagnostics of long (months to years) autoregressive rollouts.

A weather emulator that is skilful at day 5 may still leave the climate of the system it
emulates when it is run for a year: the seasonal cycle shifts, the fields smooth out or
grow noisy, a slow drift accumulates or the run blows up. These functions measure that
for one long rollout against a *reference climate* (e.g. a year of the training data),
after DLWP-HEALPix (Karlbauer et al. 2024: stable 1-year rollouts, no loss of spectral
power after day 2) and the long-rollout checks of ACE (Watt-Meyer et al. 2023).

All spatial statistics are area weighted with the normalized cell areas
(:func:`atmos.metrics.deterministic.spatial_average`, the WeatherBench2 convention).

:func:`climate_diagnostics`
    Per month of the forecast's valid times: the global mean of each variable against
    the reference's mean over the same calendar month, and the spatial standard
    deviation ``sqrt(mean_A (x - mean_A x)^2)`` (month mean of the per-time values)
    against the reference's, as a ratio; and the *weather variability*: the area mean of
    each grid point's standard deviation over the month's times, against the
    reference's in the same calendar month (a run that collapses onto a smooth climate
    keeps its monthly means and its spatial std but loses this; NaN for a month with one time).
:func:`drift_per_year`
    Least-squares slope (units per year) of the forecast-minus-reference global-mean
    anomaly (reference = calendar-month climate) against valid time.
:func:`blowup_lead`
    First lead at which a field is non-finite or its spatial std exceeds ``factor``
    times the largest monthly value of the reference.
:func:`spectrum_ratio`
    Band-averaged zonal power (:class:`atmos.metrics.spectral.ZonalSpectrum`) of the
    forecast summed over wavenumbers ``[k0, k1]`` divided by the truth's at the same
    valid times, per lead.
:func:`plot_climate_diagnostics`
    Global means and std ratios against valid time, with the reference.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from atmos.errors import DataError
from atmos.metrics.deterministic import spatial_average, valid_time_of
from atmos.metrics.variables import resolve_variables, select_variables

__all__ = [
    "blowup_lead",
    "climate_diagnostics",
    "drift_per_year",
    "format_climate_diagnostics",
    "global_series",
    "plot_climate_diagnostics",
    "spectrum_ratio",
]

#: Variables diagnosed by default (when present): z500, t850, t2m.
DEFAULT_VARIABLES = ("z500", "t850", "t2m")


def _as_series(forecast: xr.Dataset) -> xr.Dataset:
    """One init, no members: a dataset on ``valid_time`` (renamed ``time``)."""
    if "prediction_timedelta" not in forecast.dims:
        raise DataError(
            f"expected a forecast with a 'prediction_timedelta' dimension (dims {sorted(map(str, forecast.dims))}); "
            "write it with atmos rollout."
        )
    if "time" in forecast.dims:
        if forecast.sizes["time"] != 1:
            raise DataError(
                f"long-rollout diagnostics take one initial time, got {forecast.sizes['time']}; "
                "select one with forecast.isel(time=[0])."
            )
        forecast = forecast.isel(time=0)
    for dim in ("member", "realization"):
        if dim in forecast.dims:
            forecast = forecast.mean(dim)
    vt = valid_time_of(forecast)
    out = forecast.drop_vars([c for c in ("valid_time", "time") if c in forecast.coords])
    out = out.assign_coords(prediction_timedelta=vt.values).rename(prediction_timedelta="time")
    return out


def _stats(ds: xr.Dataset) -> tuple[xr.Dataset, xr.Dataset]:
    mean = spatial_average(ds)
    std = np.sqrt(spatial_average((ds - mean) ** 2))
    return mean, std


def global_series(ds: xr.Dataset) -> tuple[xr.Dataset, xr.Dataset]:
    """Area-weighted global mean and spatial std of every variable, per time.

    ``ds`` is a forecast (one init: converted to valid times) or a plain cube with a
    ``time`` dim. Returns ``(mean, std)`` with dims ``(time,)``.
    """
    if "prediction_timedelta" in ds.dims:
        ds = _as_series(ds)
    mean, std = _stats(ds)
    return mean.compute(), std.compute()


def _reference_monthly(reference: xr.Dataset) -> tuple[xr.Dataset, xr.Dataset]:
    mean, std = global_series(reference)
    months = mean["time"].dt.month
    return mean.groupby(months).mean(), std.groupby(months).mean()


def _specs(variables: Sequence[str] | None, *datasets: xr.Dataset):
    if variables is None:
        variables = [v for v in DEFAULT_VARIABLES if all(_present(v, d) for d in datasets)] or None
    return resolve_variables(variables, *datasets)


def _present(label: str, ds: xr.Dataset) -> bool:
    try:
        resolve_variables([label], ds)
    except Exception:
        return False
    return True


def climate_diagnostics(
    forecast: xr.Dataset, reference: xr.Dataset, variables: Sequence[str] | None = None
) -> xr.Dataset:
    """Monthly climate of a long rollout against a reference climate.

    Parameters
    ----------
    forecast : Dataset
        One long rollout in the WeatherBench2 forecast layout (``time`` of size 1,
        ``prediction_timedelta``); members are averaged first.
    reference : Dataset
        A reference climate on the same grid with a ``time`` dim covering every
        calendar month (e.g. one year of the training data). Its values are grouped by
        calendar month, whatever its year.
    variables : list of str, optional
        Labels such as ``z500``, ``t850``, ``t2m`` (default: those three when present).

    Returns
    -------
    Dataset
        Dim ``month`` (``YYYY-MM`` of the forecast's valid times) and one variable
        per label and statistic: ``{label}_mean`` (forecast global mean),
        ``{label}_ref_mean`` (reference mean of that calendar month),
        ``{label}_mean_error`` (their difference), ``{label}_std``,
        ``{label}_ref_std``, ``{label}_std_ratio``, ``{label}_variability_ratio``
        (``mean_A std_t(x)`` within the month, forecast over reference's calendar month) and
        ``{label}_finite`` (all values of the month finite). Attrs: ``drift_per_year`` for
        each label.
    """
    specs = _specs(variables, forecast, reference)
    fc = select_variables(_as_series(forecast), specs)
    ref = select_variables(reference, specs)
    fmean, fstd = _stats(fc)
    finite = np.isfinite(fc).all([d for d in fc.dims if d != "time"])
    fmean, fstd, finite = (x.compute() for x in (fmean, fstd, finite))
    rmean, rstd = _reference_monthly(ref)
    ym = pd.DatetimeIndex(fmean["time"].values).strftime("%Y-%m")
    cal = xr.DataArray(pd.DatetimeIndex(fmean["time"].values).month, dims="time")
    missing = sorted(set(np.unique(cal.values)) - set(rmean["month"].values.tolist()))
    if missing:
        raise DataError(
            f"the reference climate has no data in calendar month(s) {missing}; give a reference that "
            "covers every month of the forecast (e.g. one full year)."
        )
    months = pd.Index(sorted(set(ym)), name="month")
    out: dict[str, xr.DataArray] = {}
    attrs: dict[str, float] = {}

    def monthly(values: np.ndarray, how: str = "mean") -> xr.DataArray:
        ser = pd.Series(values, index=ym).groupby(level=0)
        agg = ser.mean() if how == "mean" else ser.min()
        return xr.DataArray(agg.reindex(months).to_numpy(), dims="month", coords={"month": months.to_numpy()})

    for sp in specs:
        lab = sp.label
        rm_t = rmean[lab].sel(month=cal.values).values
        rs_t = rstd[lab].sel(month=cal.values).values
        fm = fmean[lab].values
        out[f"{lab}_mean"] = monthly(fm)
        out[f"{lab}_ref_mean"] = monthly(rm_t)
        out[f"{lab}_mean_error"] = out[f"{lab}_mean"] - out[f"{lab}_ref_mean"]
        out[f"{lab}_std"] = monthly(fstd[lab].values)
        out[f"{lab}_ref_std"] = monthly(rs_t)
        out[f"{lab}_std_ratio"] = out[f"{lab}_std"] / out[f"{lab}_ref_std"]
        out[f"{lab}_variability_ratio"] = _variability(fc[lab], ym, months) / _variability(
            ref[lab], pd.DatetimeIndex(ref["time"].values).month, None, cal_of=months)
        out[f"{lab}_finite"] = monthly(finite[lab].values.astype(np.float64), "min") > 0
        attrs[f"{lab}_drift_per_year"] = _slope_per_year(fmean["time"].values, fm - rm_t)
    ds = xr.Dataset(out)
    ds.attrs.update(attrs)
    ds.attrs["first_valid_time"] = str(fmean["time"].values[0])[:19]
    ds.attrs["last_valid_time"] = str(fmean["time"].values[-1])[:19]
    return ds


def _variability(da: xr.DataArray, keys, months: pd.Index | None, cal_of: pd.Index | None = None) -> xr.DataArray:
    """Area mean of the per-grid-point std over the times of each group ``keys`` (``[time]``).

    ``months`` given: one value per forecast month (``YYYY-MM``). ``cal_of`` given: the
    reference's value of each ``YYYY-MM`` in ``cal_of``'s calendar month.
    """
    g = da.assign_coords(_key=("time", np.asarray(keys))).groupby("_key")
    per = spatial_average(g.std("time").to_dataset(name="v"))["v"].compute()
    n = g.count("time").isel({d: 0 for d in da.dims if d != "time"}).compute()
    per = per.where(n.values >= 2)  # a month with one time has no variability to measure: NaN
    table = pd.Series(per.values, index=per["_key"].values)
    if months is not None:
        vals = table.reindex(months).to_numpy()
        index = months
    else:
        index = cal_of
        vals = table.reindex([int(m[5:7]) for m in cal_of]).to_numpy()
    return xr.DataArray(vals, dims="month", coords={"month": index.to_numpy()})


def _slope_per_year(times: np.ndarray, anom: np.ndarray) -> float:
    t = (times - times[0]) / np.timedelta64(1, "D") / 365.25
    y = np.asarray(anom, dtype=np.float64)
    ok = np.isfinite(y)
    if ok.sum() < 2 or np.ptp(t[ok]) == 0:
        return float("nan")
    return float(np.polyfit(t[ok], y[ok], 1)[0])


def drift_per_year(forecast: xr.Dataset, reference: xr.Dataset, variables: Sequence[str] | None = None) -> dict[str, float]:
    """Slope (units per year) of the global-mean anomaly against the reference's calendar-month climate."""
    diag = climate_diagnostics(forecast, reference, variables)
    return {k[: -len("_drift_per_year")]: v for k, v in diag.attrs.items() if k.endswith("_drift_per_year")}


def blowup_lead(
    forecast: xr.Dataset, reference: xr.Dataset, variables: Sequence[str] | None = None, factor: float = 3.0
) -> dict[str, np.timedelta64 | None]:
    """First lead at which each variable is non-finite or its spatial std exceeds
    ``factor`` x the largest monthly spatial std of the reference (None: never)."""
    specs = _specs(variables, forecast, reference)
    fc = select_variables(_as_series(forecast), specs)
    _, fstd = global_series(fc)
    _, rstd = _reference_monthly(select_variables(reference, specs))
    leads = forecast["prediction_timedelta"].values
    out: dict[str, np.timedelta64 | None] = {}
    for sp in specs:
        s = fstd[sp.label].values
        bad = ~np.isfinite(s) | (s > factor * float(rstd[sp.label].max()))
        out[sp.label] = leads[int(np.argmax(bad))] if bad.any() else None
    return out


def spectrum_ratio(
    forecast: xr.Dataset,
    truth: xr.Dataset,
    variables: Sequence[str] | None = None,
    wavenumbers: tuple[int, int] = (5, 20),
) -> xr.Dataset:
    """Zonal power of the forecast at wavenumbers ``k0..k1`` over the truth's, per lead.

    Both spectra are :class:`atmos.metrics.spectral.ZonalSpectrum` band averages (the
    mid-latitudes) at the same valid times, averaged over init times before the ratio.
    1 means no power lost; an MSE-trained model blurs and falls below 1 with lead.
    """
    from atmos.metrics.forecast import align_truth
    from atmos.metrics.spectral import ZonalSpectrum

    specs = _specs(variables, forecast, truth)
    fc = select_variables(forecast, specs)
    tr = select_variables(align_truth(fc, truth), specs)
    k0, k1 = wavenumbers
    metric = ZonalSpectrum()
    pf = metric.compute(fc).sel(zonal_wavenumber=slice(k0, k1)).sum("zonal_wavenumber")
    pt = metric.compute(tr).sel(zonal_wavenumber=slice(k0, k1)).sum("zonal_wavenumber")
    ratio = (pf / pt).compute()
    ratio.attrs.update(wavenumbers=f"{k0}-{k1}", description="forecast / truth zonal power (mid-latitudes)")
    return ratio


def format_climate_diagnostics(diag: xr.Dataset) -> str:
    """A monthly table: mean error, std ratio and variability ratio per variable, then the drift per year."""
    labels = [k[: -len("_mean_error")] for k in diag.data_vars if str(k).endswith("_mean_error")]
    head = "month    " + "".join(f"{lab + ' mean err':>16s}{lab + ' std ratio':>16s}{lab + ' var ratio':>16s}"
                                 for lab in labels)
    lines = [head]
    for m in diag["month"].values:
        row = f"{m:9s}"
        for lab in labels:
            e = float(diag[f"{lab}_mean_error"].sel(month=m))
            r = float(diag[f"{lab}_std_ratio"].sel(month=m))
            flag = "" if bool(diag[f"{lab}_finite"].sel(month=m)) else "!"
            v = float(diag[f"{lab}_variability_ratio"].sel(month=m)) if f"{lab}_variability_ratio" in diag else np.nan
            row += f"{e:>15.4g}{flag:1s}{r:>16.3f}{v:>16.3f}"
        lines.append(row)
    lines.append("drift per year: " + ", ".join(f"{lab} {diag.attrs[f'{lab}_drift_per_year']:.4g}" for lab in labels))
    return "\n".join(lines)


def plot_climate_diagnostics(
    forecast: xr.Dataset, reference: xr.Dataset, path: str | Path, variables: Sequence[str] | None = None
) -> Path:
    """PNG: per variable, the global mean and the spatial std against valid time
    (forecast) with the reference's calendar-month values."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    specs = _specs(variables, forecast, reference)
    fmean, fstd = global_series(select_variables(_as_series(forecast), specs))
    rmean, rstd = _reference_monthly(select_variables(reference, specs))
    cal = pd.DatetimeIndex(fmean["time"].values).month
    fig, axes = plt.subplots(len(specs), 2, figsize=(11, 2.6 * len(specs)), squeeze=False)
    for i, sp in enumerate(specs):
        for j, (f, r, what) in enumerate(((fmean, rmean, "global mean"), (fstd, rstd, "spatial std"))):
            ax = axes[i, j]
            ax.plot(f["time"].values, f[sp.label].values, lw=0.8, label="forecast")
            ax.plot(f["time"].values, r[sp.label].sel(month=xr.DataArray(cal)).values, lw=1.2, label="reference (month)")
            ax.set_title(f"{sp.label} {what}", fontsize=9)
            ax.tick_params(labelsize=7)
            if i == 0 and j == 0:
                ax.legend(fontsize=7)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
