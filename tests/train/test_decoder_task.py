"""``task: decoder | finetune | downscale`` through ``atmos.train.fit`` and ``atmos train``.

One tiny ViT backbone (a real ``atmos train`` run on a mock cube that also holds two
variables the backbone never saw) is shared by the module; decoders are trained on it
frozen (``decoder``) and together with it (``finetune``).
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from atmos.errors import AtmosError, ConfigError
from atmos.models.checkpoint import load_checkpoint, load_decoder, load_model, weights_hash
from atmos.train import fit, load_config
from atmos.train.config import TASKS
from tests.train.conftest import NEW, make_config

#: Variables of the cube the backbone is not trained on (precipitation: log1p transform).
TRAIN = ("2020-01-01", "2020-01-08T18")
VAL = ("2020-01-09", "2020-01-12T18")
FAST = {"epochs": 1, "warmup_steps": 1, "max_steps_per_epoch": 2}


def _files(folder: Path) -> dict[str, str]:
    """``relative path -> sha256`` of every file under ``folder``."""
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*")) if p.is_file()
    }


def _meta(ckpt: Path) -> dict:
    return json.loads((Path(ckpt) / "checkpoint.json").read_text())


def _decoder_cfg(store: Path, out: Path, backbone: Path | str, task: str = "decoder", **sections) -> dict:
    """A decoder/finetune config on the module's store (data channels come from the backbone)."""
    sections.setdefault("decoder", {"variables": list(NEW), "hidden": [32],
                                    "transforms": {"total_precipitation_6hr": "log1p"}})
    sections.setdefault("schedule", dict(FAST))
    return make_config(store, out, task=task, backbone=str(backbone), **sections)


# =============================================================================================
# fixtures (module scope: one store, one backbone, one decoder run, one finetune run)
# =============================================================================================


@pytest.fixture(scope="module")
def store(decoder_store) -> Path:
    return decoder_store


@pytest.fixture(scope="module")
def backbone(store, tmp_path_factory) -> Path:
    """Run folder of a tiny ViT forecaster trained for 2 steps by ``atmos.train.fit``."""
    out = tmp_path_factory.mktemp("backbone-runs")
    res = fit(make_config(store, out, schedule=dict(FAST), validation={"source": None},
                          output={"dir": str(out), "name": "vit", "progress": False}))
    assert res.status == "finished" and res.checkpoint is not None
    return res.run_dir


@pytest.fixture(scope="module")
def decoder_run(store, backbone, tmp_path_factory):
    """``task: decoder`` for 8 epochs on the frozen backbone; backbone files hashed before and after."""
    out = tmp_path_factory.mktemp("decoder-runs")
    files_before = _files(backbone)
    hash_before = weights_hash(load_model(backbone)[0])
    res = fit(_decoder_cfg(store, out, backbone, optimizer={"lr": 1e-2},
                           schedule={"epochs": 8, "warmup_steps": 1, "max_steps_per_epoch": 8},
                           output={"dir": str(out), "name": "dec", "progress": False}))
    return {"res": res, "files_before": files_before, "hash_before": hash_before}


@pytest.fixture(scope="module")
def finetune_run(store, backbone, tmp_path_factory):
    """``task: finetune`` for 2 epochs; records the backbone's train/eval mode at every grad-enabled call."""
    import atmos.models.checkpoint as ckpt_mod

    out = tmp_path_factory.mktemp("finetune-runs")
    files_before = _files(backbone)
    original = load_model(backbone)[0]
    modes: list[bool] = []
    real_load = ckpt_mod.load_model

    def spying_load(path, *args, **kwargs):
        model, meta = real_load(path, *args, **kwargs)
        model.blocks[0].register_forward_pre_hook(
            lambda mod, inp: modes.append(mod.training) if torch.is_grad_enabled() else None
        )
        return model, meta

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(ckpt_mod, "load_model", spying_load)
        res = fit(_decoder_cfg(store, out, backbone, task="finetune",
                               schedule={"epochs": 2, "warmup_steps": 1, "max_steps_per_epoch": 2},
                               output={"dir": str(out), "name": "ft", "progress": False}))
    return {"res": res, "files_before": files_before, "original": original, "modes": modes}


# =============================================================================================
# task: decoder
# =============================================================================================


def test_decoder_leaves_the_backbone_untouched_and_records_its_hash(decoder_run, backbone):
    res = decoder_run["res"]
    assert res.status == "finished" and (res.run_dir / "DONE").is_file()
    assert _files(backbone) == decoder_run["files_before"]  # byte-identical, no file added or removed
    model, _ = load_model(backbone)
    assert weights_hash(model) == decoder_run["hash_before"]
    meta = _meta(res.checkpoint)
    assert meta["task"] == "decoder" and meta["model"]["params"]["variables"] == NEW
    assert meta["backbone"]["sha256"] == decoder_run["hash_before"]
    assert meta["backbone"]["model"] == "vit"
    assert meta["training"]["backbone_sha256_before"] == decoder_run["hash_before"]
    # only the decoder is trained: the frozen count is the backbone's, the trainable count the decoder's
    decoder, _ = load_decoder(res.checkpoint, backbone=model)
    assert meta["training"]["frozen_parameters"] == sum(p.numel() for p in model.parameters())
    assert meta["training"]["trainable_parameters"] == sum(p.numel() for p in decoder.parameters())
    assert set(load_checkpoint(res.checkpoint).model_state) == set(decoder.state_dict())


def test_decoder_learns_the_new_variables(decoder_run, store):
    """The mock fields drift predictably: 64 steps bring the loss and the RMSE well below a constant guess."""
    import xarray as xr

    from atmos.io.coords import grid_of
    from atmos.train.losses import grid_area_weights

    res = decoder_run["res"]
    losses = [h["train_loss"] for h in res.history]
    assert len(losses) == 8 and all(math.isfinite(v) for v in losses)
    assert losses[-1] < 0.5 * losses[0], losses
    rmse = res.validation["rmse"]
    assert set(rmse) == set(NEW) and all(math.isfinite(v) and v > 0 for v in rmse.values())
    assert res.validation["units"] == {"total_precipitation_6hr": "m", "mean_sea_level_pressure": "Pa"}
    assert res.validation["samples"] == 4
    # baseline: the training mean everywhere, on the validation targets
    ds = xr.open_zarr(store)
    w = grid_area_weights(grid_of(ds)).numpy()
    for v in NEW:
        mean = float(ds[v].sel(time=slice(*TRAIN)).mean())
        y = ds[v].sel(time=slice(*VAL)).values[1:]
        const = float(np.sqrt((((y - mean) ** 2) * w).sum((-2, -1)).mean()))
        assert rmse[v] < 0.75 * const, (v, rmse[v], const)
    csv = (res.run_dir / "metrics.csv").read_text().splitlines()
    assert len(csv) == 9 and "val_rmse_mean_sea_level_pressure" in csv[0]


def test_loaded_decoder_reproduces_the_recorded_validation(decoder_run, backbone, store):
    """load_decoder rebuilds the transforms and standardization: same RMSE as at training time."""
    import xarray as xr

    from atmos.train.decoder import _batch, _open_windows
    from atmos.train.loop import _stats_from_json
    from atmos.train.losses import grid_area_weights

    res = decoder_run["res"]
    model, bmeta = load_model(backbone)
    decoder, meta = load_decoder(res.checkpoint, backbone=model)
    assert decoder.variables == NEW
    transforms = meta["model"]["params"]["transforms"]
    assert transforms["mean_sea_level_pressure"] == {"kind": "identity"}
    # log1p scale "auto": the mean of the (clipped) training targets, i.e. the training period minus its first step
    tp = xr.open_zarr(store)["total_precipitation_6hr"].sel(time=slice(*TRAIN)).values[1:]
    assert transforms["total_precipitation_6hr"]["kind"] == "log1p"
    assert math.isclose(transforms["total_precipitation_6hr"]["scale"], float(np.clip(tp, 0, None).mean()), rel_tol=1e-4)
    cfg = load_config(res.run_dir / "config.yaml")
    assert cfg.data.variables == bmeta["config"]["data"]["variables"]  # channels came from the backbone
    val = _open_windows(cfg, cfg.validation.source, cfg.validation.period, "validation",
                        _stats_from_json(bmeta["stats"]), cfg.validation.samples)
    batch = _batch(val, val.indices, torch.device("cpu"))
    with torch.no_grad():
        latent, _ = model.forward_latent(batch["inputs"], batch["forcings"], batch["statics"], None)
        y = decoder.to_physical(decoder(latent)).double()
    assert y.shape == (len(val.indices), 2, 8, 16)
    assert bool((y[:, 0] >= 0).all())  # log1p decodes to non-negative precipitation
    w = grid_area_weights(val.backbone.grid).double()
    se = ((y - batch["new"].double()) ** 2 * w).sum((-2, -1)).mean(0)
    for k, v in enumerate(NEW):
        assert math.isclose(float(se[k].sqrt()), res.validation["rmse"][v], rel_tol=1e-4), v


def test_decoder_refuses_another_backbone(decoder_run, backbone):
    res = decoder_run["res"]
    want = _meta(res.checkpoint)["backbone"]["sha256"]
    model, _ = load_model(backbone)
    with torch.no_grad():
        next(model.parameters()).view(-1)[0] += 1e-3
    with pytest.raises(ConfigError, match=want[:16]) as err:
        load_decoder(res.checkpoint, backbone=model)
    assert weights_hash(model)[:16] in str(err.value)
    with pytest.raises(ConfigError, match="not a decoder checkpoint"):
        load_decoder(backbone)


# =============================================================================================
# task: finetune
# =============================================================================================


def test_finetune_writes_a_new_backbone_that_the_decoder_is_bound_to(finetune_run, backbone):
    res, original = finetune_run["res"], finetune_run["original"]
    assert res.status == "finished"
    assert _files(backbone) == finetune_run["files_before"]  # the original is not overwritten
    tuned, tmeta = load_model(res.run_dir / "backbone")
    assert tmeta.get("task", "forecast") == "forecast" and tmeta["model"]["name"] == "vit"
    assert tmeta["training"]["finetuned_from"] == str(Path(backbone).resolve())
    h_orig, h_tuned = weights_hash(original), weights_hash(tuned)
    assert h_tuned != h_orig
    meta = _meta(res.checkpoint)
    assert meta["training"]["task"] == "finetune" and meta["training"]["frozen_parameters"] == 0
    assert meta["backbone"]["sha256"] == h_tuned
    assert meta["training"]["backbone_sha256_before"] == h_orig
    decoder, _ = load_decoder(res.checkpoint, backbone=tuned)
    assert decoder.variables == NEW
    with pytest.raises(ConfigError, match=h_tuned[:16]):
        load_decoder(res.checkpoint, backbone=original)
    # the fine-tuned backbone is still a forecaster: same channels, finite one-step output
    n_in = len(tmeta.model_channels["inputs"])
    n_f, n_s = len(tmeta.model_channels["forcings"]), len(tmeta.model_channels["statics"])
    out, _ = tuned(torch.zeros(1, 1, n_in, 8, 16), torch.zeros(1, 2, n_f, 8, 16), torch.zeros(n_s, 8, 16))
    assert out.shape == (1, n_in, 8, 16) and bool(torch.isfinite(out).all())
    assert set(res.validation["prognostic_rmse"]) == set(tmeta.model_channels["inputs"])


def test_finetune_trains_the_backbone_in_train_mode_every_epoch(finetune_run):
    modes = finetune_run["modes"]
    assert len(modes) == 4  # 2 epochs x 2 steps
    assert all(modes), modes


# =============================================================================================
# a U-Net-GRU backbone on HEALPix (pixel latent)
# =============================================================================================


def test_decoder_on_a_unet_gru_healpix_backbone(store, tmp_path):
    bcfg = make_config(
        store, tmp_path,
        model={"name": "unet_gru", "params": {"channels": [8, 4], "dilations": [1, 1], "upscale_factor": 1}},
        data={**make_config(store, tmp_path)["data"], "grid": "healpix", "nside": 4, "history": 2},
        schedule=dict(FAST), multistep={"steps": 1, "maximum": 1}, validation={"source": None},
        output={"dir": str(tmp_path), "name": "unet", "progress": False},
    )
    bb = fit(bcfg).run_dir
    hash_before = weights_hash(load_model(bb)[0])
    res = fit(_decoder_cfg(store, tmp_path, bb, decoder={"variables": NEW, "hidden": [16], "transforms": {}},
                           validation={"source": str(store), "period": list(VAL), "samples": 2},
                           output={"dir": str(tmp_path), "name": "dec", "progress": False}))
    meta = _meta(res.checkpoint)
    assert meta["model"]["params"]["latent"] == {"kind": "pixels", "dim": 8, "grid": [12, 4, 4]}
    assert meta["grid"]["type"] == "healpix" and meta["backbone"]["sha256"] == hash_before
    assert set(res.validation["rmse"]) == set(NEW)
    assert all(math.isfinite(v) and v > 0 for v in res.validation["rmse"].values())
    model, _ = load_model(bb)
    assert weights_hash(model) == hash_before
    decoder, _ = load_decoder(res.checkpoint, backbone=model)
    latent, _ = model.forward_latent(torch.zeros(3, 2, 5, 12, 4, 4), torch.zeros(3, 3, 2, 12, 4, 4),
                                     torch.zeros(1, 12, 4, 4))
    assert decoder(latent).shape == (3, 2, 12, 4, 4)


# =============================================================================================
# configuration errors
# =============================================================================================


def test_decoder_task_needs_a_backbone():
    with pytest.raises(ConfigError, match="backbone"):
        load_config({"task": "decoder"})
    with pytest.raises(ConfigError, match="backbone"):
        load_config({"task": "finetune", "decoder": {"variables": ["mean_sea_level_pressure"], "transforms": {}}})


def test_unknown_task_lists_the_valid_ones():
    with pytest.raises(ConfigError) as err:
        load_config({"task": "decodr"})
    assert all(t in str(err.value) for t in TASKS) and "'decoder'" in str(err.value)


def test_transforms_must_name_decoder_variables():
    with pytest.raises(ConfigError, match="total_cloud_cover"):
        load_config({"task": "decoder", "backbone": "x",
                     "decoder": {"variables": ["mean_sea_level_pressure"], "transforms": {"total_cloud_cover": "log1p"}}})
    cfg = load_config({"task": "decoder", "backbone": "x",
                       "decoder": {"variables": ["mean_sea_level_pressure"], "transforms": {}}})
    assert cfg.decoder.variables == ["mean_sea_level_pressure"]


def test_decoder_variables_alone_need_no_transforms_section():
    cfg = load_config({"task": "decoder", "backbone": "x"}, ["decoder.variables=[mean_sea_level_pressure]"])
    assert cfg.decoder.variables == ["mean_sea_level_pressure"]


def test_decoder_variable_that_the_backbone_predicts_is_refused(store, backbone, tmp_path):
    cfg = _decoder_cfg(store, tmp_path, backbone,
                       decoder={"variables": ["2m_temperature", "mean_sea_level_pressure"], "transforms": {}},
                       output={"dir": str(tmp_path), "name": "clash", "progress": False})
    with pytest.raises(ConfigError, match="2m_temperature"):
        fit(cfg)
    assert not (tmp_path / "clash").exists()  # refused before writing anything


def test_decoder_variable_missing_from_the_data_is_named(store, backbone, tmp_path):
    from atmos.errors import DataError

    cfg = _decoder_cfg(store, tmp_path, backbone, decoder={"variables": ["surface_pressure"], "transforms": {}},
                       output={"dir": str(tmp_path), "name": "missing", "progress": False})
    with pytest.raises(DataError, match="surface_pressure"):
        fit(cfg)


def test_missing_backbone_is_a_clear_error(store, tmp_path, capsys):
    from atmos.cli.main import main

    missing = tmp_path / "no-such-run"
    cfg = _decoder_cfg(store, tmp_path, missing, output={"dir": str(tmp_path), "name": "x", "progress": False})
    with pytest.raises(AtmosError, match=str(missing)):
        fit(cfg)
    path = tmp_path / "dec.yaml"
    path.write_text(yaml.safe_dump(cfg))
    assert main(["train", str(path), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert str(missing) in err and "Traceback" not in err


# =============================================================================================
# task: downscale
# =============================================================================================


def test_downscale_task_runs_fit_downscaler(store, tmp_path):
    from atmos.rollout.downscale import load_downscaler

    cfg = make_config(store, tmp_path, task="downscale", validation={"source": None},
                      downscale={"channels": ["2m_temperature", "temperature_850"], "statics": ["land_sea_mask"],
                                 "factor": 2, "epochs": 1, "batch_size": 16,
                                 "model": {"hidden": 8, "fine_hidden": 8}},
                      output={"dir": str(tmp_path), "name": "ds", "progress": False})
    res = fit(cfg)
    assert res.status == "finished" and res.run_dir == tmp_path / "ds"
    assert res.checkpoint is not None and (res.run_dir / "DONE").is_file()
    model, meta = load_downscaler(res.checkpoint)
    assert meta["task"] == "downscale" and meta["factor"] == 2
    assert meta["channels"] == ["2m_temperature", "temperature_850"]
    assert meta["training"]["global_step"] == 2  # data.period (days 1-8) = 32 samples / 16
    out = model(torch.zeros(1, 2, 4, 8))
    assert out.shape == (1, 2, 8, 16)
    with pytest.raises(ConfigError, match="factr"):
        fit({**cfg, "downscale": {"factr": 2}})


# =============================================================================================
# CLI
# =============================================================================================


def test_cli_trains_a_decoder_and_prints_a_summary(store, backbone, tmp_path, capsys):
    from atmos.cli.main import main

    cfg = make_config(store, tmp_path, decoder={"variables": NEW, "hidden": [16]}, schedule=dict(FAST),
                      output={"dir": str(tmp_path), "name": None, "progress": True})
    path = tmp_path / "decode.yaml"
    path.write_text(yaml.safe_dump(cfg))
    assert main(["train", str(path), "task=decoder", f"backbone={backbone}", "--no-progress",
                 "--log-level", "WARNING"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["status"] == "finished" and summary["global_step"] == 2
    assert summary["run_dir"] == str(tmp_path / "decode")
    assert set(summary["validation_rmse"]) == set(NEW)
    assert all(math.isfinite(v) and v > 0 for v in summary["validation_rmse"].values())
    decoder, meta = load_decoder(summary["checkpoint"], backbone=load_model(backbone)[0])
    assert meta["config"]["task"] == "decoder" and decoder.variables == NEW
