"""docs/protocol.md matches the code: its tables name the fields, codes and limits the code uses."""

from __future__ import annotations

import json
import re
from pathlib import Path

import protocol
from protocol import _codec, _json

DOCS = Path(__file__).resolve().parents[2] / "docs"
SPEC = (DOCS / "protocol.md").read_text()
VECTORS = json.loads((DOCS / "protocol-vectors.json").read_text())["vectors"]


def _section(title: str) -> str:
    start = SPEC.index(title)
    end = SPEC.find("\n#", start + len(title))
    return SPEC[start:end]


def test_every_error_code_is_documented() -> None:
    table = _section("## 9. Error codes")
    documented = set(re.findall(r"^\| `([a-z_]+)` \|", table, re.MULTILINE))
    assert documented == set(protocol.ERROR_CODES)


def _payload_fields(kind: protocol.Kind) -> list[str]:
    """The codec's field names at payload positions: its logical array minus the two facts the
    topic carries (kind and drone_id at logical positions 1 and 2)."""
    names = list(_codec.FIELDS[kind])
    assert names[1:3] == ["kind", "drone_id"]
    return [names[0], *names[3:]]


def test_field_tables_match_the_payload_layout() -> None:
    """Rows '| <index> | `<name>` |' of sections 3 and 5 give each field's payload position."""
    sections = {
        protocol.Kind.TELEMETRY: _section("### 5.1 telemetry"),
        protocol.Kind.VIOLATION: _section("### 5.2 violation"),
        protocol.Kind.STATUS: _section("### 5.3 status"),
    }
    common = _section("## 3. Common fields")
    rows = re.compile(r"^\| (\d+) \| `([a-z_.]+)`", re.MULTILINE)
    header = {int(i): n for i, n in rows.findall(common)}
    assert header == {0: "schema", 1: "seq", 2: "time_ms", 3: "time_ms"}
    for kind, text in sections.items():
        documented = header | {int(i): n for i, n in rows.findall(text)}
        names = _payload_fields(kind)
        if kind is protocol.Kind.VIOLATION:
            assert "| 4-6 | `lat_deg`, `lon_deg`, `alt_m` |" in text  # one row for the three
            documented |= {4: "lat_deg", 5: "lon_deg", 6: "alt_m"}
        expected = {i: ("time_ms" if n == "time_sub" else n) for i, n in enumerate(names)}
        assert documented == expected, kind
        assert f": {len(names)} elements" in text or f"to {len(names)} elements" in text


def test_the_time_rule_and_the_resolutions_in_the_text() -> None:
    assert _codec.TIME_TICK_MS == 40 and _codec.SUB_MAX == 99
    assert "time_ms = time_s * 1000 + (time_sub >> 2) * 40" in SPEC
    assert "0..99 with tick 0..24 and time_source 0..2" in _section("## 3. Common fields")
    assert _codec.ALT_RANGE == (-1000, 10000)  # whole metres
    assert "| 6 | `alt_m` | int | whole metres above mean sea level | -1000..10000 |" in SPEC


def test_the_topic_carries_the_drone_id_and_the_kind() -> None:
    topics = _section("## 1. Transport and topics")
    assert "    presacop/v1/drones/<drone_id>/<kind>" in topics
    # The ACL lines the spec quotes are the ones the deployment ships.
    quoted = re.findall(r"`(pattern write [^`]+)`", topics)
    shipped = (DOCS.parent / "deploy" / "mosquitto" / "presacop.acl").read_text().splitlines()
    assert quoted and all(line in shipped for line in quoted), quoted
    assert "topic aliases" in topics
    for vector in VECTORS:
        if vector["valid"]:
            j = vector["json"]
            assert vector["topic"] == protocol.topic(j["drone_id"], protocol.Kind(j["kind"]))


def test_json_keys_are_documented_in_order() -> None:
    table = _section("## 10. Canonical JSON form")
    keys: list[str] = []
    for cell in re.findall(r"^\| (`[a-z_]+`(?:, `[a-z_]+`)*) \|", table, re.MULTILINE):
        keys += re.findall(r"`([a-z_]+)`", cell)
    for kind, kind_keys in _json.KEYS.items():
        assert [k for k in keys if k in kind_keys] == list(kind_keys), kind


def test_limits_and_versions_in_the_text() -> None:
    assert f"at most **{protocol.MAX_MESSAGE_SIZE} bytes**" in SPEC
    assert f"schema {protocol.SCHEMA_VERSION}" in SPEC.splitlines()[0]
    assert f"`{protocol.SUBSCRIPTION}`" in SPEC
    limits = _codec._LIMITS
    assert f"no str or bin longer than {limits['max_str_len']} bytes" in SPEC
    assert f"no array longer than {limits['max_array_len']} elements" in SPEC
    assert f"no map longer than {limits['max_map_len']} pairs" in SPEC


def test_worked_example_is_the_typical_telemetry_vector() -> None:
    example = _section("## 11. Worked example")
    blocks = example.split("```")
    hex_bytes = "".join(line.split("  ")[0].replace(" ", "") for line in blocks[1].splitlines())
    vector = next(v for v in VECTORS if v["name"] == "telemetry typical")
    assert hex_bytes == vector["hex"]
    assert f"**{len(hex_bytes) // 2} bytes**" in example
    assert f"`{vector['topic']}` ({len(vector['topic'])} bytes)" in example
    assert json.loads(blocks[3].removeprefix("json")) == vector["json"]


def test_size_table_matches_the_vectors() -> None:
    sizes = {v["name"]: len(v["hex"]) // 2 for v in VECTORS}
    rows = {
        "telemetry": "telemetry typical",
        "telemetry, realistic envelope's upper end":
            "telemetry at the realistic envelope's upper end",
        "telemetry, every field at its range limit": "telemetry all maximums",
        "violation, no vehicle details": "violation qualified (21 street cleaning)",
        "violation with make, colour, body": "violation with vehicle details",
        "status": "status online",
    }
    table = _section("## 12. Sizes")
    for row, vector in rows.items():
        assert re.search(rf"^\| {re.escape(row)} \| {sizes[vector]} \|", table, re.MULTILINE), row
