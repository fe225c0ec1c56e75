"""The golden vectors of docs/protocol-vectors.json, run both ways and byte by byte.

The file is read as committed (tools/make_vectors.py writes it); a format change therefore shows up
here as a failing vector, and in review as a diff of the file.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import msgpack
import pytest

import protocol

ROOT = Path(__file__).resolve().parents[2]
VECTORS_FILE = ROOT / "docs" / "protocol-vectors.json"
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
    for vector in VECTORS:
        keys = {"name", "kind", "topic", "hex", "json", "valid"}
        keys |= {"canonical_hex"} if "canonical_hex" in vector else set()
        keys |= set() if vector["valid"] else {"code", "path"}
        assert vector.keys() == keys, vector["name"]
    # unknown_kind comes only from JSON now (a topic's unknown kind is bad_topic); inconsistent
    # only from JSON's derived keys.
    decode_codes = set(protocol.ERROR_CODES) - {"unknown_kind", "inconsistent"}
    assert {v["code"] for v in INVALID} == decode_codes


@pytest.mark.parametrize("vector", VALID, ids=_ids(VALID))
def test_valid_vector_decodes_to_its_json(vector: dict[str, Any]) -> None:
    msg = protocol.decode(bytes.fromhex(vector["hex"]), vector["topic"])
    assert protocol.kind_of(msg).value == vector["kind"]
    assert protocol.to_json(msg) == vector["json"]
    assert protocol.message_id(msg) == vector["json"]["message_id"]


@pytest.mark.parametrize("vector", VALID, ids=_ids(VALID))
def test_valid_vector_json_encodes_to_its_bytes_and_topic(vector: dict[str, Any]) -> None:
    msg = protocol.from_json(vector["json"])
    expected = vector.get("canonical_hex", vector["hex"])
    assert protocol.encode(msg).hex() == expected
    assert protocol.topic(msg.header.drone_id, protocol.kind_of(msg)) == vector["topic"]


@pytest.mark.parametrize("vector", INVALID, ids=_ids(INVALID))
def test_invalid_vector_fails_with_its_code(vector: dict[str, Any]) -> None:
    expected = protocol.TopicError if vector["code"] == "bad_topic" else \
        protocol.RemoteProtocolError
    with pytest.raises(expected) as info:
        protocol.decode(bytes.fromhex(vector["hex"]), vector["topic"])
    assert info.value.code == vector["code"]
    assert info.value.path == vector["path"]
    if vector["kind"] is not None:
        assert protocol.parse_topic(vector["topic"])[1].value == vector["kind"]


@pytest.mark.parametrize("vector", VECTORS, ids=_ids(VECTORS))
def test_every_prefix_decodes_or_raises_only_protocol_error(vector: dict[str, Any]) -> None:
    """A message is one array whose header counts its fields, so no strict prefix of a valid
    message is a message; a prefix of an invalid one may be (e.g. before its trailing byte)."""
    data = bytes.fromhex(vector["hex"])
    for end in range(len(data)):
        try:
            protocol.decode(data[:end], vector["topic"])
        except protocol.ProtocolError:
            continue
        assert not vector["valid"], f"the first {end} bytes decoded"


@pytest.mark.parametrize("vector", [v for v in VALID if "canonical_hex" not in v],
                         ids=_ids([v for v in VALID if "canonical_hex" not in v]))
def test_canonical_vector_minus_its_last_byte_is_truncated(vector: dict[str, Any]) -> None:
    with pytest.raises(protocol.ProtocolError) as info:
        protocol.decode(bytes.fromhex(vector["hex"])[:-1], vector["topic"])
    assert info.value.code == "truncated"


def test_the_generator_reproduces_the_committed_file() -> None:
    proc = subprocess.run([sys.executable, str(ROOT / "tools" / "make_vectors.py"), "--check"],
                          capture_output=True, text=True, cwd=ROOT, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr


# --- cross-check with plain msgpack: the vectors mean what the spec says, field by field --------

LAYOUT = {  # payload position 4.. -> (JSON key, scale) per docs/protocol.md; 0-3 checked apart
    "telemetry": [("lat_deg", 10**7), ("lon_deg", 10**7), ("alt_m", 1), ("heading_deg", 10),
                  ("speed_mps", 10), ("battery_pct", 1)],
    "violation": [("lat_deg", 10**7), ("lon_deg", 10**7), ("alt_m", 1), ("plate", None),
                  ("region", None), ("confidence", 100), ("code", None)],
    "status": [("online", None)],
}
SOURCES = {"unsynced": 0, "gps": 1, "ntp": 2}
FLAG_BITS = {"battery_low": 1, "link_backlog": 2, "outbox_full": 4, "disk_low": 8,
             "camera_fault": 16, "gps_no_fix": 32, "autopilot_lost": 64}


@pytest.mark.parametrize("vector", VALID, ids=_ids(VALID))
def test_valid_vector_read_with_plain_msgpack(vector: dict[str, Any]) -> None:
    fields = msgpack.unpackb(bytes.fromhex(vector["hex"]), raw=False)
    j = vector["json"]
    assert vector["topic"] == f"presacop/v1/drones/{j['drone_id']}/{j['kind']}"
    assert fields[0] >> 4 == 1
    assert fields[1] == j["seq"]
    assert fields[2] * 1000 + (fields[3] >> 2) * 40 == j["time_ms"]
    assert fields[3] & 3 == SOURCES[j["time_source"]]
    for index, (key, scale) in enumerate(LAYOUT[vector["kind"]], start=4):
        expected = j[key] if scale is None else round(j[key] * scale)
        assert fields[index] == expected, key
    if vector["kind"] == "telemetry":
        ext = fields[11] if len(fields) > 11 and fields[0] & 0x0F >= 1 else None  # 1.1 flags_ext
        assert fields[10] | (ext or 0) << 6 == sum(FLAG_BITS[name] for name in j["flags"])
    if vector["kind"] == "violation":
        assert isinstance(fields[11], bytes) and fields[11].hex() == j["evidence_id"]
        details = [*fields[12:15], None, None, None][:3]
        vehicle = j["vehicle"] or {}
        assert details == [vehicle.get("make"), vehicle.get("colour"), vehicle.get("body")]


@pytest.mark.parametrize("vector", VALID, ids=_ids(VALID))
def test_our_encoding_is_what_plain_msgpack_writes(vector: dict[str, Any]) -> None:
    """Canonical bytes are msgpack's own shortest encoding of the array, so any conforming
    msgpack library produces them from the same values."""
    ours = bytes.fromhex(vector.get("canonical_hex", vector["hex"]))
    assert msgpack.packb(msgpack.unpackb(ours), use_bin_type=True) == ours
