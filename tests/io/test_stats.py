"""Tests of atmos.io.stats: area-weighted statistics, residual statistics, I/O, normalization."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import dask
import dask.array as da
import numpy as np
import pandas as pd
import pytest
import xarray as xr

from atmos.errors import ConfigError, DataError
from atmos.grids import HealpixGrid, LatLonGrid
from atmos.io.stats import (
    STATISTICS,
    ZeroStdWarning,
    compute_and_save_stats,
    compute_stats,
    denormalize,
    load_stats,
    normalize,
    save_stats,
)
from atmos.testing._mock import mock_era5

REPO = Path(__file__).resolve().parents[2]
DATA = Path(os.environ.get("ATMOS_DATA", REPO.parent / "shared" / "data"))


def _raise_scheduler(*args, **kwargs):
    raise AssertionError("something was computed")


def _cube(field: np.ndarray, nt: int = 8, freq: str = "6h", chunks: int = 3, grid=None, name: str = "x"):
    """A lat-lon cube [time, lat, lon] from an array of that shape (dask, time-chunked)."""
    grid = grid or LatLonGrid.equiangular(field.shape[-2], field.shape[-1])
    times = pd.date_range("2020-01-01", periods=field.shape[0], freq=freq)
    arr = xr.DataArray(
        da.from_array(field, chunks=(chunks, -1, -1)),
        dims=("time", "latitude", "longitude"),
        coords={"time": times, "latitude": grid.lat, "longitude": grid.lon},
        attrs={"units": "K"},
    )
    return xr.Dataset({name: arr})


def _weighted(f: np.ndarray, w: np.ndarray) -> tuple[float, float]:
    """Two-pass float64 reference: f [..., nlat, nlon] with time weighing equally."""
    f = np.asarray(f, np.float64)
    ww = np.broadcast_to(w, f.shape)
    m = (ww * f).sum() / ww.sum()
    return m, np.sqrt((ww * (f - m) ** 2).sum() / ww.sum())


def test_area_weighted_mean_std_exact():
    grid = LatLonGrid.equiangular(16, 32)
    lat2, lon2 = grid.centers()
    f = (280.0 + 30.0 * np.cos(np.radians(lat2)) ** 2 + 2.0 * np.sin(np.radians(lon2))).astype(np.float32)
    field = np.repeat(f[None], 6, axis=0)  # constant in time, varies with latitude (and longitude)
    st = compute_stats(_cube(field, grid=grid)).compute()
    m, s = _weighted(f, grid.area_weights())
    assert st["x"].sel(statistic="mean").item() == pytest.approx(m, rel=1e-12)
    assert st["x"].sel(statistic="std").item() == pytest.approx(s, rel=1e-10)
    # not the unweighted values (the test would not catch missing weights otherwise)
    assert abs(st["x"].sel(statistic="mean").item() - f.astype(np.float64).mean()) > 1.0
    # constant in time: residual is exactly zero
    assert st["x"].sel(statistic="residual_mean").item() == 0.0
    assert st["x"].sel(statistic="residual_std").item() == 0.0
    assert list(st["statistic"].values) == list(STATISTICS)
    assert st["x"].attrs["units"] == "K"
    assert st.attrs["n_time"] == 6 and st.attrs["dims"] == "time latitude longitude"


def test_residual_of_linear_field():
    grid = LatLonGrid.equiangular(8, 16)
    rng = np.random.default_rng(1)
    f = np.round(rng.normal(size=grid.shape) * 64) / 64  # exactly representable
    t = np.arange(10)[:, None, None]
    field = (f[None] + 0.25 * t).astype(np.float32)
    st = compute_stats(_cube(field, chunks=4, grid=grid)).compute()  # diffs across chunk boundaries too
    assert st["x"].sel(statistic="residual_mean").item() == 0.25
    assert st["x"].sel(statistic="residual_std").item() == 0.0
    m, s = _weighted(field, grid.area_weights())
    assert st["x"].sel(statistic="mean").item() == pytest.approx(m, rel=1e-12)
    assert st["x"].sel(statistic="std").item() == pytest.approx(s, rel=1e-10)


def test_residual_skips_time_gaps():
    grid = LatLonGrid.equiangular(4, 8)
    times = pd.DatetimeIndex(
        ["2020-01-01T00", "2020-01-01T06", "2020-01-01T12", "2020-01-02T12", "2020-01-02T18"]
    )
    hours = ((times - times[0]) / pd.Timedelta("1h")).to_numpy()
    field = np.broadcast_to((0.5 * hours)[:, None, None], (5, *grid.shape)).astype(np.float32).copy()
    ds = _cube(field, grid=grid, chunks=2).assign_coords(time=times)
    st = compute_stats(ds).compute()
    # every 6 h step adds 3.0; the 24 h jump across the gap is left out
    assert st["x"].sel(statistic="residual_mean").item() == 3.0
    assert st["x"].sel(statistic="residual_std").item() == 0.0


def test_float32_large_mean_no_cancellation():
    grid = LatLonGrid.equiangular(16, 32)
    rng = np.random.default_rng(2)
    field = (1.0e5 + rng.normal(size=(40, *grid.shape))).astype(np.float32)  # std 1 on mean 1e5
    st = compute_stats(_cube(field, nt=40, chunks=7, grid=grid)).compute()
    m, s = _weighted(field, grid.area_weights())
    d = np.diff(field.astype(np.float64), axis=0)
    rm, rs = _weighted(d, grid.area_weights())
    assert st["x"].sel(statistic="mean").item() == pytest.approx(m, rel=1e-13)
    assert st["x"].sel(statistic="std").item() == pytest.approx(s, rel=1e-9)
    assert st["x"].sel(statistic="residual_mean").item() == pytest.approx(rm, abs=1e-9)
    assert st["x"].sel(statistic="residual_std").item() == pytest.approx(rs, rel=1e-9)


def test_nan_values_are_skipped():
    grid = LatLonGrid.equiangular(8, 16)
    rng = np.random.default_rng(3)
    field = rng.normal(size=(6, *grid.shape)).astype(np.float32)
    field[:, :2] = np.nan  # southern rows missing (e.g. sea-ice-free SST over land)
    st = compute_stats(_cube(field, grid=grid)).compute()
    w = np.broadcast_to(grid.area_weights(), field.shape)
    ok = ~np.isnan(field)
    m = (w * np.where(ok, field, 0)).sum() / (w * ok).sum()
    s = np.sqrt((w * np.where(ok, (field - m) ** 2, 0)).sum() / (w * ok).sum())
    assert st["x"].sel(statistic="mean").item() == pytest.approx(m, rel=1e-6)
    assert st["x"].sel(statistic="std").item() == pytest.approx(s, rel=1e-6)
    assert np.isfinite(st["x"].sel(statistic="residual_std").item())


def test_levels_statics_and_layout():
    ds = mock_era5(periods=6, canonical=True, variables=["temperature", "2m_temperature"])
    st = compute_stats(ds).compute()
    assert st["temperature"].dims == ("statistic", "level")
    assert st["2m_temperature"].dims == ("statistic",)
    assert list(st["level"].values) == [500, 850]
    # per level equals the weighted stats of that level
    w = LatLonGrid.from_coords(ds.latitude.values, ds.longitude.values).area_weights()
    for lev in (500, 850):
        m, s = _weighted(ds["temperature"].sel(level=lev).values, w)
        assert st["temperature"].sel(statistic="mean", level=lev).item() == pytest.approx(m, rel=1e-12)
        assert st["temperature"].sel(statistic="std", level=lev).item() == pytest.approx(s, rel=1e-10)
    # statics: spatial stats only, residual NaN
    m, s = _weighted(ds["land_sea_mask"].values, w)
    assert st["land_sea_mask"].sel(statistic="mean").item() == pytest.approx(m, rel=1e-12)
    assert st["land_sea_mask"].sel(statistic="std").item() == pytest.approx(s, rel=1e-10)
    assert np.isnan(st["land_sea_mask"].sel(statistic=["residual_mean", "residual_std"]).values).all()


def test_dims_subset_keeps_grid():
    grid = LatLonGrid.equiangular(4, 8)
    rng = np.random.default_rng(4)
    field = rng.normal(size=(6, *grid.shape))
    st = compute_stats(_cube(field, grid=grid), dims=("time",)).compute()
    assert st["x"].dims == ("statistic", "latitude", "longitude")
    np.testing.assert_allclose(st["x"].sel(statistic="mean").values, field.mean(0), rtol=1e-12)
    np.testing.assert_allclose(st["x"].sel(statistic="std").values, field.std(0), rtol=1e-10)
    np.testing.assert_allclose(
        st["x"].sel(statistic="residual_std").values, np.diff(field, axis=0).std(0), rtol=1e-9
    )


def test_healpix_reduces_over_cells():
    g = HealpixGrid(4)
    rng = np.random.default_rng(5)
    vals = rng.normal(size=(5, g.npix)) + 10.0
    ds = xr.Dataset(
        {"x": (("time", "cell"), vals)},
        coords={
            "time": pd.date_range("2020-01-01", periods=5, freq="6h"),
            "cell_ids": ("cell", g.cell_ids, g.xdggs_attrs()),
        },
    ).chunk(time=2)
    st = compute_stats(ds).compute()  # default dims mention latitude/longitude -> cell
    assert st["x"].dims == ("statistic",)
    assert st["x"].sel(statistic="mean").item() == pytest.approx(vals.mean(), rel=1e-12)  # equal areas
    assert st["x"].sel(statistic="std").item() == pytest.approx(vals.std(), rel=1e-10)
    assert st["x"].sel(statistic="residual_std").item() == pytest.approx(
        np.diff(vals, axis=0).std(), rel=1e-10
    )


def test_lazy_until_computed():
    ds = mock_era5(periods=8, canonical=True, variables=["geopotential", "2m_temperature"])
    with dask.config.set(scheduler=_raise_scheduler):
        st = compute_stats(ds)
        assert all(hasattr(v.data, "dask") for v in st.data_vars.values())
        with pytest.raises(AssertionError, match="computed"):
            st.compute()
    with dask.config.set(scheduler="synchronous"):
        a = st.compute()
    b = compute_stats(ds).compute(scheduler="threads")
    xr.testing.assert_allclose(a, b, rtol=1e-13)


def test_distributed_equals_local():
    distributed = pytest.importorskip("distributed")
    ds = mock_era5(periods=12, canonical=True, variables=["temperature", "mean_sea_level_pressure"])
    local = compute_stats(ds).compute(scheduler="synchronous")
    with (
        distributed.LocalCluster(
            n_workers=1, threads_per_worker=1, processes=False, dashboard_address=None
        ) as cl,
        distributed.Client(cl),
    ):
        remote = compute_stats(ds).compute()
    xr.testing.assert_allclose(local, remote, rtol=1e-13)


@pytest.mark.parametrize("suffix", [".nc", ".zarr"])
def test_save_load_round_trip(tmp_path, suffix):
    ds = mock_era5(periods=6, canonical=True, variables=["temperature", "2m_temperature"])
    st = compute_stats(ds).compute()
    path = tmp_path / f"stats{suffix}"
    save_stats(st, path)

    def loaded():
        back = load_stats(path)
        assert back.attrs.pop("Conventions") == "CF-1.11"  # every file atmos writes is CF-labelled
        back.attrs.pop("history", None)
        return back

    back = loaded()
    xr.testing.assert_identical(back, st)
    assert back.attrs["n_time"] == 6
    save_stats(compute_stats(ds), path)  # lazy stats are computed when saved; overwrite works
    xr.testing.assert_identical(loaded(), st)


def test_io_errors(tmp_path):
    st = compute_stats(mock_era5(periods=4, canonical=True, variables=["2m_temperature"]))
    with pytest.raises(ConfigError, match=r"\.nc"):
        save_stats(st, tmp_path / "stats.csv")
    with pytest.raises(DataError, match="statistic"):
        save_stats(xr.Dataset({"a": ("x", [1.0])}), tmp_path / "s.nc")
    with pytest.raises(OSError, match="does not exist"):
        load_stats(tmp_path / "missing.nc")


def test_compute_and_save_with_progress(tmp_path, capsys):
    ds = mock_era5(periods=6, canonical=True, variables=["temperature"], statics=False)
    out = compute_and_save_stats(ds, tmp_path / "s.nc", progress=True)
    assert capsys.readouterr().out == ""  # tqdm writes to stderr only
    xr.testing.assert_equal(load_stats(tmp_path / "s.nc"), out)  # + Conventions, history
    xr.testing.assert_allclose(out, compute_stats(ds).compute(), rtol=1e-13)


def test_normalize_round_trip_and_values():
    ds = mock_era5(periods=6, canonical=True, variables=["temperature", "2m_temperature"], statics=False)
    st = compute_stats(ds).compute()
    n = normalize(ds, st)
    assert hasattr(n["temperature"].data, "dask")  # stays lazy
    assert n["temperature"].dtype == np.float32
    assert n["temperature"].dims == ds["temperature"].dims
    m = st["temperature"].sel(statistic="mean", level=850).item()
    s = st["temperature"].sel(statistic="std", level=850).item()
    np.testing.assert_allclose(
        n["temperature"].sel(level=850).values,
        (ds["temperature"].sel(level=850).values - m) / s,
        rtol=1e-5,
        atol=1e-5,
    )
    assert n["temperature"].attrs["units"] == "1" and n["temperature"].attrs["atmos_normalized"] == "state"
    back = denormalize(n, st)
    xr.testing.assert_allclose(back, ds, rtol=1e-5)
    assert back["temperature"].attrs["units"] == "K" and "atmos_normalized" not in back["temperature"].attrs
    # normalized state has (area-weighted) mean 0 and std 1
    st2 = compute_stats(n.astype(np.float64)).compute()
    np.testing.assert_allclose(st2["temperature"].sel(statistic="mean").values, 0.0, atol=1e-5)
    np.testing.assert_allclose(st2["temperature"].sel(statistic="std").values, 1.0, rtol=1e-5)
    # residual kind: increments normalized by residual stats
    inc = ds["2m_temperature"].diff("time")
    r = normalize(inc, st, kind="residual")
    rm = st["2m_temperature"].sel(statistic="residual_mean").item()
    rs = st["2m_temperature"].sel(statistic="residual_std").item()
    np.testing.assert_allclose(r.values, (inc.values - rm) / rs, rtol=1e-4, atol=1e-4)
    # a subset of levels (and a single level kept as scalar coordinate) is matched by label
    one = normalize(ds[["temperature"]].sel(level=[850]), st)
    np.testing.assert_allclose(
        one["temperature"].values[:, 0], n["temperature"].sel(level=850).values, rtol=1e-6
    )
    scal = normalize(ds[["temperature"]].sel(level=850), st)
    np.testing.assert_allclose(scal["temperature"].values, n["temperature"].sel(level=850).values, rtol=1e-6)


def test_normalize_errors_and_zero_std():
    ds = mock_era5(periods=4, canonical=True, variables=["2m_temperature", "temperature"])
    st = compute_stats(ds[["2m_temperature", "land_sea_mask"]]).compute()
    with pytest.raises(DataError, match=r"'temperature'.*2m_temperature.*land_sea_mask"):
        normalize(ds, st)
    st_t = compute_stats(ds[["temperature"]].sel(level=[500])).compute()
    with pytest.raises(DataError, match=r"level \[850\]"):
        normalize(ds[["temperature"]], st_t)
    with pytest.raises(DataError, match="kind='state'"):
        normalize(ds[["land_sea_mask"]], st, kind="residual")
    with pytest.raises(ConfigError, match="kind"):
        normalize(ds[["2m_temperature"]], st, kind="bogus")
    # constant field (all-ones mask): std 0 -> use 1 and warn
    ones = ds[["land_sea_mask"]].copy()
    ones["land_sea_mask"] = xr.ones_like(ones["land_sea_mask"])
    st1 = compute_stats(ones).compute()
    assert st1["land_sea_mask"].sel(statistic="std").item() == 0.0
    with pytest.warns(ZeroStdWarning, match="land_sea_mask"):
        z = normalize(ones, st1)
    np.testing.assert_array_equal(z["land_sea_mask"].values, 0.0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ZeroStdWarning)
        xr.testing.assert_allclose(denormalize(z, st1), ones)


def test_unknown_inputs():
    ds = mock_era5(periods=4, canonical=True, variables=["2m_temperature"])
    with pytest.raises(DataError, match="nonexistent"):
        compute_stats(ds, variables=["nonexistent"])
    with pytest.raises(DataError, match="'height'"):
        compute_stats(ds, dims=("time", "height"))


@pytest.mark.skipif(
    not (DATA / "speedy-world-2019-12.zarr").exists(), reason="SPEEDY-world data not available"
)
def test_real_speedy_world_stats():
    ds = xr.open_zarr(DATA / "speedy-world-2019-12.zarr").transpose("time", ..., "latitude", "longitude")
    st = compute_stats(ds).compute()
    for name, v in st.data_vars.items():
        vals = v.sel(statistic=["mean", "std"]).values
        assert np.isfinite(vals).all(), name
        if "time" in ds[name].dims:
            assert np.isfinite(v.sel(statistic=["residual_mean", "residual_std"]).values).all(), name
    z500 = st["geopotential"].sel(statistic="mean", level=500).item()
    assert 5.0e4 < z500 < 5.8e4
    assert 200.0 < st["2m_temperature"].sel(statistic="mean").item() < 320.0
    assert 0.0 < st["land_sea_mask"].sel(statistic="mean").item() < 1.0
    # the residual std of z500 (6 h increments) is much smaller than its std
    assert st["geopotential"].sel(statistic="residual_std", level=500) < st["geopotential"].sel(
        statistic="std", level=500
    )


def test_stats_of_one_time_step_equal_those_of_a_length_one_series():
    """A dataset without a time dim (``isel(time=0)``) has the state statistics of a one-step series."""
    ds = mock_era5(periods=4, canonical=True, variables=["temperature", "2m_temperature"])
    a = compute_stats(ds.isel(time=0)).compute()
    b = compute_stats(ds.isel(time=[0])).compute()
    for name in ("temperature", "2m_temperature"):
        np.testing.assert_allclose(a[name].sel(statistic=["mean", "std"]), b[name].sel(statistic=["mean", "std"]))
        assert np.isnan(a[name].sel(statistic="residual_std")).all()


def test_normalize_with_a_dataset_that_is_not_statistics_is_a_clear_error():
    ds = mock_era5(periods=2, canonical=True, variables=["2m_temperature"])
    with pytest.raises(DataError, match="not an atmos statistics dataset"):
        normalize(ds, ds)
    with pytest.raises(DataError, match="got DataArray"):
        normalize(ds, ds["2m_temperature"])
