"""``atmos train --check``: broken configs are caught in seconds with a clear message; ``atmos config schema``."""

from __future__ import annotations

import copy
import dataclasses
import json
import typing

import pytest
import yaml

from atmos.cli.main import main
from atmos.train.check import Problem, check, structure_problems
from atmos.train.config import TrainConfig
from atmos.train.schema import config_schema


def _edit(cfg: dict, key: str, value) -> dict:
    cfg = copy.deepcopy(cfg)
    node = cfg
    *parents, last = key.split(".")
    for p in parents:
        node = node.setdefault(p, {})
    node[last] = value
    return cfg


#: (what is broken, edits, text the message must contain)
BROKEN = [
    ("wrong key", [("optimizer.learning_rate", 1e-3)], "unknown key 'learning_rate' in optimizer"),
    ("wrong type", [("schedule.epochs", "many")], "schedule.epochs must be an integer, got 'many'"),
    ("unknown model", [("model.name", "vitt")], "unknown model name 'vitt'"),
    ("bad model param", [("model.params.num_heads", 3)], "embed_dim=16 must be divisible by num_heads=3"),
    ("missing variable", [("data.variables", ["geopotential", "relative_humidity"])],
     "'relative_humidity' is not in"),
    ("level not in data", [("data.levels", [500, 300])], "levels [300] are not in"),
    ("period outside data", [("data.period", ["2019-01-01", "2019-06-30"])], "reaches outside the time range"),
    ("missing source path", [("data.source", "/nonexistent/era5.zarr")], "cannot open '/nonexistent/era5.zarr'"),
    ("missing decoder backbone", [("task", "decoder"), ("backbone", "/nonexistent/run"),
                                  ("decoder.variables", ["2m_temperature"])], "'/nonexistent/run' does not exist"),
    ("downscale channel not in data", [("task", "downscale"), ("downscale.channels", ["2m_temperature",
                                       "geopotential_300"]), ("downscale.statics", []), ("downscale.factor", 2)],
     "channel 'geopotential_300': level 300 is not in"),
]


def test_good_config_is_ok(tiny_config, tmp_path, capsys):
    path = tmp_path / "good.yaml"
    path.write_text(yaml.safe_dump(tiny_config()))
    assert main(["train", "--check", str(path)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("config OK: ") and "model vit" in out and "M parameters" in out
    assert not (tmp_path / "runs").exists()  # nothing written, nothing trained


@pytest.mark.parametrize("what,edits,expected", BROKEN, ids=[b[0] for b in BROKEN])
def test_broken_config_is_caught(tiny_config, tmp_path, capsys, what, edits, expected):
    cfg = tiny_config()
    for key, value in edits:
        cfg = _edit(cfg, key, value)
    path = tmp_path / "broken.yaml"
    path.write_text(yaml.safe_dump(cfg))
    assert main(["train", "--check", str(path)]) == 2
    err = capsys.readouterr().err
    assert "problem(s)" in err and expected in err, err
    report = check(path)
    assert not report.ok and all(isinstance(p, Problem) for p in report.problems)


def test_every_key_and_type_problem_is_listed_with_overrides(tiny_config, tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(tiny_config()))
    report = check(path, ["optimizer.learnig_rate=1", "schedule.epochs=x", "data.batch_size=[1]"])
    got = {p.where: str(p) for p in report.problems}
    assert sorted(got) == ["data.batch_size", "optimizer.learnig_rate", "schedule.epochs"]
    assert "valid keys are ['name', 'lr'," in got["optimizer.learnig_rate"]
    assert structure_problems({"seed": 1}) == []


def test_existing_run_folder_needs_resume(tiny_config, tmp_path):
    cfg = tiny_config()
    ckpt = tmp_path / "runs" / "run" / "checkpoints" / "step-1"
    ckpt.mkdir(parents=True)
    assert any("--resume" in p.fix for p in check(cfg).problems)
    assert check(cfg, resume="auto").ok


# -- the JSON schema ---------------------------------------------------------------------------


def _validate(value, schema: dict, root: dict, where: str = "") -> list[str]:
    """A minimal JSON-schema validator (type, properties, additionalProperties, items, anyOf, enum, $ref, if/then)."""
    if "$ref" in schema:
        schema = root["$defs"][schema["$ref"].rsplit("/", 1)[1]]
    errs: list[str] = []
    if "anyOf" in schema:
        if all(_validate(value, s, root, where) for s in schema["anyOf"]):
            errs.append(f"{where}: {value!r} matches no alternative")
        return errs
    if "enum" in schema and value not in schema["enum"]:
        errs.append(f"{where}: {value!r} not in {schema['enum']}")
    types = {"object": dict, "array": list, "string": str, "boolean": bool, "null": type(None)}
    t = schema.get("type")
    if t == "integer" and not (isinstance(value, int) and not isinstance(value, bool)):
        errs.append(f"{where}: {value!r} is not an integer")
    elif t == "number" and not (isinstance(value, (int, float)) and not isinstance(value, bool)):
        errs.append(f"{where}: {value!r} is not a number")
    elif t in types and not isinstance(value, types[t]):
        errs.append(f"{where}: {value!r} is not {t}")
    if isinstance(value, dict):
        props = schema.get("properties", {})
        for k, v in value.items():
            if k in props:
                errs += _validate(v, props[k], root, f"{where}.{k}")
            elif schema.get("additionalProperties") is False:
                errs.append(f"{where}: unknown key {k!r}")
            elif isinstance(schema.get("additionalProperties"), dict):
                errs += _validate(v, schema["additionalProperties"], root, f"{where}.{k}")
        for clause in schema.get("allOf", []):
            cond = clause["if"]["properties"]
            if all(value.get(k) == c.get("const") for k, c in cond.items()):
                errs += _validate(value, clause["then"], root, where)
    if isinstance(value, list) and "items" in schema:
        for i, v in enumerate(value):
            errs += _validate(v, schema["items"], root, f"{where}[{i}]")
    return errs


def test_schema_is_generated_from_the_dataclasses(capsys):
    assert main(["config", "schema"]) == 0
    schema = json.loads(capsys.readouterr().out)
    assert schema == json.loads(json.dumps(config_schema()))
    assert list(schema["properties"]) == [f.name for f in dataclasses.fields(TrainConfig)]
    hints = typing.get_type_hints(TrainConfig)
    for f in dataclasses.fields(TrainConfig):
        if dataclasses.is_dataclass(hints[f.name]):
            sub = schema["properties"][f.name]
            assert list(sub["properties"]) == [g.name for g in dataclasses.fields(hints[f.name])]
            assert sub["additionalProperties"] is False
    assert schema["properties"]["data"]["properties"]["levels"]["anyOf"][0] == {"type": "array",
                                                                                "items": {"type": "integer"}}
    assert "vit" in schema["properties"]["model"]["properties"]["name"]["enum"]
    assert "embed_dim" in schema["$defs"]["model_vit"]["properties"]


@pytest.mark.parametrize("name", ["vit_speedy", "unet_gru_speedy", "decoders_speedy"])
def test_shipped_configs_validate_against_the_schema(name):
    from pathlib import Path

    schema = config_schema()
    cfg = yaml.safe_load((Path(__file__).resolve().parents[2] / "configs" / f"{name}.yaml").read_text())
    assert _validate(cfg, schema, schema) == []
    assert _validate(_edit(cfg, "optimizer.learning_rate", 1), schema, schema)
    assert _validate(_edit(cfg, "schedule.epochs", "many"), schema, schema)
    if "model" in cfg:  # model.params follows the schema of the named model's config class
        assert _validate(_edit(cfg, "model.params.embed_dimm", 3), schema, schema)
