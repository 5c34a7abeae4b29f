"""Imports point down only (README "Layout"): checked on the import graph built from the AST.

The graph has one node per module of ``atmos`` and one edge per import statement anywhere in
the module (absolute, relative and lazy function-level imports; ``from atmos import x`` is an
edge to the submodule ``atmos.x`` when there is one, else to the package ``atmos``).
Packages are the first component below ``atmos`` (``atmos.io.open`` -> ``io``); the package
``atmos`` itself (``atmos/__init__.py``) is called ``atmos``.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "atmos"

#: The layers, lowest first: a package may import packages of lower layers only (packages of
#: one layer, such as baselines and metrics, do not import each other). There are no
#: exceptions; a needed upward import means code is in the wrong layer.
LAYERS: list[set[str]] = [
    {"errors", "_version"},  # error classes and the version string
    {"channels"},  # channel names (imports errors only): every layer may use it
    {"grids"},  # numpy/torch only
    {"io"},
    {"catalog"},  # a pure resolver: catalogs/*.yaml -> dataset locations
    {"models"},  # tensor-only
    {"testing"},  # synthetic cubes and tiny model configs for tests and examples
    {"baselines", "metrics"},  # siblings: metrics know no baselines, baselines no metrics
    {"evaluation"},  # scorecards: metrics and baselines together
    {"train"},
    {"rollout"},
    {"sample"},  # the embedded sample model (data)
    {"accessor"},
    {"interop"},  # adapters to other tools (earth2studio); optional dependencies, imported lazily
    {"atmos"},  # the package facade (atmos/__init__.py)
    {"cli"},
]

#: Packages that must not import some packages below them as well.
FORBIDDEN: dict[str, set[str]] = {
    "models": {"io", "catalog", "train"},  # tensor-only: no data cubes, no training
    "atmos": {"interop"},  # import atmos stays light: interop is imported by its users
}

RANK = {pkg: k for k, layer in enumerate(LAYERS) for pkg in layer}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_package(path: Path) -> bool:
    return path.name == "__init__.py"


MODULES: dict[str, Path] = {_module_name(p): p for p in sorted(ROOT.rglob("*.py"))}


def _resolve_relative(module: str, is_pkg: bool, level: int, target: str | None) -> str:
    base = module.split(".") if is_pkg else module.split(".")[:-1]
    if level > 1:
        base = base[: len(base) - (level - 1)]
    return ".".join([*base, target] if target else base)


def _imports(module: str, path: Path) -> set[str]:
    """atmos modules imported anywhere in ``path`` (the graph's edges from ``module``)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.split(".")[0] == "atmos"}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = _resolve_relative(module, _is_package(path), node.level, node.module)
            else:
                base = node.module or ""
            if base.split(".")[0] != "atmos":
                continue
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                found.add(sub if sub in MODULES else base)
    found.discard(module)
    # ``import atmos.io.open`` names a module; anything else resolves to its closest module.
    out = set()
    for name in found:
        while name not in MODULES and "." in name:
            name = name.rsplit(".", 1)[0]
        out.add(name)
    return out


def _package(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "atmos"


GRAPH: dict[str, set[str]] = {m: _imports(m, p) for m, p in MODULES.items()}


def _package_graph() -> dict[str, dict[str, list[str]]]:
    """package -> imported package -> the module edges behind it."""
    out: dict[str, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
    for mod, deps in GRAPH.items():
        for dep in deps:
            a, b = _package(mod), _package(dep)
            if a != b:
                out[a][b].append(f"{mod} -> {dep}")
    return out


def _format_graph() -> str:
    graph = _package_graph()
    order = sorted({_package(m) for m in MODULES}, key=lambda p: (RANK.get(p, -1), p))
    lines = ["package import graph (layer order, lowest first):"]
    for pkg in order:
        deps = sorted(graph.get(pkg, {}), key=lambda p: (RANK.get(p, -1), p))
        lines.append(f"  {pkg:10s} -> {', '.join(deps) if deps else '-'}")
    return "\n".join(lines)


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one node (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return sorted(out)


# -- the graph builder itself ------------------------------------------------------------
def test_graph_sees_relative_lazy_and_from_atmos_imports(tmp_path):
    src = (
        "from . import names\n"
        "from .coords import grid_of\n"
        "from .. import catalog\n"
        "def f():\n"
        "    from atmos import grids, errors\n"
        "    import atmos.io.stats\n"
    )
    path = tmp_path / "open.py"
    path.write_text(src)
    assert _imports("atmos.io.open", path) == {
        "atmos.io.names",
        "atmos.io.coords",
        "atmos.catalog",
        "atmos.grids",
        "atmos.errors",
        "atmos.io.stats",
    }
    (tmp_path / "__init__.py").write_text("from .open import x\nfrom atmos import __version__\n")
    assert _imports("atmos.io", tmp_path / "__init__.py") == {"atmos.io.open", "atmos"}


def test_cycle_finder_finds_cycles():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_every_package_has_a_layer():
    missing = sorted({_package(m) for m in MODULES} - set(RANK))
    assert not missing, f"packages {missing} are not in LAYERS; add them at their place.\n{_format_graph()}"


# -- the rules ------------------------------------------------------------------------------
def test_no_import_cycles_between_packages():
    graph = {a: set(deps) for a, deps in _package_graph().items()}
    cycles = _cycles(graph)
    assert not cycles, f"package import cycles {cycles}\n{_format_graph()}"


def test_no_import_cycles_between_modules():
    cycles = _cycles(GRAPH)
    assert not cycles, f"module import cycles {cycles}\n{_format_graph()}"


def test_imports_point_down_only():
    bad = []
    for mod, deps in sorted(GRAPH.items()):
        a = _package(mod)
        for dep in sorted(deps):
            b = _package(dep)
            if a == b or a not in RANK or b not in RANK:
                continue
            if RANK[b] > RANK[a]:
                bad.append(f"{mod} ({a}) imports {dep} ({b}), a higher layer")
            elif RANK[b] == RANK[a]:
                bad.append(f"{mod} ({a}) imports {dep} ({b}), a package of the same layer")
            elif b in FORBIDDEN.get(a, ()):
                bad.append(f"{mod} ({a}) imports {dep}; {a} must never import {sorted(FORBIDDEN[a])}")
    assert not bad, "layering violations:\n" + "\n".join(bad) + "\n" + _format_graph()


def test_nothing_imports_cli():
    bad = [
        f"{mod} imports {dep}"
        for mod, deps in sorted(GRAPH.items())
        if _package(mod) != "cli"
        for dep in sorted(deps)
        if _package(dep) == "cli"
    ]
    assert not bad, "\n".join(bad) + "\n" + _format_graph()


def _run(code: str) -> str:
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return out.stdout.strip()


@pytest.mark.parametrize(
    "code",
    [
        "import atmos",
        "import atmos, xarray; atmos.open_dataset; atmos.grids.HealpixGrid; atmos.io.compute_stats",
        "import atmos.catalog",
        "import atmos.cli.main as m; m.build_parser()",  # what `atmos --help` does
    ],
)
def test_light_imports_do_not_load_torch(code):
    assert _run(f"{code}; import sys; print('torch' in sys.modules)") == "False", f"{code!r} imported torch"


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
