"""Tiny untrained models and synthetic data for the rollout tests."""

from __future__ import annotations

import numpy as np
import pytest

VARS = ["geopotential", "temperature", "2m_temperature", "toa_incident_solar_radiation"]
INPUTS = ["geopotential_500", "temperature_850", "2m_temperature"]
FORCINGS = ["toa_incident_solar_radiation", "cos_time_of_day"]
STATICS = ["land_sea_mask"]


@pytest.fixture(scope="session")
def mock_ds():
    """8 days of 6-hourly synthetic data on 16x32, with an astronomical (instantaneous) TOA field."""
    from atmos.rollout.forcings import toa_incident_solar_radiation
    from atmos.testing import mock_era5

    ds = mock_era5(
        "2020-01-01", periods=32, nlat=16, nlon=32, levels=(500, 850), variables=VARS, canonical=True, seed=1
    ).load()
    lat, lon = np.meshgrid(ds.latitude.values, ds.longitude.values, indexing="ij")
    toa = toa_incident_solar_radiation(ds.time.values, lat, lon, kind="instantaneous").astype(np.float32)
    ds["toa_incident_solar_radiation"] = (
        ("time", "latitude", "longitude"),
        toa,
        ds["toa_incident_solar_radiation"].attrs,
    )
    return ds


@pytest.fixture(scope="session")
def mock_stats(mock_ds):
    from atmos.io.stats import compute_stats

    return compute_stats(mock_ds).compute()


def _vit():
    import torch

    from atmos.models import build

    torch.manual_seed(0)
    return build(
        "vit",
        inputs=INPUTS,
        forcings=FORCINGS,
        statics=STATICS,
        history=1,
        nlat=16,
        nlon=32,
        embed_dim=16,
        depth=2,
        num_heads=2,
        window_size=[2, 2],
    )


def _unet_gru():
    import torch

    from atmos.models import build

    torch.manual_seed(0)
    return build(
        "unet_gru",
        inputs=INPUTS,
        forcings=FORCINGS,
        statics=STATICS,
        history=2,
        nside=8,
        channels=[8, 4],
        dilations=[1, 1],
        upscale_factor=1,
    )


@pytest.fixture(scope="session")
def vit_fc(mock_stats, mock_ds):
    from atmos.rollout import Forecaster

    return Forecaster.from_model(_vit(), mock_stats, data=mock_ds, name="tiny-vit")


@pytest.fixture(scope="session")
def gru_fc(mock_stats, mock_ds):
    from atmos.rollout import Forecaster

    return Forecaster.from_model(_unet_gru(), mock_stats, data=mock_ds, name="tiny-unet-gru")


@pytest.fixture(autouse=True, scope="session")
def _one_thread():
    """Tiny models run fastest on one thread (and do not fight other processes for cores)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
