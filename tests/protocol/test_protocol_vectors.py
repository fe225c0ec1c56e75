"""The golden vectors of docs/protocol-vectors.json, run both ways and byte by byte.

The file is read as committed (tools/make_vectors.py writes it); a format change therefore shows up
here as a failing vector, and in review as a diff of the file.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import msgpack
import pytest

import protocol

VECTORS_FILE = Path(__file__).resolve().parents[2] / "docs" / "protocol-vectors.json"
DOC = json.loads(VECTORS_FILE.read_text())
VECTORS: list[dict[str, Any]] = DOC["vectors"]
VALID = [v for v in VECTORS if v["valid"]]
INVALID = [v for v in VECTORS if not v["valid"]]


def _ids(vectors: list[dict[str, Any]]) -> list[str]:
    return [v["name"] for v in vectors]


def test_the_file_has_enough_vectors_of_every_kind_and_every_error() -> None:
    assert len(VECTORS) >= 30
    assert DOC["schema"] == protocol.SCHEMA_VERSION
    assert {v["kind"] for v in VALID} == {k.value for k in protocol.Kind}
    assert len({v["name"] for v in VECTORS}) == len(VECTORS), "names must be unique"
    remote_codes = set(protocol.ERROR_CODES) - {"bad_topic", "inconsistent"}
    assert {v["error"] for v in INVALID} == remote_codes


@pytest.mark.parametrize("vector", VALID, ids=_ids(VALID))
def test_valid_vector_decodes_to_its_json(vector: dict[str, Any]) -> None:
    msg = protocol.decode(bytes.fromhex(vector["hex"]))
    assert protocol.kind_of(msg).value == vector["kind"]
    assert protocol.to_json(msg) == vector["json"]
    assert protocol.message_id(msg) == vector["json"]["message_id"]


@pytest.mark.parametrize("vector", VALID, ids=_ids(VALID))
def test_valid_vector_json_encodes_to_its_bytes(vector: dict[str, Any]) -> None:
    msg = protocol.from_json(vector["json"])
    expected = vector.get("canonical_hex", vector["hex"])
    assert protocol.encode(msg).hex() == expected


@pytest.mark.parametrize("vector", INVALID, ids=_ids(INVALID))
def test_invalid_vector_fails_with_its_code(vector: dict[str, Any]) -> None:
    with pytest.raises(protocol.RemoteProtocolError) as info:
        protocol.decode(bytes.fromhex(vector["hex"]))
    assert info.value.code == vector["error"]
    assert info.value.path == vector["path"]


@pytest.mark.parametrize("vector", VECTORS, ids=_ids(VECTORS))
def test_every_prefix_decodes_or_raises_only_protocol_error(vector: dict[str, Any]) -> None:
    """A message is one array whose header counts its fields, so no strict prefix of a valid
    message is a message; a prefix of an invalid one may be (e.g. before its trailing byte)."""
    data = bytes.fromhex(vector["hex"])
    for end in range(len(data)):
        try:
            protocol.decode(data[:end])
        except protocol.ProtocolError:
            continue
        assert not vector["valid"], f"the first {end} bytes decoded"


@pytest.mark.parametrize("vector", [v for v in VALID if "canonical_hex" not in v],
                         ids=_ids([v for v in VALID if "canonical_hex" not in v]))
def test_canonical_vector_minus_its_last_byte_is_truncated(vector: dict[str, Any]) -> None:
    with pytest.raises(protocol.ProtocolError) as info:
        protocol.decode(bytes.fromhex(vector["hex"])[:-1])
    assert info.value.code == "truncated"


# --- cross-check with plain msgpack: the vectors mean what the spec says, field by field --------

LAYOUT = {  # position -> (JSON key, scale) per docs/protocol.md; the header is checked separately
    "telemetry": [("lat_deg", 10**7), ("lon_deg", 10**7), ("alt_m", 10), ("heading_deg", 10),
                  ("speed_mps", 10), ("battery_pct", 1)],
    "violation": [("lat_deg", 10**7), ("lon_deg", 10**7), ("alt_m", 10), ("plate", None),
                  ("region", None), ("confidence", 100), ("code", None)],
    "status": [("online", None)],
}
WIRE_KINDS = {"telemetry": 0, "violation": 1, "status": 2}
SOURCES = {"unsynced": 0, "gps": 1, "ntp": 2}
FLAG_BITS = {"battery_low": 1, "link_backlog": 2, "outbox_full": 4, "disk_low": 8,
             "camera_fault": 16, "gps_no_fix": 32}


@pytest.mark.parametrize("vector", VALID, ids=_ids(VALID))
def test_valid_vector_read_with_plain_msgpack(vector: dict[str, Any]) -> None:
    fields = msgpack.unpackb(bytes.fromhex(vector["hex"]), raw=False)
    j = vector["json"]
    assert fields[0] >> 4 == 1
    assert fields[1] == WIRE_KINDS[vector["kind"]]
    assert fields[2] == j["drone_id"] and fields[3] == j["seq"]
    assert fields[4] * 1000 + (fields[5] >> 2) == j["time_ms"]
    assert fields[5] & 3 == SOURCES[j["time_source"]]
    for index, (key, scale) in enumerate(LAYOUT[vector["kind"]], start=6):
        expected = j[key] if scale is None else round(j[key] * scale)
        assert fields[index] == expected, key
    if vector["kind"] == "telemetry":
        assert fields[12] == sum(FLAG_BITS[name] for name in j["flags"])
    if vector["kind"] == "violation":
        assert isinstance(fields[13], bytes) and fields[13].hex() == j["evidence_id"]
        details = [*fields[14:17], None, None, None][:3]
        vehicle = j["vehicle"] or {}
        assert details == [vehicle.get("make"), vehicle.get("colour"), vehicle.get("body")]


@pytest.mark.parametrize("vector", VALID, ids=_ids(VALID))
def test_our_encoding_is_what_plain_msgpack_writes(vector: dict[str, Any]) -> None:
    """Canonical bytes are msgpack's own shortest encoding of the array, so any conforming
    msgpack library produces them from the same values."""
    ours = bytes.fromhex(vector.get("canonical_hex", vector["hex"]))
    assert msgpack.packb(msgpack.unpackb(ours), use_bin_type=True) == ours
