"""Lightweight decoders in the rollout: new variables from each step's latent, the backbone untouched."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
import torch
import xarray as xr

from atmos.errors import ConfigError, DataError
from atmos.models.decoder import LatentDecoder
from atmos.rollout import Forecaster, read_progress, rollout
from atmos.rollout.api import DECODER_COMMENT

TP = "total_precipitation_6hr"
INIT = "2020-01-02"


def _decoder(model, variables, seed=0, **config):
    """A randomly initialised decoder with weights large enough to give fields of order one."""
    torch.manual_seed(seed)
    dec = LatentDecoder.for_backbone(model, variables, hidden=[8], **config)
    with torch.no_grad():
        for p in dec.parameters():
            if p.ndim > 1:
                p.normal_(0.0, 0.5)
    return dec.eval()


def _tp_decoder(model, seed=0):
    return _decoder(
        model,
        [TP],
        seed,
        transforms={TP: {"kind": "log1p", "scale": 1e-3}},
        mean={TP: 0.5},
        std={TP: 0.7},
        units={TP: "m"},
    )


def _capture_inputs(model):
    """Record the arguments of every plain ``model(...)`` call."""
    calls = []
    handle = model.register_forward_pre_hook(lambda mod, args: calls.append(args))
    return calls, handle


def _expected(model, dec, args):
    with torch.no_grad():
        latent, _ = model.forward_latent(*args)
        return dec.to_physical(dec(latent)).numpy()


def _same_prognostics(plain: xr.Dataset, decoded: xr.Dataset) -> None:
    for name in plain.data_vars:
        assert np.array_equal(plain[name].values, decoded[name].values, equal_nan=True), name


def test_vit_decoders_leave_the_trajectory_bit_identical(vit_fc, mock_ds):
    fc = vit_fc
    tp = _tp_decoder(fc.model)
    other = _decoder(
        fc.model, ["10m_wind_speed"], seed=1, mean={"10m_wind_speed": 5.0}, std={"10m_wind_speed": 2.0}
    )
    calls, handle = _capture_inputs(fc.model)
    try:
        plain = rollout(fc, mock_ds, INIT, steps=3)
    finally:
        handle.remove()
    decoded = rollout(fc, mock_ds, INIT, steps=3, decoders=[tp, other])
    assert not fc.decoders and not fc.channels["diagnostics"]  # attached to a copy; the caller's is unchanged
    _same_prognostics(plain, decoded)
    assert set(decoded.data_vars) == set(plain.data_vars) | {TP, "10m_wind_speed"}
    x = decoded[TP]
    assert x.dims == ("time", "prediction_timedelta", "latitude", "longitude")
    assert np.isnan(x.isel(prediction_timedelta=0).values).all()
    lead1 = x.isel(time=0, prediction_timedelta=1).values
    assert np.isfinite(x.isel(prediction_timedelta=slice(1, None)).values).all()
    assert (lead1 >= 0).all() and lead1.std() > 0  # log1p: non-negative, and a real field
    # by hand: the decoder on the latent of the very inputs the plain model got at step 1 (same grid: no regrid)
    np.testing.assert_allclose(lead1, _expected(fc.model, tp, calls[0])[0, 0], rtol=1e-6, atol=0)
    wind = decoded["10m_wind_speed"].isel(time=0, prediction_timedelta=1).values
    np.testing.assert_allclose(wind, _expected(fc.model, other, calls[0])[0, 0], rtol=1e-6, atol=1e-6)
    # leads 2 and 3 decode their own step's latent, not a repeat of step 1
    np.testing.assert_allclose(
        x.isel(time=0, prediction_timedelta=3).values, _expected(fc.model, tp, calls[2])[0, 0], rtol=1e-6
    )
    assert x.attrs["units"] == "m" and x.attrs["comment"] == DECODER_COMMENT
    prov = json.loads(decoded.attrs["atmos_decoders"])
    assert [p["variables"] for p in prov] == [[TP], ["10m_wind_speed"]]
    assert all(len(p["sha256"]) == 64 for p in prov)


def test_vit_decoder_attrs_come_from_the_data_when_it_has_the_variable(vit_fc, mock_ds):
    ds = mock_ds.assign(
        {
            TP: (
                ("time", "latitude", "longitude"),
                np.zeros((mock_ds.sizes["time"], 16, 32), np.float32),
                {"units": "m", "standard_name": "precipitation_amount", "long_name": "6-hour precipitation"},
            )
        }
    )
    out = rollout(vit_fc, ds, INIT, steps=1, decoders=_tp_decoder(vit_fc.model))
    assert out[TP].attrs["standard_name"] == "precipitation_amount"
    assert (
        out[TP].attrs["long_name"] == "6-hour precipitation" and out[TP].attrs["comment"] == DECODER_COMMENT
    )


def test_unet_gru_healpix_decoders_leave_the_trajectory_bit_identical(gru_fc, mock_ds, tmp_path):
    """U-Net-GRU on HEALPix faces, lat-lon data: the diagnostics are regridded like the prognostics."""
    fc = gru_fc
    tp = _tp_decoder(fc.model, seed=3)
    calls, handle = _capture_inputs(fc.model)
    try:
        plain = rollout(fc, mock_ds, INIT, steps=5, out=tmp_path / "p.zarr", native_out=tmp_path / "pn.zarr")
    finally:
        handle.remove()
    decoded = rollout(
        fc, mock_ds, INIT, steps=5, out=tmp_path / "d.zarr", native_out=tmp_path / "dn.zarr", decoders=[tp]
    )
    _same_prognostics(plain.load(), decoded.load())
    nat_p, nat_d = xr.open_zarr(tmp_path / "pn.zarr").load(), xr.open_zarr(tmp_path / "dn.zarr").load()
    _same_prognostics(nat_p, nat_d)
    assert decoded[TP].dims == ("time", "prediction_timedelta", "latitude", "longitude")
    assert nat_d[TP].dims == ("time", "prediction_timedelta", "cell")
    assert np.isnan(decoded[TP].isel(prediction_timedelta=0).values).all()
    assert np.isnan(nat_d[TP].isel(prediction_timedelta=0).values).all()
    assert np.isfinite(decoded[TP].isel(prediction_timedelta=slice(1, None)).values).all()
    # native lead k = the decoder on the latent of step k (carried GRU state included), faces -> nested cells
    grid = fc.model_grid
    for k in (1, 5):  # step 5 comes after the 24 h state reset
        want = grid.faces_to_cells(_expected(fc.model, tp, calls[k - 1])[0, 0])
        np.testing.assert_allclose(
            nat_d[TP].isel(time=0, prediction_timedelta=k).values, want, rtol=1e-5, atol=1e-9
        )
    assert nat_d[TP].isel(time=0, prediction_timedelta=1).values.std() > 0


def _save(tmp_path, name, decoder, backbone):
    from atmos.train.decoder import save_decoder

    return save_decoder(tmp_path / name, decoder, backbone=backbone, backbone_path=tmp_path / "backbone")


def test_decoder_checkpoint_only_fits_its_backbone(vit_fc, mock_stats, mock_ds, tmp_path):
    a = vit_fc
    other = copy.deepcopy(a.model)
    with torch.no_grad():
        next(other.parameters()).add_(1e-3)  # backbone B: the same architecture, other weights
    b = Forecaster.from_model(other, mock_stats, data=mock_ds, name="tiny-vit-b")
    dec = _tp_decoder(a.model)
    ckpt = _save(tmp_path, "tp", dec, a.model)
    with pytest.raises(ConfigError, match="hash") as err:
        b.with_decoders(ckpt)
    assert "trained on" in str(err.value)
    with pytest.raises(ConfigError, match="hash"):
        rollout(b, mock_ds, INIT, steps=1, decoders=[str(ckpt)])
    # accepted for A, and the loaded checkpoint gives exactly what the in-memory decoder gives
    from_path = rollout(a, mock_ds, INIT, steps=2, decoders=[tmp_path / "tp"])  # a run folder: LATEST
    from_module = rollout(a, mock_ds, INIT, steps=2, decoders=[dec])
    np.testing.assert_array_equal(from_path[TP].values, from_module[TP].values)
    prov = json.loads(from_path.attrs["atmos_decoders"])
    assert prov[0]["checkpoint"] == str(ckpt.resolve()) and len(prov[0]["sha256"]) == 64
    fc = a.with_decoders([ckpt])
    assert fc.diagnostic_variables == [TP] and fc.channels["diagnostics"][0].source == "decoder"
    assert fc.channels["diagnostics"][0].units == "m"


def test_decoder_configuration_errors(vit_fc, gru_fc, mock_ds, tmp_path):
    fc = vit_fc
    with pytest.raises(ConfigError, match=f"{TP!r}.*already predicted"):
        fc.with_decoders([_tp_decoder(fc.model), _tp_decoder(fc.model, seed=1)])
    with pytest.raises(ConfigError, match="'2m_temperature'.*prognostic"):
        fc.with_decoders(_decoder(fc.model, ["2m_temperature"]))
    with pytest.raises(ConfigError, match="latent.*'pixels'.*'tokens'"):
        fc.with_decoders(_tp_decoder(gru_fc.model))  # built for the U-Net-GRU's latent
    with pytest.raises(ConfigError, match="not a decoder checkpoint"):
        from atmos.train.checkpoint import save_checkpoint

        save_checkpoint(
            tmp_path / "fake", "final", fc.model.state_dict(), {"model": {"name": "vit", "params": {}}}
        )
        fc.with_decoders(tmp_path / "fake")

    class Plain(torch.nn.Module):  # a model without forward_latent
        def __init__(self, inner):
            super().__init__()
            self.inner, self.schema, self.grid = inner, inner.schema, inner.grid
            self.recurrent = False  # the Backbone protocol, without the latent methods

        def forward(self, *args):
            return self.inner(*args)

    with pytest.raises(ConfigError, match="exposes no latent"):
        Forecaster(
            Plain(fc.model),
            fc.channels,
            step="6h",
            model_grid=fc.model_grid,
            decoders=[_tp_decoder(fc.model)],
        )


def test_nonfinite_diagnostic_stops_the_rollout_naming_the_variable(vit_fc, mock_ds, tmp_path):
    dec = _tp_decoder(vit_fc.model)
    with torch.no_grad():
        dec.heads[TP][-1].bias.fill_(float("inf"))
    path = tmp_path / "inf.zarr"
    with pytest.raises(DataError, match=f"step 1 .*variable {TP!r}.*decoder") as err:
        rollout(vit_fc, mock_ds, INIT, steps=2, out=path, decoders=[dec])
    assert "NaN/Inf" in str(err.value)
    assert read_progress(path)["atmos_completed_leads"] == [1]  # lead 0 only


def test_resume_checks_the_decoders(vit_fc, mock_ds, tmp_path):
    dec = _tp_decoder(vit_fc.model)
    full = rollout(vit_fc, mock_ds, INIT, steps=3, decoders=[dec])
    path = tmp_path / "f.zarr"

    def stop(i, k):
        if k == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        rollout(vit_fc, mock_ds, INIT, steps=3, out=path, decoders=[dec], callback=stop)
    with pytest.raises(ConfigError, match="decoders"):
        rollout(vit_fc, mock_ds, INIT, steps=3, out=path, resume=True)  # without the decoder
    with pytest.raises(ConfigError, match="decoders"):
        rollout(
            vit_fc, mock_ds, INIT, steps=3, out=path, resume=True, decoders=[_tp_decoder(vit_fc.model, 5)]
        )
    resumed = rollout(vit_fc, mock_ds, INIT, steps=3, out=path, resume=True, decoders=[dec]).load()
    for name in full.data_vars:
        np.testing.assert_array_equal(resumed[name].values, full[name].values)


def test_cli_decoder_end_to_end(tmp_path, capsys):
    from atmos.cli.main import main
    from atmos.models.checkpoint import load_model
    from atmos.rollout.sample import sample_checkpoint_dir
    from atmos.train.decoder import save_decoder

    backbone, meta = load_model(sample_checkpoint_dir())
    dec = _tp_decoder(backbone)
    run = tmp_path / "tp_decoder"
    save_decoder(run, dec, backbone=backbone, backbone_path=sample_checkpoint_dir(), backbone_meta=meta)
    plain, decoded = tmp_path / "plain.zarr", tmp_path / "dec.zarr"
    args = ["rollout", "--init", "2020-01-01", "--steps", "2", "--no-progress"]
    assert main([*args, "--out", str(plain)]) == 0
    assert main([*args, "--out", str(decoded), "--decoder", str(run)]) == 0
    out = capsys.readouterr().out
    assert f"decoder: {TP} from" in out and TP in out.splitlines()[-1]
    p, d = xr.open_zarr(plain).load(), xr.open_zarr(decoded).load()
    _same_prognostics(p, d)
    assert d[TP].attrs["comment"] == DECODER_COMMENT
    assert np.isnan(d[TP].isel(prediction_timedelta=0).values).all()
    assert np.isfinite(d[TP].isel(prediction_timedelta=[1, 2]).values).all()
    # a decoder trained on another backbone is refused with a clear message, no traceback
    torch.manual_seed(1)
    from atmos.models import build

    other = build(meta["model"]["name"], **meta["model"]["params"])
    save_decoder(tmp_path / "wrong", _tp_decoder(other), backbone=other, backbone_path=tmp_path / "other")
    assert main([*args, "--out", str(tmp_path / "w.zarr"), "--decoder", str(tmp_path / "wrong")]) == 2
    err = capsys.readouterr().err
    assert "hash" in err and "Traceback" not in err
