"""Every atmos subpackage ships in the wheel (pyproject lists packages explicitly)."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

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


# -- the built wheel, not the source tree -------------------------------------------------------


def _source_files() -> list[Path]:
    """Files a clean checkout would have: tracked plus untracked-but-not-ignored (git), else all."""
    try:
        out = subprocess.run(
            ["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT, capture_output=True, text=True, check=True
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        return [p.relative_to(ROOT) for p in ROOT.rglob("*") if p.is_file() and ".venv" not in p.parts]
    return [Path(line) for line in out.splitlines() if line and (ROOT / line).is_file()]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """A wheel built from a copy of the source (so the build leaves nothing in the checkout)."""
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src"
    for rel in _source_files():
        if rel.parts[0] in {"tests", "benchmarks", "scripts", ".ci"}:
            continue
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / rel, src / rel)
    res = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", str(src), "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp / "dist")],
        capture_output=True,
        text=True,
    )
    if res.returncode != 0:
        pytest.fail(f"building the wheel failed:\n{res.stdout}\n{res.stderr}")
    (whl,) = (tmp / "dist").glob("atmos-*.whl")
    return whl


def test_wheel_ships_every_module_catalog_and_sample_file(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    want = {p.as_posix() for p in _source_files() if p.parts[0] == "atmos" and p.suffix == ".py"}
    want |= {f"atmos/catalogs/{p.name}" for p in (ROOT / "catalogs").glob("*.yaml")}
    want |= {
        p.as_posix()
        for p in _source_files()
        if p.parts[:2] == ("atmos", "sample") and p.suffix in {".nc", ".json", ".safetensors", ".md"}
    }
    missing = sorted(want - names)
    assert not missing, f"the wheel lacks {missing[:10]} (of {len(missing)}); list them in pyproject.toml"
    assert not [n for n in names if n.startswith("tests/")], "tests must not ship in the wheel"


def test_installed_wheel_runs_without_the_source_tree(wheel, tmp_path):
    """Unpacked alone, the wheel imports without torch, resolves its catalogs and loads the sample model."""
    target = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(target)
    code = (
        "import sys; sys.path.insert(0, sys.argv[1]); import atmos;"
        "assert atmos.__file__.startswith(sys.argv[1]), atmos.__file__;"
        "assert 'torch' not in sys.modules;"
        "from atmos.catalog import entry_names; assert 'speedy-world' in entry_names(), entry_names();"
        "from atmos.rollout import Forecaster; fc = Forecaster.from_checkpoint();"
        "print(fc.info['atmos_model'], len(fc.channels['inputs']))"
    )
    res = subprocess.run([sys.executable, "-c", code, str(target)], cwd=tmp_path, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr[-3000:]
    assert res.stdout.split()[1].isdigit()
