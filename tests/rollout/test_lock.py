"""Exclusive writers of a forecast store: the lock file, stale-lock take-over, atomic creation."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time

import numpy as np
import pytest
import xarray as xr

from atmos.errors import ConfigError
from atmos.rollout.lock import StoreLock
from atmos.rollout.writer import ForecastWriter


def _template(n_init=1, n_lead=3):
    import dask.array as da

    return xr.Dataset(
        {"x": (("time", "prediction_timedelta", "latitude", "longitude"), da.full((n_init, n_lead, 2, 4), np.nan, dtype=np.float32))},
        coords={
            "time": np.array(["2020-01-01"], dtype="datetime64[ns]")[:n_init],
            "prediction_timedelta": np.arange(n_lead) * np.timedelta64(6, "h"),
            "latitude": [-45.0, 45.0],
            "longitude": [0.0, 90.0, 180.0, 270.0],
        },
    )


def test_second_writer_is_refused_while_the_first_holds_the_store(tmp_path):
    out = tmp_path / "f.zarr"
    w = ForecastWriter.create(out, _template())
    with pytest.raises(ConfigError, match="being written by another run"):
        ForecastWriter.create(out, _template(), overwrite=True)
    with pytest.raises(ConfigError, match="being written by another run"):
        ForecastWriter.open(out)
    w.write(0, 0, {"x": np.ones((2, 4), np.float32)})
    w.close()
    assert not (tmp_path / "f.zarr.lock").exists()
    # the first writer's lead survives the refused attempts untouched
    np.testing.assert_array_equal(xr.open_zarr(out)["x"].values[0, 0], 1.0)
    w2 = ForecastWriter.open(out)  # free again
    assert w2.completed == [1]
    w2.close()


def test_lock_of_a_dead_process_is_taken_over(tmp_path):
    out = tmp_path / "f.zarr"
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    lock = tmp_path / "f.zarr.lock"
    lock.write_text(json.dumps({"host": socket.gethostname(), "pid": int(dead.stdout), "started": "x"}))
    with pytest.warns(UserWarning, match="no longer exists"):
        w = ForecastWriter.create(out, _template())
    assert json.loads(lock.read_text())["pid"] == os.getpid()
    w.close()


def test_other_host_lock_is_live_until_its_heartbeat_is_old(tmp_path):
    lock = tmp_path / "s.zarr.lock"
    lock.write_text(json.dumps({"host": "node-that-is-not-here", "pid": 1, "started": "x"}))
    with pytest.raises(ConfigError, match="node-that-is-not-here"):
        StoreLock(tmp_path / "s.zarr").acquire()
    old = time.time() - 3600
    os.utime(lock, (old, old))
    with pytest.warns(UserWarning, match="no heartbeat"):
        held = StoreLock(tmp_path / "s.zarr", stale_after=600).acquire()
    held.touch()
    assert time.time() - lock.stat().st_mtime < 60
    held.release()
    assert not lock.exists()


def test_failed_creation_leaves_nothing(tmp_path, monkeypatch):
    out = tmp_path / "f.zarr"

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(xr.Dataset, "to_zarr", boom)
    with pytest.raises(OSError, match="disk full"):
        ForecastWriter.create(out, _template())
    assert sorted(os.listdir(tmp_path)) == []


def test_concurrent_rollouts_never_mix(tmp_path):
    """Two `atmos rollout` processes, same --out, different --init: one wins, the other exits 2."""
    out = tmp_path / "same.zarr"
    cmd = [sys.executable, "-m", "atmos.cli.main", "rollout", "--days", "2", "--out", str(out)]
    procs = [
        subprocess.Popen([*cmd, "--init", init], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for init in ("2020-01-01", "2020-01-02")
    ]
    res = [(p.wait(timeout=300), p.communicate()[1]) for p in procs]
    codes = sorted(r[0] for r in res)
    assert codes[0] == 0 and codes[1] == 2, res
    loser = next(err for code, err in res if code == 2)
    assert "Traceback" not in loser and ("already exists" in loser or "being written" in loser)
    ds = xr.open_zarr(out)
    assert ds.attrs["atmos_status"] == "complete"
    winner_init = str(ds.time.values[0])[:10]
    # the store's data are the winner's forecast: lead 0 equals the initial state of its init time
    from atmos.io import open_dataset
    from atmos.rollout.sample import sample_data_path

    truth = open_dataset(str(sample_data_path()))
    z0 = ds["geopotential"].sel(level=500).isel(time=0, prediction_timedelta=0).values
    np.testing.assert_allclose(z0, truth["geopotential"].sel(level=500, time=np.datetime64(winner_init + "T00:00")).transpose("latitude", "longitude").values, rtol=1e-6)


def test_sigterm_marks_interrupted_and_resume_is_bit_identical(tmp_path):
    import signal

    from atmos.rollout import read_progress

    out, ref = tmp_path / "killed.zarr", tmp_path / "ref.zarr"
    base = [sys.executable, "-m", "atmos.cli.main", "rollout", "--init", "2020-01-01", "--days", "30"]
    p = subprocess.Popen([*base, "--out", str(out)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while time.time() < deadline:
        try:
            if read_progress(out)["atmos_completed_steps"] >= 5:
                break
        except Exception:
            pass
        time.sleep(0.05)
    p.send_signal(signal.SIGTERM)
    code = p.wait(timeout=60)
    err = p.communicate()[1]
    assert code == 130 and "Traceback" not in err, err
    prog = read_progress(out)
    assert prog["atmos_status"] == "interrupted" and 5 <= prog["atmos_completed_steps"] < 121
    assert not (tmp_path / "killed.zarr.lock").exists()
    assert subprocess.run([*base, "--out", str(out), "--resume"], capture_output=True).returncode == 0
    assert subprocess.run([*base, "--out", str(ref)], capture_output=True).returncode == 0
    a, b = xr.open_zarr(out), xr.open_zarr(ref)
    assert a.attrs["atmos_status"] == "complete"
    for name in b.data_vars:
        np.testing.assert_array_equal(a[name].values, b[name].values)
