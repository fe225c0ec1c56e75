"""1.1 violation signatures at the protocol level (no keys here beyond the RFC 8032 vectors):
the fields round-trip, the signing input covers topic and payload, sizes hold, and hostile bytes
raise only ProtocolError (bounded fuzz; the long run is bench/fuzz.py)."""

from __future__ import annotations

import array
import contextlib
import dataclasses
import json
from pathlib import Path

import msgpack
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from protocol_strategies import mutated_payloads, violations

import protocol

VECTORS = json.loads((Path(__file__).resolve().parents[2] / "docs" /
                      "protocol-vectors.json").read_text())
SIG = bytes(range(64))
HEADER = protocol.Header("nyc-0007", 123456, 1_748_779_200_120, protocol.TimeSource.GPS)
VIO = protocol.Violation(HEADER, protocol.Position(40.7579747, -73.9855426, 120), "ABC1234",
                         "NY", 0.93, 21, "0123456789abcdef")
TOPIC = protocol.topic("nyc-0007", protocol.Kind.VIOLATION)


def signed(msg: protocol.Violation, key_id: int = 0, sig: bytes = SIG) -> bytes:
    return protocol.encode(dataclasses.replace(msg, key_id=key_id, signature=sig))


def test_signed_fields_round_trip_in_wire_and_json() -> None:
    msg = dataclasses.replace(VIO, key_id=7, signature=SIG)
    payload = protocol.encode(msg)
    fields = msgpack.unpackb(payload)
    assert len(fields) == 17 and fields[12:15] == [None, None, None] and fields[15:] == [7, SIG]
    assert payload[:3] == b"\xdc\x00\x11" and payload[-66:-64] == b"\xc4\x40"
    assert protocol.decode(payload, TOPIC) == msg
    doc = protocol.to_json(msg)
    assert doc["key_id"] == 7 and doc["signature"] == SIG.hex()
    assert protocol.from_json(doc) == msg
    unsigned = protocol.to_json(VIO)
    assert unsigned["key_id"] is None and unsigned["signature"] is None
    del unsigned["key_id"], unsigned["signature"]  # a 1.0 reader's JSON has neither
    assert protocol.from_json(unsigned) == VIO


def test_signing_input_covers_topic_and_payload_but_not_the_signature_bytes() -> None:
    payload = signed(VIO)
    base = protocol.signing_input(TOPIC, payload)
    assert base == b"presacop-sig-1\x00" + TOPIC.encode() + b"\x00" + payload[:-64]
    assert protocol.signing_input(TOPIC, signed(VIO, sig=bytes(64))) == base  # any signature
    other = protocol.topic("nyc-0008", protocol.Kind.VIOLATION)
    assert protocol.signing_input(other, payload) != base  # replay on another drone's topic
    assert protocol.signing_input(TOPIC, signed(VIO, key_id=1)) != base  # the key id is signed
    replaced = protocol.with_signature(TOPIC, payload, b"\x01" * 64)
    assert replaced[:-64] == payload[:-64] and replaced[-64:] == b"\x01" * 64


def test_fields_appended_by_a_later_minor_stay_signed() -> None:
    fields = msgpack.unpackb(signed(VIO))
    later = msgpack.packb([0x12, *fields[1:], "appended"])
    inp = protocol.signing_input(TOPIC, later)
    assert inp.endswith(b"\xc4\x40" + msgpack.packb("appended"))
    assert protocol.decode(later, TOPIC).signature == SIG


@pytest.mark.parametrize(("payload", "why"), [
    (protocol.encode(VIO), "unsigned: no element 16"),
    (msgpack.packb([*msgpack.unpackb(signed(VIO))[:16], SIG[:63]]), "63 bytes"),
    (signed(VIO)[:-66] + b"\xc5\x00\x40" + SIG, "bin 16 instead of bin 8"),
    (b"\xc1", "not msgpack"),
])
def test_no_signing_input_without_a_bin8_signature_where_it_belongs(payload: bytes,
                                                                      why: str) -> None:
    with pytest.raises(protocol.RemoteProtocolError) as info:
        protocol.signing_input(TOPIC, payload)
    assert (info.value.code, info.value.path) == ("bad_type", "$.signature"), why


def test_telemetry_is_not_signed() -> None:
    with pytest.raises(protocol.RemoteProtocolError):
        protocol.signing_input(protocol.topic("a", protocol.Kind.TELEMETRY), signed(VIO))


@given(violations)
@settings(max_examples=150, deadline=None)
def test_a_signed_violation_without_details_stays_within_128_bytes(msg: protocol.Violation) -> None:
    payload = signed(dataclasses.replace(msg, vehicle=None), key_id=127)
    assert len(payload) <= 128
    assert protocol.decode(payload, protocol.topic(msg.header.drone_id, protocol.Kind.VIOLATION))


def test_signature_vectors_verify_as_stated() -> None:
    vectors = VECTORS["signature_vectors"]
    assert [v["valid"] for v in vectors] == [True, False, False] * 3  # violation, manifest,
    # receipt: each signed, then on another drone's topic, then with one field changed
    for v in vectors:
        payload = bytes.fromhex(v["hex"])
        assert protocol.signing_input(v["topic"], payload).hex() == v["signing_input_hex"]
        key = Ed25519PublicKey.from_public_bytes(bytes.fromhex(v["public_key_hex"]))
        decode = protocol.decode_evidence if "/evidence" in v["topic"] \
            else protocol.decode
        sig = decode(payload, v["topic"]).signature
        try:
            key.verify(sig, bytes.fromhex(v["signing_input_hex"]))
            ok = True
        except Exception:
            ok = False
        assert ok == v["valid"], v["name"]


@pytest.mark.parametrize("view", [
    memoryview(array.array("I", [1, 2, 3])),  # multi-byte items: msgpack raised BufferError
    memoryview(array.array("H", msgpack.packb([0x11, 1]) + b"\x00")).cast("B"),
    memoryview(bytes(range(40)))[::2],  # not contiguous
])
def test_decode_of_any_memoryview_raises_only_protocol_errors(view: memoryview) -> None:
    with pytest.raises(protocol.ProtocolError):
        protocol.decode(view, TOPIC)


def test_decode_reads_a_multibyte_view_as_its_bytes() -> None:
    payload = signed(VIO)
    padded = payload + b"\x00" * (-len(payload) % 4)
    view = memoryview(array.array("I", padded))
    with pytest.raises(protocol.RemoteProtocolError) as info:
        protocol.decode(view, TOPIC)  # the padding is trailing bytes, not a BufferError
    assert info.value.code == "trailing_bytes"
    exact = memoryview(bytearray(payload)).cast("B", [len(payload)])
    assert protocol.decode(exact, TOPIC) == protocol.decode(payload, TOPIC)


# -- bounded fuzz: any input, only ProtocolError (the long run: bench/fuzz.py) ------------------


@given(mutated_payloads())
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_signing_input_and_decode_of_mutated_payloads_raise_only_protocol_errors(
        case: tuple[bytes, str]) -> None:
    data, topic = case
    for call in (lambda: protocol.decode(data, topic),
                 lambda: protocol.signing_input(topic, data)):
        with contextlib.suppress(protocol.ProtocolError):
            call()


@given(st.binary(max_size=200), st.integers(0, 199))
@settings(max_examples=300, deadline=None)
def test_signing_input_of_a_signed_payload_with_a_flipped_byte(noise: bytes, at: int) -> None:
    payload = bytearray(signed(VIO))
    if noise:
        payload[at % len(payload)] ^= noise[0] or 1
    with contextlib.suppress(protocol.ProtocolError):
        protocol.signing_input(TOPIC, bytes(payload))
