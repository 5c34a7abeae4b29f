"""The WeatherBench2 layout of a forecast: its variables, dims, coordinates and encoding.

Dims ``time`` (initial time), ``prediction_timedelta`` (lead, 0 included), optional ensemble
dim, then ``level`` and the spatial dims (the data's grid, or the model's native grid);
CF attributes (``forecast_reference_time``, ``forecast_period``, a 2-D ``valid_time``).
The ensemble dim is ``realization`` by default, the name WeatherBench2 reads without options
(its ``ensemble_dim`` default); ``member`` (what atmos wrote before) on request. atmos reads
both (:data:`ENSEMBLE_DIMS`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from atmos.channels import Channel, level_label
from atmos.errors import ConfigError
from atmos.grids import Grid, HealpixGrid
from atmos.rollout.context import DataContext

__all__ = [
    "DECODER_COMMENT",
    "DEFAULT_ENSEMBLE_DIM",
    "ENSEMBLE_DIMS",
    "check_ensemble_dim",
    "Layout",
    "dataset_from_layout",
    "encoding",
    "forecast_layout",
    "grid_coords",
    "lazy_nan",
    "nbytes",
    "split_output",
]

LEAD_UNITS = "hours"

DECODER_COMMENT = (
    "diagnosed by a lightweight decoder from the backbone's latent (atmos.models.decoder); NaN at lead 0"
)


@dataclass(frozen=True)
class Layout:
    """Variables and coordinates of a forecast.

    Attributes
    ----------
    variables : dict
        Name -> ``{"dims", "shape", "levels", "channels", "attrs"}`` (and ``"level_index"`` for
        variables on levels): which channels of a decoded ``[B, C, *grid]`` array make it.
    coords : dict
        Name -> ``(dims, values, attrs)`` (or a DataArray).
    """

    variables: dict[str, dict[str, Any]]
    coords: dict[str, Any]


def grid_coords(grid: Grid) -> tuple[tuple[str, ...], dict[str, Any]]:
    """Spatial dims and CF coordinates of a grid (HEALPix: ``cell`` with xdggs ``cell_ids``)."""
    if isinstance(grid, HealpixGrid):
        lat, lon = grid.centers()
        return ("cell",), {
            "cell_ids": ("cell", grid.cell_ids, grid.xdggs_attrs()),
            "latitude": ("cell", lat, {"units": "degrees_north", "standard_name": "latitude"}),
            "longitude": ("cell", lon, {"units": "degrees_east", "standard_name": "longitude"}),
        }
    return ("latitude", "longitude"), {
        "latitude": ("latitude", grid.lat, {"units": "degrees_north", "standard_name": "latitude", "axis": "Y"}),
        "longitude": ("longitude", grid.lon, {"units": "degrees_east", "standard_name": "longitude", "axis": "X"}),
    }


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


def _spatial(grid_native: Grid, ctx: DataContext, native: bool) -> tuple[Grid, tuple[str, ...], dict[str, Any]]:
    if native:
        sdims, scoords = grid_coords(grid_native)
        return grid_native, sdims, scoords
    grid = ctx.data_grid
    if isinstance(grid, HealpixGrid):
        _, scoords = grid_coords(grid)
    else:
        scoords = {d: ctx.ds[d] for d in ctx.data_dims}
    return grid, ctx.data_dims, scoords


def _variables(channels: Mapping[str, Sequence[Channel]], ds: xr.Dataset) -> dict[str, dict[str, Any]]:
    """Variable -> its levels and channel indices (prognostics, then decoder diagnostics)."""
    variables: dict[str, dict[str, Any]] = {}
    for i, c in enumerate(channels["targets"]):
        v = variables.setdefault(c.variable, {"levels": [], "channels": [], "attrs": _var_attrs(ds, c)})
        v["levels"].append(c.level)
        v["channels"].append(i)
    n_targets = len(channels["targets"])
    for j, c in enumerate(channels.get("diagnostics", [])):  # after the prognostics, as Forecaster.decode
        if c.variable in variables:
            raise ConfigError(
                f"variable {c.variable!r} is both a model output and diagnosed by a decoder; drop that decoder."
            )
        variables[c.variable] = {"levels": [None], "channels": [n_targets + j], "attrs": _diagnostic_attrs(ds, c)}
    return variables


def _shape_variables(
    variables: dict[str, dict[str, Any]], lead_dims: tuple[str, ...], lead_shape: tuple[int, ...],
    sdims: tuple[str, ...], sshape: tuple[int, ...],
) -> None:
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


#: The ensemble dimension names a forecast may be written with (the first is the default).
ENSEMBLE_DIMS: tuple[str, ...] = ("realization", "member")
#: The ensemble dimension written by default: WeatherBench2's ``ensemble_dim`` default.
DEFAULT_ENSEMBLE_DIM = ENSEMBLE_DIMS[0]


def check_ensemble_dim(name: Any) -> str:
    """``name`` if it is one of :data:`ENSEMBLE_DIMS`, else a ConfigError listing them."""
    if name not in ENSEMBLE_DIMS:
        raise ConfigError(
            f"ensemble_dim must be one of {list(ENSEMBLE_DIMS)} (--ensemble-dim), got {name!r}; 'realization' is "
            "what WeatherBench2 reads by default, 'member' the name atmos wrote before."
        )
    return str(name)


def _time_coords(inits: pd.DatetimeIndex, leads: np.ndarray, members: int | None,
                 ensemble_dim: str = DEFAULT_ENSEMBLE_DIM) -> dict[str, Any]:
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
        coords[ensemble_dim] = (
            ensemble_dim,
            np.arange(members),
            {"long_name": "ensemble member", "standard_name": "realization"},
        )
    return coords


def _level_coord(variables: dict[str, dict[str, Any]], ds: xr.Dataset, n_lead_dims: int) -> Any:
    """The ``level`` coordinate: the union of the predicted levels (None without levels)."""
    levels = sorted({lv for v in variables.values() for lv in v["levels"] if lv is not None})
    if not levels:
        return None
    lvl_attrs = dict(ds["level"].attrs) if "level" in ds.coords else {}
    lvl_attrs.setdefault("units", "hPa")
    lvl_attrs.setdefault("long_name", "pressure level")
    lvl_attrs.setdefault("standard_name", "air_pressure")
    lvl_attrs.setdefault("positive", "down")
    lvl_attrs.setdefault("axis", "Z")
    for v in variables.values():
        if v["levels"] and v["levels"][0] is not None:
            # variables share the union of the predicted levels; levels a variable lacks stay NaN
            v["level_index"] = [levels.index(lv) for lv in v["levels"]]
            v["shape"] = v["shape"][:n_lead_dims] + (len(levels),) + v["shape"][n_lead_dims + 1 :]
            if len(v["levels"]) < len(levels):
                v["attrs"]["atmos_predicted_levels"] = [level_label(lv) for lv in v["levels"]]
    return ("level", np.asarray(levels), lvl_attrs)


def forecast_layout(
    channels: Mapping[str, Sequence[Channel]],
    model_grid: Grid,
    ctx: DataContext,
    inits: pd.DatetimeIndex,
    leads: np.ndarray,
    members: int | None,
    native: bool,
    ensemble_dim: str = DEFAULT_ENSEMBLE_DIM,
) -> Layout:
    """Dims, coordinates and attributes of the forecast (data grid, or native model grid).

    Parameters
    ----------
    channels : dict
        The Forecaster's channel table (``targets`` and ``diagnostics`` are laid out).
    inits : pandas.DatetimeIndex ``[N]``
    leads : numpy.ndarray ``[L]`` timedelta64[ns]
    members : int or None
        Ensemble size (None: no ensemble dim).
    ensemble_dim : {"realization", "member"}
        Name of the ensemble dim (:data:`ENSEMBLE_DIMS`).

    Raises
    ------
    ConfigError
        A variable is both predicted and diagnosed, or both with and without a level.
    """
    grid, sdims, scoords = _spatial(model_grid, ctx, native)
    ens = check_ensemble_dim(ensemble_dim)
    lead_dims: tuple[str, ...] = ("time", "prediction_timedelta") + ((ens,) if members is not None else ())
    lead_shape = (len(inits), len(leads)) + ((members,) if members is not None else ())
    variables = _variables(channels, ctx.ds)
    _shape_variables(variables, lead_dims, lead_shape, sdims, tuple(grid.shape))
    coords = _time_coords(inits, leads, members, ens)
    level = _level_coord(variables, ctx.ds, len(lead_dims))
    if level is not None:
        coords["level"] = level
    for k, val in scoords.items():
        coords[k] = val
    return Layout(variables, coords)


def dataset_from_layout(lay: Layout, data: Mapping[str, Any], attrs: Mapping[str, Any]) -> xr.Dataset:
    """The forecast dataset of a layout with ``data[name]`` shaped ``variables[name]["shape"]``."""
    return xr.Dataset(
        {name: (v["dims"], data[name], v["attrs"]) for name, v in lay.variables.items()},
        coords={k: v for k, v in lay.coords.items()},
        attrs=dict(attrs),
    )


def split_output(lay: Layout, arr: np.ndarray, members: bool) -> dict[str, np.ndarray]:
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


def encoding(lay: Layout) -> dict[str, dict[str, Any]]:
    """Zarr encoding: times as int64 hours, every variable float32."""
    enc: dict[str, dict[str, Any]] = {
        "time": {"units": "hours since 1970-01-01", "calendar": "proleptic_gregorian", "dtype": "int64"},
        "prediction_timedelta": {"units": LEAD_UNITS, "dtype": "int64"},
        "valid_time": {"units": "hours since 1970-01-01", "calendar": "proleptic_gregorian", "dtype": "int64"},
    }
    for name in lay.variables:
        enc[name] = {"dtype": "float32"}
    return enc


def lazy_nan(shape: tuple[int, ...]) -> Any:
    """A lazy all-NaN float32 dask array (a store template's data)."""
    import dask.array as da

    # one dask chunk: the template is never computed (to_zarr(compute=False) writes metadata only),
    # so a graph of one task per zarr chunk would only cost time (minutes for 100k leads)
    return da.full(shape, np.nan, dtype=np.float32, chunks=shape)


def nbytes(lay: Layout) -> int:
    """Uncompressed float32 size of the forecast's variables."""
    return int(sum(4 * int(np.prod(v["shape"])) for v in lay.variables.values()))
