"""Regrid xarray Datasets between lat-lon and HEALPix grids (lazily, with dask).

The tensor-level work is done by :class:`atmos.grids.regrid.Regridder`; this module
only moves data between xarray and torch. Weights are built once per call and the
regridder is applied block by block with :func:`xarray.apply_ufunc`, so a dask-backed
dataset stays lazy.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import xarray as xr

from atmos.errors import DataError
from atmos.grids import Grid, HealpixGrid, LatLonGrid
from atmos.io.coords import grid_of, spatial_dims

__all__ = ["regrid", "to_healpix", "to_latlon"]


def _target_coords(grid: Grid) -> tuple[tuple[str, ...], dict[str, Any]]:
    if isinstance(grid, HealpixGrid):
        cell_ids = xr.Variable("cell", grid.cell_ids, attrs=grid.xdggs_attrs())
        lat, lon = grid.centers()
        return ("cell",), {
            "cell_ids": cell_ids,
            "latitude": ("cell", lat, {"units": "degrees_north", "standard_name": "latitude"}),
            "longitude": ("cell", lon, {"units": "degrees_east", "standard_name": "longitude"}),
        }
    return ("latitude", "longitude"), {
        "latitude": ("latitude", grid.lat, {"units": "degrees_north", "standard_name": "latitude", "axis": "Y"}),
        "longitude": ("longitude", grid.lon, {"units": "degrees_east", "standard_name": "longitude", "axis": "X"}),
    }


def regrid(ds: xr.Dataset | xr.DataArray, grid: Grid, method: str = "bilinear") -> xr.Dataset | xr.DataArray:
    """Regrid every spatial variable of ``ds`` to ``grid``.

    Parameters
    ----------
    ds : Dataset or DataArray
        Canonical data (see :func:`atmos.open_dataset`) on a lat-lon or HEALPix grid.
    grid : LatLonGrid or HealpixGrid
        Target grid.
    method : {"bilinear", "conservative", "nearest"}
        Interpolation method (see :class:`atmos.grids.regrid.Regridder`).

    Returns
    -------
    Same type as ``ds``: spatial dims replaced by those of ``grid`` (``cell`` with
    xdggs-compatible ``cell_ids`` attrs for HEALPix), lazy if ``ds`` was. Variables
    without spatial dims are kept unchanged.
    """
    from atmos.grids.regrid import Regridder

    src = grid_of(ds)
    in_dims = spatial_dims(ds)
    out_dims, coords = _target_coords(grid)
    module = Regridder(src, grid, method=method, healpix_layout="cells")
    out_shape = grid.shape

    def _apply(x: np.ndarray) -> np.ndarray:
        t = torch.from_numpy(np.ascontiguousarray(x))
        work = t if t.is_floating_point() else t.to(torch.float64)
        with torch.no_grad():
            y = module(work)
        return y.numpy().astype(x.dtype if np.issubdtype(x.dtype, np.floating) else np.float64, copy=False)

    def _one(da: xr.DataArray) -> xr.DataArray:
        if not set(in_dims) <= set(da.dims):
            return da
        tmp = {d: f"__{d}_out" for d in out_dims}
        out = xr.apply_ufunc(
            _apply,
            da,
            input_core_dims=[list(in_dims)],
            output_core_dims=[[tmp[d] for d in out_dims]],
            dask="parallelized",
            output_dtypes=[da.dtype if np.issubdtype(da.dtype, np.floating) else np.float64],
            dask_gufunc_kwargs={"output_sizes": dict(zip(tmp.values(), out_shape, strict=True))},
            keep_attrs=True,
        )
        return out.rename({v: k for k, v in tmp.items()})

    if isinstance(ds, xr.DataArray):
        out = _one(ds.drop_vars([c for c in ds.coords if set(ds[c].dims) & set(in_dims)]))
        return out.assign_coords(coords)
    drop = [c for c in ds.coords if set(ds[c].dims) & set(in_dims)]
    base = ds.drop_vars(drop)
    out = xr.Dataset({k: _one(v) for k, v in base.data_vars.items()}, attrs=ds.attrs)
    out = out.assign_coords({k: v for k, v in base.coords.items()}).assign_coords(coords)
    out.attrs["atmos_regrid"] = f"{src!r} -> {grid!r} ({method})"
    return out


def to_healpix(ds: xr.Dataset | xr.DataArray, nside: int, method: str = "bilinear", order: str = "nest"):
    """Regrid lat-lon data to a HEALPix grid of ``nside`` (see :func:`regrid`)."""
    return regrid(ds, HealpixGrid(nside, order), method)


def to_latlon(ds: xr.Dataset | xr.DataArray, grid: LatLonGrid | tuple[int, int] | Any, method: str = "bilinear"):
    """Regrid data to a lat-lon grid.

    ``grid`` is a :class:`~atmos.grids.LatLonGrid`, an ``(nlat, nlon)`` tuple
    (equiangular, no poles, like WB2 64x32), or a Dataset whose latitude/longitude
    are used.
    """
    if isinstance(grid, tuple):
        grid = LatLonGrid.equiangular(*grid)
    elif isinstance(grid, xr.Dataset | xr.DataArray):
        grid = grid_of(grid)
    if not isinstance(grid, LatLonGrid):
        raise DataError(
            f"to_latlon expects a LatLonGrid, an (nlat, nlon) tuple or a lat-lon Dataset, got {grid!r}."
        )
    return regrid(ds, grid, method)
