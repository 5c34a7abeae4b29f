"""Autoregressive rollout: ``encode / advance / decode / unroll`` on tensors, xarray at the boundary.

A :class:`Forecaster` wraps a one-step model (:mod:`atmos.models`: ``(inputs,
forcings, statics, state) -> (residual, new_state)``) with what it needs to run on
data: its channels and their normalization statistics, its time step and its grid.

* :meth:`Forecaster.encode` reads the initial state from a canonical dataset
  (history steps ending at the initial time), regrids it to the model's grid
  (e.g. lat-lon -> HEALPix faces), normalizes it and optionally perturbs it
  (ensembles): a :class:`RolloutState` of tensors.
* :meth:`Forecaster.advance` makes one model step: forcings for the new valid
  time are computed (:mod:`atmos.rollout.forcings`, never read from the future
  unless ``forcings="data"``), the model predicts the increment, and the history
  window moves on. A NaN or Inf raises :class:`~atmos.errors.DataError` naming the
  step, the valid time and the variable.
* :meth:`Forecaster.decode` denormalizes the newest state and regrids it back to
  the data's grid (and optionally returns the native model-grid fields).
* :meth:`Forecaster.unroll` yields the states of ``steps`` consecutive advances.

Lightweight decoders (:mod:`atmos.models.decoder`) add variables the backbone does
not predict (e.g. ``total_precipitation_6hr``): with decoders attached
(:meth:`Forecaster.attach_decoders`), each step runs the backbone as
``forward_latent`` + ``decode_latent`` (the same operations as its ``forward``, so
the prognostic trajectory is bit-identical) and the decoders map the step's latent
to the new variables (``RolloutState.diagnostics``, physical units, model grid).

:func:`atmos.rollout.api.rollout` drives these for one or several initial times and
writes the forecast (WeatherBench2 layout) lead by lead.
"""

from __future__ import annotations

import copy
import json
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import xarray as xr
from torch import nn

from atmos.channels import Channel, level_label, split_name
from atmos.errors import ConfigError, DataError, SourceError
from atmos.grids import Grid, HealpixGrid, LatLonGrid, grid_from_dict
from atmos.io.check import decode_guard
from atmos.io.forcings import DERIVED_FORCINGS
from atmos.io.names import check_plausible
from atmos.io.normalizer import Normalizer
from atmos.io.stats import safe_std
from atmos.models.base import Backbone, LatentBackbone
from atmos.models.checkpoint import HASH_METHOD, CheckpointMeta, weights_hash

__all__ = [
    "FORCING_MODES",
    "Forecaster",
    "Perturbation",
    "RolloutState",
    "load_checkpoint_files",
]

FORCING_MODES = ("auto", "astronomy", "data")


# =============================================================================================
# checkpoints (read-only, through atmos.models.checkpoint; never imports the trainer)
# =============================================================================================


def load_checkpoint_files(path: str | os.PathLike) -> tuple[Path, CheckpointMeta, dict[str, torch.Tensor]]:
    """Read an atmos checkpoint: ``(folder, checkpoint.json as CheckpointMeta, weights)``.

    ``path`` is a checkpoint folder, a run folder (``checkpoints/LATEST``) or its
    ``checkpoints/`` folder (the layout of :mod:`atmos.train.checkpoint`).

    Raises
    ------
    SourceError
        No checkpoint there, or not an atmos checkpoint.
    """
    from atmos.models.checkpoint import load_checkpoint

    p = Path(os.path.expanduser(os.fspath(path)))
    if not p.exists():
        raise SourceError(
            f"--model {str(p)!r} does not exist; pass a checkpoint or run folder written by atmos train."
        )
    ckpt = load_checkpoint(p)
    return ckpt.path, ckpt.meta, ckpt.model_state


def _jsonable(x: Any) -> Any:
    """Tuples -> lists, numbers -> plain Python (to compare a latent spec with its JSON round trip)."""
    return json.loads(json.dumps(x, default=lambda v: v.tolist() if hasattr(v, "tolist") else str(v)))


# =============================================================================================
# channels
# =============================================================================================


def _channels_from_meta(meta: Mapping[str, Any]) -> dict[str, list[Channel]]:
    schema = meta.get("data_schema")
    if not schema or "groups" not in schema:
        raise SourceError(
            "checkpoint.json has no 'data_schema' (channel table); it was not written by atmos train."
        )
    out: dict[str, list[Channel]] = {}
    for group in ("inputs", "targets", "forcings", "statics"):
        chans = []
        for c in schema["groups"].get(group, []):
            derived = c.get("source") == "derived"
            mean, std = c.get("mean"), c.get("std")
            if not derived and (mean is None or std is None):
                raise SourceError(
                    f"checkpoint channel {c['name']!r} has no normalization statistics (mean/std)."
                )
            chans.append(
                Channel(
                    name=c["name"],
                    variable=c["variable"],
                    level=c.get("level"),
                    units=c.get("units"),
                    source=c.get("source", "dataset"),
                    mean=0.0 if derived else float(mean),
                    std=1.0 if derived else safe_std(float(std), float(mean)),
                    residual_mean=c.get("residual_mean"),
                    residual_std=c.get("residual_std"),
                )
            )
        out[group] = chans
    return out


def _channels_from_stats(
    model: nn.Module, stats: xr.Dataset, ds: xr.Dataset | None
) -> dict[str, list[Channel]]:
    from atmos.io.stats import stat_values

    schema = model.schema

    def info(name: str, residual: bool) -> Channel:
        if name in DERIVED_FORCINGS:
            return Channel(name, name, None, "1", "derived", mean=0.0, std=1.0)
        var, lev = split_name(name, ds)
        if var not in stats.data_vars:
            raise DataError(
                f"channel {name!r}: the statistics have no variable {var!r}; they hold {sorted(map(str, stats.data_vars))}."
            )
        like = None
        if lev is not None:
            like = xr.DataArray([lev], dims="level", coords={"level": [lev]})
        m, s = stat_values(stats, var, "state", like=like)
        rs = None
        if residual:
            try:
                rs = float(np.ravel(stat_values(stats, var, "residual", like=like)[1].values)[0])
            except DataError:
                rs = None
        units = stats[var].attrs.get("units") or (
            ds[var].attrs.get("units") if ds is not None and var in ds else None
        )
        return Channel(
            name, var, lev, units, "dataset",
            mean=float(np.ravel(m.values)[0]), std=float(np.ravel(s.values)[0]), residual_std=rs,
        )

    return {
        "inputs": [info(n, True) for n in schema.inputs],
        "targets": [info(n, True) for n in schema.outputs],
        "forcings": [info(n, False) for n in schema.forcings],
        "statics": [info(n, False) for n in schema.statics],
    }


# =============================================================================================
# perturbations
# =============================================================================================


@dataclass(frozen=True)
class Perturbation:
    """Gaussian perturbation of the initial state in normalized space (ensembles).

    Each perturbed member gets ``scale * eps`` added to every prognostic channel of
    every history step (the same ``eps`` for all history steps, so tendencies are not
    disturbed), where ``eps`` is white noise with unit variance per grid point, or,
    with ``length_scale_km``, white noise smoothed with the kernel ``exp(-d^2/L^2)``
    (``d`` great-circle distance, truncated at ``3 L``) and rescaled to unit variance,
    i.e. spatially correlated with a correlation of about ``exp(-d^2 / (2 L^2))``.

    Parameters
    ----------
    scale : float
        Standard deviation in units of each channel's std.
    length_scale_km : float or None
        Correlation length; None = uncorrelated.
    control : bool
        Keep member 0 unperturbed (a control forecast).
    """

    scale: float = 0.0
    length_scale_km: float | None = None
    control: bool = True

    def __post_init__(self) -> None:
        if not np.isfinite(self.scale) or self.scale < 0:
            raise ConfigError(f"perturbation scale must be a number >= 0, got {self.scale!r}.")
        if self.length_scale_km is not None and not (
            np.isfinite(self.length_scale_km) and self.length_scale_km > 0
        ):
            raise ConfigError(f"perturbation length scale must be > 0 km, got {self.length_scale_km!r}.")

    def describe(self) -> str:
        if self.scale == 0:
            return "none"
        corr = (
            f", spatially correlated (L = {self.length_scale_km:g} km)"
            if self.length_scale_km
            else ", uncorrelated"
        )
        ctl = "; member 0 is the unperturbed control" if self.control else ""
        return f"Gaussian, std {self.scale:g} x channel std (normalized space){corr}{ctl}"


_EARTH_RADIUS_KM = 6371.0


def _smoother(lat: np.ndarray, lon: np.ndarray, length_km: float):
    """Sparse [n, n] matrix with rows ``exp(-d^2/L^2)`` (d < 3L), normalized to unit L2 norm."""
    import scipy.sparse as sp
    from scipy.spatial import cKDTree

    la, lo = np.deg2rad(lat.ravel()), np.deg2rad(lon.ravel())
    xyz = np.stack([np.cos(la) * np.cos(lo), np.cos(la) * np.sin(lo), np.sin(la)], axis=1)
    ell = length_km / _EARTH_RADIUS_KM
    radius = min(2.0, 2.0 * np.sin(min(np.pi, 3.0 * ell) / 2.0))
    tree = cKDTree(xyz)
    d = tree.sparse_distance_matrix(tree, radius, output_type="coo_matrix")
    rows = np.r_[d.row, np.arange(len(xyz))]
    cols = np.r_[d.col, np.arange(len(xyz))]
    chord = np.r_[d.data, np.zeros(len(xyz))]
    arc = 2.0 * np.arcsin(np.clip(chord / 2.0, 0.0, 1.0))
    w = sp.coo_matrix((np.exp(-((arc / ell) ** 2)), (rows, cols)), shape=(len(xyz),) * 2).tocsr()
    w.sum_duplicates()
    w.data[w.data > 1.0] = 1.0  # the diagonal added twice when d.data held it too
    norm = np.sqrt(np.asarray(w.multiply(w).sum(axis=1)).ravel())
    return sp.diags(1.0 / norm) @ w


# =============================================================================================
# state and data context
# =============================================================================================


@dataclass
class _Context:
    """Everything bound to one dataset: grids, regridders, statics, forcing recipes."""

    ds: xr.Dataset
    data_grid: Grid
    data_dims: tuple[str, ...]
    to_model: Callable[[torch.Tensor], torch.Tensor]
    to_data: Callable[[torch.Tensor], torch.Tensor]
    to_native_cells: Callable[[torch.Tensor], torch.Tensor] | None
    statics: torch.Tensor | None
    forcing_fns: list[Callable[[np.ndarray], np.ndarray]]
    forcing_notes: dict[str, str]
    model_lat: np.ndarray
    model_lon: np.ndarray
    data_source: str
    data_times: pd.DatetimeIndex


@dataclass
class RolloutState:
    """The state of a rollout on the model grid (normalized).

    Attributes
    ----------
    history : Tensor ``[B, history, C_in, *model_grid]``
        Input window, oldest first; ``history[:, -1]`` is the state at ``time``.
    time : numpy.datetime64
        Valid time of ``history[:, -1]``.
    init : numpy.datetime64
        Initial time.
    step : int
        Model steps made since ``init``.
    carry : Any
        Recurrent model state (None for the ViT; the GRU hidden states of the U-Net-GRU).
    diagnostics : Tensor ``[B, V, *model_grid]`` or None
        Variables diagnosed by the attached decoders from the latent of the step that
        produced this state (physical units, model grid, order of
        ``Forecaster.channels["diagnostics"]``); None at the initial state and without
        decoders.
    """

    history: torch.Tensor
    time: np.datetime64
    init: np.datetime64
    step: int = 0
    carry: Any = None
    context: _Context | None = field(default=None, repr=False)
    diagnostics: torch.Tensor | None = field(default=None, repr=False)


# =============================================================================================
# the forecaster
# =============================================================================================


def _as_timedelta(x: Any, what: str) -> pd.Timedelta:
    try:
        td = pd.Timedelta(x)
    except (TypeError, ValueError) as err:
        raise ConfigError(f"{what} must be a time interval such as '6h', got {x!r}.") from err
    if td <= pd.Timedelta(0):
        raise ConfigError(f"{what} must be positive, got {x!r}.")
    return td


class Forecaster:
    """A one-step model ready to roll out on data.

    Build it with :meth:`from_checkpoint` (a folder written by ``atmos train``, or the
    embedded sample) or :meth:`from_model` (any registered model plus statistics).

    Parameters
    ----------
    model : nn.Module
        A model with ``schema`` (:class:`atmos.models.schema.ChannelSchema`) and
        ``grid``, called as ``model(inputs, forcings, statics, state)``.
    channels : dict
        ``{"inputs", "targets", "forcings", "statics"}`` -> list of :class:`Channel`,
        in the model's channel order.
    step : timedelta-like
        Model time step.
    model_grid : Grid
        The grid the model runs on.
    normalization : {"residual", "state"}
        Output convention: ``x[t+1] = x[t] + out * residual_std / std`` (normalized) or
        ``x[t+1] = out``.
    name : str
        Short name (used in default output names and attributes).
    info : dict
        Provenance recorded in the output (checkpoint path and hash, model type...).
    regrid_method : str
        Method for regridding between the data's and the model's grids.
    device : str
        ``cpu``, ``cuda`` or ``auto``.
    grid_from_schema : bool
        ``model_grid`` was inferred from the model's shape only: lat-lon data of that
        shape are used as they are.
    state_reset : timedelta-like, None or "auto"
        Reset a recurrent model's state (``state=None``) every this often after the
        initial time (the trainer starts every window from ``None``); ``"auto"``: 24 h
        for recurrent models (DLWP-HPX's reset cycle), never for the others.
    decoders : path, LatentDecoder or a list of them, optional
        Lightweight decoders for new variables, see :meth:`attach_decoders`.
    """

    def __init__(
        self,
        model: nn.Module,
        channels: Mapping[str, list[Channel]],
        *,
        step: Any,
        model_grid: Grid,
        normalization: str = "residual",
        name: str = "model",
        info: Mapping[str, Any] | None = None,
        regrid_method: str = "bilinear",
        device: str = "cpu",
        grid_from_schema: bool = False,
        state_reset: Any = "auto",
        decoders: Any = None,
    ) -> None:
        if not isinstance(model, Backbone):
            lacks = [a for a in ("schema", "grid", "recurrent") if not hasattr(model, a)]
            raise ConfigError(
                f"{type(model).__name__} is not an atmos backbone: it lacks {lacks or ['__call__']} of the "
                "atmos.models.base.Backbone protocol (.schema, .grid, .recurrent and "
                "model(inputs, forcings, statics, state)). Build the model with atmos.models.build, or give "
                "it those members."
            )
        schema = model.schema
        if normalization not in ("residual", "state"):
            raise ConfigError(f"normalization must be 'residual' or 'state', got {normalization!r}.")
        self.channels = {g: list(channels.get(g, [])) for g in ("inputs", "targets", "forcings", "statics")}
        schema.check_against(
            {g: [c.name for c in self.channels[g]] for g in ("inputs", "forcings", "statics")},
            outputs=[c.name for c in self.channels["targets"]],
            label="the checkpoint's channel table",
        )
        if len(schema.inputs) != len(schema.outputs):
            extra = schema.inputs[len(schema.outputs) :]
            raise ConfigError(
                f"the model has input-only channels {extra}; rollout supports models whose inputs are all "
                "prognostic (inputs == outputs)."
            )
        self.normalization = normalization
        self.normalizer = Normalizer(self.channels["targets"], normalization)
        self.device = _resolve_device(device)
        self.model = model.to(self.device).eval()
        self.schema = schema
        self.step = _as_timedelta(step, "the model time step")
        self.history = int(schema.history)
        self.model_grid = model_grid
        # a grid known only by its shape (models built without a checkpoint) matches any data grid of that shape
        self._grid_from_schema = bool(grid_from_schema)
        self.model_shape = tuple(int(s) for s in model.grid)
        self.name = str(name)
        self.info = dict(info or {})
        self.regrid_method = regrid_method
        self.normalizer = self.normalizer.to(self.device)
        self._smoothers: dict[float, Any] = {}
        recurrent = bool(model.recurrent)
        if state_reset == "auto":
            state_reset = "24h" if recurrent else None
        self.state_reset = None if state_reset is None else _as_timedelta(state_reset, "state_reset")
        self.state_reset_steps = 0
        if self.state_reset is not None:
            n = self.state_reset / self.step
            if abs(n - round(n)) > 1e-9:
                raise ConfigError(
                    f"state_reset {self.state_reset} must be a multiple of the model step {self.step}."
                )
            self.state_reset_steps = round(n)
        if recurrent:
            self.info["atmos_state_reset"] = (
                f"recurrent state reset to zero every {self.state_reset}"
                if self.state_reset
                else "never reset"
            )
        self.decoders: list[nn.Module] = []
        self.channels["diagnostics"] = []
        self._decoder_info: list[dict[str, Any]] = []
        if decoders is not None:
            self.attach_decoders(decoders)

    # -- decoders ------------------------------------------------------------------------------
    def attach_decoders(self, decoders: Any) -> Forecaster:
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
        from atmos.models.checkpoint import find_checkpoint, load_decoder

        if isinstance(decoders, (str, os.PathLike, nn.Module)):
            items = [decoders]
        elif isinstance(decoders, Sequence):
            items = list(decoders)
        else:
            raise ConfigError(
                f"decoders must be a decoder checkpoint path, a LatentDecoder or a list of them, got "
                f"{type(decoders).__name__}."
            )
        if not items:
            return self
        if not isinstance(self.model, LatentBackbone):
            raise ConfigError(
                f"model {self.name!r} ({type(self.model).__name__}) exposes no latent (latent_spec/forward_latent/"
                "decode_latent), so lightweight decoders cannot run on it; decoders work on the registered ViT and "
                "UNetGRU backbones."
            )
        spec = self.model.latent_spec()
        taken: dict[str, str] = {}  # variable -> what predicts it already
        for c in self.channels["targets"]:
            taken[c.variable] = taken[c.name] = f"the model {self.name!r} (a prognostic output)"
        for prov in self._decoder_info:
            for v in prov["variables"]:
                taken[v] = f"the decoder {prov['checkpoint']!r}"
        new: list[tuple[nn.Module, dict[str, Any], list[Channel]]] = []
        for item in items:
            if isinstance(item, (str, os.PathLike)):
                p = Path(os.path.expanduser(os.fspath(item)))
                if not p.exists():
                    raise SourceError(
                        f"decoder {str(p)!r} does not exist; pass a decoder checkpoint or run folder written by "
                        "`atmos train` with `task: decoder`."
                    )
                dec, meta = load_decoder(p, backbone=self.model, map_location=self.device)
                folder = find_checkpoint(p)
                assert folder is not None  # load_decoder found it
                label = f"decoder {str(folder)!r}"
                prov = {
                    "variables": None,
                    "checkpoint": str(folder.resolve()),
                    "sha256": weights_hash(dec),
                    "backbone_sha256": meta.backbone.sha256 if meta.backbone is not None else None,
                }
            elif isinstance(item, nn.Module):
                dec = item
                label = f"decoder {type(item).__name__}(variables={getattr(item, 'variables', '?')})"
                prov = {
                    "variables": None,
                    "checkpoint": "none (in-memory decoder)",
                    "sha256": weights_hash(dec),
                    "backbone_sha256": None,
                }
            else:
                raise ConfigError(
                    f"a decoder must be a checkpoint path or a LatentDecoder module, got {type(item).__name__}."
                )
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
                    f"{label} was built for the latent {_jsonable(cfg.latent)!r}, but model {self.name!r} "
                    f"({type(self.model).__name__}) has the latent {_jsonable(spec)!r}; use a decoder built for this "
                    "backbone (LatentDecoder.for_backbone(model, ...))."
                )
            variables = [str(v) for v in cfg.variables]
            prov["variables"] = variables
            units = dict(getattr(cfg, "units", {}) or {})
            chans = []
            for v in variables:
                if v in taken:
                    raise ConfigError(
                        f"variable {v!r} of {label} is already predicted by {taken[v]}; attach one decoder per "
                        "variable, and only for variables the model does not predict."
                    )
                taken[v] = label
                chans.append(
                    Channel(name=v, variable=v, level=None, units=units.get(v), source="decoder", mean=0.0, std=1.0)
                )
            new.append((dec.to(self.device).eval(), prov, chans))
        for dec, prov, chans in new:
            self.decoders.append(dec)
            self._decoder_info.append(prov)
            self.channels["diagnostics"].extend(chans)
        self.info["atmos_decoders"] = json.dumps(self._decoder_info)
        return self

    def with_decoders(self, decoders: Any) -> Forecaster:
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

    # -- construction --------------------------------------------------------------------------
    @classmethod
    def from_checkpoint(
        cls,
        path: str | os.PathLike | None = None,
        *,
        device: str = "cpu",
        state_reset: Any = "auto",
        decoders: Any = None,
    ) -> Forecaster:
        """Load a checkpoint folder written by ``atmos train`` (None = the embedded sample model).

        The model is built by :func:`atmos.models.checkpoint.load_model`;
        ``info["atmos_checkpoint_sha256"]`` is its :func:`~atmos.models.checkpoint.weights_hash`,
        the same as :meth:`from_model` records for the same weights.
        ``decoders``: decoder checkpoints (or modules) to attach, see :meth:`attach_decoders`.
        """
        from atmos.models.checkpoint import find_checkpoint, load_model
        from atmos.rollout.sample import is_sample_checkpoint, sample_checkpoint_dir

        if path is None:
            path = sample_checkpoint_dir()
        p = Path(os.path.expanduser(os.fspath(path)))
        if not p.exists():
            raise SourceError(
                f"--model {str(p)!r} does not exist; pass a checkpoint or run folder written by atmos train."
            )
        model, meta = load_model(p)
        folder = find_checkpoint(p)
        assert folder is not None  # load_model found it
        channels = _channels_from_meta(meta)
        grid = _model_grid(model, meta.grid)
        name = meta.name or folder.name
        info = {
            "atmos_model": name,
            "atmos_model_type": meta.model.name if meta.model is not None else None,
            "atmos_model_parameters": int(sum(p.numel() for p in model.parameters())),
            "atmos_checkpoint": str(folder),
            "atmos_checkpoint_sha256": weights_hash(model),
            "atmos_checkpoint_hash": HASH_METHOD,
            "atmos_checkpoint_atmos_version": meta.atmos_version,
        }
        if meta.sample or is_sample_checkpoint(folder):
            from atmos.rollout.sample import SAMPLE_NOTE

            info["atmos_model_note"] = f"atmos sample model, {SAMPLE_NOTE}"
        if meta.global_step is not None:
            info["atmos_checkpoint_global_step"] = meta.global_step
        data_cfg = meta.config.get("data") or {}
        if data_cfg.get("source"):
            info["atmos_training_data"] = str(data_cfg["source"])
        step = pd.Timedelta(seconds=meta.time_step_seconds) if meta.time_step_seconds else "6h"
        norm = meta.output_normalization
        method = data_cfg.get("regrid_method", "bilinear")
        return cls(
            model,
            channels,
            step=step,
            model_grid=grid,
            normalization=norm,
            name=name,
            info=info,
            regrid_method=method,
            device=device,
            state_reset=state_reset,
            decoders=decoders,
        )

    @classmethod
    def from_model(
        cls,
        model: nn.Module,
        stats: xr.Dataset,
        *,
        step: Any = "6h",
        normalization: str = "residual",
        name: str | None = None,
        data: xr.Dataset | None = None,
        regrid_method: str = "bilinear",
        device: str = "cpu",
        state_reset: Any = "auto",
        decoders: Any = None,
    ) -> Forecaster:
        """Wrap a model built with :func:`atmos.models.build` and statistics from
        :func:`atmos.io.stats.compute_stats` (channel names ``variable`` or ``variable_level``);
        ``decoders`` as in :meth:`attach_decoders`."""
        channels = _channels_from_stats(model, stats, data)
        info = {
            "atmos_model": name or type(model).__name__.lower(),
            "atmos_model_type": type(model).__name__,
            "atmos_model_parameters": int(sum(p.numel() for p in model.parameters())),
            "atmos_checkpoint": "none (in-memory model)",
            "atmos_checkpoint_sha256": weights_hash(model),
            "atmos_checkpoint_hash": HASH_METHOD,
        }
        return cls(
            model,
            channels,
            step=step,
            model_grid=_model_grid(model, None),
            normalization=normalization,
            name=info["atmos_model"],
            info=info,
            regrid_method=regrid_method,
            device=device,
            grid_from_schema=True,
            state_reset=state_reset,
            decoders=decoders,
        )

    def __repr__(self) -> str:
        return (
            f"Forecaster({self.name!r}, {self.info.get('atmos_model_type')}, step={self.step}, "
            f"grid={self.model_grid!r}, outputs={len(self.channels['targets'])} channels"
            + (f", diagnostics={self.diagnostic_variables}" if self.decoders else "")
            + ")"
        )

    @property
    def output_variables(self) -> list[str]:
        """Variables of the forecast (canonical names, in first-channel order)."""
        return list(dict.fromkeys(c.variable for c in self.channels["targets"]))

    @property
    def required_variables(self) -> list[str]:
        """Dataset variables the initial conditions must have (prognostics, dataset forcings, statics)."""
        names = [c.variable for g in ("inputs", "statics") for c in self.channels[g]]
        return list(dict.fromkeys(names))

    # -- binding to a dataset ----------------------------------------------------------------------
    def _context(self, ds: xr.Dataset, init: np.datetime64, forcings: str) -> _Context:
        from atmos.io.coords import grid_of, spatial_dims

        if forcings not in FORCING_MODES:
            raise ConfigError(f"forcings must be one of {list(FORCING_MODES)}, got {forcings!r}.")
        need = [c.variable for g in ("inputs", "statics") for c in self.channels[g]]
        missing = sorted({v for v in need if v not in ds.data_vars})
        if missing:
            raise DataError(
                f"the initial-condition data lack variables {missing} that model {self.name!r} needs; they have "
                f"{sorted(map(str, ds.data_vars))}. Pass --data with a dataset holding "
                f"{sorted(set(need))}."
            )
        data_grid = grid_of(ds)
        data_dims = spatial_dims(ds)
        to_model, to_data, native = self._regridders(data_grid)
        mlat, mlon = self._model_latlon()
        ctx = _Context(
            ds=ds,
            data_grid=data_grid,
            data_dims=data_dims,
            to_model=to_model,
            to_data=to_data,
            to_native_cells=native,
            statics=None,
            forcing_fns=[],
            forcing_notes={},
            model_lat=mlat,
            model_lon=mlon,
            data_source=str(ds.attrs.get("atmos_source", "in-memory dataset")),
            data_times=pd.DatetimeIndex(ds.indexes["time"]) if "time" in ds.indexes else pd.DatetimeIndex([]),
        )
        if self.channels["statics"]:
            raw = self._read(ds, self.channels["statics"], None)  # [1, C, *data_grid]
            ctx.statics = self._normalize(
                to_model(torch.from_numpy(raw).to(self.device))[0], self.channels["statics"]
            )
        for c in self.channels["forcings"]:
            fn, note = self._forcing_fn(c, ctx, init, forcings)
            ctx.forcing_fns.append(fn)
            ctx.forcing_notes[c.name] = note
        return ctx

    def _regridders(self, data_grid: Grid):
        from atmos.grids.regrid import Regridder

        mg = self.model_grid
        dev = self.device
        if isinstance(mg, HealpixGrid):
            if isinstance(data_grid, HealpixGrid):
                if data_grid.nside != mg.nside:
                    raise DataError(
                        f"the data are on HEALPix nside {data_grid.nside}, the model on nside {mg.nside}; regrid the "
                        "data first (ds.atmos.to_healpix) or pass lat-lon data."
                    )
                dg = data_grid
                return (lambda x: dg.cells_to_faces(x)), (lambda x: dg.faces_to_cells(x)), None
            rin = Regridder(data_grid, mg, method=self.regrid_method, healpix_layout="faces").to(dev)
            rout = Regridder(mg, data_grid, method=self.regrid_method, healpix_layout="faces").to(dev)
            return _no_grad(rin), _no_grad(rout), (lambda x: mg.faces_to_cells(x))
        if isinstance(data_grid, HealpixGrid):
            raise DataError(
                f"model {self.name!r} runs on a lat-lon grid {mg.shape} but the data are on HEALPix nside "
                f"{data_grid.nside}; pass lat-lon data (ds.atmos.to_latlon)."
            )
        if data_grid.shape == mg.shape and (mg == data_grid or self._grid_from_schema):
            ident = lambda x: x
            return ident, ident, None
        rin = Regridder(data_grid, mg, method=self.regrid_method).to(dev)
        rout = Regridder(mg, data_grid, method=self.regrid_method).to(dev)
        return _no_grad(rin), _no_grad(rout), (lambda x: x)

    def _model_latlon(self) -> tuple[np.ndarray, np.ndarray]:
        """Latitude/longitude of the model grid in tensor layout (``[nlat, nlon]`` or ``[12, n, n]``)."""
        mg = self.model_grid
        if isinstance(mg, HealpixGrid):
            return mg.cells_to_faces(mg.lat), mg.cells_to_faces(mg.lon)
        lat, lon = np.meshgrid(mg.lat, mg.lon, indexing="ij")
        return lat, lon

    def _read(self, ds: xr.Dataset, chans: list[Channel], times: pd.DatetimeIndex | None) -> np.ndarray:
        """Channels at ``times`` (None: statics) as float32 ``[T, C, *data_grid]`` (physical units)."""
        from atmos.io.coords import spatial_dims

        sdims = spatial_dims(ds)
        with decode_guard(ds, sorted({c.variable for c in chans}), "the input data"):
            return self._read_channels(ds, chans, times, sdims)

    def _read_channels(
        self, ds: xr.Dataset, chans: list[Channel], times: pd.DatetimeIndex | None, sdims: tuple[str, ...]
    ) -> np.ndarray:
        out = None
        for k, c in enumerate(chans):
            x = ds[c.variable]
            if c.level is not None:
                if "level" not in x.dims:
                    raise DataError(
                        f"channel {c.name!r} needs {c.variable!r} on pressure levels; it has dims {x.dims}."
                    )
                have = np.asarray(x["level"].values, dtype=float)
                hit = np.flatnonzero(np.isclose(have, float(c.level)))
                if not hit.size:
                    raise DataError(
                        f"channel {c.name!r}: {c.variable!r} has no level {c.level}; levels are "
                        f"{[level_label(v) for v in have]}."
                    )
                x = x.isel(level=int(hit[0]))
            elif "level" in x.dims:
                raise DataError(
                    f"channel {c.name!r} is a single field but {c.variable!r} has levels {x['level'].values}."
                )
            if times is None:
                if "time" in x.dims:
                    x = x.isel(time=0)
                vals = np.asarray(x.transpose(*sdims).values, dtype=np.float32)[None]
            else:
                vals = np.asarray(x.sel(time=times.values).transpose("time", *sdims).values, dtype=np.float32)
            if out is None:
                out = np.empty((vals.shape[0], len(chans), *vals.shape[1:]), np.float32)
            out[:, k] = vals
            if c.source == "dataset":
                check_plausible(c.variable, vals, f" (channel {c.name!r} of the input data)")
            bad = ~np.isfinite(vals)
            if bad.any():
                where = (
                    ""
                    if times is None
                    else f" at {times[np.flatnonzero(bad.reshape(len(vals), -1).any(1))[0]]}"
                )
                raise DataError(
                    f"the data's {c.name!r} ({c.variable}) has {int(bad.sum())} NaN/Inf values{where}; the initial "
                    "conditions must be complete. Fill them or choose another initial time."
                )
        assert out is not None
        return out

    def _normalize(self, x: torch.Tensor, chans: list[Channel]) -> torch.Tensor:
        """``(x - mean) / std`` along the channel axis (axis -1-len(grid))."""
        nd = len(self.model_shape) if self.model_shape else x.ndim - 2
        shape = (-1,) + (1,) * nd
        mean = torch.tensor([c.mean for c in chans], dtype=x.dtype, device=x.device).view(shape)
        std = torch.tensor([c.std for c in chans], dtype=x.dtype, device=x.device).view(shape)
        return (x - mean) / std

    def _forcing_fn(self, c: Channel, ctx: _Context, init: np.datetime64, mode: str):
        from atmos.rollout.forcings import TOA_NAME, ToaCalibration, calibrate_toa, derived

        if c.source == "derived" or c.name in DERIVED_FORCINGS:
            lon = ctx.model_lon
            return (
                lambda t, n=c.name: derived(n, t, lon)
            ), "computed from the valid time (atmos.io.forcings)"
        if c.variable == TOA_NAME and mode in ("auto", "astronomy"):
            ds = ctx.ds
            cal: ToaCalibration | None = ToaCalibration()
            if TOA_NAME in ds.data_vars and len(ctx.data_times):
                past = ctx.data_times[ctx.data_times <= pd.Timestamp(init)][-8:]
                if len(past):
                    obs = self._read(ds, [c], past)[:, 0]
                    dlat, dlon = _grid_latlon(ctx.data_grid)
                    try:
                        cal = calibrate_toa(obs, past.values, dlat, dlon)
                    except DataError:
                        if mode == "astronomy":
                            raise
                        cal = None  # auto: the data's TOA is not astronomical; read it from the data
            if cal is not None:
                lat, lon, mean, std = ctx.model_lat, ctx.model_lon, c.mean, c.std
                return (lambda t: ((cal(t, lat, lon) - mean) / std).astype(np.float32)), cal.describe()
        if mode in ("auto", "data", "astronomy"):
            if mode == "astronomy" and c.variable != TOA_NAME:
                raise ConfigError(
                    f"forcing {c.name!r} cannot be computed from astronomy; use forcings='data' or 'auto'."
                )
            ds, chans = ctx.ds, [c]

            def from_data(t: np.ndarray) -> np.ndarray:
                times = pd.DatetimeIndex(t)
                miss = times.difference(ctx.data_times)
                if len(miss):
                    raise DataError(
                        f"forcing {c.name!r} is read from the data, which do not cover valid time {miss[0]} "
                        f"(data: {ctx.data_times[0]} .. {ctx.data_times[-1]}). Use data covering every lead time "
                        "or a shorter forecast."
                    )
                raw = torch.from_numpy(self._read(ds, chans, times)).to(self.device)
                return self._normalize(ctx.to_model(raw), chans)[:, 0].cpu().numpy()

            return (
                from_data,
                "read from the data at the valid times (uses data from the future, forcing only)",
            )
        raise ConfigError(f"forcings must be one of {list(FORCING_MODES)}, got {mode!r}.")

    # -- encode / advance / decode / unroll --------------------------------------------------------
    def encode(
        self,
        data: xr.Dataset,
        init: Any,
        *,
        members: int = 1,
        perturbation: Perturbation | None = None,
        seed: int = 0,
        forcings: str = "auto",
        context: _Context | None = None,
    ) -> RolloutState:
        """Initial state at ``init`` from a canonical dataset.

        Parameters
        ----------
        data : xarray.Dataset
            Canonical data holding the model's variables at ``init`` and the
            ``history - 1`` steps before it, and its statics.
        init : datetime-like
        members : int
            Batch size: ensemble members (identical unless perturbed).
        perturbation : Perturbation, optional
        seed : int
            Seed of the perturbation noise (the same seed gives the same members).
        forcings : {"auto", "astronomy", "data"}
            How forcings are produced for future times (see :mod:`atmos.rollout.forcings`).
        context : optional
            A context from an earlier :meth:`encode` on the same data (reuses statics,
            regridders and the forcing calibration).

        Returns
        -------
        RolloutState
        """
        if isinstance(members, bool) or not isinstance(members, (int, np.integer)) or members < 1:
            raise ConfigError(f"members must be an integer >= 1, got {members!r}.")
        t0 = np.datetime64(pd.Timestamp(init).to_datetime64(), "ns")
        ctx = context if context is not None else self._context(data, t0, forcings)
        times = self.check_init(ctx.data_times, t0)
        raw = torch.from_numpy(self._read(ctx.ds, self.channels["inputs"], times)).to(self.device)
        hist = self._normalize(ctx.to_model(raw), self.channels["inputs"])  # [H, C, *grid]
        hist = hist.unsqueeze(0).expand(members, *hist.shape).clone()
        if perturbation is not None and perturbation.scale > 0:
            hist = hist + self._noise(hist.shape, perturbation, seed, members)
        return RolloutState(history=hist, time=t0, init=t0, step=0, carry=None, context=ctx)

    def check_init(self, data_times: pd.DatetimeIndex, init: Any) -> pd.DatetimeIndex:
        """The input times an initial time needs (its history window), checked against the data.

        Parameters
        ----------
        data_times : pandas.DatetimeIndex
            The time coordinate of the initial-condition data.
        init : datetime-like

        Returns
        -------
        pandas.DatetimeIndex
            The ``history`` times ``init - (history-1) step .. init``.

        Raises
        ------
        DataError
            A needed time is not in the data: the message says whether ``init`` lies off the data's
            time grid (and names the nearest valid times) or outside its period.
        """
        t0 = pd.Timestamp(init)
        times = pd.DatetimeIndex([t0 - k * self.step for k in range(self.history - 1, -1, -1)])
        miss = times.difference(data_times)
        if not len(miss):
            return times
        if not len(data_times):
            raise DataError(f"initial time {t0} cannot be used: the data have no time steps.")
        span = f"{data_times[0]} .. {data_times[-1]}"
        if data_times[0] <= t0 <= data_times[-1] and t0 not in data_times:
            j = int(data_times.searchsorted(t0))
            near = [str(data_times[k]) for k in (j - 1, j) if 0 <= k < len(data_times)]
            steps = np.unique(np.diff(data_times.values[:50]))
            grid = f"every {pd.Timedelta(steps[0])}" if len(steps) == 1 else "its time steps"
            raise DataError(
                f"initial time {t0} is inside the data's period ({span}) but not on its time grid ({grid}); "
                f"the nearest valid times are {' and '.join(near)}. Choose an --init on the grid."
            )
        raise DataError(
            f"initial time {t0} needs the data at {list(map(str, times))} (history of "
            f"{self.history} step(s) of {self.step}), but {list(map(str, miss))} are not in the data "
            f"({span}). Choose an --init inside the data's period."
        )

    def _noise(self, shape: torch.Size, pert: Perturbation, seed: int, members: int) -> torch.Tensor:
        b, _, c = shape[:3]
        grid = tuple(shape[3:])
        npts = int(np.prod(grid))
        rng = np.random.default_rng(int(seed))
        eps = rng.standard_normal((b, c, npts))
        if pert.length_scale_km:
            key = float(pert.length_scale_km)
            if key not in self._smoothers:
                self._smoothers[key] = _smoother(*self._model_latlon(), key)
            w = self._smoothers[key]
            eps = (w @ eps.reshape(b * c, npts).T).T.reshape(b, c, npts)
        if pert.control:
            eps[0] = 0.0
        noise = torch.from_numpy((pert.scale * eps).astype(np.float32)).to(self.device)
        return noise.view(b, 1, c, *grid)

    @torch.no_grad()
    def advance(self, state: RolloutState) -> RolloutState:
        """One model step: the state at ``state.time + step``.

        Raises
        ------
        DataError
            The new state has NaN or Inf values (names the step, valid time, variable).
        """
        ctx = state.context
        if ctx is None:
            raise ConfigError("this RolloutState has no data context; create states with Forecaster.encode.")
        hist = state.history
        b = hist.shape[0]
        dt = self.step.to_timedelta64()
        forc = None
        if ctx.forcing_fns:
            times = np.array(
                [state.time + (k + 1) * dt for k in range(-self.history, 1)], dtype="datetime64[ns]"
            )
            f = np.stack([fn(times) for fn in ctx.forcing_fns], axis=1)  # [H+1, C_f, *grid]
            forc = torch.from_numpy(np.ascontiguousarray(f, dtype=np.float32)).to(self.device)
            forc = forc.unsqueeze(0).expand(b, *forc.shape)
        carry_in = state.carry
        if self.state_reset_steps and state.step % self.state_reset_steps == 0:
            carry_in = None  # recurrent state reset (DLWP-HPX resets its GRU every 24 h)
        diag = None
        if self.decoders:
            # forward == decode_latent(forward_latent(...)): the same operations, a bit-identical trajectory
            latent, carry = self.model.forward_latent(hist, forc, ctx.statics, carry_in)
            out = self.model.decode_latent(latent)
            diag = torch.cat([d.to_physical(d(latent)) for d in self.decoders], dim=1).float()
        else:
            out, carry = self.model(hist, forc, ctx.statics, carry_in)
        out = out.float()
        nxt = self.normalizer.step(hist[:, -1], out)
        new_time = state.time + dt
        finite = torch.isfinite(nxt)
        if not bool(finite.all()):
            self._raise_nonfinite(finite, state, new_time)
        if diag is not None:
            finite = torch.isfinite(diag)
            if not bool(finite.all()):
                self._raise_nonfinite(finite, state, new_time, group="diagnostics")
        new_hist = torch.cat([hist[:, 1:], nxt.unsqueeze(1).to(hist.dtype)], dim=1)
        return RolloutState(new_hist, new_time, state.init, state.step + 1, carry, ctx, diag)

    def _raise_nonfinite(
        self, finite: torch.Tensor, state: RolloutState, new_time: np.datetime64, group: str = "targets"
    ) -> None:
        chans = self.channels[group]
        bad = (~finite).flatten(2).sum(-1)  # [B, C]
        per_channel = bad.sum(0)
        ch = int(torch.nonzero(per_channel)[0])
        c = chans[ch]
        members = torch.nonzero(bad[:, ch]).flatten().tolist()
        lead = pd.Timedelta(new_time - state.init)
        others = [chans[i].name for i in torch.nonzero(per_channel).flatten().tolist()[1:]]
        if group == "diagnostics":
            what = f"variable {c.variable!r} (diagnosed by a lightweight decoder from the backbone's latent)"
            who = "The decoder diverged"
        else:
            what = f"variable {c.variable!r}{'' if c.level is None else f' at level {c.level}'} (channel {c.name!r})"
            who = "The model diverged"
        raise DataError(
            f"the forecast from {pd.Timestamp(state.init)} became non-finite at step {state.step + 1} "
            f"(lead {lead}, valid time {pd.Timestamp(new_time)}): {what} has {int(per_channel[ch])} "
            f"NaN/Inf values{f' in member(s) {members[:5]}' if bad.shape[0] > 1 else ''}"
            f"{f'; also {others[:5]}' if others else ''}. {who}: the rollout was stopped, "
            "nothing after the previous lead was written."
        )

    @torch.no_grad()
    def decode(
        self, state: RolloutState, *, native: bool = False
    ) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
        """The newest state in physical units on the data's grid.

        Returns
        -------
        numpy.ndarray ``[B, C_out + V, *data_grid]`` float32 (``*data_grid`` = ``(nlat, nlon)``
        or ``(npix,)``): the prognostic channels, then the ``V`` variables diagnosed by the
        attached decoders (``channels["diagnostics"]``; NaN at the initial state); with
        ``native=True`` also the model-grid fields ``[B, C_out + V, npix]`` (HEALPix cells,
        nested) or ``[B, C_out + V, nlat, nlon]``.
        """
        ctx = state.context
        x = state.history[:, -1, : len(self.channels["targets"])]
        phys = self.normalizer.denormalize(x)
        out = ctx.to_data(phys).float().cpu().numpy()
        nat = None
        if native:
            nat = ctx.to_native_cells(phys) if ctx.to_native_cells is not None else phys
            nat = nat.float().cpu().numpy()
        if self.decoders:
            # diagnostics regridded on their own, so the prognostics go through exactly the same call as without
            out, nat = self._append_diagnostics(state, ctx, out, nat)
        if not native:
            return out
        return out, nat

    def _append_diagnostics(
        self, state: RolloutState, ctx: _Context, out: np.ndarray, nat: np.ndarray | None
    ) -> tuple[np.ndarray, np.ndarray | None]:
        n = len(self.channels["diagnostics"])
        if state.diagnostics is None:  # the initial state: nothing diagnosed yet
            d_out = np.full((out.shape[0], n, *out.shape[2:]), np.nan, np.float32)
            d_nat = None if nat is None else np.full((nat.shape[0], n, *nat.shape[2:]), np.nan, np.float32)
        else:
            d = state.diagnostics.to(self.device, torch.float32)
            d_out = ctx.to_data(d).float().cpu().numpy()
            d_nat = None
            if nat is not None:
                d_nat = (
                    (ctx.to_native_cells(d) if ctx.to_native_cells is not None else d).float().cpu().numpy()
                )
        out = np.concatenate([out, d_out], axis=1)
        if nat is not None:
            nat = np.concatenate([nat, d_nat], axis=1)
        return out, nat

    def unroll(self, state: RolloutState, steps: int) -> Iterator[RolloutState]:
        """Yield the states after each of ``steps`` model steps (the initial state is not yielded)."""
        for _ in range(int(steps)):
            state = self.advance(state)
            yield state


def _resolve_device(device: str | torch.device) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as err:
        raise ConfigError(f"unknown device {device!r}; use 'cpu', 'cuda', 'cuda:N' or 'auto'.") from err
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(
            f"device {device!r} was requested but torch sees no GPU; use --device cpu (or auto)."
        )
    return dev


def _no_grad(module: nn.Module) -> Callable[[torch.Tensor], torch.Tensor]:
    def f(x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return module(x)

    return f


def _grid_latlon(grid: Grid) -> tuple[np.ndarray, np.ndarray]:
    """Lat/lon of every point in the data's own layout (``[nlat, nlon]`` or ``[npix]``)."""
    if isinstance(grid, HealpixGrid):
        return grid.lat, grid.lon
    return np.meshgrid(grid.lat, grid.lon, indexing="ij")


def _model_grid(model: nn.Module, meta_grid: Mapping[str, Any] | None) -> Grid:
    if (
        meta_grid
        and meta_grid.get("type") in ("latlon", "healpix")
        and (meta_grid.get("type") == "healpix" or "lat" in meta_grid)
    ):
        g = grid_from_dict(dict(meta_grid))
    else:
        sg = dict(getattr(model.schema, "grid", {}) or {})
        if sg.get("type") == "healpix":
            g = HealpixGrid(int(sg["nside"]))
        elif sg.get("type") == "latlon":
            nlat, nlon = (int(v) for v in sg["shape"])
            g = LatLonGrid.equiangular(nlat, nlon, poles=bool(sg.get("poles", False)))
        else:
            raise ConfigError(f"cannot tell the model's grid from its schema grid {sg!r}.")
    shape = tuple(getattr(model, "grid", ()))
    want = g.face_shape if isinstance(g, HealpixGrid) else g.shape
    if shape and tuple(shape) != tuple(want):
        raise ConfigError(
            f"the model is built for grid shape {shape} but its checkpoint describes {g!r} ({want})."
        )
    return g
