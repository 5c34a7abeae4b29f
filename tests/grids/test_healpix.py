"""Tests of atmos.grids.healpix: face layout, nest/ring orders, geometry, errors.

healpy (GPL) is used here only as an independent oracle.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from atmos.errors import GridError
from atmos.grids.healpix import HealpixGrid, face_nest_index

hp = pytest.importorskip("healpy")

NSIDES = (1, 2, 4, 16)


def _angle_diff(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.abs((np.asarray(a) - np.asarray(b) + 180.0) % 360.0 - 180.0)


# -- layout round trips -------------------------------------------------------------
@pytest.mark.parametrize("nside", NSIDES)
@pytest.mark.parametrize("order", ["nest", "ring"])
@pytest.mark.parametrize("backend", ["numpy", "torch"])
def test_cells_faces_round_trip(nside: int, order: str, backend: str) -> None:
    grid = HealpixGrid(nside, order)
    rng = np.random.default_rng(nside)
    cells = rng.standard_normal((3, grid.npix))
    faces = rng.standard_normal((2, *grid.face_shape))
    if backend == "torch":
        cells, faces = torch.as_tensor(cells), torch.as_tensor(faces)
    to_faces = grid.cells_to_faces(cells)
    assert tuple(to_faces.shape) == (3, 12, nside, nside)
    assert type(to_faces) is type(cells)
    back = grid.faces_to_cells(to_faces)
    assert tuple(back.shape) == (3, grid.npix)
    assert (np.asarray(back) == np.asarray(cells)).all()
    again = grid.cells_to_faces(grid.faces_to_cells(faces))
    assert (np.asarray(again) == np.asarray(faces)).all()


@pytest.mark.parametrize("nside", NSIDES)
def test_face_layout_content_matches_healpy(nside: int) -> None:
    """cells_to_faces puts the value of cell id k where face_index says, for both orders."""
    for order in ("nest", "ring"):
        grid = HealpixGrid(nside, order)
        faces = grid.cells_to_faces(np.arange(grid.npix, dtype=np.int64))
        nest = face_nest_index(nside)
        expected = nest if order == "nest" else hp.nest2ring(nside, nest)
        np.testing.assert_array_equal(faces, expected)
        np.testing.assert_array_equal(grid.face_index, expected)


@pytest.mark.parametrize("nside", NSIDES)
def test_reorder_matches_healpy_and_round_trips(nside: int) -> None:
    rng = np.random.default_rng(0)
    x_nest = rng.standard_normal(12 * nside**2)
    nest, ring = HealpixGrid(nside, "nest"), HealpixGrid(nside, "ring")
    x_ring = nest.reorder(x_nest, "ring")
    np.testing.assert_array_equal(x_ring, hp.reorder(x_nest, n2r=True))
    np.testing.assert_array_equal(ring.reorder(x_ring, "nest"), x_nest)
    t = torch.as_tensor(x_nest)
    assert torch.equal(ring.reorder(nest.reorder(t, "ring"), "nest"), t)
    assert nest.reorder(x_nest, "nest") is x_nest
    # the ring grid's face layout is the same physical layout as the nest grid's
    np.testing.assert_array_equal(ring.cells_to_faces(x_ring), nest.cells_to_faces(x_nest))


# -- face_index vs healpy -----------------------------------------------------------
@pytest.mark.parametrize("nside", NSIDES)
def test_face_nest_index_matches_healpy_xyf2pix(nside: int) -> None:
    f, r, c = np.meshgrid(np.arange(12), np.arange(nside), np.arange(nside), indexing="ij")
    expected = hp.xyf2pix(nside, nside - 1 - r, nside - 1 - c, f, nest=True)
    idx = face_nest_index(nside)
    assert idx.dtype == np.int64 and idx.shape == (12, nside, nside)
    np.testing.assert_array_equal(idx, expected)
    np.testing.assert_array_equal(np.sort(idx.ravel()), np.arange(12 * nside**2))
    np.testing.assert_array_equal(HealpixGrid(nside, "ring").face_index, hp.nest2ring(nside, expected))


@pytest.mark.parametrize("nside", [4, 16])
def test_face_layout_orientation(nside: int) -> None:
    """Faces 0-3 north, 4-7 equatorial, 8-11 south; row 0 is a face's northern corner side."""
    grid = HealpixGrid(nside)
    lat = grid.cells_to_faces(grid.lat)
    assert (lat[0:4].mean(axis=(1, 2)) > 30).all()
    assert (np.abs(lat[4:8].mean(axis=(1, 2))) < 1e-9).all()
    assert (lat[8:12].mean(axis=(1, 2)) < -30).all()
    assert (lat[:, 0, 0] > lat[:, -1, -1]).all()  # north corner at [0, 0], south corner at [-1, -1]


# -- geometry ----------------------------------------------------------------------
@pytest.mark.parametrize("nside", NSIDES)
@pytest.mark.parametrize("order", ["nest", "ring"])
def test_lat_lon_match_healpy(nside: int, order: str) -> None:
    grid = HealpixGrid(nside, order)
    lon, lat = hp.pix2ang(nside, np.arange(grid.npix), nest=order == "nest", lonlat=True)
    np.testing.assert_allclose(grid.lat, lat, atol=1e-9)
    assert _angle_diff(grid.lon, lon).max() < 1e-9
    assert ((grid.lon >= 0) & (grid.lon < 360)).all()
    lat2, lon2 = grid.centers()
    np.testing.assert_array_equal(lat2, grid.lat)
    np.testing.assert_array_equal(lon2, grid.lon)


@pytest.mark.parametrize("nside", NSIDES)
def test_area_weights(nside: int) -> None:
    grid = HealpixGrid(nside)
    w = grid.area_weights()
    assert w.shape == (grid.npix,)
    assert abs(w.sum() - 1.0) < 1e-12
    np.testing.assert_allclose(w * 4 * np.pi, hp.nside2pixarea(nside), rtol=1e-12)


def test_sizes_and_description() -> None:
    grid = HealpixGrid(16, "ring")
    assert (grid.npix, grid.depth, grid.shape, grid.face_shape) == (3072, 4, (3072,), (12, 16, 16))
    assert HealpixGrid.from_dict(grid.to_dict()) == grid
    assert grid != HealpixGrid(16, "nest") and hash(grid) == hash(HealpixGrid(16, "ring"))
    assert grid.xdggs_attrs() == {"grid_name": "healpix", "level": 4, "indexing_scheme": "ring"}
    assert HealpixGrid(16).xdggs_attrs()["indexing_scheme"] == "nested"


def test_torch_conversion_keeps_dtype_and_leading_dims() -> None:
    grid = HealpixGrid(4)
    x = torch.randn(2, 3, grid.npix, dtype=torch.float16)
    faces = grid.cells_to_faces(x)
    assert faces.shape == (2, 3, 12, 4, 4) and faces.dtype == torch.float16
    assert torch.equal(grid.faces_to_cells(faces), x)


# -- errors ---------------------------------------------------------------------------
@pytest.mark.parametrize("bad", [3, 0, -4, 6, 6.0, 2.5, "a", "4", None, True, 2**30])
def test_bad_nside_raises_grid_error_naming_value(bad) -> None:
    with pytest.raises(GridError) as err:
        HealpixGrid(bad)
    assert repr(bad) in str(err.value)
    assert "power of two" in str(err.value)
    with pytest.raises(GridError):
        face_nest_index(bad)


def test_bad_order_raises() -> None:
    with pytest.raises(GridError, match="'nested'"):
        HealpixGrid(4, "nested")


def test_shape_mismatch_raises() -> None:
    grid = HealpixGrid(4)
    with pytest.raises(GridError, match=r"\[\.\.\., 192\].*\(2, 191\)"):
        grid.cells_to_faces(torch.zeros(2, 191))
    with pytest.raises(GridError, match=r"\[\.\.\., 12, 4, 4\].*\(12, 8, 8\)"):
        grid.faces_to_cells(np.zeros((12, 8, 8)))
    with pytest.raises(GridError):
        grid.faces_to_cells(torch.zeros(11, 4, 4))
    with pytest.raises(GridError):
        grid.reorder(np.zeros(10), "ring")
