"""The perturbation library of ensembles of deterministic models: one interface, a registry by name.

Every method follows :class:`~atmos.rollout.perturbation.PerturbationMethod` (``check``, ``apply``
-> the members' initial state, ``advance`` -> one model step, ``params``, ``describe``):

============================  =====================================================================
``gaussian``                  Gaussian noise in normalized space, white or smoothed
                              (``length_scale_km``): today's ``--perturb S``, bit-identical
                              (:class:`~atmos.rollout.perturbation.Perturbation`)
``spherical``                 isotropic spherical-harmonic Gaussian noise on any grid, lat-lon or
                              HEALPix (:mod:`atmos.rollout.perturb_spherical`)
``bred``                      bred vectors: cycles of the model itself before the initial time,
                              differences rescaled to the scale (:mod:`atmos.rollout.perturb_bred`)
``lagged``                    members from earlier initial times, valid at the same times (no
                              scale; :mod:`atmos.rollout.perturb_lagged`)
``temporal-dropout``          Monte-Carlo temporal dropout of older input history steps (the scale
                              is the rate; models with history >= 2; :mod:`atmos.rollout.perturb_dropout`)
============================  =====================================================================

>>> from atmos.rollout.perturbations import make_perturbation        # doctest: +SKIP
>>> make_perturbation("bred", 0.1, cycles=2)                          # doctest: +SKIP

:func:`register` adds a method (a callable ``(scale, **options) -> PerturbationMethod``).
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from atmos.errors import ConfigError
from atmos.rollout.perturb_bred import BredVectorPerturbation
from atmos.rollout.perturb_dropout import TemporalDropoutPerturbation
from atmos.rollout.perturb_lagged import LaggedPerturbation
from atmos.rollout.perturb_spherical import SphericalPerturbation
from atmos.rollout.perturbation import Perturbation, PerturbationMethod

__all__ = [
    "METHODS",
    "PerturbationMethod",
    "available",
    "make_perturbation",
    "method_options",
    "parse_options",
    "register",
    "resolve_perturbation",
]

Factory = Callable[..., PerturbationMethod]

#: Registered methods: name -> factory ``(scale, **options)``.
METHODS: dict[str, Factory] = {
    "gaussian": Perturbation,
    "spherical": SphericalPerturbation,
    "bred": BredVectorPerturbation,
    "lagged": LaggedPerturbation,
    "temporal-dropout": TemporalDropoutPerturbation,
}
_ALIASES = {"spherical-gaussian": "spherical", "bred-vectors": "bred", "bred_vector": "bred",
            "temporal_dropout": "temporal-dropout", "dropout": "temporal-dropout"}


def register(name: str, factory: Factory, *, overwrite: bool = False) -> None:
    """Add a perturbation method under ``name`` (``factory(scale, **options)`` -> a PerturbationMethod)."""
    if not overwrite and name in METHODS:
        raise ConfigError(f"perturbation method {name!r} is already registered; pass overwrite=True to replace it.")
    METHODS[name] = factory


def available() -> list[str]:
    """The registered method names."""
    return list(METHODS)


def method_options(name: str) -> dict[str, Any]:
    """The options of a method (beyond ``scale``) and their defaults."""
    factory = METHODS[_canonical(name)]
    if dataclasses.is_dataclass(factory):
        return {f.name: f.default for f in dataclasses.fields(factory) if f.init and f.name != "scale"
                and not f.name.startswith("_")}
    sig = inspect.signature(factory)
    return {k: p.default for k, p in sig.parameters.items() if k != "scale"}


def _canonical(name: str) -> str:
    key = str(name).strip().lower()
    key = _ALIASES.get(key, key)
    if key not in METHODS:
        raise ConfigError(
            f"unknown perturbation method {name!r}; choose one of {available()} (--perturbation NAME)."
        )
    return key


def _convert(text: str, default: Any) -> Any:
    low = text.strip().lower()
    if low in ("none", "null"):
        return None
    if isinstance(default, bool) or low in ("true", "false"):
        if low not in ("true", "false", "1", "0", "yes", "no"):
            raise ValueError(text)
        return low in ("true", "1", "yes")
    if isinstance(default, int) and not isinstance(default, bool):
        return int(text)
    if isinstance(default, float):
        return float(text)
    if default is None:
        try:
            return float(text) if any(c in low for c in ".e") else int(text)
        except ValueError:
            return text
    return text


def parse_options(name: str, items: Sequence[str] | Mapping[str, Any] | None) -> dict[str, Any]:
    """Options of method ``name`` from ``KEY=VALUE`` strings (the CLI) or a mapping, checked by name.

    Raises
    ------
    ConfigError
        An item without ``=``, an option the method does not have (the valid ones are listed), or a
        value of the wrong type.
    """
    valid = method_options(name)
    if not items:
        return {}
    pairs: list[tuple[str, Any]] = []
    if isinstance(items, Mapping):
        pairs = list(items.items())
    else:
        for item in items:
            if "=" not in str(item):
                raise ConfigError(f"--perturbation-option must be KEY=VALUE, got {item!r} (e.g. cycles=2).")
            k, v = str(item).split("=", 1)
            pairs.append((k.strip().replace("-", "_"), v))
    out: dict[str, Any] = {}
    for k, v in pairs:
        if k not in valid:
            raise ConfigError(
                f"perturbation method {_canonical(name)!r} has no option {k!r}; its options are "
                f"{sorted(valid)} (--perturbation-option KEY=VALUE)."
            )
        if isinstance(v, str):
            try:
                v = _convert(v, valid[k])
            except ValueError as err:
                raise ConfigError(
                    f"option {k}={v!r} of perturbation method {_canonical(name)!r} is not a valid "
                    f"{type(valid[k]).__name__} (default {valid[k]!r})."
                ) from err
        out[k] = v
    return out


def make_perturbation(name: str, scale: float | None = None, **options: Any) -> PerturbationMethod:
    """The perturbation method ``name`` with ``scale`` and its options.

    Raises
    ------
    ConfigError
        An unknown method (the valid ones are listed), an unknown option, or a bad scale.
    """
    key = _canonical(name)
    opts = parse_options(key, options)
    if key == "lagged":
        return METHODS[key](scale=scale, **opts)
    return METHODS[key](scale=0.0 if scale is None else _scale(scale, key), **opts)


def _scale(scale: Any, key: str) -> float:
    try:
        return float(scale)
    except (TypeError, ValueError) as err:
        raise ConfigError(
            f"the {key} perturbation scale must be a number >= 0 (--perturbation-scale), got {scale!r}."
        ) from err


def resolve_perturbation(
    perturbation: str | PerturbationMethod | None = None,
    scale: float | None = None,
    options: Sequence[str] | Mapping[str, Any] | None = None,
    *,
    perturb: float = 0.0,
    perturb_length_scale: float | None = None,
) -> PerturbationMethod:
    """The method of a rollout from its arguments (``perturb`` is the Gaussian shorthand).

    ``perturbation`` None (or ``"gaussian"`` without a scale) with ``perturb`` gives exactly
    ``Perturbation(perturb, perturb_length_scale)``, the method of ``--perturb S``. A method
    object is used as it is.

    Raises
    ------
    ConfigError
        Both ``perturb`` and another method or a scale, or a bad method, option or scale.
    """
    if perturbation is not None and not isinstance(perturbation, str):
        if not isinstance(perturbation, PerturbationMethod):
            raise ConfigError(
                f"perturbation must be a method name ({available()}) or a PerturbationMethod, got "
                f"{type(perturbation).__name__}."
            )
        if scale is not None or options or perturb:
            raise ConfigError("pass the scale and options of a perturbation object inside it, not beside it.")
        return perturbation
    if perturbation is None or _canonical(perturbation) == "gaussian":
        if perturb and scale is not None:
            raise ConfigError(
                f"perturb={perturb!r} (--perturb) and perturbation_scale={scale!r} (--perturbation-scale) both set "
                "the Gaussian scale; give one."
            )
        opts = dict(parse_options("gaussian", options))
        if perturb_length_scale is not None:
            opts.setdefault("length_scale_km", perturb_length_scale)
        return make_perturbation("gaussian", perturb if scale is None else scale, **opts)
    if perturb:
        raise ConfigError(
            f"perturb={perturb!r} (--perturb) is the Gaussian shorthand; with perturbation={perturbation!r} set the "
            "scale with perturbation_scale (--perturbation-scale)."
        )
    opts = parse_options(perturbation, options)
    if perturb_length_scale is not None and "length_scale_km" in method_options(perturbation):
        opts.setdefault("length_scale_km", perturb_length_scale)
    elif perturb_length_scale is not None:
        raise ConfigError(
            f"perturb_length_scale (--perturb-length-scale) does not apply to the {_canonical(perturbation)!r} method; "
            f"its options are {sorted(method_options(perturbation))}."
        )
    return make_perturbation(perturbation, scale, **opts)
