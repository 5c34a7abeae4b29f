"""The grid of a canonical dataset, and its area weights as xarray."""

from __future__ import annotations

import numpy as np
import xarray as xr

from atmos.errors import DataError
from atmos.grids import Grid, HealpixGrid, LatLonGrid

__all__ = ["SPATIAL_DIMS", "area_weights", "global_mean", "grid_of", "spatial_dims"]

SPATIAL_DIMS = {"latlon": ("latitude", "longitude"), "healpix": ("cell",)}


def grid_of(ds: xr.Dataset | xr.DataArray) -> Grid:
    """The :class:`~atmos.grids.LatLonGrid` or :class:`~atmos.grids.HealpixGrid` of a canonical dataset.

    Raises
    ------
    DataError
        If the dataset has neither ``latitude``/``longitude`` coordinates nor a
        HEALPix ``cell`` dimension.
    """
    if "cell" in ds.dims:
        ids = ds["cell_ids"] if "cell_ids" in ds.coords else None
        attrs = ids.attrs if ids is not None else ds.attrs
        level = attrs.get("level")
        scheme = attrs.get("indexing_scheme", "nested")
        if level is None:
            nside = round(np.sqrt(ds.sizes["cell"] / 12))
        else:
            nside = 2 ** int(level)
        if 12 * nside**2 != ds.sizes["cell"]:
            raise DataError(
                f"dimension 'cell' has {ds.sizes['cell']} entries, which is not 12 * nside**2 for "
                f"a power-of-two nside (attrs level={level!r}). Only full-sphere HEALPix grids are supported."
            )
        if ids is not None and not np.array_equal(np.asarray(ids.values), np.arange(ds.sizes["cell"])):
            raise DataError(
                "cell_ids must be 0..npix-1 in order (a full-sphere grid); sort the dataset by cell_ids first."
            )
        return HealpixGrid(nside, "ring" if scheme == "ring" else "nest")
    if "latitude" in ds.coords and "longitude" in ds.coords:
        return LatLonGrid.from_coords(ds["latitude"].values, ds["longitude"].values)
    raise DataError(
        f"no recognisable grid: expected coordinates 'latitude' and 'longitude' or a HEALPix 'cell' "
        f"dimension, found coordinates {sorted(map(str, ds.coords))} and dims {sorted(map(str, ds.dims))}. "
        "Open the data with atmos.open_dataset, which renames lat/lon/lev etc. to canonical names."
    )


def spatial_dims(ds: xr.Dataset | xr.DataArray) -> tuple[str, ...]:
    """Names of the spatial dimensions: ``("latitude", "longitude")`` or ``("cell",)``."""
    return SPATIAL_DIMS["healpix" if isinstance(grid_of(ds), HealpixGrid) else "latlon"]


def area_weights(ds: xr.Dataset | xr.DataArray) -> xr.DataArray:
    """Normalized cell areas of the dataset's grid (summing to 1) as a DataArray on its spatial dims."""
    grid = grid_of(ds)
    dims = spatial_dims(ds)
    coords = {d: ds[d] for d in dims if d in ds.coords}
    return xr.DataArray(grid.area_weights(), dims=dims, coords=coords, name="area_weight")


def global_mean(ds: xr.Dataset | xr.DataArray) -> xr.Dataset | xr.DataArray:
    """Area-weighted mean over the spatial dimensions (WeatherBench2 weights).

    Variables without spatial dimensions are dropped from a Dataset.
    """
    w = area_weights(ds)
    dims = list(w.dims)
    if isinstance(ds, xr.Dataset):
        ds = ds[[k for k, v in ds.data_vars.items() if set(dims) <= set(v.dims)]]
    return ds.weighted(w).mean(dims, keep_attrs=True)
