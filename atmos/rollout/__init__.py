"""Autoregressive rollouts of atmos emulators into WeatherBench2-layout forecasts.

>>> import atmos.rollout as ar                                            # doctest: +SKIP
>>> ds = ar.rollout(init="2020-01-01", days=10)      # embedded sample model (SPEEDY-world)  # doctest: +SKIP
>>> ds.sizes["prediction_timedelta"]                                       # doctest: +SKIP
41

Tensor-level API (xarray only at the boundary): :class:`Forecaster` with
``encode / advance / decode / unroll``; :class:`ForecastWriter` streams a forecast
store lead by lead; :mod:`atmos.rollout.forcings` computes forcings for future times.
"""

from atmos.rollout.api import default_output_path, parse_init, rollout
from atmos.rollout.engine import Forecaster, Perturbation, RolloutState, load_checkpoint_files
from atmos.rollout.forcings import ToaCalibration, calibrate_toa, toa_incident_solar_radiation
from atmos.rollout.writer import ForecastWriter, read_progress

__all__ = [
    "ForecastWriter",
    "Forecaster",
    "Perturbation",
    "RolloutState",
    "ToaCalibration",
    "calibrate_toa",
    "default_output_path",
    "load_checkpoint_files",
    "parse_init",
    "read_progress",
    "rollout",
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
