"""Downscaling with xarray: conservative coarsening, interpolation baselines, trained heads.

>>> fine = atmos.open_dataset("speedy-world-val")                      # doctest: +SKIP
>>> coarse = coarsen_conservative(fine, 4)                             # 64x32 -> 16x8
>>> bicubic = interpolate_baseline(coarse, fine, method="bicubic")     # back to 64x32
>>> head = downscale(coarse, "runs/downscale")                         # a trained DownscalingHead

The coarse grid of a factor-``f`` coarsening is the grid of ``f x f`` blocks of the
fine grid (:func:`atmos.models.heads.coarse_grid`): on an equiangular grid without
pole points (WB2 64x32) every coarse cell is exactly the union of its fine cells, and
its value is their area-weighted mean, so the area-weighted global mean is conserved.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import xarray as xr

from atmos.channels import Channel
from atmos.errors import DataError, GridError
from atmos.grids.latlon import LatLonGrid, coarse_grid
from atmos.io.coords import grid_of

__all__ = ["channel_array", "coarsen_conservative", "interpolate_baseline"]

_PAD = 8  # cells of spherical padding around the coarse field before the spline fit


def latlon_grid_of(ds: xr.Dataset | xr.DataArray, what: str) -> LatLonGrid:
    """The lat-lon grid of ``ds``; a DataError naming ``what`` needs it (and how to regrid) otherwise."""
    grid = grid_of(ds)
    if not isinstance(grid, LatLonGrid):
        raise DataError(
            f"{what} needs data on a lat-lon grid, got {grid!r}; regrid it first with "
            "atmos.io.regrid.to_latlon(ds, (nlat, nlon))."
        )
    return grid


def coarsen_conservative(ds: xr.Dataset | xr.DataArray, factor: int) -> xr.Dataset | xr.DataArray:
    """Coarsen lat-lon data by ``factor`` in each direction, conserving area integrals.

    Each coarse cell is the area-weighted mean of the ``factor x factor`` fine cells it
    covers (first-order conservative regridding with
    :class:`atmos.grids.regrid.LatLonToLatLon`), so the area-weighted global mean of
    every field is unchanged and a constant field stays that constant.

    Parameters
    ----------
    ds : Dataset or DataArray
        Canonical lat-lon data ``[..., latitude, longitude]`` (dask stays lazy).
    factor : int
        Must divide the numbers of latitudes and longitudes (e.g. 4: 64x32 -> 16x8).

    Returns
    -------
    Same type as ``ds`` on :func:`atmos.models.heads.coarse_grid` ``(grid, factor)``,
    with attrs ``atmos_coarsen_factor`` and ``atmos_fine_grid`` (the fine lat/lon, so
    the fine grid can be recovered).

    Raises
    ------
    DataError, GridError
        Not a lat-lon grid, or a factor that does not divide the grid.
    """
    from atmos.io.regrid import regrid

    grid = latlon_grid_of(ds, "coarsen_conservative")
    if isinstance(factor, bool) or not isinstance(factor, int | np.integer):
        raise GridError(f"factor must be an integer >= 1, got {factor!r}.")
    target = coarse_grid(grid, int(factor))
    out = regrid(ds, target, method="conservative")
    out.attrs["atmos_coarsen_factor"] = int(factor)
    out.attrs["atmos_regrid"] = f"conservative coarsening x{int(factor)} of {grid!r}"
    return out


def _fine_grid_of(fine: Any) -> LatLonGrid:
    if isinstance(fine, LatLonGrid):
        return fine
    if isinstance(fine, tuple) and len(fine) == 2:
        return LatLonGrid.equiangular(int(fine[0]), int(fine[1]))
    if isinstance(fine, xr.Dataset | xr.DataArray):
        return latlon_grid_of(fine, "interpolate_baseline")
    raise GridError(
        f"fine_grid must be a LatLonGrid, an (nlat, nlon) tuple or a lat-lon Dataset, got {type(fine).__name__}."
    )


def _fractional_index(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Position of ``dst`` values in the index space of ascending ``src`` (linear beyond the ends)."""
    idx = np.interp(dst, src, np.arange(src.size, dtype=np.float64))
    lo, hi = dst < src[0], dst > src[-1]
    idx[lo] = (dst[lo] - src[0]) / (src[1] - src[0])
    idx[hi] = src.size - 1 + (dst[hi] - src[-1]) / (src[-1] - src[-2])
    return idx


def _pole_pad_np(x: np.ndarray, p: int, lat: np.ndarray) -> np.ndarray:
    """Pad ``[N, nlat, nlon]`` by ``p`` rows across each pole.

    Row ``k`` beyond a pole is the row ``k`` (``k + 1`` when the grid has a pole
    point, so the pole is not repeated) inside it, rolled by half the longitudes.
    """
    nlon = x.shape[-1]
    if nlon % 2:
        raise GridError(f"padding across the poles needs an even number of longitudes, got {nlon}.")
    s0 = 1 if np.isclose(lat[0], -90.0) else 0
    n0 = 1 if np.isclose(lat[-1], 90.0) else 0
    nlat = x.shape[-2]
    if nlat < p + max(s0, n0):
        raise GridError(f"grid with {nlat} latitudes is too small to pad by {p} rows.")
    south = np.roll(x[..., s0 : s0 + p, :][..., ::-1, :], nlon // 2, axis=-1)
    north = np.roll(x[..., nlat - n0 - p : nlat - n0, :][..., ::-1, :], nlon // 2, axis=-1)
    return np.concatenate([south, x, north], axis=-2)


def _interp_array(x: np.ndarray, src: LatLonGrid, dst: LatLonGrid, order: int) -> np.ndarray:
    """``[..., nlat_src, nlon_src]`` -> ``[..., nlat_dst, nlon_dst]`` by a spline of ``order``.

    The spline coefficients are computed exactly periodic in longitude
    (``spline_filter1d(mode="grid-wrap")``) and, in latitude, on the array padded
    across the poles; they are then wrapped by a few columns so that
    ``map_coordinates`` (without its own prefilter) can evaluate them anywhere.
    """
    from scipy.ndimage import map_coordinates, spline_filter1d

    lead = x.shape[:-2]
    flat = np.asarray(x, dtype=np.float64).reshape(-1, *src.shape)
    p = min(_PAD, src.nlat - 1)
    coef = _pole_pad_np(flat, p, src.lat)
    if order > 1:
        coef = spline_filter1d(coef, order, axis=-1, mode="grid-wrap")
        coef = spline_filter1d(coef, order, axis=-2, mode="mirror")
    q = order + 1  # columns of wrap-around needed to evaluate the spline support
    coef = np.concatenate([coef[..., -q:], coef, coef[..., :q]], axis=-1)
    dlon = 360.0 / src.nlon
    jj = ((dst.lon - src.lon[0]) % 360.0) / dlon + q  # in [q, q + nlon)
    ii = _fractional_index(src.lat, dst.lat) + p
    gi, gj = np.meshgrid(ii, jj, indexing="ij")
    coords = np.stack([gi.ravel(), gj.ravel()])
    out = np.empty((flat.shape[0], dst.nlat * dst.nlon))
    for n in range(flat.shape[0]):
        out[n] = map_coordinates(coef[n], coords, order=order, mode="nearest", prefilter=False)
    return out.reshape(*lead, *dst.shape)


def interpolate_baseline(
    coarse_ds: xr.Dataset | xr.DataArray, fine_grid: Any, method: str = "bicubic"
) -> xr.Dataset | xr.DataArray:
    """Interpolate coarse lat-lon data to a finer lat-lon grid (the downscaling baselines).

    ``"bilinear"`` is linear, ``"bicubic"`` a cubic B-spline (interpolating: it passes
    through the coarse values at the coarse centres), both separable in the coarse
    grid's index space (``scipy.ndimage.map_coordinates`` with ``order=1`` / ``3``).
    The coarse values are treated as point values at the coarse cell centres (as is
    usual for these baselines), so neither baseline conserves the cell means.

    Sphere handling: the spline is exactly periodic in longitude, and in latitude it
    is fitted on the array extended by up to 8 rows across each pole, continuing each
    meridian over the pole: the row ``k`` cells beyond a pole is the ``k``-th row
    inside it shifted by 180 degrees of longitude (the same latitude circle seen from
    the other side; a pole point, if the grid has one, is not repeated). Fine points
    poleward of the outermost coarse row are therefore interpolated between that row
    and its across-pole image, not extrapolated, and a field that is smooth across
    the pole stays smooth. This is exact for scalars; vector components (u, v) change
    sign across the pole, which the baseline ignores.

    Parameters
    ----------
    coarse_ds : Dataset or DataArray
        Coarse lat-lon data (even number of longitudes).
    fine_grid : LatLonGrid, (nlat, nlon) tuple, or lat-lon Dataset
        Target grid.
    method : {"bilinear", "bicubic"}

    Returns
    -------
    Same type as ``coarse_ds`` on ``fine_grid`` (computed eagerly; float64 math,
    the input dtype is kept for floating inputs).
    """
    orders = {"bilinear": 1, "bicubic": 3}
    if method not in orders:
        raise DataError(f"interpolate_baseline: method must be 'bilinear' or 'bicubic', got {method!r}.")
    src = latlon_grid_of(coarse_ds, "interpolate_baseline")
    dst = _fine_grid_of(fine_grid)
    dims = ("latitude", "longitude")
    coords = {
        "latitude": (
            "latitude",
            dst.lat,
            {"units": "degrees_north", "standard_name": "latitude", "axis": "Y"},
        ),
        "longitude": (
            "longitude",
            dst.lon,
            {"units": "degrees_east", "standard_name": "longitude", "axis": "X"},
        ),
    }

    def _one(da: xr.DataArray) -> xr.DataArray:
        if not set(dims) <= set(da.dims):
            return da
        dtype = da.dtype if np.issubdtype(da.dtype, np.floating) else np.float64
        out = xr.apply_ufunc(
            lambda a: _interp_array(a, src, dst, orders[method]).astype(dtype, copy=False),
            da.drop_vars([c for c in da.coords if set(da[c].dims) & set(dims)]),
            input_core_dims=[list(dims)],
            output_core_dims=[["__lat_out", "__lon_out"]],
            keep_attrs=True,
        )
        return out.rename({"__lat_out": "latitude", "__lon_out": "longitude"}).assign_coords(coords)

    if isinstance(coarse_ds, xr.DataArray):
        return _one(coarse_ds.load())
    out = xr.Dataset({k: _one(v.load()) for k, v in coarse_ds.data_vars.items()}, attrs=dict(coarse_ds.attrs))
    out = out.assign_coords({k: v for k, v in coarse_ds.coords.items() if not set(v.dims) & set(dims)})
    out.attrs["atmos_regrid"] = f"{method} interpolation {src!r} -> {dst!r}"
    out.attrs.pop("atmos_coarsen_factor", None)
    return out


# -- trained heads ---------------------------------------------------------------------------


def channel_array(ds: xr.Dataset, name: str) -> xr.DataArray:
    """The DataArray of channel ``name`` (``variable`` or ``variable_level``, e.g. ``geopotential_500``).

    Raises
    ------
    DataError
        The variable or level is missing.
    """
    return Channel.parse(name, ds).select(ds)
