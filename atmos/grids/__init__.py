"""Lat-lon and HEALPix grids, area weights, regridders and HEALPix padding (numpy/torch only)."""

from atmos.grids.healpix import HealpixGrid, face_nest_index
from atmos.grids.latlon import LatLonGrid

#: Names served lazily: padding and the regridders are torch modules, and ``import atmos.grids``
#: (hence ``import atmos``) must not import torch.
_LAZY = {
    **dict.fromkeys(("HealpixPad", "healpix_pad", "healpix_pad_indices", "healpix_unpad"), "atmos.grids.padding"),
    **dict.fromkeys(
        ("METHODS", "HealpixToLatLon", "LatLonToHealpix", "LatLonToLatLon", "Regridder", "latlon_healpix_overlap"),
        "atmos.grids.regrid",
    ),
}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'atmos.grids' has no attribute {name!r}")

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
