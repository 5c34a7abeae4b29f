"""End-to-end fits on tiny data: the HEALPix U-Net path and learning on a predictable signal."""

from __future__ import annotations

import json

import pytest
import torch

from atmos.train import fit, load_model


def test_unet_gru_trains_on_healpix_regridded_data(tiny_config):
    cfg = tiny_config(
        model={"name": "unet_gru", "params": {"channels": [8, 4], "dilations": [1, 1], "upscale_factor": 1}},
        data={**tiny_config()["data"], "grid": "healpix", "nside": 4, "history": 2},
        schedule={"epochs": 1, "warmup_steps": 1, "max_steps_per_epoch": 2},
        multistep={"steps": 2, "maximum": 2, "gradient": "full"},
        validation={**tiny_config()["validation"], "samples": 2, "steps": 2},
    )
    res = fit(cfg)
    assert res.status == "finished"
    meta = json.loads((res.checkpoint / "checkpoint.json").read_text())
    assert meta["grid"] == {"type": "healpix", "nside": 4, "order": "nest", "layout": "faces", "shape": [12, 4, 4]}
    assert meta["model"]["params"]["nside"] == 4 and meta["model"]["params"]["history"] == 2
    model, meta2 = load_model(res.checkpoint)
    assert meta2.history == 2
    c_in, c_f, c_s = (len(meta2.model_channels[k]) for k in ("inputs", "forcings", "statics"))
    out, state = model(torch.zeros(1, 2, c_in, 12, 4, 4), torch.zeros(1, 3, c_f, 12, 4, 4),
                       torch.zeros(c_s, 12, 4, 4))
    assert out.shape == (1, c_in, 12, 4, 4) and state is not None
    rmse = res.validation["rmse"]["temperature_850"]
    assert len(rmse) == 2 and all(v > 0 for v in rmse)


def test_training_beats_persistence_on_a_drifting_signal(tiny_config):
    """The mock fields drift eastward at a fixed speed: 12 steps learn to beat persistence."""
    cfg = tiny_config(
        model={"name": "vit", "params": {"embed_dim": 32, "depth": 2, "num_heads": 2, "window_size": [2, 2]}},
        optimizer={"lr": 5e-3},
        schedule={"epochs": 1, "warmup_steps": 3, "max_steps_per_epoch": 12},
        multistep={"steps": 1, "maximum": 1},
        validation={**tiny_config()["validation"], "samples": 6, "steps": 1},
    )
    res = fit(cfg)
    val = res.validation
    z, t = "geopotential_500", "temperature_850"
    assert val["rmse"][z][0] < 0.8 * val["persistence_rmse"][z][0], (val["rmse"][z], val["persistence_rmse"][z])
    assert val["rmse"][t][0] < val["persistence_rmse"][t][0], (val["rmse"][t], val["persistence_rmse"][t])
    rows = [ln.split(",") for ln in (res.run_dir / "metrics.csv").read_text().splitlines()[1:]]
    losses = [float(r[3]) for r in rows if r[2] == "train"]
    assert len(losses) == 12 and sum(losses[-3:]) < sum(losses[:3])


def test_input_noise_changes_training_and_is_seeded(tiny_config):
    from atmos.errors import ConfigError
    from atmos.train import fit, load_config

    base = {"schedule": {"epochs": 1, "warmup_steps": 1, "max_steps_per_epoch": 2}, "validation": {"samples": 2, "steps": 1}}
    clean = fit(tiny_config(**base, output={"name": "clean", "progress": False}))
    noisy = fit(tiny_config(**base, multistep={"input_noise": 0.5}, output={"name": "noisy", "progress": False}))
    again = fit(tiny_config(**base, multistep={"input_noise": 0.5}, output={"name": "again", "progress": False}))
    assert noisy.history[0]["train_loss"] != clean.history[0]["train_loss"]
    assert noisy.history[0]["train_loss"] == again.history[0]["train_loss"]  # seeded by (seed, rank, step)
    with pytest.raises(ConfigError, match="input_noise"):
        load_config(tiny_config(multistep={"input_noise": -0.1}))
