"""Deep merge of nested mappings: how config layers (defaults, file, overrides) combine."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def deep_merge(base: Mapping[str, Any], *overs: Mapping[str, Any]) -> dict[str, Any]:
    """A new dict: `base` with each of `overs` laid on top in turn; tables merge key by key, any
    other value (lists included) replaces. The inputs are not changed. Raises nothing."""
    out = dict(base)
    for over in overs:
        for key, value in over.items():
            if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
                out[key] = deep_merge(out[key], value)
            else:
                out[key] = value
    return out
