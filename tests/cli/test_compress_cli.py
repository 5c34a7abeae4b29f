"""``atmos compress`` and the ``--information`` option of ``atmos climatology`` and ``atmos rollout``."""

from __future__ import annotations

import json

import numpy as np
import pytest
import xarray as xr

from atmos.cli.main import main


@pytest.fixture
def cube(tmp_path):
    from atmos.testing import mock_era5

    ds = mock_era5("2020-01-01", periods=8, nlat=16, nlon=32, levels=(500, 850),
                   variables=["geopotential", "temperature", "2m_temperature"], canonical=True).load()
    path = tmp_path / "cube.zarr"
    ds.to_zarr(path)
    return path, ds


def test_compress_lossless_and_lossy(cube, tmp_path, capsys):
    path, ds = cube
    assert main(["compress", str(path), str(tmp_path / "l.zarr")]) == 0
    back = xr.open_zarr(tmp_path / "l.zarr").load()
    for name in ds.data_vars:
        np.testing.assert_array_equal(back[name].values, ds[name].values)
    assert main(["compress", str(path), str(tmp_path / "b.nc"), "--information", "0.99"]) == 0
    out = capsys.readouterr().out
    assert "ratio" in out and "keepbits" in out and "temperature" in out
    with xr.open_dataset(tmp_path / "b.nc") as b:
        rec = json.loads(b.attrs["atmos_compression"])
        assert rec["information"] == 0.99 and "atmos_keepbits" in b["temperature"].attrs
        assert rec["variables"]["temperature"]["keepbits"] < 23


@pytest.mark.parametrize("bad", ["0", "1.01", "-3", "most"])
def test_compress_bad_information(cube, tmp_path, capsys, bad):
    path, _ = cube
    with pytest.raises(SystemExit) as e:
        main(["compress", str(path), str(tmp_path / "x.zarr"), "--information", bad])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "--information" in err and "(0, 1]" in err and "0.99" in err
    assert not (tmp_path / "x.zarr").exists()


def test_compress_existing_output(cube, tmp_path, capsys):
    path, _ = cube
    assert main(["compress", str(path), str(tmp_path / "l.zarr")]) == 0
    assert main(["compress", str(path), str(tmp_path / "l.zarr")]) == 2
    assert "--overwrite" in capsys.readouterr().err


def test_climatology_information(tmp_path):
    from atmos.io.climatology import load_climatology, save_climatology

    rng = np.random.default_rng(0)
    doy = np.arange(1, 367)
    smooth = 280 + 10 * np.cos(2 * np.pi * doy / 366)[None, :, None, None] + rng.normal(0, 1, (4, 366, 16, 32))
    clim = xr.Dataset({"2m_temperature": (("hour", "dayofyear", "latitude", "longitude"), smooth.astype("f4"))},
                      coords={"hour": [0, 6, 12, 18], "dayofyear": doy,
                              "latitude": np.linspace(-80, 80, 16), "longitude": np.arange(32) * 11.25})
    save_climatology(clim, tmp_path / "c.nc", information=0.999)
    with xr.open_dataset(tmp_path / "c.nc") as c:
        rec = json.loads(c.attrs["atmos_compression"])
        assert rec["information"] == 0.999 and rec["ratio"] > 1
    save_climatology(clim, tmp_path / "c.zarr")
    back = load_climatology(tmp_path / "c.zarr").load()
    np.testing.assert_array_equal(back["2m_temperature"].values, clim["2m_temperature"].values)
    assert json.loads(back.attrs["atmos_compression"])["method"] == "lossless"


@pytest.mark.parametrize("cmd", [["climatology", "CUBE", "-o", "OUT/c.nc"], ["rollout", "--out", "OUT/f.zarr"]])
def test_bad_information_in_writers(cube, tmp_path, capsys, cmd):
    path, _ = cube
    argv = [a.replace("CUBE", str(path)).replace("OUT", str(tmp_path)) for a in cmd] + ["--information", "0"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "--information 0.0 is not a fraction of information in (0, 1]" in err
    assert not any(tmp_path.glob("c.nc")) and not any(tmp_path.glob("f.zarr"))
