"""Everything is checked before a store is written; a failed run leaves nothing in the way."""

from __future__ import annotations

import os

import numpy as np
import pytest
import xarray as xr
import zarr

from atmos.cli.main import main
from atmos.errors import ConfigError, DataError
from atmos.io.paths import check_writable
from atmos.rollout.api import rollout
from atmos.rollout.sample import sample_checkpoint_dir, sample_data_path
from atmos.rollout.writer import read_progress


def _run(out, *extra):
    return main(["rollout", "--init", "2020-01-01", "--days", "1", "--out", str(out), "--no-progress", *extra])


def test_off_grid_init_names_the_grid_and_leaves_nothing(tmp_path, capsys):
    out = tmp_path / "f.zarr"
    assert main(["rollout", "--init", "2020-01-01T03", "--days", "1", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "not on its time grid" in err and "2020-01-01 00:00:00 and 2020-01-01 06:00:00" in err
    assert "Traceback" not in err
    assert not any(tmp_path.iterdir())  # no store, no lock
    assert _run(out) == 0  # the corrected rerun needs no --overwrite


def test_init_outside_the_data_leaves_nothing(tmp_path, capsys):
    out = tmp_path / "f.zarr"
    assert main(["rollout", "--init", "2030-01-01", "--days", "1", "--out", str(out)]) == 2
    assert "inside the data's period" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())


def test_nan_initial_conditions_are_named_and_leave_nothing(tmp_path):
    ds = xr.open_dataset(sample_data_path()).load()
    t0 = np.datetime64("2020-01-01T00")
    ds["temperature"].loc[{"time": t0}] = np.nan
    out = tmp_path / "f.zarr"
    with pytest.raises(DataError, match=r"temperature_250.* 2048 NaN/Inf values"):
        rollout(None, ds, "2020-01-01", 1, out=out)
    assert not any(tmp_path.iterdir())


def test_failed_store_is_replaced_by_a_plain_rerun(tmp_path):
    out = tmp_path / "f.zarr"
    assert _run(out) == 0
    g = zarr.open_group(str(out), mode="r+")
    g.update_attributes({"atmos_status": "failed: the forecast became non-finite at step 3"})
    assert _run(out) == 0
    assert read_progress(out)["atmos_status"] == "complete"
    # a complete (or running / interrupted) store is never replaced without --overwrite
    assert _run(out) == 2


def test_output_under_a_file_is_refused_before_any_work(tmp_path, capsys):
    (tmp_path / "afile").write_text("x")
    assert _run(tmp_path / "afile" / "f.zarr") == 2
    err = capsys.readouterr().err
    assert "is a file, not a folder" in err and "Traceback" not in err


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write anywhere")
def test_unwritable_output_folder_is_refused(tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        with pytest.raises(ConfigError, match="not writable"):
            check_writable(ro / "f.zarr")
    finally:
        ro.chmod(0o755)


def test_store_too_big_for_the_disk_is_refused(tmp_path):
    with pytest.raises(ConfigError, match=r"would take up to [\d.]+ TB .* free. Shorten --days"):
        rollout(None, None, "2020-01-01", 10, members=10**8, perturb=0.1, out=tmp_path / "f.zarr")
    assert not any(tmp_path.iterdir())


def test_one_chunk_per_lead_for_long_rollouts(tmp_path):
    """The store's chunks are (1 init, 1 lead, ...) whatever the forecast length."""
    out = tmp_path / "f.zarr"

    def stop(i, k):
        if k == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        rollout(None, None, "2020-01-01", 500, out=out, callback=stop)
    g = zarr.open_group(str(out), mode="r")
    for name, arr in g.arrays():
        if arr.ndim >= 3:
            assert arr.chunks[:2] == (1, 1), (name, arr.chunks)
            assert arr.shape[1] == 2001
    assert read_progress(out)["atmos_completed_leads"] == [2]


def _sample():
    return xr.open_dataset(sample_data_path()).load()


def test_geopotential_height_in_m_is_converted_and_forecasts_equal():
    ds = _sample()
    ref = rollout(None, ds, "2020-01-01", 1)
    zh = ds.copy()
    zh["geopotential"] = (ds["geopotential"] / 9.80665).assign_attrs(units="m")
    got = rollout(None, zh, "2020-01-01", 1)
    np.testing.assert_allclose(got["geopotential"].values, ref["geopotential"].values, rtol=1e-5)


def test_celsius_labelled_kelvin_is_refused_with_the_fix(tmp_path):
    ds = _sample()
    ds["2m_temperature"] = (ds["2m_temperature"] - 273.15).assign_attrs(units="K")
    out = tmp_path / "f.zarr"
    with pytest.raises(DataError, match=r"'2m_temperature'.*outside the plausible range.*fit data in degC labelled 'K'"
                       r".*--assume-units"):
        rollout(None, ds, "2020-01-01", 1, out=out)
    assert not any(tmp_path.iterdir())
    # the escape hatch: declare the units, atmos converts
    ref = rollout(None, _sample(), "2020-01-01", 1)
    got = rollout(None, ds, "2020-01-01", 1, assume_units={"2m_temperature": "degC"})
    np.testing.assert_allclose(got["2m_temperature"].values, ref["2m_temperature"].values, rtol=1e-5)


def test_hpa_labelled_pa_is_refused(capsys, tmp_path):
    ds = _sample()
    ds["mean_sea_level_pressure"] = (ds["mean_sea_level_pressure"] / 100).assign_attrs(units="Pa")
    path = tmp_path / "ic.nc"
    ds.to_netcdf(path)
    argv = ["rollout", "--model", str(sample_checkpoint_dir()), "--data", str(path), "--init", "2020-01-01",
            "--days", "1", "--out", str(tmp_path / "f.zarr")]
    assert main(argv) == 2
    assert "fit data in hPa labelled 'Pa'" in capsys.readouterr().err
    assert main([*argv, "--assume-units", "mean_sea_level_pressure=hPa"]) == 0
    assert main([*argv, "--assume-units", "mslp"]) == 2
    assert "VAR=UNITS" in capsys.readouterr().err
