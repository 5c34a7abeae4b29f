"""Apply a trained downscaling head to xarray data (inference; above io and models).

The data-side helpers (conservative coarsening, interpolation baselines, channel
selection) live in :mod:`atmos.io.downscale`; the head itself is the tensor-only
:class:`atmos.models.heads.DownscalingHead`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
import xarray as xr

from atmos.errors import DataError, SourceError
from atmos.io.downscale import latlon_grid_of, channel_array

__all__ = ["downscale", "load_downscaler"]


def load_downscaler(
    path: str | os.PathLike, map_location: str = "cpu"
) -> tuple[torch.nn.Module, Mapping[str, Any]]:
    """Load a trained downscaling head from a run or checkpoint folder.

    Returns ``(model, meta)`` with the model in eval mode and ``meta`` the parsed
    ``checkpoint.json`` (a :class:`~atmos.models.checkpoint.CheckpointMeta` with
    ``task == "downscale"``), built by :func:`atmos.models.checkpoint.load_model`.

    Raises
    ------
    SourceError
        No checkpoint at ``path``.
    DataError
        The checkpoint is not a downscaling checkpoint.
    """
    import atmos.models.heads  # noqa: F401  (registers "downscale")
    from atmos.models.checkpoint import CheckpointMeta, find_checkpoint, load_model

    if not Path(os.path.expanduser(os.fspath(path))).exists():
        raise SourceError(
            f"--model {str(path)!r} does not exist; pass a downscaling run or checkpoint folder written by "
            "atmos.train.downscale.fit_downscaler."
        )
    folder = find_checkpoint(Path(os.path.expanduser(os.fspath(path))))
    task = CheckpointMeta.read(folder).task if folder is not None else None
    if folder is not None and task != "downscale":
        raise DataError(
            f"checkpoint {str(folder)!r} is not a downscaling model (task={task!r}); "
            "train one with atmos.train.downscale.fit_downscaler."
        )
    return load_model(path, map_location)


def downscale(
    ds: xr.Dataset,
    model: Any,
    meta: Mapping[str, Any] | None = None,
    *,
    batch_size: int = 64,
) -> xr.Dataset:
    """Downscale a coarse dataset with a trained :class:`~atmos.models.heads.DownscalingHead`.

    Parameters
    ----------
    ds : Dataset
        Coarse data on the model's coarse grid (e.g. from :func:`coarsen_conservative`)
        holding the model's channels (``variable`` or ``variable_level``); any leading
        dims (``time``, ...) are kept.
    model : path or nn.Module
        A run/checkpoint folder written by :func:`atmos.train.downscale.fit_downscaler`,
        or a loaded head (then ``meta`` with ``normalization`` is required).
    meta : mapping, optional
        ``checkpoint.json`` contents when ``model`` is a module.
    batch_size : int
        Samples per forward pass.

    Returns
    -------
    Dataset
        The model's channels on the fine grid, in physical units (pressure-level
        channels are gathered back into their variable along ``level``); computed
        eagerly.

    Raises
    ------
    DataError
        ``ds`` is not on the model's coarse grid, or lacks a channel.
    """
    if isinstance(model, str | os.PathLike):
        model, meta = load_downscaler(model)
    if meta is None or "normalization" not in meta:
        raise DataError("downscale(ds, module) needs meta=checkpoint.json contents with 'normalization'.")
    cfg = model.config
    grid = latlon_grid_of(ds, "downscale")
    if grid.shape != model.coarse_grid.shape or not (
        np.allclose(grid.lat, model.coarse_grid.lat, atol=1e-6)
        and np.allclose(grid.lon, model.coarse_grid.lon, atol=1e-6)
    ):
        raise DataError(
            f"downscale: the data are on {grid!r} (lat {grid.lat[0]:.4g}..{grid.lat[-1]:.4g}, lon "
            f"{grid.lon[0]:.4g}..), but the model expects its coarse grid {model.coarse_grid!r} (lon starting at "
            f"{model.coarse_grid.lon[0]:.4g}). Coarsen fine data first: on the command line "
            f"`atmos downscale INPUT --coarsen ...`, in Python coarsen_conservative(ds, {cfg.factor})."
        )
    norm = meta["normalization"]
    arrays = [channel_array(ds, name) for name in cfg.channels]
    lead_dims = [d for d in arrays[0].dims if d not in ("latitude", "longitude")]
    stack = []
    for name, da in zip(cfg.channels, arrays, strict=True):
        if sorted(d for d in da.dims if d not in ("latitude", "longitude")) != sorted(lead_dims):
            raise DataError(
                f"channel {name!r} has dims {da.dims}, expected {(*lead_dims, 'latitude', 'longitude')}."
            )
        a = np.asarray(da.transpose(*lead_dims, "latitude", "longitude").values, dtype=np.float32)
        stack.append((a - norm[name]["mean"]) / norm[name]["std"])
    x = np.stack(stack, axis=-3)
    lead_shape = x.shape[:-3]
    xf = torch.from_numpy(np.ascontiguousarray(x.reshape(-1, *x.shape[-3:])))
    param = next(model.parameters())
    outs = []
    with torch.no_grad():
        for i in range(0, xf.shape[0], batch_size):
            outs.append(model(xf[i : i + batch_size].to(param)).float().cpu())
    y = torch.cat(outs).numpy().reshape(*lead_shape, len(cfg.channels), *model.fine_shape)

    fine = model.fine_grid
    coords: dict[str, Any] = {d: ds[d] for d in lead_dims if d in ds.coords}
    coords["latitude"] = (
        "latitude",
        fine.lat,
        {"units": "degrees_north", "standard_name": "latitude", "axis": "Y"},
    )
    coords["longitude"] = (
        "longitude",
        fine.lon,
        {"units": "degrees_east", "standard_name": "longitude", "axis": "X"},
    )
    fields: dict[str, list[tuple[float | None, xr.DataArray]]] = {}
    for k, name in enumerate(cfg.channels):
        vals = y[..., k, :, :] * norm[name]["std"] + norm[name]["mean"]
        da = xr.DataArray(vals.astype(np.float32), dims=(*lead_dims, "latitude", "longitude"), coords=coords)
        src = channel_array(ds, name)
        da.attrs = {k2: v for k2, v in src.attrs.items() if k2 in ("units", "long_name", "standard_name")}
        level = norm[name].get("level")
        fields.setdefault(norm[name].get("variable", name), []).append((level, da))
    out = {}
    for var, parts in fields.items():
        if len(parts) == 1 and parts[0][0] is None:
            out[var] = parts[0][1]
        else:
            levels = [p[0] for p in parts]
            da = xr.concat([p[1] for p in parts], dim=xr.DataArray(levels, dims="level", name="level"))
            out[var] = da.transpose(*lead_dims, "level", "latitude", "longitude")
    res = xr.Dataset(out, attrs={k: v for k, v in ds.attrs.items() if not k.startswith("atmos_")})
    res.attrs["atmos_downscale"] = f"DownscalingHead x{cfg.factor}: {model.coarse_grid!r} -> {fine!r}"
    return res
