"""atmos HEALPix data and xdggs: atmos outputs decode with xdggs, xdggs-encoded inputs open in atmos.

atmos writes HEALPix data with a ``cell`` dimension and a ``cell_ids`` coordinate whose
attributes come from :meth:`atmos.grids.HealpixGrid.xdggs_attrs`; ``xdggs.decode`` (0.6)
must read them. Datasets encoded by xdggs (dimension ``cells``, only ``cell_ids``, any
order, or the CF healpix convention) must open as atmos HEALPix cubes
(:mod:`atmos.io.dggs`).
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from atmos.errors import DataError
from atmos.grids import HealpixGrid
from atmos.io.coords import grid_of
from atmos.io.dggs import from_dggs, is_dggs_healpix
from atmos.io.open import open_dataset

xdggs = pytest.importorskip("xdggs")

SPEEDY_VAL = "speedy-world-2019-12.zarr"


def _lon_diff(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.abs((np.asarray(a) - np.asarray(b) + 180.0) % 360.0 - 180.0)


def _healpix_cube(nside: int = 4, order: str = "nest", nt: int = 2) -> xr.Dataset:
    """A small atmos HEALPix cube (the coordinates atmos's writers use)."""
    from atmos.rollout.layout import grid_coords

    g = HealpixGrid(nside, order)
    dims, coords = grid_coords(g)
    rng = np.random.default_rng(0)
    t = np.datetime64("2020-01-01") + np.arange(nt) * np.timedelta64(6, "h")
    ds = xr.Dataset(
        {
            "2m_temperature": (("time", "cell"), (280 + rng.standard_normal((nt, g.npix))).astype(np.float32),
                               {"units": "K"}),
            "temperature": (("time", "level", "cell"), (250 + rng.standard_normal((nt, 2, g.npix))).astype(np.float32),
                            {"units": "K"}),
        },
        coords={"time": t, "level": [500, 850], **coords},
    )
    return ds


@pytest.fixture(scope="module")
def speedy_healpix() -> xr.Dataset:
    root = os.environ.get("ATMOS_DATA")
    if not root or not (Path(root) / SPEEDY_VAL).exists():
        pytest.skip(f"SPEEDY-world data not available ({SPEEDY_VAL} not under $ATMOS_DATA)")
    from atmos.io.regrid import to_healpix

    ds = open_dataset(Path(root) / SPEEDY_VAL, variables=["2m_temperature", "geopotential"],
                      time=slice("2020-01-01T00", "2020-01-01T06"))
    return to_healpix(ds, 8).compute()


@pytest.mark.parametrize("order", ["nest", "ring"])
def test_atmos_healpix_grid_decodes_with_xdggs(order):
    ds = _healpix_cube(nside=8, order=order)
    g = HealpixGrid(8, order)
    d = xdggs.decode(ds)
    info = d.dggs.grid_info
    assert info.level == 3 and info.nside == 8
    assert info.indexing_scheme == ("nested" if order == "nest" else "ring")
    c = d.dggs.cell_centers()
    assert np.abs(c.latitude.values - g.lat).max() < 1e-12
    assert _lon_diff(c.longitude.values, g.lon).max() < 1e-12
    # xdggs's own encoding of the grid info is what atmos writes
    assert d.dggs.encode("xdggs")["cell_ids"].attrs == g.xdggs_attrs()


def test_speedy_to_healpix_decodes_and_round_trips(speedy_healpix, tmp_path):
    h = speedy_healpix
    d = xdggs.decode(h)
    assert d.dggs.grid_info.level == 3 and d.dggs.grid_info.indexing_scheme == "nested"
    c = d.dggs.cell_centers()
    dlat = float(np.abs(c.latitude.values - h.latitude.values).max())
    dlon = float(_lon_diff(c.longitude.values, h.longitude.values).max())
    assert dlat < 1e-12 and dlon < 1e-12
    # sel_latlon picks the cell containing the point: compare with atmos's cell centres
    pts_lat, pts_lon = np.array([10.0, -45.0, 80.0]), np.array([20.0, 200.0, 359.0])
    sel = d.dggs.sel_latlon(latitude=pts_lat, longitude=pts_lon)
    ids = np.asarray(sel.cell_ids.values)
    from healpix_geo import nested

    want = np.asarray(nested.lonlat_to_healpix(pts_lon, pts_lat, 3), dtype=np.int64)
    np.testing.assert_array_equal(ids, want)
    np.testing.assert_array_equal(sel["2m_temperature"].values, h["2m_temperature"].isel(cell=want).values)
    # written to zarr and read back (attrs survive): decodes again, and atmos reopens it unchanged
    path = tmp_path / "hpx.zarr"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        h.to_zarr(path, mode="w", consolidated=True)
    back = xr.open_zarr(path)
    assert xdggs.decode(back).dggs.grid_info == d.dggs.grid_info
    again = open_dataset(path)
    assert grid_of(again) == HealpixGrid(8)
    np.testing.assert_array_equal(again["geopotential"].values, h["geopotential"].values)


def _as_xdggs(ds: xr.Dataset, perm: np.ndarray) -> xr.Dataset:
    """What xdggs users typically hold: dimension ``cells``, only ``cell_ids``, cells in any order."""
    return ds.drop_vars(["latitude", "longitude"]).rename_dims(cell="cells").isel(cells=perm)


@pytest.mark.parametrize("order", ["nest", "ring"])
def test_xdggs_encoded_inputs_open_as_atmos_healpix(order, tmp_path):
    ref = _healpix_cube(nside=4, order=order)
    perm = np.random.default_rng(1).permutation(ref.sizes["cell"])
    x = _as_xdggs(ref, perm)
    assert is_dggs_healpix(x)
    for src in (x, xdggs.decode(x)):  # plain attrs, or decoded with a DGGS index
        out = open_dataset(src)
        assert grid_of(out) == HealpixGrid(4, order)
        assert out["temperature"].dims == ("time", "level", "cell")
        assert out.cell_ids.attrs == HealpixGrid(4, order).xdggs_attrs()
        np.testing.assert_array_equal(out.cell_ids.values, np.arange(ref.sizes["cell"]))
        np.testing.assert_array_equal(out["temperature"].values, ref["temperature"].values)
        np.testing.assert_allclose(out.latitude.values, ref.latitude.values, rtol=0, atol=1e-12)
    # a zarr store written from xdggs (the CF convention too)
    enc = xdggs.decode(x).dggs.encode(convention="cf")
    assert not is_dggs_healpix(ref.drop_vars("cell_ids"))
    path = tmp_path / "cf.zarr"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        enc.to_zarr(path, mode="w", consolidated=True)
    out = open_dataset(path)
    assert grid_of(out) == HealpixGrid(4, order) and "crs" not in out.variables
    np.testing.assert_array_equal(out["2m_temperature"].values, ref["2m_temperature"].values)


def test_atmos_cube_is_left_unchanged():
    ref = _healpix_cube()
    assert from_dggs(ref) is ref


def test_xdggs_inputs_atmos_cannot_use():
    ref = _healpix_cube(nside=2)
    part = ref.isel(cell=slice(0, 10))
    with pytest.raises(DataError, match="full sphere"):
        open_dataset(part)
    z = ref.copy()
    z["cell_ids"].attrs = {"grid_name": "healpix", "level": None, "indexing_scheme": "zuniq"}
    with pytest.raises(DataError, match="indexing_scheme='zuniq'"):
        from_dggs(z)
    e = ref.copy()
    e["cell_ids"].attrs = {**HealpixGrid(2).xdggs_attrs(), "ellipsoid": "WGS84"}
    with pytest.raises(DataError, match="ellipsoid"):
        from_dggs(e)
    old = ref.copy()  # older xdggs attribute names
    old["cell_ids"].attrs = {"grid_name": "healpix", "nside": 2, "nest": True}
    assert grid_of(from_dggs(old)) == HealpixGrid(2)
