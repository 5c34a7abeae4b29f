"""Imports point down only (DEVELOPERS' layout), lazy imports inside functions included."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "atmos"

# package -> atmos packages it may import (besides itself, atmos.errors and the version)
ALLOWED: dict[str, set[str]] = {
    "grids": set(),
    "io": {"grids", "catalog"},
    "catalog": {"grids", "io"},
    "testing": {"grids", "io"},
    "models": {"grids"},
    "baselines": {"grids", "io"},
    "metrics": {"grids", "io", "baselines"},
    "train": {"grids", "io", "catalog", "models", "metrics"},
    "rollout": {"grids", "io", "catalog", "models", "baselines"},
    "accessor": {"grids", "io", "catalog", "models", "baselines", "metrics", "rollout", "train"},
}


def _layer(module: str) -> str | None:
    parts = module.split(".")
    if parts[0] != "atmos":
        return None
    return parts[1] if len(parts) > 1 else ""


def _imports(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            if node.module == "atmos":
                found |= {f"atmos.{a.name}" for a in node.names}
    return found


def _files(layer: str) -> list[Path]:
    p = ROOT / layer
    return sorted(p.rglob("*.py")) if p.is_dir() else [ROOT / f"{layer}.py"]


@pytest.mark.parametrize("layer", sorted(ALLOWED))
def test_imports_point_down_only(layer):
    ok = ALLOWED[layer] | {layer, "errors", "", "__version__"}
    bad = []
    for f in _files(layer):
        for mod in _imports(f):
            target = _layer(mod)
            if target is not None and target not in ok:
                bad.append(f"{f.relative_to(ROOT.parent)} imports {mod}")
    assert not bad, "layering violations:\n" + "\n".join(bad)


def test_nothing_imports_cli():
    bad = [
        f"{f.relative_to(ROOT.parent)} imports {m}"
        for f in ROOT.rglob("*.py")
        if "cli" not in f.relative_to(ROOT).parts
        for m in _imports(f)
        if m.startswith("atmos.cli")
    ]
    assert not bad, bad


@pytest.mark.parametrize(
    "code",
    [
        "import atmos",
        "import atmos, xarray; atmos.open_dataset; atmos.grids.HealpixGrid; atmos.io.compute_stats",
        "import atmos.cli.main as m; m.build_parser()",  # what `atmos --help` does
    ],
)
def test_light_imports_do_not_load_torch(code):
    import subprocess
    import sys

    out = subprocess.run(
        [sys.executable, "-c", f"{code}; import sys; print('torch' in sys.modules)"],
        capture_output=True, text=True, check=True,
    )
    assert out.stdout.strip() == "False", f"{code!r} imported torch"


def test_lazy_names_resolve_and_unknown_names_raise():
    import atmos.grids
    import atmos.io

    assert atmos.grids.HealpixPad.__module__ == "atmos.grids.padding"
    assert atmos.io.WindowDataset.__module__ == "atmos.io.windows"
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        atmos.grids.nope  # noqa: B018


def test_atmos_rollout_is_the_subpackage():
    import types

    import atmos
    import atmos.rollout as ar

    assert isinstance(ar, types.ModuleType) and callable(ar.rollout)
    assert atmos.rollout is ar
