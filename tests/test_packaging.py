"""Every atmos subpackage ships in the wheel (pyproject lists packages explicitly)."""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_every_subpackage_is_listed_in_pyproject():
    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {"atmos"} | {
        "atmos." + p.parent.relative_to(ROOT / "atmos").as_posix().replace("/", ".")
        for p in (ROOT / "atmos").rglob("*.py")
        if p.parent != ROOT / "atmos"
    }
    missing = found - listed
    assert not missing, f"add {sorted(missing)} to [tool.setuptools] packages in pyproject.toml"
    assert "atmos.catalogs" in listed


def test_catalog_yaml_files_exist_for_package_data():
    assert sorted(p.name for p in (ROOT / "catalogs").glob("*.yaml")), "catalogs/*.yaml missing"
