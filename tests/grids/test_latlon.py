"""Tests of atmos.grids.latlon: grid kinds, coordinates, cell bounds, area weights, errors."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.special import roots_legendre

from atmos.errors import GridError
from atmos.grids.latlon import LatLonGrid

GRIDS = {
    "wb2-64x32": lambda: LatLonGrid.equiangular(32, 64),
    "wb2-240x121": lambda: LatLonGrid.equiangular(121, 240, poles=True),
    "era5-1440x721": lambda: LatLonGrid.equiangular(721, poles=True),
    "gaussian-48": lambda: LatLonGrid.gaussian(48),
    "custom": lambda: LatLonGrid([-80.0, -10.0, 0.0, 45.0, 89.0], np.arange(8) * 45.0),
}


def _quad_cell_area(lat0: float, lat1: float, dlon: float) -> float:
    """Cell area on the unit sphere by Gauss-Legendre quadrature of cos(lat) (independent of sin)."""
    x, w = roots_legendre(8)
    a, b = np.radians(lat0), np.radians(lat1)
    lat = 0.5 * (b - a) * x + 0.5 * (b + a)
    return float(0.5 * (b - a) * np.sum(w * np.cos(lat)) * np.radians(dlon))


# -- coordinates of the standard grids -------------------------------------------------
def test_equiangular_64x32_matches_weatherbench2() -> None:
    g = LatLonGrid.equiangular(32, 64)
    assert g.kind == "equiangular" and g.shape == (32, 64)
    assert g.lat[0] == pytest.approx(-87.1875) and g.lat[-1] == pytest.approx(87.1875)
    np.testing.assert_allclose(np.diff(g.lat), 5.625)
    np.testing.assert_allclose(g.lon, np.arange(64) * 5.625)
    np.testing.assert_allclose(g.lat_bounds[[0, 1, -1]], [-90.0, -84.375, 90.0])
    np.testing.assert_allclose(g.lon_bounds[[0, -1]], [-2.8125, 357.1875])


def test_equiangular_with_poles() -> None:
    g = LatLonGrid.equiangular(721, poles=True)
    assert g.kind == "equiangular_with_poles" and g.shape == (721, 1440)
    assert (g.lat[0], g.lat[-1]) == (-90.0, 90.0)
    np.testing.assert_allclose(np.diff(g.lat), 0.25)
    np.testing.assert_allclose(g.lat_bounds[:3], [-90.0, -89.875, -89.625])
    # the polar cells are half as tall as the others
    assert np.diff(g.lat_bounds)[0] == pytest.approx(0.5 * np.diff(g.lat_bounds)[1])
    g121 = LatLonGrid.equiangular(121, poles=True)
    assert g121.shape == (121, 240) and g121.lat[60] == 0.0


def test_gaussian_nodes_are_legendre_roots() -> None:
    for n in (2, 32, 96):
        g = LatLonGrid.gaussian(n)
        x, _ = roots_legendre(n)
        np.testing.assert_allclose(np.sin(np.radians(g.lat)), np.sort(x), atol=1e-13)
        np.testing.assert_allclose(g.lat, -g.lat[::-1], atol=1e-12)  # symmetric
        assert g.shape == (n, 2 * n) and g.kind == "gaussian"


def test_centers() -> None:
    g = LatLonGrid.equiangular(4, 8)
    lat2, lon2 = g.centers()
    assert lat2.shape == lon2.shape == (4, 8)
    assert (lat2[:, 3] == g.lat).all() and (lon2[2] == g.lon).all()


# -- area weights ------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(GRIDS))
def test_area_weights_sum_to_one_and_match_exact_cell_areas(name: str) -> None:
    g = GRIDS[name]()
    w = g.area_weights()
    assert w.shape == g.shape
    assert w.sum() == pytest.approx(1.0, abs=1e-13)
    assert (w > 0).all()  # pole cells too (cos(lat) weights would give them 0)
    b = g.lat_bounds
    dlon = 360.0 / g.nlon
    rows = [_quad_cell_area(b[i], b[i + 1], dlon) / (4.0 * np.pi) for i in range(g.nlat)]
    np.testing.assert_allclose(w[:, 0], rows, rtol=1e-10)
    assert np.ptp(w, axis=1).max() == 0.0  # constant along longitude


def test_area_weights_pole_cell_is_a_cap_wedge() -> None:
    g = LatLonGrid.equiangular(121, 240, poles=True)
    half = np.radians(0.75)  # polar cell: 90 - 0.75 .. 90
    cap = 2.0 * np.pi * (1.0 - np.cos(half))
    assert g.area_weights()[-1, 0] == pytest.approx(cap / 240 / (4.0 * np.pi), rel=1e-12)


def test_area_weights_returns_a_copy() -> None:
    g = LatLonGrid.equiangular(8, 16)
    g.area_weights()[:] = 0.0
    assert g.area_weights().sum() == pytest.approx(1.0)


# -- recognition -----------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(GRIDS))
def test_from_coords_recognises_kind(name: str) -> None:
    g = GRIDS[name]()
    r = LatLonGrid.from_coords(g.lat, g.lon)
    assert r.kind == g.kind and r == g
    # coordinates stored as float32 (as in many netCDF/zarr files) are recognised too
    r32 = LatLonGrid.from_coords(g.lat.astype(np.float32), g.lon.astype(np.float32))
    assert r32.kind == g.kind


def test_from_coords_custom_latitudes() -> None:
    lat = np.array([-60.0, -20.0, 0.0, 30.0])
    g = LatLonGrid.from_coords(lat, np.arange(4) * 90.0)
    assert g.kind == "custom"
    np.testing.assert_allclose(g.lat_bounds, [-90.0, -40.0, -10.0, 15.0, 90.0])


def test_dict_round_trip_and_equality() -> None:
    for make in GRIDS.values():
        g = make()
        h = LatLonGrid.from_dict(g.to_dict())
        assert h == g and hash(h) == hash(g) and h.kind == g.kind
    assert LatLonGrid.equiangular(32, 64) != LatLonGrid.gaussian(32)
    assert LatLonGrid.equiangular(32, 64) != "LatLonGrid"


# -- errors --------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("lat", "lon", "match"),
    [
        ([10.0, 0.0, -10.0], [0.0, 120.0, 240.0], "ascending"),
        ([-95.0, 0.0, 10.0], [0.0, 120.0, 240.0], r"\[-90, 90\]"),
        ([-10.0, 0.0, 10.0], [-120.0, 0.0, 120.0], "longitude"),
        ([-10.0, 0.0, 10.0], [0.0, 120.0, 360.0], "longitude"),
        ([-10.0, 0.0, 10.0], [0.0, 100.0, 240.0], "equally spaced"),
        ([-10.0, 0.0, 10.0], [0.0, 10.0, 20.0], "cover the globe"),
        ([[0.0, 1.0]], [0.0, 180.0], "1-D"),
        ([], [0.0, 180.0], "non-empty"),
        ([np.nan, 0.0, 10.0], [0.0, 180.0], "finite"),
        ([-10.0, 0.0, 10.0], [0.0, np.inf], "finite"),
    ],
)
def test_bad_coordinates_raise_grid_error(lat: list, lon: list, match: str) -> None:
    with pytest.raises(GridError, match=match):
        LatLonGrid(np.asarray(lat), np.asarray(lon))


def test_bad_sizes_raise_grid_error() -> None:
    with pytest.raises(GridError, match="nlat"):
        LatLonGrid.equiangular(1)
    with pytest.raises(GridError, match="nlat"):
        LatLonGrid.gaussian(0)
    with pytest.raises(ValueError):  # GridError is a ValueError
        LatLonGrid.from_coords([0.0, 1.0], [0.0, 1.0])


def test_area_weights_are_cached_per_grid_definition_and_handed_out_as_copies() -> None:
    """Equal grids (e.g. one built per ``grid_of(ds)`` call) share one cached computation, and
    no caller ever gets the cached array itself (torch-harmonics' ``lru_cache(copy=True)``)."""
    from atmos.grids.healpix import HealpixGrid
    from atmos.grids.latlon import _cell_areas

    _cell_areas.cache_clear()
    first = LatLonGrid.equiangular(32, 64)
    w = first.area_weights()
    w[:] = -1.0  # a caller mutating its weights...
    first.lat_weights()[:] = -1.0
    again = LatLonGrid.from_coords(first.lat, first.lon)  # a new, equal grid
    expected = np.sin(np.radians(first.lat_bounds[1:])) - np.sin(np.radians(first.lat_bounds[:-1]))
    np.testing.assert_allclose(again.area_weights(), np.repeat(expected[:, None] / 2 / 64, 64, axis=1), rtol=1e-12)
    np.testing.assert_allclose(again.lat_weights(), expected / 2, rtol=1e-12)
    assert _cell_areas.cache_info().misses == 1  # ...computed once for both grids
    assert again.area_weights().flags.writeable and again.area_weights() is not again.area_weights()
    hp = HealpixGrid(4)
    hp.area_weights()[:] = 0.0
    assert hp.area_weights().sum() == pytest.approx(1.0)
