"""Model registry: build an emulator from a name and a JSON-safe config.

>>> from atmos.models import build
>>> model = build("vit", nlat=32, nlon=64, depth=2)            # doctest: +SKIP
>>> model.schema.outputs                                       # doctest: +SKIP

Every registered model class takes a single config dataclass and exposes
``model.config`` (that dataclass; ``dataclasses.asdict(model.config)`` is
JSON-safe and :func:`build_from_config` rebuilds the model from it plus a
``name`` key) and ``model.schema`` (:class:`atmos.models.schema.ChannelSchema`).
``spectral_norm=True`` in any config applies :func:`atmos.models.spectral.apply_spectral_norm`
at build time.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

from torch import nn

from atmos.errors import ConfigError
from atmos.models.hybrid import HybridConfig, HybridViTUNet
from atmos.models.spectral import apply_spectral_norm
from atmos.models.unet_gru import UNetGRU, UNetGRUConfig
from atmos.models.vit import ViT, ViTConfig

__all__ = ["MODELS", "build", "build_from_config", "config_class", "config_to_dict", "register_model"]

#: ``name -> (model class, config dataclass)``.
MODELS: dict[str, tuple[Callable[[Any], nn.Module], type]] = {
    "vit": (ViT, ViTConfig),
    "unet_gru": (UNetGRU, UNetGRUConfig),
    "hybrid": (HybridViTUNet, HybridConfig),
}


def register_model(name: str, model_cls: Callable[[Any], nn.Module], config_cls: type) -> None:
    """Register a model class taking one config dataclass (for the heads and plugins)."""
    if not dataclasses.is_dataclass(config_cls):
        raise ConfigError(f"config class for model {name!r} must be a dataclass, got {config_cls!r}.")
    MODELS[name] = (model_cls, config_cls)


def _lookup(name: Any) -> tuple[Callable[[Any], nn.Module], type]:
    if name not in MODELS:
        raise ConfigError(f"unknown model name {name!r}; valid names are {sorted(MODELS)}.")
    return MODELS[name]


def config_class(name: str) -> type:
    """Config dataclass of model ``name``."""
    return _lookup(name)[1]


def build(name: str, **config: Any) -> nn.Module:
    """Build model ``name`` from keyword config values.

    Parameters
    ----------
    name : str
        One of ``sorted(MODELS)`` (``"hybrid"``, ``"unet_gru"``, ``"vit"``).
    **config
        Fields of the model's config dataclass (:class:`ViTConfig`,
        :class:`UNetGRUConfig`); missing fields take their defaults.

    Raises
    ------
    ConfigError
        Unknown name (lists the valid names), unknown config keys (lists the valid
        keys of that model), or invalid values.
    """
    model_cls, cfg_cls = _lookup(name)
    valid = [f.name for f in dataclasses.fields(cfg_cls)]
    unknown = sorted(set(config) - set(valid))
    if unknown:
        raise ConfigError(
            f"unknown config key(s) {unknown} for model {name!r}; valid keys are {sorted(valid)}."
        )
    try:
        cfg = cfg_cls(**config)
    except TypeError as err:  # pragma: no cover - all fields have defaults
        raise ConfigError(f"invalid config for model {name!r}: {err}") from None
    model = model_cls(cfg)
    if getattr(cfg, "spectral_norm", False):
        apply_spectral_norm(model)
    return model


def build_from_config(config: Mapping[str, Any]) -> nn.Module:
    """Build a model from a dict with a ``name`` key and the config fields.

    The inverse of :func:`config_to_dict`.
    """
    if not isinstance(config, Mapping) or "name" not in config:
        raise ConfigError(
            f"a model config must be a mapping with a 'name' key (one of {sorted(MODELS)}), got {config!r}."
        )
    rest = {k: v for k, v in config.items() if k != "name"}
    return build(config["name"], **rest)


def config_to_dict(model: nn.Module) -> dict[str, Any]:
    """JSON-safe ``{"name": ..., **asdict(model.config)}`` of a registered model."""
    for name, (model_cls, cfg_cls) in MODELS.items():
        if isinstance(model, model_cls) and isinstance(getattr(model, "config", None), cfg_cls):  # type: ignore[arg-type]
            return {"name": name, **dataclasses.asdict(model.config)}
    raise ConfigError(f"{type(model).__name__} is not a registered model; registered: {sorted(MODELS)}.")
