"""Bench the wire format: bytes per message kind against JSON and the seed's CSV line, and
encode/decode rates with msgpack (the dependency) against msgspec (if installed) and raw packing.

    .venv/bin/python bench/protocol.py            # tables
    .venv/bin/python bench/protocol.py --json     # one JSON object, for scripts

Sizes are exact. Rates are msgs/s of one Python thread, best of --repeat runs of about --seconds
each; on a shared machine they move by tens of percent between runs, so compare columns of one
run, not runs. msgspec is optional (`pip install msgspec`); without it those columns are absent.

No `from __future__ import annotations` here: msgspec reads the structs' annotations at runtime.
"""

import argparse
import json
import platform
import sys
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import msgpack

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a fresh clone

import protocol
from protocol import (
    Header,
    Position,
    Status,
    StatusFlags,
    Telemetry,
    TimeSource,
    Vehicle,
    Violation,
)
from protocol._codec import to_wire  # the validating half of encode, for the msgspec pairing

try:
    import msgspec
except ImportError:  # optional: only for the comparison
    msgspec = None

HEADER = Header("nyc-0007", 123_456, 1_748_779_200_120, TimeSource.GPS)
POSITION = Position(40.7579747, -73.9855426, 120.0)
TELEMETRY = Telemetry(HEADER, POSITION, 271.5, 8.3, 87, StatusFlags.NONE)
VIOLATION = Violation(HEADER, POSITION, "ABC1234", "NY", 0.93, 21, "0123456789abcdef")
SAMPLES: dict[str, protocol.Message] = {
    "telemetry": TELEMETRY,
    "violation": VIOLATION,
    "violation+vehicle": replace(VIOLATION, vehicle=Vehicle("TOYOT", "WH", "SUBN")),
    "status": Status(HEADER, True),
}
_ALL_FLAGS = StatusFlags(63)
# Telemetry at the top of the realistic envelope (tests/protocol: seq up to 2**32-1, any time and
# place, alt -128..255 m, speed 0..25.5 m/s, any heading, battery and flags), and with every
# field at its range limit. Sizes only: the rates are for the typical samples above.
ENVELOPE_MAX = Telemetry(replace(HEADER, seq=2**32 - 1), Position(-89.9999999, -179.9999999, 255),
                         359.9, 25.5, 100, _ALL_FLAGS)
ABSOLUTE_MAX = Telemetry(replace(HEADER, seq=2**32 - 1), Position(90, 180, 10000), 359.9, 200,
                         100, _ALL_FLAGS)
# A signature's size does not depend on its value: a placeholder measures it (1.1, key id < 128).
_SIGNED = {"key_id": 0, "signature": bytes(protocol.SIGNATURE_SIZE)}
# The largest violation without vehicle details (every field at its widest encoding).
VIOLATION_MAX = Violation(replace(HEADER, seq=2**32 - 1),
                          Position(-89.9999999, -179.9999999, -1000),
                          "ABCD1234", "NY", 0.93, 21, "0123456789abcdef")
SIZE_SAMPLES: dict[str, protocol.Message] = {
    "telemetry": TELEMETRY,
    "telemetry envelope max": ENVELOPE_MAX,
    "telemetry absolute max": ABSOLUTE_MAX,
    **{k: v for k, v in SAMPLES.items() if k != "telemetry"},
    "violation signed": replace(VIOLATION, **_SIGNED),
    "violation signed max": replace(VIOLATION_MAX, **_SIGNED),
    "violation+vehicle signed": replace(SAMPLES["violation+vehicle"], **_SIGNED),
}
TARGETS = {"telemetry": 32, "telemetry envelope max": 32, "telemetry absolute max": 32,
           "violation": 64, "violation signed": 128, "violation signed max": 128}
DERIVED = ("message_id", "time", "qualified", "schema")  # JSON conveniences, not facts


# --- sizes ---------------------------------------------------------------------------------------


def facts_json(msg: protocol.Message) -> bytes:
    """The message's facts as compact JSON, with the canonical names (derived fields left out)."""
    doc = {k: v for k, v in protocol.to_json(msg).items() if k not in DERIVED}
    return json.dumps(doc, separators=(",", ":")).encode()


def csv_line(msg: protocol.Message) -> bytes:
    """The facts as one semicolon line, as the NYPD seed data carries them (no header)."""
    j = protocol.to_json(msg)
    cols: list[Any] = [j["drone_id"], j["seq"], j["time"], j["time_source"]]
    if j["kind"] == "status":
        cols.append(j["online"])
    else:
        cols += [j["lat_deg"], j["lon_deg"], j["alt_m"]]
    if j["kind"] == "telemetry":
        cols += [j["heading_deg"], j["speed_mps"], j["battery_pct"], "|".join(j["flags"])]
    if j["kind"] == "violation":
        vehicle = j["vehicle"] or {}
        cols += [j["plate"], j["region"], j["confidence"], j["code"], j["evidence_id"],
                 vehicle.get("make"), vehicle.get("colour"), vehicle.get("body")]
    return (";".join("" if c is None else str(c) for c in cols) + "\n").encode()


def topic_of(msg: protocol.Message) -> str:
    """The topic the message is published on: it carries the drone id and the kind."""
    return protocol.topic(msg.header.drone_id, protocol.kind_of(msg))


def mqtt_publish_bytes(topic: str, payload: int) -> int:
    """Bytes of the MQTT 3.1.1 QoS 1 PUBLISH carrying it: fixed header, topic, packet id, payload
    (MQTT 5 adds one byte: the empty property length)."""
    remaining = 2 + len(topic.encode()) + 2 + payload
    return 1 + (1 if remaining < 128 else 2) + remaining


def sizes() -> list[dict[str, Any]]:
    rows = []
    for name, msg in SIZE_SAMPLES.items():
        packed = len(protocol.encode(msg))
        topic = topic_of(msg)
        rows.append({
            "kind": name,
            "msgpack": packed,
            "json": len(facts_json(msg)),
            "csv": len(csv_line(msg)),
            "target": TARGETS.get(name),
            "topic": len(topic.encode()),
            "mqtt_publish": mqtt_publish_bytes(topic, packed),
        })
    return rows


# --- rates ---------------------------------------------------------------------------------------


def rate(fn: Callable[[], object], seconds: float, repeat: int) -> float:
    """Best-of-`repeat` calls per second of `fn`, each run lasting about `seconds`."""
    n = 1
    while True:  # size the loop so one run takes about `seconds`
        start = time.perf_counter()
        for _ in range(n):
            fn()
        took = time.perf_counter() - start
        if took >= seconds / 4:
            break
        n *= 4
    n = max(1, int(n * seconds / took))
    best = 0.0
    for _ in range(repeat):
        start = time.perf_counter()
        for _ in range(n):
            fn()
        best = max(best, n / (time.perf_counter() - start))
    return best


def _wire(msg: protocol.Message) -> list[Any]:
    return msgpack.unpackb(protocol.encode(msg))


Pair = tuple[Callable[[], object], Callable[[], object]]


def candidates(msg: protocol.Message) -> dict[str, Pair]:
    """name -> (encode, decode) callables for one message; every decode is given the topic."""
    data = protocol.encode(msg)
    topic = topic_of(msg)
    wire = _wire(msg)
    doc = protocol.to_json(msg)

    out: dict[str, Pair] = {
        "protocol (msgpack)": (lambda: protocol.encode(msg), lambda: protocol.decode(data, topic)),
        "raw msgpack, no checks": (lambda: msgpack.packb(wire), lambda: msgpack.unpackb(data)),
        "protocol to/from_json": (lambda: protocol.to_json(msg), lambda: protocol.from_json(doc)),
    }
    if msgspec is not None:
        enc = msgspec.msgpack.Encoder()
        out["msgspec typed"] = (lambda: msgspec_encode(enc, msg),
                                lambda: msgspec_decode(data, topic))
        raw = msgspec.msgpack.Decoder()
        out["raw msgspec, no checks"] = (lambda: enc.encode(wire), lambda: raw.decode(data))
    return out


def rates(seconds: float, repeat: int) -> list[dict[str, Any]]:
    rows = []
    for name, msg in SAMPLES.items():
        for impl, (enc, dec) in candidates(msg).items():
            rows.append({"kind": name, "impl": impl, "encode_per_s": rate(enc, seconds, repeat),
                         "decode_per_s": rate(dec, seconds, repeat)})
    return rows


# --- msgspec: the same layout as typed array-like structs with constraints -----------------------


def msgspec_encode(enc: Any, msg: protocol.Message) -> bytes:
    """The payload by msgspec: our validation (`to_wire` gives the logical array, with the topic's
    kind and drone id at 1 and 2), then msgspec packs the payload positions."""
    logical = to_wire(msg, protocol.LocalProtocolError)
    return enc.encode([logical[0], *logical[3:]])


def msgspec_decode(data: bytes, topic: str) -> protocol.Message:
    """The message by msgspec: the topic names the drone and picks the kind's struct."""
    drone_id, kind = protocol.parse_topic(topic)
    return _from_struct(_MSGSPEC_DECODERS[kind.value].decode(data), drone_id)


def _msgspec_decoder(kind: str) -> Any:
    """A msgspec decoder enforcing the 1.0 payload's types and ranges in C (what it can express:
    not the time-source bits; the remaining checks run in `_from_struct`)."""
    from typing import Annotated, Literal, Optional

    from msgspec import Meta, Struct

    from protocol._validate import PLATE_RE, REGION_RE, VEHICLE_TEXT_RE

    def pat(rx: Any) -> Any:
        return Meta(pattern=f"^{rx.pattern}$")

    Int = lambda lo, hi: Annotated[int, Meta(ge=lo, le=hi)]  # noqa: E731
    Codes = Literal[tuple(protocol.VIOLATION_CODES)]  # type: ignore[valid-type]
    Detail = Optional[Annotated[str, pat(VEHICLE_TEXT_RE)]]  # noqa: UP045

    class Head(Struct, array_like=True):  # no kind, no drone id: the topic carries them
        version: Int(16, 31)  # type: ignore[valid-type]
        seq: Int(0, 2**32 - 1)  # type: ignore[valid-type]
        time_s: Int(1_577_836_800, 4_102_444_799)  # type: ignore[valid-type]
        time_sub: Int(0, 99)  # type: ignore[valid-type]

    class T(Head, array_like=True):
        lat: Int(-900_000_000, 900_000_000)  # type: ignore[valid-type]
        lon: Int(-1_800_000_000, 1_800_000_000)  # type: ignore[valid-type]
        alt: Int(-1000, 10_000)  # type: ignore[valid-type]
        heading: Int(0, 3599)  # type: ignore[valid-type]
        speed: Int(0, 2000)  # type: ignore[valid-type]
        battery: Int(0, 100)  # type: ignore[valid-type]
        flags: Int(0, 63)  # type: ignore[valid-type]

    class V(Head, array_like=True):
        lat: Int(-900_000_000, 900_000_000)  # type: ignore[valid-type]
        lon: Int(-1_800_000_000, 1_800_000_000)  # type: ignore[valid-type]
        alt: Int(-1000, 10_000)  # type: ignore[valid-type]
        plate: Annotated[str, pat(PLATE_RE)]
        region: Annotated[str, pat(REGION_RE)]
        confidence: Int(0, 100)  # type: ignore[valid-type]
        code: Optional[Codes]  # noqa: UP045
        evidence: Annotated[bytes, Meta(min_length=8, max_length=8)]
        make: Detail = None
        colour: Detail = None
        body: Detail = None

    class S(Head, array_like=True):
        online: bool

    struct = {"telemetry": T, "violation": V, "status": S}[kind]
    return msgspec.msgpack.Decoder(struct)


_MSGSPEC_DECODERS: dict[str, Any] = {}  # kind -> decoder, filled in main() when msgspec is there


def _from_struct(s: Any, drone_id: str) -> protocol.Message:
    header = Header(drone_id, s.seq, s.time_s * 1000 + (s.time_sub >> 2) * 40,
                    TimeSource(s.time_sub & 3))  # ValueError for source 3, as decode refuses it
    if hasattr(s, "online"):
        return Status(header, s.online)
    position = Position(s.lat / 10**7, s.lon / 10**7, float(s.alt))
    if hasattr(s, "flags"):
        return Telemetry(header, position, s.heading / 10, s.speed / 10, s.battery,
                         StatusFlags(s.flags))
    return Violation(header, position, s.plate, s.region, s.confidence / 100, s.code,
                     s.evidence.hex(), Vehicle(s.make, s.colour, s.body))


# --- output --------------------------------------------------------------------------------------


def print_tables(result: dict[str, Any]) -> None:
    print(f"# bench/protocol  {result['machine']}")
    print(f"# python {result['python']}, msgpack {result['msgpack']}, msgspec {result['msgspec']}")
    print()
    print(f"{'bytes per message':<24}{'msgpack':>8}{'target':>8}{'JSON':>7}{'CSV':>6}"
          f"{'% of JSON':>11}{'% of CSV':>10}{'topic':>7}{'MQTT PUBLISH':>14}")
    for r in result["sizes"]:
        target = "" if r["target"] is None else f"<={r['target']}"
        print(f"{r['kind']:<24}{r['msgpack']:>8}{target:>8}{r['json']:>7}{r['csv']:>6}"
              f"{100 * r['msgpack'] / r['json']:>10.0f}%{100 * r['msgpack'] / r['csv']:>9.0f}%"
              f"{r['topic']:>7}{r['mqtt_publish']:>14}")
    print("(msgpack: the payload; the drone id and kind are in the topic. JSON: the facts with")
    print(" canonical names, compact; CSV: one ';' line like the seed data. envelope max: seq")
    print(" 2**32-1, alt 255 m, heading 359.9, 25.5 m/s, battery 100, all flags; absolute max:")
    print(" every field at its range limit. MQTT PUBLISH: the whole QoS 1 packet, topic included,")
    print(" MQTT 3.1.1)")
    print()
    print(f"{'msgs/s, one thread':<20}{'implementation':<26}{'encode':>12}{'decode':>12}")
    for r in result["rates"]:
        print(f"{r['kind']:<20}{r['impl']:<26}{r['encode_per_s']:>12,.0f}"
              f"{r['decode_per_s']:>12,.0f}")
    if result["msgspec"] != "absent":
        same = "yes" if result["msgspec_bytes_identical"] else "NO"
        print(f"(msgspec writes byte-identical payloads: {same})")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--seconds", type=float, default=0.3, help="per timed run (default 0.3)")
    parser.add_argument("--repeat", type=int, default=3, help="runs per figure, best kept")
    args = parser.parse_args(argv)
    if args.seconds <= 0 or args.repeat < 1:
        parser.error("--seconds must be > 0 and --repeat >= 1")
    if msgspec is not None:
        _MSGSPEC_DECODERS.update({k.value: _msgspec_decoder(k.value) for k in protocol.Kind})
    result: dict[str, Any] = {
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
        "python": platform.python_version(),
        "msgpack": ".".join(map(str, msgpack.version)),
        "msgspec": msgspec.__version__ if msgspec is not None else "absent",
        "sizes": sizes(),
        "rates": rates(args.seconds, args.repeat),
    }
    if msgspec is not None:
        enc = msgspec.msgpack.Encoder()
        result["msgspec_bytes_identical"] = all(
            msgspec_encode(enc, m) == protocol.encode(m)
            and msgspec_decode(protocol.encode(m), topic_of(m)) == m
            for m in SIZE_SAMPLES.values())
    if args.json:
        print(json.dumps(result, indent=1))
    else:
        print_tables(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
