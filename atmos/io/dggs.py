"""HEALPix data encoded with the xdggs (or CF healpix) conventions, as atmos HEALPix cubes.

atmos represents HEALPix data with a ``cell`` dimension, a ``cell_ids`` coordinate
``0 .. 12 * nside**2 - 1`` in order whose attributes follow the xdggs convention
(``grid_name="healpix"``, ``level=log2(nside)``, ``indexing_scheme="nested"`` or
``"ring"``; see :meth:`atmos.grids.HealpixGrid.xdggs_attrs` and
:func:`atmos.io.coords.grid_of`) and cell-centre ``latitude``/``longitude`` coordinates
on ``cell``. These are the attributes ``xdggs.decode`` reads (xdggs 0.6; no
``ellipsoid`` means a sphere, which is what atmos's grids use).

:func:`from_dggs` accepts what xdggs and other tools write and returns that layout:

* the xdggs convention: a 1-D coordinate with ``grid_name="healpix"`` (any name; any
  dimension name, e.g. xdggs's ``cells``), with ``level`` or the older ``nside`` /
  ``resolution`` / ``depth`` / ``order`` and ``indexing_scheme`` or ``nest``;
* the CF healpix convention (``xdggs ... encode(convention="cf")``): a grid-mapping
  variable with ``grid_mapping_name="healpix"`` and ``refinement_level``, and a
  ``healpix_index`` coordinate;
* datasets decoded by ``xdggs.decode`` (their DGGS index is replaced by a plain
  coordinate).

Cells given in another order are sorted by their ids (lazily); cell centres are added
when missing. Only full-sphere grids on the sphere are supported. xdggs itself is not
needed.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from typing import Any

import numpy as np
import xarray as xr

from atmos.errors import DataError

__all__ = ["dggs_healpix_info", "from_dggs", "is_dggs_healpix"]

_ATMOS_SCHEMES = {"nested": "nest", "ring": "ring"}


def _cf_mapping(ds: xr.Dataset) -> tuple[Hashable, Mapping[str, Any]] | None:
    for name, var in ds.variables.items():
        if str(var.attrs.get("grid_mapping_name", "")).lower() == "healpix":
            return name, var.attrs
    return None


def _xdggs_coord(ds: xr.Dataset) -> Hashable | None:
    for name, var in ds.coords.items():
        if var.ndim == 1 and str(var.attrs.get("grid_name", "")).lower() == "healpix":
            return name
    for name, index in ds.xindexes.items():  # decoded by xdggs: the grid info lives on the index
        if type(index).__name__ == "HealpixIndex" and ds[name].ndim == 1:
            return name
    return None


def is_dggs_healpix(ds: xr.Dataset) -> bool:
    """Whether ``ds`` carries HEALPix cell ids in the xdggs or CF healpix convention."""
    return isinstance(ds, xr.Dataset) and (_xdggs_coord(ds) is not None or _cf_mapping(ds) is not None)


def _level_from(attrs: Mapping[str, Any], where: str) -> int:
    if attrs.get("level") is not None:
        return int(attrs["level"])
    if "refinement_level" in attrs:
        return int(attrs["refinement_level"])
    for key in ("resolution", "depth", "order"):
        if key in attrs and not isinstance(attrs[key], str):
            return int(attrs[key])
    if "nside" in attrs:
        nside = int(attrs["nside"])
        level = int(round(np.log2(nside))) if nside > 0 else -1
        if level < 0 or 2**level != nside:
            raise DataError(f"{where} has nside={nside}; expected a power of two (HEALPix nside = 2**level).")
        return level
    raise DataError(
        f"{where} has no HEALPix level: its attributes are {dict(attrs)}; expected 'level' (xdggs) or "
        "'refinement_level' (CF). Set it, e.g. ds.cell_ids.attrs['level'] = 4 for nside 16."
    )


def dggs_healpix_info(ds: xr.Dataset) -> dict[str, Any]:
    """Cell-id coordinate name and grid parameters of an xdggs / CF healpix dataset.

    Returns
    -------
    dict
        ``{"name", "dim", "level", "indexing_scheme", "ellipsoid", "grid_mapping"}``
        (``grid_mapping``: the CF grid-mapping variable, or None).

    Raises
    ------
    DataError
        No HEALPix cell ids, no level, or an indexing scheme atmos cannot use
        (``zuniq``/``nuniq``).
    """
    cf = _cf_mapping(ds)
    name = _xdggs_coord(ds)
    mapping_name: Hashable | None = None
    if name is not None:
        var = ds[name]
        attrs: Mapping[str, Any] = var.attrs
        if "grid_name" not in attrs:  # decoded by xdggs: parameters on the index
            info = ds.xindexes[name]._grid  # HealpixInfo (xdggs 0.6)
            attrs = info.to_dict()
    elif cf is not None:
        mapping_name, attrs = cf
        cands = [
            n for n, v in ds.variables.items()
            if n != mapping_name and v.ndim == 1 and v.attrs.get("standard_name") == "healpix_index"
        ]
        if not cands:
            raise DataError(
                f"the CF healpix grid mapping {mapping_name!r} has no cell index coordinate: expected a 1-D "
                "variable with standard_name='healpix_index'. Add it, or encode with xdggs instead."
            )
        name = cands[0]
    else:
        raise DataError(
            "no HEALPix cell ids: expected a coordinate with attrs grid_name='healpix' (xdggs) or a "
            "grid-mapping variable with grid_mapping_name='healpix' (CF)."
        )
    where = f"HEALPix coordinate {str(name)!r}"
    scheme = attrs.get("indexing_scheme")
    if scheme is None and "nest" in attrs:
        scheme = "nested" if bool(attrs["nest"]) else "ring"
    scheme = str(scheme or "nested").lower()
    if scheme in ("nest",):
        scheme = "nested"
    if scheme not in _ATMOS_SCHEMES:
        raise DataError(
            f"{where} has indexing_scheme={scheme!r}; atmos reads 'nested' or 'ring' HEALPix grids. "
            "Convert the cell ids first, e.g. with healpix_geo (zuniq -> nested at one level)."
        )
    level = _level_from(attrs, where)
    ellipsoid = attrs.get("ellipsoid")
    if ellipsoid not in (None, "sphere") and not (isinstance(ellipsoid, Mapping) and "radius" in ellipsoid):
        raise DataError(
            f"{where} is on the ellipsoid {ellipsoid!r}; atmos's HEALPix grids are on the sphere (xdggs's "
            "default, no 'ellipsoid' attribute). Regrid the data, or drop the attribute if the cell centres "
            "are spherical."
        )
    dim = ds[name].dims[0]
    return {
        "name": name, "dim": dim, "level": level, "indexing_scheme": scheme,
        "ellipsoid": ellipsoid, "grid_mapping": mapping_name,
    }


def from_dggs(ds: xr.Dataset) -> xr.Dataset:
    """An xdggs / CF healpix encoded dataset in atmos's HEALPix layout (lazy).

    Parameters
    ----------
    ds : xarray.Dataset
        With HEALPix cell ids (see the module docstring).

    Returns
    -------
    xarray.Dataset
        Dimension ``cell``, coordinate ``cell_ids`` ``0 .. npix-1`` in order with the xdggs
        attributes of :meth:`atmos.grids.HealpixGrid.xdggs_attrs`, cell-centre
        ``latitude``/``longitude`` on ``cell`` (kept when present, computed otherwise).
        An atmos HEALPix dataset is returned unchanged.

    Raises
    ------
    DataError
        Cell ids that are not a full sphere (``12 * 4**level`` distinct ids), besides the
        errors of :func:`dggs_healpix_info`.
    """
    from atmos.grids import HealpixGrid

    info = dggs_healpix_info(ds)
    name, dim, level = info["name"], info["dim"], int(info["level"])
    grid = HealpixGrid(2**level, _ATMOS_SCHEMES[info["indexing_scheme"]])
    ids = np.asarray(ds[name].values).astype(np.int64)
    if ids.size != grid.npix or (ids.size and (ids.min() < 0 or ids.max() >= grid.npix)) or (
        np.unique(ids).size != ids.size
    ):
        raise DataError(
            f"HEALPix coordinate {str(name)!r} has {ids.size} cell ids in [{ids.min() if ids.size else '-'}, "
            f"{ids.max() if ids.size else '-'}] at level {level}; atmos expects the full sphere, the "
            f"{grid.npix} distinct ids 0..{grid.npix - 1} (12 * 4**level). Regional HEALPix data are not "
            "supported: regrid to a full grid or pad the missing cells with NaN."
        )
    in_order = np.array_equal(ids, np.arange(grid.npix))
    expected = grid.xdggs_attrs()
    atmos_layout = (
        in_order and dim == "cell" and name == "cell_ids" and info["grid_mapping"] is None
        and all(ds[name].attrs.get(k) == v for k, v in expected.items())
        and "latitude" in ds.coords and "longitude" in ds.coords
        and name not in ds.xindexes
    )
    if atmos_layout:
        return ds
    out = ds
    if name in out.xindexes:
        out = out.drop_indexes(name)
    if info["grid_mapping"] is not None:
        gm = info["grid_mapping"]
        out = out.drop_vars(gm)
        for v in out.variables.values():
            if v.attrs.get("grid_mapping") in (gm, "healpix"):
                v.attrs = {k: a for k, a in v.attrs.items() if k != "grid_mapping"}
    if dim != "cell":
        if "cell" in out.dims or "cell" in out.variables:
            raise DataError(
                f"the HEALPix dimension is {str(dim)!r} but the dataset already has a 'cell' "
                f"{'dimension' if 'cell' in out.dims else 'variable'}; rename one of them first."
            )
        out = out.rename_dims({dim: "cell"})
    if not in_order:
        out = out.isel(cell=np.argsort(ids, kind="stable"))
    keep = {k: v for k, v in out[name].attrs.items() if k not in (
        "grid_name", "level", "indexing_scheme", "ellipsoid", "nside", "resolution", "depth", "order", "nest",
        "refinement_level", "standard_name", "units",
    )}
    if name != "cell_ids":
        out = out.drop_vars(name)
        if "cell_ids" in out.variables:
            out = out.drop_vars("cell_ids")
    lat, lon = grid.centers()
    coords: dict[str, Any] = {"cell_ids": ("cell", grid.cell_ids, {**keep, **expected})}
    names = {str(c) for c in out.coords}
    has_lat = bool({"latitude", "lat"} & names)
    has_lon = bool({"longitude", "lon"} & names)
    if not has_lat:
        coords["latitude"] = ("cell", lat, {"units": "degrees_north", "standard_name": "latitude"})
    if not has_lon:
        coords["longitude"] = ("cell", lon, {"units": "degrees_east", "standard_name": "longitude"})
    return out.assign_coords(coords)
