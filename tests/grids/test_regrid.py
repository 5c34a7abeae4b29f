"""Tests of atmos.grids.regrid: lat-lon <-> HEALPix and lat-lon -> lat-lon regridders.

Invariants tested: exactness on constants and on bilinear fields, agreement with
independent oracles (scipy RegularGridInterpolator on a periodically padded grid,
healpy ``get_interp_weights`` / ``ang2pix``, sub-pixel counting of overlap areas),
conservation of the area-weighted global mean, error bounds on a smooth field,
gradients, dtypes, batch dimensions, layouts and error messages.

healpy (GPL) is used here only as an independent oracle.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.interpolate import RegularGridInterpolator

from atmos.errors import GridError
from atmos.grids.healpix import HealpixGrid
from atmos.grids.latlon import LatLonGrid
from atmos.grids.regrid import (
    METHODS,
    HealpixToLatLon,
    LatLonToHealpix,
    LatLonToLatLon,
    Regridder,
    latlon_healpix_overlap,
)

hp = pytest.importorskip("healpy")

LATLON = {
    "equiangular": lambda: LatLonGrid.equiangular(32, 64),
    "with_poles": lambda: LatLonGrid.equiangular(33, 64, poles=True),
    "gaussian": lambda: LatLonGrid.gaussian(32),
    "lon_offset": lambda: LatLonGrid(LatLonGrid.equiangular(32, 64).lat, 2.0 + np.arange(64) * 5.625),
}


def smooth_field(lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
    """Real spherical harmonics Y_2^1 and Y_3^2 (unnormalized), max |f| ~ 1.87."""
    la, lo = np.radians(lat), np.radians(lon)
    return 2 * np.sin(la) * np.cos(la) * np.cos(lo) + 3 * np.sin(la) * np.cos(la) ** 2 * np.sin(2 * lo)


def hpx_cells(grid: HealpixGrid, values: np.ndarray, layout: str) -> torch.Tensor:
    t = torch.as_tensor(values)
    return grid.cells_to_faces(t) if layout == "faces" else t


def as_cells(grid: HealpixGrid, t: torch.Tensor, layout: str) -> np.ndarray:
    return (grid.faces_to_cells(t) if layout == "faces" else t).detach().numpy()


def global_mean_latlon(grid: LatLonGrid, x: torch.Tensor) -> torch.Tensor:
    return (x * torch.as_tensor(grid.area_weights(), dtype=x.dtype)).sum((-2, -1))


# -- bilinear -----------------------------------------------------------------------------
@pytest.mark.parametrize("kind", sorted(LATLON))
@pytest.mark.parametrize("nside", [8, 16])  # 8: padded-gather storage, 16: CSR storage
def test_bilinear_latlon_to_healpix_matches_scipy_interior(kind: str, nside: int) -> None:
    ll, grid = LATLON[kind](), HealpixGrid(nside)
    x = np.random.default_rng(0).standard_normal(ll.shape)
    out = as_cells(grid, Regridder(ll, grid, "bilinear")(torch.as_tensor(x)), "faces")
    # oracle: scipy linear interpolation on the grid padded periodically in longitude
    lon_pad = np.concatenate([ll.lon, [360.0 + ll.lon[0]]])
    oracle = RegularGridInterpolator((ll.lat, lon_pad), np.concatenate([x, x[:, :1]], axis=1))
    inside = (grid.lat >= ll.lat[0]) & (grid.lat <= ll.lat[-1])
    lon = np.where(grid.lon < ll.lon[0], grid.lon + 360.0, grid.lon)
    expected = oracle(np.stack([grid.lat[inside], lon[inside]], axis=1))
    assert inside.sum() > 0.8 * grid.npix
    np.testing.assert_allclose(out[inside], expected, atol=1e-12)


@pytest.mark.parametrize("order", ["nest", "ring"])
@pytest.mark.parametrize("layout", ["faces", "cells"])
def test_bilinear_healpix_to_latlon_matches_healpy(order: str, layout: str) -> None:
    grid = HealpixGrid(8, order)
    for ll in (LatLonGrid.equiangular(32, 64), LatLonGrid.equiangular(19, 36, poles=True)):
        x = np.random.default_rng(1).standard_normal(grid.npix)
        out = Regridder(grid, ll, "bilinear", healpix_layout=layout)(hpx_cells(grid, x, layout))
        lat, lon = ll.centers()
        pix, w = hp.get_interp_weights(8, lon.ravel(), lat.ravel(), nest=order == "nest", lonlat=True)
        expected = (x[pix] * w).sum(axis=0).reshape(ll.shape)
        np.testing.assert_allclose(out.numpy(), expected, atol=1e-12)


@pytest.mark.parametrize("kind", sorted(LATLON))
def test_bilinear_smooth_field_error_bounds(kind: str) -> None:
    """64x32-class grids <-> nside 16 on Y_2^1 + Y_3^2 (max |f| ~ 1.87).

    Bounds (relative to max |f|; measured 0.6-0.9 %, 1.0-1.5 % and 0.9-1.5 %):
    lat-lon -> HEALPix < 1.2 %, HEALPix -> lat-lon < 2 %, round trip < 2 %.
    """
    ll, grid = LATLON[kind](), HealpixGrid(16)
    lat, lon = ll.centers()
    x = torch.as_tensor(smooth_field(lat, lon))
    y_true = torch.as_tensor(smooth_field(grid.lat, grid.lon))
    to_hpx = Regridder(ll, grid, "bilinear", healpix_layout="cells")
    to_ll = Regridder(grid, ll, "bilinear", healpix_layout="cells")
    amp = x.abs().max()
    assert (to_hpx(x) - y_true).abs().max() < 0.012 * amp
    assert (to_ll(y_true) - x).abs().max() < 0.02 * amp
    assert (to_ll(to_hpx(x)) - x).abs().max() < 0.02 * amp


@pytest.mark.parametrize("kind", sorted(LATLON))
def test_bilinear_exact_for_bilinear_fields_away_from_seam_and_poles(kind: str) -> None:
    """f = a + b lat + c lon + d lat lon is reproduced exactly where no wrap or pole rule applies."""
    ll, grid = LATLON[kind](), HealpixGrid(16)
    lat, lon = ll.centers()

    def f(la: np.ndarray, lo: np.ndarray) -> np.ndarray:
        return 0.3 + 0.02 * la + 0.01 * lo - 1e-4 * la * lo

    out = as_cells(grid, Regridder(ll, grid, "bilinear")(torch.as_tensor(f(lat, lon))), "faces")
    ok = (
        (grid.lat >= ll.lat[0])
        & (grid.lat <= ll.lat[-1])
        & (grid.lon >= ll.lon[0])
        & (grid.lon <= ll.lon[-1])
    )
    np.testing.assert_allclose(out[ok], f(grid.lat[ok], grid.lon[ok]), atol=1e-12)
    # lat-lon -> lat-lon (separable): same property
    dst = LatLonGrid.equiangular(20, 50)
    la2, lo2 = dst.centers()
    out2 = Regridder(ll, dst, "bilinear")(torch.as_tensor(f(lat, lon))).numpy()
    ok2 = (la2 >= ll.lat[0]) & (la2 <= ll.lat[-1]) & (lo2 >= ll.lon[0]) & (lo2 <= ll.lon[-1])
    np.testing.assert_allclose(out2[ok2], f(la2[ok2], lo2[ok2]), atol=1e-12)


def test_bilinear_pole_rule_is_mean_of_outermost_row() -> None:
    """Targets at the pole of a grid without pole rows get the mean of the outermost row."""
    src = LatLonGrid.equiangular(16, 32)
    x = torch.randn(3, *src.shape, dtype=torch.float64)
    out = Regridder(src, LatLonGrid.equiangular(9, 16, poles=True), "bilinear")(x)
    torch.testing.assert_close(out[..., -1, :], x[..., -1, :].mean(-1, keepdim=True).expand(3, 16))
    torch.testing.assert_close(out[..., 0, :], x[..., 0, :].mean(-1, keepdim=True).expand(3, 16))
    # HEALPix cells poleward of the last row: linear in latitude between the row and the pole mean
    grid = HealpixGrid(16)
    y = as_cells(grid, Regridder(src, grid, "bilinear")(x[0]), "faces")
    cap = grid.lat > src.lat[-1]
    assert cap.sum() == 4  # the first ring of nside 16 (88.5 deg) is above 84.375
    last = x[0, -1].numpy()
    row = np.interp(grid.lon[cap], np.append(src.lon, 360.0), np.append(last, last[0]))
    t = (grid.lat[cap] - src.lat[-1]) / (90.0 - src.lat[-1])
    np.testing.assert_allclose(y[cap], (1 - t) * row + t * last.mean(), atol=1e-12)


# -- all methods: constants, layouts ------------------------------------------------------
@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("kind", sorted(LATLON))
def test_constants_map_to_constants(method: str, kind: str) -> None:
    ll = LATLON[kind]()
    for grid in (HealpixGrid(4), HealpixGrid(16)):
        c = torch.full((2, *ll.shape), 3.5, dtype=torch.float64)
        out = Regridder(ll, grid, method)(c)
        torch.testing.assert_close(out, torch.full_like(out, 3.5), rtol=0, atol=1e-12)
        back = Regridder(grid, ll, method)(out)
        torch.testing.assert_close(back, c, rtol=0, atol=1e-12)
    out = Regridder(ll, LatLonGrid.gaussian(12), method)(c)
    torch.testing.assert_close(out, torch.full_like(out, 3.5), rtol=0, atol=1e-12)


@pytest.mark.parametrize("method", METHODS)
def test_faces_and_cells_layouts_agree(method: str) -> None:
    ll = LatLonGrid.equiangular(16, 32)
    x = torch.randn(2, *ll.shape, dtype=torch.float64)
    for order in ("nest", "ring"):
        grid = HealpixGrid(4, order)
        faces = Regridder(ll, grid, method, healpix_layout="faces")(x)
        cells = Regridder(ll, grid, method, healpix_layout="cells")(x)
        assert faces.shape == (2, 12, 4, 4) and cells.shape == (2, grid.npix)
        torch.testing.assert_close(faces, grid.cells_to_faces(cells))
        back_f = Regridder(grid, ll, method, healpix_layout="faces")(faces)
        back_c = Regridder(grid, ll, method, healpix_layout="cells")(cells)
        torch.testing.assert_close(back_f, back_c)


# -- conservative ---------------------------------------------------------------------------
@pytest.mark.parametrize("kind", sorted(LATLON))
@pytest.mark.parametrize("nside", [2, 8, 32])
def test_conservative_preserves_global_mean(kind: str, nside: int) -> None:
    """Area-weighted global mean preserved both ways (spec: 1e-6 relative; measured ~1e-15)."""
    ll, grid = LATLON[kind](), HealpixGrid(nside)
    g = torch.Generator().manual_seed(nside)
    x = torch.randn(4, *ll.shape, generator=g, dtype=torch.float64) + 2.0
    y = Regridder(ll, grid, "conservative", healpix_layout="cells")(x)
    torch.testing.assert_close(y.mean(-1), global_mean_latlon(ll, x), rtol=1e-10, atol=0)
    h = torch.randn(4, grid.npix, generator=g, dtype=torch.float64) + 2.0
    z = Regridder(grid, ll, "conservative", healpix_layout="cells")(h)
    torch.testing.assert_close(global_mean_latlon(ll, z), h.mean(-1), rtol=1e-10, atol=0)


def test_conservative_float32_preserves_mean_to_1e6() -> None:
    ll, grid = LatLonGrid.equiangular(33, 64, poles=True), HealpixGrid(16)
    x = torch.rand(3, *ll.shape) + 1.0
    y = Regridder(ll, grid, "conservative")(x)
    assert y.dtype == torch.float32
    ref = global_mean_latlon(ll, x.double())
    assert ((y.double().mean((-3, -2, -1)) - ref).abs() / ref).max() < 1e-6


@pytest.mark.parametrize("kind", sorted(LATLON))
def test_overlap_areas_match_subpixel_counting(kind: str) -> None:
    """Exact overlaps vs counting HEALPix sub-pixels (depth + k) in each lat-lon cell.

    The counting estimate converges to the exact areas as 2**-k; the marginals of the
    exact matrix are the two grids' cell areas.
    """
    import scipy.sparse as sp
    from healpix_geo import nested

    ll, nside = LATLON[kind](), 4
    a = latlon_healpix_overlap(ll, nside)
    np.testing.assert_allclose(np.asarray(a.sum(axis=1)).ravel(), 4 * np.pi / (12 * nside**2), rtol=1e-12)
    np.testing.assert_allclose(
        np.asarray(a.sum(axis=0)).ravel(), 4 * np.pi * ll.area_weights().ravel(), rtol=1e-12
    )
    errors = []
    for k in (4, 6):
        depth = 2 + k
        ids = np.arange(12 * 4**depth, dtype=np.uint64)
        lon, lat = (np.asarray(v) for v in nested.healpix_to_lonlat(ids, depth))
        rows = np.clip(np.searchsorted(ll.lat_bounds, lat, side="right") - 1, 0, ll.nlat - 1)
        cols = np.floor((np.mod(lon, 360.0) - ll.lon_bounds[0]) / (360.0 / ll.nlon)).astype(int) % ll.nlon
        est = sp.coo_matrix(
            (
                np.full(ids.size, 4 * np.pi / ids.size),
                ((ids >> np.uint64(2 * k)).astype(int), rows * ll.nlon + cols),
            ),
            shape=a.shape,
        ).tocsr()
        errors.append(abs(est - a).sum() / (4 * np.pi))
    assert errors[1] < 0.025 and errors[1] < errors[0] / 3.0  # measured ~0.02 and 4.4x


def _clip_area(poly: np.ndarray) -> float:
    """Oracle: Sutherland-Hodgman clipping of a polygon by the unit square, shoelace area."""
    pts = [tuple(p) for p in poly]
    for axis, bound, sign in ((0, 0.0, -1.0), (0, 1.0, 1.0), (1, 0.0, -1.0), (1, 1.0, 1.0)):
        out = []
        for i, cur in enumerate(pts):
            prev = pts[i - 1]
            cur_in = sign * (cur[axis] - bound) <= 0
            prev_in = sign * (prev[axis] - bound) <= 0
            if cur_in != prev_in:
                t = (bound - prev[axis]) / (cur[axis] - prev[axis])
                out.append(tuple(prev[k] + t * (cur[k] - prev[k]) for k in range(2)))
            if cur_in:
                out.append(cur)
        pts = out
        if not pts:
            return 0.0
    p = np.asarray(pts)
    return 0.5 * float(np.sum(p[:, 0] * np.roll(p[:, 1], -1) - np.roll(p[:, 0], -1) * p[:, 1]))


def test_unit_square_overlap_matches_polygon_clipping() -> None:
    from atmos.grids.regrid import _unit_square_overlap

    rng = np.random.default_rng(5)
    polys = []
    for _ in range(300):  # random rotated rectangles and trapezoids (ccw)
        c, (a, b), th = rng.uniform(-0.5, 1.5, 2), rng.uniform(0.05, 1.5, 2), rng.uniform(0, np.pi)
        base = np.array([[-a, -b], [a, -b], [a * rng.uniform(0.2, 1), b], [-a * rng.uniform(0.2, 1), b]])
        rot = np.array([[np.cos(th), -np.sin(th)], [np.sin(th), np.cos(th)]])
        polys.append(c + base @ rot.T)
    # exact edge coincidences with the square (the tie rule) and degenerate triangles
    for du, dv in [(0, 0), (1, 0), (-1, 0), (0, 1), (0.5, 0), (0, -0.5), (1, 1), (-0.25, 0.75)]:
        polys.append(np.array([[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 1.0]]) + [du, dv])
    polys.append(np.array([[0.5, 0.0], [1.5, 1.0], [1.5, 1.0], [0.5, 1.0]]))  # repeated vertex
    polys.append(np.array([[1.0, -1.0], [2.0, 0.5], [1.0, 2.0], [1.0, 2.0]]))  # edge on u = 1, outside
    polys.append(np.array([[0.0, -1.0], [1.0, 0.5], [1.0, 0.5], [0.0, 2.0]]))  # edge on u = 0, inside
    p = np.stack(polys)
    got = _unit_square_overlap(np.ascontiguousarray(p[:, :, 0].T), np.ascontiguousarray(p[:, :, 1].T))
    expected = np.array([_clip_area(q) for q in polys])
    np.testing.assert_allclose(got, expected, atol=1e-12)
    np.testing.assert_allclose(got[-11:-3], [1, 0, 0, 0, 0.5, 0.5, 0, 0.1875], atol=1e-15)
    np.testing.assert_allclose(got[-3:], [0.375, 0.0, 5.0 / 6.0], atol=1e-15)


def test_overlap_areas_analytic_base_cells() -> None:
    """2x4 lat-lon cells (quarter hemispheres) vs the 12 HEALPix base cells (area pi/3 each)."""
    a = latlon_healpix_overlap(LatLonGrid.equiangular(2, 4), 1, balance=False).toarray()
    # the northern cell centred on lon 0 holds half of the north polar cells 0 and 3 and
    # the northern half of the equatorial cell 4: pi/6 each
    col = a[:, 1 * 4 + 0]
    expected = np.zeros(12)
    expected[[0, 3, 4]] = np.pi / 6
    np.testing.assert_allclose(col, expected, atol=1e-14)
    # the southern cell centred on lon 90: south polar cells 8 and 9, equatorial cell 5
    col = a[:, 0 * 4 + 1]
    expected = np.zeros(12)
    expected[[8, 9, 5]] = np.pi / 6
    np.testing.assert_allclose(col, expected, atol=1e-14)


def test_conservative_latlon_to_latlon_is_exact_on_nested_grids() -> None:
    coarse, fine = LatLonGrid.equiangular(16, 32), LatLonGrid.equiangular(48, 96)
    x = torch.randn(2, *coarse.shape, dtype=torch.float64)
    up = Regridder(coarse, fine, "conservative")
    down = Regridder(fine, coarse, "conservative")
    torch.testing.assert_close(down(up(x)), x)  # averaging a piecewise-constant refinement
    z = torch.randn(2, *fine.shape, dtype=torch.float64)
    torch.testing.assert_close(global_mean_latlon(coarse, down(z)), global_mean_latlon(fine, z))
    other = LatLonGrid.gaussian(20)  # not nested: the mean is still preserved
    torch.testing.assert_close(
        global_mean_latlon(other, Regridder(fine, other, "conservative")(z)), global_mean_latlon(fine, z)
    )


# -- nearest ------------------------------------------------------------------------------------
def test_nearest_picks_the_containing_source_cell() -> None:
    ll, grid = LatLonGrid.equiangular(19, 36, poles=True), HealpixGrid(8, "ring")
    x = np.random.default_rng(2).standard_normal(ll.shape)
    y = Regridder(ll, grid, "nearest", healpix_layout="cells")(torch.as_tensor(x)).numpy()
    assert np.isin(y, x).all()
    # nearest centre in latitude and in (periodic) longitude = the containing cell; targets
    # on a cell boundary (e.g. lon 45 between the centres 40 and 50) may take either cell
    dlat = np.abs(grid.lat[:, None] - ll.lat[None, :])
    dlon = np.abs((grid.lon[:, None] - ll.lon[None, :] + 180.0) % 360.0 - 180.0)
    for k in range(grid.npix):
        rows = np.nonzero(dlat[k] <= dlat[k].min() + 1e-9)[0]
        cols = np.nonzero(dlon[k] <= dlon[k].min() + 1e-9)[0]
        assert y[k] in x[np.ix_(rows, cols)]
        if rows.size == cols.size == 1:
            assert y[k] == x[rows[0], cols[0]]
    h = np.random.default_rng(3).standard_normal(grid.npix)
    # a grid whose centres are off the HEALPix cell boundaries (healpy breaks ties differently)
    ll = LatLonGrid(LatLonGrid.gaussian(19).lat, 1.234 + np.arange(36) * 10.0)
    z = Regridder(grid, ll, "nearest", healpix_layout="cells")(torch.as_tensor(h)).numpy()
    lat, lon = ll.centers()
    np.testing.assert_array_equal(z, h[hp.ang2pix(8, lon, lat, nest=False, lonlat=True)])
    # lat-lon -> lat-lon
    dst = LatLonGrid.gaussian(10)
    w = Regridder(ll, dst, "nearest")(torch.as_tensor(x)).numpy()
    assert np.isin(w, x).all()


@pytest.mark.parametrize("method", METHODS)
def test_nan_stays_local(method: str) -> None:
    """A missing source value only reaches the targets whose stencil contains it."""
    ll = LatLonGrid.equiangular(32, 64)
    x = torch.zeros(*ll.shape, dtype=torch.float64)
    x[10, 20] = float("nan")
    for dst in (HealpixGrid(16), LatLonGrid.equiangular(16, 32), LatLonGrid.equiangular(64, 128)):
        y = Regridder(ll, dst, method)(x)
        n_nan = int(torch.isnan(y).sum())
        assert (method == "nearest" or n_nan >= 1) and n_nan <= 16, (dst, n_nan)
        assert torch.isfinite(y).sum() == y.numel() - n_nan


# -- autograd, dtypes, batch dimensions, module behaviour -----------------------------------------
PAIRS = {
    "ll->hpx": lambda: (LatLonGrid.equiangular(6, 12), HealpixGrid(2)),
    "ll->hpx up": lambda: (LatLonGrid.equiangular(4, 8), HealpixGrid(4)),
    "hpx->ll": lambda: (HealpixGrid(2), LatLonGrid.equiangular(7, 12, poles=True)),
    "ll->ll": lambda: (LatLonGrid.equiangular(6, 12), LatLonGrid.equiangular(5, 8, poles=True)),
}


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("pair", sorted(PAIRS))
def test_gradcheck(method: str, pair: str) -> None:
    src, dst = PAIRS[pair]()
    r = Regridder(src, dst, method)
    x = torch.randn(2, *r.src_shape, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(r, (x,), fast_mode=True)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("pair", sorted(PAIRS))
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
def test_dtype_and_batch_dims_preserved(method: str, pair: str, dtype: torch.dtype) -> None:
    src, dst = PAIRS[pair]()
    r = Regridder(src, dst, method)
    ref = r(torch.randn(2, 3, *r.src_shape, dtype=torch.float64))
    for batch in [(), (5,), (2, 3)]:
        x = torch.randn(*batch, *r.src_shape, dtype=dtype)
        y = r(x)
        assert y.dtype == dtype and tuple(y.shape) == (*batch, *r.dst_shape)
    x = torch.randn(2, 3, *r.src_shape, dtype=torch.float64)
    torch.testing.assert_close(r(x)[1, 2], r(x[1, 2]))  # batch elements are independent
    assert ref.shape == (2, 3, *r.dst_shape)


def test_module_buffers_cast_and_are_not_persistent() -> None:
    r = Regridder(LatLonGrid.equiangular(8, 16), HealpixGrid(2), "conservative")
    assert r.state_dict() == {}
    assert any(b.dtype == torch.float64 for b in r.buffers())
    r32 = r.to(torch.float32)
    assert all(b.dtype in (torch.float32, torch.int64) for b in r32.buffers())
    assert r32(torch.ones(8, 16)).dtype == torch.float32
    assert "conservative" in repr(r) and "nside=2" in repr(r)


def test_wrong_device_raises_grid_error() -> None:
    r = Regridder(LatLonGrid.equiangular(8, 16), HealpixGrid(2)).to("meta")
    with pytest.raises(GridError, match="meta"):
        r(torch.ones(8, 16))


def test_convenience_classes() -> None:
    ll, grid = LatLonGrid.equiangular(8, 16), HealpixGrid(2)
    x = torch.randn(8, 16, dtype=torch.float64)
    torch.testing.assert_close(
        LatLonToHealpix(ll, grid, "conservative")(x), Regridder(ll, grid, "conservative")(x)
    )
    assert HealpixToLatLon(grid, ll, healpix_layout="cells").dst_shape == (8, 16)
    assert LatLonToLatLon(ll, LatLonGrid.gaussian(4), "nearest").dst_shape == (4, 8)
    with pytest.raises(GridError, match="LatLonGrid"):
        LatLonToHealpix(grid, grid)
    with pytest.raises(GridError, match="HealpixGrid"):
        HealpixToLatLon(ll, ll)


# -- errors ---------------------------------------------------------------------------------------------
def test_shape_mismatch_raises_grid_error() -> None:
    ll, grid = LatLonGrid.equiangular(8, 16), HealpixGrid(2)
    with pytest.raises(GridError, match=r"expected a tensor shaped \[\.\.\., 8, 16\].*got \(3, 16, 8\)"):
        Regridder(ll, grid)(torch.randn(3, 16, 8))
    with pytest.raises(GridError, match=r"\[\.\.\., 12, 2, 2\].*got \(48,\)"):
        Regridder(grid, ll)(torch.randn(48))
    with pytest.raises(GridError, match=r"\[\.\.\., 48\].*got \(12, 2, 2\)"):
        Regridder(grid, ll, healpix_layout="cells")(torch.randn(12, 2, 2))
    with pytest.raises(GridError, match="got \\(16,\\)"):
        Regridder(ll, ll)(torch.randn(16))
    with pytest.raises(GridError, match="floating-point"):
        Regridder(ll, grid)(torch.ones(8, 16, dtype=torch.int64))


def test_bad_arguments_raise_grid_error() -> None:
    ll, grid = LatLonGrid.equiangular(8, 16), HealpixGrid(2)
    with pytest.raises(GridError, match=r"'linear'.*\['bilinear', 'conservative', 'nearest'\]"):
        Regridder(ll, grid, method="linear")
    with pytest.raises(GridError, match="healpix_layout"):
        Regridder(ll, grid, healpix_layout="nest")
    with pytest.raises(GridError, match="not supported"):
        Regridder(grid, HealpixGrid(4))
    with pytest.raises(GridError, match="src_grid must be"):
        Regridder((32, 64), grid)
    with pytest.raises(GridError, match="LatLonGrid"):
        latlon_healpix_overlap(grid, 2)
    with pytest.raises(GridError, match="power of two"):
        latlon_healpix_overlap(ll, 3)
