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
