"""The Forecaster's channel tables and model grid, from checkpoint meta or from statistics.

A channel table maps each group (``inputs``, ``targets``, ``forcings``, ``statics``) to
its :class:`atmos.channels.Channel` records (names, levels, units, normalization
statistics). The model grid is the :class:`atmos.grids.Grid` the model runs on.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import xarray as xr
from torch import nn

from atmos.channels import Channel, split_name
from atmos.errors import ConfigError, DataError, SourceError
from atmos.grids import Grid, HealpixGrid, LatLonGrid, grid_from_dict
from atmos.io.forcings import DERIVED_FORCINGS
from atmos.io.stats import safe_std
from atmos.models.base import Backbone

__all__ = [
    "GROUPS",
    "channels_from_meta",
    "check_model",
    "channels_from_stats", "grid_latlon", "model_grid", "model_latlon"]

#: The channel groups of a table, in model order.
GROUPS = ("inputs", "targets", "forcings", "statics")


def _meta_channel(c: Mapping[str, Any]) -> Channel:
    derived = c.get("source") == "derived"
    mean, std = c.get("mean"), c.get("std")
    if not derived and (mean is None or std is None):
        raise SourceError(f"checkpoint channel {c['name']!r} has no normalization statistics (mean/std).")
    return Channel(
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


def channels_from_meta(meta: Mapping[str, Any]) -> dict[str, list[Channel]]:
    """The channel table of a checkpoint (its ``data_schema``).

    Raises
    ------
    SourceError
        No ``data_schema`` (not written by ``atmos train``), or a channel without statistics.
    """
    schema = meta.get("data_schema")
    if not schema or "groups" not in schema:
        raise SourceError(
            "checkpoint.json has no 'data_schema' (channel table); it was not written by atmos train."
        )
    return {g: [_meta_channel(c) for c in schema["groups"].get(g, [])] for g in GROUPS}


def _stats_channel(name: str, residual: bool, stats: xr.Dataset, ds: xr.Dataset | None) -> Channel:
    from atmos.io.stats import stat_values

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
    units = stats[var].attrs.get("units") or (ds[var].attrs.get("units") if ds is not None and var in ds else None)
    return Channel(
        name, var, lev, units, "dataset",
        mean=float(np.ravel(m.values)[0]), std=float(np.ravel(s.values)[0]), residual_std=rs,
    )


def channels_from_stats(model: nn.Module, stats: xr.Dataset, ds: xr.Dataset | None) -> dict[str, list[Channel]]:
    """The channel table of an in-memory model from statistics (:func:`atmos.io.stats.compute_stats`).

    Raises
    ------
    DataError
        The statistics lack a variable of the model's schema.
    """
    schema = model.schema
    return {
        "inputs": [_stats_channel(n, True, stats, ds) for n in schema.inputs],
        "targets": [_stats_channel(n, True, stats, ds) for n in schema.outputs],
        "forcings": [_stats_channel(n, False, stats, ds) for n in schema.forcings],
        "statics": [_stats_channel(n, False, stats, ds) for n in schema.statics],
    }


def _grid_from_schema(model: nn.Module) -> Grid:
    sg = dict(getattr(model.schema, "grid", {}) or {})
    if sg.get("type") == "healpix":
        return HealpixGrid(int(sg["nside"]))
    if sg.get("type") == "latlon":
        nlat, nlon = (int(v) for v in sg["shape"])
        return LatLonGrid.equiangular(nlat, nlon, poles=bool(sg.get("poles", False)))
    raise ConfigError(
        f"cannot tell the model's grid from its schema grid {sg!r}; it must have type 'healpix' (with nside) "
        "or 'latlon' (with shape)."
    )


def model_grid(model: nn.Module, meta_grid: Mapping[str, Any] | None) -> Grid:
    """The grid a model runs on: the checkpoint's ``grid`` when complete, else its schema's grid.

    Raises
    ------
    ConfigError
        The grid cannot be told, or its shape is not the model's ``grid`` shape.
    """
    if (
        meta_grid
        and meta_grid.get("type") in ("latlon", "healpix")
        and (meta_grid.get("type") == "healpix" or "lat" in meta_grid)
    ):
        g = grid_from_dict(dict(meta_grid))
    else:
        g = _grid_from_schema(model)
    shape = tuple(getattr(model, "grid", ()))
    want = g.face_shape if isinstance(g, HealpixGrid) else g.shape
    if shape and tuple(shape) != tuple(want):
        raise ConfigError(
            f"the model is built for grid shape {shape} but its checkpoint describes {g!r} ({want})."
        )
    return g


def model_latlon(grid: Grid) -> tuple[np.ndarray, np.ndarray]:
    """Latitude/longitude of a model grid in tensor layout (``[nlat, nlon]`` or HEALPix faces ``[12, n, n]``)."""
    if isinstance(grid, HealpixGrid):
        return grid.cells_to_faces(grid.lat), grid.cells_to_faces(grid.lon)
    lat, lon = np.meshgrid(grid.lat, grid.lon, indexing="ij")
    return lat, lon


def grid_latlon(grid: Grid) -> tuple[np.ndarray, np.ndarray]:
    """Lat/lon of every point of a data grid in its own layout (``[nlat, nlon]`` or ``[npix]``)."""
    if isinstance(grid, HealpixGrid):
        return grid.lat, grid.lon
    return np.meshgrid(grid.lat, grid.lon, indexing="ij")


def check_model(model: nn.Module, channels: Mapping[str, list[Channel]], normalization: str) -> None:
    """Check a model against its channel table: an atmos Backbone whose schema names these channels.

    Raises
    ------
    ConfigError
        Not a :class:`~atmos.models.base.Backbone`, an unknown ``normalization``, channels that differ
        from the model's schema, or input-only channels (rollout needs inputs == outputs).
    """
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
    schema.check_against(
        {g: [c.name for c in channels[g]] for g in ("inputs", "forcings", "statics")},
        outputs=[c.name for c in channels["targets"]],
        label="the checkpoint's channel table",
    )
    if len(schema.inputs) != len(schema.outputs):
        extra = schema.inputs[len(schema.outputs) :]
        raise ConfigError(
            f"the model has input-only channels {extra}; rollout supports models whose inputs are all "
            "prognostic (inputs == outputs)."
        )
