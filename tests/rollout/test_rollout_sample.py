"""The embedded default: sample model + initial conditions, through the API and the CLI."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from atmos.cli.main import COMMANDS, main
from atmos.rollout import read_progress, rollout
from atmos.rollout.sample import SAMPLE_NOTE, sample_checkpoint_dir, sample_data_path


@pytest.fixture(autouse=True)
def _rollout_command(monkeypatch):
    monkeypatch.setitem(COMMANDS, "rollout", "atmos.cli.rollout")  # (until the lead wires it in main.py)


def test_sample_files_are_small_and_present():
    ckpt = sample_checkpoint_dir()
    size = sum(f.stat().st_size for f in ckpt.glob("*") if f.suffix in (".json", ".safetensors", ".nc"))
    # the model, its seasonal cycle and the initial conditions together: a few MB (issue 10: checkpoint <= 25 MB)
    assert size < 12 * 2**20
    ic = xr.open_dataset(sample_data_path())
    assert ic.time.values[0] <= np.datetime64("2020-01-01") <= ic.time.values[-1]


def test_sample_ten_day_forecast_has_41_finite_leads():
    ds = rollout(init="2020-01-01", days=10)
    assert ds.sizes["prediction_timedelta"] == 41 and ds.sizes["time"] == 1
    assert dict(ds.sizes)["latitude"] == 32 and dict(ds.sizes)["longitude"] == 64
    for name in ("geopotential", "temperature", "2m_temperature"):
        assert np.isfinite(ds[name].values).all(), name
    assert "simulated atmosphere" in ds.attrs["atmos_model_note"]
    assert ds.attrs["atmos_status"] == "complete"


def test_cli_default_command_writes_named_store(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["rollout", "--init", "2020-01-01", "--days", "1"]) == 0
    out = capsys.readouterr().out
    assert "sample model" in out and SAMPLE_NOTE in out
    stores = list(tmp_path.glob("forecast_*_2020-01-01T00.zarr"))
    assert len(stores) == 1 and str(stores[0].resolve()) in out
    ds = xr.open_zarr(stores[0])
    assert ds.sizes["prediction_timedelta"] == 5 and ds.attrs["atmos_status"] == "complete"
    # the same command again refuses to overwrite; --resume on a complete store is a no-op
    assert main(["rollout", "--init", "2020-01-01", "--days", "1"]) == 2
    assert "--resume" in capsys.readouterr().err
    assert main(["rollout", "--init", "2020-01-01", "--days", "1", "--resume"]) == 0
    assert read_progress(stores[0])["atmos_completed_steps"] == 5


def test_cli_ensemble_and_bad_arguments(tmp_path, capsys):
    out = tmp_path / "ens.zarr"
    code = main(
        [
            "rollout",
            "--init",
            "2020-01-01",
            "--steps",
            "2",
            "--members",
            "2",
            "--perturb",
            "0.05",
            "--perturb-length-scale",
            "800",
            "--out",
            str(out),
        ]
    )
    assert code == 0
    ds = xr.open_zarr(out)
    assert ds.sizes["realization"] == 2 and ds.sizes["prediction_timedelta"] == 3  # WeatherBench2's ensemble dim
    assert main(["rollout", "--init", "2020-01-01", "--members", "3", "--out", str(tmp_path / "x.zarr")]) == 2
    assert "--perturb" in capsys.readouterr().err
    assert main(["rollout", "--init", "1999-01-01", "--days", "1", "--out", str(tmp_path / "y.zarr")]) == 2
    assert "not in the data" in capsys.readouterr().err
