"""Streaming forecast writer: round trip, progress attributes, partial stores, misuse."""

from __future__ import annotations

import dask.array as da
import numpy as np
import pandas as pd
import pytest
import xarray as xr

from atmos.errors import ConfigError, DataError, SourceError
from atmos.rollout import ForecastWriter, read_progress


def _template(n_init=2, n_lead=3, members=2):
    shape3 = (n_init, n_lead, members, 2, 4, 8)
    shape2 = (n_init, n_lead, members, 4, 8)
    dims2 = ("time", "prediction_timedelta", "member", "latitude", "longitude")
    return xr.Dataset(
        {
            "temperature": (
                dims2[:3] + ("level",) + dims2[3:],
                da.full(shape3, np.nan, "float32", chunks=(1, 1, *shape3[2:])),
                {"units": "K"},
            ),
            "2m_temperature": (
                dims2,
                da.full(shape2, np.nan, "float32", chunks=(1, 1, *shape2[2:])),
                {"units": "K"},
            ),
        },
        coords={
            "time": pd.date_range("2020-01-01", periods=n_init, freq="D"),
            "prediction_timedelta": pd.to_timedelta(np.arange(n_lead) * 6, "h"),
            "member": np.arange(members),
            "level": [500, 850],
            "latitude": np.linspace(-67.5, 67.5, 4),
            "longitude": np.arange(8) * 45.0,
        },
        attrs={"title": "test"},
    )


def test_round_trip_and_progress(tmp_path):
    path = tmp_path / "f.zarr"
    w = ForecastWriter.create(path, _template(), progress_interval=0)  # progress after every lead
    rng = np.random.default_rng(0)
    written = {}
    for i in range(2):
        for k in range(3):
            vals = {
                "temperature": rng.standard_normal((2, 2, 4, 8)).astype("float32"),
                "2m_temperature": rng.standard_normal((2, 4, 8)).astype("float32"),
            }
            w.write(i, k, vals)
            written[i, k] = vals
            assert read_progress(path)["atmos_completed_steps"] == 3 * i + k + 1
    w.close()
    ds = xr.open_zarr(path)
    assert ds.attrs["atmos_status"] == "complete" and ds.attrs["atmos_completed_leads"] == [3, 3]
    assert ds.attrs["atmos_total_steps"] == 6 and ds.attrs["title"] == "test"
    for (i, k), vals in written.items():
        for name, v in vals.items():
            np.testing.assert_array_equal(ds[name].isel(time=i, prediction_timedelta=k).values, v)
    assert ds["temperature"].attrs["units"] == "K"
    assert ds["temperature"].encoding["chunks"] == (1, 1, 2, 2, 4, 8)


def test_partial_store_opens_with_nan_and_resumes(tmp_path):
    path = tmp_path / "f.zarr"
    w = ForecastWriter.create(path, _template(), progress_interval=0)
    ones = {"temperature": np.ones((2, 2, 4, 8), "float32"), "2m_temperature": np.ones((2, 4, 8), "float32")}
    w.write(0, 0, ones)
    w.write(0, 1, ones)
    del w  # "killed": no close(), status stays "running"
    ds = xr.open_zarr(path)
    assert ds.attrs["atmos_status"] == "running" and ds.attrs["atmos_completed_steps"] == 2
    assert np.isnan(ds["2m_temperature"].isel(time=0, prediction_timedelta=2)).all()
    assert np.isnan(ds["2m_temperature"].isel(time=1)).all()
    assert (ds["2m_temperature"].isel(time=0, prediction_timedelta=1) == 1).all()
    w2 = ForecastWriter.open(path)
    assert w2.completed == [2, 0] and w2.n_lead == 3 and not w2.done
    with pytest.raises(DataError, match="out of order"):
        w2.write(0, 0, ones)
    w2.write(0, 2, ones)
    w2.close()
    assert read_progress(path)["atmos_status"] == "interrupted"


def test_throttled_progress_never_claims_an_unwritten_lead(tmp_path):
    """With the default interval the progress attributes may trail the chunks after a kill, never lead."""
    path = tmp_path / "f.zarr"
    w = ForecastWriter.create(path, _template())
    ones = {"temperature": np.ones((2, 2, 4, 8), "float32"), "2m_temperature": np.ones((2, 4, 8), "float32")}
    for k in range(3):
        w.write(0, k, ones)
    claimed = read_progress(path)["atmos_completed_leads"]
    assert claimed[0] in (1, 2, 3) and claimed[1] == 0  # the first lead is always recorded at once
    w.lock.release()  # "killed": no close()
    w2 = ForecastWriter.open(path)
    assert w2.completed == claimed
    for k in range(claimed[0], 3):  # a resumed run rewrites what the attributes did not claim
        w2.write(0, k, ones)
    w2.close()
    assert read_progress(path)["atmos_completed_leads"] == [3, 0]


def test_refuses_to_clobber_and_rejects_foreign_stores(tmp_path):
    path = tmp_path / "f.zarr"
    ForecastWriter.create(path, _template())
    with pytest.raises(ConfigError, match="--resume"):
        ForecastWriter.create(path, _template())
    ForecastWriter.create(path, _template(n_lead=5), overwrite=True)
    assert read_progress(path)["atmos_total_steps"] == 10
    other = tmp_path / "other.zarr"
    xr.Dataset({"x": ("t", [1.0])}).to_zarr(other, consolidated=False)
    with pytest.raises(SourceError, match="not a forecast store"):
        ForecastWriter.open(other)
    with pytest.raises(SourceError, match="no forecast store"):
        read_progress(tmp_path / "missing.zarr")
