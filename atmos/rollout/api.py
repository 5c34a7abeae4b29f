"""``rollout()``: forecasts from one or several initial times, streamed to Zarr or kept in memory.

Drives :class:`atmos.rollout.engine.Forecaster` (``encode / advance / decode``) and
lays the result out as a WeatherBench2 forecast: dims ``time`` (initial time),
``prediction_timedelta`` (lead, 0 included), optional ``member``, then ``level`` and the
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

import contextlib
import datetime as _dt
import json
import os
import re
import signal
import threading
import warnings
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr
from torch import nn

from atmos.errors import AtmosError, ConfigError, DataError
from atmos.grids import Grid, HealpixGrid
from atmos.io.paths import check_writable
from atmos.models.checkpoint import HASH_METHOD
from atmos.channels import Channel, level_label
from atmos.rollout.engine import (
    Forecaster,
    Perturbation,
    _as_timedelta,
    _Context,
)

__all__ = ["default_output_path", "parse_init", "rollout"]

_LEAD_UNITS = "hours"


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
                raise ConfigError(
                    f"cannot read the range {init!r}; use START/END or START/END/FREQ (e.g. 2020-01-01/2020-01-05/12h)."
                )
            freq = (
                _as_timedelta(parts[2].strip(), "the range step") if len(parts) == 3 else pd.Timedelta("1D")
            )
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
        raise ConfigError(
            f"initial times are repeated in {init!r}: {sorted(set(idx[idx.duplicated()].astype(str)))}."
        )
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


def _grid_coords(grid: Grid) -> tuple[tuple[str, ...], dict[str, Any]]:
    """Spatial dims and CF coordinates of a grid (HEALPix: ``cell`` with xdggs ``cell_ids``)."""
    if isinstance(grid, HealpixGrid):
        lat, lon = grid.centers()
        return ("cell",), {
            "cell_ids": ("cell", grid.cell_ids, grid.xdggs_attrs()),
            "latitude": ("cell", lat, {"units": "degrees_north", "standard_name": "latitude"}),
            "longitude": ("cell", lon, {"units": "degrees_east", "standard_name": "longitude"}),
        }
    return ("latitude", "longitude"), {
        "latitude": (
            "latitude",
            grid.lat,
            {"units": "degrees_north", "standard_name": "latitude", "axis": "Y"},
        ),
        "longitude": (
            "longitude",
            grid.lon,
            {"units": "degrees_east", "standard_name": "longitude", "axis": "X"},
        ),
    }


DECODER_COMMENT = (
    "diagnosed by a lightweight decoder from the backbone's latent (atmos.models.decoder); NaN at lead 0"
)


def _var_attrs(ds: xr.Dataset, c: Channel) -> dict[str, Any]:
    src = dict(ds[c.variable].attrs) if c.variable in ds else {}
    out = {k: src[k] for k in ("units", "standard_name", "long_name") if k in src}
    if "units" not in out and c.units:
        out["units"] = c.units
    return out


def _diagnostic_attrs(ds: xr.Dataset, c: Channel) -> dict[str, Any]:
    """Attributes of a decoder variable: names from the dataset when it has the variable, units
    from the decoder (the units its values are in) or else the dataset, and a comment."""
    out = _var_attrs(ds, c)
    if c.units:
        out["units"] = c.units
    out["comment"] = DECODER_COMMENT
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
    if native:
        grid = fc.model_grid
        sdims, scoords = _grid_coords(grid)
    else:
        grid = ctx.data_grid
        sdims = ctx.data_dims
        if isinstance(grid, HealpixGrid):
            _, scoords = _grid_coords(grid)
        else:
            scoords = {d: ctx.ds[d] for d in sdims}
    sshape = tuple(grid.shape)
    lead_dims: tuple[str, ...] = ("time", "prediction_timedelta") + (
        ("member",) if members is not None else ()
    )
    lead_shape = (len(inits), len(leads)) + ((members,) if members is not None else ())
    variables: dict[str, dict[str, Any]] = {}
    for i, c in enumerate(fc.channels["targets"]):
        v = variables.setdefault(c.variable, {"levels": [], "channels": [], "attrs": _var_attrs(ctx.ds, c)})
        v["levels"].append(c.level)
        v["channels"].append(i)
    n_targets = len(fc.channels["targets"])
    for j, c in enumerate(fc.channels.get("diagnostics", [])):  # after the prognostics, as Forecaster.decode
        if c.variable in variables:
            raise ConfigError(
                f"variable {c.variable!r} is both a model output and diagnosed by a decoder; drop that decoder."
            )
        variables[c.variable] = {
            "levels": [None],
            "channels": [n_targets + j],
            "attrs": _diagnostic_attrs(ctx.ds, c),
        }
    for name, v in variables.items():
        if any(lv is None for lv in v["levels"]):
            if len(v["levels"]) > 1:
                raise ConfigError(
                    f"variable {name!r} appears both with and without a level among the model outputs."
                )
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
        "time": (
            "time",
            inits.values,
            {"standard_name": "forecast_reference_time", "long_name": "initial time"},
        ),
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
        coords["member"] = (
            "member",
            np.arange(members),
            {"long_name": "ensemble member", "standard_name": "realization"},
        )
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
                    v["attrs"]["atmos_predicted_levels"] = [level_label(lv) for lv in v["levels"]]
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
        "valid_time": {
            "units": "hours since 1970-01-01",
            "calendar": "proleptic_gregorian",
            "dtype": "int64",
        },
    }
    for name in lay.variables:
        enc[name] = {"dtype": "float32"}
    return enc


# =============================================================================================
# the driver
# =============================================================================================


def _open_data(data: Any, fc: Forecaster, units: Mapping[str, str] | None = None) -> xr.Dataset:
    from atmos.io.open import open_dataset

    ds = open_dataset(data, units=units)  # canonical layout (a Dataset is only canonicalized)
    # decoder variables are kept (never read) so that their attributes can be copied to the forecast
    keep = [
        v
        for v in ds.data_vars
        if v
        in set(fc.required_variables)
        | {c.variable for c in fc.channels["forcings"]}
        | {c.variable for c in fc.channels.get("diagnostics", [])}
    ]
    return ds[keep] if keep else ds


def _resolve_model(
    model: Any, data: Any, stats: xr.Dataset | None, device: str, decoders: Any = None
) -> Forecaster:
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
            model,
            stats,
            data=data if isinstance(data, xr.Dataset) else None,
            device=device,
            decoders=decoders,
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
        raise ConfigError(
            f"days={days} is not a whole number of output steps of {out_step}; choose a multiple."
        )
    return round(n) + 1


def _json_safe(x: Any) -> Any:
    if isinstance(x, (str, int, float, bool)) or x is None:
        return x
    if isinstance(x, (list, tuple)):
        return [_json_safe(v) for v in x]
    if isinstance(x, dict):
        return {str(k): _json_safe(v) for k, v in x.items()}
    return str(x)


# -- resume: is it the same model? ------------------------------------------------------------------
# Forecast stores record ``atmos_checkpoint_sha256`` = weights_hash(model) (HASH_METHOD, in
# ``atmos_checkpoint_hash``). Stores written before that record, for models loaded from a checkpoint
# folder, a SHA-256 of the weights *file*; such a hash is upgraded when the file it names is still
# there (the file's hash matches, so its weights are read and weights-hashed). Otherwise resume refuses
# with a message saying so.


def _file_sha256(path: Path) -> str:
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _upgrade_legacy_hash(sha: Any, folder: Any) -> Any:
    """``weights_hash`` of the checkpoint in ``folder`` when ``sha`` is the old hash of its weights file."""
    from safetensors.torch import load_file

    from atmos.models.checkpoint import CheckpointMeta, find_checkpoint, weights_hash

    try:
        ckpt = find_checkpoint(Path(str(folder)))
        if not isinstance(sha, str) or ckpt is None:
            return sha
        wfile = CheckpointMeta.read(ckpt).model_file(ckpt)
        if _file_sha256(wfile) != sha:
            return sha
        return weights_hash(load_file(str(wfile)))
    except (OSError, ValueError, AtmosError):  # not there any more, or not readable: keep what is recorded
        return sha


def _same_model(prev: Mapping[str, Any], at: Mapping[str, Any]) -> bool:
    """Whether a store's recorded model (``prev`` attrs) is the model now (``at`` attrs)."""
    want, got = prev.get("atmos_checkpoint_sha256"), at["atmos_checkpoint_sha256"]
    if want == got:
        return True
    if prev.get("atmos_checkpoint_hash") == HASH_METHOD:
        return False
    return any(
        _upgrade_legacy_hash(want, folder) == got
        for folder in {prev.get("atmos_checkpoint"), at.get("atmos_checkpoint")}
        if folder
    )


def _decoder_identity(d: Mapping[str, Any], legacy: bool = False) -> dict[str, Any]:
    """What identifies an attached decoder on resume: its variables and weights hash (not its path)."""
    sha = _upgrade_legacy_hash(d.get("sha256"), d.get("checkpoint")) if legacy else d.get("sha256")
    return {"variables": d.get("variables"), "sha256": sha}


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
    fc = _resolve_model(model, data, stats, device, decoders)
    if data is None:
        data = _default_data(fc)
    inits = parse_init(init)
    out_step = fc.step if step is None else _as_timedelta(step, "step")
    ratio = out_step / fc.step
    if abs(ratio - round(ratio)) > 1e-9 or round(ratio) < 1:
        raise ConfigError(f"the output step {out_step} must be a multiple of the model's step {fc.step}.")
    every = round(ratio)
    n_lead = _n_leads(fc, days, steps, out_step)
    if members is not None and (
        isinstance(members, bool) or not isinstance(members, (int, np.integer)) or members < 1
    ):
        raise ConfigError(f"members must be an integer >= 1, got {members!r}.")
    pert = Perturbation(float(perturb), perturb_length_scale)
    if pert.scale > 0 and (members or 1) < 2:
        raise ConfigError("perturb > 0 needs an ensemble: pass members >= 2 (--members N).")
    if resume and out is None:
        raise ConfigError("resume=True needs the store to complete: pass out= (--out).")
    batch = members or 1

    ds = _open_data(data, fc, assume_units)
    ctx = fc._context(ds, np.datetime64(inits[0].to_datetime64(), "ns"), forcings)
    for t0 in inits:  # every initial time is checked before anything is written
        fc.check_init(ctx.data_times, t0)
    leads = (np.arange(n_lead) * out_step.to_timedelta64()).astype("timedelta64[ns]")
    lay = _layout(fc, ctx, inits, leads, members, native=False)
    native_lay = _layout(fc, ctx, inits, leads, members, native=True) if native_out is not None else None
    for path, lo in ((out, lay), (native_out, native_lay)):
        if path is not None:  # uncompressed float32 size against the free space
            check_writable(path, "the forecast", nbytes=_nbytes(lo), hint="Choose another --out",
                           space_hint="Shorten --days, pass a coarser --step, or choose another --out")

    from atmos._version import __version__

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
        "decoders": [
            {"variables": p["variables"], "checkpoint": p["checkpoint"], "sha256": p["sha256"]}
            for p in fc.decoder_provenance
        ],
    }
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
        "atmos_rollout_config": json.dumps(config),
    }
    data_note = ctx.ds.attrs.get("notes") or ctx.ds.attrs.get("title")
    if data_note:
        attrs["atmos_data_notes"] = str(data_note)
    native_attrs = {**attrs, "title": f"atmos forecast on the model's native grid: {fc.name}"}

    from atmos.rollout.writer import ForecastWriter, _quiet_zarr_ctx, read_progress

    def open_writer(path: Path, lo: _Layout, at: dict[str, Any]) -> ForecastWriter:
        if resume and path.exists():
            prev = read_progress(path)
            old = json.loads(prev.get("atmos_rollout_config", "{}"))
            old.setdefault("decoders", [])  # stores written before decoders existed had none
            # the model and the decoders are identified by their weights hash, not by where they were
            # loaded from: the same weights from a checkpoint folder or in memory resume each other
            legacy = prev.get("atmos_checkpoint_hash") != HASH_METHOD
            old["decoders"] = [_decoder_identity(d, legacy) for d in old["decoders"]]
            now = {**config, "decoders": [_decoder_identity(d) for d in config["decoders"]]}
            diff = {k: (old.get(k), v) for k, v in now.items() if old.get(k) != v and k not in ("data", "model")}
            if not _same_model(prev, at):
                diff["checkpoint_sha256"] = (
                    prev.get("atmos_checkpoint_sha256"),
                    at["atmos_checkpoint_sha256"],
                )
                if prev.get("atmos_checkpoint_hash") != HASH_METHOD:
                    diff["checkpoint_sha256"] = (
                        f"{prev.get('atmos_checkpoint_sha256')} (a hash of the weights file, written by atmos "
                        f"before {HASH_METHOD!r}; it is recognised only when the model is loaded from that "
                        "checkpoint folder: pass --model CHECKPOINT)",
                        at["atmos_checkpoint_sha256"],
                    )
            if diff:
                detail = "; ".join(f"{k}: {a!r} in the store, {b!r} now" for k, (a, b) in diff.items())
                raise ConfigError(
                    f"cannot resume {str(path)!r}: it was written with different settings ({detail}). Rerun with "
                    "the original arguments, or pass --overwrite to start over."
                )
            w = ForecastWriter.open(path)
            for i, k, reason in w.repaired:
                warnings.warn(
                    f"{str(path)!r}: initial time #{i} has a hole at lead {k} ({reason}); --resume rewrites "
                    f"leads {k}..{n_lead - 1} of it.",
                    UserWarning,
                    stacklevel=3,
                )
            return w
        tpl = _dataset_from_layout(lo, {n: _lazy_nan(v["shape"]) for n, v in lo.variables.items()}, at)
        return ForecastWriter.create(path, tpl, overwrite=overwrite, encoding=_encoding(lo))

    created: list[ForecastWriter] = []  # stores this call made (not resumed ones)

    def open_new(path: Path, lo: _Layout, at: dict[str, Any]) -> ForecastWriter:
        resumed = resume and path.exists()
        w = open_writer(path, lo, at)
        if not resumed:
            created.append(w)
        return w

    main_w = open_new(Path(out), lay, attrs) if out is not None else None
    try:
        native_w = open_new(Path(native_out), native_lay, native_attrs) if native_lay is not None else None
    except BaseException:
        if main_w is not None:
            main_w.discard() if main_w in created else main_w.close()
        raise
    writers = [w for w in (main_w, native_w) if w is not None]
    mem = (
        None
        if main_w is not None
        else {n: np.full(v["shape"], np.nan, np.float32) for n, v in lay.variables.items()}
    )
    ens = members is not None

    bar = None
    if progress:
        from tqdm.auto import tqdm

        done0 = sum(main_w.completed) if main_w is not None else 0
        bar = tqdm(
            total=len(inits) * n_lead,
            initial=done0,
            unit="lead",
            desc=f"rollout {fc.name}",
            dynamic_ncols=True,
        )
    status = None
    failed = False
    stack = contextlib.ExitStack()
    stack.enter_context(_sigterm_as_interrupt())
    last: tuple[int, int, Any] | None = None  # (init index, lead, state at that lead)
    try:
        for i, t0 in enumerate(inits):
            start = min(w.completed[i] for w in writers) if writers else 0
            if mem is None and start >= n_lead:
                continue
            if mem is not None:
                start = 0
            state = _load_state(main_w, i, start - 1, fc, ctx, t0) if start > 0 else None
            k_state = start - 1 if state is not None else 0
            if state is None:
                state = fc.encode(
                    ds, t0, members=batch, perturbation=pert, seed=int(seed) + i, forcings=forcings, context=ctx
                )
            for k in range(k_state, n_lead):
                if k > k_state:
                    for _ in range(every):
                        state = fc.advance(state)
                if k < start:
                    last = (i, k, state)
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
                last = (i, k, state)
                if bar is not None:
                    bar.update(1)
                if callback is not None:
                    callback(i, k)
    except KeyboardInterrupt:
        status = "interrupted"
        if main_w is not None and last is not None:
            _save_state(main_w, writers, *last)
        raise
    except BaseException as err:
        status, failed = f"failed: {err}", True
        raise
    finally:
        stack.close()
        if bar is not None:
            bar.close()
        for w in writers:
            if failed and w in created and not any(w.completed):
                w.discard()  # nothing written: leave nothing behind, the corrected rerun starts clean
            else:
                w.close(status)  # a failed store is replaced by a plain rerun (see ForecastWriter.create)
    if main_w is not None:
        (Path(out) / _STATE_FILE).unlink(missing_ok=True)
        with _quiet_zarr_ctx():
            return xr.open_zarr(str(out), consolidated=True)
    return _dataset_from_layout(lay, mem, {**attrs, "atmos_status": "complete"})


#: The model state of an interrupted rollout, inside the store (zarr ignores the file).
_STATE_FILE = "atmos_resume_state.pt"


def _save_state(main_w: Any, writers: list[Any], i: int, k: int, state: Any) -> None:
    """Save the state at the last lead that every store holds, so that ``--resume`` continues from it."""
    import torch

    if any(w.completed[i] != k + 1 for w in writers):
        return  # the stores disagree (e.g. the native one is behind): resume recomputes
    payload = {
        "init_index": int(i),
        "lead": int(k),
        "step": int(state.step),
        "time": str(np.datetime64(state.time, "ns")),
        "history": state.history.detach().cpu(),
        "carry": state.carry,
        "diagnostics": state.diagnostics,
    }
    path = Path(main_w.path) / _STATE_FILE
    tmp = path.with_name(f".{_STATE_FILE}.{os.getpid()}")
    try:
        torch.save(payload, tmp)
        os.replace(tmp, path)
    except Exception:  # a state that cannot be saved only costs recomputation on resume
        tmp.unlink(missing_ok=True)


def _load_state(main_w: Any, i: int, k: int, fc: Forecaster, ctx: Any, t0: pd.Timestamp) -> Any:
    """The saved state at lead ``k`` of init ``i``, or None (no file, another lead, unreadable)."""
    import torch

    from atmos.rollout.engine import RolloutState

    if main_w is None:
        return None
    path = Path(main_w.path) / _STATE_FILE
    if not path.is_file():
        return None
    try:
        p = torch.load(path, map_location=fc.device, weights_only=True)
    except Exception:  # unreadable: recompute from the initial time
        return None
    if p.get("init_index") != i or p.get("lead") != k:
        return None
    return RolloutState(
        history=p["history"],
        time=np.datetime64(p["time"], "ns"),
        init=np.datetime64(pd.Timestamp(t0).to_datetime64(), "ns"),
        step=int(p["step"]),
        carry=p["carry"],
        context=ctx,
        diagnostics=p["diagnostics"],
    )


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM (what SLURM sends at a time limit, on preemption and on scancel) ends the rollout
    like Ctrl-C: the stores record ``interrupted`` and their progress, and ``--resume`` continues."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    old = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)


def _lazy_nan(shape: tuple[int, ...]):
    import dask.array as da

    # one dask chunk: the template is never computed (to_zarr(compute=False) writes metadata only),
    # so a graph of one task per zarr chunk would only cost time (minutes for 100k leads)
    return da.full(shape, np.nan, dtype=np.float32, chunks=shape)


def _nbytes(lay: _Layout) -> int:
    return int(sum(4 * int(np.prod(v["shape"])) for v in lay.variables.values()))
