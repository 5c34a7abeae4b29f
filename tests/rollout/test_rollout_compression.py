"""Forecast stores are compressed: lossless by default (exactly the in-memory forecast), and with
``information`` bit-rounded within the bound of the kept bits at every lead, recorded in the attrs."""

from __future__ import annotations

import json

import numpy as np
import pytest
import xarray as xr

from atmos.errors import ConfigError
from atmos.io.compression import error_bound


@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    from atmos.rollout import rollout

    d = tmp_path_factory.mktemp("fc")
    lossless = rollout(init="2020-01-01", days=1, out=d / "l.zarr").load()
    lossy = rollout(init="2020-01-01", days=1, out=d / "b.zarr", information=0.99).load()
    mem = rollout(init="2020-01-01", days=1)
    return d, lossless, lossy, mem


def test_lossless_store_is_exact_and_blosc(stores):
    d, lossless, _, mem = stores
    for name in mem.data_vars:
        np.testing.assert_array_equal(lossless[name].values, mem[name].values)
    codec = xr.open_zarr(d / "l.zarr")["temperature"].encoding["compressors"][0]
    assert type(codec).__name__ == "BloscCodec"
    rec = json.loads(lossless.attrs["atmos_compression"])
    assert rec["information"] is None and rec["ratio"] > 1 and rec["bytes_per_value"] < 4


def test_information_store_within_bound_at_every_lead(stores):
    _, lossless, lossy, _ = stores
    rec = json.loads(lossy.attrs["atmos_compression"])
    assert rec["information"] == 0.99 and rec["method"].startswith("bitround")
    for name in lossless.data_vars:
        v = rec["variables"][name]
        k = v["keepbits"]
        assert 0 <= k <= 23 and "psnr_db" in v and "max_abs_error" in v and v["ratio"] > 1
        worst = 0.0
        for lead in range(lossless.sizes["prediction_timedelta"]):  # one chunk per lead
            o = lossless[name].isel(time=0, prediction_timedelta=lead).values
            b = lossy[name].isel(time=0, prediction_timedelta=lead).values
            err = np.abs(b.astype(np.float64) - o)
            assert np.all(err <= error_bound(o, k))
            worst = max(worst, float(err.max()))
        assert v["max_abs_error"] == pytest.approx(worst)
    assert rec["ratio"] > json.loads(lossless.attrs["atmos_compression"])["ratio"]


def test_resume_with_other_information_is_refused(stores):
    from atmos.rollout import rollout

    d, *_ = stores
    with pytest.raises(ConfigError, match=r"written --information 0.99, now lossless.*--overwrite"):
        rollout(init="2020-01-01", days=1, out=d / "b.zarr", resume=True)
    again = rollout(init="2020-01-01", days=1, out=d / "b.zarr", resume=True, information=0.99)
    assert again.attrs["atmos_status"] == "complete"


@pytest.mark.parametrize("bad", [0, 1.5, -1])
def test_bad_information_is_refused(bad, tmp_path):
    from atmos.rollout import rollout

    with pytest.raises(ConfigError, match="not a fraction of information"):
        rollout(init="2020-01-01", days=1, out=tmp_path / "x.zarr", information=bad)
    assert not (tmp_path / "x.zarr").exists()


def test_information_needs_a_store():
    from atmos.rollout import rollout

    with pytest.raises(ConfigError, match="pass out="):
        rollout(init="2020-01-01", days=1, information=0.99)
