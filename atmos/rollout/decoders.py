"""Lightweight decoders on a Forecaster: loading and checking them, and their diagnosed fields.

A decoder (:class:`atmos.models.decoder.LatentDecoder`) maps a backbone's latent to new
variables (e.g. ``total_precipitation_6hr``). It is accepted only when it was built for this
backbone's latent, trained on these very weights (checkpoints), and predicts variables nobody
else predicts.
"""

from __future__ import annotations

import copy
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from atmos.channels import Channel
from atmos.errors import ConfigError, SourceError
from atmos.models.base import LatentBackbone
from atmos.models.checkpoint import weights_hash
from atmos.rollout.context import DataContext

__all__ = ["Attached", "append_diagnostics", "decoder_items", "prepare_decoders"]

#: One decoder ready to attach: ``(module, provenance, diagnostic channels)``.
Attached = tuple[nn.Module, dict[str, Any], list[Channel]]


def _jsonable(x: Any) -> Any:
    """Tuples -> lists, numbers -> plain Python (to compare a latent spec with its JSON round trip)."""
    return json.loads(json.dumps(x, default=lambda v: v.tolist() if hasattr(v, "tolist") else str(v)))


def decoder_items(decoders: Any) -> list[Any]:
    """``decoders`` (a path, a module or a sequence of them) as a list.

    Raises
    ------
    ConfigError
        Anything else.
    """
    if isinstance(decoders, (str, os.PathLike, nn.Module)):
        return [decoders]
    if isinstance(decoders, Sequence):
        return list(decoders)
    raise ConfigError(
        f"decoders must be a decoder checkpoint path, a LatentDecoder or a list of them, got "
        f"{type(decoders).__name__}."
    )


def _load(item: Any, model: nn.Module, device: torch.device) -> tuple[nn.Module, str, dict[str, Any]]:
    """``(decoder, label, provenance)`` of one item: a checkpoint path or an in-memory module."""
    from atmos.models.checkpoint import find_checkpoint, load_decoder

    if isinstance(item, (str, os.PathLike)):
        p = Path(os.path.expanduser(os.fspath(item)))
        if not p.exists():
            raise SourceError(
                f"decoder {str(p)!r} does not exist; pass a decoder checkpoint or run folder written by "
                "`atmos train` with `task: decoder`."
            )
        dec, meta = load_decoder(p, backbone=model, map_location=device)
        folder = find_checkpoint(p)
        assert folder is not None  # load_decoder found it
        prov = {
            "variables": None,
            "checkpoint": str(folder.resolve()),
            "sha256": weights_hash(dec),
            "backbone_sha256": meta.backbone.sha256 if meta.backbone is not None else None,
        }
        return dec, f"decoder {str(folder)!r}", prov
    if isinstance(item, nn.Module):
        label = f"decoder {type(item).__name__}(variables={getattr(item, 'variables', '?')})"
        prov = {
            "variables": None,
            "checkpoint": "none (in-memory decoder)",
            "sha256": weights_hash(item),
            "backbone_sha256": None,
        }
        return item, label, prov
    raise ConfigError(f"a decoder must be a checkpoint path or a LatentDecoder module, got {type(item).__name__}.")


def _check_latent(dec: nn.Module, label: str, spec: Any, model: nn.Module, name: str) -> Any:
    """The decoder's config once it is a LatentDecoder built for the latent ``spec``."""
    cfg = getattr(dec, "config", None)
    if (
        cfg is None
        or not isinstance(getattr(cfg, "latent", None), Mapping)
        or not callable(getattr(dec, "to_physical", None))
    ):
        raise ConfigError(
            f"{label} is not a LatentDecoder (no config.latent / to_physical); build decoders with "
            "atmos.models.decoder.LatentDecoder.for_backbone(model, variables)."
        )
    if _jsonable(cfg.latent) != _jsonable(spec):
        raise ConfigError(
            f"{label} was built for the latent {_jsonable(cfg.latent)!r}, but model {name!r} "
            f"({type(model).__name__}) has the latent {_jsonable(spec)!r}; use a decoder built for this "
            "backbone (LatentDecoder.for_backbone(model, ...))."
        )
    return cfg


def _channels(cfg: Any, label: str, taken: dict[str, str]) -> list[Channel]:
    units = dict(getattr(cfg, "units", {}) or {})
    chans = []
    for v in (str(v) for v in cfg.variables):
        if v in taken:
            raise ConfigError(
                f"variable {v!r} of {label} is already predicted by {taken[v]}; attach one decoder per "
                "variable, and only for variables the model does not predict."
            )
        taken[v] = label
        chans.append(Channel(name=v, variable=v, level=None, units=units.get(v), source="decoder", mean=0.0, std=1.0))
    return chans


def prepare_decoders(
    items: Sequence[Any],
    model: nn.Module,
    name: str,
    targets: Sequence[Channel],
    attached: Sequence[Mapping[str, Any]],
    device: torch.device,
) -> list[Attached]:
    """Load and check decoders for ``model`` (named ``name``, predicting ``targets``).

    ``attached`` is the provenance of the decoders already attached (their variables are taken).

    Raises
    ------
    ConfigError
        The model exposes no latent, a decoder was built for another latent or trained on another
        backbone, or a variable is predicted twice (by two decoders, or by a decoder and the model).
    SourceError
        A decoder path does not exist.
    """
    if not isinstance(model, LatentBackbone):
        raise ConfigError(
            f"model {name!r} ({type(model).__name__}) exposes no latent (latent_spec/forward_latent/"
            "decode_latent), so lightweight decoders cannot run on it; decoders work on the registered ViT and "
            "UNetGRU backbones."
        )
    spec = model.latent_spec()
    taken: dict[str, str] = {}  # variable -> what predicts it already
    for c in targets:
        taken[c.variable] = taken[c.name] = f"the model {name!r} (a prognostic output)"
    for prov in attached:
        for v in prov["variables"]:
            taken[v] = f"the decoder {prov['checkpoint']!r}"
    new: list[Attached] = []
    for item in items:
        dec, label, prov = _load(item, model, device)
        cfg = _check_latent(dec, label, spec, model, name)
        prov["variables"] = [str(v) for v in cfg.variables]
        chans = _channels(cfg, label, taken)
        new.append((dec.to(device).eval(), prov, chans))
    return new


def append_diagnostics(
    diagnostics: torch.Tensor | None,
    ctx: DataContext,
    out: np.ndarray,
    nat: np.ndarray | None,
    n: int,
    device: torch.device,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Decoded fields appended after the prognostics of a decoded state.

    Parameters
    ----------
    diagnostics : Tensor ``[B, V, *model_grid]`` or None
        The state's diagnosed fields (None at the initial state: NaN then).
    out : numpy.ndarray ``[B, C, *data_grid]``
    nat : numpy.ndarray ``[B, C, *native_grid]`` or None
    n : int
        ``V``, the number of diagnosed variables.

    Returns
    -------
    ``([B, C + V, *data_grid], [B, C + V, *native_grid] or None)``
    """
    if diagnostics is None:  # the initial state: nothing diagnosed yet
        d_out = np.full((out.shape[0], n, *out.shape[2:]), np.nan, np.float32)
        d_nat = None if nat is None else np.full((nat.shape[0], n, *nat.shape[2:]), np.nan, np.float32)
    else:
        d = diagnostics.to(device, torch.float32)
        d_out = ctx.to_data(d).float().cpu().numpy()
        d_nat = None
        if nat is not None:
            d_nat = (ctx.to_native_cells(d) if ctx.to_native_cells is not None else d).float().cpu().numpy()
    out = np.concatenate([out, d_out], axis=1)
    if nat is not None:
        nat = np.concatenate([nat, d_nat], axis=1)
    return out, nat


class DecoderAttachment:
    """The decoder methods of :class:`atmos.rollout.forecaster.Forecaster` (a mixin: it uses the
    forecaster's ``model``, ``name``, ``channels``, ``device``, ``info``, ``decoders`` and
    ``_decoder_info``)."""

    model: nn.Module
    name: str
    channels: dict[str, list[Channel]]
    device: torch.device
    info: dict[str, Any]
    decoders: list[nn.Module]
    _decoder_info: list[dict[str, Any]]

    def attach_decoders(self, decoders: Any) -> Any:
        """Attach lightweight decoders that diagnose new variables from each step's latent.

        Parameters
        ----------
        decoders : path, LatentDecoder, or a sequence of them
            Decoder checkpoints (folders written by ``atmos train`` with ``task:
            decoder``), loaded with :func:`atmos.models.checkpoint.load_decoder` against
            this forecaster's model (refused unless the model's weights hash equals the
            one the decoder was trained on), and/or :class:`~atmos.models.decoder.LatentDecoder`
            modules, used as they are (moved to the device, eval mode) once their
            ``config.latent`` matches ``model.latent_spec()``.

        Returns
        -------
        Forecaster
            ``self`` (the decoders are appended to those already attached).

        Raises
        ------
        ConfigError
            The model exposes no latent, a decoder was built for another latent or
            trained on another backbone, or a variable is predicted twice (by two
            decoders, or by a decoder and the model).
        """
        items = decoder_items(decoders)
        if not items:
            return self
        new = prepare_decoders(
            items, self.model, self.name, self.channels["targets"], self._decoder_info, self.device
        )
        for dec, prov, chans in new:
            self.decoders.append(dec)
            self._decoder_info.append(prov)
            self.channels["diagnostics"].extend(chans)
        self.info["atmos_decoders"] = json.dumps(self._decoder_info)
        return self

    def with_decoders(self, decoders: Any) -> Any:
        """A copy of this forecaster (sharing its model) with ``decoders`` attached as well."""
        new = copy.copy(self)
        new.channels = {g: list(v) for g, v in self.channels.items()}
        new.info = dict(self.info)
        new.decoders = list(self.decoders)
        new._decoder_info = [dict(p) for p in self._decoder_info]
        return new.attach_decoders(decoders)

    @property
    def decoder_provenance(self) -> list[dict[str, Any]]:
        """One entry per attached decoder: ``variables``, ``checkpoint``, ``sha256``
        (:func:`~atmos.models.checkpoint.weights_hash` of its weights, however it was loaded)
        and ``backbone_sha256``."""
        return [dict(p) for p in self._decoder_info]

    @property
    def diagnostic_variables(self) -> list[str]:
        """Variables diagnosed by the attached decoders (in output order)."""
        return [c.variable for c in self.channels["diagnostics"]]
