"""Build the pluggable parts (recognizer, camera, position, power, clock) from config.

A factory is named in config either as a dotted path, ``package.module:callable``, or as an entry
point name in the part's group (``presacop.recognizers``, ``presacop.cameras``,
``presacop.positions``, ``presacop.power``, ``presacop.clocks``). The factory is called with the
part's ``options`` table as keyword arguments and must return an object with the part's methods.

Raises: `PluginError` naming the config key and what failed (unknown entry point, module not
found, attribute missing, not callable, the factory raised, the result lacks a method);
`HardwareError` from a factory passes through unchanged (a missing device is not a config error).
"""

from __future__ import annotations

import importlib
import importlib.metadata
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from drone_agent.errors import PluginError
from drone_agent.hardware import HardwareError


@dataclass(frozen=True)
class Part:
    """One pluggable part: its config section, entry point group and required methods."""

    section: str
    group: str
    methods: tuple[str, ...]


RECOGNIZER = Part("recognizer", "presacop.recognizers", ("recognize",))
CAMERA = Part("camera", "presacop.cameras", ("read", "close"))
POSITION = Part("position", "presacop.positions", ("fix", "close"))
POWER = Part("power", "presacop.power", ("read", "close"))
CLOCK = Part("clock", "presacop.clocks", ("gnss_time", "close"))  # optional time reference


def resolve(part: Part, spec: str) -> Callable[..., Any]:
    """The factory `spec` names, without calling it. Raises `PluginError`."""
    key = f"{part.section}.factory"
    if ":" not in spec:
        return _entry_point(part, key, spec)
    module_name, _, attr_path = spec.partition(":")
    try:
        obj: Any = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        raise PluginError(key, f"cannot import module {module_name!r} ({exc})") from exc
    except Exception as exc:  # an import-time crash in someone's plug-in is still a config problem
        raise PluginError(key, f"importing {module_name!r} for {spec!r} failed: "
                               f"{type(exc).__name__}: {exc}") from exc
    for name in attr_path.split("."):
        try:
            obj = getattr(obj, name)
        except AttributeError:
            raise PluginError(key, f"module {module_name!r} has no attribute {attr_path!r}") \
                from None
    if not callable(obj):
        raise PluginError(key, f"{spec!r} is not callable (got {type(obj).__name__})")
    return obj  # type: ignore[no-any-return]


def check(part: Part, spec: str, options: Mapping[str, Any]) -> None:
    """Resolve `spec` and, if the factory has `check_options(**options)`, let it check the
    options without building anything (`--check-config`: no device is opened). Raises
    `PluginError` naming ``<section>.factory`` or ``<section>.options``."""
    checker = getattr(resolve(part, spec), "check_options", None)
    if not callable(checker):
        return
    try:
        checker(**options)
    except Exception as exc:
        raise PluginError(f"{part.section}.options", f"{spec!r}: {exc}") from exc


def build(part: Part, spec: str, options: Mapping[str, Any]) -> Any:
    """Resolve `spec`, call it with `options` and check the result. Raises `PluginError`."""
    factory = resolve(part, spec)
    key = f"{part.section}.factory"
    try:
        obj = factory(**options)
    except HardwareError:
        raise  # the device, not the config: the caller may retry later
    except Exception as exc:
        raise PluginError(key, f"{spec!r} raised {type(exc).__name__}: {exc} "
                               f"(called with {part.section}.options = {dict(options)!r})") from exc
    missing = [m for m in part.methods if not callable(getattr(obj, m, None))]
    if missing:
        lacks = ", ".join(f"{m}()" for m in missing)
        raise PluginError(key, f"{spec!r} returned {type(obj).__name__}, which lacks {lacks}")
    return obj


def _entry_point(part: Part, key: str, name: str) -> Callable[..., Any]:
    found = importlib.metadata.entry_points(group=part.group)
    for ep in found:
        if ep.name == name:
            try:
                obj = ep.load()
            except Exception as exc:
                raise PluginError(key, f"entry point {name!r} ({ep.value}) failed to load: "
                                       f"{type(exc).__name__}: {exc}") from exc
            if not callable(obj):
                raise PluginError(key, f"entry point {name!r} ({ep.value}) is not callable")
            return obj  # type: ignore[no-any-return]
    known = ", ".join(sorted({ep.name for ep in found})) or "none installed"
    raise PluginError(key, f"no entry point {name!r} in group {part.group} (known: {known}); "
                           "a dotted path needs 'package.module:callable'")
