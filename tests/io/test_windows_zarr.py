"""The direct zarr reader of WindowDataset (atmos.io.chunkread) equals the dask path bit for bit."""

from __future__ import annotations

import pickle

import numpy as np
import pandas as pd
import pytest
import torch
import xarray as xr

import atmos
from atmos.errors import DataError
from atmos.grids import HealpixGrid
from atmos.io.chunkread import probe_zarr
from atmos.io.stats import compute_stats
from atmos.io.windows import WindowDataset
from atmos.testing._mock import mock_era5

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")

VARS = ["temperature", "geopotential", "2m_temperature", "toa_incident_solar_radiation"]


def _gappy_times(nt: int) -> pd.DatetimeIndex:
    t = pd.date_range("2020-01-01", periods=nt, freq="6h")
    return t.delete([13, 14, 27])  # two gaps


@pytest.fixture(scope="module")
def latlon_store(tmp_path_factory) -> str:
    """WB2 storage order (time, level, longitude, latitude), 1-step chunks, with time gaps."""
    ds = mock_era5("2020-01-01", periods=40, levels=(250, 500, 850), nlat=8, nlon=16, variables=VARS)
    ds = ds.isel(time=np.flatnonzero(ds.time.to_index().isin(_gappy_times(40))))
    ds = ds.chunk({"time": 1, "level": -1, "latitude": -1, "longitude": -1})
    path = str(tmp_path_factory.mktemp("zr") / "cube.zarr")
    ds.to_zarr(path, mode="w")
    return path


@pytest.fixture(scope="module")
def flipped_store(tmp_path_factory) -> str:
    """Descending latitude and longitude in [-180, 180): atmos.open_dataset flips and rolls lazily."""
    ds = mock_era5("2020-01-01", periods=24, levels=(500, 850), nlat=8, nlon=16, variables=VARS)
    ds = ds.isel(latitude=slice(None, None, -1))
    ds = ds.assign_coords(longitude=((ds.longitude + 180) % 360) - 180)
    ds = ds.chunk({"time": 2, "level": 1, "latitude": -1, "longitude": 8})
    path = str(tmp_path_factory.mktemp("zf") / "cube.zarr")
    ds.to_zarr(path, mode="w")
    return path


@pytest.fixture(scope="module")
def healpix_store(tmp_path_factory) -> str:
    g = HealpixGrid(4)
    nt = 30
    rng = np.random.default_rng(0)
    vals = rng.normal(280, 10, (nt, g.npix)).astype(np.float32)
    ds = xr.Dataset(
        {
            "2m_temperature": (("time", "cell"), vals),
            "temperature": (("time", "level", "cell"), np.stack([vals, vals + 0.5, vals - 3], axis=1)),
            "land_sea_mask": (("cell",), (np.arange(g.npix) % 2).astype(np.float32)),
        },
        coords={
            "time": pd.date_range("2020-01-01", periods=nt, freq="6h"),
            "level": [250, 500, 850],
            "cell_ids": ("cell", g.cell_ids, g.xdggs_attrs()),
        },
    )
    ds = ds.isel(time=np.flatnonzero(ds.time.to_index().isin(_gappy_times(nt))))
    path = str(tmp_path_factory.mktemp("zh") / "cube.zarr")
    ds.chunk(time=1).to_zarr(path, mode="w")
    return path


def _assert_same(a: WindowDataset, b: WindowDataset, order: np.ndarray) -> None:
    assert a.reader == "zarr" and b.reader == "dask"
    assert len(a) == len(b)
    for i in order.tolist():
        x, y = a[i], b[i]
        assert x.keys() == y.keys()
        for k in x:
            assert x[k].dtype == y[k].dtype and x[k].shape == y[k].shape, k
            assert torch.equal(x[k], y[k]), (i, k)
    batch = a.__getitems__(order[::-1].tolist())  # batched, concurrent reads
    for i, x in zip(order[::-1].tolist(), batch):
        y = b[i]
        for k in x:
            assert torch.equal(x[k], y[k]), (i, k)


LATLON_CASES = [
    {"history": 1, "lead_steps": 1},
    {"history": 2, "lead_steps": 3, "step": "12h", "time": slice("2020-01-02", "2020-01-09")},
    {"history": 3, "lead_steps": 2, "block_size": 4, "cache_bytes": 1},
    {"history": 2, "lead_steps": 2, "cache": "memory"},
]


@pytest.mark.parametrize("with_stats", [False, True])
@pytest.mark.parametrize("case", range(len(LATLON_CASES)))
@pytest.mark.parametrize("opener", ["atmos", "xarray"])
def test_zarr_reader_equals_dask_latlon(latlon_store, opener, case, with_stats):
    if opener == "atmos":
        ds = atmos.open_dataset(latlon_store)
    else:
        ds = xr.open_zarr(latlon_store).transpose("time", ..., "latitude", "longitude")
    kw = dict(LATLON_CASES[case])
    kw.update(
        inputs=[("temperature", [850, 250]), "geopotential", "2m_temperature"],
        forcings=["toa_incident_solar_radiation", "cos_time_of_day", "sin_day_of_year"],
        statics=["land_sea_mask"],
    )
    if with_stats:
        kw["stats"] = compute_stats(ds).compute()
    a, b = WindowDataset(ds, reader="zarr", **kw), WindowDataset(ds, reader="dask", **kw)
    _assert_same(a, b, np.random.default_rng(case).permutation(len(a)))


def test_zarr_reader_flipped_rolled_and_chunked(flipped_store):
    ds = atmos.open_dataset(flipped_store)  # lazy isel(latitude=::-1) and roll(longitude)
    assert float(ds.latitude[0]) < 0 and float(ds.longitude[0]) == 0
    kw = {"inputs": ["temperature", "2m_temperature"], "targets": ["geopotential"], "history": 2, "lead_steps": 2}
    kw["stats"] = compute_stats(ds).compute()
    a, b = WindowDataset(ds, reader="zarr", **kw), WindowDataset(ds, reader="dask", **kw)
    _assert_same(a, b, np.arange(len(a)))


@pytest.mark.parametrize("layout", ["faces", "cells"])
@pytest.mark.parametrize("with_stats", [False, True])
def test_zarr_reader_equals_dask_healpix(healpix_store, layout, with_stats):
    ds = xr.open_zarr(healpix_store)
    kw = {
        "inputs": [("temperature", [850, 250]), "2m_temperature"],
        "forcings": ["cos_time_of_day", "cos_day_of_year"],
        "statics": ["land_sea_mask"],
        "history": 2,
        "lead_steps": 2,
        "time": slice("2020-01-01T06", "2020-01-07"),
        "healpix_layout": layout,
    }
    if with_stats:
        kw["stats"] = compute_stats(ds).compute()
    a, b = WindowDataset(ds, reader="zarr", **kw), WindowDataset(ds, reader="dask", **kw)
    _assert_same(a, b, np.random.default_rng(1).permutation(len(a)))


def test_auto_falls_back_for_non_zarr_sources(latlon_store):
    ds = xr.open_zarr(latlon_store).transpose("time", ..., "latitude", "longitude")
    assert WindowDataset(ds, ["temperature"]).reader == "zarr"
    scaled = ds.assign(temperature=ds.temperature * 2)  # arithmetic: not a plain read
    assert WindowDataset(scaled, ["temperature"]).reader == "dask"
    assert WindowDataset(ds.load(), ["temperature"]).reader == "dask"  # in memory
    with pytest.raises(DataError, match="reader='zarr'"):
        WindowDataset(scaled, ["temperature"], reader="zarr")
    assert probe_zarr(ds.temperature.astype("float64"), (8, 16)) is None


def test_zarr_reader_pickles_and_works_in_workers(latlon_store):
    ds = xr.open_zarr(latlon_store).transpose("time", ..., "latitude", "longitude")
    kw = {"forcings": ["cos_time_of_day"], "statics": ["land_sea_mask"], "history": 2, "lead_steps": 2}
    wd = WindowDataset(ds, ["temperature", "2m_temperature"], **kw)
    ref = WindowDataset(ds, ["temperature", "2m_temperature"], reader="dask", **kw)
    assert wd.reader == "zarr"
    wd2 = pickle.loads(pickle.dumps(wd))
    assert wd2.reader == "zarr" and len(wd2._cache) == 0
    for key in ref[5]:
        assert torch.equal(wd2[5][key], ref[5][key])
    loader_kw = {"batch_size": 4, "shuffle": False}
    single = list(torch.utils.data.DataLoader(ref, num_workers=0, **loader_kw))
    multi = list(torch.utils.data.DataLoader(wd, num_workers=2, **loader_kw))
    assert len(single) == len(multi)
    for x, y in zip(single, multi):
        for key in x:
            assert torch.equal(x[key], y[key]), key


def _bitwise(x: torch.Tensor, y: torch.Tensor) -> bool:
    if x.dtype != y.dtype or x.shape != y.shape:
        return False
    return bool(torch.equal(x.contiguous().view(-1).view(torch.uint8), y.contiguous().view(-1).view(torch.uint8)))


def _batch_cases(latlon_store, healpix_store):
    lat = atmos.open_dataset(latlon_store)
    lat_kw = dict(
        inputs=[("temperature", [850, 250]), "geopotential", "2m_temperature"],
        forcings=["cos_time_of_day", "toa_incident_solar_radiation", "sin_day_of_year"],
        statics=["land_sea_mask"], history=2, lead_steps=2, stats=compute_stats(lat).compute(),
    )
    hp = xr.open_zarr(healpix_store)
    hp_kw = dict(
        inputs=[("temperature", [850, 250]), "2m_temperature"], forcings=["cos_time_of_day", "cos_day_of_year"],
        statics=["land_sea_mask"], history=2, lead_steps=1, stats=compute_stats(hp).compute(),
    )
    return [
        ("latlon-zarr", lat, dict(lat_kw, reader="zarr")),
        ("latlon-dask", lat, dict(lat_kw, reader="dask")),
        ("latlon-memory", lat, dict(lat_kw, cache="memory")),
        ("healpix-faces", hp, dict(hp_kw, healpix_layout="faces")),
        ("healpix-cells", hp, dict(hp_kw, healpix_layout="cells")),
    ]


@pytest.mark.parametrize("case", range(5))
def test_batched_fetch_equals_items_stacked(latlon_store, healpix_store, case):
    """__getitems__ (one preallocated array per key, collated without a copy) == stacked items, bitwise,
    through a DataLoader with 0 and 2 workers, any order, a short last batch and a Subset."""
    name, ds, kw = _batch_cases(latlon_store, healpix_store)[case]
    wd = WindowDataset(ds, **kw)
    ref = WindowDataset(ds, **kw)
    order = np.random.default_rng(case).permutation(len(wd)).tolist()[:11]
    items = [ref[i] for i in order]  # per-item fetch on another instance (no shared cache)
    got = wd.__getitems__(order)
    assert len(got) == len(order)
    for x, y in zip(got, items):
        assert x.keys() == y.keys()
        for k in x:
            assert _bitwise(x[k], y[k]), (name, k)
    # the collate of a full batch returns the batch arrays; a reordered/partial stack is a real stack
    stacked = torch.utils.data.default_collate(got)
    for k in stacked:
        assert type(stacked[k]) is torch.Tensor
        assert _bitwise(stacked[k], torch.stack([y[k] for y in items])), (name, k)
    part = torch.stack([got[2]["inputs"], got[0]["inputs"]])
    assert type(part) is torch.Tensor and _bitwise(part, torch.stack([items[2]["inputs"], items[0]["inputs"]]))
    assert type(got[0]["inputs"] * 2) is torch.Tensor
    for workers in (0, 2):
        loader = torch.utils.data.DataLoader(wd, batch_size=4, sampler=order, num_workers=workers)
        batches = list(loader)
        assert [b["inputs"].shape[0] for b in batches] == [4, 4, 3]
        for j, b in enumerate(batches):
            for k in b:
                assert type(b[k]) is torch.Tensor
                assert _bitwise(b[k], torch.stack([y[k] for y in items[4 * j : 4 * j + 4]])), (name, workers, k)
    sub = torch.utils.data.Subset(wd, order[:6])
    b = next(iter(torch.utils.data.DataLoader(sub, batch_size=6)))
    for k in b:
        assert _bitwise(b[k], torch.stack([y[k] for y in items[:6]])), (name, k)
