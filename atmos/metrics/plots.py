"""Scorecard and forecast plots (matplotlib, Agg canvas: no display needed).

* :func:`plot_scores` - a metric (RMSE, ACC ...) against lead time, one panel per
  variable, one line per model (baselines dashed);
* :func:`plot_maps` - forecast, truth and error maps of one variable at chosen leads;
* :func:`plot_spectra` - zonal power spectra of the models and the truth;
* :func:`write_score_plots` - every metric x region of a scorecard as PNGs;
* :func:`plot_rank_histograms` - Talagrand rank histograms per variable and lead;
* :func:`plot_spread_skill` - ensemble spread and ensemble-mean RMSE (and their ratio) by lead;
* :func:`plot_comparison` - a paired score difference A - B with its bootstrap interval by lead.

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

__all__ = [
    "plot_comparison",
    "plot_maps",
    "plot_rank_histograms",
    "plot_scores",
    "plot_spectra",
    "plot_spread_skill",
    "write_score_plots",
]

BASELINE_STYLES = {
    "persistence": {"color": "0.45", "linestyle": "--", "marker": ""},
    "climatology": {"color": "0.2", "linestyle": ":", "marker": ""},
}
UNITS = {"z": "m$^2$ s$^{-2}$", "t": "K", "u": "m s$^{-1}$", "v": "m s$^{-1}$", "q": "kg kg$^{-1}$",
         "t2m": "K", "u10": "m s$^{-1}$", "v10": "m s$^{-1}$", "msl": "Pa", "tcwv": "kg m$^{-2}$"}
METRIC_LABELS = {"rmse": "RMSE", "acc": "ACC", "bias": "bias", "mae": "MAE", "mse": "MSE", "crps": "CRPS",
                 "spread": "ensemble spread", "spread_skill": "spread / skill", "ensemble_mean_rmse": "ens.-mean RMSE",
                 "spread_skill_unbiased": "spread / skill (unbiased)", "energy_score": "energy score",
                 "crpss": "CRPSS", "rank_reliability": "rank-histogram reliability index",
                 "ensemble_mean_rmse_unbiased": "ens.-mean RMSE (unbiased)"}
UNITLESS = {"acc", "spread_skill", "spread_skill_unbiased", "crpss", "rank_reliability"}


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


def _pick_leads(avail: np.ndarray, leads: Sequence[Any] | None, n: int = 4) -> np.ndarray:
    if leads is None:
        pos = avail[avail > np.timedelta64(0, "ns")]
        pos = pos if pos.size else avail
        return pos[np.unique(np.linspace(0, pos.size - 1, min(n, pos.size)).round().astype(int))]
    want = pd.to_timedelta(list(leads)).to_numpy("timedelta64[ns]")
    bad = [str(pd.Timedelta(x)) for x in want if x not in avail]
    if bad:
        raise ConfigError(f"lead(s) {bad} are not available (there are {avail.size} leads up to {pd.Timedelta(avail.max())}).")
    return want


def plot_rank_histograms(
    histograms: xr.Dataset | xr.DataArray,
    leads: Sequence[Any] | None = None,
    variables: Sequence[str] | None = None,
    title: str | None = None,
    path: str | Path | None = None,
):
    """Rank histograms as bars: rows = variables, columns = leads (default: up to 4 leads > 0).

    ``histograms`` is :func:`atmos.evaluation.evaluate_rank_histograms`'s Dataset (its
    ``histogram`` and ``reliability_index``, shown in each title) or a DataArray on
    ``(variable, prediction_timedelta, bins)`` of relative frequencies. The dashed line is
    the flat histogram ``1/K`` of a reliable ensemble.
    """
    if isinstance(histograms, xr.Dataset):
        if "histogram" not in histograms:
            raise DataError(f"expected evaluate_rank_histograms' Dataset with 'histogram' (got {sorted(histograms.data_vars)}).")
        hist, ri = histograms["histogram"], histograms.get("reliability_index")
    else:
        hist, ri = histograms, None
    for d in ("variable", "prediction_timedelta", "bins"):
        if d not in hist.dims:
            raise DataError(f"rank histograms need dims (variable, prediction_timedelta, bins), got {hist.dims}.")
    variables = list(variables) if variables is not None else [str(v) for v in hist["variable"].values]
    leads_arr = _pick_leads(hist["prediction_timedelta"].values, leads)
    k = hist.sizes["bins"]
    nr, nc = len(variables), len(leads_arr)
    fig = _figure(figsize=(2.9 * nc + 0.6, 2.3 * nr + 0.6), layout="constrained")
    axes = fig.subplots(nr, nc, squeeze=False)
    top = float(np.nanmax(hist.sel(variable=variables, prediction_timedelta=leads_arr).values)) * 1.1
    for i, var in enumerate(variables):
        for j, td in enumerate(leads_arr):
            ax = axes[i, j]
            h = hist.sel(variable=var, prediction_timedelta=td).values
            ax.bar(np.arange(k), h, color="C0", width=0.85)
            ax.axhline(1.0 / k, color="k", linestyle="--", linewidth=1)
            ax.set_ylim(0, max(top, 1.5 / k))
            lab = f"{var}, +{pd.Timedelta(td) / pd.Timedelta('1h'):g}h"
            if ri is not None:
                lab += f", RI {float(ri.sel(variable=var, prediction_timedelta=td)):.2f}"
            ax.set_title(lab, fontsize=9)
            ax.set_xticks(np.arange(k))
            ax.tick_params(labelsize=7)
            if j == 0:
                ax.set_ylabel("frequency (area-weighted)", fontsize=8)
            if i == nr - 1:
                ax.set_xlabel("rank of the truth", fontsize=8)
    fig.suptitle((title + ": " if title else "") + f"rank histograms ({k - 1} members; dashed: flat 1/{k})")
    _save(fig, path)
    return fig


def plot_spread_skill(
    scorecard: xr.Dataset,
    model: str | None = None,
    region: str = "global",
    variables: Sequence[str] | None = None,
    path: str | Path | None = None,
):
    """Spread vs skill by lead: top row spread and ensemble-mean RMSE, bottom row their ratio(s).

    Uses the scorecard's ``spread`` / ``ensemble_mean_rmse`` (top, when present) and
    ``spread_skill`` / ``spread_skill_unbiased`` (bottom; dotted line at 1, a reliable
    ensemble). ``model`` defaults to the first model with a spread.
    """
    da = scorecard["score"]
    if region not in da["region"].values:
        raise DataError(f"the scorecard has no region {region!r} (it has {list(map(str, da['region'].values))}).")
    mets = [str(m) for m in da["metric"].values]
    top = [m for m in ("spread", "ensemble_mean_rmse") if m in mets]
    ratios = [m for m in ("spread_skill", "spread_skill_unbiased") if m in mets]
    if not top and not ratios:
        raise DataError(
            f"the scorecard has none of spread, ensemble_mean_rmse, spread_skill, spread_skill_unbiased (metrics {mets}); "
            "evaluate an ensemble with metrics=['spread', 'ensemble_mean_rmse', 'spread_skill_unbiased']."
        )
    da = da.sel(region=region)
    if model is None:
        key = (top or ratios)[0]
        have = [str(m) for m in da["model"].values if bool(da.sel(model=m, metric=key).notnull().any())]
        if not have:
            raise DataError("no model of the scorecard has a spread score (is any forecast an ensemble?).")
        model = have[0]
    elif model not in da["model"].values:
        raise DataError(f"the scorecard has no model {model!r} (it has {list(map(str, da['model'].values))}).")
    variables = list(variables) if variables is not None else [str(v) for v in da["variable"].values]
    rows = [r for r in (top, ratios) if r]
    fig = _figure(figsize=(4.2 * len(variables), 3.0 * len(rows) + 0.5), layout="constrained")
    axes = fig.subplots(len(rows), len(variables), squeeze=False)
    days = _lead_days(da["prediction_timedelta"].values)
    styles = {"spread": ("C1", "-"), "ensemble_mean_rmse": ("C0", "-"), "spread_skill": ("C2", "--"),
              "spread_skill_unbiased": ("C3", "-")}
    for j, var in enumerate(variables):
        for i, group in enumerate(rows):
            ax = axes[i, j]
            for m in group:
                y = da.sel(model=model, metric=m, variable=var).values
                ok = np.isfinite(y)
                color, ls = styles[m]
                ax.plot(days[ok], y[ok], color=color, linestyle=ls, marker="o", markersize=3, label=METRIC_LABELS[m])
            if group is ratios:
                ax.axhline(1.0, color="0.4", linestyle=":", linewidth=1)
                ax.set_ylim(0, 2.5)  # lead-0 ratios (error ~ 0) are off the scale
                ax.set_ylabel("ratio (axis clipped at 2.5)")
            else:
                unit = _units(var)
                ax.set_ylabel(f"[{unit}]" if unit else "")
            ax.set_title(var)
            ax.set_xlabel("lead time (days)")
            ax.grid(alpha=0.3)
            ax.legend(fontsize=7)
    fig.suptitle(f"spread vs skill, {model}, region {region}")
    _save(fig, path)
    return fig


def plot_comparison(
    comparison: xr.Dataset,
    metric: str | None = None,
    region: str = "global",
    variables: Sequence[str] | None = None,
    path: str | Path | None = None,
):
    """A - B by lead with its bootstrap interval (band); filled markers are significant leads.

    ``comparison`` is :func:`atmos.evaluation.compare`'s Dataset; ``metric`` defaults to
    its first.
    """
    for v in ("difference", "lower", "upper", "significant"):
        if v not in comparison:
            raise DataError(f"expected atmos.evaluation.compare's Dataset (no {v!r}; has {sorted(comparison.data_vars)}).")
    metric = metric or str(comparison["metric"].values[0])
    for dim, val in (("metric", metric), ("region", region)):
        if val not in comparison[dim].values:
            raise DataError(f"the comparison has no {dim} {val!r} (it has {list(map(str, comparison[dim].values))}).")
    c = comparison.sel(metric=metric, region=region)
    variables = list(variables) if variables is not None else [str(v) for v in c["variable"].values]
    fig = _figure(figsize=(4.2 * len(variables), 3.3), layout="constrained")
    axes = fig.subplots(1, len(variables), squeeze=False)[0]
    days = _lead_days(c["prediction_timedelta"].values)
    for ax, var in zip(axes, variables, strict=True):
        s = c.sel(variable=var)
        d, lo, hi = s["difference"].values, s["lower"].values, s["upper"].values
        sig = s["significant"].values.astype(bool)
        ok = np.isfinite(d)
        ax.fill_between(days[ok], lo[ok], hi[ok], color="C0", alpha=0.25, linewidth=0,
                        label=f"{100 * float(comparison.attrs.get('confidence', 0.95)):g}% interval")
        ax.plot(days[ok], d[ok], color="C0", linewidth=1.5)
        ax.plot(days[ok & sig], d[ok & sig], "o", color="C3", markersize=4, label="significant")
        ax.plot(days[ok & ~sig], d[ok & ~sig], "o", color="C0", markerfacecolor="white", markersize=4,
                label="not significant")
        ax.axhline(0.0, color="k", linewidth=0.8)
        unit = "" if metric in UNITLESS else _units(var)
        ax.set_ylabel(f"{METRIC_LABELS.get(metric, metric)} A - B" + (f" [{unit}]" if unit else ""))
        ax.set_xlabel("lead time (days)")
        ax.set_title(var)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    a, b = comparison.attrs.get("model_a", "A"), comparison.attrs.get("model_b", "B")
    fig.suptitle(f"{a} - {b}: {METRIC_LABELS.get(metric, metric)}, region {region}, "
                 f"{comparison.attrs.get('n_init_times', '?')} inits, block {comparison.attrs.get('block_length', '?')}")
    _save(fig, path)
    return fig
