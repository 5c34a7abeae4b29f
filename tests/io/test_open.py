"""Tests of atmos.io.open: canonicalize and open_dataset (paths, URLs, catalog names)."""

from __future__ import annotations

import socket
import sys
import time
import warnings

import dask
import dask.array as da
import numpy as np
import pandas as pd
import pytest
import xarray as xr

from atmos.errors import CatalogError, DataError, SourceError
from atmos.io import open as atmos_open
from atmos.io.open import canonicalize, open_dataset, select
from atmos.testing import mock_era5
from atmos.testing._styles import to_era5_invariants, to_era5_short_names, to_merra2

CANONICAL_ORDER = ("time", "member", "level", "latitude", "longitude", "cell")


def _raise_on_compute(*args, **kwargs):
    raise AssertionError("dask computed something while it should only build a graph")


def no_compute():
    """Any dask computation inside this context fails the test."""
    return dask.config.set(scheduler=_raise_on_compute)


@pytest.fixture(scope="module")
def wb2():
    return mock_era5(periods=8, levels=(250, 500, 850))


@pytest.fixture(scope="module")
def ref(wb2):
    return mock_era5(periods=8, levels=(250, 500, 850), canonical=True)


def assert_canonical_layout(ds: xr.Dataset) -> None:
    lat = ds["latitude"].values
    lon = ds["longitude"].values
    assert np.all(np.diff(lat) > 0), "latitude must be ascending"
    assert np.all(np.diff(lon) > 0) and lon.min() >= 0 and lon.max() < 360
    if "level" in ds.dims:
        assert np.all(np.diff(ds["level"].values) > 0)
        assert ds["level"].attrs["units"] == "hPa"
    for name, var in ds.data_vars.items():
        ranks = [CANONICAL_ORDER.index(d) for d in var.dims if d in CANONICAL_ORDER]
        assert ranks == sorted(ranks), (name, var.dims)
        assert var.dims[-2:] == ("latitude", "longitude"), (name, var.dims)
        assert isinstance(var.data, da.Array), f"{name} is not lazy"
        assert "units" in var.attrs and "standard_name" in var.attrs, name


def _merged_era5(fields: xr.Dataset, invariants: xr.Dataset) -> xr.Dataset:
    return xr.merge([fields, invariants], compat="override", join="exact")


# -- in-memory round trips ---------------------------------------------------------------
def test_canonical_input_is_reordered_and_otherwise_unchanged(wb2, ref):
    with no_compute():
        out = canonicalize(wb2)
    assert out.attrs["atmos_style"] == "canonical"
    xr.testing.assert_identical(out[list(ref.data_vars)].drop_attrs(), ref.drop_attrs())
    assert_canonical_layout(out)
    assert out.attrs["title"] == wb2.attrs["title"]
    xr.testing.assert_identical(canonicalize(out), out)  # idempotent


def test_merra2_names_round_trip(wb2, ref):
    raw = to_merra2(wb2)
    assert raw["lon"].min() < 0 and raw["lev"].values[0] == 850  # really MERRA-2 shaped
    assert float(raw["H"].isel(time=0, lev=0, lat=0, lon=0).data.compute(scheduler="sync")) < 2000
    with no_compute():
        out = canonicalize(raw)
    assert out.attrs["atmos_style"] == "merra2"
    assert_canonical_layout(out)
    xr.testing.assert_allclose(out, ref)


def test_era5_short_names_round_trip(wb2, ref):
    fields, inv = to_era5_short_names(wb2), to_era5_invariants(wb2)
    assert fields["latitude"].values[0] > 0 and "valid_time" in fields.dims and "z" in inv
    with no_compute():
        out = _merged_era5(canonicalize(fields), canonicalize(inv))
    assert_canonical_layout(out)
    xr.testing.assert_allclose(out, ref)
    assert out["geopotential_at_surface"].dims == ("latitude", "longitude")
    assert out["geopotential"].attrs["units"] == "m2 s-2"


def test_longitude_minus180_is_rolled_lazily(ref):
    src = ref.assign_coords(longitude=np.where(ref.longitude >= 180, ref.longitude - 360, ref.longitude))
    src = src.sortby("longitude")
    assert src["longitude"].values[0] == -180
    with no_compute():
        out = canonicalize(src)
    xr.testing.assert_allclose(out, ref)


def test_cyclic_longitude_point_is_dropped(ref):
    extra = ref.isel(longitude=[0]).assign_coords(longitude=[360.0])
    src = xr.concat([ref, extra], dim="longitude", data_vars="all", coords="different", compat="equals")
    with pytest.warns(UserWarning, match=r"longitudes \[0.0\] appear twice"):
        out = canonicalize(src)
    xr.testing.assert_allclose(out, ref)


def test_pressure_in_pa_becomes_hpa_and_cmip_names_map(ref):
    src = ref[["temperature", "2m_temperature"]].rename(
        {"temperature": "ta", "2m_temperature": "tas", "level": "plev", "latitude": "lat", "longitude": "lon"}
    )
    src = src.assign_coords(plev=("plev", src["plev"].values * 100.0, {"units": "Pa"}))
    out = canonicalize(src)
    assert out.attrs["atmos_style"] == "cmip6"
    assert out["level"].dtype == np.int64 and out["level"].values.tolist() == [250, 500, 850]
    xr.testing.assert_allclose(out, ref[["temperature", "2m_temperature"]])


def test_pressure_without_units_in_pa_is_detected(ref):
    src = ref[["temperature"]].assign_coords(level=("level", ref["level"].values * 100.0, {}))
    assert canonicalize(src)["level"].values.tolist() == [250, 500, 850]


def test_member_dimension_and_dim_order(ref):
    src = xr.concat([ref[["temperature"]]] * 3, dim="number").transpose("longitude", "number", ...)
    with no_compute():
        out = canonicalize(src)
    assert out["temperature"].dims == ("time", "member", "level", "latitude", "longitude")


def test_cf_attributes_find_unnamed_coordinates(ref):
    src = ref[["2m_temperature"]].rename({"latitude": "y", "longitude": "x"})
    src["y"].attrs = {"standard_name": "latitude", "units": "degrees_north"}
    src["x"].attrs = {"units": "degrees_east"}
    out = canonicalize(src)
    xr.testing.assert_allclose(out, ref[["2m_temperature"]])


def test_healpix_cell_dimension_needs_no_latlon():
    npix = 12 * 4**2
    data = da.zeros((3, 2, npix), chunks=(1, 2, npix), dtype=np.float32)
    src = xr.Dataset(
        {"t": (("cells", "valid_time", "pressure_level"), data.transpose(2, 0, 1))},
        coords={
            "valid_time": pd.date_range("2020", periods=3, freq="6h"),
            "pressure_level": [850.0, 500.0],
            "cell_ids": ("cells", np.arange(npix), {"grid_name": "healpix", "level": 2}),
        },
    )
    with no_compute():
        out = canonicalize(src)
    assert out["temperature"].dims == ("time", "level", "cell")
    assert out["level"].values.tolist() == [500, 850]


# -- errors ------------------------------------------------------------------------------
def test_no_latitude_longitude_is_an_error(ref):
    src = ref[["2m_temperature"]].rename({"latitude": "south_north", "longitude": "west_east"})
    for c in ("south_north", "west_east"):
        src[c].attrs = {}  # nothing left for cf_xarray to recognise
    with pytest.raises(DataError, match="no recognisable latitude and longitude.*'south_north'"):
        canonicalize(src)


def test_duplicated_time_is_an_error_naming_the_stamp(ref):
    src = xr.concat([ref.isel(time=slice(0, 3)), ref.isel(time=[2])], dim="time", data_vars="minimal")
    with pytest.raises(
        DataError, match=r"time stamps 2020-01-01 12:00:00 appear more than once.*drop_duplicates"
    ):
        canonicalize(src)


def test_non_monotonic_time_is_an_error_naming_the_stamps(ref):
    src = ref.isel(time=[0, 2, 1, 3])
    with pytest.raises(DataError, match=r"2020-01-01 12:00:00 is followed by 2020-01-01 06:00:00.*sortby"):
        canonicalize(src)


def test_missing_variable_lists_those_present(ref):
    with pytest.raises(DataError, match=r"\['dewpoint'\] are not in the dataset; it has \['10m_u_component"):
        select(ref, ["temperature", "dewpoint"])


def test_path_that_does_not_exist(tmp_path):
    with pytest.raises(SourceError, match="nothing.zarr' does not exist"):
        open_dataset(tmp_path / "nothing.zarr")
    with pytest.raises(SourceError, match="no files match"):
        open_dataset(str(tmp_path / "MERRA2_*.nc4"))
    with pytest.raises(SourceError, match=r"do not exist"):
        open_dataset([tmp_path / "a.nc", tmp_path / "b.nc"])


def test_unknown_catalog_name_lists_the_names():
    with pytest.raises(CatalogError, match=r"'era6' is neither a catalog entry.*'speedy-world-val'"):
        open_dataset("era6")


def test_unreachable_url_fails_fast_with_a_clear_message():
    with socket.socket() as s:  # find a free port, then close it: nothing listens there
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    t0 = time.perf_counter()
    with pytest.raises(
        SourceError, match=rf"cannot reach 'https://127.0.0.1:{port}/era5.zarr'.*127.0.0.1:{port}"
    ):
        open_dataset(f"https://127.0.0.1:{port}/era5.zarr")
    assert time.perf_counter() - t0 < 5.0


def test_gs_url_probes_the_google_endpoint(monkeypatch):
    seen = []

    def fake_connect(address, timeout=None):
        seen.append((address, timeout))
        raise OSError("network is unreachable")

    monkeypatch.setattr(socket, "create_connection", fake_connect)
    monkeypatch.setenv("ATMOS_CONNECT_TIMEOUT", "2")
    with pytest.raises(
        SourceError, match="cannot reach 'gs://weatherbench2/x.zarr'.*storage.googleapis.com:443"
    ):
        open_dataset("gs://weatherbench2/x.zarr")
    assert seen == [(("storage.googleapis.com", 443), 2.0)]


def test_missing_fsspec_backend_names_the_package(monkeypatch):
    monkeypatch.setattr(atmos_open, "_probe", lambda *a, **k: None)
    monkeypatch.setitem(sys.modules, "gcsfs", None)  # makes `import gcsfs` fail
    with pytest.raises(SourceError, match="pip install gcsfs"):
        open_dataset("era5-wb2-64x32")


# -- files -------------------------------------------------------------------------------
def _write(ds: xr.Dataset, path, fmt: str):
    ds = ds.copy()
    for v in ds.variables.values():
        v.encoding = {}
    if fmt == "zarr":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds.to_zarr(path, mode="w", consolidated=False)
    else:
        ds.to_netcdf(path)
    return path


@pytest.mark.parametrize("fmt", ["zarr", "nc"])
def test_files_in_both_styles_open_to_the_canonical_cube(wb2, ref, tmp_path, fmt):
    with dask.config.set(scheduler="sync"):  # writing computes, of course
        m = _write(to_merra2(wb2), tmp_path / f"merra2.{fmt}", fmt)
        f = _write(to_era5_short_names(wb2), tmp_path / f"era5.{fmt}", fmt)
        i = _write(to_era5_invariants(wb2), tmp_path / f"era5-invariants.{fmt}", fmt)
    with no_compute():
        from_merra2 = open_dataset(m)
        from_era5 = _merged_era5(open_dataset(f), open_dataset(i))
    for out in (from_merra2, from_era5):
        assert_canonical_layout(out)
    assert from_merra2.attrs["atmos_source"] == str(m)
    with dask.config.set(scheduler="sync"):
        xr.testing.assert_allclose(from_merra2, ref)
        xr.testing.assert_allclose(from_era5, ref)


def test_store_chunks_are_kept_and_chunks_can_be_overridden(wb2, tmp_path):
    with dask.config.set(scheduler="sync"):
        path = _write(to_merra2(wb2).chunk({"time": 2}), tmp_path / "m.zarr", "zarr")
    with no_compute():
        out = open_dataset(path)
    assert out["temperature"].chunksizes["time"] == (2, 2, 2, 2)
    again = open_dataset(path, chunks={"time": 4})
    assert again["temperature"].chunksizes["time"] == (4, 4)
    with pytest.raises(DataError, match="chunks=.*canonical dimension names"):
        open_dataset(path, chunks={"lev": 1})
    eager = open_dataset(path, chunks=None, variables=["2m_temperature"])
    assert not isinstance(eager["2m_temperature"].variable._data, da.Array)


def test_in_memory_dataset_and_file_url(wb2, ref, tmp_path):
    out = open_dataset(to_merra2(wb2), variables=["temperature"])
    xr.testing.assert_allclose(out, ref[["temperature"]])
    assert "atmos_source" not in out.attrs
    with dask.config.set(scheduler="sync"):
        path = _write(to_merra2(wb2), tmp_path / "m.nc", "nc")
    via_url = open_dataset(f"file://{path}", variables=["temperature"])
    xr.testing.assert_allclose(via_url, ref[["temperature"]])


def test_non_pressure_vertical_coordinate_is_left_alone(ref):
    src = ref[["temperature"]].rename({"temperature": "ta", "level": "lev"})
    src = src.assign_coords(lev=("lev", [0.2, 0.5, 0.9], {"units": "1", "long_name": "sigma"}))
    with pytest.warns(UserWarning, match="'lev' has units '1'.*not a pressure"):
        out = canonicalize(src)
    assert "lev" in out.dims and "level" not in out.dims
    assert out["temperature"].dims == ("time", "lev", "latitude", "longitude")


def test_glob_of_netcdf_files_is_opened_as_one_cube(wb2, ref, tmp_path):
    raw = to_merra2(wb2)
    with dask.config.set(scheduler="sync"):
        _write(raw.isel(time=slice(0, 4)), tmp_path / "MERRA2_400.a.nc4", "nc")
        _write(raw.isel(time=slice(4, 8)), tmp_path / "MERRA2_400.b.nc4", "nc")
    out = open_dataset(str(tmp_path / "MERRA2_*.nc4"))
    assert out.sizes["time"] == 8
    xr.testing.assert_allclose(out, ref)
    same = open_dataset(tmp_path)  # a folder of netCDF files
    xr.testing.assert_allclose(same, ref)


def test_variables_and_time_selection(wb2, tmp_path):
    with dask.config.set(scheduler="sync"):
        path = _write(to_era5_short_names(wb2), tmp_path / "e.zarr", "zarr")
    out = open_dataset(
        path, variables=["2m_temperature", "geopotential"], time=slice("2020-01-01T06", "2020-01-02")
    )
    assert list(out.data_vars) == ["2m_temperature", "geopotential"]
    assert out.sizes["time"] == 7  # 06, 12, 18 on Jan 1 and the whole of Jan 2
    one = open_dataset(path, variables="temperature", time="2020-01-01T06:00")
    assert one["temperature"].dims[0] == "time" and one.sizes["time"] == 1
    with pytest.raises(DataError, match=r"\['t2m'\] are not in the dataset; it has .*'2m_temperature'"):
        open_dataset(path, variables=["t2m"])
    with pytest.raises(DataError, match="selects no time step; the data covers 2020-01-01"):
        open_dataset(path, time=slice("2021-01-01", "2021-02-01"))


# -- the real SPEEDY-world cube ---------------------------------------------------------------
@pytest.mark.requires_speedy
def test_speedy_world_val_opens_by_catalog_name():
    ds = open_dataset("speedy-world-val")
    assert len(ds.data_vars) == 16
    assert ds.attrs["atmos_style"] == "canonical"
    assert ds.attrs["atmos_source"].startswith("speedy-world-val (")
    assert "simulated" in ds.attrs["notes"].lower() or "simulated" in ds.attrs["title"].lower()
    assert_canonical_layout(ds)
    assert ds.sizes == {"time": 128, "level": 5, "latitude": 32, "longitude": 64}
    assert ds["level"].values.tolist() == [250, 500, 700, 850, 1000]
    assert ds["geopotential"].dims == ("time", "level", "latitude", "longitude")
    assert ds["land_sea_mask"].dims == ("latitude", "longitude")
    assert ds["temperature"].chunksizes["time"][0] == 32  # the store's chunks


@pytest.mark.requires_speedy
def test_speedy_world_values_are_physical():
    ds = open_dataset("speedy-world-val", variables=["2m_temperature", "geopotential"], time="2020-01-01")
    with dask.config.set(scheduler="sync"):
        t2m = ds["2m_temperature"].values
        z500 = ds["geopotential"].sel(level=500).values / 9.80665
    assert 180 < t2m.min() and t2m.max() < 340
    assert 4500 < z500.mean() < 6000  # metres
