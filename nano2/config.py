"""Load YAML into pydantic models with errors that name the file, the field and what was expected.

Every package loads its configs through `load_yaml_model`, so every config error reads the same way:
`recipes/tiny.yaml: phases[1].weights: weights sum to 0.9, expected 1 (within 1e-09)`.

Validation is strict for every model: a string is never turned into a number (`weight: "0.55"`,
`seq_len: "4096"`), a boolean is not a number (`weight: true`), and NaN or infinity (`.nan`, `.inf`) is refused
wherever it appears. Strings still become paths, enums and dates, since YAML has no such types: the parsed data
goes through pydantic's strict JSON mode, which allows exactly those conversions. Numbers written `1e-3` (YAML
1.2, what people write) are floats, not the strings PyYAML's YAML 1.1 rules would make of them.
"""

from __future__ import annotations

import enum
import json
import math
import re
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from nano2.errors import ConfigError

M = TypeVar("M", bound=BaseModel)


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys (PyYAML silently keeps the last one)."""


def _construct_mapping(loader: _StrictLoader, node: yaml.MappingNode, deep: bool = False) -> dict:
    seen: dict[Any, yaml.Node] = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            mark = key_node.start_mark
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r} (first at line {seen[key].start_mark.line + 1})", mark
            )
        seen[key] = key_node
    return loader.construct_mapping(node, deep=deep)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)
# YAML 1.2 floats without a dot or without an exponent sign (`1e-3`, `5E4`), which YAML 1.1 reads as strings
_StrictLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float", re.compile(r"^[-+]?[0-9][0-9_]*(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"), list("-+0123456789")
)


def read_yaml(path: str | Path) -> Any:
    """Parse a YAML file; a missing file or malformed YAML is a ConfigError naming the line."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(path, None, "file not found") from None
    except IsADirectoryError:
        raise ConfigError(path, None, "expected a YAML file, got a directory") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(path, None, f"not UTF-8 text ({exc.reason})") from None
    try:
        return yaml.load(text, Loader=_StrictLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark is not None else None
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(path, where, f"malformed YAML: {problem}") from None


def format_loc(loc: tuple[Any, ...]) -> str:
    """('phases', 1, 'weights') -> 'phases[1].weights'."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def _model_at(model: type[BaseModel], loc: tuple[Any, ...]) -> type[BaseModel] | None:
    """The pydantic model class that owns the last element of `loc`, if it can be found."""
    current: Any = model
    for part in loc:
        if isinstance(part, int) or not (isinstance(current, type) and issubclass(current, BaseModel)):
            continue
        field = current.model_fields.get(part)
        if field is None:
            return current
        current = _first_model(field.annotation)
    return current if isinstance(current, type) and issubclass(current, BaseModel) else None


def _first_model(annotation: Any) -> Any:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    origin = typing.get_origin(annotation)
    if origin is None and not isinstance(annotation, types.UnionType):
        return None
    for arg in typing.get_args(annotation):
        found = _first_model(arg)
        if found is not None:
            return found
    return None


def describe_validation_error(exc: ValidationError, model: type[BaseModel]) -> list[tuple[str, str]]:
    """(field, message) pairs, with 'unknown key' errors listing the keys that are allowed."""
    out = []
    for err in exc.errors():
        loc = tuple(err["loc"])
        msg = str(err["msg"]).removeprefix("Value error, ").removeprefix("Assertion failed, ")
        if err["type"] == "extra_forbidden":
            owner = _model_at(model, loc[:-1])
            allowed = ", ".join(owner.model_fields) if owner is not None else "see the docs"
            msg = f"unknown key; expected one of: {allowed}"
        elif err["type"] == "missing":
            msg = "required field is missing"
        elif "input" in err and err["type"] not in ("value_error", "assertion_error"):
            msg = f"{msg} (got {err['input']!r})"
        out.append((format_loc(loc), msg))
    return out


def _non_finite(data: Any, loc: tuple[Any, ...] = ()) -> tuple[tuple[Any, ...], float] | None:
    """The location and value of the first NaN or infinity in parsed data, if any."""
    if isinstance(data, float) and not math.isfinite(data):
        return loc, data
    items = data.items() if isinstance(data, dict) else enumerate(data) if isinstance(data, list | tuple) else ()
    for key, value in items:
        found = _non_finite(value, (*loc, key))
        if found is not None:
            return found
    return None


def _json_value(value: Any) -> Any:
    """Values YAML or a caller may hand over that JSON has no type for: dates, paths, enums, models."""
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, set | frozenset):
        return sorted(value, key=str)
    return str(value)


def validate_model(data: Any, model: type[M], source: str | Path | None) -> M:
    """Validate parsed data against `model` strictly (no str -> number, no bool -> number, no NaN/inf), turning
    pydantic's report into one ConfigError line."""
    if data is None:
        raise ConfigError(source, None, f"empty document; expected a mapping for {model.__name__}")
    bad = _non_finite(data)
    if bad is not None:
        raise ConfigError(source, format_loc(bad[0]) or None, f"expected a finite number, got {bad[1]}")
    try:
        return model.model_validate_json(json.dumps(data, default=_json_value), strict=True)
    except ValidationError as exc:
        problems = describe_validation_error(exc, model)
        field, message = problems[0]
        if len(problems) > 1:
            message += (
                f" (and {len(problems) - 1} more: " + "; ".join(f"{f}: {m}" if f else m for f, m in problems[1:]) + ")"
            )
        raise ConfigError(source, field or None, message) from None


def load_yaml_model(path: str | Path, model: type[M]) -> M:
    """Read a YAML file into a pydantic model; every failure is a ConfigError naming file and field."""
    return validate_model(read_yaml(path), model, path)
