"""Rollout engine on tiny untrained models and synthetic data: layout, streaming, resume, NaN, ensembles."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
import xarray as xr

from atmos.errors import ConfigError, DataError
from atmos.rollout import Forecaster, Perturbation, parse_init, read_progress, rollout
from atmos.rollout.perturbation import PerturbationNoise


def test_in_memory_layout_and_lead_zero(vit_fc, mock_ds):
    fc = vit_fc
    out = rollout(fc, mock_ds, "2020-01-02", days=2)
    assert dict(out.sizes) == {
        "time": 1,
        "prediction_timedelta": 9,
        "level": 2,
        "latitude": 16,
        "longitude": 32,
    }
    assert out["geopotential"].dims == ("time", "prediction_timedelta", "level", "latitude", "longitude")
    assert out["2m_temperature"].dims == ("time", "prediction_timedelta", "latitude", "longitude")
    # one level coordinate: the union of the levels predicted (z at 500, t at 850); the rest is NaN
    assert list(out.level.values) == [500, 850]
    assert np.isnan(out["temperature"].sel(level=500).values).all()  # t is predicted at 850 only
    assert out["temperature"].attrs["atmos_predicted_levels"] == [850]
    leads = pd.to_timedelta(out.prediction_timedelta.values)
    assert leads[0] == pd.Timedelta(0) and leads[-1] == pd.Timedelta("2D")
    assert (out.valid_time.values[0] == out.time.values[0] + out.prediction_timedelta.values).all()
    # lead 0 is the initial condition, denormalized back to physical units
    t2m0 = out["2m_temperature"].isel(time=0, prediction_timedelta=0)
    truth = mock_ds["2m_temperature"].sel(time="2020-01-02T00")
    np.testing.assert_allclose(t2m0.values, truth.values, rtol=1e-6)
    z0 = out["geopotential"].sel(level=500).isel(time=0, prediction_timedelta=0)
    np.testing.assert_allclose(
        z0.values, mock_ds["geopotential"].sel(level=500, time="2020-01-02T00").values, rtol=1e-6
    )
    assert out["2m_temperature"].attrs["units"] == "K"
    assert out.time.attrs["standard_name"] == "forecast_reference_time"
    assert out.prediction_timedelta.attrs["standard_name"] == "forecast_period"
    for key in ("atmos_model", "atmos_checkpoint_sha256", "atmos_version", "atmos_data_source"):
        assert key in out.attrs
    assert np.isfinite(out["geopotential"].sel(level=500).values).all()
    assert "instantaneous" in out.attrs["atmos_forcings"]  # TOA calibrated on the mock's astronomical field


def test_forecast_changes_with_lead(vit_fc, mock_ds):
    out = rollout(vit_fc, mock_ds, "2020-01-02", steps=2)
    t = out["2m_temperature"].isel(time=0).values
    assert not np.array_equal(t[0], t[1]) and not np.array_equal(t[1], t[2])


def test_streaming_store_equals_in_memory(vit_fc, mock_ds, tmp_path):
    mem = rollout(vit_fc, mock_ds, ["2020-01-02", "2020-01-03T06"], days=1)
    store = rollout(vit_fc, mock_ds, ["2020-01-02", "2020-01-03T06"], days=1, out=tmp_path / "f.zarr")
    xr.testing.assert_identical(store.drop_attrs().load(), mem.drop_attrs())
    prog = read_progress(tmp_path / "f.zarr")
    assert prog["atmos_status"] == "complete"
    assert prog["atmos_completed_leads"] == [5, 5] and prog["atmos_completed_steps"] == 10
    assert store["geopotential"].encoding["chunks"] == (1, 1, 2, 16, 32)  # one chunk per lead
    with pytest.raises(ConfigError, match="already exists"):
        rollout(vit_fc, mock_ds, "2020-01-02", days=1, out=tmp_path / "f.zarr")


def _interrupt_at(init_index, lead_index):
    def cb(i, k):
        if (i, k) == (init_index, lead_index):
            raise KeyboardInterrupt

    return cb


@pytest.mark.parametrize("which", ["vit_fc", "gru_fc"])
def test_interrupted_then_resumed_equals_uninterrupted(which, request, mock_ds, tmp_path):
    fc = request.getfixturevalue(which)
    inits = ["2020-01-02", "2020-01-03"]
    full = rollout(fc, mock_ds, inits, days=1.5, out=tmp_path / "full.zarr").load()
    part = tmp_path / "part.zarr"
    with pytest.raises(KeyboardInterrupt):
        rollout(fc, mock_ds, inits, days=1.5, out=part, callback=_interrupt_at(1, 3))
    # the interrupted store opens and says how far it got
    prog = read_progress(part)
    assert prog["atmos_status"] == "interrupted"
    assert prog["atmos_completed_leads"] == [7, 4] and prog["atmos_completed_steps"] == 11
    half = xr.open_zarr(part)
    assert half.attrs["atmos_completed_steps"] == 11
    assert np.isnan(half["2m_temperature"].isel(time=1, prediction_timedelta=4).values).all()
    assert np.isfinite(half["2m_temperature"].isel(time=1, prediction_timedelta=3).values).all()
    resumed = rollout(fc, mock_ds, inits, days=1.5, out=part, resume=True).load()
    assert resumed.attrs["atmos_status"] == "complete"
    for name in full.data_vars:
        np.testing.assert_array_equal(resumed[name].values, full[name].values)


def test_resume_refuses_other_settings(vit_fc, mock_ds, tmp_path):
    path = tmp_path / "f.zarr"
    with pytest.raises(KeyboardInterrupt):
        rollout(vit_fc, mock_ds, "2020-01-02", days=1, out=path, callback=_interrupt_at(0, 1))
    with pytest.raises(ConfigError, match="n_lead"):
        rollout(vit_fc, mock_ds, "2020-01-02", days=2, out=path, resume=True)
    with pytest.raises(ConfigError, match="needs the store"):
        rollout(vit_fc, mock_ds, "2020-01-02", days=2, resume=True)


class _NaNAfter(torch.nn.Module):
    """Wraps a model; from its ``n``-th call on, channel 1 of the output is NaN."""

    def __init__(self, model, n):
        super().__init__()
        self.inner, self.n, self.calls = model, n, 0
        self.schema, self.grid, self.recurrent = model.schema, model.grid, model.recurrent

    def forward(self, inputs, forcings=None, statics=None, state=None):
        self.calls += 1
        out, state = self.inner(inputs, forcings, statics, state)
        if self.calls >= self.n:
            out = out.clone()
            out[:, 1, 3, 4] = float("nan")
        return out, state


def test_nan_stops_the_rollout_naming_step_and_variable(vit_fc, mock_stats, mock_ds, tmp_path):
    model = _NaNAfter(vit_fc.model, 3)
    fc = Forecaster(model, vit_fc.channels, step="6h", model_grid=vit_fc.model_grid, name="nan")
    path = tmp_path / "nan.zarr"
    with pytest.raises(DataError) as err:
        rollout(fc, mock_ds, "2020-01-02", days=2, out=path)
    msg = str(err.value)
    assert "step 3" in msg and "'temperature'" in msg and "850" in msg and "2020-01-02 18:00" in msg
    prog = read_progress(path)
    assert prog["atmos_completed_leads"] == [3]  # leads 0, 1, 2 written; nothing after
    assert prog["atmos_status"].startswith("failed: ")


def test_ensemble_members_control_and_spread(vit_fc, mock_ds):
    det = rollout(vit_fc, mock_ds, "2020-01-02", days=1)
    ens = rollout(vit_fc, mock_ds, "2020-01-02", days=1, members=3, perturb=0.1, seed=5)
    assert ens["2m_temperature"].dims == ("time", "prediction_timedelta", "realization", "latitude", "longitude")
    np.testing.assert_allclose(
        ens["2m_temperature"].sel(realization=0).values, det["2m_temperature"].values, rtol=1e-6
    )
    t0 = ens["2m_temperature"].isel(time=0, prediction_timedelta=0)
    diff = (t0.sel(realization=1) - t0.sel(realization=0)).values
    std = float(vit_fc.channels["inputs"][2].std)
    assert 0.07 < diff.std() / std < 0.13  # perturbation std 0.1 in normalized units
    assert not np.allclose(t0.sel(realization=1).values, t0.sel(realization=2).values)
    again = rollout(vit_fc, mock_ds, "2020-01-02", days=1, members=3, perturb=0.1, seed=5)
    np.testing.assert_array_equal(again["2m_temperature"].values, ens["2m_temperature"].values)
    with pytest.raises(ConfigError, match="members"):
        rollout(vit_fc, mock_ds, "2020-01-02", days=1, perturb=0.1)


def test_correlated_perturbation_statistics(vit_fc):
    pert = Perturbation(1.0, length_scale_km=2500.0, control=False)
    noise_of = PerturbationNoise(vit_fc.model_grid)
    noise = noise_of(torch.Size([64, 1, 3, 16, 32]), pert, seed=0).numpy()[:, 0]
    assert abs(noise.var() - 1.0) < 0.1  # unit variance per point
    x = noise.reshape(-1, 16, 32)
    lag1 = np.mean(x[..., 1:] * x[..., :-1])  # neighbours ~11 degrees apart along longitude
    assert lag1 > 0.5
    white = noise_of(torch.Size([64, 1, 3, 16, 32]), Perturbation(1.0, control=False), seed=0)
    w = white.numpy()[:, 0].reshape(-1, 16, 32)
    assert abs(np.mean(w[..., 1:] * w[..., :-1])) < 0.05


def test_output_step_is_a_subsample_of_model_steps(vit_fc, mock_ds):
    six = rollout(vit_fc, mock_ds, "2020-01-02", days=1)
    twelve = rollout(vit_fc, mock_ds, "2020-01-02", days=1, step="12h")
    assert twelve.sizes["prediction_timedelta"] == 3
    xr.testing.assert_allclose(
        twelve["geopotential"], six["geopotential"].isel(prediction_timedelta=[0, 2, 4])
    )
    with pytest.raises(ConfigError, match="multiple"):
        rollout(vit_fc, mock_ds, "2020-01-02", days=1, step="9h")
    with pytest.raises(ConfigError, match="whole number"):
        rollout(vit_fc, mock_ds, "2020-01-02", days=0.1)


def test_healpix_model_regrids_in_and_out_and_keeps_native(gru_fc, mock_ds, tmp_path):
    out = rollout(
        gru_fc, mock_ds, "2020-01-02", days=1, out=tmp_path / "f.zarr", native_out=tmp_path / "n.zarr"
    )
    assert dict(out.sizes) == {
        "time": 1,
        "prediction_timedelta": 5,
        "level": 2,
        "latitude": 16,
        "longitude": 32,
    }
    nat = xr.open_zarr(tmp_path / "n.zarr")
    assert nat["2m_temperature"].dims == ("time", "prediction_timedelta", "cell")
    assert nat.sizes["cell"] == 12 * 8 * 8
    assert nat.cell_ids.attrs["grid_name"] == "healpix" and nat.cell_ids.attrs["level"] == 3
    assert np.isfinite(nat["2m_temperature"].values).all() and np.isfinite(out["2m_temperature"].values).all()
    # lead 0 native = the initial condition regridded to HEALPix
    from atmos.io.regrid import to_healpix

    ic = to_healpix(mock_ds["2m_temperature"].sel(time="2020-01-02T00"), 8)
    np.testing.assert_allclose(
        nat["2m_temperature"].isel(time=0, prediction_timedelta=0).values, ic.values, rtol=1e-5
    )
    # lead 0 on the data grid = regridded there and back: close to the data (smooth field)
    err = out["2m_temperature"].isel(time=0, prediction_timedelta=0) - mock_ds["2m_temperature"].sel(
        time="2020-01-02"
    )
    assert float(np.abs(err).mean()) < 2.0


def test_input_errors_name_the_problem(vit_fc, mock_ds):
    with pytest.raises(DataError, match=r"not in the data \(2020-01-01 00:00:00 \.\. 2020-01-08 18:00:00\)"):
        rollout(vit_fc, mock_ds, "2021-06-01", days=1)
    with pytest.raises(DataError, match="lack variables \\['land_sea_mask'\\]"):
        rollout(vit_fc, mock_ds.drop_vars("land_sea_mask"), "2020-01-02", days=1)
    bad = mock_ds.copy()
    bad["2m_temperature"] = bad["2m_temperature"].where(bad.latitude < 80)
    with pytest.raises(DataError, match="2m_temperature.*NaN"):
        rollout(vit_fc, bad, "2020-01-02", days=1)
    with pytest.raises(ConfigError, match="exactly one of days"):
        rollout(vit_fc, mock_ds, "2020-01-02")


def test_toa_from_astronomy_matches_the_data_it_replaces(vit_fc, mock_ds):
    """The TOA forcing computed for future times equals the (astronomical) mock field: same forecast as
    reading it from the data at the valid times."""
    a = rollout(vit_fc, mock_ds, "2020-01-02", days=1, forcings="astronomy")
    d = rollout(vit_fc, mock_ds, "2020-01-02", days=1, forcings="data")
    xr.testing.assert_allclose(a["2m_temperature"], d["2m_temperature"], rtol=1e-5)
    assert "future" in d.attrs["atmos_forcings"]


def test_parse_init_forms():
    assert list(parse_init("2020-01-01")) == [pd.Timestamp("2020-01-01")]
    assert list(parse_init("2020-01-01T06")) == [pd.Timestamp("2020-01-01 06:00")]
    assert len(parse_init("2020-01-01/2020-01-05")) == 5
    assert len(parse_init("2020-01-01..2020-01-03")) == 3
    assert list(parse_init("2020-01-01/2020-01-02/12h").strftime("%dT%H")) == ["01T00", "01T12", "02T00"]
    assert len(parse_init("2020-01-01,2020-01-03T12")) == 2
    assert len(parse_init([np.datetime64("2020-01-01"), "2020-01-02"])) == 2
    for bad in ("yesterday-ish", "2020-01-05/2020-01-01", "2020-01-01,2020-01-01"):
        with pytest.raises(ConfigError):
            parse_init(bad)


def test_encode_advance_decode_unroll(vit_fc, mock_ds):
    state = vit_fc.encode(mock_ds, "2020-01-02", members=2)
    assert state.history.shape == (2, 1, 3, 16, 32)
    states = list(vit_fc.unroll(state, 3))
    assert [s.step for s in states] == [1, 2, 3]
    assert states[-1].time == np.datetime64("2020-01-02T18:00", "ns")
    phys = vit_fc.decode(states[-1])
    assert phys.shape == (2, 3, 16, 32) and phys.dtype == np.float32
    mem = rollout(vit_fc, mock_ds, "2020-01-02", steps=3)
    np.testing.assert_allclose(phys[0, 2], mem["2m_temperature"].values[0, 3], rtol=1e-6)


def test_recurrent_state_is_carried_and_reset_every_24h(gru_fc, mock_ds):
    """The U-Net-GRU carries its state between steps and restarts it from zero every 24 h (default)."""
    assert gru_fc.state_reset == pd.Timedelta("24h") and gru_fc.state_reset_steps == 4

    def with_reset(reset):
        return Forecaster(
            gru_fc.model,
            gru_fc.channels,
            step="6h",
            model_grid=gru_fc.model_grid,
            grid_from_schema=True,
            state_reset=reset,
        )

    base = rollout(gru_fc, mock_ds, "2020-01-02", steps=6)["2m_temperature"].values[0]
    never = rollout(with_reset(None), mock_ds, "2020-01-02", steps=6)["2m_temperature"].values[0]
    every = rollout(with_reset("6h"), mock_ds, "2020-01-02", steps=6)["2m_temperature"].values[0]
    np.testing.assert_array_equal(base[:5], never[:5])  # leads 0-4 (24 h): the same carried state
    assert not np.allclose(base[5], never[5])  # the step after 24 h starts from a fresh state
    np.testing.assert_array_equal(base[:2], every[:2])
    assert not np.allclose(base[2], every[2])  # the carried state matters from the 2nd step on
    with pytest.raises(ConfigError, match="multiple"):
        with_reset("5h")
