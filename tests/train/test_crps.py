"""The stochastic emulator: fair-CRPS training over noise inputs, members drawn from the model's noise."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import xarray as xr

from atmos.errors import ConfigError
from atmos.train import fit
from atmos.train.losses import AreaWeightedCRPS

CRPS_SECTIONS = {
    "data": {"noise_channels": 2},
    "loss": {"name": "crps", "members": 3},
    "schedule": {"epochs": 2, "warmup_steps": 2, "max_steps_per_epoch": 3},
    "multistep": {"steps": 1, "maximum": 2, "epoch_increment": 1, "gradient": "full"},
    "validation": {"samples": 2, "steps": 1},
}


def test_crps_loss_equals_the_verification_metric_and_its_closed_form():
    from atmos.metrics.probabilistic import crps_pointwise

    g = torch.Generator().manual_seed(0)
    B, M, C, ny, nx = 2, 4, 3, 4, 6
    pred = torch.randn(B * M, C, ny, nx, generator=g, dtype=torch.float64)
    target = torch.randn(B, C, ny, nx, generator=g, dtype=torch.float64)
    area = torch.rand(ny, nx, generator=g, dtype=torch.float64) + 0.5
    scale = torch.tensor([1.0, 2.0, 0.5])
    loss = AreaWeightedCRPS(area, scale=scale)
    got = loss.per_channel(pred, target)  # [B, C]
    fc = xr.DataArray(pred.reshape(B, M, C, ny, nx).numpy(), dims=("b", "member", "c", "y", "x"))
    tr = xr.DataArray(target.numpy(), dims=("b", "c", "y", "x"))
    pw = crps_pointwise(fc, tr, "member", fair=True)  # WeatherBench2's fair estimator
    a = (area / area.sum()).numpy()
    ref = (pw * xr.DataArray(a, dims=("y", "x"))).sum(("y", "x")).values / scale.numpy()
    np.testing.assert_allclose(got.numpy(), ref, rtol=1e-5)
    # two members by hand: (|x1 - y| + |x2 - y|) / 2 - |x1 - x2| / 2
    two = AreaWeightedCRPS(torch.ones(1, 1))
    x = torch.tensor([[[[1.0]]], [[[3.0]]]])
    assert float(two.per_channel(x, torch.tensor([[[[2.0]]]]))) == pytest.approx(1.0 - 1.0)
    assert float(two.per_channel(x, torch.tensor([[[[0.0]]]]))) == pytest.approx(2.0 - 1.0)
    # one member: the MAE
    one = AreaWeightedCRPS(torch.ones(1, 2))
    assert float(one.per_channel(torch.tensor([[[[1.0, -1.0]]]]), torch.zeros(1, 1, 1, 2))) == pytest.approx(1.0)


def test_crps_is_minimised_by_the_spread_of_the_truth_distribution():
    """A proper score: for a N(0, 1) truth, members from N(0, s) score best near s = 1."""
    g = torch.Generator().manual_seed(1)
    y = torch.randn(1, 1, 64, 64, generator=g)
    loss = AreaWeightedCRPS(torch.ones(64, 64))
    scores = {s: float(loss(s * torch.randn(8, 1, 64, 64, generator=g), y)) for s in (0.0, 0.5, 1.0, 2.0)}
    assert min(scores, key=scores.get) == 1.0


def test_config_errors_name_the_fix(tiny_config):
    from atmos.train.config import load_config

    with pytest.raises(ConfigError, match="noise_channels"):
        load_config(tiny_config(loss={"name": "crps"}))
    with pytest.raises(ConfigError, match="loss.members"):
        load_config(tiny_config(loss={"name": "crps", "members": 1}, data={"noise_channels": 2}))
    with pytest.raises(ConfigError, match="noise_channels"):
        load_config(tiny_config(data={"noise_channels": -1}))


def test_crps_training_resumes_bit_identically_and_members_come_from_the_model_noise(tiny_config, mock_store):
    from atmos.io.open import open_dataset
    from atmos.rollout import Forecaster, rollout

    ref = fit(tiny_config(**CRPS_SECTIONS, output={"name": "ref", "progress": False}))
    cfg = tiny_config(**CRPS_SECTIONS, output={"name": "split", "progress": False})
    first = fit(cfg, stop_after=4)
    assert first.status == "stopped"
    second = fit(cfg, resume=True)
    from safetensors.torch import load_file

    a = load_file(str(ref.checkpoint / "model.safetensors"))
    b = load_file(str(second.checkpoint / "model.safetensors"))
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k

    fc = Forecaster.from_checkpoint(ref.run_dir)
    assert fc.noise_channels == 2
    data = open_dataset(str(mock_store))
    kw = {"steps": 3, "forcings": "data"}
    e3 = rollout(fc, data, "2020-01-10", members=3, seed=5, **kw)["2m_temperature"].load()
    dim = "realization"
    d = e3.isel(prediction_timedelta=-1)
    assert float(abs(d.isel({dim: 0}) - d.isel({dim: 1})).max()) > 0  # members differ with no --perturb
    again = rollout(fc, data, "2020-01-10", members=3, seed=5, **kw)["2m_temperature"].load()
    xr.testing.assert_equal(e3, again)  # the seed reproduces them
    e2 = rollout(fc, data, "2020-01-10", members=2, seed=5, **kw)["2m_temperature"].load()
    np.testing.assert_array_equal(e2.isel({dim: slice(0, 2)}).values, e3.isel({dim: slice(0, 2)}).values)
    other = rollout(fc, data, "2020-01-10", members=3, seed=6, **kw)["2m_temperature"].load()
    assert float(abs(other - e3).isel(prediction_timedelta=-1).max()) > 0
    np.testing.assert_array_equal(e3.isel(prediction_timedelta=0).values, other.isel(prediction_timedelta=0).values)
    # the CLI: --members alone is an ensemble for a stochastic checkpoint
    from atmos.cli.main import main

    out = ref.run_dir.parent / "ens.zarr"
    assert main(["rollout", "--model", str(ref.run_dir), "--data", str(mock_store), "--init", "2020-01-10",
                 "--steps", "2", "--members", "3", "--out", str(out), "--no-progress"]) == 0
    cli = xr.open_zarr(out)["2m_temperature"].isel(prediction_timedelta=-1).load()
    assert cli.sizes[dim] == 3 and float(abs(cli.isel({dim: 0}) - cli.isel({dim: 2})).max()) > 0


def test_warm_start_from_a_deterministic_run_computes_its_forecast_and_resumes(tiny_config):
    """``model.init_from``: the stochastic model starts as the deterministic one (noise columns zero), takes its
    statistics, and a stopped + resumed warm-started run equals an uninterrupted one."""
    from atmos.train.config import load_config
    from atmos.train.distributed import DistInfo
    from atmos.train.loop import _Trainer

    det = fit(tiny_config(schedule={"epochs": 1, "warmup_steps": 1, "max_steps_per_epoch": 3},
                          validation={"samples": 2, "steps": 1}, output={"name": "det", "progress": False}))
    src = _checkpoint_model(det.checkpoint)
    warm = {**CRPS_SECTIONS, "model": {**tiny_config()["model"], "init_from": str(det.checkpoint)}}
    cfg = load_config(tiny_config(**warm, output={"name": "warm0", "progress": False}))
    t = _Trainer(cfg, DistInfo(), None, None, None)
    new = t.model.eval()
    torch.testing.assert_close(t.normalizer.mean.cpu(), src[1].mean.cpu())
    sch = new.schema
    grid = tuple(sch.grid["shape"])
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, sch.history, len(sch.inputs), *grid, generator=g)
    f = torch.randn(2, sch.history + 1, len(sch.forcings), *grid, generator=g)
    s = torch.randn(len(sch.statics), *grid, generator=g)
    with torch.no_grad():
        got, want = new(x, f, s), src[0](x, f[:, :, : len(src[0].schema.forcings)], s)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)

    ref = fit(tiny_config(**warm, output={"name": "warm_ref", "progress": False}))
    split = tiny_config(**warm, output={"name": "warm_split", "progress": False})
    assert fit(split, stop_after=2).status == "stopped"
    second = fit(split, resume=True)  # init_from is not applied again over the resumed weights
    from safetensors.torch import load_file

    a = load_file(str(ref.checkpoint / "model.safetensors"))
    b = load_file(str(second.checkpoint / "model.safetensors"))
    for k in a:
        assert torch.equal(a[k], b[k]), k


def _checkpoint_model(path):
    """The model and normalizer of a checkpoint, as the Forecaster rebuilds them."""
    from atmos.rollout import Forecaster

    fc = Forecaster.from_checkpoint(path)
    return fc.model.eval(), fc.normalizer


def test_warm_start_errors_name_the_fix(tiny_config, tmp_path):
    det = fit(tiny_config(schedule={"epochs": 1, "warmup_steps": 1, "max_steps_per_epoch": 1},
                          validation={"samples": 2, "steps": 1}, output={"name": "det1", "progress": False}))
    model = tiny_config()["model"]
    with pytest.raises(ConfigError, match="no atmos checkpoint"):
        fit(tiny_config(**{**CRPS_SECTIONS, "model": {**model, "init_from": str(tmp_path / "nope")}}))
    with pytest.raises(ConfigError, match="embed_dim|model.params"):
        params = {**model["params"], "embed_dim": 32}
        fit(tiny_config(**{**CRPS_SECTIONS, "model": {**model, "params": params, "init_from": str(det.checkpoint)}}))
    with pytest.raises(ConfigError, match="seasonal_harmonics=0"):
        data = {**CRPS_SECTIONS["data"], "seasonal_harmonics": 1}
        fit(tiny_config(**{**CRPS_SECTIONS, "data": data, "model": {**model, "init_from": str(det.checkpoint)}}))
