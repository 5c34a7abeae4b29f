"""The evaluation layer (above metrics and baselines). Scorecards: score forecasts (and baselines) against a truth cube, WeatherBench2 style.

Forecast layout (WeatherBench2): a Dataset with dims ``time`` (initialisation time),
``prediction_timedelta`` (lead, usually starting at 0), optional ``member``, then
``[level]`` and the spatial dims (``latitude``, ``longitude`` or ``cell``), variables
under canonical names. The truth is a canonical cube (``atmos.open_dataset(...)``); it is
aligned to each forecast by valid time ``time + prediction_timedelta``
(:func:`align_truth`).

:func:`evaluate` returns a tidy scorecard: a Dataset with one variable ``score`` on dims
``(model, metric, region, variable, prediction_timedelta)``, where ``variable`` holds
short labels (``z500`` = geopotential at 500 hPa, ``t850``, ``t2m`` ...; see
:func:`parse_variable`). :func:`scorecard_to_dataframe` / :func:`write_scorecard` give
the long table ``model, metric, region, variable, lead_hours, score`` (CSV), and
:func:`read_scorecard` reads it back.

Baselines (``persistence``, ``climatology``) are produced in the same forecast layout
by :mod:`atmos.baselines` for the same init times and leads, and scored by the same
metric code.
"""


from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pandas as pd
import xarray as xr

from atmos.baselines.climatology import climatology_forecast
from atmos.baselines.persistence import persistence_forecast
from atmos.errors import ConfigError, DataError
from atmos.io.coords import area_weights
from atmos.io.write import write_netcdf
from atmos.metrics.deterministic import ACC, MAE, MSE, RMSE, Bias, Metric, Region, get_region
from atmos.metrics.forecast import align_truth, as_forecast
from atmos.metrics.forecast import check_same_grid as _check_grid
from atmos.metrics.bootstrap import DEFAULT_N_BOOT, bootstrap_difference, bootstrap_score
from atmos.metrics.probabilistic import (
    CRPS,
    CRPSS,
    EnergyScore,
    EnsembleMeanRMSE,
    EnsembleSpread,
    RankHistogram,
    RankReliability,
    SpreadSkill,
    UnbiasedEnsembleMeanRMSE,
    UnbiasedSpreadSkill,
    rank_histogram_flatness,
)
from atmos.metrics.spectral import ZonalSpectrum
from atmos.metrics.variables import resolve_variables, select_variables

__all__ = [
    "BASELINES",
    "METRICS",
    "compare",
    "comparison_to_dataframe",
    "evaluate",
    "evaluate_rank_histograms",
    "evaluate_spectra",
    "format_comparison",
    "format_scorecard",
    "read_scorecard",
    "scorecard_to_dataframe",
    "write_scorecard",
]

#: Metric name -> factory taking the (variable-selected) climatology.
METRICS: dict[str, Any] = {
    "rmse": lambda clim: RMSE(),
    "mse": lambda clim: MSE(),
    "bias": lambda clim: Bias(),
    "mae": lambda clim: MAE(),
    "acc": lambda clim: ACC(climatology=clim),
    "crps": lambda clim: CRPS(),
    "spread": lambda clim: EnsembleSpread(),
    "ensemble_mean_rmse": lambda clim: EnsembleMeanRMSE(),
    "spread_skill": lambda clim: SpreadSkill(),
    "spread_skill_unbiased": lambda clim: UnbiasedSpreadSkill(),
    "ensemble_mean_rmse_unbiased": lambda clim: UnbiasedEnsembleMeanRMSE(),
    "energy_score": lambda clim: EnergyScore(),
    "crpss": lambda clim: CRPSS(climatology=clim),
    "rank_reliability": lambda clim: RankReliability(),
}
#: Metrics that need a climatology.
NEEDS_CLIMATOLOGY: frozenset[str] = frozenset({"acc", "crpss"})
#: Metrics only an ensemble has (a deterministic forecast gets no score rather than a 0 or NaN).
_ENSEMBLE_ONLY = (EnsembleSpread, SpreadSkill, UnbiasedSpreadSkill, UnbiasedEnsembleMeanRMSE, RankHistogram,
                  RankReliability)
#: Baseline forecasts :func:`evaluate` can add.
BASELINES: tuple[str, ...] = ("persistence", "climatology")


# ======================================================================================
# the scorecard
# ======================================================================================
def _drop_aux(ds: Any) -> Any:
    """Drop non-index coordinates (``valid_time``, scalar ``level`` ...) except HEALPix ``cell_ids``."""
    return ds.drop_vars([c for c in ds.coords if c not in ds.dims and c != "cell_ids"])


def _leads_union(models: Mapping[str, xr.Dataset]) -> np.ndarray:
    leads = np.unique(np.concatenate([m["prediction_timedelta"].values for m in models.values()]))
    return leads.astype("timedelta64[ns]")


def _resolve_metrics(metrics: Sequence[str | Metric] | None, clim_sel: xr.Dataset | None) -> list[tuple[str, Metric]]:
    if metrics is None:
        metrics = ["rmse", "bias"] + (["acc"] if clim_sel is not None else [])
    out = []
    for m in metrics:
        if isinstance(m, Metric):
            if getattr(m, "climatology", None) is not None and clim_sel is not None:
                m = dataclasses.replace(m, climatology=clim_sel)
            out.append((m.name, m))
            continue
        key = str(m).lower()
        if key not in METRICS:
            raise ConfigError(f"unknown metric {m!r}; expected one of {sorted(METRICS)} or a Metric instance.")
        if key in NEEDS_CLIMATOLOGY and clim_sel is None:
            raise ConfigError(
                f"metric {key!r} needs a climatology: pass climatology=compute_climatology(training_cube) "
                "(CLI: --climatology CLIM.nc or --climatology-source NAME)."
            )
        out.append((key, METRICS[key](clim_sel)))
    return out


class _Chunks(NamedTuple):
    """Per-init chunk values ``{(model, metric, region): DataArray(time, variable, ...)}`` and context."""

    chunks: dict[tuple[str, str, str], xr.DataArray]
    metric_list: list[tuple[str, Metric]]
    region_list: list[tuple[str, Region | None]]
    names: list[str]
    specs: list[Any]
    inits: np.ndarray


def _score_chunks(
    forecast: xr.Dataset | Mapping[str, xr.Dataset],
    truth: xr.Dataset,
    metrics: Sequence[str | Metric] | None,
    climatology: xr.Dataset | None,
    baselines: Sequence[str] | None,
    variables: Iterable[str] | None,
    regions: Sequence[str | Region],
    name: str | None,
    init_chunk: int,
    missing: str,
) -> _Chunks:
    """The per-init values of every (model, metric, region): the common core of evaluate and compare."""
    if isinstance(forecast, xr.Dataset):
        label = name or str(forecast.attrs.get("model", forecast.attrs.get("model_name", "model")))
        models = {label: forecast}
    elif isinstance(forecast, Mapping):
        models = dict(forecast)
        if not models:
            raise ConfigError("no forecast given.")
    else:
        raise DataError(f"forecast must be a Dataset or a mapping of name -> Dataset, got {type(forecast).__name__}.")
    if not isinstance(truth, xr.Dataset) or "time" not in truth.dims:
        raise DataError("the truth must be a canonical Dataset with a 'time' dimension (atmos.open_dataset(...)).")
    if missing not in ("drop", "raise"):
        raise ConfigError(f"missing={missing!r}: expected 'drop' or 'raise'.")
    models = {k: _check_grid(as_forecast(v, k), truth, k) for k, v in models.items()}
    if baselines is None:
        baselines = ["persistence"] + (["climatology"] if climatology is not None else [])
    baselines = [str(b).lower() for b in baselines]
    for b in baselines:
        if b not in BASELINES:
            raise ConfigError(f"unknown baseline {b!r}; expected some of {list(BASELINES)}.")
        if b in models:
            raise ConfigError(f"a forecast is named {b!r} like a baseline; rename it.")
    if "climatology" in baselines and climatology is None:
        raise ConfigError(
            "the 'climatology' baseline needs a climatology: pass climatology=compute_climatology(training_cube)."
        )
    ref = [truth] + ([climatology] if climatology is not None else [])
    specs = resolve_variables(variables, *(list(models.values())[:1] + ref))
    for k, m in list(models.items())[1:]:
        resolve_variables([s.label for s in specs], m)
    truth_sel = select_variables(truth, specs)
    clim_sel = select_variables(climatology, specs) if climatology is not None else None
    if clim_sel is not None:
        clim_sel = _check_grid(clim_sel, truth_sel, "the climatology")
    metric_list = _resolve_metrics(metrics, clim_sel)
    region_list = [(r if isinstance(r, str) else r.name, get_region(r)) for r in regions]

    # init times shared by all models, restricted to those the truth covers
    inits = None
    for m in models.values():
        t = m["time"].values.astype("datetime64[ns]")
        inits = t if inits is None else np.intersect1d(inits, t)
    if inits is None or inits.size == 0:
        raise DataError("the forecasts share no init time.")
    leads = _leads_union(models)
    have = np.asarray(truth.indexes["time"].values, dtype="datetime64[ns]")
    ok = np.isin(inits[:, None] + leads[None, :], have).all(axis=1)
    if "persistence" in baselines:
        ok &= np.isin(inits, have)
    if not ok.all():
        msg = (
            f"{int((~ok).sum())} of {inits.size} init times have valid times outside the truth "
            f"({have[0]} .. {have[-1]}), e.g. {inits[~ok][:3]}"
        )
        if missing == "raise" or not ok.any():
            raise DataError(msg + "; score init times whose leads stay inside the truth period.")
        warnings.warn(msg + "; they are not scored.", UserWarning, stacklevel=2)
        inits = inits[ok]

    fc_sel = {k: select_variables(m, specs) for k, m in models.items()}
    names = list(models) + baselines
    chunks: dict[tuple[str, str, str], list[xr.Dataset]] = {}
    for start in range(0, inits.size, max(1, int(init_chunk))):
        block = inits[start : start + int(init_chunk)]
        y_all = align_truth(
            xr.Dataset(coords={"time": block, "prediction_timedelta": leads}), truth_sel
        ).load()
        sources: dict[str, xr.Dataset] = {}
        for k, f in fc_sel.items():
            sources[k] = f.sel(time=block).load()
        if "persistence" in baselines:
            sources["persistence"] = persistence_forecast(truth_sel, block, leads).load()
        if "climatology" in baselines:
            sources["climatology"] = climatology_forecast(clim_sel, block, leads).load()
        for k, f in sources.items():
            y = y_all.sel(prediction_timedelta=f["prediction_timedelta"])
            f, y = _drop_aux(f), _drop_aux(y)
            for mname, metric in metric_list:
                if isinstance(metric, _ENSEMBLE_ONLY) and "member" not in f.dims:
                    continue  # a deterministic forecast has no spread: no score rather than a 0
                for rname, reg in region_list:
                    val = metric.compute_chunk(f, y, region=reg).compute()
                    val = _drop_aux(val)
                    da = val.to_dataarray("variable") if isinstance(val, xr.Dataset) else val.expand_dims(variable=[val.name])
                    chunks.setdefault((k, mname, rname), []).append(da)
    merged = {key: xr.concat(v, dim="time") for key, v in chunks.items()}
    return _Chunks(merged, metric_list, region_list, names, specs, inits)


def evaluate(
    forecast: xr.Dataset | Mapping[str, xr.Dataset],
    truth: xr.Dataset,
    metrics: Sequence[str | Metric] | None = None,
    climatology: xr.Dataset | None = None,
    baselines: Sequence[str] | None = None,
    variables: Iterable[str] | None = None,
    regions: Sequence[str | Region] = ("global",),
    name: str | None = None,
    init_chunk: int = 32,
    missing: str = "drop",
    ci: float | None = None,
    n_boot: int = DEFAULT_N_BOOT,
    block_length: int | str | None = None,
    seed: int | None = 0,
) -> xr.Dataset:
    """Score forecasts and baselines against the truth; returns the tidy scorecard.

    Parameters
    ----------
    forecast : Dataset or mapping name -> Dataset
        Forecast(s) in the WeatherBench2 layout (module docstring). Several models are
        scored on the init times they share.
    truth : Dataset
        Canonical truth cube covering every valid time (``atmos.open_dataset(...)``).
    metrics : sequence of str or Metric, optional
        Names from :data:`METRICS` (``rmse``, ``bias``, ``acc``, ``mae``, ``crps``,
        ``spread``, ``spread_skill`` ...) or Metric instances. Default ``rmse``,
        ``bias`` and, with a climatology, ``acc``. Deterministic metrics score the
        ensemble mean of an ensemble forecast.
    climatology : Dataset, optional
        ``(hour, dayofyear, ...)`` climatology (:func:`atmos.io.climatology.compute_climatology`,
        :func:`atmos.io.climatology.load_climatology`); needed by ``acc`` and the
        ``climatology`` baseline. Compute it from *training* data, not the truth period.
    baselines : sequence of str, optional
        From :data:`BASELINES`; default ``persistence`` plus ``climatology`` when a
        climatology is given. ``()`` for none.
    variables : iterable of str, optional
        Short names (``z500``, ``t850``, ``t2m``) or canonical names (all levels);
        default: the headline variables present.
    regions : sequence of str or Region
        Region masks (:data:`atmos.metrics.REGIONS`: ``global``, ``tropics``,
        ``extratropics``, ``northern_extratropics``, ``southern_extratropics``).
    name : str, optional
        Model name when ``forecast`` is a single Dataset (default: its ``model`` attr or "model").
    init_chunk : int
        Init times processed (loaded) at a time.
    missing : {"drop", "raise"}
        Init times whose valid times (or, for persistence, the init time itself) are not
        all in the truth: dropped with a warning, or an error.
    ci : float, optional
        Confidence level (e.g. 0.95) of block-bootstrap intervals over init times for
        every score (:func:`atmos.metrics.bootstrap.bootstrap_score`): adds
        ``score_lower`` / ``score_upper``. Default none.
    n_boot, block_length, seed
        Bootstrap replicates, block length (init times, a duration such as ``"2D"``, or
        None: ``ceil(n^(1/3))``) and seed, with ``ci``.

    Returns
    -------
    Dataset
        ``score`` with dims ``(model, metric, region, variable, prediction_timedelta)``;
        models are the forecast names then the baselines. Attrs record the init times,
        the number of inits and the weighting.
    """
    res = _score_chunks(forecast, truth, metrics, climatology, baselines, variables, regions, name, init_chunk, missing)
    chunks, metric_list, region_list, names, specs, inits = res
    boot: dict[tuple[str, str, str], xr.Dataset] = {}
    if ci is not None:
        for key, vals in chunks.items():
            metric = dict(metric_list)[key[1]]
            boot[key] = bootstrap_score(vals, metric.finalize, n_boot=n_boot, block_length=block_length,
                                        confidence=ci, seed=seed)

    def assemble(pick) -> xr.DataArray:
        das = []
        for k in names:
            per_metric = []
            for mname, metric in metric_list:
                if (k, mname, region_list[0][0]) not in chunks:
                    continue
                per_region = [pick(k, mname, rname, metric).expand_dims(region=[rname]) for rname, _ in region_list]
                per_metric.append(xr.concat(per_region, dim="region").expand_dims(metric=[mname]))
            das.append(xr.concat(per_metric, dim="metric", join="outer").expand_dims(model=[k]))
        out = xr.concat(das, dim="model", join="outer").transpose(
            "model", "metric", "region", "variable", "prediction_timedelta")
        return out.reindex(variable=[s.label for s in specs]).astype(np.float64)

    score = assemble(lambda k, m, r, metric: _drop_aux(metric.finalize(chunks[(k, m, r)].mean("time"))))
    score.name = "score"
    out = score.to_dataset()
    if ci is not None:
        out["score_lower"] = assemble(lambda k, m, r, metric: boot[(k, m, r)]["lower"])
        out["score_upper"] = assemble(lambda k, m, r, metric: boot[(k, m, r)]["upper"])
    out["prediction_timedelta"].attrs["long_name"] = "lead time"
    out.attrs = {
        "title": "atmos scorecard",
        "n_init_times": int(inits.size),
        "first_init_time": str(inits[0]),
        "last_init_time": str(inits[-1]),
        "weights": "normalized cell area (WeatherBench2)",
        "time_mean": "metrics averaged over init times; RMSE = sqrt(time-mean MSE)",
        "ensemble_dim": "member (WeatherBench2's 'realization' is accepted on input)",
        "variables": "; ".join(f"{s.label}={s.name}" + (f"@{s.level}hPa" if s.level is not None else "") for s in specs),
    }
    if ci is not None:
        b0 = next(iter(boot.values()))
        out.attrs.update({"ci_confidence": float(ci), "ci_method": b0.attrs["method"],
                          "ci_block_length": int(b0.attrs["block_length"]), "ci_n_boot": int(n_boot)})
    if climatology is not None:
        for key in ("period", "window_days", "source"):
            if key in climatology.attrs:
                out.attrs[f"climatology_{key}"] = str(climatology.attrs[key])
    return out


# ======================================================================================
# paired comparison with bootstrap confidence intervals
# ======================================================================================
def compare(
    a: xr.Dataset,
    b: xr.Dataset | str,
    truth: xr.Dataset,
    metrics: Sequence[str | Metric] | None = None,
    climatology: xr.Dataset | None = None,
    variables: Iterable[str] | None = None,
    regions: Sequence[str | Region] = ("global",),
    names: tuple[str, str] | None = None,
    confidence: float = 0.95,
    n_boot: int = DEFAULT_N_BOOT,
    block_length: int | str | None = None,
    seed: int | None = 0,
    init_chunk: int = 32,
    missing: str = "drop",
) -> xr.Dataset:
    """Score difference ``A - B`` of two forecasts on the same init times, with paired block-bootstrap intervals.

    Both forecasts are scored by :func:`evaluate`'s code on the init times they share;
    the per-init values are resampled with the *same* blocks of init times for both
    (:func:`atmos.metrics.bootstrap.bootstrap_difference`), so the weather common to both
    cancels. A difference is ``significant`` when its ``confidence`` interval excludes 0.
    For error scores (RMSE, CRPS ...) a negative difference means A is better; for ACC,
    CRPSS a positive one.

    Parameters
    ----------
    a : Dataset
        Forecast A in the WeatherBench2 layout (``member`` or ``realization`` ensembles).
    b : Dataset or str
        Forecast B, or a baseline name from :data:`BASELINES` (``persistence``,
        ``climatology``: built for A's init times and leads).
    truth, climatology, variables, regions, init_chunk, missing
        As in :func:`evaluate`.
    metrics : sequence of str or Metric, optional
        Default ``rmse``, plus ``acc`` with a climatology and ``crps`` when A or B is an
        ensemble.
    names : (str, str), optional
        Labels of A and B (default: their ``model`` attrs, or ``"A"`` / the baseline name).
    confidence, n_boot, block_length, seed
        Interval level, replicates, block length (init times, a duration such as
        ``"2D"``, or None: ``ceil(n^(1/3))``, see :mod:`atmos.metrics.bootstrap`), seed.

    Returns
    -------
    Dataset
        Dims ``(metric, region, variable, prediction_timedelta)``: ``score_a``,
        ``score_b``, ``difference`` (A - B), ``lower``, ``upper``, ``significant``,
        ``p_value``. Attrs: ``model_a``, ``model_b``, ``n_init_times``, ``confidence``,
        ``block_length``, ``n_boot``, ``method``.
    """
    if not isinstance(a, xr.Dataset):
        raise DataError(f"forecast A must be an xarray Dataset in the forecast layout, got {type(a).__name__}.")
    baseline = None
    if isinstance(b, str):
        baseline = b.lower()
        if baseline not in BASELINES:
            raise ConfigError(
                f"forecast B {b!r} is neither a Dataset nor a baseline; expected a forecast Dataset or one of "
                f"{list(BASELINES)}."
            )
    elif not isinstance(b, xr.Dataset):
        raise DataError(f"forecast B must be a Dataset or a baseline name, got {type(b).__name__}.")
    name_a, name_b = names if names is not None else (
        str(a.attrs.get("model", "A")), baseline or str(b.attrs.get("model", "B")))
    if name_a == name_b:
        name_a, name_b = f"A:{name_a}", f"B:{name_b}"
    models = {name_a: a} if baseline is not None else {name_a: a, name_b: b}
    if metrics is None:
        is_ens = any(d in m.dims for m in models.values() for d in ("member", "realization"))
        metrics = ["rmse"] + (["acc"] if climatology is not None else []) + (["crps"] if is_ens else [])
    res = _score_chunks(models, truth, metrics, climatology, [baseline] if baseline else [], variables, regions,
                        None, init_chunk, missing)
    per_metric = []
    attrs: dict[str, Any] = {}
    for mname, metric in res.metric_list:
        per_region = []
        for rname, _ in res.region_list:
            ka, kb = (name_a, mname, rname), (name_b, mname, rname)
            if ka not in res.chunks or kb not in res.chunks:
                continue
            va, vb = xr.align(res.chunks[ka], res.chunks[kb], join="inner")
            d = bootstrap_difference(va, vb, metric.finalize, n_boot=n_boot, block_length=block_length,
                                     confidence=confidence, seed=seed)
            attrs = dict(d.attrs)
            per_region.append(_drop_aux(d).expand_dims(region=[rname]))
        if per_region:
            per_metric.append(xr.concat(per_region, dim="region").expand_dims(metric=[mname]))
    if not per_metric:
        raise DataError(
            f"no metric of {[m for m, _ in res.metric_list]} scores both {name_a!r} and {name_b!r} (spread-type metrics "
            "need two ensembles); choose e.g. metrics=['rmse', 'crps']."
        )
    out = xr.concat(per_metric, dim="metric", join="outer")
    out = out.transpose("metric", "region", "variable", "prediction_timedelta")
    out = out.reindex(variable=[s.label for s in res.specs])
    out["significant"] = out["significant"].fillna(False).astype(bool)
    out.attrs = {
        "title": "atmos paired comparison (A - B)",
        "model_a": name_a,
        "model_b": name_b,
        "n_init_times": int(res.inits.size),
        "first_init_time": str(res.inits[0]),
        "last_init_time": str(res.inits[-1]),
        "weights": "normalized cell area (WeatherBench2)",
        **attrs,
    }
    return out


def format_comparison(comparison: xr.Dataset, leads: Sequence[Any] | None = None, digits: int = 4) -> str:
    """Text table of :func:`compare`: per metric, region and variable, rows = leads; ``*`` marks significance."""
    c = comparison
    if leads is not None:
        want = pd.to_timedelta(list(leads)).to_numpy("timedelta64[ns]")
        c = c.sel(prediction_timedelta=[x for x in want if x in c["prediction_timedelta"].values])
    a, b = c.attrs.get("model_a", "A"), c.attrs.get("model_b", "B")
    conf = 100 * float(c.attrs.get("confidence", 0.95))
    w = digits + 8
    lines = [f"A = {a}, B = {b}: A - B with its {conf:g}% paired block-bootstrap interval "
             f"(block {c.attrs.get('block_length')} init times, {c.attrs.get('n_boot')} replicates, "
             f"{c.attrs.get('n_init_times')} inits); * = significant (interval excludes 0)", ""]
    for metric in c["metric"].values:
        for region in c["region"].values:
            for var in c["variable"].values:
                sub = c.sel(metric=metric, region=region, variable=var)
                if bool(sub["difference"].isnull().all()):
                    continue
                n_sig = int(sub["significant"].sum())
                lines.append(f"{str(metric).upper()}  region={region}  variable={var}  "
                             f"(significant at {n_sig} of {sub.sizes['prediction_timedelta']} leads)")
                lines.append(f"{'lead':>8}{'A':>{w}}{'B':>{w}}{'A - B':>{w}}{'interval':>{2 * w + 4}}  sig")
                for td in sub["prediction_timedelta"].values:
                    r = sub.sel(prediction_timedelta=td)
                    f = [float(r[k]) for k in ("score_a", "score_b", "difference", "lower", "upper")]
                    ci = f"[{f[3]:.{digits}g}, {f[4]:.{digits}g}]"
                    mark = "  *" if bool(r["significant"]) else ""
                    lines.append(f"{_lead_label(td):>8}{f[0]:>{w}.{digits}g}{f[1]:>{w}.{digits}g}"
                                 f"{f[2]:>{w}.{digits}g}{ci:>{2 * w + 4}}{mark}")
                lines.append("")
    return "\n".join(lines)


def comparison_to_dataframe(comparison: xr.Dataset) -> pd.DataFrame:
    """Long table of :func:`compare`: ``metric, region, variable, lead_hours, score_a, score_b, difference, lower, upper, significant, p_value``."""
    cols = ["score_a", "score_b", "difference", "lower", "upper", "significant", "p_value"]
    df = comparison[cols].to_dataframe().reset_index()
    df["lead_hours"] = df["prediction_timedelta"] / pd.Timedelta("1h")
    df = df.dropna(subset=["difference"])
    return df[["metric", "region", "variable", "lead_hours", *cols]].reset_index(drop=True)


# ======================================================================================
# rank histograms
# ======================================================================================
def evaluate_rank_histograms(
    forecast: xr.Dataset,
    truth: xr.Dataset,
    variables: Iterable[str] | None = None,
    region: str | Region = "global",
    init_chunk: int = 32,
    missing: str = "drop",
) -> xr.Dataset:
    """Area-weighted Talagrand rank histograms of an ensemble per variable and lead, with flatness statistics.

    Returns
    -------
    Dataset
        ``histogram`` on ``(variable, prediction_timedelta, bins)`` (relative frequencies
        summing to 1 per variable and lead: :class:`atmos.metrics.RankHistogram` averaged
        over init times) and, on ``(variable, prediction_timedelta)``, the
        ``reliability_index``, ``chi2``, ``delta`` and ``p_value`` of
        :func:`atmos.metrics.rank_histogram_flatness` with ``N`` = init times x cells
        (the nominal number of cases: correlated cells make ``chi2`` / ``p_value``
        overstate significance; compare ensembles by ``reliability_index``).

    Raises
    ------
    DataError
        The forecast has no ensemble dimension.
    """
    fc = as_forecast(forecast, "the forecast")
    if "member" not in fc.dims:
        raise DataError(
            f"rank histograms need an ensemble forecast with a 'member' (or 'realization') dimension; dims "
            f"{sorted(map(str, fc.dims))}. Roll out with --members N."
        )
    rname = region if isinstance(region, str) else region.name
    res = _score_chunks({"forecast": fc}, truth, [RankHistogram()], None, [], variables, [region], None,
                        init_chunk, missing)
    vals = res.chunks[("forecast", "rank_histogram", rname)]
    hist = vals.mean("time").transpose("variable", "prediction_timedelta", "bins")
    hist = hist.reindex(variable=[s.label for s in res.specs])
    reg = get_region(region)
    w = fc.isel(time=0, prediction_timedelta=0, member=0)[next(iter(fc.data_vars))]
    aw = area_weights(w)
    if reg is not None:
        aw = reg.apply(aw, w)
    n_cells = int((aw > 0).sum())
    n_cases = float(res.inits.size * n_cells)
    flat = rank_histogram_flatness(hist, n_cases=n_cases)
    out = flat.assign(histogram=hist)
    out.attrs = {
        "title": "atmos rank histograms",
        "region": rname,
        "n_init_times": int(res.inits.size),
        "n_cells": n_cells,
        "n_members": int(fc.sizes["member"]),
        "n_cases_nominal": n_cases,
        "weights": "normalized cell area (WeatherBench2)",
    }
    return out


# ======================================================================================
# tables
# ======================================================================================
def scorecard_to_dataframe(scorecard: xr.Dataset) -> pd.DataFrame:
    """Long table ``model, metric, region, variable, lead_hours, score`` (NaN rows dropped).

    A scorecard with bootstrap intervals (``evaluate(..., ci=0.95)``) adds the columns
    ``score_lower`` and ``score_upper``.
    """
    cols = ["score"] + [c for c in ("score_lower", "score_upper") if c in scorecard.data_vars]
    df = scorecard[cols].to_dataframe().reset_index()
    df["lead_hours"] = df["prediction_timedelta"] / pd.Timedelta("1h")
    df = df.dropna(subset=["score"])
    return df[["model", "metric", "region", "variable", "lead_hours", *cols]].reset_index(drop=True)


def write_scorecard(scorecard: xr.Dataset, path: str | Path) -> Path:
    """Write the scorecard as CSV (long table) or netCDF (``.nc``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".nc":
        write_netcdf(scorecard, path, what="atmos evaluate")
    else:
        scorecard_to_dataframe(scorecard).to_csv(path, index=False, float_format="%.8g")
    return path


def read_scorecard(path: str | Path) -> xr.Dataset:
    """Read a scorecard written by :func:`write_scorecard` (CSV or netCDF)."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"scorecard {str(path)!r} does not exist; write one with `atmos evaluate ... -o scores.csv`.")
    if path.suffix == ".nc":
        return xr.open_dataset(path, decode_timedelta=True).load()
    df = pd.read_csv(path)
    need = {"model", "metric", "region", "variable", "lead_hours", "score"}
    if not need <= set(df.columns):
        raise DataError(
            f"{str(path)!r} is not an atmos scorecard: columns {list(df.columns)}, expected {sorted(need)}."
        )
    df["prediction_timedelta"] = pd.to_timedelta(df["lead_hours"], unit="h")
    order = {c: list(dict.fromkeys(df[c])) for c in ("model", "metric", "region", "variable")}
    cols = ["score"] + [c for c in ("score_lower", "score_upper") if c in df.columns]
    ds = df.set_index(["model", "metric", "region", "variable", "prediction_timedelta"])[cols].to_xarray()
    return ds.reindex({c: v for c, v in order.items()})


def _lead_label(td: np.timedelta64) -> str:
    h = td / np.timedelta64(1, "h")
    days = h / 24.0
    return f"{h:g}h" if h < 24 or h % 24 else f"{days:g}d"


def format_scorecard(
    scorecard: xr.Dataset, leads: Sequence[Any] | None = None, digits: int = 4
) -> str:
    """A readable text table: per metric, region and model, rows = leads, columns = variables.

    With bootstrap intervals in the scorecard (``score_lower`` / ``score_upper``) each cell
    reads ``score [lower, upper]``.
    """
    da = scorecard["score"]
    has_ci = "score_lower" in scorecard.data_vars and "score_upper" in scorecard.data_vars
    if leads is not None:
        want = pd.to_timedelta(list(leads)).to_numpy("timedelta64[ns]")
        sel = [x for x in want if x in da["prediction_timedelta"].values]
        da = da.sel(prediction_timedelta=sel)
        scorecard = scorecard.sel(prediction_timedelta=sel)
    lines: list[str] = []
    variables = [str(v) for v in da["variable"].values]
    width = max(12, *(len(v) + 2 for v in variables))
    if has_ci:
        width = max(width, 3 * (digits + 6) + 4)

    def cell(metric, region, model, td, v) -> str:
        x = float(da.sel(metric=metric, region=region, model=model, prediction_timedelta=td, variable=v))
        if not has_ci:
            return f"{x:>{width}.{digits}g}"
        pt = dict(metric=metric, region=region, model=model, prediction_timedelta=td, variable=v)
        lo, hi = float(scorecard["score_lower"].sel(pt)), float(scorecard["score_upper"].sel(pt))
        return f"{f'{x:.{digits}g} [{lo:.{digits}g}, {hi:.{digits}g}]':>{width}}"

    for metric in da["metric"].values:
        for region in da["region"].values:
            for model in da["model"].values:
                sub = da.sel(metric=metric, region=region, model=model)
                if bool(sub.isnull().all()):
                    continue
                lines.append(f"{str(metric).upper()}  region={region}  model={model}")
                lines.append(f"{'lead':>8}" + "".join(f"{v:>{width}}" for v in variables))
                for td in sub["prediction_timedelta"].values:
                    cells = "".join(cell(metric, region, model, td, v) for v in variables)
                    lines.append(f"{_lead_label(td):>8}" + cells)
                lines.append("")
    return "\n".join(lines)


# ======================================================================================
# spectra
# ======================================================================================
def evaluate_spectra(
    forecast: xr.Dataset | Mapping[str, xr.Dataset],
    truth: xr.Dataset,
    leads: Sequence[Any] | None = None,
    variables: Iterable[str] | None = None,
    band: str | Region | None = None,
    name: str | None = None,
    init_chunk: int = 32,
) -> xr.DataArray:
    """Time-mean zonal power spectra of forecasts and of the truth at the same valid times.

    Returns
    -------
    DataArray
        Dims ``(model, variable, prediction_timedelta, zonal_wavenumber)``; the model
        ``"truth"`` holds the spectrum of the truth at the valid times of the first
        forecast's init times and leads. ``band`` defaults to ``30 <= |lat| <= 60``.
    """
    if isinstance(forecast, xr.Dataset):
        models = {name or str(forecast.attrs.get("model", "model")): forecast}
    else:
        models = dict(forecast)
    models = {k: _check_grid(as_forecast(v, k), truth, k) for k, v in models.items()}
    first = next(iter(models.values()))
    specs = resolve_variables(variables, first, truth)
    metric = ZonalSpectrum() if band is None else ZonalSpectrum(band=get_region(band))
    out = []
    for k, m in list(models.items()) + [("truth", None)]:
        src = first if m is None else m
        f = select_variables(src, specs)
        if leads is not None:
            want = pd.to_timedelta(list(leads)).to_numpy("timedelta64[ns]")
            f = f.sel(prediction_timedelta=[x for x in want if x in f["prediction_timedelta"].values])
        if m is None:
            have = np.asarray(truth.indexes["time"].values, dtype="datetime64[ns]")
            vt = f["time"].values[:, None] + f["prediction_timedelta"].values[None, :]
            keep = np.isin(vt, have).all(axis=1)
            f = align_truth(f.isel(time=np.nonzero(keep)[0]), select_variables(truth, specs))
        vals = []
        for start in range(0, f.sizes["time"], max(1, int(init_chunk))):
            blk = f.isel(time=slice(start, start + int(init_chunk))).load()
            vals.append(metric.compute_chunk(blk).compute())
        spec = xr.concat(vals, dim="time").mean("time")
        spec = _drop_aux(spec)
        out.append(spec.to_dataarray("variable").expand_dims(model=[k]))
    res = xr.concat(out, dim="model", join="outer").transpose("model", "variable", "prediction_timedelta", "zonal_wavenumber")
    res.name = "zonal_power_spectrum"
    res.attrs = {"units": "m * (variable units)^2", "band": getattr(metric.band, "name", "all latitudes")}
    return res
