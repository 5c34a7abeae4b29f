"""`atmos train` command: parser, overrides, --resume, summary output."""

from __future__ import annotations

import argparse
import json

import yaml

from atmos.cli import train as train_cli


def _parse(argv):
    parser = argparse.ArgumentParser(prog="atmos")
    sub = parser.add_subparsers(dest="command")
    train_cli.add_parser(sub)
    return parser.parse_args(argv)


def test_print_config_applies_overrides(tmp_path, capsys):
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump({"optimizer": {"lr": 1e-3}}))
    args = _parse(["train", str(path), "optimizer.lr=5e-4", "--resume", "schedule.epochs=3", "--print-config"])
    assert args.func(args) == 0
    cfg = yaml.safe_load(capsys.readouterr().out)
    assert cfg["optimizer"]["lr"] == 5e-4 and cfg["schedule"]["epochs"] == 3  # --resume gave its value back
    assert cfg["output"]["name"] == "exp"


def test_train_and_resume_from_the_cli(tiny_config, tmp_path, capsys):
    cfg = tiny_config(schedule={"epochs": 1, "warmup_steps": 1, "max_steps_per_epoch": 2}, validation={"source": None})
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(cfg))
    assert train_cli.main([str(path), "--no-progress", "--log-level", "WARNING"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["status"] == "finished" and summary["global_step"] == 2
    # a second run without --resume refuses to overwrite; with --resume and one more epoch it continues
    assert train_cli.main([str(path), "--no-progress"]) == 2
    assert "already has checkpoints" in capsys.readouterr().err
    assert train_cli.main([str(path), "schedule.epochs=2", "--resume", "--no-progress", "--log-level", "WARNING"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["epoch"] == 2 and summary["global_step"] == 4
