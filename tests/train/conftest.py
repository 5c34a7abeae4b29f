"""Tiny synthetic data and configs for the training tests."""

from __future__ import annotations

import copy
import os
import socket
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import yaml

VARIABLES = ["geopotential", "temperature", "2m_temperature"]
#: Variables a forecast backbone does not learn (the decoder task's new variables).
NEW = ["total_precipitation_6hr", "mean_sea_level_pressure"]


@pytest.fixture(scope="session")
def mock_store(tmp_path_factory) -> Path:
    """A 12-day, 6-hourly synthetic cube on 8x16 written to zarr (train: days 1-8, val: days 9-12)."""
    from atmos.testing import mock_era5

    ds = mock_era5(
        "2020-01-01", periods=48, nlat=8, nlon=16, levels=(500, 850),
        variables=[*VARIABLES, "toa_incident_solar_radiation"], canonical=True, seed=3,
    )
    path = tmp_path_factory.mktemp("data") / "mock.zarr"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds.to_zarr(path, mode="w")
    return path


@pytest.fixture(scope="session")
def decoder_store(tmp_path_factory) -> Path:
    """12 days, 6-hourly, 8x16: the backbone's variables plus :data:`NEW`."""
    from atmos.testing import mock_era5

    ds = mock_era5(
        "2020-01-01", periods=48, nlat=8, nlon=16, levels=(500, 850),
        variables=[*VARIABLES, "toa_incident_solar_radiation", *NEW], canonical=True, seed=3,
    )
    path = tmp_path_factory.mktemp("decoder-data") / "mock.zarr"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds.to_zarr(path, mode="w")
    return path


def make_config(store: Path, out: Path, **sections) -> dict:
    """A tiny ViT config on the mock store; ``sections`` update the top-level sections."""
    cfg = {
        "model": {"name": "vit", "params": {"embed_dim": 16, "depth": 2, "num_heads": 2, "window_size": [2, 2]}},
        "data": {
            "source": str(store), "period": ["2020-01-01", "2020-01-08T18"], "variables": list(VARIABLES),
            "levels": [500, 850], "forcings": ["toa_incident_solar_radiation", "cos_time_of_day"],
            "statics": ["land_sea_mask"], "batch_size": 2,
        },
        "validation": {"source": str(store), "period": ["2020-01-09", "2020-01-12T18"], "samples": 4, "steps": 2},
        "optimizer": {"lr": 3e-3},
        "schedule": {"epochs": 2, "warmup_steps": 2, "max_steps_per_epoch": 3},
        "multistep": {"steps": 1, "maximum": 2, "epoch_increment": 1},
        "output": {"dir": str(out), "name": "run", "progress": False, "log_every_steps": 1},
    }
    for key, value in sections.items():
        if isinstance(value, dict) and isinstance(cfg.get(key), dict):
            merged = copy.deepcopy(cfg[key])
            merged.update(value)
            cfg[key] = merged
        else:
            cfg[key] = value
    return cfg


@pytest.fixture
def tiny_config(mock_store, tmp_path):
    def factory(**sections) -> dict:
        return make_config(mock_store, tmp_path / "runs", **sections)

    return factory


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def torchrun_train(cfg: dict, nproc: int, *args: str) -> None:
    """Run ``atmos train`` under ``torchrun`` exactly as a user would (fresh processes, no fork).

    A timeout turns a hung rendezvous or collective into a failed test instead of a stuck CI job.
    """
    path = Path(cfg["output"]["dir"]) / f"{cfg['output']['name']}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(cfg))
    env = {k: v for k, v in os.environ.items() if k != "ATMOS_DEADLINE"}
    env.update(OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    cmd = [sys.executable, "-m", "torch.distributed.run", f"--nproc-per-node={nproc}",
           "--master-addr=127.0.0.1", f"--master-port={_free_port()}",
           "-m", "atmos.cli.main", "train", str(path), "--no-progress", "--log-level", "WARNING", *args]
    try:
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    except subprocess.TimeoutExpired as err:
        pytest.fail(f"torchrun did not finish in 300 s:\n{err.stdout}\n{err.stderr}")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
