"""Every netCDF atmos writes is losslessly compressed, CF-labelled and written atomically."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from atmos.io.write import write_netcdf


def _smooth():
    x = np.linspace(0, 4 * np.pi, 200)
    return xr.Dataset({"v": (("a", "b"), np.sin(x)[:, None] * np.cos(x)[None, :])}, attrs={"title": "t"})


def test_values_unchanged_file_compressed_and_cf_labelled(tmp_path):
    ds = _smooth()
    plain = tmp_path / "plain.nc"
    ds.to_netcdf(plain, engine="netcdf4")
    path = write_netcdf(ds, tmp_path / "c.nc", what="atmos test")
    back = xr.open_dataset(path)
    np.testing.assert_array_equal(back["v"].values, ds["v"].values)  # lossless
    assert back.attrs["Conventions"] == "CF-1.11" and back.attrs["title"] == "t"
    assert "atmos test" in back.attrs["history"]
    assert back["v"].encoding["zlib"] and back["v"].encoding["shuffle"]
    assert path.stat().st_size < plain.stat().st_size
    assert "Conventions" not in ds.attrs  # the input is not modified


def test_failed_write_leaves_no_file(tmp_path):
    ds = xr.Dataset({"v": ("a", np.array([object(), object()]))})  # not writable to netCDF
    with pytest.raises(Exception):
        write_netcdf(ds, tmp_path / "x.nc")
    assert list(tmp_path.iterdir()) == []
