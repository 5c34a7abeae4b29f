"""A light ``import atmos`` and CLI (issue 13): what gets imported, not how long it takes.

``import atmos`` loads neither xarray nor torch; the ``ds.atmos`` accessor is registered as soon
as xarray is imported (before or after atmos), and ``open_dataset`` resolves catalog names
whichever way atmos.io is reached. ``atmos --help`` and ``atmos catalog list`` load no numerical
package. Each check runs in a fresh interpreter (this test process has imported everything).
Timings are in benchmarks/bench_cli_startup.py.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

#: Packages a start-up must not load (numerical stack, data formats, plotting, torch).
HEAVY = ("torch", "xarray", "numpy", "pandas", "scipy", "dask", "zarr", "netCDF4", "matplotlib")


def _run(code: str) -> dict:
    """Run ``code`` in a fresh interpreter; it sets ``out`` (a JSON-able dict), which is returned."""
    prog = textwrap.dedent(code) + "\nimport json as _j, sys as _s\n_s.stdout.write('\\n' + _j.dumps(out))\n"
    proc = subprocess.run(
        [sys.executable, "-c", prog], capture_output=True, text=True, timeout=300, check=False
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.rsplit("\n", 1)[-1])


def _heavy_loaded() -> str:
    return f"[m for m in {HEAVY!r} if m in sys.modules]"


def test_import_atmos_is_light():
    out = _run(f"""
        import sys
        import atmos
        out = {{"heavy": {_heavy_loaded()}, "error": atmos.AtmosError.__module__}}
    """)
    assert out == {"heavy": [], "error": "atmos.errors"}


@pytest.mark.parametrize("order", ["atmos, xarray", "xarray, atmos"])
def test_accessor_registered_in_either_import_order(order):
    out = _run(f"""
        import sys
        import {order}
        import xarray as xr
        ds = xr.Dataset({{"t": (("latitude", "longitude"), [[1.0, 2.0], [3.0, 4.0]])}},
                        coords={{"latitude": [-45.0, 45.0], "longitude": [0.0, 180.0]}})
        out = {{
            "dataset": type(ds.atmos).__name__,
            "dataarray": type(ds["t"].atmos).__name__,
            "grid": type(ds.atmos.grid).__name__,
            # the hook gives xarray its real loader back: it looks exactly like a plain import
            "loader": type(xr.__spec__.loader).__name__,
            "same_loader": xr.__loader__ is xr.__spec__.loader,
        }}
    """)
    assert out == {
        "dataset": "AtmosAccessor",
        "dataarray": "AtmosDataArrayAccessor",
        "grid": "LatLonGrid",
        "loader": "SourceFileLoader",
        "same_loader": True,
    }


@pytest.mark.parametrize(
    "how",
    [
        "atmos.open_dataset",
        "atmos.io.open_dataset",  # the subpackage reached through ``atmos.__getattr__``
        "__import__('atmos.io.open', fromlist=['x']).open_dataset",  # no atmos.open_dataset at all
    ],
)
def test_open_dataset_resolves_catalog_names_however_reached(how):
    out = _run(f"""
        import sys
        import atmos
        from atmos.errors import CatalogError
        try:
            {how}("no-such-catalog-entry")
        except CatalogError as err:  # a name, not a path: the catalog's resolver answered
            hooks_left = any(type(f).__name__ == "_PostImportHooks" for f in sys.meta_path)
            out = {{"error": str(err), "hooks_left": hooks_left}}
    """)
    assert "is neither a catalog entry nor an existing path" in out["error"]
    assert "speedy-world-val" in out["error"]
    assert out["hooks_left"] is False  # both hooks ran (xarray and atmos.io.open): the finder is gone


def test_lazy_names_of_atmos():
    out = _run("""
        import sys
        import atmos
        from atmos import __version__
        light = not any(m in sys.modules for m in ("xarray", "torch"))
        try:
            atmos.no_such_name
        except AttributeError as err:
            missing = str(err)
        out = {"version": __version__ == atmos.__version__ != "", "light": light, "missing": missing,
               "dir": [n in dir(atmos) for n in ("open_dataset", "AtmosError", "io", "grids")],
               "open_dataset": atmos.open_dataset.__module__, "torch": "torch" in sys.modules}
    """)
    assert out == {
        "version": True,
        "light": True,
        "missing": "module 'atmos' has no attribute 'no_such_name'",
        "dir": [True, True, True, True],
        "open_dataset": "atmos.io.open",
        "torch": False,
    }


@pytest.mark.parametrize(
    "argv",
    [
        ["--help"],
        [],
        ["--version"],
        ["catalog", "list"],
        ["catalog", "list", "--long"],
        ["catalog", "show", "speedy-world-val"],
    ],
)
def test_light_commands_load_no_numerical_package(argv):
    out = _run(f"""
        import contextlib, io, sys
        from atmos.cli.main import COMMANDS, main
        with contextlib.redirect_stdout(io.StringIO()) as text:
            try:
                code = main({argv!r})
            except SystemExit as exit:
                code = exit.code
        out = {{"code": code, "heavy": {_heavy_loaded()}, "text": text.getvalue(),
               "commands": sorted(n for n, m in COMMANDS.items() if m in sys.modules)}}
    """)
    assert out["code"] == 0 and out["text"]
    assert out["heavy"] == [], f"atmos {' '.join(argv)} imported {out['heavy']}"
    # a command imports its own module only; help (or no command) needs all of them
    assert out["commands"] == (["catalog"] if argv[:1] == ["catalog"] else sorted(_commands()))


def _commands() -> list[str]:
    from atmos.cli.main import COMMANDS

    return list(COMMANDS)


def test_building_the_parser_loads_no_numerical_package():
    out = _run(f"""
        import sys
        import atmos.cli.main as m
        m.build_parser()
        out = {{"heavy": {_heavy_loaded()}}}
    """)
    assert out == {"heavy": []}


def test_command_of():
    from atmos.cli.main import _command_of

    assert _command_of(["catalog", "list"]) == "catalog"
    assert _command_of(["--version", "train", "--config", "x"]) == "train"
    assert _command_of(["--help"]) is None
    assert _command_of(["nope", "catalog"]) is None  # an unknown command: the full parser reports it
    assert _command_of(["--", "catalog"]) is None


def test_post_import_hook_runs_once_after_a_successful_import(tmp_path, monkeypatch):
    from atmos import _PostImportHooks

    monkeypatch.syspath_prepend(str(tmp_path))
    mod = tmp_path / "atmos_hook_probe.py"
    mod.write_text("raise RuntimeError('first try fails')\n")
    calls: list[str] = []
    hooks = _PostImportHooks()
    hooks.watch("atmos_hook_probe", lambda m: calls.append(m.VALUE))
    try:
        with pytest.raises(RuntimeError, match="first try fails"):
            __import__("atmos_hook_probe")
        assert calls == [] and hooks in sys.meta_path  # a failed import keeps the hook
        mod.write_text("VALUE = 'ok'\n")
        sys.modules.pop("atmos_hook_probe", None)
        import importlib

        importlib.invalidate_caches()
        m = importlib.import_module("atmos_hook_probe")
        assert calls == ["ok"] and hooks not in sys.meta_path
        assert m.__spec__.loader is m.__loader__ and type(m.__loader__).__name__ == "SourceFileLoader"
        importlib.reload(m)
        assert calls == ["ok"]
        hooks.watch("atmos_hook_probe", lambda m: calls.append("at once"))  # already imported: runs now
        assert calls == ["ok", "at once"] and hooks not in sys.meta_path
    finally:
        if hooks in sys.meta_path:
            sys.meta_path.remove(hooks)
        sys.modules.pop("atmos_hook_probe", None)
