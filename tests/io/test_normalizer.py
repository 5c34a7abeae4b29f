"""One normalization (atmos.io.normalizer): round trips, the residual step, the zero-std rule, parity."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
import torch

from atmos.channels import Channel
from atmos.errors import ConfigError, DataError
from atmos.io.normalizer import Normalizer
from atmos.io.stats import ZeroStdWarning, compute_stats, safe_std, stat_values, zero_std
from atmos.io.windows import WindowDataset
from atmos.testing import mock_era5

CHANS = [
    Channel.of("temperature", 850, mean=260.0, std=12.0, residual_mean=0.01, residual_std=1.5),
    Channel.of("2m_temperature", mean=280.0, std=15.0, residual_mean=0.0, residual_std=2.0),
    Channel.of("land_sea_mask", mean=1.0, std=0.0, residual_mean=0.0, residual_std=0.5),  # constant field
]


def _x(seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return 280 + 10 * torch.randn(4, len(CHANS), 5, 6, generator=g)


@pytest.mark.parametrize("outputs", ["residual", "state"])
def test_normalize_then_denormalize_is_the_identity(outputs):
    n = Normalizer(CHANS, outputs)
    x = _x()
    torch.testing.assert_close(n.denormalize(n.normalize(x)), x, rtol=1e-6, atol=1e-4)
    # channels along another axis
    xt = x.movedim(1, -1)
    torch.testing.assert_close(n.normalize(xt, dim=-1), n.normalize(x).movedim(1, -1))


def test_residual_step_adds_the_increment_in_residual_std_units():
    n = Normalizer(CHANS, "residual")
    x = _x()
    z = n.normalize(x)
    out = torch.randn_like(z)
    # in physical units: x[t+1] = x[t] + out * residual_std
    rstd = torch.tensor([c.residual_std for c in CHANS]).view(1, -1, 1, 1)
    torch.testing.assert_close(n.denormalize(n.step(z, out)), x + out * rstd, rtol=1e-5, atol=1e-3)
    torch.testing.assert_close(n.step(z, torch.zeros_like(z)), z)  # a zero increment keeps the state
    s = Normalizer(CHANS, "state")
    assert torch.equal(s.step(z, out), out)
    assert torch.equal(s.ratio, torch.ones(len(CHANS)))


def test_zero_std_rule_is_one_rule():
    """safe_std, stat_values and the Normalizer agree on what a constant field is."""
    n = Normalizer(CHANS, "state")
    assert n.std.tolist() == [12.0, 15.0, 1.0]
    assert zero_std([0.0, 1e-12, 1e-3], [0.0, 1000.0, 1000.0]).tolist() == [True, True, False]
    assert safe_std(1e-12, 1000.0) == 1.0 and safe_std(2.0) == 2.0
    ds = mock_era5(periods=4, levels=(850,), variables=["temperature", "2m_temperature"]).load()
    ds["temperature"] = ds["temperature"] * 0 + 250.0 + 1e-12 * np.arange(ds.sizes["time"])[:, None, None, None]
    stats = compute_stats(ds).compute()
    with pytest.warns(ZeroStdWarning):
        _, s = stat_values(stats, "temperature", "state")
    stored = float(stats["temperature"].sel(statistic="std").values.ravel()[0])
    assert float(s.values.ravel()[0]) == safe_std(stored, 250.0) == 1.0


def test_dict_round_trip_and_json():
    n = Normalizer(CHANS, "residual")
    d = json.loads(json.dumps(n.to_dict()))
    m = Normalizer.from_dict(d)
    for a in ("mean", "std", "ratio"):
        assert torch.equal(getattr(n, a), getattr(m, a))
    assert m.names == n.names and m.outputs == "residual"
    sub = Normalizer.from_dict(d, names=["2m_temperature"])
    assert sub.names == ["2m_temperature"] and sub.mean.tolist() == [280.0]
    with pytest.raises(DataError, match=r"no statistics for channels \['nope'\]"):
        Normalizer.from_dict(d, names=["nope"])


def test_bad_input_is_a_clear_error():
    with pytest.raises(ConfigError, match="'delta' is not one of"):
        Normalizer(CHANS, "delta")
    with pytest.raises(DataError, match=r"no usable residual std for channels \['t'\]"):
        Normalizer([Channel("t", "t", mean=1.0, std=1.0)], "residual")
    with pytest.raises(DataError, match=r"channels \['t'\] have no finite normalization statistics"):
        Normalizer([Channel("t", "t", mean=float("nan"), std=1.0)], "state")
    Normalizer([Channel("t", "t", mean=1.0, std=1.0)], "state")  # state outputs need no residual std


def test_training_windows_and_checkpoint_give_the_same_normalizer():
    """Train/inference parity: the Normalizer from the windows' channel table equals the one
    rebuilt from its JSON (what a checkpoint stores), and both normalize like the windows do."""
    ds = mock_era5(periods=12, levels=(500, 850), variables=["temperature", "2m_temperature"]).load()
    stats = compute_stats(ds).compute()
    wd = WindowDataset(ds, ["temperature", "2m_temperature"], stats=stats)
    raw = WindowDataset(ds, ["temperature", "2m_temperature"])
    targets = wd.schema().groups["targets"]
    train = Normalizer(targets, "residual")
    back = Normalizer.from_dict(json.loads(json.dumps(train.to_dict())))
    for a in ("mean", "std", "ratio"):
        assert torch.equal(getattr(train, a), getattr(back, a))
    with warnings.catch_warnings():
        warnings.simplefilter("error", ZeroStdWarning)
        z = back.normalize(raw[3]["targets"].double()).float()
    torch.testing.assert_close(z, wd[3]["targets"], rtol=1e-5, atol=1e-5)
