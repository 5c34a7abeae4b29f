"""Block bootstrap over init times: resampling, coverage, paired significance, and compare()."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from atmos.errors import ConfigError, DataError
from atmos.evaluation import compare, format_comparison
from atmos.metrics import MSE, align_truth, block_bootstrap_indices, bootstrap_difference, bootstrap_score
from atmos.metrics.bootstrap import default_block_length, resolve_block_length
from atmos.testing import mock_era5

LAT = np.array([-45.0, 45.0])
LON = np.array([0.0, 180.0])


def _field(x: np.ndarray) -> xr.DataArray:
    return xr.DataArray(x, dims=("time", "latitude", "longitude"),
                        coords={"time": np.arange(x.shape[0]), "latitude": LAT, "longitude": LON})


def test_block_indices():
    idx = block_bootstrap_indices(10, n_boot=50, block_length=3, seed=1)
    assert idx.shape == (50, 10) and idx.min() >= 0 and idx.max() < 10
    # consecutive within blocks (circularly)
    assert np.all((idx[:, 1] - idx[:, 0]) % 10 == 1) and np.all((idx[:, 2] - idx[:, 1]) % 10 == 1)
    np.testing.assert_array_equal(idx, block_bootstrap_indices(10, n_boot=50, block_length=3, seed=1))
    assert not np.array_equal(idx, block_bootstrap_indices(10, n_boot=50, block_length=3, seed=2))
    moving = block_bootstrap_indices(10, n_boot=200, block_length=4, seed=0, circular=False)
    assert moving.max() < 10
    assert default_block_length(23) == 3 and default_block_length(62) == 4 and default_block_length(1) == 1
    times = np.arange("2020-01-01", "2020-01-11", np.timedelta64(12, "h"), dtype="datetime64[ns]")
    assert resolve_block_length("2D", times, times.size) == 4
    with pytest.raises(ConfigError, match="duration"):
        resolve_block_length("soon", times, times.size)
    with pytest.raises(ConfigError, match="positive"):
        block_bootstrap_indices(10, block_length=0)


def test_interval_covers_the_true_value_at_about_the_nominal_rate():
    """200 draws of 40 init times, i.i.d. unit-variance errors: true RMSE = 1; 95 % intervals cover ~95 %."""
    rng = np.random.default_rng(0)
    hits = 0
    n_draw = 200
    for k in range(n_draw):
        err = _field(rng.normal(size=(40, 2, 2)))
        vals = MSE().compute_chunk(err, xr.zeros_like(err))
        ci = bootstrap_score(vals, np.sqrt, n_boot=400, block_length=2, seed=k)
        hits += float(ci["lower"]) <= 1.0 <= float(ci["upper"])
    # binomial sd at 95 % over 200 draws is 1.5 %; the percentile bootstrap of 40 samples under-covers a little
    assert 0.85 <= hits / n_draw <= 0.99


def test_blocks_are_needed_for_autocorrelated_inits():
    """AR(1) errors (phi 0.8) from init to init: the i.i.d. bootstrap under-covers, blocks of 10 repair much of it."""
    rng = np.random.default_rng(1)
    cover = {1: 0, 10: 0}
    n_draw, n = 150, 120
    for k in range(n_draw):
        e = np.zeros(n)
        for t in range(1, n):
            e[t] = 0.8 * e[t - 1] + rng.normal() * np.sqrt(1 - 0.64)
        vals = xr.DataArray(e, dims=("time",), coords={"time": np.arange(n)})
        for L in cover:
            ci = bootstrap_score(vals, n_boot=300, block_length=L, seed=k)
            cover[L] += float(ci["lower"]) <= 0.0 <= float(ci["upper"])
    # (the block bootstrap itself under-covers a little at this strong persistence and n = 120)
    assert cover[1] / n_draw < 0.7
    assert cover[10] / n_draw > 0.75 and (cover[10] - cover[1]) / n_draw > 0.15


def _pair(noise_a: float, noise_b: float, seed_a: int, seed_b: int, n: int = 40):
    rng_t = np.random.default_rng(99)
    truth = rng_t.normal(size=(n, 6, 2, 2))  # (time, lead, lat, lon)
    ra, rb = np.random.default_rng(seed_a), np.random.default_rng(seed_b)
    lead_scale = np.linspace(0.2, 1.0, 6)[None, :, None, None]
    fa = truth + noise_a * lead_scale * ra.normal(size=truth.shape)
    fb = truth + noise_b * lead_scale * rb.normal(size=truth.shape)
    def da(x):
        return xr.DataArray(x, dims=("time", "prediction_timedelta", "latitude", "longitude"),
                            coords={"time": np.arange(n), "prediction_timedelta": np.arange(6), "latitude": LAT,
                                    "longitude": LON})
    y = da(truth)
    return MSE().compute_chunk(da(fa), y), MSE().compute_chunk(da(fb), y)


def test_paired_difference_significance():
    # the same forecast error level, different noise seeds: no significant difference at most leads
    va, vb = _pair(1.0, 1.0, 1, 2)
    d = bootstrap_difference(va, vb, np.sqrt, n_boot=500, seed=0)
    assert int(d["significant"].sum()) <= 1
    assert bool(((d["lower"] <= d["difference"]) & (d["difference"] <= d["upper"])).all())
    # truth + small noise vs truth + large noise: significant at every lead, A better
    va, vb = _pair(0.3, 1.5, 1, 2)
    d = bootstrap_difference(va, vb, np.sqrt, n_boot=500, seed=0)
    assert bool(d["significant"].all()) and bool((d["upper"] < 0).all())
    assert float(d["p_value"].max()) < 0.01
    with pytest.raises(DataError, match="share"):
        bootstrap_difference(va, vb.assign_coords(time=vb["time"] + 1000))
    with pytest.raises(DataError, match="per-init"):
        bootstrap_score(va.mean("time"))


@pytest.fixture(scope="module")
def world():
    truth = mock_era5("2020-01-01", periods=4 * 12, nlat=8, nlon=16, variables=["geopotential", "2m_temperature"],
                      canonical=True, statics=False).load()
    inits = truth.time.values[: 4 * 8 : 2]  # 16 inits every 12 h
    leads = pd.timedelta_range("0h", "2D", freq="12h")
    perfect = align_truth(xr.Dataset(coords={"time": inits, "prediction_timedelta": leads.to_numpy()}),
                          truth).drop_vars("valid_time")
    return truth, perfect


def _noisy(perfect: xr.Dataset, scale: float, seed: int, members: int | None = None, dim: str = "member"):
    rng = np.random.default_rng(seed)
    out = {}
    for v, da in perfect.data_vars.items():
        shape = ((members,) if members else ()) + da.shape
        noise = rng.normal(size=shape) * float(da.std()) * scale
        if members:
            out[v] = (dim,) + da.dims, da.values[None] + noise
        else:
            out[v] = da.dims, da.values + noise
    return xr.Dataset(out, coords=perfect.coords)


def test_compare_forecasts_and_baselines(world):
    truth, perfect = world
    a, b = _noisy(perfect, 0.05, 1), _noisy(perfect, 0.05, 2)
    c = compare(a, b, truth, variables=["z500", "t2m"], n_boot=300)
    assert set(c.data_vars) >= {"score_a", "score_b", "difference", "lower", "upper", "significant", "p_value"}
    assert c.attrs["n_init_times"] == 16 and c.attrs["block_length"] == 3
    assert int(c["significant"].sum()) <= 2  # noise seeds only
    worse = compare(a, _noisy(perfect, 0.5, 3), truth, variables=["z500", "t2m"], n_boot=300)
    assert bool(worse["significant"].sel(metric="rmse").all())
    pers = compare(a, "persistence", truth, variables=["z500", "t2m"], n_boot=300)
    sig = pers["significant"].sel(metric="rmse")
    assert bool(sig.isel(prediction_timedelta=slice(1, None)).all())  # lead 0: persistence is the truth
    assert "A - B" in format_comparison(pers)
    # ensembles under either dim name compare identically
    e1 = _noisy(perfect, 0.05, 4, members=3)
    e2 = _noisy(perfect, 0.05, 5, members=3)
    c1 = compare(e1, e2, truth, variables=["t2m"], n_boot=200)
    c2 = compare(e1.rename(member="realization"), e2, truth, variables=["t2m"], n_boot=200)
    xr.testing.assert_identical(c1, c2)
    assert "crps" in c1["metric"].values
    with pytest.raises(ConfigError, match="baseline"):
        compare(a, "nosuch", truth)
