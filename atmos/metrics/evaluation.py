"""Scorecards: score forecasts (and baselines) against a truth cube, WeatherBench2 style.

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
import re
import warnings
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from atmos.baselines.climatology import climatology_forecast
from atmos.baselines.persistence import persistence_forecast
from atmos.errors import ConfigError, DataError, GridError
from atmos.io.write import write_netcdf
from atmos.metrics.deterministic import ACC, MAE, MSE, RMSE, Bias, Metric, Region, get_region
from atmos.metrics.probabilistic import CRPS, EnsembleMeanRMSE, EnsembleSpread, SpreadSkill
from atmos.metrics.spectral import ZonalSpectrum

__all__ = [
    "IncompleteForecastWarning",
    "BASELINES",
    "HEADLINE_VARIABLES",
    "METRICS",
    "VariableSpec",
    "align_truth",
    "evaluate",
    "evaluate_spectra",
    "format_scorecard",
    "open_forecast",
    "parse_variable",
    "read_scorecard",
    "resolve_variables",
    "scorecard_to_dataframe",
    "select_variables",
    "short_label",
    "write_scorecard",
]

#: Default variables of scorecards and plots (those present are used).
HEADLINE_VARIABLES: tuple[str, ...] = ("z500", "t850", "t2m")
#: One-letter prefixes of pressure-level variables: ``z500`` = geopotential at 500 hPa.
LEVEL_SHORT: dict[str, str] = {
    "z": "geopotential",
    "t": "temperature",
    "u": "u_component_of_wind",
    "v": "v_component_of_wind",
    "q": "specific_humidity",
    "w": "vertical_velocity",
    "r": "relative_humidity",
}
#: Short names of single-level variables.
SURFACE_SHORT: dict[str, str] = {
    "t2m": "2m_temperature",
    "d2m": "2m_dewpoint_temperature",
    "u10": "10m_u_component_of_wind",
    "v10": "10m_v_component_of_wind",
    "msl": "mean_sea_level_pressure",
    "sp": "surface_pressure",
    "tcwv": "total_column_water_vapour",
    "tcc": "total_cloud_cover",
    "tp6h": "total_precipitation_6hr",
    "tp24h": "total_precipitation_24hr",
    "tisr": "toa_incident_solar_radiation",
    "sst": "sea_surface_temperature",
}
_LEVEL_LONG = {v: k for k, v in LEVEL_SHORT.items()}
_SURFACE_LONG = {v: k for k, v in SURFACE_SHORT.items()}

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
}
#: Baseline forecasts :func:`evaluate` can add.
BASELINES: tuple[str, ...] = ("persistence", "climatology")


# ======================================================================================
# variables
# ======================================================================================
@dataclasses.dataclass(frozen=True)
class VariableSpec:
    """One scored field: ``label`` (e.g. ``"z500"``) = variable ``name`` at pressure ``level`` (or None)."""

    label: str
    name: str
    level: int | None = None


def short_label(name: str, level: Any = None) -> str:
    """``("geopotential", 500) -> "z500"``, ``("2m_temperature", None) -> "t2m"``, else ``name`` / ``name_level``."""
    if level is None:
        return _SURFACE_LONG.get(name, name)
    lev = int(level) if float(level) == int(level) else level
    if name in _LEVEL_LONG:
        return f"{_LEVEL_LONG[name]}{lev}"
    return f"{name}_{lev}"


def parse_variable(text: str) -> VariableSpec:
    """Parse ``z500``, ``t850``, ``t2m``, ``geopotential_500`` or a canonical name.

    A canonical name without a level (``"geopotential"``) means all of its levels
    (expanded by :func:`resolve_variables`).
    """
    s = str(text).strip()
    if s in SURFACE_SHORT:
        return VariableSpec(s, SURFACE_SHORT[s], None)
    m = re.fullmatch(r"([a-z])(\d+)", s)
    if m and m[1] in LEVEL_SHORT:
        return VariableSpec(s, LEVEL_SHORT[m[1]], int(m[2]))
    m = re.fullmatch(r"(.+?)[_@](\d+)", s)
    if m and not s[0].isdigit():
        return VariableSpec(short_label(m[1], int(m[2])), m[1], int(m[2]))
    return VariableSpec(short_label(s), s, None)


def _time_varying(ds: xr.Dataset) -> list[str]:
    return [str(k) for k, v in ds.data_vars.items() if "time" in v.dims]


def resolve_variables(names: Iterable[str] | None, *datasets: xr.Dataset) -> list[VariableSpec]:
    """Variables to score, present in every dataset.

    ``names=None``: the :data:`HEADLINE_VARIABLES` present in all datasets, or, if none
    is, every common time-varying variable at every common level.
    """
    if not datasets:
        raise ConfigError("resolve_variables needs at least one dataset.")
    if names is None:
        specs = []
        for h in HEADLINE_VARIABLES:
            sp = parse_variable(h)
            if all(_has(ds, sp) for ds in datasets):
                specs.append(sp)
        if specs:
            return specs
        common = [v for v in _time_varying(datasets[0]) if all(v in ds.data_vars for ds in datasets[1:])]
        if not common:
            raise DataError(
                "the forecast and the truth have no variable in common (forecast: "
                f"{sorted(map(str, datasets[0].data_vars))}; truth: {sorted(map(str, datasets[-1].data_vars))})."
            )
        names = common
    out: list[VariableSpec] = []
    for n in names:
        sp = parse_variable(n)
        for ds, what in zip(datasets, ("forecast", "truth", "climatology", "dataset", "dataset"), strict=False):
            if sp.name not in ds.data_vars:
                raise DataError(
                    f"variable {n!r} ({sp.name}) is not in the {what} (it has {sorted(map(str, ds.data_vars))}); "
                    "use short names such as z500, t850, t2m or canonical names."
                )
        da = datasets[0][sp.name]
        if sp.level is None and "level" in da.dims:
            levels = [lv for lv in da["level"].values.tolist() if all(_has(ds, VariableSpec("", sp.name, lv)) for ds in datasets)]
            out.extend(VariableSpec(short_label(sp.name, lv), sp.name, int(lv)) for lv in levels)
            continue
        for ds, what in zip(datasets, ("forecast", "truth", "climatology", "dataset", "dataset"), strict=False):
            if not _has(ds, sp):
                lv = ds[sp.name]["level"].values.tolist() if "level" in ds[sp.name].dims else []
                raise DataError(f"{sp.name} has no level {sp.level} in the {what} (levels {lv}).")
        out.append(sp)
    seen: set[str] = set()
    return [s for s in out if not (s.label in seen or seen.add(s.label))]


def _has(ds: xr.Dataset, sp: VariableSpec) -> bool:
    if sp.name not in ds.data_vars:
        return False
    da = ds[sp.name]
    if sp.level is None:
        return True
    return "level" in da.dims and sp.level in da["level"].values.tolist()


def select_variables(ds: xr.Dataset, specs: Sequence[VariableSpec]) -> xr.Dataset:
    """A Dataset with one variable per spec, named by its label, the level selected (and dropped)."""
    out = {}
    for sp in specs:
        da = ds[sp.name]
        if sp.level is not None:
            da = da.sel(level=sp.level, drop=True)
        out[sp.label] = da.rename(sp.label)
    res = xr.Dataset(out, attrs=dict(ds.attrs))
    if "level" in res.coords and "level" not in res.dims:
        res = res.drop_vars("level")
    return res


# ======================================================================================
# forecasts and alignment
# ======================================================================================
def open_forecast(path: str | Path) -> xr.Dataset:
    """Open a forecast in the WeatherBench2 layout (zarr store or netCDF) lazily and check it.

    ``init_time``/``lead_time``/``step`` are accepted as aliases of ``time`` /
    ``prediction_timedelta``; latitude is made ascending.
    """
    p = str(path)
    if "://" not in p and not Path(p).exists():
        raise DataError(f"forecast {p!r} does not exist; expected a zarr store or netCDF file in the WeatherBench2 layout.")
    try:
        if p.endswith((".nc", ".nc4", ".netcdf")):
            ds = xr.open_dataset(p, chunks={}, decode_timedelta=True)
        else:
            ds = xr.open_zarr(p, decode_timedelta=True)
    except (OSError, ValueError) as err:
        raise DataError(f"cannot read forecast {p!r} ({err}); expected a zarr store or a netCDF file.") from err
    status = ds.attrs.get("atmos_status")
    if status is not None and status != "complete":
        warnings.warn(
            f"the forecast {p!r} is not complete (atmos_status {status!r}: {ds.attrs.get('atmos_completed_steps')} "
            f"of {ds.attrs.get('atmos_total_steps')} leads written); the leads not written are NaN and score as NaN. "
            "Complete it with `atmos rollout ... --resume`.",
            IncompleteForecastWarning,
            stacklevel=2,
        )
    ds.encoding.setdefault("source", p)
    return as_forecast(ds, p)


class IncompleteForecastWarning(UserWarning):
    """A forecast store whose rollout did not finish (interrupted or failed) is being read."""


def as_forecast(ds: xr.Dataset, what: str = "forecast") -> xr.Dataset:
    """Check (and lightly normalise) a Dataset in the WeatherBench2 forecast layout."""
    if not isinstance(ds, xr.Dataset):
        raise DataError(f"{what} must be an xarray Dataset in the forecast layout, got {type(ds).__name__}.")
    ren = {a: b for a, b in (("init_time", "time"), ("lead_time", "prediction_timedelta"), ("step", "prediction_timedelta"),
                              ("lat", "latitude"), ("lon", "longitude"))
           if a in ds.dims and b not in ds.dims}
    if ren:
        ds = ds.rename(ren)
    for d in ("time", "prediction_timedelta"):
        if d not in ds.dims:
            raise DataError(
                f"{what} has no {d!r} dimension (dims {sorted(map(str, ds.dims))}); expected the WeatherBench2 "
                "forecast layout: time (init) x prediction_timedelta (lead) x [member] x [level] x latitude x "
                "longitude, as written by atmos.rollout."
            )
    if ds["prediction_timedelta"].dtype.kind != "m":
        raise DataError(
            f"{what}: prediction_timedelta has dtype {ds['prediction_timedelta'].dtype}; expected timedelta64 "
            "(open the file with decode_timedelta=True)."
        )
    if ds["time"].dtype.kind != "M":
        raise DataError(f"{what}: time has dtype {ds['time'].dtype}; expected datetime64 init times.")
    if "latitude" in ds.dims and ds.sizes["latitude"] > 1 and float(ds["latitude"][0]) > float(ds["latitude"][-1]):
        ds = ds.isel(latitude=slice(None, None, -1))
    return ds


def _check_grid(forecast: xr.Dataset, truth: xr.Dataset, what: str) -> xr.Dataset:
    """Raise unless both are on the same grid; returns the forecast with the truth's coordinate values."""
    for d in ("cell", "latitude", "longitude"):
        if (d in forecast.dims) != (d in truth.dims):
            raise GridError(
                f"{what} and the truth are on different grids ({what} dims {sorted(map(str, forecast.dims))}, truth "
                f"{sorted(map(str, truth.dims))}); regrid the forecast with atmos.io.regrid.regrid(fc, grid_of(truth))."
            )
        if d in ("latitude", "longitude") and d in forecast.dims:
            a, b = forecast[d].values, truth[d].values
            if a.shape != b.shape or not np.allclose(a, b, rtol=0, atol=1e-6):
                raise GridError(
                    f"{what}'s {d} ({a.size} values {a[:1]}..{a[-1:]}) differs from the truth's ({b.size} values "
                    f"{b[:1]}..{b[-1:]}); regrid the forecast with atmos.io.regrid.regrid(fc, atmos.io.grid_of(truth))."
                )
            forecast = forecast.assign_coords({d: truth[d]})
    if "cell" in forecast.dims and forecast.sizes["cell"] != truth.sizes["cell"]:
        raise GridError(f"{what} has {forecast.sizes['cell']} cells, the truth {truth.sizes['cell']}; regrid one of them.")
    return forecast


def align_truth(forecast: xr.Dataset | xr.DataArray, truth: xr.Dataset | xr.DataArray) -> xr.Dataset | xr.DataArray:
    """The truth at the forecast's valid times, with the forecast's ``(time, prediction_timedelta)`` dims.

    ``out[time=t0, prediction_timedelta=dt] = truth[time=t0 + dt]``; a ``valid_time``
    coordinate is attached. Raises DataError if a valid time is not in the truth.
    """
    vt = forecast["time"] + forecast["prediction_timedelta"]
    have = truth.indexes["time"]
    missing = ~np.isin(vt.values, np.asarray(have.values, dtype=vt.dtype))
    if missing.any():
        bad = np.unique(vt.values[missing])
        raise DataError(
            f"{bad.size} valid time(s) of the forecast are not in the truth (e.g. {bad[:3]}); the truth covers "
            f"{have[0]} .. {have[-1]}. Score only init times whose leads stay inside the truth period."
        )
    out = truth.rename(time="valid_time").sel(valid_time=vt)
    return out.transpose("time", "prediction_timedelta", ...)


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
        if key == "acc" and clim_sel is None:
            raise ConfigError(
                "metric 'acc' needs a climatology: pass climatology=compute_climatology(training_cube) "
                "(CLI: --climatology CLIM.nc or --climatology-source NAME)."
            )
        out.append((key, METRICS[key](clim_sel)))
    return out


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
        ``(hour, dayofyear, ...)`` climatology (:func:`atmos.metrics.compute_climatology`,
        :func:`atmos.metrics.load_climatology`); needed by ``acc`` and the
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

    Returns
    -------
    Dataset
        ``score`` with dims ``(model, metric, region, variable, prediction_timedelta)``;
        models are the forecast names then the baselines. Attrs record the init times,
        the number of inits and the weighting.
    """
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
                if isinstance(metric, (EnsembleSpread, SpreadSkill)) and "member" not in f.dims:
                    continue  # a deterministic forecast has no spread: no score rather than a 0
                for rname, reg in region_list:
                    val = metric.compute_chunk(f, y, region=reg)
                    chunks.setdefault((k, mname, rname), []).append(val.compute())

    das = []
    for k in names:
        per_metric = []
        for mname, metric in metric_list:
            if (k, mname, region_list[0][0]) not in chunks:
                continue
            per_region = []
            for rname, _ in region_list:
                vals = xr.concat(chunks[(k, mname, rname)], dim="time")
                res = metric.finalize(vals.mean("time"))
                res = _drop_aux(res)
                da = res.to_dataarray("variable") if isinstance(res, xr.Dataset) else res.expand_dims(variable=[res.name])
                per_region.append(da.expand_dims(region=[rname]))
            per_metric.append(xr.concat(per_region, dim="region").expand_dims(metric=[mname]))
        das.append(xr.concat(per_metric, dim="metric", join="outer").expand_dims(model=[k]))
    score = xr.concat(das, dim="model", join="outer").transpose("model", "metric", "region", "variable", "prediction_timedelta")
    score = score.reindex(variable=[s.label for s in specs]).astype(np.float64)
    score.name = "score"
    out = score.to_dataset()
    out["prediction_timedelta"].attrs["long_name"] = "lead time"
    out.attrs = {
        "title": "atmos scorecard",
        "n_init_times": int(inits.size),
        "first_init_time": str(inits[0]),
        "last_init_time": str(inits[-1]),
        "weights": "normalized cell area (WeatherBench2)",
        "time_mean": "metrics averaged over init times; RMSE = sqrt(time-mean MSE)",
        "variables": "; ".join(f"{s.label}={s.name}" + (f"@{s.level}hPa" if s.level is not None else "") for s in specs),
    }
    if climatology is not None:
        for key in ("period", "window_days", "source"):
            if key in climatology.attrs:
                out.attrs[f"climatology_{key}"] = str(climatology.attrs[key])
    return out


# ======================================================================================
# tables
# ======================================================================================
def scorecard_to_dataframe(scorecard: xr.Dataset) -> pd.DataFrame:
    """Long table ``model, metric, region, variable, lead_hours, score`` (NaN rows dropped)."""
    da = scorecard["score"]
    df = da.to_dataframe().reset_index()
    df["lead_hours"] = df["prediction_timedelta"] / pd.Timedelta("1h")
    df = df.dropna(subset=["score"])
    return df[["model", "metric", "region", "variable", "lead_hours", "score"]].reset_index(drop=True)


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
    da = df.set_index(["model", "metric", "region", "variable", "prediction_timedelta"])["score"].to_xarray()
    da = da.reindex({c: v for c, v in order.items()})
    return da.to_dataset(name="score")


def _lead_label(td: np.timedelta64) -> str:
    h = td / np.timedelta64(1, "h")
    days = h / 24.0
    return f"{h:g}h" if h < 24 or h % 24 else f"{days:g}d"


def format_scorecard(
    scorecard: xr.Dataset, leads: Sequence[Any] | None = None, digits: int = 4
) -> str:
    """A readable text table: per metric, region and model, rows = leads, columns = variables."""
    da = scorecard["score"]
    if leads is not None:
        want = pd.to_timedelta(list(leads)).to_numpy("timedelta64[ns]")
        da = da.sel(prediction_timedelta=[x for x in want if x in da["prediction_timedelta"].values])
    lines: list[str] = []
    variables = [str(v) for v in da["variable"].values]
    width = max(12, *(len(v) + 2 for v in variables))
    for metric in da["metric"].values:
        for region in da["region"].values:
            for model in da["model"].values:
                sub = da.sel(metric=metric, region=region, model=model)
                if bool(sub.isnull().all()):
                    continue
                lines.append(f"{str(metric).upper()}  region={region}  model={model}")
                lines.append(f"{'lead':>8}" + "".join(f"{v:>{width}}" for v in variables))
                for td in sub["prediction_timedelta"].values:
                    row = sub.sel(prediction_timedelta=td)
                    cells = "".join(f"{float(row.sel(variable=v)):>{width}.{digits}g}" for v in variables)
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
