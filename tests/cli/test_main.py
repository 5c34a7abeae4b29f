"""The CLI skeleton: help, version, errors without traceback."""

from __future__ import annotations

import subprocess
import sys

import pytest

from atmos.cli.main import COMMANDS, build_parser, main


def test_help_lists_every_command(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    for name in COMMANDS:
        assert name in out


def test_no_command_prints_help(capsys):
    assert main([]) == 0
    assert "usage: atmos" in capsys.readouterr().out


def test_each_command_has_help(capsys):
    parser = build_parser()
    for name in COMMANDS:
        with pytest.raises(SystemExit) as exc:
            parser.parse_args([name, "--help"])
        assert exc.value.code == 0
        assert f"atmos {name}" in capsys.readouterr().out


def test_atmos_error_is_printed_without_traceback(tmp_path, capsys):
    missing = tmp_path / "does-not-exist.zarr"
    code = main(["info", str(missing)])
    err = capsys.readouterr().err
    assert code == 2
    assert "Traceback" not in err
    assert str(missing) in err


def test_console_script_runs_in_subprocess():
    proc = subprocess.run(
        [sys.executable, "-c", "from atmos.cli.main import main; raise SystemExit(main(['--version']))"],
        capture_output=True, text=True, timeout=120, check=False,
    )
    assert proc.returncode == 0
    assert proc.stdout.startswith("atmos ")
