"""Autoregressive rollouts of atmos emulators into WeatherBench2-layout forecasts.

>>> import atmos.rollout as ar                                            # doctest: +SKIP
>>> ds = ar.rollout(init="2020-01-01", days=10)      # embedded sample model (SPEEDY-world)  # doctest: +SKIP
>>> ds.sizes["prediction_timedelta"]                                       # doctest: +SKIP
41

Tensor-level API (xarray only at the boundary): :class:`Forecaster` with
``encode / advance / decode / unroll``; :class:`ForecastWriter` streams a forecast
store lead by lead; :mod:`atmos.rollout.forcings` computes forcings for future times.
``rollout()`` = :func:`plan_rollout` (every check, a :class:`RolloutPlan`) + :func:`run_plan`.

Modules, one job each (lowest first): ``times`` (intervals, initial times), ``tables``
(channel tables and model grid from checkpoint meta or statistics), ``loading`` (checkpoint
files, provenance, device), ``reading`` (xarray -> checked arrays, normalization),
``checks`` (history of an initial time, NaN/Inf of a state), ``perturbation`` (the interface and
the Gaussian method), ``perturb_spherical``/``perturb_bred``/``perturb_lagged``/``perturb_dropout``
(the other methods), ``perturbations`` (the registry by name: :func:`make_perturbation`),
``forcings`` (astronomy), ``context`` (per-data regridders, statics, forcing functions),
``decoders``, ``state`` (RolloutState, its resume copy), ``forecaster``, ``layout``
(WeatherBench2 layout), ``plan``, ``lock``/``writer``, ``stores`` (create/resume/close),
``run`` (the loop), ``api`` (``rollout()``); ``engine`` is a compatibility module.
"""

from atmos.rollout.api import RolloutPlan, default_output_path, parse_init, plan_rollout, rollout, run_plan
from atmos.rollout.forecaster import Forecaster
from atmos.rollout.loading import load_checkpoint_files
from atmos.rollout.perturbation import Perturbation, PerturbationMethod
from atmos.rollout.perturbations import make_perturbation
from atmos.rollout.state import RolloutState
from atmos.rollout.forcings import ToaCalibration, calibrate_toa, toa_incident_solar_radiation
from atmos.rollout.writer import ForecastWriter, read_progress

__all__ = [
    "ForecastWriter",
    "Forecaster",
    "Perturbation",
    "PerturbationMethod",
    "RolloutPlan",
    "RolloutState",
    "ToaCalibration",
    "calibrate_toa",
    "default_output_path",
    "load_checkpoint_files",
    "make_perturbation",
    "parse_init",
    "plan_rollout",
    "read_progress",
    "rollout",
    "run_plan",
    "toa_incident_solar_radiation",
]


def __getattr__(name: str):
    # ``ChannelInfo`` was the Forecaster's own channel record; it is now the one
    # :class:`atmos.channels.Channel` (kept importable under the old name).
    if name == "ChannelInfo":
        import warnings

        from atmos.channels import Channel

        warnings.warn(
            "atmos.rollout.ChannelInfo is now atmos.channels.Channel; import it from there.",
            DeprecationWarning,
            stacklevel=2,
        )
        return Channel
    raise AttributeError(f"module 'atmos.rollout' has no attribute {name!r}")
