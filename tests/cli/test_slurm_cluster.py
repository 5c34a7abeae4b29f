"""Rollout job arrays and statistics on a real (local, throwaway) SLURM cluster.

* ``atmos slurm rollout ... --array --submit``: 4 array tasks, one store per initial time,
  equal bit for bit to 4 local ``atmos rollout`` runs;
* ``atmos stats`` / ``atmos climatology --cluster slurm``: a dask-jobqueue ``SLURMCluster``
  with 2 workers (jobs on the cluster) gives the local result.

Skipped where SLURM/munge/root are missing (the ``slurm_cluster`` fixture) or, for the
statistics, where dask-jobqueue is not installed.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from atmos.cli.main import main

pytestmark = pytest.mark.slurm

INITS = ["2020-01-01T00", "2020-01-01T12", "2020-01-02T00", "2020-01-02T12"]


def _assert_bitwise_equal(a: xr.Dataset, b: xr.Dataset, what: str) -> None:
    assert set(a.data_vars) == set(b.data_vars) and a.data_vars, what
    assert set(a.coords) == set(b.coords), what
    for name in [*a.data_vars, *a.coords]:
        x, y = a[name].values, b[name].values
        assert x.shape == y.shape and x.dtype == y.dtype, f"{what}: {name}"
        if x.dtype.kind == "f":
            assert np.array_equal(x.view(f"u{x.itemsize}"), y.view(f"u{y.itemsize}")), f"{what}: {name}"
        else:
            assert np.array_equal(x, y), f"{what}: {name}"


def _wait_job(cluster, job: str, timeout: float) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if not cluster.run("squeue", "-h", "-j", job, check=False).stdout.strip():
            return
        time.sleep(0.2)
    pytest.fail(f"job {job} did not end within {timeout} s: {cluster.run('squeue', check=False).stdout}")


def test_rollout_job_array_equals_local_rollouts(slurm_cluster, tmp_path, monkeypatch, capsys):
    cluster = slurm_cluster
    monkeypatch.setenv("SLURM_CONF", str(cluster.conf))
    monkeypatch.chdir(tmp_path)
    assert main(["slurm", "rollout", "--init", "2020-01-01/2020-01-02T12/12h", "--days", "1",
                 "--out", str(tmp_path / "array" / "fc_{init}.zarr"), "--array", "--time", "00:05:00",
                 "--job-name", "fc", "--submit"]) == 0
    out = capsys.readouterr().out
    assert "a job array of 4 rollout(s)" in out
    job = out.split("submitted array job ")[1].split()[0]
    # meanwhile: the same 4 rollouts, locally
    for init in INITS:
        assert main(["rollout", "--init", init, "--days", "1", "--out", str(tmp_path / "local" / f"{init}.zarr"),
                     "--no-progress"]) == 0
    _wait_job(cluster, job, 120)
    states = cluster.run("scontrol", "-o", "show", "job", job, check=False).stdout
    assert states.count("JobState=COMPLETED") == 4, states
    logs = sorted(tmp_path.glob(f"fc-{job}_*.out"))
    assert len(logs) == 4
    for init in INITS:
        with xr.open_zarr(tmp_path / "array" / f"fc_{init}.zarr") as a, \
                xr.open_zarr(tmp_path / "local" / f"{init}.zarr") as b:
            assert str(a.time.values[0])[:13] == init
            _assert_bitwise_equal(a, b, init)


def test_array_refuses_one_store_for_all_inits(tmp_path, capsys):
    assert main(["slurm", "rollout", "--init", "2020-01-01/2020-01-02T12/12h", "--days", "1",
                 "--out", str(tmp_path / "one.zarr"), "--array", "--time", "00:05:00", "--dry-run"]) != 0
    assert "would be written by 4 array tasks" in capsys.readouterr().err


@pytest.fixture(scope="module")
def small_cube(tmp_path_factory) -> Path:
    from atmos.testing import mock_era5

    # daily over a leap year: every day of the year has samples (climatology)
    ds = mock_era5("2020-01-01", periods=366, freq="1D", nlat=8, nlon=16, levels=(500, 850),
                   variables=["geopotential", "2m_temperature"], canonical=True, seed=5)
    path = tmp_path_factory.mktemp("stats-data") / "cube.zarr"
    ds.chunk({"time": 61}).to_zarr(path, mode="w")
    return path


def test_stats_and_climatology_on_a_slurm_cluster_equal_local(slurm_cluster, small_cube, tmp_path, monkeypatch,
                                                               capsys):
    pytest.importorskip("dask_jobqueue", reason="dask-jobqueue not installed (pip install 'atmos[slurm]')")
    monkeypatch.setenv("SLURM_CONF", str(slurm_cluster.conf))
    monkeypatch.chdir(tmp_path)  # the worker jobs' logs
    common = ["--cluster-workers", "2", "--cluster-option", "walltime=00:05:00", "--cluster-option", "memory=1GB"]
    assert main(["stats", str(small_cube), "-o", str(tmp_path / "slurm.nc"), "--cluster", "slurm", *common]) == 0
    out = capsys.readouterr().out
    assert "SLURMCluster with 2 worker job(s)" in out, out
    jobs = slurm_cluster.run("scontrol", "-o", "show", "job", check=False).stdout.splitlines()
    assert sum("JobName=atmos-dask " in j for j in jobs) == 2  # the dask workers were SLURM jobs
    assert main(["stats", str(small_cube), "-o", str(tmp_path / "local.nc"), "--no-progress"]) == 0
    with xr.open_dataset(tmp_path / "slurm.nc") as a, xr.open_dataset(tmp_path / "local.nc") as b:
        _assert_bitwise_equal(a, b, "stats")
    assert main(["climatology", str(small_cube), "-o", str(tmp_path / "clim-slurm.nc"), "--window", "3",
                 "--daily", "--cluster", "slurm", *common]) == 0
    assert main(["climatology", str(small_cube), "-o", str(tmp_path / "clim-local.nc"), "--window", "3",
                 "--daily"]) == 0
    with xr.open_dataset(tmp_path / "clim-slurm.nc") as a, xr.open_dataset(tmp_path / "clim-local.nc") as b:
        _assert_bitwise_equal(a, b, "climatology")


def test_chain_runs_jobs_one_after_another_and_stops_at_a_failure(slurm_cluster, tmp_path):
    from atmos.train.slurm import submit

    cluster = slurm_cluster
    log = tmp_path / "order.txt"
    script = tmp_path / "step.sbatch"
    script.write_text("#!/bin/bash\n#SBATCH --time=00:01:00\n#SBATCH --output=/dev/null\n"
                      f'echo "$SLURM_JOB_ID ${{ATMOS_SLURM_REQUEUE:-unset}}" >> {log}\n'
                      f'[ ! -f {tmp_path / "fail"} ]\n')
    ids = submit(script, chain=3, env=cluster.env)
    assert len(ids) == 3
    for job in ids:
        _wait_job(cluster, job, 60)
    # one after another (2 CPUs would run them side by side), only the last one requeues itself
    assert log.read_text().splitlines() == [f"{ids[0]} 0", f"{ids[1]} 0", f"{ids[2]} 1"]
    (tmp_path / "fail").touch()
    failing = submit(script, chain=2, env=cluster.env)
    for job in failing:
        _wait_job(cluster, job, 60)
    states = [cluster.job_state(j)[0] for j in failing]
    assert states == ["FAILED", "CANCELLED"], states
    assert log.read_text().splitlines()[3:] == [f"{failing[0]} 0"]
