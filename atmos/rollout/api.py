"""``rollout()``: forecasts from one or several initial times, streamed to Zarr or kept in memory.

``rollout()`` is two steps: :func:`atmos.rollout.plan.plan_rollout` checks every argument and
the data once (a :class:`~atmos.rollout.plan.RolloutPlan`; nothing is written yet), then
:func:`atmos.rollout.run.run_plan` opens the stores and drives
:class:`atmos.rollout.forecaster.Forecaster` (``encode / advance / decode``) lead by lead.

The result is a WeatherBench2 forecast (:mod:`atmos.rollout.layout`): dims ``time`` (initial
time), ``prediction_timedelta`` (lead, 0 included), optional ``realization`` (the ensemble dim
WeatherBench2 reads by default; ``ensemble_dim="member"`` for the older name), then ``level`` and the
data's spatial dims; canonical variable names, physical units, CF attributes
(``forecast_reference_time``, ``forecast_period``, a 2-D ``valid_time``) and the
provenance of the run (model, checkpoint hash, data source, atmos version). With
``out`` each lead is written as it is produced (:class:`atmos.rollout.writer.ForecastWriter`).

With ``decoders`` (lightweight decoders, :mod:`atmos.models.decoder`) the forecast gains
one variable per decoded variable (e.g. ``total_precipitation_6hr``, no level dim),
diagnosed from each step's latent; the prognostic variables are bit-identical to a
rollout without decoders, and the diagnosed ones are NaN at lead 0.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import Any

import xarray as xr

from atmos.rollout.layout import DECODER_COMMENT
from atmos.rollout.plan import RolloutPlan, plan_rollout
from atmos.rollout.run import run_plan
from atmos.rollout.stores import default_output_path
from atmos.rollout.times import parse_init

__all__ = [
    "DECODER_COMMENT",
    "RolloutPlan",
    "default_output_path",
    "parse_init",
    "plan_rollout",
    "rollout",
    "run_plan",
]


def rollout(
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
    out: str | os.PathLike | None = None,
    resume: bool = False,
    overwrite: bool = False,
    native_out: str | os.PathLike | None = None,
    forcings: str = "auto",
    stats: xr.Dataset | None = None,
    device: str = "cpu",
    progress: bool = False,
    callback: Callable[[int, int], None] | None = None,
    decoders: Any = None,
    assume_units: Mapping[str, str] | None = None,
    perturbation: Any = None,
    perturbation_scale: float | None = None,
    perturbation_options: Any = None,
    ensemble_dim: str = "realization",
    information: float | None = None,
) -> xr.Dataset:
    """Roll a model out from one or several initial times.

    Parameters
    ----------
    model : path, Forecaster, nn.Module or None
        A checkpoint folder (``atmos train`` output), a :class:`Forecaster`, a model
        from :func:`atmos.models.build` (then ``stats`` or ``data`` give the
        normalization), or None for the embedded sample model (trained on
        SPEEDY-world, a simulated atmosphere).
    data : str, path, URL or xarray.Dataset
        Initial conditions (catalog name, path, URL, or dataset). Default with the
        sample model: the embedded SPEEDY-world initial conditions.
    init : datetime-like, sequence or str
        Initial time(s); see :func:`parse_init` (``"2020-01-01"``,
        ``"2020-01-01/2020-01-05/12h"``, ...).
    days : float, optional
        Forecast length; the output has ``days / step + 1`` leads (lead 0 included).
    steps : int, optional
        Instead of ``days``: number of output steps after lead 0.
    step : timedelta-like, optional
        Output interval (default: the model's step). Must be a multiple of the
        model's step; the model still advances by its own step.
    members : int, optional
        Ensemble size; adds the ensemble dimension (``ensemble_dim``; None: deterministic, no
        ensemble dim).
    perturb : float
        Std of the Gaussian initial perturbation in normalized units (members > 1): the
        shorthand of ``perturbation="gaussian", perturbation_scale=perturb``.
    perturb_length_scale : float, optional
        Correlation length of the perturbation in km (default: uncorrelated).
    seed : int
        Seed of the perturbations (initial time ``i`` uses ``seed + i``).
    perturbation : str or PerturbationMethod, optional
        The perturbation method (:mod:`atmos.rollout.perturbations`): ``"gaussian"``,
        ``"spherical"``, ``"bred"``, ``"lagged"``, ``"temporal-dropout"``, or a method object
        (e.g. ``BredVectorPerturbation(0.1, cycles=2)``). Default: Gaussian with ``perturb``.
    perturbation_scale : float, optional
        The method's scale: the noise std (gaussian, spherical), the bred vectors' RMS (bred), the
        dropout rate (temporal-dropout); the lagged method has none.
    perturbation_options : mapping or list of ``"KEY=VALUE"``, optional
        The method's other options, e.g. ``{"cycles": 2, "cycle": "12h"}`` for bred vectors,
        ``{"lag": "12h"}`` for a lagged ensemble, ``{"length_scale_km": 1000}`` for spherical noise.
    ensemble_dim : {"realization", "member"}
        Name of the ensemble dimension written: ``realization`` (default) is WeatherBench2's
        default ``ensemble_dim``; ``member`` what atmos wrote before. atmos reads both.
    out : path, optional
        Zarr store to stream the forecast into; None keeps it in memory (small runs).
    resume : bool
        Complete an interrupted store at ``out`` (only missing leads are written;
        the model state saved when the run was interrupted (history window and recurrent
        state, ``atmos_resume_state.pt`` in the store) is picked up, so only the missing leads
        are computed; after a hard kill, which saves nothing, the model is re-run from the
        initial time, writing only the missing leads).
    overwrite : bool
        Replace an existing ``out``.
    native_out : path, optional
        Also write the forecast on the model's native grid (HEALPix cells) there.
    forcings : {"auto", "astronomy", "data"}
        ``astronomy``: TOA insolation from astronomy, calibrated on the data's TOA up to
        the initial time (an error if it does not match); ``auto`` (default): the same,
        but a TOA field that does not match the formula, and any other dataset forcing,
        is read from the data at the valid times; ``data``: every dataset forcing is
        read at the valid times (this uses data from the future, for forcings only; it
        is recorded in ``attrs["atmos_forcings"]``). Time encodings are always computed.
    stats : xarray.Dataset, optional
        Statistics for an in-memory model.
    device : str
        ``cpu`` (default), ``cuda`` or ``auto``.
    progress : bool
        Show a progress bar (tqdm, stderr).
    callback : callable ``(init_index, lead_index) -> None``, optional
        Called after each lead is written.
    decoders : path, LatentDecoder or a list of them, optional
        Lightweight decoders (:mod:`atmos.models.decoder`) for new variables, e.g.
        checkpoints written by ``atmos train`` with ``task: decoder``; each must have been
        trained on this very backbone (its weights hash is checked). The forecast gains
        one variable per decoded variable (no level dim, NaN at lead 0) and the
        prognostic variables are unchanged bit for bit. With a :class:`Forecaster` as
        ``model`` they are attached to a copy of it.
    assume_units : mapping, optional
        Units of data variables (names as in ``data``) whose ``units`` attribute is missing or
        wrong, e.g. ``{"t2m": "degC"}``; converted to canonical units. Inputs are always checked
        against plausible ranges (:func:`atmos.io.names.check_plausible`).
    information : float in (0, 1], optional
        Lossy compression of ``out`` (and ``native_out``): bit-round every variable to keep this
        fraction of its real information (:mod:`atmos.io.compression`; kept bits fixed on lead 0,
        errors and sizes in ``attrs["atmos_compression"]``). None (default): lossless.

    Returns
    -------
    xarray.Dataset
        Dims ``(time, prediction_timedelta, [realization], [level], *spatial)``; opened
        lazily from ``out`` when given, else in memory.

    Raises
    ------
    ConfigError, DataError, SourceError
        Bad arguments, data that lack the model's variables or the initial times, a
        forecast that becomes non-finite (names the step and variable).
    """
    plan = plan_rollout(
        model, data, init, days, steps=steps, step=step, members=members, perturb=perturb,
        perturb_length_scale=perturb_length_scale, seed=seed, forcings=forcings, stats=stats, device=device,
        decoders=decoders, assume_units=assume_units, native=native_out is not None, perturbation=perturbation,
        perturbation_scale=perturbation_scale, perturbation_options=perturbation_options, ensemble_dim=ensemble_dim,
    )
    return run_plan(
        plan, out=out, native_out=native_out, resume=resume, overwrite=overwrite, progress=progress,
        callback=callback, information=information,
    )
