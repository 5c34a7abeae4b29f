"""--resume repairs holes: a missing or damaged chunk in a store's written leads is rewritten.

A store marked ``complete`` whose chunk file was deleted (or truncated) used to stay as it was on
``--resume``; now the writer checks every written lead and rolls that initial time's progress back
to the first hole, so the resumed store equals an uninterrupted run bit for bit.
"""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from atmos.io.check import check_store
from atmos.rollout.api import rollout
from atmos.rollout.writer import ForecastWriter


def _chunk(store, var, i, k):
    import zarr

    arr = zarr.open_array(str(store / var), mode="r")
    f = store / var / arr.metadata.encode_chunk_key((i, k, *(0,) * (arr.ndim - 2)))
    assert f.is_file(), f"no chunk file for {var} init {i} lead {k}"
    return f


def _equal(a: xr.Dataset, b: xr.Dataset) -> None:
    for name in a.data_vars:
        np.testing.assert_array_equal(a[name].values, b[name].values, err_msg=name)


@pytest.mark.parametrize("fault", ["deleted", "truncated"])
def test_resume_rewrites_a_hole_in_a_complete_store(fault, vit_fc, mock_ds, tmp_path, monkeypatch):
    inits = ["2020-01-02", "2020-01-03"]
    ref = rollout(vit_fc, mock_ds, inits, 2, out=tmp_path / "ref.zarr")
    out = tmp_path / "f.zarr"
    rollout(vit_fc, mock_ds, inits, 2, out=out)
    var = sorted(ref.data_vars)[0]
    f = _chunk(out, var, 1, 5)
    if fault == "deleted":
        f.unlink()
    else:
        f.write_bytes(f.read_bytes()[: max(1, f.stat().st_size // 3)])
    assert not check_store(out).ok  # the damage is real

    written: list[tuple[int, int]] = []
    with pytest.warns(UserWarning, match=r"initial time #1 has a hole at lead 5"):
        got = rollout(vit_fc, mock_ds, inits, 2, out=out, resume=True, callback=lambda i, k: written.append((i, k)))
    n_lead = ref.sizes["prediction_timedelta"]
    # init #0 is whole and untouched; init #1 is recomputed and rewritten from lead 5 on
    assert written == [(1, k) for k in range(5, n_lead)]
    assert got.attrs["atmos_status"] == "complete"
    assert check_store(out).ok
    _equal(got, ref)


def test_whole_store_is_not_rewritten(vit_fc, mock_ds, tmp_path):
    out = tmp_path / "f.zarr"
    rollout(vit_fc, mock_ds, "2020-01-02", 1, out=out)
    w = ForecastWriter.open(out)
    assert w.repaired == []
    assert w.completed == [w.n_lead]
    w.close()


def test_all_nan_lead_gets_its_chunk_file(tmp_path):
    """zarr skips chunks equal to the fill value by default; the writer keeps them, so that a
    missing file always means a hole (a decoder variable is NaN at lead 0 by design)."""
    import dask.array as da

    tpl = xr.Dataset(
        {"x": (("time", "prediction_timedelta", "latitude", "longitude"),
               da.full((1, 2, 2, 4), np.nan, dtype=np.float32))},
        coords={"time": np.array(["2020-01-01"], dtype="datetime64[ns]"),
                "prediction_timedelta": np.arange(2) * np.timedelta64(6, "h"),
                "latitude": [-45.0, 45.0], "longitude": [0.0, 90.0, 180.0, 270.0]},
    )
    out = tmp_path / "f.zarr"
    w = ForecastWriter.create(out, tpl)
    w.write(0, 0, {"x": np.full((2, 4), np.nan, np.float32)})
    w.write(0, 1, {"x": np.ones((2, 4), np.float32)})
    w.close()
    assert _chunk(out, "x", 0, 0).is_file()
    w = ForecastWriter.open(out)
    assert w.repaired == [] and w.completed == [2]
    w.close()
