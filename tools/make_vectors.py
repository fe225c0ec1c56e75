"""Regenerate docs/protocol-vectors.json, the wire format's golden test vectors.

    .venv/bin/python tools/make_vectors.py            # rewrite the file
    .venv/bin/python tools/make_vectors.py --check    # exit 1 if the committed file differs

Valid vectors are made with `protocol.encode`; invalid ones are built with plain msgpack by
changing one thing in a valid wire array, so each shows exactly one fault. The tests read the
committed file and never regenerate it: a change to the format shows up as a diff to review.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgpack

import protocol
from protocol import Header, Kind, Position, Status, StatusFlags, Telemetry, TimeSource, Vehicle
from protocol import Violation as Vio

OUT = Path(__file__).resolve().parent.parent / "docs" / "protocol-vectors.json"

T0 = 1_748_779_200_123  # 2025-06-01T12:00:00.123Z
T_MIN = 1_577_836_800_000  # 2020-01-01T00:00:00.000Z
T_MAX = 4_102_444_799_999  # 2099-12-31T23:59:59.999Z
EVIDENCE = "0123456789abcdef"
HEADER = Header("nyc-0007", 123456, T0, TimeSource.GPS)
TIMES_SQUARE = Position(40.7579747, -73.9855426, 120.0)

TELEMETRY = Telemetry(HEADER, TIMES_SQUARE, 271.5, 8.3, 87, StatusFlags.NONE)
VIOLATION = Vio(HEADER, TIMES_SQUARE, "ABC1234", "NY", 0.93, 21, EVIDENCE)
STATUS = Status(HEADER, True)


def valid() -> list[tuple[str, protocol.Message]]:
    low = Header("a", 0, T_MIN, TimeSource.UNSYNCED)
    high = Header("Z" * 16 + "9_-" * 5 + "x", 2**32 - 1, T_MAX, TimeSource.NTP)
    return [
        ("telemetry typical", TELEMETRY),
        ("telemetry all minimums", Telemetry(low, Position(-90, -180, -1000), 0, 0, 0)),
        ("telemetry all maximums", Telemetry(high, Position(90, 180, 10000), 359.9, 200, 100,
                                             StatusFlags(63))),
        ("telemetry battery low and no gps fix, unsynced clock",
         Telemetry(Header("nyc-0007", 7, T0, TimeSource.UNSYNCED), TIMES_SQUARE, 0.1, 0, 19,
                   StatusFlags.BATTERY_LOW | StatusFlags.GPS_NO_FIX)),
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
        ("status online", STATUS),
        ("status offline (last will)", Status(Header("nyc-0007", 123457, T0, TimeSource.GPS),
                                             False)),
    ]


def _vio(**changes: Any) -> Vio:
    fields = {"header": HEADER, "position": TIMES_SQUARE, "plate": "ABC1234", "region": "NY",
              "confidence": 0.93, "code": 21, "evidence_id": EVIDENCE, "vehicle": None}
    return Vio(**(fields | changes))


def wire(msg: protocol.Message) -> list[Any]:
    return msgpack.unpackb(protocol.encode(msg))


def with_field(msg: protocol.Message, index: int, value: Any) -> bytes:
    fields = wire(msg)
    fields[index] = value
    return msgpack.packb(fields)


def non_canonical() -> list[tuple[str, bytes, protocol.Message]]:
    """Valid payloads our encoder would write differently: decode must accept them."""
    newer_t = [0x11, *wire(TELEMETRY)[1:], "a field of 1.1"]
    newer_v = [0x13, *wire(VIOLATION)[1:], None, None, None, 42, [1, 2]]
    nils = [*wire(VIOLATION), None, None, None]
    # [16, 2, "nyc-0007", 123456, 1748779200, 493, true] with int8/uint8/uint64 where a
    # shorter form exists: msgpack allows it, and so must every decoder.
    long_ints = bytes.fromhex("97" "cc10" "d002" "a86e79632d30303037" "cf000000000001e240"
                              "ce683c40c0" "cf00000000000001ed" "c3")
    return [
        ("telemetry from newer minor 1.1 with an appended field", msgpack.packb(newer_t),
         TELEMETRY),
        ("violation from newer minor 1.3, nil details then appended fields",
         msgpack.packb(newer_v), VIOLATION),
        ("violation with explicit nil vehicle details", msgpack.packb(nils), VIOLATION),
        ("status with small ints in long encodings", long_ints, STATUS),
        ("telemetry seq 5 as uint32", _long_seq(TELEMETRY), _seq(TELEMETRY, 5)),
    ]


def _seq(msg: Telemetry, seq: int) -> Telemetry:
    h = msg.header
    return Telemetry(Header(h.drone_id, seq, h.time_ms, h.time_source), msg.position,
                     msg.heading_deg, msg.speed_mps, msg.battery_pct, msg.flags)


def _long_seq(msg: Telemetry) -> bytes:
    fields = wire(_seq(msg, 5))
    head = msgpack.packb(fields[:3])[1:]  # drop the 3-element array header
    tail = msgpack.packb(fields[4:])[1:]
    return bytes([0x90 | len(fields)]) + head + b"\xce\x00\x00\x00\x05" + tail


def invalid() -> list[tuple[str, str | None, bytes, str, str | None]]:
    """(name, kind, payload, error code, error path)."""
    t, v, s = Kind.TELEMETRY.value, Kind.VIOLATION.value, Kind.STATUS.value
    tel, vio = protocol.encode(TELEMETRY), protocol.encode(VIOLATION)
    T, V, S = TELEMETRY, VIOLATION, STATUS
    cases: list[tuple[str, str | None, bytes, str, str | None]] = [
        ("empty payload", None, b"", "truncated", None),
        ("telemetry truncated by one byte", t, tel[:-1], "truncated", "$.flags"),
        ("violation truncated inside the evidence id", v, vio[:-3], "truncated", "$.evidence_id"),
        ("telemetry with a trailing byte", t, tel + b"\x00", "trailing_bytes", None),
        ("oversized: 513 bytes", None, b"\x00" * 513, "oversized", None),
        ("array header announcing 2**32-1 fields", None, b"\xdd\xff\xff\xff\xff", "oversized",
         "$"),
        ("str of 256 bytes (over the 255 limit)", v, with_field(V, 9, "A" * 256), "oversized",
         "$.plate"),
        ("a map, not an array", None, msgpack.packb({"lat": 1}), "bad_type", "$"),
        ("reserved byte 0xc1", None, b"\xc1", "malformed", None),
        ("invalid UTF-8 in drone id", t, tel.replace(b"\xa8nyc-0007", b"\xa8nyc-00\xff\xfe"),
         "malformed", "$.drone_id"),
        ("unknown major version 2.0", t, with_field(T, 0, 0x20), "unknown_version", "$.schema"),
        ("unknown major version 0.1", t, with_field(T, 0, 0x01), "unknown_version", "$.schema"),
        ("version as a string", t, with_field(T, 0, "1.0"), "bad_type", "$.schema"),
        ("unknown kind 3", None, with_field(T, 1, 3), "unknown_kind", "$.kind"),
        ("telemetry missing flags", t, msgpack.packb(wire(T)[:-1]), "missing_field", "$.flags"),
        ("telemetry 1.0 with an extra field", t, msgpack.packb([*wire(T), 0]), "extra_field",
         "$[13]"),
        ("drone id empty", t, with_field(T, 2, ""), "bad_text", "$.drone_id"),
        ("drone id of 33 chars", t, with_field(T, 2, "a" * 33), "bad_text", "$.drone_id"),
        ("drone id with a topic wildcard", t, with_field(T, 2, "nyc+7"), "bad_text",
         "$.drone_id"),
        ("drone id as an integer", t, with_field(T, 2, 7), "bad_type", "$.drone_id"),
        ("seq -1", t, with_field(T, 3, -1), "out_of_range", "$.seq"),
        ("seq 2**32", t, with_field(T, 3, 2**32), "out_of_range", "$.seq"),
        ("seq as a string", t, with_field(T, 3, "1"), "bad_type", "$.seq"),
        ("time one second before 2020-01-01", t, with_field(T, 4, 1_577_836_799),
         "invalid_time", "$.time_ms"),
        ("time 2100-01-01T00:00:00Z", t, with_field(T, 4, 4_102_444_800), "invalid_time",
         "$.time_ms"),
        ("time milliseconds 1000", t, with_field(T, 5, 1000 << 2 | 1), "out_of_range",
         "$.time_ms"),
        ("time source 3", t, with_field(T, 5, 123 << 2 | 3), "out_of_range", "$.time_source"),
        ("lat as a float", t, with_field(T, 6, 40.75), "bad_type", "$.lat_deg"),
        ("lat 90.0000001", t, with_field(T, 6, 900_000_001), "out_of_range", "$.lat_deg"),
        ("lat -90.0000001", t, with_field(T, 6, -900_000_001), "out_of_range", "$.lat_deg"),
        ("lon 180.0000001", t, with_field(T, 7, 1_800_000_001), "out_of_range", "$.lon_deg"),
        ("lon -180.0000001", t, with_field(T, 7, -1_800_000_001), "out_of_range", "$.lon_deg"),
        ("alt -1000.1 m", t, with_field(T, 8, -10_001), "out_of_range", "$.alt_m"),
        ("alt 10000.1 m", t, with_field(T, 8, 100_001), "out_of_range", "$.alt_m"),
        ("heading 360.0", t, with_field(T, 9, 3600), "out_of_range", "$.heading_deg"),
        ("heading -0.1", t, with_field(T, 9, -1), "out_of_range", "$.heading_deg"),
        ("speed 200.1 m/s", t, with_field(T, 10, 2001), "out_of_range", "$.speed_mps"),
        ("battery 101 %", t, with_field(T, 11, 101), "out_of_range", "$.battery_pct"),
        ("battery true", t, with_field(T, 11, True), "bad_type", "$.battery_pct"),
        ("flags with undefined bit 64", t, with_field(T, 12, 64), "out_of_range", "$.flags"),
        ("plate lowercase", v, with_field(V, 9, "abc1234"), "bad_plate", "$.plate"),
        ("plate empty", v, with_field(V, 9, ""), "bad_plate", "$.plate"),
        ("plate of 9 chars", v, with_field(V, 9, "ABCD12345"), "bad_plate", "$.plate"),
        ("plate with a space", v, with_field(V, 9, "ABC 123"), "bad_plate", "$.plate"),
        ("region of 1 char", v, with_field(V, 10, "N"), "bad_text", "$.region"),
        ("region lowercase", v, with_field(V, 10, "ny"), "bad_text", "$.region"),
        ("confidence 101 %", v, with_field(V, 11, 101), "out_of_range", "$.confidence"),
        ("confidence -1 %", v, with_field(V, 11, -1), "out_of_range", "$.confidence"),
        ("code 0", v, with_field(V, 12, 0), "unknown_code", "$.code"),
        ("code 94 (unassigned)", v, with_field(V, 12, 94), "unknown_code", "$.code"),
        ("code 100", v, with_field(V, 12, 100), "unknown_code", "$.code"),
        ("code as a string", v, with_field(V, 12, "21"), "bad_type", "$.code"),
        ("evidence id of 7 bytes", v, with_field(V, 13, b"\x01" * 7), "bad_text",
         "$.evidence_id"),
        ("evidence id as hex text", v, with_field(V, 13, EVIDENCE), "bad_type", "$.evidence_id"),
        ("vehicle make lowercase", v, msgpack.packb([*wire(V), "toyot"]), "bad_text",
         "$.vehicle.make"),
        ("vehicle body of 9 chars", v, msgpack.packb([*wire(V), None, None, "ABCDEFGHI"]),
         "bad_text", "$.vehicle.body"),
        ("status online as 1", s, with_field(S, 6, 1), "bad_type", "$.online"),
    ]
    return cases


def build() -> list[dict[str, Any]]:
    vectors: list[dict[str, Any]] = []
    for name, msg in valid():
        data = protocol.encode(msg)
        vectors.append(_valid(name, data, msg, canonical=True))
    for name, data, msg in non_canonical():
        vectors.append(_valid(name, data, msg, canonical=False))
    for name, kind, data, code, path in invalid():
        _expect_error(data, code, path, name)
        vectors.append({"name": name, "kind": kind, "hex": data.hex(), "json": None,
                        "valid": False, "error": code, "path": path})
    return vectors


def _valid(name: str, data: bytes, msg: protocol.Message, canonical: bool) -> dict[str, Any]:
    decoded = protocol.decode(data)
    if decoded != msg:
        raise SystemExit(f"vector {name!r}: decodes to {decoded!r}, expected {msg!r}")
    vector: dict[str, Any] = {"name": name, "kind": protocol.kind_of(msg).value,
                              "hex": data.hex(), "json": protocol.to_json(msg), "valid": True}
    if not canonical:
        vector["canonical_hex"] = protocol.encode(msg).hex()
    return vector


def _expect_error(data: bytes, code: str, path: str | None, name: str) -> None:
    check: Callable[[], object] = lambda: protocol.decode(data)  # noqa: E731
    try:
        check()
    except protocol.ProtocolError as exc:
        if (exc.code, exc.path) != (code, path):
            raise SystemExit(f"vector {name!r}: got {exc.code} at {exc.path}, "
                             f"expected {code} at {path}") from None
        return
    raise SystemExit(f"vector {name!r}: decoded, expected {code}")


def render() -> str:
    doc = {
        "about": "Golden vectors for the PresaCop wire format (docs/protocol.md). hex: the MQTT "
                 "payload. valid vectors: decode(hex) has the canonical JSON `json`; encoding "
                 "that message gives `canonical_hex` if present, else `hex`. invalid vectors: "
                 "decode must fail with error code `error` (and, for this implementation, `path`).",
        "schema": protocol.SCHEMA_VERSION,
        "vectors": build(),
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
