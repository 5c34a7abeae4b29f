"""Shared pytest setup.

* ``ATMOS_DATA`` defaults to ``<repo>/../shared/data`` (the SPEEDY-world cubes) when that
  folder exists and the variable is not set, so catalog names such as
  ``speedy-world-val`` resolve in tests.
* ``@pytest.mark.requires_speedy`` and the ``speedy_path`` fixture skip cleanly when the
  SPEEDY-world data is absent (users and CI do not have ``../shared``).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
SPEEDY_FILES = ("speedy-world-2018.zarr", "speedy-world-2019-12.zarr")

if "ATMOS_DATA" not in os.environ and SHARED_DATA.is_dir():
    os.environ["ATMOS_DATA"] = str(SHARED_DATA)


def _speedy_dir() -> Path | None:
    for cand in (os.environ.get("ATMOS_DATA"), str(SHARED_DATA)):
        if cand and all((Path(cand) / f).exists() for f in SPEEDY_FILES):
            return Path(cand)
    return None


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "requires_speedy: needs the SPEEDY-world zarr cubes (../shared/data or $ATMOS_DATA)"
    )


def pytest_runtest_setup(item: pytest.Item) -> None:
    if item.get_closest_marker("requires_speedy") is not None and _speedy_dir() is None:
        pytest.skip("SPEEDY-world data not available (no ../shared/data and no ATMOS_DATA with the cubes)")


@pytest.fixture
def speedy_path() -> Path:
    """Folder holding ``speedy-world-2018.zarr`` and ``speedy-world-2019-12.zarr`` (skips if absent)."""
    path = _speedy_dir()
    if path is None:
        pytest.skip("SPEEDY-world data not available (no ../shared/data and no ATMOS_DATA with the cubes)")
    return path


# -- a throwaway local SLURM cluster (scripts/slurm_cluster.py) -------------------------------------------


def _load_slurm_harness():
    import importlib.util

    spec = importlib.util.spec_from_file_location("atmos_slurm_cluster", REPO / "scripts" / "slurm_cluster.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def slurm_cluster(tmp_path_factory):
    """A single-node SLURM cluster (munged, slurmctld, slurmd) in a temporary folder, for the session.

    Skips (with the reason) where SLURM/munge are not installed, this is not root, or the
    daemons do not come up; the daemons are stopped by their process ids afterwards.
    ``cluster.env`` is the environment for ``sbatch``/``squeue``/``atmos slurm --submit``.
    """
    harness = _load_slurm_harness()
    why = harness.missing_requirements()
    if why:
        pytest.skip(f"no local SLURM cluster: {why}")
    # a short folder: munged's socket path must fit in sockaddr_un (108 bytes)
    import tempfile

    root = Path(tempfile.mkdtemp(prefix="atmos-slurm-"))
    cluster = harness.LocalSlurmCluster(root, cpus=2, kill_wait=30)
    try:
        cluster.start()
    except harness.SlurmUnavailable as err:
        pytest.skip(f"the local SLURM cluster did not start: {err}")
    yield cluster
    cluster.stop()
    if os.environ.get("ATMOS_SLURM_KEEP") != "1":  # ATMOS_SLURM_KEEP=1 keeps the logs for debugging
        import shutil

        shutil.rmtree(root, ignore_errors=True)
