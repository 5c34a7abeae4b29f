"""A checkpoint written by ``atmos.train.fit`` rolls out exactly as the trainer steps it."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
import xarray as xr


def _fit(root, store, **extra):
    from atmos.train import fit

    cfg = {
        "model": {
            "name": "vit",
            "params": {"embed_dim": 16, "depth": 2, "num_heads": 2, "window_size": [2, 2]},
        },
        "data": {
            "source": str(store),
            "variables": ["geopotential", "temperature", "2m_temperature"],
            "levels": [500, 850],
            "forcings": ["toa_incident_solar_radiation", "cos_time_of_day"],
            "statics": ["land_sea_mask"],
            "batch_size": 2,
        },
        "validation": {"source": None},
        "schedule": {"epochs": 1, "warmup_steps": 1, "max_steps_per_epoch": 2},
        "output": {"dir": str(root / "runs"), "name": "run", "progress": False},
        "device": "cpu",
    }
    for k, v in extra.items():
        cfg[k] = {**cfg.get(k, {}), **v}
    return fit(cfg).run_dir


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    from atmos.testing import mock_era5

    root = tmp_path_factory.mktemp("ckpt")
    ds = mock_era5(
        "2020-01-01",
        periods=24,
        nlat=8,
        nlon=16,
        levels=(500, 850),
        variables=["geopotential", "temperature", "2m_temperature", "toa_incident_solar_radiation"],
        canonical=True,
        seed=3,
    )
    store = root / "mock.zarr"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds.to_zarr(store, mode="w")
    return _fit(root, store), store


def test_rollout_of_a_trained_checkpoint_matches_the_training_step(trained):
    from atmos.io.open import open_dataset
    from atmos.io.windows import WindowDataset
    from atmos.rollout import Forecaster, rollout
    from atmos.train.loop import _stats_from_json

    run_dir, store = trained
    fc = Forecaster.from_checkpoint(run_dir)  # a run folder: checkpoints/LATEST is followed
    assert fc.info["atmos_model_type"] == "vit" and len(fc.info["atmos_checkpoint_sha256"]) == 64
    data = open_dataset(str(store))
    out = rollout(fc, data, "2020-01-03T06", steps=2, forcings="data")

    # the trainer's own view of the same window: WindowDataset + x[t+1] = x[t] + out * residual_std / std
    from atmos.rollout.engine import load_checkpoint_files

    _, meta, _ = load_checkpoint_files(run_dir)
    stats = _stats_from_json(meta["stats"])
    win = WindowDataset(
        data,
        inputs=["geopotential", "temperature", "2m_temperature"],
        levels=[500, 850],
        forcings=["toa_incident_solar_radiation", "cos_time_of_day"],
        statics=["land_sea_mask"],
        history=1,
        lead_steps=1,
        stats=stats,
    )
    i = int(np.flatnonzero(win.times == np.datetime64("2020-01-03T06", "ns"))[0])
    s = win[i]
    chans = meta["data_schema"]["groups"]["targets"]
    std = torch.tensor([c["std"] for c in chans])
    mean = torch.tensor([c["mean"] for c in chans])
    ratio = torch.tensor([c["residual_std"] / c["std"] for c in chans])
    with torch.no_grad():
        delta, _ = fc.model(s["inputs"][None], s["forcings"][None], s["statics"][None], None)
    nxt = s["inputs"][-1] + delta[0] * ratio[:, None, None]  # inputs: [history, C, *grid]
    phys = nxt * std[:, None, None] + mean[:, None, None]
    names = [c["name"] for c in chans]
    t850 = out["temperature"].sel(level=850).isel(time=0, prediction_timedelta=1).values
    np.testing.assert_allclose(t850, phys[names.index("temperature_850")].numpy(), rtol=1e-5, atol=1e-4)
    t2m = out["2m_temperature"].isel(time=0, prediction_timedelta=1).values
    np.testing.assert_allclose(t2m, phys[names.index("2m_temperature")].numpy(), rtol=1e-5, atol=1e-4)


@pytest.fixture(scope="module")
def healpix_run(trained, tmp_path_factory):
    """A U-Net-GRU trained on HEALPix faces (the trainer regrids the lat-lon store)."""
    _, store = trained
    return _fit(
        tmp_path_factory.mktemp("hpx"),
        store,
        model={"name": "unet_gru", "params": {"channels": [8, 4], "dilations": [1, 1], "upscale_factor": 1}},
        data={"grid": "healpix", "nside": 4, "history": 2},
    )


def test_healpix_checkpoint_rolls_out_on_the_data_grid(trained, healpix_run, tmp_path):
    """A U-Net-GRU trained on HEALPix (data regridded by the trainer) runs on lat-lon data: regrid in,
    roll out on HEALPix, regrid out; the native HEALPix forecast can be kept."""
    from atmos.io.open import open_dataset
    from atmos.rollout import rollout

    _, store = trained
    run = healpix_run
    data = open_dataset(str(store))
    out = rollout(
        str(run), data, "2020-01-03", steps=3, out=tmp_path / "f.zarr", native_out=tmp_path / "n.zarr"
    )
    assert out["2m_temperature"].dims == ("time", "prediction_timedelta", "latitude", "longitude")
    assert out.attrs["atmos_model_type"] == "unet_gru" and np.isfinite(out["2m_temperature"].values).all()
    nat = xr.open_zarr(tmp_path / "n.zarr")
    assert nat.sizes["cell"] == 12 * 4 * 4 and nat.cell_ids.attrs["indexing_scheme"] == "nested"


def test_healpix_training_and_inference_feed_the_model_the_same_tensors(trained, healpix_run):
    """HEALPix parity: the trainer regrids the data with xarray (atmos.io.regrid) onto cells and
    windows them on faces; the Forecaster regrids lat-lon data with the tensor Regridder. From the
    same lat-lon store both must give the model the same normalized inputs and statics, and the
    same next state."""
    from atmos.io.open import open_dataset
    from atmos.rollout import Forecaster
    from atmos.rollout.engine import load_checkpoint_files
    from atmos.train.config import config_from_dict
    from atmos.train.data import prepare_data
    from atmos.train.loop import _stats_from_json

    _, store = trained
    run = healpix_run
    _, meta, _ = load_checkpoint_files(run)
    bundle = prepare_data(config_from_dict(meta["config"]), stats=_stats_from_json(meta["stats"]))
    assert bundle.layout == "faces" and tuple(bundle.grid_shape) == (12, 4, 4)
    win = bundle.train
    t = np.datetime64("2020-01-03T06", "ns")
    i = int(np.flatnonzero(win.times == t)[0])
    sample = win[i]  # inputs [history, C, 12, nside, nside]

    fc = Forecaster.from_checkpoint(run)
    # the trainer's Normalizer (built from its windows) is the Forecaster's, bit for bit
    from atmos.io.normalizer import Normalizer

    trainer_norm = Normalizer(win.schema().groups["targets"], meta["normalization"]["outputs"])
    for a in ("mean", "std", "ratio", "scale"):
        assert torch.equal(getattr(trainer_norm, a), getattr(fc.normalizer, a)), a
    state = fc.encode(open_dataset(str(store)), t, forcings="data")
    assert [c.name for c in fc.channels["inputs"]] == win.schema().names("inputs")
    np.testing.assert_allclose(state.history[0].numpy(), sample["inputs"].numpy(), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(
        state.context.statics.reshape(sample["statics"].shape).numpy(), sample["statics"].numpy(), rtol=1e-5, atol=1e-5
    )
    # one step: the Forecaster's advance equals the trainer's x[t+1] = x[t] + out * residual_std / std
    nxt = fc.advance(state).history[0, -1]
    with torch.no_grad():
        out, _ = fc.model(sample["inputs"][None], sample["forcings"][None], sample["statics"][None], None)
    ratio = torch.tensor([c["residual_std"] / c["std"] for c in meta["data_schema"]["groups"]["targets"]])
    want = sample["inputs"][-1] + out[0] * ratio.view(-1, 1, 1, 1)
    np.testing.assert_allclose(nxt.numpy(), want.numpy(), rtol=1e-4, atol=1e-4)
