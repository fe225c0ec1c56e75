"""Typed TOML configuration with errors that name the key.

A config is a tree of frozen dataclasses. `load(cls, path)` reads TOML, applies environment
overrides, and builds the tree, rejecting unknown keys, wrong types and bad values with a
`ConfigError` that says which key (`mqtt.port`) in which file, and why.

Field metadata:
- ``doc``: one line for the generated reference (`describe`).
- ``check``: a callable ``value -> str | None`` returning a reason when the value is bad.
- ``env``: an environment variable that overrides the value (for secrets); it is parsed like TOML
  would be for the field's type (str as is; int, float and bool from text).

`dump_toml(data)` is the other direction: a nested dict rendered as TOML, for the programs that
write configs for the processes they start (demo, bench, tests).

Raises: `ConfigError` (a `ValueError`) for every problem; nothing else escapes `load`.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import sys
import types
import typing
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Raspberry Pi OS ships 3.11; 3.10 needs the backport
    import tomli as tomllib

T = TypeVar("T")


class ConfigError(ValueError):
    """A config value is missing, unknown or invalid. `key` is the dotted path, e.g. `mqtt.port`."""

    def __init__(self, key: str, reason: str, source: str = "") -> None:
        self.key = key
        self.reason = reason
        self.source = source
        where = f"{source}: " if source else ""
        super().__init__(f"{where}{key or '<root>'}: {reason}")


def field(
    default: Any = dataclasses.MISSING,
    *,
    doc: str,
    check: Callable[[Any], str | None] | None = None,
    env: str | None = None,
    default_factory: Any = dataclasses.MISSING,
) -> Any:
    """A config field with documentation, an optional value check and an optional env override."""
    meta = {"doc": doc, "check": check, "env": env}
    if default_factory is not dataclasses.MISSING:
        return dataclasses.field(default_factory=default_factory, metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def load(cls: type[T], path: str | Path | None, env: Mapping[str, str] | None = None) -> T:
    """Read `path` (TOML; None means built-in defaults only) into `cls`, with env overrides."""
    source = str(path) if path is not None else "<defaults>"
    data: dict[str, Any] = {}
    if path is not None:
        try:
            with open(path, "rb") as fh:
                data = tomllib.load(fh)
        except FileNotFoundError:
            raise ConfigError("", "file not found", source) from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError("", f"not valid TOML ({exc})", source) from None
        except OSError as exc:
            raise ConfigError("", f"cannot read ({exc.strerror})", source) from None
    return from_dict(cls, data, source=source, env=os.environ if env is None else env)


def from_dict(
    cls: type[T],
    data: Mapping[str, Any],
    *,
    source: str = "<dict>",
    env: Mapping[str, str] | None = None,
    prefix: str = "",
) -> T:
    """Build `cls` from a mapping; see the module docstring for the rules."""
    if not isinstance(data, Mapping):
        raise ConfigError(prefix.rstrip("."), f"expected a table, got {_tname(data)}", source)
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    for key in data:
        if key not in fields:
            known = ", ".join(sorted(fields))
            raise ConfigError(f"{prefix}{key}", f"unknown key (known: {known})", source)
    kwargs: dict[str, Any] = {}
    for name, f in fields.items():
        key = f"{prefix}{name}"
        typ = hints[name]
        env_name = f.metadata.get("env")
        if env and env_name and env_name in env:
            kwargs[name] = _from_env(key, env_name, env[env_name], typ, source)
        elif name in data:
            kwargs[name] = _convert(key, data[name], typ, source, env)
        elif (
            dataclasses.is_dataclass(typ)
            and f.default is dataclasses.MISSING
            and f.default_factory is dataclasses.MISSING
        ):  # type: ignore[misc]
            kwargs[name] = from_dict(typ, {}, source=source, env=env, prefix=f"{key}.")
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:  # type: ignore[misc]
            raise ConfigError(key, "required key is missing", source)
        elif dataclasses.is_dataclass(typ):
            # Nested defaults still see env overrides.
            kwargs[name] = from_dict(typ, {}, source=source, env=env, prefix=f"{key}.")
        check = f.metadata.get("check")
        if check is not None and name in kwargs:
            reason = check(kwargs[name])
            if reason:
                raise ConfigError(key, reason, source)
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as exc:
        raise ConfigError(prefix.rstrip("."), str(exc), source) from None


def dump_toml(data: Mapping[str, Any]) -> str:
    """`data` as TOML: scalars (str, int, float, bool) and lists of them as `key = value`, nested
    mappings as `[tables]`; None means "not set" and is left out. Raises ConfigError for any other
    value type, naming its key."""
    lines: list[str] = []
    _dump_table(data, "", lines)
    return "\n".join(lines).lstrip("\n") + "\n"


def _dump_table(data: Mapping[str, Any], prefix: str, lines: list[str]) -> None:
    tables = []
    if prefix:
        lines += ["", f"[{prefix}]"]
    for key, value in data.items():
        if isinstance(value, Mapping):
            tables.append((key, value))
        elif value is not None:
            path = f"{prefix}.{key}" if prefix else key
            lines.append(f"{_toml_key(key)} = {_toml_value(path, value)}")
    for key, value in tables:
        _dump_table(value, f"{prefix}.{_toml_key(key)}" if prefix else _toml_key(key), lines)


def _toml_key(key: str) -> str:
    return key if re.fullmatch(r"[A-Za-z0-9_-]+", key) else json.dumps(key)


def _toml_value(key: str, value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)  # a JSON string is a valid TOML basic string
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(f"{key}[{i}]", v) for i, v in enumerate(value)) + "]"
    raise ConfigError(key, f"cannot write {_tname(value)} {value!r} as TOML")


def describe(cls: type, prefix: str = "") -> list[tuple[str, str, str, str]]:
    """Rows of (key, type, default, doc) for the docs, nested tables flattened with dots."""
    rows: list[tuple[str, str, str, str]] = []
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        typ = hints[f.name]
        if dataclasses.is_dataclass(typ):
            rows.extend(describe(typ, f"{prefix}{f.name}."))
            continue
        if f.default is not dataclasses.MISSING:
            default = repr(f.default)
        elif f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
            default = repr(f.default_factory())  # type: ignore[misc]
        else:
            default = "(required)"
        doc = f.metadata.get("doc", "")
        if f.metadata.get("env"):
            doc += f" Env override: `{f.metadata['env']}`."
        rows.append((f"{prefix}{f.name}", _tname_type(typ), default, doc))
    return rows


def _convert(key: str, value: Any, typ: Any, source: str, env: Mapping[str, str] | None) -> Any:
    if dataclasses.is_dataclass(typ):
        return from_dict(typ, value, source=source, env=env, prefix=f"{key}.")
    origin = typing.get_origin(typ)
    args = typing.get_args(typ)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _convert(key, value, arg, source, env)
            except ConfigError as exc:
                errors.append(exc.reason)
        raise ConfigError(key, "; ".join(errors), source)
    if origin is typing.Literal:
        if value not in args:
            choices = ", ".join(repr(a) for a in args)
            raise ConfigError(key, f"must be one of {choices}, got {value!r}", source)
        return value
    if origin in (list, tuple):
        if not isinstance(value, list):
            raise ConfigError(key, f"expected a list, got {_tname(value)}", source)
        item = args[0] if args else Any
        items = [_convert(f"{key}[{i}]", v, item, source, env) for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(key, f"expected a table, got {_tname(value)}", source)
        return {k: _convert(f"{key}.{k}", v, args[1], source, env) for k, v in value.items()}
    if typ is Any:
        return value
    if typ is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if typ is int and isinstance(value, bool):
        raise ConfigError(key, "expected an integer, got a boolean", source)
    if not isinstance(value, typ):
        raise ConfigError(
            key, f"expected {_tname_type(typ)}, got {_tname(value)} {value!r}", source
        )
    return value


def _from_env(key: str, env_name: str, raw: str, typ: Any, source: str) -> Any:
    src = f"environment variable {env_name}"
    args = [a for a in typing.get_args(typ) if a is not type(None)] or [typ]
    target = args[0]
    try:
        if target is bool:
            lowered = raw.strip().lower()
            if lowered not in ("1", "0", "true", "false", "yes", "no"):
                raise ValueError("expected true/false")
            return lowered in ("1", "true", "yes")
        if target in (int, float):
            return target(raw)
    except ValueError as exc:
        raise ConfigError(key, f"bad value {raw!r} ({exc})", src) from None
    return raw


def _tname(value: Any) -> str:
    return {
        bool: "boolean",
        int: "integer",
        float: "float",
        str: "string",
        list: "list",
        dict: "table",
    }.get(type(value), type(value).__name__)


def _tname_type(typ: Any) -> str:
    if isinstance(typ, type):
        return {bool: "boolean", int: "integer", float: "float", str: "string"}.get(
            typ, typ.__name__
        )
    return str(typ).replace("typing.", "")
