"""Store integrity: damaged chunks are found and named, never a crash or a raw codec traceback."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr
from zarr.codecs import BloscCodec

from atmos.cli.main import main
from atmos.errors import DataError
from atmos.io.check import check_store
from atmos.metrics.forecast import IncompleteForecastWarning, open_forecast
from atmos.rollout.api import rollout
from atmos.rollout.sample import sample_data_path


def _truncate(path):
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


@pytest.fixture
def cube(tmp_path):
    """The sample initial conditions as a Blosc-compressed zarr store, one time step per chunk."""
    ds = xr.open_dataset(sample_data_path()).load()
    for v in ds.variables.values():
        v.encoding = {}
    enc = {
        n: {"chunks": (1, *ds[n].shape[1:]), "compressors": [BloscCodec(cname="zstd", clevel=5)]}
        for n in ds.data_vars
        if "time" in ds[n].dims
    }
    path = tmp_path / "cube.zarr"
    ds.to_zarr(path, mode="w", encoding=enc, consolidated=True)
    return path, ds


def test_check_store_names_the_damaged_chunk(cube, capsys):
    path, ds = cube
    assert check_store(path).ok
    t = int(np.flatnonzero(ds["time"].values == np.datetime64("2020-01-01T00"))[0])
    _truncate(path / "temperature" / "c" / str(t) / "0" / "0" / "0")
    rep = check_store(path)
    assert not rep.ok and [(p.variable, p.key) for p in rep.damaged] == [("temperature", f"c/{t}/0/0/0")]
    assert main(["check", str(path)]) == 1
    assert f"DAMAGED temperature chunk c/{t}/0/0/0" in capsys.readouterr().out


def test_rollout_from_a_damaged_cube_is_a_clear_error_and_leaves_nothing(cube, tmp_path):
    path, ds = cube
    t = int(np.flatnonzero(ds["time"].values == np.datetime64("2020-01-01T00"))[0])
    _truncate(path / "2m_temperature" / "c" / str(t) / "0" / "0")
    out = tmp_path / "f.zarr"
    with pytest.raises(DataError, match=rf"2m_temperature chunk c/{t}/0/0 .*atmos check"):
        rollout(None, str(path), "2020-01-01", 1, out=out)
    assert not out.exists() and not (tmp_path / "f.zarr.lock").exists()


def test_incomplete_forecast_is_reported_by_check_and_evaluate(tmp_path):
    out = tmp_path / "f.zarr"

    def stop(i, k):
        if k == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        rollout(None, None, "2020-01-01", 2, out=out, callback=stop)
    rep = check_store(out)
    assert not rep.damaged and not rep.complete and rep.progress["atmos_status"] == "interrupted"
    with pytest.warns(IncompleteForecastWarning, match="3 of 9 leads written"):
        open_forecast(out)


def test_hole_in_a_complete_forecast_is_found(tmp_path):
    out = tmp_path / "f.zarr"
    rollout(None, None, "2020-01-01", 1, out=out)
    assert check_store(out).ok
    (out / "2m_temperature" / "c.0.3.0.0").unlink()  # forecast stores use flat chunk keys
    rep = check_store(out)
    assert not rep.ok and rep.missing["2m_temperature"] == 1
