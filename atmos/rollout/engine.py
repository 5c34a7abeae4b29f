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

:func:`rollout` drives these for one or several initial times, writes each lead to a
Zarr store as it is produced (:mod:`atmos.rollout.writer`, WeatherBench2 forecast
layout) or keeps a small forecast in memory, and returns an ``xarray.Dataset``.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import hashlib
import json
import os
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import xarray as xr
from torch import nn

from atmos.errors import ConfigError, DataError, SourceError
from atmos.grids import Grid, HealpixGrid, LatLonGrid, grid_from_dict
from atmos.io.forcings import DERIVED_FORCINGS

__all__ = [
    "ChannelInfo",
    "Forecaster",
    "Perturbation",
    "RolloutState",
    "default_output_path",
    "load_checkpoint_files",
    "parse_init",
    "rollout",
]

FORCING_MODES = ("auto", "astronomy", "data")
_LEAD_UNITS = "hours"


# =============================================================================================
# checkpoints (read-only; same format as atmos.train.checkpoint, without importing the trainer)
# =============================================================================================


def _find_checkpoint(path: Path) -> Path | None:
    if (path / "checkpoint.json").is_file():
        return path
    for root in (path / "checkpoints", path):
        latest = root / "LATEST"
        if latest.is_file():
            cand = root / latest.read_text().strip()
            if (cand / "checkpoint.json").is_file():
                return cand
    root = path / "checkpoints" if (path / "checkpoints").is_dir() else path
    if not root.is_dir():
        return None
    found = []
    for p in root.iterdir():
        if p.is_dir() and not p.name.startswith(".") and (p / "checkpoint.json").is_file():
            try:
                step = int(json.loads((p / "checkpoint.json").read_text()).get("training", {}).get("global_step", -1))
            except (OSError, ValueError):
                step = -1
            found.append((step, p.name, p))
    return max(found)[2] if found else None


def load_checkpoint_files(path: str | os.PathLike) -> tuple[Path, dict[str, Any], dict[str, torch.Tensor]]:
    """Read an atmos checkpoint: ``(folder, checkpoint.json, weights)``.

    ``path`` is a checkpoint folder, a run folder (``checkpoints/LATEST``) or its
    ``checkpoints/`` folder (the layout of :mod:`atmos.train.checkpoint`).

    Raises
    ------
    SourceError
        No checkpoint there, or not an atmos checkpoint.
    """
    from safetensors.torch import load_file

    p = Path(os.path.expanduser(os.fspath(path)))
    if not p.exists():
        raise SourceError(f"--model {str(p)!r} does not exist; pass a checkpoint or run folder written by atmos train.")
    ckpt = _find_checkpoint(p)
    if ckpt is None:
        raise SourceError(
            f"no atmos checkpoint under {str(p)!r}: expected a folder with checkpoint.json and model.safetensors, "
            "or a run folder with checkpoints/LATEST."
        )
    meta = json.loads((ckpt / "checkpoint.json").read_text())
    if meta.get("format") != "atmos-checkpoint":
        raise SourceError(f"{str(ckpt / 'checkpoint.json')!r} is not an atmos checkpoint (format={meta.get('format')!r}).")
    weights = ckpt / meta.get("files", {}).get("model", "model.safetensors")
    if not weights.is_file():
        raise SourceError(f"checkpoint {str(ckpt)!r} has no weights file {weights.name!r}.")
    return ckpt, meta, load_file(str(weights), device="cpu")


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _state_hash(model: nn.Module) -> str:
    h = hashlib.sha256()
    for k, v in sorted(model.state_dict().items()):
        h.update(k.encode())
        h.update(v.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


# =============================================================================================
# channels
# =============================================================================================


@dataclass(frozen=True)
class ChannelInfo:
    """One model channel and how to read and normalize it.

    ``variable``/``level`` locate it in a canonical dataset; ``source`` is
    ``"dataset"`` or ``"derived"`` (a time encoding, not normalized).
    """

    name: str
    variable: str
    level: int | float | None = None
    units: str | None = None
    source: str = "dataset"
    mean: float = 0.0
    std: float = 1.0
    residual_std: float | None = None


def _level_label(v: Any) -> int | float:
    f = float(v)
    return int(f) if f.is_integer() else f


def _split_name(name: str, ds: xr.Dataset | None) -> tuple[str, int | float | None]:
    """``geopotential_500`` -> (geopotential, 500) when the dataset has that variable on levels."""
    if ds is not None and name in ds.data_vars:
        return name, None
    m = re.match(r"^(.+)_(\d+(?:\.\d+)?)$", name)
    if m and (ds is None or (m.group(1) in ds.data_vars and "level" in ds[m.group(1)].dims)):
        return m.group(1), _level_label(m.group(2))
    return name, None


def _channels_from_meta(meta: Mapping[str, Any]) -> dict[str, list[ChannelInfo]]:
    schema = meta.get("data_schema")
    if not schema or "groups" not in schema:
        raise SourceError("checkpoint.json has no 'data_schema' (channel table); it was not written by atmos train.")
    out: dict[str, list[ChannelInfo]] = {}
    for group in ("inputs", "targets", "forcings", "statics"):
        chans = []
        for c in schema["groups"].get(group, []):
            derived = c.get("source") == "derived"
            mean, std = c.get("mean"), c.get("std")
            if not derived and (mean is None or std is None):
                raise SourceError(f"checkpoint channel {c['name']!r} has no normalization statistics (mean/std).")
            chans.append(
                ChannelInfo(
                    name=c["name"],
                    variable=c["variable"],
                    level=c.get("level"),
                    units=c.get("units"),
                    source=c.get("source", "dataset"),
                    mean=0.0 if derived else float(mean),
                    std=1.0 if derived else (float(std) if float(std) > 0 else 1.0),
                    residual_std=c.get("residual_std"),
                )
            )
        out[group] = chans
    return out


def _channels_from_stats(model: nn.Module, stats: xr.Dataset, ds: xr.Dataset | None) -> dict[str, list[ChannelInfo]]:
    from atmos.io.stats import stat_values

    schema = model.schema

    def info(name: str, residual: bool) -> ChannelInfo:
        if name in DERIVED_FORCINGS:
            return ChannelInfo(name, name, None, "1", "derived")
        var, lev = _split_name(name, ds)
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
        units = stats[var].attrs.get("units") or (ds[var].attrs.get("units") if ds is not None and var in ds else None)
        return ChannelInfo(
            name, var, lev, units, "dataset", float(np.ravel(m.values)[0]), float(np.ravel(s.values)[0]), rs
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
        if self.length_scale_km is not None and not (np.isfinite(self.length_scale_km) and self.length_scale_km > 0):
            raise ConfigError(f"perturbation length scale must be > 0 km, got {self.length_scale_km!r}.")

    def describe(self) -> str:
        if self.scale == 0:
            return "none"
        corr = f", spatially correlated (L = {self.length_scale_km:g} km)" if self.length_scale_km else ", uncorrelated"
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
    """

    history: torch.Tensor
    time: np.datetime64
    init: np.datetime64
    step: int = 0
    carry: Any = None
    context: _Context | None = field(default=None, repr=False)


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
        ``{"inputs", "targets", "forcings", "statics"}`` -> list of :class:`ChannelInfo`,
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
    """

    def __init__(
        self,
        model: nn.Module,
        channels: Mapping[str, list[ChannelInfo]],
        *,
        step: Any,
        model_grid: Grid,
        normalization: str = "residual",
        name: str = "model",
        info: Mapping[str, Any] | None = None,
        regrid_method: str = "bilinear",
        device: str = "cpu",
    ) -> None:
        schema = getattr(model, "schema", None)
        if schema is None:
            raise ConfigError(
                f"{type(model).__name__} has no .schema; rollout needs a model built by atmos.models.build."
            )
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
        if normalization == "residual":
            bad = [c.name for c in self.channels["targets"] if not c.residual_std or not np.isfinite(c.residual_std)]
            if bad:
                raise ConfigError(f"no residual std for output channels {bad}; cannot apply residual outputs.")
        self.device = torch.device(
            "cuda" if device == "auto" and torch.cuda.is_available() else ("cpu" if device == "auto" else device)
        )
        self.model = model.to(self.device).eval()
        self.schema = schema
        self.step = _as_timedelta(step, "the model time step")
        self.history = int(schema.history)
        self.model_grid = model_grid
        self.model_shape = tuple(int(s) for s in model.grid) if hasattr(model, "grid") else None
        self.name = str(name)
        self.info = dict(info or {})
        self.regrid_method = regrid_method
        tg = self.channels["targets"]
        self._mean = torch.tensor([c.mean for c in tg], dtype=torch.float32, device=self.device)
        self._std = torch.tensor([c.std for c in tg], dtype=torch.float32, device=self.device)
        ratio = [((c.residual_std or 0.0) / c.std) if normalization == "residual" else 1.0 for c in tg]
        self._ratio = torch.tensor(ratio, dtype=torch.float32, device=self.device)
        self._smoothers: dict[float, Any] = {}

    # -- construction --------------------------------------------------------------------------
    @classmethod
    def from_checkpoint(cls, path: str | os.PathLike | None = None, *, device: str = "cpu") -> Forecaster:
        """Load a checkpoint folder written by ``atmos train`` (None = the embedded sample model)."""
        from atmos.models.registry import build
        from atmos.rollout.sample import is_sample_checkpoint, sample_checkpoint_dir

        if path is None:
            path = sample_checkpoint_dir()
        folder, meta, weights = load_checkpoint_files(path)
        mm = meta.get("model", {})
        model = build(mm["name"], **mm.get("params", {}))
        missing, unexpected = model.load_state_dict(weights, strict=False)
        if missing or unexpected:
            raise SourceError(
                f"checkpoint {str(folder)!r} does not match model {mm.get('name')!r}: missing weights "
                f"{missing[:6]}, unexpected weights {unexpected[:6]}."
            )
        channels = _channels_from_meta(meta)
        grid = _model_grid(model, meta.get("grid"))
        sample = meta.get("sample")
        if sample:
            name = sample.get("name", "sample")
        else:
            name = (meta.get("config", {}).get("output", {}) or {}).get("name") or folder.name
        wfile = folder / meta.get("files", {}).get("model", "model.safetensors")
        info = {
            "atmos_model": name,
            "atmos_model_type": mm.get("name"),
            "atmos_model_parameters": int(sum(p.numel() for p in model.parameters())),
            "atmos_checkpoint": str(folder),
            "atmos_checkpoint_sha256": _sha256(wfile),
            "atmos_checkpoint_atmos_version": str(meta.get("atmos_version", "")),
        }
        if sample or is_sample_checkpoint(folder):
            from atmos.rollout.sample import SAMPLE_NOTE

            info["atmos_model_note"] = f"atmos sample model, {SAMPLE_NOTE}"
        train = meta.get("training", {}) or {}
        if train.get("global_step") is not None:
            info["atmos_checkpoint_global_step"] = int(train["global_step"])
        cfg = meta.get("config", {}) or {}
        if cfg.get("data", {}).get("source"):
            info["atmos_training_data"] = str(cfg["data"]["source"])
        step_s = meta.get("time_step_seconds")
        step = pd.Timedelta(seconds=float(step_s)) if step_s else meta.get("time_step", "6h")
        norm = (meta.get("normalization", {}) or {}).get("outputs", "residual")
        method = cfg.get("data", {}).get("regrid_method", "bilinear")
        return cls(model, channels, step=step, model_grid=grid, normalization=norm, name=name, info=info,
                   regrid_method=method, device=device)

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
    ) -> Forecaster:
        """Wrap a model built with :func:`atmos.models.build` and statistics from
        :func:`atmos.io.stats.compute_stats` (channel names ``variable`` or ``variable_level``)."""
        channels = _channels_from_stats(model, stats, data)
        info = {
            "atmos_model": name or type(model).__name__.lower(),
            "atmos_model_type": type(model).__name__,
            "atmos_model_parameters": int(sum(p.numel() for p in model.parameters())),
            "atmos_checkpoint": "none (in-memory model)",
            "atmos_checkpoint_sha256": _state_hash(model),
        }
        return cls(model, channels, step=step, model_grid=_model_grid(model, None), normalization=normalization,
                   name=info["atmos_model"], info=info, regrid_method=regrid_method, device=device)

    def __repr__(self) -> str:
        return (
            f"Forecaster({self.name!r}, {self.info.get('atmos_model_type')}, step={self.step}, "
            f"grid={self.model_grid!r}, outputs={len(self.channels['targets'])} channels)"
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
            ds=ds, data_grid=data_grid, data_dims=data_dims, to_model=to_model, to_data=to_data,
            to_native_cells=native, statics=None, forcing_fns=[], forcing_notes={}, model_lat=mlat, model_lon=mlon,
            data_source=str(ds.attrs.get("atmos_source", "in-memory dataset")),
            data_times=pd.DatetimeIndex(ds.indexes["time"]) if "time" in ds.indexes else pd.DatetimeIndex([]),
        )
        if self.channels["statics"]:
            raw = self._read(ds, self.channels["statics"], None)  # [1, C, *data_grid]
            ctx.statics = self._normalize(to_model(torch.from_numpy(raw).to(self.device))[0], self.channels["statics"])
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
        if data_grid.shape == mg.shape and (
            not isinstance(mg, LatLonGrid) or mg == data_grid or getattr(mg, "_from_schema", False)
        ):
            ident = lambda x: x  # noqa: E731
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

    def _read(self, ds: xr.Dataset, chans: list[ChannelInfo], times: pd.DatetimeIndex | None) -> np.ndarray:
        """Channels at ``times`` (None: statics) as float32 ``[T, C, *data_grid]`` (physical units)."""
        from atmos.io.coords import spatial_dims

        sdims = spatial_dims(ds)
        out = None
        for k, c in enumerate(chans):
            x = ds[c.variable]
            if c.level is not None:
                if "level" not in x.dims:
                    raise DataError(f"channel {c.name!r} needs {c.variable!r} on pressure levels; it has dims {x.dims}.")
                have = np.asarray(x["level"].values, dtype=float)
                hit = np.flatnonzero(np.isclose(have, float(c.level)))
                if not hit.size:
                    raise DataError(
                        f"channel {c.name!r}: {c.variable!r} has no level {c.level}; levels are "
                        f"{[_level_label(v) for v in have]}."
                    )
                x = x.isel(level=int(hit[0]))
            elif "level" in x.dims:
                raise DataError(f"channel {c.name!r} is a single field but {c.variable!r} has levels {x['level'].values}.")
            if times is None:
                if "time" in x.dims:
                    x = x.isel(time=0)
                vals = np.asarray(x.transpose(*sdims).values, dtype=np.float32)[None]
            else:
                vals = np.asarray(x.sel(time=times.values).transpose("time", *sdims).values, dtype=np.float32)
            if out is None:
                out = np.empty((vals.shape[0], len(chans), *vals.shape[1:]), np.float32)
            out[:, k] = vals
            bad = ~np.isfinite(vals)
            if bad.any():
                where = "" if times is None else f" at {times[np.flatnonzero(bad.reshape(len(vals), -1).any(1))[0]]}"
                raise DataError(
                    f"the data's {c.name!r} ({c.variable}) has {int(bad.sum())} NaN/Inf values{where}; the initial "
                    "conditions must be complete. Fill them or choose another initial time."
                )
        assert out is not None
        return out

    def _normalize(self, x: torch.Tensor, chans: list[ChannelInfo]) -> torch.Tensor:
        """``(x - mean) / std`` along the channel axis (axis -1-len(grid))."""
        nd = len(self.model_shape) if self.model_shape else x.ndim - 2
        shape = (-1,) + (1,) * nd
        mean = torch.tensor([c.mean for c in chans], dtype=x.dtype, device=x.device).view(shape)
        std = torch.tensor([c.std for c in chans], dtype=x.dtype, device=x.device).view(shape)
        return (x - mean) / std

    def _forcing_fn(self, c: ChannelInfo, ctx: _Context, init: np.datetime64, mode: str):
        from atmos.rollout.forcings import TOA_NAME, ToaCalibration, calibrate_toa, derived

        if c.source == "derived" or c.name in DERIVED_FORCINGS:
            lon = ctx.model_lon
            return (lambda t, n=c.name: derived(n, t, lon)), "computed from the valid time (atmos.io.forcings)"
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

            return from_data, "read from the data at the valid times (uses data from the future, forcing only)"
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
        times = pd.DatetimeIndex([t0 - k * self.step.to_timedelta64() for k in range(self.history - 1, -1, -1)])
        miss = times.difference(ctx.data_times)
        if len(miss):
            span = f"{ctx.data_times[0]} .. {ctx.data_times[-1]}" if len(ctx.data_times) else "no time steps"
            raise DataError(
                f"initial time {pd.Timestamp(t0)} needs the data at {list(map(str, times))} (history of "
                f"{self.history} step(s) of {self.step}), but {list(map(str, miss))} are not in the data "
                f"({span}). Choose an --init inside the data's period."
            )
        raw = torch.from_numpy(self._read(ctx.ds, self.channels["inputs"], times)).to(self.device)
        hist = self._normalize(ctx.to_model(raw), self.channels["inputs"])  # [H, C, *grid]
        hist = hist.unsqueeze(0).expand(members, *hist.shape).clone()
        if perturbation is not None and perturbation.scale > 0:
            hist = hist + self._noise(hist.shape, perturbation, seed, members)
        return RolloutState(history=hist, time=t0, init=t0, step=0, carry=None, context=ctx)

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
            times = np.array([state.time + (k + 1) * dt for k in range(-self.history, 1)], dtype="datetime64[ns]")
            f = np.stack([fn(times) for fn in ctx.forcing_fns], axis=1)  # [H+1, C_f, *grid]
            forc = torch.from_numpy(np.ascontiguousarray(f, dtype=np.float32)).to(self.device)
            forc = forc.unsqueeze(0).expand(b, *forc.shape)
        out, carry = self.model(hist, forc, ctx.statics, state.carry)
        out = out.float()
        nxt = hist[:, -1] + out * self._ratio.view(1, -1, *([1] * (out.ndim - 2))) if self.normalization == "residual" else out
        new_time = state.time + dt
        finite = torch.isfinite(nxt)
        if not bool(finite.all()):
            self._raise_nonfinite(finite, state, new_time)
        new_hist = torch.cat([hist[:, 1:], nxt.unsqueeze(1).to(hist.dtype)], dim=1)
        return RolloutState(new_hist, new_time, state.init, state.step + 1, carry, ctx)

    def _raise_nonfinite(self, finite: torch.Tensor, state: RolloutState, new_time: np.datetime64) -> None:
        bad = (~finite).flatten(2).sum(-1)  # [B, C]
        per_channel = bad.sum(0)
        ch = int(torch.nonzero(per_channel)[0])
        c = self.channels["targets"][ch]
        members = torch.nonzero(bad[:, ch]).flatten().tolist()
        lead = pd.Timedelta(new_time - state.init)
        others = [self.channels["targets"][i].name for i in torch.nonzero(per_channel).flatten().tolist()[1:]]
        raise DataError(
            f"the forecast from {pd.Timestamp(state.init)} became non-finite at step {state.step + 1} "
            f"(lead {lead}, valid time {pd.Timestamp(new_time)}): variable {c.variable!r}"
            f"{'' if c.level is None else f' at level {c.level}'} (channel {c.name!r}) has {int(per_channel[ch])} "
            f"NaN/Inf values{f' in member(s) {members[:5]}' if bad.shape[0] > 1 else ''}"
            f"{f'; also {others[:5]}' if others else ''}. The model diverged: the rollout was stopped, "
            "nothing after the previous lead was written."
        )

    @torch.no_grad()
    def decode(self, state: RolloutState, *, native: bool = False) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
        """The newest state in physical units on the data's grid.

        Returns
        -------
        numpy.ndarray ``[B, C_out, *data_grid]`` float32 (``*data_grid`` = ``(nlat, nlon)``
        or ``(npix,)``); with ``native=True`` also the model-grid fields
        ``[B, C_out, npix]`` (HEALPix cells, nested) or ``[B, C_out, nlat, nlon]``.
        """
        ctx = state.context
        x = state.history[:, -1, : len(self.channels["targets"])]
        shape = (1, -1) + (1,) * (x.ndim - 2)
        phys = x * self._std.view(shape) + self._mean.view(shape)
        out = ctx.to_data(phys).float().cpu().numpy()
        if not native:
            return out
        nat = ctx.to_native_cells(phys) if ctx.to_native_cells is not None else phys
        return out, nat.float().cpu().numpy()

    def unroll(self, state: RolloutState, steps: int) -> Iterator[RolloutState]:
        """Yield the states after each of ``steps`` model steps (the initial state is not yielded)."""
        for _ in range(int(steps)):
            state = self.advance(state)
            yield state


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
    if meta_grid and meta_grid.get("type") in ("latlon", "healpix") and (
        meta_grid.get("type") == "healpix" or "lat" in meta_grid
    ):
        g = grid_from_dict(dict(meta_grid))
    else:
        sg = dict(getattr(model.schema, "grid", {}) or {})
        if sg.get("type") == "healpix":
            g = HealpixGrid(int(sg["nside"]))
        elif sg.get("type") == "latlon":
            nlat, nlon = (int(v) for v in sg["shape"])
            g = LatLonGrid.equiangular(nlat, nlon, poles=bool(sg.get("poles", False)))
            object.__setattr__(g, "_from_schema", True)
        else:
            raise ConfigError(f"cannot tell the model's grid from its schema grid {sg!r}.")
    shape = tuple(getattr(model, "grid", ()))
    want = g.face_shape if isinstance(g, HealpixGrid) else g.shape
    if shape and tuple(shape) != tuple(want):
        raise ConfigError(f"the model is built for grid shape {shape} but its checkpoint describes {g!r} ({want}).")
    return g


# =============================================================================================
# initial times and output names
# =============================================================================================


def _parse_one(s: Any) -> pd.Timestamp:
    try:
        t = pd.Timestamp(s)
    except (TypeError, ValueError) as err:
        raise ConfigError(
            f"cannot read the initial time {s!r}; use a date or datetime such as 2020-01-01 or 2020-01-01T06."
        ) from err
    if t.tzinfo is not None:
        t = t.tz_convert("UTC").tz_localize(None)
    return t


def parse_init(init: Any) -> pd.DatetimeIndex:
    """Initial times from a date/datetime, a list, or a range.

    Accepted: a datetime-like; a sequence of them; a ``pandas.DatetimeIndex``; or a
    string: ``"2020-01-01"``, ``"2020-01-01T06"``, a comma-separated list
    ``"2020-01-01,2020-01-03T12"``, or a range ``"START/END"`` / ``"START..END"``
    (daily) or ``"START/END/12h"`` (every 12 h), end included.

    Raises
    ------
    ConfigError
        Unreadable dates, an empty range or duplicated times.
    """
    if init is None:
        raise ConfigError("no initial time given; pass init= (--init), e.g. 2020-01-01.")
    if isinstance(init, pd.DatetimeIndex):
        idx = init
    elif isinstance(init, str):
        s = init.strip()
        if "," in s:
            idx = pd.DatetimeIndex([_parse_one(p.strip()) for p in s.split(",") if p.strip()])
        elif "/" in s or ".." in s:
            parts = s.split("/") if "/" in s else s.split("..")
            if len(parts) not in (2, 3) or not all(p.strip() for p in parts):
                raise ConfigError(f"cannot read the range {init!r}; use START/END or START/END/FREQ (e.g. 2020-01-01/2020-01-05/12h).")
            freq = _as_timedelta(parts[2].strip(), "the range step") if len(parts) == 3 else pd.Timedelta("1D")
            start, end = _parse_one(parts[0].strip()), _parse_one(parts[1].strip())
            idx = pd.date_range(start, end, freq=freq)
            if len(idx) == 0:
                raise ConfigError(f"the range {init!r} is empty (its end is before its start).")
        else:
            idx = pd.DatetimeIndex([_parse_one(s)])
    elif isinstance(init, (list, tuple, np.ndarray)):
        idx = pd.DatetimeIndex([_parse_one(v) for v in init])
    else:
        idx = pd.DatetimeIndex([_parse_one(init)])
    if len(idx) == 0:
        raise ConfigError(f"no initial time in {init!r}.")
    if idx.has_duplicates:
        raise ConfigError(f"initial times are repeated in {init!r}: {sorted(set(idx[idx.duplicated()].astype(str)))}.")
    return pd.DatetimeIndex(idx.values.astype("datetime64[ns]"))


def _init_label(t: pd.Timestamp) -> str:
    return t.strftime("%Y-%m-%dT%H") + (t.strftime("%M") if t.minute else "")


def default_output_path(model_name: str, inits: pd.DatetimeIndex, folder: str | os.PathLike = ".") -> Path:
    """``./forecast_<model>_<init>.zarr`` (several inits: ``..._<first>_<n>inits.zarr``)."""
    safe = re.sub(r"[^A-Za-z0-9._-]+", "-", model_name).strip("-") or "model"
    label = _init_label(inits[0]) + (f"_{len(inits)}inits" if len(inits) > 1 else "")
    return Path(folder) / f"forecast_{safe}_{label}.zarr"


# =============================================================================================
# output layout
# =============================================================================================


@dataclass
class _Layout:
    variables: dict[str, dict[str, Any]]  # name -> {"dims", "shape", "levels", "channels", "attrs"}
    coords: dict[str, Any]
    attrs: dict[str, Any]


def _var_attrs(ds: xr.Dataset, c: ChannelInfo) -> dict[str, Any]:
    src = dict(ds[c.variable].attrs) if c.variable in ds else {}
    out = {k: src[k] for k in ("units", "standard_name", "long_name") if k in src}
    if "units" not in out and c.units:
        out["units"] = c.units
    return out


def _layout(
    fc: Forecaster,
    ctx: _Context,
    inits: pd.DatetimeIndex,
    leads: np.ndarray,
    members: int | None,
    native: bool,
) -> _Layout:
    """Dims, coordinates and attributes of the forecast (data grid, or native model grid)."""
    from atmos.io.regrid import _target_coords

    if native:
        grid = fc.model_grid
        sdims, scoords = _target_coords(grid)
        sshape = tuple(grid.shape)
    else:
        grid = ctx.data_grid
        sdims = ctx.data_dims
        if isinstance(grid, HealpixGrid):
            _, scoords = _target_coords(grid)
        else:
            scoords = {d: ctx.ds[d] for d in sdims}
        sshape = tuple(grid.shape)
    lead_dims: tuple[str, ...] = ("time", "prediction_timedelta") + (("member",) if members is not None else ())
    lead_shape = (len(inits), len(leads)) + ((members,) if members is not None else ())
    variables: dict[str, dict[str, Any]] = {}
    for i, c in enumerate(fc.channels["targets"]):
        v = variables.setdefault(c.variable, {"levels": [], "channels": [], "attrs": _var_attrs(ctx.ds, c)})
        v["levels"].append(c.level)
        v["channels"].append(i)
    for name, v in variables.items():
        if any(lv is None for lv in v["levels"]):
            if len(v["levels"]) > 1:
                raise ConfigError(f"variable {name!r} appears both with and without a level among the model outputs.")
            v["dims"] = lead_dims + tuple(sdims)
            v["shape"] = lead_shape + sshape
            v["order"] = [0]
        else:
            order = list(np.argsort(np.asarray(v["levels"], dtype=float), kind="stable"))
            v["levels"] = [v["levels"][k] for k in order]
            v["channels"] = [v["channels"][k] for k in order]
            v["dims"] = lead_dims + ("level",) + tuple(sdims)
            v["shape"] = lead_shape + (len(v["levels"]),) + sshape
    lead_td = pd.to_timedelta(leads)
    coords: dict[str, Any] = {
        "time": ("time", inits.values, {"standard_name": "forecast_reference_time", "long_name": "initial time"}),
        "prediction_timedelta": (
            "prediction_timedelta",
            lead_td.values,
            {"standard_name": "forecast_period", "long_name": "lead time"},
        ),
        "valid_time": (
            ("time", "prediction_timedelta"),
            inits.values[:, None] + lead_td.values[None, :],
            {"standard_name": "time", "long_name": "valid time"},
        ),
    }
    if members is not None:
        coords["member"] = ("member", np.arange(members), {"long_name": "ensemble member", "standard_name": "realization"})
    levels = sorted({lv for v in variables.values() for lv in v["levels"] if lv is not None})
    if levels:
        lvl_attrs = dict(ctx.ds["level"].attrs) if "level" in ctx.ds.coords else {}
        lvl_attrs.setdefault("units", "hPa")
        lvl_attrs.setdefault("long_name", "pressure level")
        lvl_attrs.setdefault("standard_name", "air_pressure")
        lvl_attrs.setdefault("positive", "down")
        lvl_attrs.setdefault("axis", "Z")
        coords["level"] = ("level", np.asarray(levels), lvl_attrs)
        for v in variables.values():
            if v["levels"] and v["levels"][0] is not None:
                # variables share the union of the predicted levels; levels a variable lacks stay NaN
                v["level_index"] = [levels.index(lv) for lv in v["levels"]]
                v["shape"] = v["shape"][: len(lead_dims)] + (len(levels),) + v["shape"][len(lead_dims) + 1 :]
                if len(v["levels"]) < len(levels):
                    v["attrs"]["atmos_predicted_levels"] = [_level_label(lv) for lv in v["levels"]]
    for k, val in scoords.items():
        coords[k] = val
    return _Layout(variables, coords, {})


def _dataset_from_layout(lay: _Layout, data: Mapping[str, Any], attrs: Mapping[str, Any]) -> xr.Dataset:
    ds = xr.Dataset(
        {name: (v["dims"], data[name], v["attrs"]) for name, v in lay.variables.items()},
        coords={k: v for k, v in lay.coords.items()},
        attrs=dict(attrs),
    )
    return ds


def _split_output(lay: _Layout, arr: np.ndarray, members: bool) -> dict[str, np.ndarray]:
    """``[B, C, *grid]`` -> per variable ``[B, (level,) *grid]`` (or without B when not an ensemble)."""
    out = {}
    for name, v in lay.variables.items():
        if "level_index" in v:
            n_lev = v["shape"][len(v["dims"]) - len(arr.shape[2:]) - 1]
            if len(v["level_index"]) == n_lev:
                x = arr[:, v["channels"]]
            else:
                x = np.full((arr.shape[0], n_lev, *arr.shape[2:]), np.nan, np.float32)
                x[:, v["level_index"]] = arr[:, v["channels"]]
        else:
            x = arr[:, v["channels"][0]]
        out[name] = x if members else x[0]
    return out


def _encoding(lay: _Layout) -> dict[str, dict[str, Any]]:
    enc: dict[str, dict[str, Any]] = {
        "time": {"units": "hours since 1970-01-01", "calendar": "proleptic_gregorian", "dtype": "int64"},
        "prediction_timedelta": {"units": _LEAD_UNITS, "dtype": "int64"},
        "valid_time": {"units": "hours since 1970-01-01", "calendar": "proleptic_gregorian", "dtype": "int64"},
    }
    for name in lay.variables:
        enc[name] = {"dtype": "float32"}
    return enc


# =============================================================================================
# the driver
# =============================================================================================


def _open_data(data: Any, fc: Forecaster) -> xr.Dataset:
    from atmos.io.open import open_dataset

    if isinstance(data, xr.Dataset):
        ds = open_dataset(data)
    else:
        ds = open_dataset(data)
    keep = [v for v in ds.data_vars if v in set(fc.required_variables) | {c.variable for c in fc.channels["forcings"]}]
    return ds[keep] if keep else ds


def _resolve_model(model: Any, data: Any, stats: xr.Dataset | None, device: str) -> Forecaster:
    if isinstance(model, Forecaster):
        return model
    if model is None or isinstance(model, (str, os.PathLike)):
        return Forecaster.from_checkpoint(model, device=device)
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
        return Forecaster.from_model(model, stats, data=data if isinstance(data, xr.Dataset) else None, device=device)
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


def _n_leads(fc: Forecaster, days: float | None, steps: int | None, out_step: pd.Timedelta) -> int:
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
    return int(round(n)) + 1


def _json_safe(x: Any) -> Any:
    if isinstance(x, (str, int, float, bool)) or x is None:
        return x
    if isinstance(x, (list, tuple)):
        return [_json_safe(v) for v in x]
    if isinstance(x, dict):
        return {str(k): _json_safe(v) for k, v in x.items()}
    return str(x)


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
        Ensemble size; adds a ``member`` dimension (None: deterministic, no member dim).
    perturb : float
        Std of the Gaussian initial perturbation in normalized units (members > 1).
    perturb_length_scale : float, optional
        Correlation length of the perturbation in km (default: uncorrelated).
    seed : int
        Seed of the perturbations (initial time ``i`` uses ``seed + i``).
    out : path, optional
        Zarr store to stream the forecast into; None keeps it in memory (small runs).
    resume : bool
        Complete an interrupted store at ``out`` (only missing leads are written;
        recurrent models are re-run from the initial time).
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

    Returns
    -------
    xarray.Dataset
        Dims ``(time, prediction_timedelta, [member], [level], *spatial)``; opened
        lazily from ``out`` when given, else in memory.

    Raises
    ------
    ConfigError, DataError, SourceError
        Bad arguments, data that lack the model's variables or the initial times, a
        forecast that becomes non-finite (names the step and variable).
    """
    fc = _resolve_model(model, data, stats, device)
    if data is None:
        data = _default_data(fc)
    inits = parse_init(init)
    out_step = fc.step if step is None else _as_timedelta(step, "step")
    ratio = out_step / fc.step
    if abs(ratio - round(ratio)) > 1e-9 or round(ratio) < 1:
        raise ConfigError(f"the output step {out_step} must be a multiple of the model's step {fc.step}.")
    every = int(round(ratio))
    n_lead = _n_leads(fc, days, steps, out_step)
    if members is not None and (isinstance(members, bool) or not isinstance(members, (int, np.integer)) or members < 1):
        raise ConfigError(f"members must be an integer >= 1, got {members!r}.")
    pert = Perturbation(float(perturb), perturb_length_scale)
    if pert.scale > 0 and (members or 1) < 2:
        raise ConfigError("perturb > 0 needs an ensemble: pass members >= 2 (--members N).")
    if resume and out is None:
        raise ConfigError("resume=True needs the store to complete: pass out= (--out).")
    batch = members or 1

    ds = _open_data(data, fc)
    ctx = fc._context(ds, np.datetime64(inits[0].to_datetime64(), "ns"), forcings)
    leads = (np.arange(n_lead) * out_step.to_timedelta64()).astype("timedelta64[ns]")
    lay = _layout(fc, ctx, inits, leads, members, native=False)
    native_lay = _layout(fc, ctx, inits, leads, members, native=True) if native_out is not None else None

    from atmos import __version__

    config = {
        "model": fc.info.get("atmos_checkpoint"),
        "data": ctx.data_source,
        "init": [str(t) for t in inits],
        "n_lead": n_lead,
        "step": str(out_step),
        "members": members,
        "perturb": pert.scale,
        "perturb_length_scale": pert.length_scale_km,
        "seed": int(seed),
        "forcings": forcings,
    }
    attrs: dict[str, Any] = {
        "Conventions": "CF-1.11",
        "title": f"atmos forecast: {fc.name}",
        "source": f"atmos {__version__} rollout of {fc.name} ({fc.info.get('atmos_model_type')})",
        "history": f"{_dt.datetime.now(_dt.timezone.utc).strftime('%Y-%m-%dT%H:%M:%SZ')} atmos rollout",
        **{k: _json_safe(v) for k, v in fc.info.items()},
        "atmos_version": str(__version__),
        "atmos_data_source": ctx.data_source,
        "atmos_model_step": str(fc.step),
        "atmos_output_step": str(out_step),
        "atmos_forcings": json.dumps(ctx.forcing_notes),
        "atmos_perturbation": pert.describe(),
        "atmos_rollout_config": json.dumps(config),
    }
    data_note = ctx.ds.attrs.get("notes") or ctx.ds.attrs.get("title")
    if data_note:
        attrs["atmos_data_notes"] = str(data_note)
    native_attrs = {**attrs, "title": f"atmos forecast on the model's native grid: {fc.name}"}

    from atmos.rollout.writer import ForecastWriter, read_progress

    def open_writer(path: Path, lo: _Layout, at: dict[str, Any]) -> ForecastWriter:
        if resume and path.exists():
            prev = read_progress(path)
            old = json.loads(prev.get("atmos_rollout_config", "{}"))
            diff = {k: (old.get(k), v) for k, v in config.items() if old.get(k) != v and k != "data"}
            if prev.get("atmos_checkpoint_sha256") != at["atmos_checkpoint_sha256"]:
                diff["checkpoint_sha256"] = (prev.get("atmos_checkpoint_sha256"), at["atmos_checkpoint_sha256"])
            if diff:
                detail = "; ".join(f"{k}: {a!r} in the store, {b!r} now" for k, (a, b) in diff.items())
                raise ConfigError(
                    f"cannot resume {str(path)!r}: it was written with different settings ({detail}). Rerun with "
                    "the original arguments, or pass --overwrite to start over."
                )
            return ForecastWriter.open(path)
        tpl = _dataset_from_layout(lo, {n: _lazy_nan(v["shape"]) for n, v in lo.variables.items()}, at)
        return ForecastWriter.create(path, tpl, overwrite=overwrite, encoding=_encoding(lo))

    main_w = open_writer(Path(out), lay, attrs) if out is not None else None
    native_w = open_writer(Path(native_out), native_lay, native_attrs) if native_lay is not None else None
    writers = [w for w in (main_w, native_w) if w is not None]
    mem = None if main_w is not None else {n: np.full(v["shape"], np.nan, np.float32) for n, v in lay.variables.items()}
    ens = members is not None

    bar = None
    if progress:
        from tqdm.auto import tqdm

        done0 = sum(main_w.completed) if main_w is not None else 0
        bar = tqdm(total=len(inits) * n_lead, initial=done0, unit="lead", desc=f"rollout {fc.name}", dynamic_ncols=True)
    status = None
    try:
        for i, t0 in enumerate(inits):
            start = min(w.completed[i] for w in writers) if writers else 0
            if mem is None and start >= n_lead:
                continue
            if mem is not None:
                start = 0
            state = fc.encode(ds, t0, members=batch, perturbation=pert, seed=int(seed) + i, forcings=forcings,
                              context=ctx)
            for k in range(n_lead):
                if k > 0:
                    for _ in range(every):
                        state = fc.advance(state)
                if k < start:
                    continue
                if native_w is not None:
                    arr, nat = fc.decode(state, native=True)
                    if native_w.completed[i] == k:
                        native_w.write(i, k, _split_output(native_lay, nat, ens))
                else:
                    arr = fc.decode(state)
                values = _split_output(lay, arr, ens)
                if main_w is not None:
                    if main_w.completed[i] == k:
                        main_w.write(i, k, values)
                else:
                    for name, v in values.items():
                        mem[name][i, k] = v
                if bar is not None:
                    bar.update(1)
                if callback is not None:
                    callback(i, k)
    except KeyboardInterrupt:
        status = "interrupted"
        raise
    except DataError as err:
        status = f"failed: {err}"
        raise
    finally:
        if bar is not None:
            bar.close()
        for w in writers:
            w.close(status)
    if main_w is not None:
        with _QuietOpen():
            return xr.open_zarr(str(out), consolidated=True)
    return _dataset_from_layout(lay, mem, {**attrs, "atmos_status": "complete"})


class _QuietOpen:
    def __enter__(self) -> None:
        import warnings

        self._ctx = warnings.catch_warnings()
        self._ctx.__enter__()
        warnings.filterwarnings("ignore", message="Consolidated metadata is currently not part")

    def __exit__(self, *exc: object) -> None:
        self._ctx.__exit__(*exc)


def _lazy_nan(shape: tuple[int, ...]):
    import dask.array as da

    chunks = (1, 1) + tuple(shape[2:])
    return da.full(shape, np.nan, dtype=np.float32, chunks=chunks)
