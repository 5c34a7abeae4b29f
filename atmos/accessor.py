"""The ``ds.atmos`` accessor: thin delegation to documented atmos functions.

Importing :mod:`atmos` registers it (at once if xarray is already imported, else as soon as
xarray is; this module imports nothing but xarray, so the registration is cheap)::

    import atmos
    ds = atmos.open_dataset("speedy-world-val")
    ds.atmos.grid                      # LatLonGrid(equiangular, nlat=32, nlon=64)
    hpx = ds.atmos.to_healpix(16)      # -> atmos.io.regrid.to_healpix
    ds.atmos.global_mean()             # -> atmos.io.coords.global_mean

Each method only forwards to the function named in its docstring, so everything the
accessor does is also available (and tested) as a plain function.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import xarray as xr

if TYPE_CHECKING:  # pragma: no cover
    from atmos.grids import Grid

__all__ = ["AtmosAccessor"]


class _Base:
    def __init__(self, obj: xr.Dataset | xr.DataArray) -> None:
        self._obj = obj

    @property
    def grid(self) -> Grid:
        """The grid of the data (:func:`atmos.io.grid_of`)."""
        from atmos.io.coords import grid_of

        return grid_of(self._obj)

    def area_weights(self) -> xr.DataArray:
        """Normalized cell areas summing to 1 (:func:`atmos.io.area_weights`)."""
        from atmos.io.coords import area_weights

        return area_weights(self._obj)

    def global_mean(self) -> Any:
        """Area-weighted mean over the spatial dims (:func:`atmos.io.global_mean`)."""
        from atmos.io.coords import global_mean

        return global_mean(self._obj)

    def to_healpix(self, nside: int, method: str = "bilinear", order: str = "nest") -> Any:
        """Regrid to HEALPix ``nside`` (:func:`atmos.io.regrid.to_healpix`)."""
        from atmos.io.regrid import to_healpix

        return to_healpix(self._obj, nside, method=method, order=order)

    def to_latlon(self, grid: Any, method: str = "bilinear") -> Any:
        """Regrid to a lat-lon grid (:func:`atmos.io.regrid.to_latlon`)."""
        from atmos.io.regrid import to_latlon

        return to_latlon(self._obj, grid, method=method)

    def normalize(self, stats: xr.Dataset, kind: str = "state") -> Any:
        """``(x - mean) / std`` with statistics from :func:`atmos.io.compute_stats` (:func:`atmos.io.normalize`)."""
        from atmos.io.stats import normalize

        return normalize(self._obj, stats, kind=kind)

    def denormalize(self, stats: xr.Dataset, kind: str = "state") -> Any:
        """Inverse of :meth:`normalize` (:func:`atmos.io.denormalize`)."""
        from atmos.io.stats import denormalize

        return denormalize(self._obj, stats, kind=kind)


@xr.register_dataset_accessor("atmos")
class AtmosAccessor(_Base):
    """``Dataset.atmos``: grids, area weights, regridding and normalization."""

    def compute_stats(self, **kwargs: Any) -> xr.Dataset:
        """Normalization statistics (:func:`atmos.io.compute_stats`)."""
        from atmos.io.stats import compute_stats

        return compute_stats(self._obj, **kwargs)


    def rollout(self, model: Any = None, init: Any = None, days: float | None = None, **kwargs: Any) -> xr.Dataset:
        """Forecast from this dataset's initial conditions (:func:`atmos.rollout.rollout`).

        ``kwargs`` are those of :func:`~atmos.rollout.rollout`, ensembles included, e.g.
        ``members=8, perturbation="bred", perturbation_scale=0.1`` (see :mod:`atmos.rollout.perturbations`).
        """
        from atmos.rollout.api import rollout

        return rollout(model, self._obj, init, days, **kwargs)

    def coarsen(self, factor: int) -> xr.Dataset:
        """Conservative coarsening by ``factor x factor`` blocks (:func:`atmos.io.downscale.coarsen_conservative`)."""
        from atmos.io.downscale import coarsen_conservative

        return coarsen_conservative(self._obj, factor)

    def downscale(self, model: Any, **kwargs: Any) -> xr.Dataset:
        """Downscale with a trained head (:func:`atmos.rollout.downscale.downscale`)."""
        from atmos.rollout.downscale import downscale

        return downscale(self._obj, model, **kwargs)


@xr.register_dataarray_accessor("atmos")
class AtmosDataArrayAccessor(_Base):
    """``DataArray.atmos``: the same grid helpers as the Dataset accessor."""
