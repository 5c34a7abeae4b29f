"""HEALPix grids and the 12-face tensor layout.

Two layouts are used for HEALPix data:

* a 1-D ``cell`` vector of length ``12 * nside**2`` in ``nest`` or ``ring`` order
  (the xarray / xdggs layout);
* the face layout ``[..., 12, nside, nside]`` used by convolutional models. It is
  the DLWP-HPX / earth2grid ``HEALPIX_PAD_XY`` convention: faces 0-3 are the
  northern base cells, 4-7 the equatorial ones, 8-11 the southern ones, and
  element ``[f, r, c]`` holds the nested pixel ``xyf2pix(nside, x=nside-1-r,
  y=nside-1-c, f)``. Row index ``r`` therefore runs from the face's northern
  corner towards its southern corner along decreasing ``x``.

All index math (xyf <-> nested, nested <-> ring, cell centres) comes from
``healpix-geo``. This module uses numpy and torch only.
"""

from __future__ import annotations

from functools import cached_property, lru_cache
from typing import Any, Literal

import sys
from typing import TYPE_CHECKING

import numpy as np
from healpix_geo import nested as hg_nested

from atmos.errors import GridError

if TYPE_CHECKING:
    import torch


def _is_tensor(x: Any) -> bool:
    """``isinstance(x, torch.Tensor)`` without importing torch (no tensor exists before it is imported)."""
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(x, torch.Tensor)

__all__ = ["HealpixGrid", "face_nest_index"]

Order = Literal["nest", "ring"]


def _check_nside(nside: Any) -> int:
    try:
        n = int(nside)
    except (TypeError, ValueError):
        n = -1
    if isinstance(nside, bool) or n != nside or n < 1 or (n & (n - 1)) != 0 or n > 2**29:
        raise GridError(
            f"nside must be a power of two between 1 and 2**29, got {nside!r}. "
            "Use e.g. nside=32 (~200 km) or nside=64 (~110 km)."
        )
    return n


@lru_cache(maxsize=16)
def _equal_areas(npix: int) -> np.ndarray:
    """``npix`` equal normalized cell areas ``1 / npix``; read-only, cached (callers return copies)."""
    w = np.full(npix, 1.0 / npix)
    w.flags.writeable = False
    return w


def face_nest_index(nside: int) -> np.ndarray:
    """Nested pixel index of every element of the face layout.

    Returns
    -------
    numpy.ndarray of int64, shape [12, nside, nside]
        ``out[f, r, c] = xyf2pix(nside, x=nside-1-r, y=nside-1-c, f)``.
    """
    nside = _check_nside(nside)
    f, r, c = np.meshgrid(np.arange(12), np.arange(nside), np.arange(nside), indexing="ij")
    depth = int(np.log2(nside))
    idx = hg_nested.base_cell_coordinates_to_healpix(
        f.ravel().astype(np.uint8),
        (nside - 1 - r).ravel().astype(np.uint32),
        (nside - 1 - c).ravel().astype(np.uint32),
        depth,
    )
    return np.asarray(idx, dtype=np.int64).reshape(12, nside, nside)


class HealpixGrid:
    """A global HEALPix grid.

    Parameters
    ----------
    nside : int
        Number of pixels along a base-cell side; a power of two. ``depth`` (the
        xdggs ``level``) is ``log2(nside)``.
    order : {"nest", "ring"}
        Order of the 1-D ``cell`` vector (the face layout is always the same).

    Attributes
    ----------
    cell_ids : numpy.ndarray, shape [npix]
        HEALPix index of each position of the cell vector (``arange(npix)``).
    """

    def __init__(self, nside: int, order: Order = "nest") -> None:
        self.nside = _check_nside(nside)
        if order not in ("nest", "ring"):
            raise GridError(
                f"order must be 'nest' or 'ring', got {order!r}. "
                "'nest' is the default and what xdggs calls indexing_scheme='nested'."
            )
        self.order: Order = order

    # -- sizes -------------------------------------------------------------------
    @property
    def depth(self) -> int:
        return int(np.log2(self.nside))

    @property
    def npix(self) -> int:
        return 12 * self.nside**2

    @property
    def size(self) -> int:
        return self.npix

    @property
    def shape(self) -> tuple[int]:
        """Shape of the 1-D cell vector ``(npix,)``."""
        return (self.npix,)

    @property
    def face_shape(self) -> tuple[int, int, int]:
        """Shape of the face layout ``(12, nside, nside)``."""
        return (12, self.nside, self.nside)

    @property
    def cell_ids(self) -> np.ndarray:
        return np.arange(self.npix, dtype=np.int64)

    # -- index tables -----------------------------------------------------------
    @cached_property
    def _nest_of_position(self) -> np.ndarray:
        """Nested id of each position of this grid's cell vector, shape [npix]."""
        if self.order == "nest":
            return self.cell_ids
        from healpix_geo import ring as hg_ring

        return np.asarray(hg_ring.to_nested(self.cell_ids.astype(np.uint64), self.depth), dtype=np.int64)

    @cached_property
    def face_index(self) -> np.ndarray:
        """Position in the cell vector of each face-layout element, shape [12, nside, nside]."""
        nest = face_nest_index(self.nside)
        if self.order == "nest":
            return nest
        ring = hg_nested.to_ring(nest.ravel().astype(np.uint64), self.depth)
        return np.asarray(ring, dtype=np.int64).reshape(nest.shape)

    @cached_property
    def _inverse_face_index(self) -> np.ndarray:
        """Flat face-layout position of each cell, shape [npix]."""
        inv = np.empty(self.npix, dtype=np.int64)
        inv[self.face_index.ravel()] = np.arange(self.npix)
        return inv

    # -- geometry ------------------------------------------------------------------
    @cached_property
    def _lonlat(self) -> tuple[np.ndarray, np.ndarray]:
        lon, lat = hg_nested.healpix_to_lonlat(self._nest_of_position.astype(np.uint64), self.depth)
        lon = np.mod(np.asarray(lon, dtype=np.float64), 360.0)
        return np.asarray(lat, dtype=np.float64), lon

    @property
    def lat(self) -> np.ndarray:
        """Cell-centre latitude in degrees, shape [npix] (cell-vector order)."""
        return self._lonlat[0].copy()

    @property
    def lon(self) -> np.ndarray:
        """Cell-centre longitude in degrees within [0, 360), shape [npix]."""
        return self._lonlat[1].copy()

    def centers(self) -> tuple[np.ndarray, np.ndarray]:
        """Cell-centre latitude and longitude in degrees, each shape [npix]."""
        return self.lat, self.lon

    def area_weights(self) -> np.ndarray:
        """Normalized cell areas, shape [npix], summing to 1.

        HEALPix cells all have the same area, so every weight is ``1 / npix``.
        This is the WeatherBench2 convention (normalized cell area); unlike a
        ``cos(lat)`` weight, it needs no latitude at all on an equal-area grid.
        Cached per ``npix``; each call returns a fresh copy.
        """
        return _equal_areas(self.npix).copy()

    # -- layout conversions ------------------------------------------------------
    def _check_faces(self, x: torch.Tensor) -> None:
        if tuple(x.shape[-3:]) != self.face_shape:
            raise GridError(
                f"expected a tensor shaped [..., 12, {self.nside}, {self.nside}] for "
                f"HEALPix nside={self.nside}, got {tuple(x.shape)}."
            )

    def _check_cells(self, x: torch.Tensor) -> None:
        if x.shape[-1] != self.npix:
            raise GridError(
                f"expected a tensor shaped [..., {self.npix}] (12 * nside**2 cells for "
                f"nside={self.nside}), got {tuple(x.shape)}."
            )

    def cells_to_faces(self, x: torch.Tensor | np.ndarray) -> torch.Tensor | np.ndarray:
        """``[..., npix]`` cell vector (this grid's order) -> ``[..., 12, nside, nside]``."""
        self._check_cells(x)
        idx = self.face_index.ravel()
        if _is_tensor(x):
            out = x.index_select(-1, sys.modules['torch'].as_tensor(idx, device=x.device))
        else:
            out = np.take(x, idx, axis=-1)
        return out.reshape(*x.shape[:-1], *self.face_shape)

    def faces_to_cells(self, x: torch.Tensor | np.ndarray) -> torch.Tensor | np.ndarray:
        """``[..., 12, nside, nside]`` face layout -> ``[..., npix]`` cell vector."""
        self._check_faces(x)
        flat = x.reshape(*x.shape[:-3], self.npix)
        inv = self._inverse_face_index
        if _is_tensor(flat):
            return flat.index_select(-1, sys.modules['torch'].as_tensor(inv, device=flat.device))
        return np.take(flat, inv, axis=-1)

    def reorder(self, x: torch.Tensor | np.ndarray, to: Order) -> torch.Tensor | np.ndarray:
        """Convert a ``[..., npix]`` cell vector from this grid's order to ``to``."""
        self._check_cells(x)
        if to == self.order:
            return x
        other = HealpixGrid(self.nside, to)
        # position p of `other` holds nested id other._nest_of_position[p]
        src_pos = np.empty(self.npix, dtype=np.int64)
        src_pos[self._nest_of_position] = np.arange(self.npix)
        idx = src_pos[other._nest_of_position]
        if _is_tensor(x):
            return x.index_select(-1, sys.modules['torch'].as_tensor(idx, device=x.device))
        return np.take(x, idx, axis=-1)

    # -- description ---------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {"type": "healpix", "nside": self.nside, "order": self.order}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> HealpixGrid:
        return cls(int(d["nside"]), d.get("order", "nest"))

    def xdggs_attrs(self) -> dict[str, Any]:
        """Attributes of the ``cell_ids`` coordinate understood by xdggs."""
        return {
            "grid_name": "healpix",
            "level": self.depth,
            "indexing_scheme": "nested" if self.order == "nest" else "ring",
        }

    def __eq__(self, other: object) -> bool:
        return isinstance(other, HealpixGrid) and (self.nside, self.order) == (other.nside, other.order)

    def __hash__(self) -> int:
        return hash(("healpix", self.nside, self.order))

    def __repr__(self) -> str:
        return f"HealpixGrid(nside={self.nside}, order={self.order!r})"
