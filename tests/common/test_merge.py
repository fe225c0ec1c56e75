"""common.merge.deep_merge: tables merge, other values replace, inputs stay as they were."""

from __future__ import annotations

from common.merge import deep_merge


def test_layers_merge_tables_and_replace_values() -> None:
    base = {"mqtt": {"host": "a", "port": 1}, "tags": [1, 2], "x": 1}
    over = {"mqtt": {"port": 2}, "tags": [3]}
    last = {"mqtt": {"tls": {"ca": "c"}}, "x": {"now": "a table"}}
    assert deep_merge(base, over, last) == {
        "mqtt": {"host": "a", "port": 2, "tls": {"ca": "c"}},
        "tags": [3],
        "x": {"now": "a table"},
    }
    assert base == {"mqtt": {"host": "a", "port": 1}, "tags": [1, 2], "x": 1}
    assert over == {"mqtt": {"port": 2}, "tags": [3]}
