"""Regenerate docs/protocol-vectors.json, the wire format's golden test vectors.

    .venv/bin/python tools/make_vectors.py            # rewrite the file
    .venv/bin/python tools/make_vectors.py --check    # exit 1 if the committed file differs

A vector is an MQTT topic and a payload: the topic carries the drone id and the kind, the payload
the rest. Valid vectors are made with `protocol.encode`; invalid ones are built with plain msgpack
by changing one thing in a valid payload (or its topic), so each shows exactly one fault. The tests
read the committed file and never regenerate it: a change to the format shows up as a diff to
review.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import evidence_vectors  # tools/evidence_vectors.py: the 1.1 evidence frames
import msgpack
import signature_vectors  # tools/signature_vectors.py: 1.1 signed violations (RFC 8032 key)

import protocol
from protocol import Header, Kind, Position, Status, StatusFlags, Telemetry, TimeSource, Vehicle
from protocol import Violation as Vio

OUT = Path(__file__).resolve().parent.parent / "docs" / "protocol-vectors.json"

T0 = 1_748_779_200_120  # 2025-06-01T12:00:00.120Z, a multiple of the 40 ms tick
T_MIN = 1_577_836_800_000  # 2020-01-01T00:00:00.000Z
T_MAX = 4_102_444_799_960  # 2099-12-31T23:59:59.960Z, the last tick of the window
EVIDENCE = "0123456789abcdef"
HEADER = Header("nyc-0007", 123456, T0, TimeSource.GPS)
TIMES_SQUARE = Position(40.7579747, -73.9855426, 120.0)
ALL_FLAGS = StatusFlags(127)  # every flag, 1.1's AUTOPILOT_LOST (in flags_ext) included
FLAGS_1_0 = StatusFlags(63)  # every flag `flags` itself carries

TELEMETRY = Telemetry(HEADER, TIMES_SQUARE, 271.5, 8.3, 87, StatusFlags.NONE)
VIOLATION = Vio(HEADER, TIMES_SQUARE, "ABC1234", "NY", 0.93, 21, EVIDENCE)
STATUS = Status(HEADER, True)
SIGNED = signature_vectors.signed(VIOLATION)[0]

# Payload positions per docs/protocol.md, written out here rather than taken from the codec, so
# that a vector built "with seq replaced" is the spec's seq whatever the codec believes.
_HEAD = ("schema", "seq", "time_s", "time_sub")
_POSITION = ("lat_deg", "lon_deg", "alt_m")
PAYLOAD: dict[Kind, tuple[str, ...]] = {
    Kind.TELEMETRY: (*_HEAD, *_POSITION, "heading_deg", "speed_mps", "battery_pct", "flags",
                     "flags_ext"),
    Kind.VIOLATION: (*_HEAD, *_POSITION, "plate", "region", "confidence", "code", "evidence_id",
                     "vehicle.make", "vehicle.colour", "vehicle.body", "key_id", "signature"),
    Kind.STATUS: (*_HEAD, "online"),
}


def valid() -> list[tuple[str, protocol.Message]]:
    low = Header("a", 0, T_MIN, TimeSource.UNSYNCED)
    high = Header("Z" * 16 + "9_-" * 5 + "x", 2**32 - 1, T_MAX, TimeSource.NTP)
    return [
        ("telemetry typical", TELEMETRY),
        ("telemetry all minimums", Telemetry(low, Position(-90, -180, -1000), 0, 0, 0)),
        ("telemetry all maximums", Telemetry(high, Position(90, 180, 10000), 359.9, 200, 100,
                                             ALL_FLAGS)),
        ("telemetry at the realistic envelope's upper end",
         Telemetry(Header("nyc-0007", 2**32 - 1, T0, TimeSource.GPS),
                   Position(-89.9999999, -179.9999999, 255), 359.9, 25.5, 100, FLAGS_1_0)),
        ("telemetry alt -32 m, one byte",
         Telemetry(HEADER, Position(40.7579747, -73.9855426, -32), 0, 0, 50)),
        ("telemetry alt 127 m, one byte",
         Telemetry(HEADER, Position(40.7579747, -73.9855426, 127), 0, 0, 50)),
        ("telemetry battery low and no gps fix, unsynced clock",
         Telemetry(Header("nyc-0007", 7, T0, TimeSource.UNSYNCED), TIMES_SQUARE, 0.1, 0, 19,
                   StatusFlags.BATTERY_LOW | StatusFlags.GPS_NO_FIX)),
        ("telemetry autopilot link lost (1.1 flags_ext) and no gps fix",
         Telemetry(HEADER, TIMES_SQUARE, 0, 0, 64,
                   StatusFlags.AUTOPILOT_LOST | StatusFlags.GPS_NO_FIX)),
        ("violation qualified (21 street cleaning)", VIOLATION),
        ("violation unqualified (code nil)", _vio(code=None)),
        ("violation with vehicle details", _vio(vehicle=Vehicle("TOYOT", "WH", "SUBN"))),
        ("violation with colour only", _vio(code=46, vehicle=Vehicle(colour="BLK"))),
        ("violation minimums (1-char plate, confidence 0, code 1)",
         Vio(low, Position(-90, -180, -1000), "A", "AA", 0.0, 1, "0" * 16)),
        ("violation maximums (8-char plate, confidence 1, code 99, 8-char details)",
         Vio(high, Position(90, 180, 10000), "ZZZZ9999", "ZZ", 1.0, 99, "f" * 16,
             Vehicle("ME/BE&.9", "WHITE", "4DSD"))),
        ("violation fire hydrant (40), NTP clock",
         _vio(code=40, header=Header("bk-12", 99, T0, TimeSource.NTP))),
        ("violation signed (1.1, key 0, no vehicle details)", SIGNED),
        ("violation signed with vehicle details (1.1, key 3)",
         signature_vectors.signed(_vio(vehicle=Vehicle("TOYOT", "WH", "SUBN")), 3)[0]),
        ("status online", STATUS),
        ("status offline (last will)", Status(Header("nyc-0007", 123457, T0, TimeSource.GPS),
                                             False)),
    ]


def _vio(**changes: Any) -> Vio:
    fields = {"header": HEADER, "position": TIMES_SQUARE, "plate": "ABC1234", "region": "NY",
              "confidence": 0.93, "code": 21, "evidence_id": EVIDENCE, "vehicle": None}
    return Vio(**(fields | changes))


def topic_of(msg: protocol.Message) -> str:
    return protocol.topic(msg.header.drone_id, protocol.kind_of(msg))


def payload(msg: protocol.Message) -> list[Any]:
    return msgpack.unpackb(protocol.encode(msg))


def with_field(msg: protocol.Message, name: str, value: Any) -> bytes:
    """The payload of `msg` with field `name` (a name of PAYLOAD) replaced by `value`."""
    fields = payload(msg)
    fields[PAYLOAD[protocol.kind_of(msg)].index(name)] = value
    return msgpack.packb(fields)


def non_canonical() -> list[tuple[str, bytes, protocol.Message]]:
    """Valid payloads our encoder would write differently: decode must accept them."""
    newer_t = [0x12, *payload(TELEMETRY)[1:], None, "a field of 1.2"]
    newer_v = [0x13, *payload(VIOLATION)[1:], None, None, None, None, None, 42, [1, 2]]
    nils = [*payload(VIOLATION), None, None, None]
    # [16, 123456, 1748779200, 13, true] with uint8/uint64/int8 where a shorter form exists:
    # msgpack allows it, and so must every decoder.
    long_ints = bytes.fromhex("95" "cc10" "cf000000000001e240" "cf00000000683c40c0" "d00d" "c3")
    return [
        ("telemetry from newer minor 1.2, nil flags_ext then an appended field",
         msgpack.packb(newer_t), TELEMETRY),
        ("telemetry 1.0 (no flags_ext)", msgpack.packb([0x10, *payload(TELEMETRY)[1:]]),
         TELEMETRY),
        ("violation from newer minor 1.3, nil details and signature then appended fields",
         msgpack.packb(newer_v), VIOLATION),
        ("violation with explicit nil vehicle details", msgpack.packb(nils), VIOLATION),
        ("status with small ints in long encodings", long_ints, STATUS),
        ("telemetry seq 5 as uint32", _long_seq(TELEMETRY), _seq(TELEMETRY, 5)),
        ("violation with the plate in a str8 header (non-minimal)", _str8_plate(VIOLATION),
         VIOLATION),
        ("telemetry in an array16 header (non-minimal)", _array16(TELEMETRY), TELEMETRY),
    ]


def _str8_plate(msg: Vio) -> bytes:
    """The payload with the plate's fixstr header written as str8: longer, still valid msgpack."""
    fields = payload(msg)
    plate = fields[PAYLOAD[Kind.VIOLATION].index("plate")].encode()
    parts = [msgpack.packb(f) for f in fields]
    parts[PAYLOAD[Kind.VIOLATION].index("plate")] = bytes([0xD9, len(plate)]) + plate
    return bytes([0x90 | len(fields)]) + b"".join(parts)


def _with_raw_last(msg: protocol.Message, raw: bytes) -> bytes:
    """The payload with its last field replaced by the msgpack bytes `raw`."""
    fields = payload(msg)
    return bytes([0x90 | len(fields)]) + b"".join(msgpack.packb(f) for f in fields[:-1]) + raw


def _array16(msg: protocol.Message) -> bytes:
    """The payload with its fixarray header written as array16."""
    fields = payload(msg)
    return b"\xdc" + len(fields).to_bytes(2, "big") + b"".join(msgpack.packb(f) for f in fields)


def _seq(msg: Telemetry, seq: int) -> Telemetry:
    h = msg.header
    return Telemetry(Header(h.drone_id, seq, h.time_ms, h.time_source), msg.position,
                     msg.heading_deg, msg.speed_mps, msg.battery_pct, msg.flags)


def _long_seq(msg: Telemetry) -> bytes:
    fields = payload(_seq(msg, 5))
    tail = msgpack.packb(fields[2:])[1:]  # drop the array header of the fields after seq
    return bytes([0x90 | len(fields), fields[0]]) + b"\xce\x00\x00\x00\x05" + tail


Invalid = tuple[str, str, bytes, str, str | None]  # name, topic, payload, error code, path


def invalid_payloads() -> list[Invalid]:
    tel, vio, sta = protocol.encode(TELEMETRY), protocol.encode(VIOLATION), protocol.encode(STATUS)
    t, v, s = topic_of(TELEMETRY), topic_of(VIOLATION), topic_of(STATUS)
    T, V, S = TELEMETRY, VIOLATION, STATUS
    return [
        ("empty payload", t, b"", "truncated", None),
        ("telemetry truncated by one byte", t, tel[:-1], "truncated", "$.flags"),
        ("violation truncated inside the evidence id", v, vio[:-3], "truncated", "$.evidence_id"),
        ("telemetry with a trailing byte", t, tel + b"\x00", "trailing_bytes", None),
        ("oversized: 513 bytes", t, b"\x00" * 513, "oversized", None),
        ("array header announcing 2**32-1 fields", t, b"\xdd\xff\xff\xff\xff", "oversized", "$"),
        ("str of 256 bytes (over the 255 limit)", v, with_field(V, "plate", "A" * 256),
         "oversized", "$.plate"),
        ("a map, not an array", t, msgpack.packb({"lat": 1}), "bad_type", "$"),
        ("reserved byte 0xc1", t, b"\xc1", "malformed", None),
        ("invalid UTF-8 in the plate", v, vio.replace(b"\xa7ABC1234", b"\xa7ABC12\xff\xfe"),
         "malformed", "$.plate"),
        ("empty array", t, b"\x90", "missing_field", "$.schema"),
        ("unknown major version 2.0", t, with_field(T, "schema", 0x20), "unknown_version",
         "$.schema"),
        ("unknown major version 0.1", t, with_field(T, "schema", 0x01), "unknown_version",
         "$.schema"),
        ("version as a string", t, with_field(T, "schema", "1.0"), "bad_type", "$.schema"),
        ("major 2.0 with a str beyond 1.x's limits: the version is judged first", t,
         msgpack.packb([0x20, *payload(T)[1:4], "x" * 300]), "unknown_version", "$.schema"),
        ("major 2.0 over 512 bytes: the version is judged first", t,
         msgpack.packb([0x20, *payload(T)[1:], "x" * 600]), "unknown_version", "$.schema"),
        ("a map with a map as key (valid msgpack, no such field type)", t,
         _with_raw_last(T, b"\x81\x81\x01\x02\x03"), "bad_type", "$.flags"),
        ("status with only the schema", s, b"\x91\x10", "missing_field", "$.seq"),
        ("telemetry missing flags", t, msgpack.packb(payload(T)[:-1]), "missing_field",
         "$.flags"),
        ("telemetry 1.0 with an extra field (flags_ext is 1.1's)", t,
         msgpack.packb([0x10, *payload(T)[1:], 1]), "extra_field", "$[11]"),
        ("telemetry 1.1 with an extra field", t, msgpack.packb([*payload(T), 0, 0]),
         "extra_field", "$[12]"),
        ("flags_ext 2 (undefined bit 7)", t, msgpack.packb([*payload(T), 2]), "out_of_range",
         "$.flags_ext"),
        ("flags_ext as a bool", t, msgpack.packb([*payload(T), True]), "bad_type", "$.flags_ext"),
        ("telemetry payload on the violation topic", v, tel, "missing_field", "$.evidence_id"),
        ("violation payload on the telemetry topic", t, vio, "bad_type", "$.heading_deg"),
        ("status payload on the telemetry topic", t, sta, "missing_field", "$.lon_deg"),
        ("telemetry payload on the status topic", s, tel, "extra_field", "$[5]"),
        ("seq -1", t, with_field(T, "seq", -1), "out_of_range", "$.seq"),
        ("seq 2**32", t, with_field(T, "seq", 2**32), "out_of_range", "$.seq"),
        ("seq as a string", t, with_field(T, "seq", "1"), "bad_type", "$.seq"),
        ("time one second before 2020-01-01", t, with_field(T, "time_s", 1_577_836_799),
         "invalid_time", "$.time_ms"),
        ("time 2100-01-01T00:00:00Z", t, with_field(T, "time_s", 4_102_444_800), "invalid_time",
         "$.time_ms"),
        ("time_sub -1", t, with_field(T, "time_sub", -1), "out_of_range", "$.time_ms"),
        ("time_sub 100 (tick 25)", t, with_field(T, "time_sub", 100), "out_of_range",
         "$.time_ms"),
        ("time_sub 493 (milliseconds, not ticks)", t, with_field(T, "time_sub", 123 << 2 | 1),
         "out_of_range", "$.time_ms"),
        ("time_sub 99: tick 24, time source 3", t, with_field(T, "time_sub", 24 << 2 | 3),
         "out_of_range", "$.time_source"),
        ("time_sub 3: tick 0, time source 3", t, with_field(T, "time_sub", 3), "out_of_range",
         "$.time_source"),
        ("time_sub as a float", t, with_field(T, "time_sub", 13.0), "bad_type", "$.time_ms"),
        ("lat as a float", t, with_field(T, "lat_deg", 40.75), "bad_type", "$.lat_deg"),
        ("lat 90.0000001", t, with_field(T, "lat_deg", 900_000_001), "out_of_range", "$.lat_deg"),
        ("lat -90.0000001", t, with_field(T, "lat_deg", -900_000_001), "out_of_range",
         "$.lat_deg"),
        ("lon 180.0000001", t, with_field(T, "lon_deg", 1_800_000_001), "out_of_range",
         "$.lon_deg"),
        ("lon -180.0000001", t, with_field(T, "lon_deg", -1_800_000_001), "out_of_range",
         "$.lon_deg"),
        ("alt -1001 m", t, with_field(T, "alt_m", -1001), "out_of_range", "$.alt_m"),
        ("alt 10001 m", t, with_field(T, "alt_m", 10_001), "out_of_range", "$.alt_m"),
        ("alt as a float", t, with_field(T, "alt_m", 120.5), "bad_type", "$.alt_m"),
        ("heading 360.0", t, with_field(T, "heading_deg", 3600), "out_of_range", "$.heading_deg"),
        ("heading -0.1", t, with_field(T, "heading_deg", -1), "out_of_range", "$.heading_deg"),
        ("speed 200.1 m/s", t, with_field(T, "speed_mps", 2001), "out_of_range", "$.speed_mps"),
        ("battery 101 %", t, with_field(T, "battery_pct", 101), "out_of_range", "$.battery_pct"),
        ("battery true", t, with_field(T, "battery_pct", True), "bad_type", "$.battery_pct"),
        ("flags with bit 64 (1.1 sends it in flags_ext)", t, with_field(T, "flags", 64),
         "out_of_range", "$.flags"),
        ("plate lowercase", v, with_field(V, "plate", "abc1234"), "bad_plate", "$.plate"),
        ("plate empty", v, with_field(V, "plate", ""), "bad_plate", "$.plate"),
        ("plate of 9 chars", v, with_field(V, "plate", "ABCD12345"), "bad_plate", "$.plate"),
        ("plate with a space", v, with_field(V, "plate", "ABC 123"), "bad_plate", "$.plate"),
        ("region of 1 char", v, with_field(V, "region", "N"), "bad_text", "$.region"),
        ("region lowercase", v, with_field(V, "region", "ny"), "bad_text", "$.region"),
        ("confidence 101 %", v, with_field(V, "confidence", 101), "out_of_range", "$.confidence"),
        ("confidence -1 %", v, with_field(V, "confidence", -1), "out_of_range", "$.confidence"),
        ("code 0", v, with_field(V, "code", 0), "unknown_code", "$.code"),
        ("code 94 (unassigned)", v, with_field(V, "code", 94), "unknown_code", "$.code"),
        ("code 100", v, with_field(V, "code", 100), "unknown_code", "$.code"),
        ("code as a string", v, with_field(V, "code", "21"), "bad_type", "$.code"),
        ("evidence id of 7 bytes", v, with_field(V, "evidence_id", b"\x01" * 7), "bad_text",
         "$.evidence_id"),
        ("evidence id as hex text", v, with_field(V, "evidence_id", EVIDENCE), "bad_type",
         "$.evidence_id"),
        ("vehicle make lowercase", v, msgpack.packb([*payload(V), "toyot"]), "bad_text",
         "$.vehicle.make"),
        ("vehicle body of 9 chars", v, msgpack.packb([*payload(V), None, None, "ABCDEFGHI"]),
         "bad_text", "$.vehicle.body"),
        ("status online as 1", s, with_field(S, "online", 1), "bad_type", "$.online"),
        ("key_id without a signature", v, msgpack.packb([*payload(V), None, None, None, 0]),
         "missing_field", "$.signature"),
        ("signature without a key_id", v,
         msgpack.packb([*payload(V), None, None, None, None, bytes(64)]), "missing_field",
         "$.key_id"),
        ("signature of 63 bytes", v, with_field(SIGNED, "signature", bytes(63)), "bad_type",
         "$.signature"),
        ("key_id 65536", v, with_field(SIGNED, "key_id", 65536), "out_of_range", "$.key_id"),
        ("a 1.0 violation carrying a key_id", v,
         msgpack.packb([0x10, *payload(SIGNED)[1:]]), "extra_field", "$[15]"),
    ]


def invalid_topics() -> list[Invalid]:
    """A valid telemetry payload on a topic that is not a drone's: always `bad_topic`."""
    tel = protocol.encode(TELEMETRY)
    drones = "presacop/v1/drones"
    return [(f"topic {why}", name, tel, "bad_topic", path) for why, name, path in [
        ("empty", "", None),
        ("without a drone id level", f"{drones}/telemetry", None),
        ("with an empty drone id", f"{drones}//telemetry", "$.drone_id"),
        ("with a drone id of 33 chars", f"{drones}/{'a' * 33}/telemetry", "$.drone_id"),
        ("with a wildcard as drone id", f"{drones}/+/telemetry", "$.drone_id"),
        ("with a dot in the drone id", f"{drones}/nyc.0007/telemetry", "$.drone_id"),
        ("with a non-ASCII drone id", f"{drones}/nyc-\u00e4/telemetry", "$.drone_id"),
        ("with an unknown kind", f"{drones}/nyc-0007/alerts", "$.kind"),
        ("with the kind capitalised", f"{drones}/nyc-0007/Telemetry", "$.kind"),
        ("of major version 2", "presacop/v2/drones/nyc-0007/telemetry", None),
        ("with an extra level", f"{drones}/nyc-0007/telemetry/extra", None),
        ("with a trailing slash", f"{drones}/nyc-0007/telemetry/", None),
        ("with a shared-subscription prefix", f"$share/gw/{drones}/nyc-0007/telemetry", None),
    ]]


def build() -> list[dict[str, Any]]:
    vectors: list[dict[str, Any]] = []
    for name, msg in valid():
        vectors.append(_valid(name, topic_of(msg), protocol.encode(msg), msg, canonical=True))
    for name, data, msg in non_canonical():
        vectors.append(_valid(name, topic_of(msg), data, msg, canonical=False))
    for name, topic, data, code, path in [*invalid_payloads(), *invalid_topics()]:
        _expect_error(name, topic, data, code, path)
        kind = None if code == "bad_topic" else protocol.parse_topic(topic)[1].value
        vectors.append({"name": name, "kind": kind, "topic": topic, "hex": data.hex(),
                        "json": None, "valid": False, "code": code, "path": path})
    return vectors


def _valid(name: str, topic: str, data: bytes, msg: protocol.Message,
           canonical: bool) -> dict[str, Any]:
    decoded = protocol.decode(data, topic)
    if decoded != msg:
        raise SystemExit(f"vector {name!r}: decodes to {decoded!r}, expected {msg!r}")
    vector: dict[str, Any] = {"name": name, "kind": protocol.kind_of(msg).value, "topic": topic,
                              "hex": data.hex(), "json": protocol.to_json(msg), "valid": True}
    if not canonical:
        vector["canonical_hex"] = protocol.encode(msg).hex()
    return vector


def _expect_error(name: str, topic: str, data: bytes, code: str, path: str | None) -> None:
    try:
        protocol.decode(data, topic)
    except protocol.ProtocolError as exc:
        if (exc.code, exc.path) != (code, path):
            raise SystemExit(f"vector {name!r}: got {exc.code} at {exc.path}, "
                             f"expected {code} at {path}") from None
        return
    raise SystemExit(f"vector {name!r}: decoded, expected {code}")


def render() -> str:
    doc = {
        "about": "Golden vectors for the PresaCop wire format (docs/protocol.md). topic: the MQTT "
                 "topic, which carries the drone id and the kind; hex: the MQTT payload. valid "
                 "vectors: decode(hex, topic) has the canonical JSON `json`; encoding that "
                 "message gives `canonical_hex` if present, else `hex`, to publish on `topic`. "
                 "invalid vectors: decode must fail with error code `code` (and, for this "
                 "implementation, `path`, null when the error names no field).",
        "schema": protocol.SCHEMA_VERSION,
        "vectors": build(),
        "evidence_vectors": evidence_vectors.build(),
        "signature_vectors": signature_vectors.build(VIOLATION, evidence_vectors.MANIFEST),
    }
    return json.dumps(doc, indent=1, ensure_ascii=True) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare instead of writing")
    args = parser.parse_args(argv)
    text = render()
    if args.check:
        same = OUT.exists() and OUT.read_text() == text
        print("up to date" if same else f"{OUT} differs from the generator")
        return 0 if same else 1
    OUT.write_text(text)
    print(f"wrote {OUT}: {len(json.loads(text)['vectors'])} vectors")
    return 0


if __name__ == "__main__":
    sys.exit(main())
