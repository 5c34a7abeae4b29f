"""Training refuses implausible inputs (units mislabelled) before it trains, and data.units fixes them."""

from __future__ import annotations

import warnings

import pytest

from atmos.errors import DataError
from atmos.train import fit


@pytest.fixture(scope="module")
def celsius_store(mock_store, tmp_path_factory):
    """The mock cube with 2m_temperature in degC but still labelled K."""
    import xarray as xr

    ds = xr.open_zarr(mock_store).load()
    ds["2m_temperature"] = ds["2m_temperature"] - 273.15  # attrs (units K) kept
    path = tmp_path_factory.mktemp("celsius") / "c.zarr"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds.to_zarr(path, mode="w")
    return path


def test_celsius_labelled_kelvin_is_refused_before_training(celsius_store, tiny_config, tmp_path):
    cfg = tiny_config(data={"source": str(celsius_store)}, validation={"source": None})
    with pytest.raises(DataError) as err:
        fit(cfg)
    msg = str(err.value)
    assert "'2m_temperature'" in msg and "plausible range" in msg and "degC" in msg
    assert "data.units" in msg  # the fix names the config key, not a rollout flag
    assert not (tmp_path / "runs" / "run" / "checkpoints").exists()  # nothing trained or written


def test_data_units_converts_and_trains(celsius_store, tiny_config):
    cfg = tiny_config(
        data={"source": str(celsius_store), "units": {"2m_temperature": "degC"}},
        validation={"source": None},
        schedule={"epochs": 1, "warmup_steps": 1, "max_steps_per_epoch": 1},
    )
    res = fit(cfg)
    assert res.status == "finished" and (res.run_dir / "DONE").is_file()
