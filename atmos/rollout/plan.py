"""A validated rollout: :func:`plan_rollout` checks every argument and the data, once, and returns a
:class:`RolloutPlan` (nothing is written); :func:`atmos.rollout.run.run_plan` then runs it."""

from __future__ import annotations

import datetime as _dt
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr
from torch import nn

from atmos.errors import ConfigError
from atmos.rollout.context import DataContext, build_context
from atmos.rollout.forecaster import Forecaster
from atmos.rollout.layout import DEFAULT_ENSEMBLE_DIM, Layout, check_ensemble_dim, forecast_layout
from atmos.rollout.perturbation import PerturbationMethod
from atmos.rollout.perturbations import resolve_perturbation
from atmos.rollout.times import as_timedelta, parse_init

__all__ = ["RolloutPlan", "plan_rollout"]


@dataclass(frozen=True)
class RolloutPlan:
    """Everything a rollout needs, checked (see :func:`plan_rollout`).

    Attributes
    ----------
    forecaster : Forecaster
    data : xarray.Dataset
        The canonical initial-condition data (only the variables the model uses).
    context : DataContext
        ``data`` bound to the forecaster (regridders, statics, forcing functions).
    inits : pandas.DatetimeIndex ``[N]``
        Initial times, each with its history in the data.
    leads : numpy.ndarray ``[L]`` timedelta64[ns]
        Output leads, 0 included.
    out_step : pandas.Timedelta
        Output interval; ``every`` model steps per output step.
    members : int or None
        Ensemble size (None: no ensemble dim; the batch is 1).
    perturbation : PerturbationMethod
        How the members differ (:mod:`atmos.rollout.perturbations`; the Gaussian
        :class:`~atmos.rollout.perturbation.Perturbation` of ``--perturb``).
    seed : int
        Initial time ``i`` uses ``seed + i``.
    forcings : str
    layout, native_layout : Layout, Layout or None
        The forecast on the data's grid, and on the model's native grid (when asked for).
    attrs, native_attrs : dict
        Attributes of the two forecasts.
    config : dict
        The settings recorded in ``attrs["atmos_rollout_config"]`` (compared on resume).
    """

    forecaster: Forecaster
    data: xr.Dataset
    context: DataContext
    inits: pd.DatetimeIndex
    leads: np.ndarray
    out_step: pd.Timedelta
    every: int
    members: int | None
    perturbation: PerturbationMethod
    seed: int
    forcings: str
    layout: Layout
    native_layout: Layout | None
    attrs: dict[str, Any]
    native_attrs: dict[str, Any]
    config: dict[str, Any]

    @property
    def n_lead(self) -> int:
        """Number of output leads (lead 0 included)."""
        return len(self.leads)

    @property
    def batch(self) -> int:
        """Members per initial time (1 without an ensemble)."""
        return self.members or 1


def resolve_model(model: Any, data: Any, stats: xr.Dataset | None, device: str, decoders: Any = None) -> Forecaster:
    """A Forecaster from a checkpoint path, a Forecaster (a copy with ``decoders``), an nn.Module or None.

    Raises
    ------
    ConfigError
        An unknown kind of model, or an in-memory model without statistics or a dataset.
    """
    if isinstance(decoders, (list, tuple)) and not decoders:
        decoders = None
    if isinstance(model, Forecaster):
        # a copy: the caller's Forecaster keeps the decoders it had
        return model if decoders is None else model.with_decoders(decoders)
    if model is None or isinstance(model, (str, os.PathLike)):
        return Forecaster.from_checkpoint(model, device=device, decoders=decoders)
    if isinstance(model, nn.Module):
        if stats is None:
            if not isinstance(data, xr.Dataset):
                raise ConfigError(
                    "an in-memory model needs normalization statistics: pass stats= (atmos.io.compute_stats) or "
                    "data= as an xarray.Dataset to compute them from."
                )
            from atmos.io.open import open_dataset
            from atmos.io.stats import compute_stats

            stats = compute_stats(open_dataset(data)).compute()
        return Forecaster.from_model(
            model, stats, data=data if isinstance(data, xr.Dataset) else None, device=device, decoders=decoders
        )
    raise ConfigError(
        f"model must be a checkpoint path, a Forecaster, an atmos model (nn.Module) or None (the embedded sample), "
        f"got {type(model).__name__}."
    )


def _default_data(fc: Forecaster) -> Any:
    from atmos.rollout.sample import sample_data_path

    if fc.info.get("atmos_model_note", "").startswith("atmos sample model"):
        return sample_data_path()
    raise ConfigError(
        f"no initial-condition data given for model {fc.name!r}; pass data= (--data) with a catalog name, a path "
        "or a URL (e.g. --data speedy-world-val)."
    )


def open_data(data: Any, fc: Forecaster, units: Mapping[str, str] | None = None) -> xr.Dataset:
    """The canonical initial-condition data, reduced to the variables the forecaster uses."""
    from atmos.io.open import open_dataset

    ds = open_dataset(data, units=units)  # canonical layout (a Dataset is only canonicalized)
    # decoder variables are kept (never read) so that their attributes can be copied to the forecast
    used = (
        set(fc.required_variables)
        | {c.variable for c in fc.channels["forcings"]}
        | {c.variable for c in fc.channels.get("diagnostics", [])}
    )
    keep = [v for v in ds.data_vars if v in used]
    return ds[keep] if keep else ds


def _output_step(fc: Forecaster, step: Any) -> tuple[pd.Timedelta, int]:
    out_step = fc.step if step is None else as_timedelta(step, "step")
    ratio = out_step / fc.step
    if abs(ratio - round(ratio)) > 1e-9 or round(ratio) < 1:
        raise ConfigError(f"the output step {out_step} must be a multiple of the model's step {fc.step}.")
    return out_step, round(ratio)


def _n_leads(days: float | None, steps: int | None, out_step: pd.Timedelta) -> int:
    if (days is None) == (steps is None):
        raise ConfigError("give exactly one of days= (--days) and steps= (--steps) for the forecast length.")
    if steps is not None:
        if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or steps < 0:
            raise ConfigError(f"steps must be an integer >= 0, got {steps!r}.")
        return int(steps) + 1
    try:
        span = pd.Timedelta(days=float(days))
    except (TypeError, ValueError) as err:
        raise ConfigError(f"days must be a number, got {days!r}.") from err
    if span < pd.Timedelta(0):
        raise ConfigError(f"days must be >= 0, got {days!r}.")
    n = span / out_step
    if abs(n - round(n)) > 1e-9:
        raise ConfigError(f"days={days} is not a whole number of output steps of {out_step}; choose a multiple.")
    return round(n) + 1


def _ensemble(members: Any, pert: PerturbationMethod) -> PerturbationMethod:
    if members is not None and (
        isinstance(members, bool) or not isinstance(members, (int, np.integer)) or members < 1
    ):
        raise ConfigError(f"members must be an integer >= 1, got {members!r}.")
    active = pert.method == "lagged" or float(getattr(pert, "scale", 0) or 0) > 0
    if active and (members or 1) < 2:
        what = "perturb > 0" if pert.method == "gaussian" else f"the {pert.method!r} perturbation"
        raise ConfigError(f"{what} needs an ensemble: pass members >= 2 (--members N).")
    return pert


def _perturbation_config(pert: PerturbationMethod) -> dict[str, Any]:
    """``perturb`` / ``perturb_length_scale`` for the Gaussian method (as before), else the method."""
    if pert.method == "gaussian":
        return {"perturb": pert.params()["scale"], "perturb_length_scale": pert.params()["length_scale_km"]}
    return {"perturb": 0.0, "perturb_length_scale": None,
            "perturbation": {"method": pert.method, **_json_safe(pert.params())}}


def _json_safe(x: Any) -> Any:
    if isinstance(x, (str, int, float, bool)) or x is None:
        return x
    if isinstance(x, (list, tuple)):
        return [_json_safe(v) for v in x]
    if isinstance(x, dict):
        return {str(k): _json_safe(v) for k, v in x.items()}
    return str(x)


def _config(fc: Forecaster, ctx: DataContext, inits: pd.DatetimeIndex, n_lead: int, out_step: pd.Timedelta,
            members: int | None, pert: PerturbationMethod, seed: int, forcings: str,
            ensemble_dim: str) -> dict[str, Any]:
    config = {
        "model": fc.info.get("atmos_checkpoint"),
        "data": ctx.data_source,
        "init": [str(t) for t in inits],
        "n_lead": n_lead,
        "step": str(out_step),
        "members": members,
        **_perturbation_config(pert),
        "seed": int(seed),
        "forcings": forcings,
        "decoders": [
            {"variables": p["variables"], "checkpoint": p["checkpoint"], "sha256": p["sha256"]}
            for p in fc.decoder_provenance
        ],
    }
    if members is not None:
        config["ensemble_dim"] = ensemble_dim
    return config


def _attrs(fc: Forecaster, ctx: DataContext, out_step: pd.Timedelta, pert: PerturbationMethod,
           config: Mapping[str, Any]) -> dict[str, Any]:
    from atmos._version import __version__

    attrs: dict[str, Any] = {
        "Conventions": "CF-1.11",
        "title": f"atmos forecast: {fc.name}",
        "source": f"atmos {__version__} rollout of {fc.name} ({fc.info.get('atmos_model_type')})",
        "history": f"{_dt.datetime.now(_dt.UTC).strftime('%Y-%m-%dT%H:%M:%SZ')} atmos rollout",
        **{k: _json_safe(v) for k, v in fc.info.items()},
        "atmos_version": str(__version__),
        "atmos_data_source": ctx.data_source,
        "atmos_model_step": str(fc.step),
        "atmos_output_step": str(out_step),
        "atmos_forcings": json.dumps(ctx.forcing_notes),
        "atmos_perturbation": pert.describe(),
        "atmos_perturbation_method": pert.method,
        "atmos_perturbation_params": json.dumps(_json_safe(pert.params())),
        "atmos_rollout_config": json.dumps(config),
    }
    data_note = ctx.ds.attrs.get("notes") or ctx.ds.attrs.get("title")
    if data_note:
        attrs["atmos_data_notes"] = str(data_note)
    return attrs


def plan_rollout(
    model: Any = None,
    data: Any = None,
    init: Any = None,
    days: float | None = None,
    *,
    steps: int | None = None,
    step: Any = None,
    members: int | None = None,
    perturb: float = 0.0,
    perturb_length_scale: float | None = None,
    seed: int = 0,
    forcings: str = "auto",
    stats: xr.Dataset | None = None,
    device: str = "cpu",
    decoders: Any = None,
    assume_units: Mapping[str, str] | None = None,
    native: bool = False,
    perturbation: Any = None,
    perturbation_scale: float | None = None,
    perturbation_options: Any = None,
    ensemble_dim: str = DEFAULT_ENSEMBLE_DIM,
) -> RolloutPlan:
    """Check every argument of a rollout and its data, once: a :class:`RolloutPlan`.

    The parameters are those of :func:`atmos.rollout.api.rollout` (``native``: also lay the
    forecast out on the model's native grid). The model is loaded and the data are opened
    (lazily) and bound; every initial time is checked against the data; nothing is written.

    Raises
    ------
    ConfigError, DataError, SourceError
        Bad arguments, data that lack the model's variables or the initial times.
    """
    fc = resolve_model(model, data, stats, device, decoders)
    if data is None:
        data = _default_data(fc)
    inits = parse_init(init)
    out_step, every = _output_step(fc, step)
    n_lead = _n_leads(days, steps, out_step)
    pert = _ensemble(members, resolve_perturbation(
        perturbation, perturbation_scale, perturbation_options, perturb=perturb,
        perturb_length_scale=perturb_length_scale,
    ))
    ens_dim = check_ensemble_dim(ensemble_dim)
    ds = open_data(data, fc, assume_units)
    ctx = build_context(fc, ds, np.datetime64(inits[0].to_datetime64(), "ns"), forcings)
    for t0 in inits:  # every initial time is checked before anything is written
        fc.check_init(ctx.data_times, t0)
        pert.check(fc, ctx.data_times, t0, members or 1)
    leads = (np.arange(n_lead) * out_step.to_timedelta64()).astype("timedelta64[ns]")
    lay = forecast_layout(fc.channels, fc.model_grid, ctx, inits, leads, members, native=False, ensemble_dim=ens_dim)
    native_lay = (
        forecast_layout(fc.channels, fc.model_grid, ctx, inits, leads, members, native=True, ensemble_dim=ens_dim)
        if native else None
    )
    config = _config(fc, ctx, inits, n_lead, out_step, members, pert, seed, forcings, ens_dim)
    attrs = _attrs(fc, ctx, out_step, pert, config)
    native_attrs = {**attrs, "title": f"atmos forecast on the model's native grid: {fc.name}"}
    return RolloutPlan(
        forecaster=fc, data=ds, context=ctx, inits=inits, leads=leads, out_step=out_step, every=every,
        members=members, perturbation=pert, seed=int(seed), forcings=forcings, layout=lay,
        native_layout=native_lay, attrs=attrs, native_attrs=native_attrs, config=config,
    )
