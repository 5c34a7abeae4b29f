"""The rollout subpackage stays made of small modules with one job each (issue 11).

Measured on the AST of ``atmos/rollout/*.py``: no module over :data:`MAX_MODULE_LINES` lines,
no function or method over :data:`MAX_FUNCTION_LINES` lines of code (its docstring not
counted), and no private name (``_x``) imported from one ``atmos.rollout`` module into another
module of ``atmos`` (what modules share is public in its one home).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2] / "atmos"
ROLLOUT = ROOT / "rollout"
MAX_MODULE_LINES = 420
MAX_FUNCTION_LINES = 80

MODULES = sorted(ROLLOUT.glob("*.py"))


def _function_lines(node: ast.FunctionDef | ast.AsyncFunctionDef) -> int:
    """Lines from the ``def`` to the end, less the docstring."""
    n = node.end_lineno - node.lineno + 1
    body = node.body
    if body and isinstance(body[0], ast.Expr) and isinstance(getattr(body[0], "value", None), ast.Constant):
        if isinstance(body[0].value.value, str):
            n -= body[0].end_lineno - body[0].lineno + 1
    return n


@pytest.mark.parametrize("path", MODULES, ids=lambda p: p.name)
def test_no_module_is_too_long(path: Path) -> None:
    n = len(path.read_text(encoding="utf-8").splitlines())
    assert n <= MAX_MODULE_LINES, (
        f"atmos/rollout/{path.name} has {n} lines (limit {MAX_MODULE_LINES}); split it into modules of one job each."
    )


@pytest.mark.parametrize("path", MODULES, ids=lambda p: p.name)
def test_no_function_is_too_long(path: Path) -> None:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    long = {
        f"{node.name} (line {node.lineno}): {_function_lines(node)} lines"
        for node in ast.walk(tree)
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and _function_lines(node) > MAX_FUNCTION_LINES
    }
    assert not long, (
        f"atmos/rollout/{path.name} has functions over {MAX_FUNCTION_LINES} lines of code: {sorted(long)}; "
        "split them into helpers with one job each."
    )


def test_no_private_name_is_imported_from_a_rollout_module() -> None:
    found = []
    for path in sorted(ROOT.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("atmos.rollout"):
                found += [
                    f"{path.relative_to(ROOT.parent)}:{node.lineno}: from {node.module} import {a.name}"
                    for a in node.names
                    if a.name.startswith("_") and not a.name.startswith("__")
                ]
    assert not found, (
        f"private names imported across modules: {found}; make the name public in its one home "
        "(or move the code there)."
    )


def test_the_public_api_is_unchanged() -> None:
    import atmos.rollout as ar
    from atmos.rollout.engine import Forecaster, Perturbation, RolloutState, load_checkpoint_files

    assert (ar.Forecaster, ar.Perturbation, ar.RolloutState, ar.load_checkpoint_files) == (
        Forecaster, Perturbation, RolloutState, load_checkpoint_files
    )
    for name in ("rollout", "plan_rollout", "run_plan", "RolloutPlan", "ForecastWriter", "parse_init",
                 "default_output_path", "read_progress", "toa_incident_solar_radiation"):
        assert hasattr(ar, name), name
