"""Tests of atmos.io.windows.WindowDataset (and the derived forcings it uses)."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import dask.array as da
import numpy as np
import pandas as pd
import pytest
import torch
import xarray as xr

from atmos.errors import ConfigError, DataError
from atmos.grids import HealpixGrid
from atmos.io.forcings import DERIVED_FORCINGS, derived_forcing, derived_forcings
from atmos.io.stats import compute_stats
from atmos.io.windows import WindowDataset, WindowSchema

REPO = Path(__file__).resolve().parents[2]
DATA = Path(os.environ.get("ATMOS_DATA", REPO.parent / "shared" / "data"))

NLAT, NLON = 4, 8
LEVELS = (500, 850)
LEVEL_VARS = ("temperature", "geopotential")
SURF_VARS = ("2m_temperature", "toa_incident_solar_radiation")
T0 = pd.Timestamp("2020-01-01")
SIX = pd.Timedelta("6h")


def _spatial() -> np.ndarray:
    """A pattern in [0, 1) that identifies the grid point, exact in float32: [lat, lon]."""
    return np.arange(NLAT)[:, None] / 8.0 + np.arange(NLON)[None, :] / 128.0


def _code(var: str, level: int | None) -> int:
    names = LEVEL_VARS + SURF_VARS
    return 100 * names.index(var) + (10 * (LEVELS.index(level) + 1) if level is not None else 0)


def index_cube(times=None, nt: int = 24, chunks: int = 5) -> xr.Dataset:
    """Values = 1000 * time index + 100 * variable + 10 * level + grid pattern (exact integers + fraction).

    Stored in the WB2 order (time, level, longitude, latitude), dask-chunked along time,
    then transposed to the canonical order, like a real cube.
    """
    times = pd.date_range(T0, periods=nt, freq="6h") if times is None else pd.DatetimeIndex(times)
    tidx = np.asarray(((times - T0) / SIX), dtype=np.float64)  # time index on the 6-hourly axis
    sp = _spatial().T  # [lon, lat]
    lat = -90 + (180 / NLAT) * (np.arange(NLAT) + 0.5)
    lon = np.arange(NLON) * (360 / NLON)
    data = {}
    for v in LEVEL_VARS:
        vals = np.stack(
            [1000 * tidx[:, None, None] + _code(v, lev) + sp[None] for lev in LEVELS], axis=1
        ).astype(np.float32)
        data[v] = (
            ("time", "level", "longitude", "latitude"),
            da.from_array(vals, chunks=(chunks, -1, -1, -1)),
            {"units": "K"},
        )
    for v in SURF_VARS:
        vals = (1000 * tidx[:, None, None] + _code(v, None) + sp[None]).astype(np.float32)
        data[v] = (
            ("time", "longitude", "latitude"),
            da.from_array(vals, chunks=(chunks, -1, -1)),
            {"units": "W m-2"},
        )
    data["land_sea_mask"] = (("longitude", "latitude"), (sp > 0.3).astype(np.float32), {"units": "1"})
    data["geopotential_at_surface"] = (
        ("longitude", "latitude"),
        (100.0 * sp).astype(np.float32),
        {"units": "m2 s-2"},
    )
    ds = xr.Dataset(data, coords={"time": times, "level": list(LEVELS), "latitude": lat, "longitude": lon})
    return ds.transpose("time", ..., "latitude", "longitude")


def _tindex(ns: np.ndarray | int) -> np.ndarray:
    return (
        np.asarray(ns, dtype="datetime64[ns]") - np.datetime64(T0.to_datetime64(), "ns")
    ) / np.timedelta64(6, "h")


def _check_item(item: dict, wd: WindowDataset, k: int) -> None:
    """Every channel of every time of an item holds exactly the value of its time index."""
    h, lead = wd.history, wd.lead_steps
    t0 = _tindex(int(item["time"]))
    sp = _spatial()
    for group, offsets in (("inputs", np.arange(-(h - 1), 1)), ("targets", np.arange(1, lead + 1))):
        x = item[group].numpy()
        assert x.shape == (len(offsets), len(wd.channels[group]), NLAT, NLON)
        for c, ch in enumerate(wd.schema().groups[group]):
            for s, off in enumerate(offsets):
                want = 1000 * (t0 + off * k) + _code(ch.variable, ch.level) + sp
                np.testing.assert_array_equal(
                    x[s, c], want.astype(np.float32), err_msg=f"{group}[{s}] {ch.name}"
                )
    f = item["forcings"].numpy()
    times = np.datetime64(T0.to_datetime64(), "ns") + (
        t0 + np.arange(-(h - 1), lead + 1) * k
    ) * np.timedelta64(6, "h")
    for c, ch in enumerate(wd.schema().groups["forcings"]):
        for s in range(h + lead):
            if ch.source == "derived":
                want = derived_forcing(ch.name, times[s : s + 1], np.broadcast_to(wd.grid.lon, (NLAT, NLON)))[
                    0
                ]
            else:
                want = 1000 * _tindex(times[s]) + _code(ch.variable, ch.level) + sp
            np.testing.assert_array_equal(
                f[s, c], np.asarray(want, np.float32), err_msg=f"forcings[{s}] {ch.name}"
            )


@pytest.mark.parametrize("cache", ["blocks", "memory"])
@pytest.mark.parametrize("step,k", [("6h", 1), ("12h", 2)])
def test_windows_align_exactly(cache, step, k):
    ds = index_cube()
    wd = WindowDataset(
        ds,
        ["temperature", "2m_temperature"],
        ["geopotential", "temperature"],
        forcings=["toa_incident_solar_radiation", "cos_time_of_day", "sin_day_of_year"],
        statics=["land_sea_mask"],
        history=2,
        lead_steps=3,
        step=step,
        cache=cache,
    )
    assert len(wd) == 24 - (2 - 1 + 3) * k  # every t0 whose window fits
    for i in range(len(wd)):
        item = wd[i]
        _check_item(item, wd, k)
        assert _tindex(int(item["time"])) == i + k  # first valid t0 is (history - 1) * step in
    np.testing.assert_array_equal(_tindex(wd.times.astype(np.int64)), np.arange(len(wd)) + k)
    assert wd[-1]["time"] == wd[len(wd) - 1]["time"]
    with pytest.raises(IndexError):
        wd[len(wd)]


def test_shapes_channels_and_schema():
    ds = index_cube()
    wd = WindowDataset(
        ds,
        {"temperature": [850], "geopotential": None, "2m_temperature": None},
        targets=[("temperature", [850, 500])],
        forcings=["toa_incident_solar_radiation", *DERIVED_FORCINGS],
        statics=["land_sea_mask", "geopotential_at_surface"],
        history=2,
        lead_steps=3,
        step="12h",
    )
    item = wd[0]
    assert item["inputs"].shape == (2, 4, NLAT, NLON)
    assert item["targets"].shape == (3, 2, NLAT, NLON)
    assert item["forcings"].shape == (5, 5, NLAT, NLON)
    assert item["statics"].shape == (1, 2, NLAT, NLON)
    assert item["time"].dtype == torch.int64 and item["time"].ndim == 0
    assert all(v.dtype == torch.float32 for k, v in item.items() if k != "time")
    assert wd.channels == {
        "inputs": ["temperature_850", "geopotential_500", "geopotential_850", "2m_temperature"],
        "targets": ["temperature_850", "temperature_500"],
        "forcings": ["toa_incident_solar_radiation", *DERIVED_FORCINGS],
        "statics": ["land_sea_mask", "geopotential_at_surface"],
    }
    _check_item(item, wd, 2)
    schema = wd.schema()
    back = WindowSchema.from_json(schema.to_json())
    assert back == schema and back["targets"] == ["temperature_850", "temperature_500"]
    ch = schema.groups["inputs"][0]
    assert (ch.variable, ch.level, ch.units, ch.source) == ("temperature", 850, "K", "dataset")
    assert schema.groups["forcings"][1].source == "derived"
    assert (schema.history, schema.lead_steps, schema.step, schema.layout) == (2, 3, "12h", "latlon")
    # a global level subset applies to variables that list none
    wd2 = WindowDataset(ds, ["temperature", ("geopotential", 850)], levels=[500], lead_steps=1)
    assert wd2.channels["inputs"] == ["temperature_500", "geopotential_850"]


def test_normalization_equals_manual():
    ds = index_cube()
    stats = compute_stats(ds).compute()
    kw = {
        "forcings": ["toa_incident_solar_radiation", "cos_time_of_day"],
        "statics": ["geopotential_at_surface"],
        "history": 2,
        "lead_steps": 2,
    }
    raw = WindowDataset(ds, ["temperature", "2m_temperature"], **kw)
    for cache in ("blocks", "memory"):
        nrm = WindowDataset(ds, ["temperature", "2m_temperature"], stats=stats, cache=cache, **kw)
        for i in (0, 7, len(raw) - 1):
            a, b = raw[i], nrm[i]
            for group in ("inputs", "targets", "forcings", "statics"):
                for c, ch in enumerate(nrm.schema().groups[group]):
                    x = a[group][:, c].numpy().astype(np.float64)
                    if ch.source == "derived":
                        want = x  # time encodings are not normalized
                        assert ch.mean is None
                    else:
                        sel = {"statistic": "mean"} | ({"level": ch.level} if ch.level is not None else {})
                        m = stats[ch.variable].sel(sel).item()
                        s = stats[ch.variable].sel(sel | {"statistic": "std"}).item()
                        assert (ch.mean, ch.std) == pytest.approx((m, s))
                        want = (x - m) / s
                    np.testing.assert_allclose(b[group][:, c].numpy(), want, rtol=1e-5, atol=1e-5)
    ch = nrm.schema().groups["inputs"][0]
    assert nrm.schema().normalized and (ch.residual_mean, ch.residual_std) == (1000.0, 0.0)  # +1000 per step
    with pytest.raises(DataError, match="geopotential_at_surface"):
        WindowDataset(ds, ["temperature"], statics=["geopotential_at_surface"], stats=stats[["temperature"]])


def test_dataloader_workers_equal_single_process():
    ds = index_cube()
    wd = WindowDataset(
        ds,
        ["temperature", "2m_temperature"],
        forcings=["cos_time_of_day"],
        statics=["land_sea_mask"],
        history=2,
        lead_steps=2,
    )
    kw = {"batch_size": 3, "shuffle": False}
    single = list(torch.utils.data.DataLoader(wd, num_workers=0, **kw))
    multi = list(torch.utils.data.DataLoader(wd, num_workers=2, **kw))
    assert len(single) == len(multi) == -(-len(wd) // 3)
    for a, b in zip(single, multi):
        assert a.keys() == b.keys()
        for key in a:
            assert torch.equal(a[key], b[key]), key


def test_pickle_round_trip():
    wd = WindowDataset(index_cube(), ["temperature"], history=2, lead_steps=1)
    a = wd[3]
    wd2 = pickle.loads(pickle.dumps(wd))
    assert len(wd2._cache) == 0
    b = wd2[3]
    for key in a:
        assert torch.equal(a[key], b[key])


def test_reads_whole_blocks_once():
    """Sequential windows read each chunk-aligned block once, never per variable per step."""
    ds = index_cube(nt=24, chunks=5)
    wd = WindowDataset(
        ds,
        ["temperature", "geopotential", "2m_temperature"],
        forcings=["toa_incident_solar_radiation"],
        history=2,
        lead_steps=2,
    )
    calls = []
    orig = wd._read
    wd._read = lambda a, b: calls.append((a, b)) or orig(a, b)
    for i in range(len(wd)):
        wd[i]
    np.testing.assert_array_equal(wd._bounds, [0, 5, 10, 15, 20, 24])  # the dask chunks
    assert sorted(calls) == [(0, 5), (5, 10), (10, 15), (15, 20), (20, 24)]


def test_small_cache_still_correct():
    ds = index_cube(nt=30, chunks=4)
    wd = WindowDataset(ds, ["temperature"], history=3, lead_steps=2, cache_bytes=1)  # evicts all the time
    rng = np.random.default_rng(0)
    for i in rng.permutation(len(wd)):
        _check_item(wd[int(i)], wd, 1)
    assert len(wd._cache) <= 5  # blocks shrink to fit the budget; only the current window's stay


def test_statics_with_nan_raise():
    ds = index_cube()
    lsm = ds["land_sea_mask"].values.copy()
    lsm[0, :3] = np.nan
    ds["land_sea_mask"] = (("latitude", "longitude"), lsm)
    with pytest.raises(DataError, match=r"'land_sea_mask' has 3 NaN"):
        WindowDataset(ds, ["temperature"], statics=["land_sea_mask"])


def test_bad_step_and_arguments():
    ds = index_cube()
    with pytest.raises(DataError, match=r"9h.*multiple.*6h"):
        WindowDataset(ds, ["temperature"], step="9h")
    with pytest.raises(ConfigError, match="positive"):
        WindowDataset(ds, ["temperature"], step="-6h")
    with pytest.raises(ConfigError, match="time interval"):
        WindowDataset(ds, ["temperature"], step="soon")
    with pytest.raises(ConfigError, match="history"):
        WindowDataset(ds, ["temperature"], history=0)
    with pytest.raises(DataError, match=r"'nonexistent'.*2m_temperature"):
        WindowDataset(ds, ["nonexistent"])
    with pytest.raises(DataError, match=r"level\(s\) \[300\].*500, 850"):
        WindowDataset(ds, [("temperature", [300])])
    with pytest.raises(DataError, match="no time dimension"):
        WindowDataset(ds, ["land_sea_mask"])
    with pytest.raises(DataError, match="neither a dataset variable"):
        WindowDataset(ds, ["temperature"], forcings=["cos_minute_of_hour"])
    with pytest.raises(DataError, match="no complete window"):
        WindowDataset(ds, ["temperature"], history=20, lead_steps=10)
    with pytest.raises(ConfigError, match="cache"):
        WindowDataset(ds, ["temperature"], cache="disk")


def test_duplicated_and_non_monotonic_time():
    times = list(pd.date_range(T0, periods=10, freq="6h"))
    dup = times[:5] + [times[4]] + times[5:9]
    with pytest.raises(DataError, match=r"duplicated time stamps \['2020-01-02T00:00:00"):
        WindowDataset(index_cube(dup, nt=10), ["temperature"])
    swapped = times.copy()
    swapped[3], swapped[4] = swapped[4], swapped[3]
    with pytest.raises(DataError, match=r"not increasing.*2020-01-02T00:00:00.* -> 2020-01-01T18:00:00"):
        WindowDataset(index_cube(swapped, nt=10), ["temperature"])


def test_gaps_are_skipped():
    full = pd.date_range(T0, periods=30, freq="6h")
    keep = np.ones(30, bool)
    keep[[9, 10, 20]] = False  # two gaps
    times = full[keep]
    ds = index_cube(times, chunks=4)
    h, lead, k = 2, 2, 1
    wd = WindowDataset(
        ds, ["temperature"], forcings=["toa_incident_solar_radiation"], history=h, lead_steps=lead
    )
    # brute force: t0 valid iff all of t0-(h-1)..t0+lead are present
    present = set(np.flatnonzero(keep))
    want = [t for t in range(30) if all(t + o in present for o in range(-(h - 1), lead + 1))]
    np.testing.assert_array_equal(_tindex(wd.times.astype(np.int64)), want)
    for i in range(len(wd)):
        _check_item(wd[i], wd, k)


def test_time_slice_bounds_every_window():
    ds = index_cube(nt=24)
    wd = WindowDataset(
        ds, ["temperature"], history=2, lead_steps=2, time=slice("2020-01-02", "2020-01-04T18")
    )
    first, last = pd.Timestamp("2020-01-02"), pd.Timestamp("2020-01-04T18")
    for i in range(len(wd)):
        t0 = pd.Timestamp(int(wd[i]["time"]))
        assert t0 - SIX >= first and t0 + 2 * SIX <= last
        _check_item(wd[i], wd, 1)
    assert len(wd) == 12 - 3  # 12 steps in the period, windows of 4


def _healpix_cube(nside: int = 2, nt: int = 8) -> tuple[xr.Dataset, HealpixGrid]:
    g = HealpixGrid(nside)
    tidx = np.arange(nt, dtype=np.float32)
    vals = 1000 * tidx[:, None] + np.arange(g.npix, dtype=np.float32)[None]
    ds = xr.Dataset(
        {
            "2m_temperature": (("time", "cell"), vals),
            "temperature": (("time", "level", "cell"), np.stack([vals, vals + 0.5], axis=1)),
            "land_sea_mask": (("cell",), (np.arange(g.npix) % 2).astype(np.float32)),
        },
        coords={
            "time": pd.date_range(T0, periods=nt, freq="6h"),
            "level": [500, 850],
            "cell_ids": ("cell", g.cell_ids, g.xdggs_attrs()),
        },
    ).chunk(time=3)
    return ds, g


def test_healpix_faces_and_cells():
    ds, g = _healpix_cube()
    kw = {"forcings": ["cos_time_of_day"], "statics": ["land_sea_mask"], "history": 2, "lead_steps": 1}
    faces = WindowDataset(ds, ["temperature", "2m_temperature"], **kw)
    cells = WindowDataset(ds, ["temperature", "2m_temperature"], healpix_layout="cells", **kw)
    a, b = faces[2], cells[2]
    assert a["inputs"].shape == (2, 3, 12, 2, 2) and b["inputs"].shape == (2, 3, g.npix)
    assert a["statics"].shape == (1, 1, 12, 2, 2)
    for key in ("inputs", "targets", "forcings", "statics"):
        assert torch.equal(a[key], g.cells_to_faces(b[key])), key
    t0 = _tindex(int(b["time"]))
    np.testing.assert_array_equal(b["inputs"][1, 0].numpy(), 1000 * t0 + np.arange(g.npix))
    np.testing.assert_array_equal(b["inputs"][1, 1].numpy(), 1000 * t0 + np.arange(g.npix) + 0.5)
    np.testing.assert_array_equal(b["targets"][0, 2].numpy(), 1000 * (t0 + 1) + np.arange(g.npix))
    assert faces.schema().layout == "faces" and faces.schema().grid["type"] == "healpix"
    with pytest.raises(ConfigError, match="healpix_layout"):
        WindowDataset(ds, ["temperature"], healpix_layout="rings")


def test_derived_forcings_local_solar_time():
    year = pd.Timedelta(days=365.24219)  # the mean tropical year the encoding uses
    times = pd.to_datetime(
        ["2020-03-20T00:00", "2020-03-20T06:00", pd.Timestamp("2020-03-20") + year]
    ).to_numpy()
    lon = np.array([0.0, 90.0, 180.0, 270.0])
    cos = derived_forcing("cos_time_of_day", times, lon)
    sin = derived_forcing("sin_time_of_day", times, lon)
    assert cos.shape == (3, 4) and cos.dtype == np.float32
    np.testing.assert_allclose(cos**2 + sin**2, 1.0, rtol=1e-6)
    # 00 UTC: local midnight at lon 0, local noon at lon 180; 06 UTC at lon 90 is noon too
    np.testing.assert_allclose(cos[0], [1.0, 0.0, -1.0, 0.0], atol=1e-6)
    assert cos[1, 1] == pytest.approx(-1.0, abs=1e-6)
    # day of year: spatially uniform, periodic over one tropical year, no jump at the new year
    doy = derived_forcing("cos_day_of_year", times, lon)
    assert np.ptp(doy[0]) == 0 and doy[0, 0] == pytest.approx(doy[2, 0], abs=1e-6)
    assert doy[0, 0] != pytest.approx(doy[1, 0], abs=1e-6)
    ny = pd.to_datetime(["2020-12-31T18:00", "2021-01-01T00:00"]).to_numpy()
    assert (
        abs(np.diff(derived_forcing("sin_day_of_year", ny, np.zeros(1))[:, 0])[0])
        < 2 * np.pi / 365 / 4 * 1.01
    )
    ds = index_cube(nt=4)
    f = derived_forcings(ds)
    assert f["cos_time_of_day"].dims == ("time", "longitude") and f["sin_day_of_year"].dims == ("time",)
    with pytest.raises(DataError, match="unknown derived forcing"):
        derived_forcing("cos_week", times, lon)


@pytest.mark.skipif(
    not (DATA / "speedy-world-2019-12.zarr").exists(), reason="SPEEDY-world data not available"
)
def test_real_speedy_world_windows():
    ds = xr.open_zarr(DATA / "speedy-world-2019-12.zarr").transpose("time", ..., "latitude", "longitude")
    wd = WindowDataset(
        ds,
        ["geopotential", "2m_temperature"],
        forcings=["toa_incident_solar_radiation", "cos_time_of_day"],
        statics=["land_sea_mask", "geopotential_at_surface"],
        history=2,
        lead_steps=2,
        levels=[500, 850],
    )
    assert len(wd) == ds.sizes["time"] - 3
    i = 40
    item = wd[i]
    t0 = wd.times[i]
    z = ds["geopotential"].sel(level=[500, 850])
    np.testing.assert_array_equal(item["inputs"][1, :2].numpy(), z.sel(time=t0).values)
    np.testing.assert_array_equal(
        item["inputs"][0, 2].numpy(), ds["2m_temperature"].sel(time=t0 - SIX).values
    )
    np.testing.assert_array_equal(item["targets"][1, :2].numpy(), z.sel(time=t0 + 2 * SIX).values)
    np.testing.assert_array_equal(item["statics"][0, 0].numpy(), ds["land_sea_mask"].values)
    assert wd.grid.shape == (32, 64) and item["inputs"].shape == (2, 3, 32, 64)
