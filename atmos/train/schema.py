"""JSON schema of the training config, generated from the config dataclasses (``atmos config schema``).

:func:`config_schema` walks the fields and type hints of :class:`atmos.train.config.TrainConfig`
(and of every registered model's config dataclass for ``model.params``), so the schema can
never drift from the code: ``str``/``int``/``float``/``bool``, ``list[...]``, ``tuple``,
``dict[str, ...]``, ``X | None``, ``Literal[...]`` and nested dataclasses map to JSON-schema
types; defaults come from the dataclass defaults and descriptions from the numpy-style
docstrings (``Attributes`` sections). Unknown keys are rejected
(``additionalProperties: false``), as :func:`atmos.train.config.load_config` does.
Value constraints that types do not express (choices, ranges) are checked by
``atmos train --check`` (:mod:`atmos.train.check`).
"""

from __future__ import annotations

import dataclasses
import inspect
import re
import types
import typing
from typing import Any, Union

from atmos.train.config import TrainConfig

__all__ = ["config_schema", "dataclass_schema"]

_SCHEMA_URI = "https://json-schema.org/draft/2020-12/schema"


def _field_docs(cls: type) -> dict[str, str]:
    """``name -> description`` from a numpy-style ``Attributes`` (or ``Parameters``) section."""
    doc = inspect.getdoc(cls) or ""
    out: dict[str, str] = {}
    m = re.search(r"^(Attributes|Parameters)\n-+\n(.*?)(?:\n\n[A-Z][a-z]+\n-+\n|\Z)", doc, re.S | re.M)
    if not m:
        return out
    name, lines = None, []
    for line in m.group(2).splitlines():
        head = re.match(r"^(\w+)\s*:", line)
        if head and not line.startswith(" "):
            if name:
                out[name] = " ".join(lines).strip()
            name, lines = head.group(1), []
        elif name:
            lines.append(line.strip())
    if name:
        out[name] = " ".join(lines).strip()
    return out


def _json_default(value: Any) -> Any:
    if isinstance(value, tuple):
        return [_json_default(v) for v in value]
    if isinstance(value, list):
        return [_json_default(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _json_default(v) for k, v in value.items()}
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return str(value)


def _type_schema(tp: Any) -> dict[str, Any]:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any or tp is object:
        return {}
    if origin in (Union, types.UnionType):
        subs = [_type_schema(a) for a in args]
        return subs[0] if len(subs) == 1 else {"anyOf": subs}
    if tp is type(None):
        return {"type": "null"}
    if origin is typing.Literal:
        return {"enum": list(args)}
    if dataclasses.is_dataclass(tp):
        return dataclass_schema(tp)
    if tp is bool:
        return {"type": "boolean"}
    if tp is int:
        return {"type": "integer"}
    if tp is float:
        return {"type": "number"}
    if tp is str:
        return {"type": "string"}
    if origin in (list, tuple, typing.Sequence) or tp in (list, tuple):
        if origin is tuple and args and args[-1] is not Ellipsis:
            return {"type": "array", "prefixItems": [_type_schema(a) for a in args], "minItems": len(args),
                    "maxItems": len(args)}
        return {"type": "array", "items": _type_schema(args[0]) if args else {}}
    if origin in (dict, typing.Mapping) or tp is dict:
        return {"type": "object", "additionalProperties": _type_schema(args[1]) if len(args) == 2 else {}}
    return {}


def dataclass_schema(cls: type) -> dict[str, Any]:
    """JSON schema of one config dataclass (its fields, type hints, defaults and docstring)."""
    hints = typing.get_type_hints(cls)
    docs = _field_docs(cls)
    props: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        sub = dict(_type_schema(hints[f.name]))
        if f.default is not dataclasses.MISSING:
            sub["default"] = _json_default(f.default)
        elif f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
            value = f.default_factory()  # type: ignore[misc]
            if not dataclasses.is_dataclass(value):
                sub["default"] = _json_default(value)
        if f.name in docs and docs[f.name]:
            sub["description"] = docs[f.name]
        props[f.name] = sub
    doc = (inspect.getdoc(cls) or "").split("\n\n")[0].replace("\n", " ")
    out: dict[str, Any] = {"title": cls.__name__, "type": "object", "properties": props, "additionalProperties": False}
    if doc:
        out["description"] = doc
    return out


def config_schema() -> dict[str, Any]:
    """The JSON schema (draft 2020-12) of a training config YAML file.

    ``model.params`` is tied to ``model.name``: for every model in
    :data:`atmos.models.registry.MODELS` an ``if``/``then`` clause applies the schema of
    that model's config dataclass.
    """
    from atmos.models.registry import MODELS

    schema = dataclass_schema(TrainConfig)
    schema["$schema"] = _SCHEMA_URI
    schema["$id"] = "atmos-train-config"
    defs: dict[str, Any] = {}
    clauses = []
    for name, (_model_cls, cfg_cls) in sorted(MODELS.items()):
        defs[f"model_{name}"] = dataclass_schema(cfg_cls)
        clauses.append({
            "if": {"properties": {"name": {"const": name}}},
            "then": {"properties": {"params": {"$ref": f"#/$defs/model_{name}"}}},
        })
    model = schema["properties"]["model"]
    model["properties"]["name"]["enum"] = sorted(MODELS)
    model["allOf"] = clauses
    schema["$defs"] = defs
    return schema
