"""common.config.dump_toml and gateway.config.to_toml: the one writer of generated configs."""

from __future__ import annotations

import pytest
import tomllib

from common.config import ConfigError, dump_toml
from gateway.config import to_toml


def test_nested_tables_scalars_and_lists_read_back_the_same() -> None:
    data = {"top": 1, "a": {"s": 'quote " and \\ and é', "f": 0.5, "b": True, "l": [1, 2],
                            "odd key": "x", "b2": {"deep": "y"}}, "skip": None}
    text = dump_toml(data)
    expected = dict(data)
    del expected["skip"]  # None means "not set"
    assert tomllib.loads(text) == expected


def test_a_value_toml_cannot_hold_is_refused_with_its_key() -> None:
    with pytest.raises(ConfigError, match=r"a\.when"):
        dump_toml({"a": {"when": object()}})


def test_gateway_to_toml_checks_the_config_before_writing_it() -> None:
    data = {"mqtt": {"port": 1884, "client_id": "t"}, "kafka": {"topics": {"alerts": "x.a"}}}
    text = to_toml(data)
    assert tomllib.loads(text) == data
    with pytest.raises(ConfigError, match=r"mqtt\.reconnect_max_s"):
        to_toml({"mqtt": {"reconnect_min_s": 5.0, "reconnect_max_s": 1.0}})
    with pytest.raises(ConfigError, match=r"mqtt\.prot"):
        to_toml({"mqtt": {"prot": 1}})
