"""Scorecard and forecast plots (matplotlib, Agg canvas: no display needed).

* :func:`plot_scores` - a metric (RMSE, ACC ...) against lead time, one panel per
  variable, one line per model (baselines dashed);
* :func:`plot_maps` - forecast, truth and error maps of one variable at chosen leads;
* :func:`plot_spectra` - zonal power spectra of the models and the truth;
* :func:`write_score_plots` - every metric x region of a scorecard as PNGs.

Figures are built with :class:`matplotlib.figure.Figure` (never ``pyplot``), so nothing
depends on a GUI backend or global state; every function returns the Figure and writes
a PNG when ``path`` is given.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from atmos.errors import ConfigError, DataError

__all__ = ["plot_maps", "plot_scores", "plot_spectra", "write_score_plots"]

BASELINE_STYLES = {
    "persistence": {"color": "0.45", "linestyle": "--", "marker": ""},
    "climatology": {"color": "0.2", "linestyle": ":", "marker": ""},
}
UNITS = {"z": "m$^2$ s$^{-2}$", "t": "K", "u": "m s$^{-1}$", "v": "m s$^{-1}$", "q": "kg kg$^{-1}$",
         "t2m": "K", "u10": "m s$^{-1}$", "v10": "m s$^{-1}$", "msl": "Pa", "tcwv": "kg m$^{-2}$"}
METRIC_LABELS = {"rmse": "RMSE", "acc": "ACC", "bias": "bias", "mae": "MAE", "mse": "MSE", "crps": "CRPS",
                 "spread": "ensemble spread", "spread_skill": "spread / skill", "ensemble_mean_rmse": "ens.-mean RMSE"}
UNITLESS = {"acc", "spread_skill"}


def _figure(**kw: Any):
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as err:  # pragma: no cover - matplotlib is a dependency
        raise ConfigError("plots need matplotlib: pip install matplotlib (or atmos[plot]).") from err

    fig = Figure(**kw)
    FigureCanvasAgg(fig)
    return fig


def _save(fig, path: str | Path | None) -> None:
    if path is not None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=100)


def _units(label: str) -> str:
    if label in UNITS:
        return UNITS[label]
    return UNITS.get(label[:1], "") if label[1:].isdigit() else ""


def _lead_days(td: Any) -> np.ndarray:
    return np.asarray(td, dtype="timedelta64[ns]") / np.timedelta64(1, "D")


def plot_scores(
    scorecard: xr.Dataset,
    metric: str = "rmse",
    region: str = "global",
    variables: Sequence[str] | None = None,
    models: Sequence[str] | None = None,
    path: str | Path | None = None,
):
    """One metric against lead time (days): a panel per variable, a line per model.

    Baselines (``persistence``, ``climatology``) are drawn in grey dashed/dotted lines.
    """
    da = scorecard["score"]
    for dim, val in (("metric", metric), ("region", region)):
        if val not in da[dim].values:
            raise DataError(f"the scorecard has no {dim} {val!r} (it has {list(map(str, da[dim].values))}).")
    da = da.sel(metric=metric, region=region)
    variables = list(variables) if variables is not None else [str(v) for v in da["variable"].values]
    models = list(models) if models is not None else [str(m) for m in da["model"].values]
    n = len(variables)
    fig = _figure(figsize=(4.2 * n, 3.4), layout="constrained")
    axes = fig.subplots(1, n, squeeze=False)[0]
    days = _lead_days(da["prediction_timedelta"].values)
    for ax, var in zip(axes, variables, strict=True):
        for k, model in enumerate(models):
            y = da.sel(variable=var, model=model).values
            ok = np.isfinite(y)
            if not ok.any():
                continue
            style = BASELINE_STYLES.get(model, {"color": f"C{k}", "linestyle": "-", "marker": "o"})
            ax.plot(days[ok], y[ok], label=model, markersize=3, linewidth=1.8, **style)
        if metric == "acc":
            ax.axhline(0.6, color="0.7", linewidth=0.8, linestyle="-.")
            ax.set_ylim(min(-0.1, float(np.nanmin(da.sel(variable=var).values))), 1.02)
        ax.set_title(var)
        ax.set_xlabel("lead time (days)")
        unit = "" if metric in UNITLESS else _units(var)
        ax.set_ylabel(METRIC_LABELS.get(metric, metric) + (f" [{unit}]" if unit else ""))
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle(f"{METRIC_LABELS.get(metric, metric)} vs lead time, region {region}")
    _save(fig, path)
    return fig


def write_score_plots(scorecard: xr.Dataset, outdir: str | Path, prefix: str = "") -> list[Path]:
    """PNG of every metric x region of the scorecard: ``{prefix}{metric}_{region}.png``."""
    outdir = Path(outdir)
    paths = []
    for metric in scorecard["metric"].values:
        for region in scorecard["region"].values:
            p = outdir / f"{prefix}{metric}_{region}.png"
            plot_scores(scorecard, str(metric), str(region), path=p)
            paths.append(p)
    return paths


def _map_panel(ax, da: xr.DataArray, cmap: str, vmin: float, vmax: float):
    if "cell" in da.dims:
        from atmos.io.coords import grid_of

        g = grid_of(da)
        lon = np.where(g.lon > 180, g.lon - 360, g.lon)
        return ax.scatter(lon, g.lat, c=da.values, s=4, cmap=cmap, vmin=vmin, vmax=vmax, linewidths=0)
    lon = da["longitude"].values
    order = np.argsort(np.where(lon >= 180, lon - 360, lon))
    lon = np.where(lon >= 180, lon - 360, lon)[order]
    vals = da.transpose("latitude", "longitude").values[:, order]
    return ax.pcolormesh(lon, da["latitude"].values, vals, cmap=cmap, vmin=vmin, vmax=vmax, shading="nearest")


def plot_maps(
    forecast: xr.DataArray,
    truth: xr.DataArray,
    leads: Sequence[Any] | None = None,
    init: Any = None,
    title: str | None = None,
    path: str | Path | None = None,
):
    """Maps of forecast, truth and error (forecast - truth) of one field at chosen leads.

    Parameters
    ----------
    forecast : DataArray, dims ``(time, prediction_timedelta, [member], latitude, longitude)`` or ``(..., cell)``
        One variable (one level); an ensemble is shown through its mean.
    truth : DataArray
        The truth aligned to the forecast (:func:`atmos.metrics.align_truth`).
    leads : sequence of timedeltas or strings, optional
        Default: up to 3 leads spread over the forecast (excluding 0).
    init : datetime-like, optional
        Init time shown (default: the first).
    """
    if "member" in forecast.dims:
        forecast = forecast.mean("member")
    t0 = forecast["time"].values[0] if init is None else np.datetime64(pd.Timestamp(init), "ns")
    if t0 not in forecast["time"].values:
        raise DataError(f"init time {t0} is not in the forecast (first {forecast['time'].values[0]}).")
    avail = forecast["prediction_timedelta"].values
    if leads is None:
        pos = avail[avail > np.timedelta64(0, "ns")]
        pos = pos if pos.size else avail
        leads_arr = pos[np.unique(np.linspace(0, pos.size - 1, min(3, pos.size)).round().astype(int))]
    else:
        leads_arr = pd.to_timedelta(list(leads)).to_numpy("timedelta64[ns]")
        bad = [str(pd.Timedelta(x)) for x in leads_arr if x not in avail]
        if bad:
            raise ConfigError(f"lead(s) {bad} are not in the forecast (it has {avail.size} leads up to {pd.Timedelta(avail.max())}).")
    f = forecast.sel(time=t0, prediction_timedelta=leads_arr).load()
    y = truth.sel(time=t0, prediction_timedelta=leads_arr).load()
    err = f - y
    vmin = float(min(np.nanmin(f.values), np.nanmin(y.values)))
    vmax = float(max(np.nanmax(f.values), np.nanmax(y.values)))
    emax = float(np.nanmax(np.abs(err.values))) or 1.0
    if "longitude" in f.dims:
        lon = np.sort(np.where(f["longitude"].values >= 180, f["longitude"].values - 360, f["longitude"].values))
        half = 0.5 * (lon[1] - lon[0]) if lon.size > 1 else 180.0
        xlim = (float(lon[0] - half), float(lon[-1] + half))
    else:
        xlim = (-180.0, 180.0)
    nrow = len(leads_arr)
    fig = _figure(figsize=(13.5, 2.6 * nrow + 0.6), layout="constrained")
    axes = fig.subplots(nrow, 3, squeeze=False)
    name = title or str(forecast.name or "field")
    for i, td in enumerate(leads_arr):
        label = f"+{pd.Timedelta(td) / pd.Timedelta('1h'):g}h"
        m1 = _map_panel(axes[i, 0], f.sel(prediction_timedelta=td), "viridis", vmin, vmax)
        _map_panel(axes[i, 1], y.sel(prediction_timedelta=td), "viridis", vmin, vmax)
        m3 = _map_panel(axes[i, 2], err.sel(prediction_timedelta=td), "RdBu_r", -emax, emax)
        for j, what in enumerate(("forecast", "truth", "error (forecast - truth)")):
            axes[i, j].set_title(f"{what}, {label}", fontsize=9)
            axes[i, j].set_xlim(*xlim)
            axes[i, j].set_ylim(-90, 90)
            axes[i, j].set_aspect("equal")
            axes[i, j].tick_params(labelsize=7)
        fig.colorbar(m1, ax=axes[i, :2], shrink=0.9, label=_units(str(forecast.name)))
        fig.colorbar(m3, ax=axes[i, 2], shrink=0.9)
    fig.suptitle(f"{name}: init {pd.Timestamp(t0):%Y-%m-%d %H:%M}")
    _save(fig, path)
    return fig


def plot_spectra(
    spectra: xr.DataArray,
    leads: Sequence[Any] | None = None,
    variables: Sequence[str] | None = None,
    path: str | Path | None = None,
):
    """Zonal power spectra (log-log, wavenumber >= 1): rows = variables, columns = leads.

    ``spectra`` comes from :func:`atmos.evaluation.evaluate_spectra` (the model
    ``"truth"`` is drawn in black).
    """
    variables = list(variables) if variables is not None else [str(v) for v in spectra["variable"].values]
    avail = spectra["prediction_timedelta"].values
    if leads is None:
        leads_arr = avail[np.unique(np.linspace(0, avail.size - 1, min(3, avail.size)).round().astype(int))]
    else:
        leads_arr = np.array([x for x in pd.to_timedelta(list(leads)).to_numpy("timedelta64[ns]") if x in avail])
        if leads_arr.size == 0:
            raise ConfigError(f"none of the leads {list(leads)} has a spectrum.")
    nr, nc = len(variables), len(leads_arr)
    fig = _figure(figsize=(4.0 * nc, 3.2 * nr), layout="constrained")
    axes = fig.subplots(nr, nc, squeeze=False)
    k = spectra["zonal_wavenumber"].values
    pos = k >= 1
    for i, var in enumerate(variables):
        for j, td in enumerate(leads_arr):
            ax = axes[i, j]
            for n, model in enumerate(spectra["model"].values):
                y = spectra.sel(model=model, variable=var, prediction_timedelta=td).values
                if not np.isfinite(y).any():
                    continue
                style = {"color": "k", "linewidth": 2.2} if model == "truth" else BASELINE_STYLES.get(
                    str(model), {"color": f"C{n}", "linewidth": 1.5})
                ax.loglog(k[pos], y[pos], label=str(model), **{kk: vv for kk, vv in style.items() if kk != "marker"})
            ax.set_title(f"{var}, +{pd.Timedelta(td) / pd.Timedelta('1h'):g}h", fontsize=10)
            ax.set_xlabel("zonal wavenumber")
            unit = _units(var)
            ax.set_ylabel(f"power [m ({unit})$^2$]" if unit else "power [m x units$^2$]")
            ax.grid(alpha=0.3, which="both")
    axes[0, 0].legend(fontsize=8)
    fig.suptitle(f"zonal power spectra ({spectra.attrs.get('band', '')})")
    _save(fig, path)
    return fig
