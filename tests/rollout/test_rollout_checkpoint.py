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
    _check_rollout_parity(*trained, "vit")


def test_hybrid_checkpoint_rolls_out_as_the_trainer_steps_it(trained, tmp_path_factory):
    """The hybrid ViT/U-Net trains and rolls out through the same trainer and engine."""
    _, store = trained
    run = _fit(
        tmp_path_factory.mktemp("hybrid"),
        store,
        model={"name": "hybrid", "params": {"channels": [4, 8], "embed_dim": 8, "depth": 2, "num_heads": 2,
                                            "window_size": [1, 2]}},
    )
    _check_rollout_parity(run, store, "hybrid")


def _check_rollout_parity(run_dir, store, model_type):
    from atmos.io.open import open_dataset
    from atmos.io.windows import WindowDataset
    from atmos.rollout import Forecaster, rollout
    from atmos.train.loop import _stats_from_json

    fc = Forecaster.from_checkpoint(run_dir)  # a run folder: checkpoints/LATEST is followed
    assert fc.info["atmos_model_type"] == model_type and len(fc.info["atmos_checkpoint_sha256"]) == 64
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


@pytest.fixture(scope="module")
def seasonal_run(tmp_path_factory):
    """A ViT trained on anomalies from a 2-harmonic seasonal cycle (a year of 6-hourly mock data)."""
    from atmos.testing import mock_era5

    root = tmp_path_factory.mktemp("seasonal")
    ds = mock_era5(
        "2019-01-01", periods=1480, nlat=8, nlon=16, levels=(500, 850),
        variables=["geopotential", "temperature", "2m_temperature", "toa_incident_solar_radiation"],
        canonical=True, seed=5, time_chunk=370,
    )
    store = root / "mock.zarr"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds.to_zarr(store, mode="w")
    return _fit(root, store, data={"seasonal_harmonics": 2}), store


def test_seasonal_anomaly_checkpoint_rolls_out_as_the_trainer_steps_it(seasonal_run):
    from atmos.io.open import open_dataset
    from atmos.io.seasonal import fit_seasonal_cycle
    from atmos.io.windows import WindowDataset
    from atmos.rollout import Forecaster, rollout
    from atmos.rollout.engine import load_checkpoint_files
    from atmos.train.loop import _stats_from_json

    run_dir, store = seasonal_run
    fc = Forecaster.from_checkpoint(run_dir)
    assert fc.seasonal is not None and fc.seasonal.harmonics == 2 and fc.seasonal.slots == 4
    data = open_dataset(str(store))
    init = "2019-06-01T06"
    out = rollout(fc, data, init, steps=2, forcings="data")

    _, meta, _ = load_checkpoint_files(run_dir)
    win = WindowDataset(
        data, inputs=["geopotential", "temperature", "2m_temperature"], levels=[500, 850],
        forcings=["toa_incident_solar_radiation", "cos_time_of_day"], statics=["land_sea_mask"],
        history=1, lead_steps=1, stats=_stats_from_json(meta["stats"]),
    )
    # the stored cycle is the fit of the training inputs (the trainer's normalization)
    times, z = win.input_series()
    ref = fit_seasonal_cycle(z, times, int(win.step.value), 2, fc.seasonal.names)
    torch.testing.assert_close(fc.seasonal.coef, ref.coef)

    i = int(np.flatnonzero(win.times == np.datetime64(init, "ns"))[0])
    s = win[i]
    c = ref.window_offsets(s["time"][None], 1, 1)[0]  # c(t0), c(t1): [2, C, *grid]
    chans = meta["data_schema"]["groups"]["targets"]
    std = torch.tensor([ch["std"] for ch in chans])[:, None, None]
    mean = torch.tensor([ch["mean"] for ch in chans])[:, None, None]
    ratio = torch.tensor([ch["residual_std"] / ch["std"] for ch in chans])[:, None, None]
    z0 = s["inputs"] - c[:1]  # anomalies, [history, C, *grid]
    with torch.no_grad():
        delta, _ = fc.model(z0[None], s["forcings"][None], s["statics"][None], None)
    phys = (z0[-1] + delta[0] * ratio + c[1]) * std + mean
    names = [ch["name"] for ch in chans]
    t2m = out["2m_temperature"].isel(time=0)
    np.testing.assert_allclose(t2m.isel(prediction_timedelta=1).values, phys[names.index("2m_temperature")].numpy(),
                               rtol=1e-5, atol=1e-3)
    # the initial state decodes back to the data (anomaly + c(t0) = state)
    truth = data["2m_temperature"].sel(time=init).transpose(*t2m.isel(prediction_timedelta=0).dims).values
    np.testing.assert_allclose(t2m.isel(prediction_timedelta=0).values, truth, rtol=1e-5, atol=1e-3)


def test_a_checkpoint_without_its_seasonal_file_fails_clearly(seasonal_run, tmp_path):
    import shutil

    from atmos.errors import SourceError
    from atmos.models.checkpoint import find_checkpoint
    from atmos.rollout import Forecaster

    run_dir, _ = seasonal_run
    copy = tmp_path / "ckpt"
    shutil.copytree(find_checkpoint(run_dir), copy)
    (copy / "seasonal.safetensors").unlink()
    with pytest.raises(SourceError, match="seasonal .* cannot be read.*Copy the checkpoint folder again"):
        Forecaster.from_checkpoint(copy)


def test_seasonal_anomalies_on_healpix_faces(seasonal_run, tmp_path_factory):
    """The seasonal cycle is fit in the HEALPix face layout and the rollout adds it back there."""
    from atmos.io.open import open_dataset
    from atmos.rollout import Forecaster, rollout

    _, store = seasonal_run
    run = _fit(
        tmp_path_factory.mktemp("hpx-seasonal"), store,
        model={"name": "unet_gru", "params": {"channels": [8, 4], "dilations": [1, 1], "upscale_factor": 1}},
        data={"grid": "healpix", "nside": 4, "history": 2, "seasonal_harmonics": 1},
    )
    fc = Forecaster.from_checkpoint(run)
    assert fc.seasonal is not None and tuple(fc.seasonal.coef.shape[-3:]) == (12, 4, 4)
    data = open_dataset(str(store))
    out = rollout(fc, data, "2019-06-01T06", steps=2, forcings="data")
    t2m = out["2m_temperature"].isel(time=0)
    assert np.isfinite(t2m.values).all()
    # lead 0: the data through the HEALPix round trip (nside 4 is coarse: a loose bound), not data minus c(t)
    truth = data["2m_temperature"].sel(time="2019-06-01T06").transpose(*t2m.isel(prediction_timedelta=0).dims)
    err = abs(t2m.isel(prediction_timedelta=0) - truth)
    assert float(err.mean()) < 0.1 * float(truth.std())
