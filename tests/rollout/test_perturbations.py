"""The perturbation library (atmos.rollout.perturbations): invariants of every method.

Gaussian stays bit-identical to ``--perturb S``; every method is reproducible by seed, keeps
member 0 as the control (lagged: the forecast from the initial time), and gives members equal
to the deterministic forecast at scale 0; spherical noise has unit variance and a correlation
that depends on great-circle distance only, on lat-lon and HEALPix; bred vectors have exactly
the RMS asked for; lagged members are valid at the same times as the control.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from atmos.errors import ConfigError, DataError
from atmos.rollout import Perturbation, rollout
from atmos.rollout.perturb_bred import BredVectorPerturbation, rescale
from atmos.rollout.perturb_dropout import TemporalDropoutPerturbation, dropout_window
from atmos.rollout.perturb_spherical import SphericalPerturbation, angular_spectrum, real_sh_basis, sh_correlation
from atmos.rollout.perturbation import PerturbationMethod, PerturbationNoise, area_weights_like, weighted_rms
from atmos.rollout.perturbations import available, make_perturbation, parse_options
from atmos.rollout.tables import model_latlon

T0 = "2020-01-03"
ENS = "realization"


def _values(ds, var="2m_temperature"):
    return ds[var].values


def _old_code_path(fc, ds, init, steps, members, scale, length, seed):
    """What ``rollout(perturb=...)`` ran before the library: encode with the noise, then advance."""
    state = fc.encode(ds, init, members=members, perturbation=Perturbation(scale, length), seed=seed)
    out = [fc.decode(state)]
    for _ in range(steps):
        state = fc.advance(state)
        out.append(fc.decode(state))
    return np.stack(out)  # [L, B, C, *grid]


@pytest.mark.parametrize("length", [None, 1500.0])
def test_gaussian_is_bit_identical_to_perturb_and_to_the_old_code_path(vit_fc, mock_ds, length):
    kw = dict(steps=2, members=3, seed=4, perturb_length_scale=length)
    short = rollout(vit_fc, mock_ds, T0, perturb=0.1, **kw)
    named = rollout(vit_fc, mock_ds, T0, perturbation="gaussian", perturbation_scale=0.1, **kw)
    obj = rollout(vit_fc, mock_ds, T0, perturbation=Perturbation(0.1, length), **{**kw, "perturb_length_scale": None})
    for var in short.data_vars:
        np.testing.assert_array_equal(short[var].values, named[var].values)
        np.testing.assert_array_equal(short[var].values, obj[var].values)
    old = _old_code_path(vit_fc, mock_ds, T0, 2, 3, 0.1, length, seed=4)  # [L, B, C, lat, lon]
    c = [ch.variable for ch in vit_fc.channels["targets"]].index("2m_temperature")
    np.testing.assert_array_equal(_values(short)[0], old[:, :, c].transpose(1, 0, 2, 3).swapaxes(0, 1))
    assert short.attrs["atmos_perturbation_method"] == "gaussian"


def test_gaussian_noise_stream_is_pinned(vit_fc):
    """The white-noise stream of a seed, as written before the library (numpy default_rng)."""
    noise = PerturbationNoise(vit_fc.model_grid)(torch.Size([3, 1, 3, 16, 32]), Perturbation(1.0), seed=11)
    assert noise.shape == (3, 1, 3, 16, 32) and noise.dtype == torch.float32
    assert torch.all(noise[0] == 0)  # member 0: the control
    expect = np.random.default_rng(11).standard_normal((3, 3, 16 * 32))[1:].astype(np.float32)
    np.testing.assert_array_equal(noise[1:, 0].reshape(2, 3, -1).numpy(), expect)


def _methods(fc):
    """(name, scale, options) of every method that applies to ``fc``."""
    out = [("gaussian", 0.2, {}), ("spherical", 0.2, {"length_scale_km": 1500.0}),
           ("bred", 0.2, {"cycles": 2, "cycle": "12h"}), ("lagged", None, {"lag": "6h"})]
    if fc.history > 1:
        out.append(("temporal-dropout", 0.5, {}))
    return out


@pytest.mark.parametrize("fixture", ["vit_fc", "gru_fc"])
def test_seeds_reproduce_and_member_zero_is_the_control(fixture, mock_ds, request):
    fc = request.getfixturevalue(fixture)
    det = _values(rollout(fc, mock_ds, T0, steps=2))[:, :]  # [time, lead, *grid]
    for name, scale, opts in _methods(fc):
        kw = dict(steps=2, members=3, perturbation=name, perturbation_scale=scale, perturbation_options=opts)
        a = _values(rollout(fc, mock_ds, T0, seed=1, **kw))  # [time, lead, member, *grid]
        b = _values(rollout(fc, mock_ds, T0, seed=1, **kw))
        np.testing.assert_array_equal(a, b, err_msg=name)
        np.testing.assert_allclose(a[:, :, 0], det, rtol=1e-5, atol=1e-4, err_msg=name)  # member 0 = deterministic
        assert not np.allclose(a[:, -1, 1], a[:, -1, 0]), name  # the members differ
        if name != "lagged":  # lagged has no randomness: the seed changes nothing
            c = _values(rollout(fc, mock_ds, T0, seed=2, **kw))
            assert not np.array_equal(a, c), name


@pytest.mark.parametrize("fixture", ["vit_fc", "gru_fc"])
def test_zero_scale_gives_the_deterministic_forecast_in_every_member(fixture, mock_ds, request):
    fc = request.getfixturevalue(fixture)
    det = _values(rollout(fc, mock_ds, T0, steps=2))
    for name, _, opts in _methods(fc):
        if name == "lagged":
            continue  # no scale
        ens = _values(rollout(fc, mock_ds, T0, steps=2, members=3, perturbation=name, perturbation_scale=0.0,
                              perturbation_options=opts))
        for m in range(3):
            np.testing.assert_allclose(ens[:, :, m], det, rtol=1e-5, atol=1e-4, err_msg=f"{name} member {m}")


@pytest.mark.parametrize("fixture", ["vit_fc", "gru_fc"])
def test_spherical_noise_has_unit_variance_and_depends_on_distance_only(fixture, request):
    """Exact (the covariance of the basis is the addition theorem's function of distance) and sampled."""
    grid = request.getfixturevalue(fixture).model_grid  # lat-lon 16x32 / HEALPix nside 8 (faces)
    pert = SphericalPerturbation(1.0, length_scale_km=2000.0, control=False)
    y, amp = pert.basis(grid)
    cov = (y * amp**2) @ y.T  # [n, n]
    lat, lon = (np.deg2rad(np.asarray(a, dtype=np.float64).ravel()) for a in model_latlon(grid))
    xyz = np.stack([np.cos(lat) * np.cos(lon), np.cos(lat) * np.sin(lon), np.sin(lat)], axis=1)
    dist = np.arccos(np.clip(xyz @ xyz.T, -1.0, 1.0))
    spectrum = angular_spectrum(pert.degree(grid), 2000.0)
    np.testing.assert_allclose(np.diag(cov), 1.0, atol=1e-9)  # unit variance at every point
    np.testing.assert_allclose(cov, sh_correlation(dist, spectrum), atol=1e-9)  # a function of distance only
    near = (dist > 0) & (dist < 0.2)
    assert cov[near].min() > 0.5  # correlated at ~1000 km (L = 2000 km)
    eps = pert.noise(grid, (400, 2, *model_latlon(grid)[0].shape), seed=3).numpy().reshape(800, -1)
    assert abs(eps.var(axis=0).mean() - 1.0) < 0.05
    emp = eps.T @ eps / eps.shape[0]
    assert np.abs(emp - cov).max() < 0.3  # sampled covariance ~ theory (800 samples)


def test_real_basis_is_orthonormal_on_the_sphere():
    """Quadrature over a fine lat-lon grid: the real harmonics are orthonormal."""
    lat = np.linspace(-89.5, 89.5, 180)
    lon = np.arange(0, 360, 1.0)
    la, lo = np.meshgrid(lat, lon, indexing="ij")
    y, _ = real_sh_basis(la, lo, 6)
    w = (np.cos(np.deg2rad(la)) * np.deg2rad(1.0) ** 2).ravel()
    gram = (y * w[:, None]).T @ y
    np.testing.assert_allclose(gram, np.eye(y.shape[1]), atol=2e-3)


def test_bred_vectors_have_the_rms_asked_for(vit_fc, mock_ds):
    pert = BredVectorPerturbation(0.3, cycles=2, cycle="12h")
    state = pert.apply(vit_fc, mock_ds, T0, members=4, seed=0)
    d = state.history - state.history[:1]
    rms = weighted_rms(d, area_weights_like(vit_fc.model_grid)).numpy()
    assert rms[0] == 0.0
    np.testing.assert_allclose(rms[1:], 0.3, rtol=1e-5)
    control = vit_fc.encode(mock_ds, T0, members=1)
    np.testing.assert_array_equal(state.history[0], control.history[0])  # member 0: the analysis at T0
    # one cycle by hand: seed noise of RMS 0.3 at T0 - 12h, two model steps, difference rescaled to RMS 0.3
    w = area_weights_like(vit_fc.model_grid)
    start = vit_fc.encode(mock_ds, pd.Timestamp(T0) - pd.Timedelta("12h"), members=4)
    eps = torch.from_numpy(np.random.default_rng(0).standard_normal(tuple(start.history.shape)).astype(np.float32))
    eps[0] = 0.0
    start.history = start.history + rescale(eps, w, 0.3)
    grown = vit_fc.advance(vit_fc.advance(start)).history
    expect = control.history + rescale(grown - grown[:1], w, 0.3)
    one = BredVectorPerturbation(0.3, cycles=1, cycle="12h").apply(vit_fc, mock_ds, T0, members=4, seed=0)
    torch.testing.assert_close(one.history, expect, rtol=0, atol=1e-6)
    paired = BredVectorPerturbation(0.3, cycles=1, paired=True).apply(vit_fc, mock_ds, T0, members=5, seed=0)
    dp = paired.history - paired.history[:1]
    torch.testing.assert_close(dp[2], -dp[1], rtol=0, atol=1e-6)
    torch.testing.assert_close(dp[4], -dp[3], rtol=0, atol=1e-6)


def test_bred_vectors_need_the_cycles_history(vit_fc, mock_ds):
    with pytest.raises(DataError, match="cycle"):
        rollout(vit_fc, mock_ds, "2020-01-01T12", steps=1, members=2, perturbation="bred", perturbation_scale=0.1,
                perturbation_options={"cycles": 4})
    with pytest.raises(ConfigError, match="multiple"):
        rollout(vit_fc, mock_ds, T0, steps=1, members=2, perturbation="bred", perturbation_scale=0.1,
                perturbation_options=["cycle=5h"])


def test_lagged_members_are_earlier_forecasts_valid_at_the_same_times(vit_fc, mock_ds):
    ens = rollout(vit_fc, mock_ds, T0, steps=2, members=3, perturbation="lagged", perturbation_options={"lag": "12h"})
    assert ens["2m_temperature"].dims[:3] == ("time", "prediction_timedelta", ENS)
    valid = pd.DatetimeIndex(ens.valid_time.values[0])
    assert list(valid) == list(pd.Timestamp(T0) + pd.to_timedelta(["0h", "6h", "12h"]))
    t0 = pd.Timestamp(T0)
    for j in range(3):
        early = rollout(vit_fc, mock_ds, t0 - j * pd.Timedelta("12h"), steps=2 + 2 * j)
        # member j at lead k is the forecast from t0 - j*12h at lead k + j*12h: the same valid time
        np.testing.assert_allclose(
            _values(ens)[0, :, j], _values(early)[0, 2 * j:], rtol=1e-5, atol=1e-4, err_msg=f"member {j}"
        )
    with pytest.raises(ConfigError, match="no scale"):
        make_perturbation("lagged", 0.1)
    with pytest.raises(DataError, match="lagged"):
        rollout(vit_fc, mock_ds, "2020-01-01T12", steps=1, members=4, perturbation="lagged")


def test_temporal_dropout(gru_fc, vit_fc, mock_ds):
    with pytest.raises(ConfigError, match="history of 1 step"):
        rollout(vit_fc, mock_ds, T0, steps=1, members=2, perturbation="temporal-dropout", perturbation_scale=0.3)
    pert = TemporalDropoutPerturbation(0.9)
    keep = pert.keep_mask(6, 3, step=0, seed=0)
    assert keep[:, -1].all() and keep[0].all() and not keep.all()  # newest and control kept, others dropped
    np.testing.assert_array_equal(keep, pert.keep_mask(6, 3, step=0, seed=0))
    assert not np.array_equal(keep, pert.keep_mask(6, 3, step=1, seed=0))
    h = torch.arange(2 * 3, dtype=torch.float32).view(2, 3, 1)
    k = np.array([[True, True, True], [False, False, True]])
    assert dropout_window(h, k, "nearest")[1].flatten().tolist() == [5.0, 5.0, 5.0]
    assert dropout_window(h, k, "zero")[1].flatten().tolist() == [0.0, 0.0, 5.0]
    with pytest.raises(ConfigError, match=r"< 1"):
        TemporalDropoutPerturbation(1.0)


def test_bad_names_options_and_scales_name_the_valid_choices(vit_fc, mock_ds):
    assert available() == ["gaussian", "spherical", "bred", "lagged", "temporal-dropout"]
    for name in available():
        assert isinstance(make_perturbation(name, None if name == "lagged" else 0.1), PerturbationMethod)
    with pytest.raises(ConfigError, match=r"unknown perturbation method 'bread'.*'bred'"):
        make_perturbation("bread", 0.1)
    with pytest.raises(ConfigError, match=r"no option 'cycels'.*'cycles'"):
        parse_options("bred", ["cycels=2"])
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        parse_options("bred", ["cycles"])
    with pytest.raises(ConfigError, match="not a valid int"):
        parse_options("bred", ["cycles=two"])
    with pytest.raises(ConfigError, match=">= 0"):
        make_perturbation("spherical", -1.0)
    with pytest.raises(ConfigError, match="number"):
        make_perturbation("bred", "big")
    with pytest.raises(ConfigError, match="Gaussian shorthand"):
        rollout(vit_fc, mock_ds, T0, steps=1, members=2, perturb=0.1, perturbation="bred")
    with pytest.raises(ConfigError, match="members >= 2"):
        rollout(vit_fc, mock_ds, T0, steps=1, perturbation="bred", perturbation_scale=0.1)


def test_ensemble_dim_is_realization_by_default_and_member_on_request(vit_fc, mock_ds, tmp_path):
    from atmos.evaluation import evaluate
    from atmos.metrics import CRPS

    wb2 = rollout(vit_fc, mock_ds, T0, steps=1, members=2, perturb=0.1, out=tmp_path / "r.zarr")
    assert ENS in wb2.dims and "member" not in wb2.dims
    assert wb2[ENS].attrs["standard_name"] == "realization"
    old = rollout(vit_fc, mock_ds, T0, steps=1, members=2, perturb=0.1, ensemble_dim="member")
    assert "member" in old.dims and ENS not in old.dims
    np.testing.assert_array_equal(_values(wb2), _values(old))
    with pytest.raises(ConfigError, match="realization"):
        rollout(vit_fc, mock_ds, T0, steps=1, members=2, perturb=0.1, ensemble_dim="ens")
    # atmos reads what it writes, under either name
    a = evaluate(wb2, mock_ds, metrics=[CRPS()], baselines=(), variables=["2m_temperature"])
    b = evaluate(old, mock_ds, metrics=[CRPS()], baselines=(), variables=["2m_temperature"])
    for name in a.data_vars:
        np.testing.assert_allclose(a[name].values, b[name].values, rtol=1e-6)


def test_cli_perturbation_flags(tmp_path, capsys):
    import xarray as xr

    from atmos.cli.main import main

    out = tmp_path / "bred.zarr"
    args = ["rollout", "--init", "2020-01-03", "--steps", "1", "--members", "3", "--out", str(out)]
    assert main(args + ["--perturbation", "bred", "--perturbation-scale", "0.1", "--perturbation-option",
                        "cycles=1"]) == 0
    ds = xr.open_zarr(out)
    assert ds.sizes[ENS] == 3 and ds.attrs["atmos_perturbation_method"] == "bred"
    assert main(args + ["--perturbation", "bread", "--perturbation-scale", "0.1", "--overwrite"]) == 2
    assert "gaussian" in capsys.readouterr().err
    assert main(args + ["--perturbation", "spherical", "--overwrite"]) == 2
    assert "--perturbation-scale" in capsys.readouterr().err


def test_a_store_written_as_member_resumes_only_as_member(vit_fc, mock_ds, tmp_path):
    out = tmp_path / "m.zarr"

    def stop(i, k):
        if k == 1:
            raise KeyboardInterrupt

    kw = dict(steps=3, members=2, perturb=0.1, out=out)
    with pytest.raises(KeyboardInterrupt):
        rollout(vit_fc, mock_ds, T0, ensemble_dim="member", callback=stop, **kw)
    with pytest.raises(ConfigError, match="ensemble_dim: 'member' in the store, 'realization' now"):
        rollout(vit_fc, mock_ds, T0, resume=True, **kw)
    done = rollout(vit_fc, mock_ds, T0, resume=True, ensemble_dim="member", **kw)
    assert done.sizes["member"] == 2


def test_the_accessor_passes_the_perturbation_through(vit_fc, mock_ds):
    ds = mock_ds.atmos.rollout(vit_fc, T0, steps=1, members=3, perturbation="spherical", perturbation_scale=0.1)
    assert ds.sizes[ENS] == 3 and ds.attrs["atmos_perturbation_method"] == "spherical"
