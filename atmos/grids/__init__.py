"""Lat-lon and HEALPix grids, area weights, regridders and HEALPix padding (numpy/torch only)."""

from atmos.grids.healpix import HealpixGrid, face_nest_index
from atmos.grids.latlon import LatLonGrid
from atmos.grids.padding import HealpixPad, healpix_pad, healpix_pad_indices, healpix_unpad
from atmos.grids.regrid import (
    METHODS,
    HealpixToLatLon,
    LatLonToHealpix,
    LatLonToLatLon,
    Regridder,
    latlon_healpix_overlap,
)

Grid = LatLonGrid | HealpixGrid

__all__ = [
    "METHODS",
    "Grid",
    "HealpixGrid",
    "HealpixPad",
    "HealpixToLatLon",
    "LatLonGrid",
    "LatLonToHealpix",
    "LatLonToLatLon",
    "Regridder",
    "face_nest_index",
    "grid_from_dict",
    "healpix_pad",
    "healpix_pad_indices",
    "healpix_unpad",
    "latlon_healpix_overlap",
]


def grid_from_dict(d: dict) -> Grid:
    """Rebuild a grid from its ``to_dict()`` description."""
    from atmos.errors import GridError

    kinds = {"latlon": LatLonGrid, "healpix": HealpixGrid}
    if d.get("type") not in kinds:
        raise GridError(f"unknown grid type {d.get('type')!r}; expected one of {sorted(kinds)}.")
    return kinds[d["type"]].from_dict(d)
