"""Fuzz the receiving side: the decoder, the signing input and the signature check (issue 14).

    .venv/bin/python bench/fuzz.py [--seconds 60] [--seed 14]

Feeds, for `--seconds`, a mix of (1) random bytes, (2) valid payloads (telemetry, violations,
signed violations, statuses) with random byte flips, truncations, insertions and splices, and (3)
random msgpack arrays, each on a valid or a mangled topic, to `protocol.decode`,
`protocol.signing_input` and, for every violation that decodes, the gateway's key registry. It
counts:

    crashes       any exception other than protocol.ProtocolError (must be 0)
    forged_ok     a changed signed payload that still verifies on its topic (must be 0)
    decoded       inputs that decode (mutations that stay valid)

and prints the figures with the rate. The suite runs a bounded version of (2)
(tests/protocol/test_protocol_signature.py); this is the long run.
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import random
import sys
import tempfile
import time
from pathlib import Path

import msgpack

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # bench/gateway.py shadows

import protocol
from common.signing import KeyRegistry, Signer, generate_key

T0 = 1_748_779_200_120


def samples(signer: Signer) -> list[tuple[str, bytes, bool]]:
    """(topic, payload, signed) of valid messages of every kind."""
    h = protocol.Header("fz-1", 123456, T0, protocol.TimeSource.GPS)
    pos = protocol.Position(40.7579747, -73.9855426, 120)
    vio = protocol.Violation(h, pos, "ABC1234", "NY", 0.93, 21, "0123456789abcdef")
    vveh = dataclasses.replace(vio, code=None, vehicle=protocol.Vehicle("TOYOT", "WH", "SUBN"))
    tel = protocol.Telemetry(h, pos, 271.5, 8.3, 87, protocol.StatusFlags(127))
    vt = protocol.topic("fz-1", protocol.Kind.VIOLATION)
    return [
        (vt, signer.encode(vio), True), (vt, signer.encode(vveh), True),
        (vt, protocol.encode(vio), False),
        (protocol.topic("fz-1", protocol.Kind.TELEMETRY), protocol.encode(tel), False),
        (protocol.topic("fz-1", protocol.Kind.STATUS),
         protocol.encode(protocol.Status(h, True)), False),
    ]


def mutate(rnd: random.Random, data: bytes) -> bytes:
    b = bytearray(data)
    for _ in range(rnd.randint(1, 4)):
        op = rnd.randrange(5)
        at = rnd.randrange(len(b) + 1)
        if op == 0 and b:
            b[min(at, len(b) - 1)] ^= 1 << rnd.randrange(8)
        elif op == 1:
            del b[at:]
        elif op == 2:
            b[at:at] = rnd.randbytes(rnd.randint(1, 8))
        elif op == 3 and b:
            b[min(at, len(b) - 1)] = rnd.choice((0x00, 0x7F, 0x80, 0xC0, 0xC1, 0xC4, 0xD9, 0xDC,
                                                 0xDD, 0xFF))
        else:
            other = rnd.randbytes(rnd.randint(0, 40))
            b[at:at + len(other)] = other
    return bytes(b)


def random_array(rnd: random.Random) -> bytes:
    def value(depth: int) -> object:
        kind = rnd.randrange(8 if depth < 2 else 6)
        return [lambda: rnd.randint(-2**63, 2**64 - 1), lambda: None, lambda: rnd.random(),
                lambda: rnd.randbytes(rnd.choice((8, 64, 63, 300))), lambda: "ABC1234",
                lambda: bool(rnd.getrandbits(1)), lambda: [value(depth + 1) for _ in range(3)],
                lambda: {"k": value(depth + 1)}][kind]()
    return msgpack.packb([rnd.choice((0x10, 0x11, 0x1F, 0x20)),
                          *(value(0) for _ in range(rnd.randint(0, 20)))])


def topic_for(rnd: random.Random, topic: str) -> str:
    if rnd.random() < 0.9:
        return topic
    return rnd.choice((protocol.topic("fz-2", protocol.Kind.VIOLATION), topic + "/x",
                       "presacop/v1/drones/+/violation", "", topic.replace("fz-1", "fz-\u00e4")))


def run(seconds: float, seed: int) -> collections.Counter[str]:
    rnd = random.Random(seed)
    counts: collections.Counter[str] = collections.Counter()
    with tempfile.TemporaryDirectory() as keys:
        signer = Signer.from_file(generate_key(Path(keys), "fz-1").private)
        registry = KeyRegistry(Path(keys), reload_s=3600)
        base = samples(signer)
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            topic, payload, _ = rnd.choice(base)
            choice = rnd.random()
            data = rnd.randbytes(rnd.randint(0, 200)) if choice < 0.15 else \
                random_array(rnd) if choice < 0.3 else mutate(rnd, payload)
            t = topic_for(rnd, topic)
            counts["inputs"] += 1
            try:
                msg = protocol.decode(data, t)
                counts["decoded"] += 1
                if isinstance(msg, protocol.Violation) and msg.signature is not None:
                    ok = registry.check(t, data, msg) is None
                    if ok and (data != payload or t != topic):
                        counts["forged_ok"] += 1
                    counts["verified" if ok else "rejected_signature"] += 1
            except protocol.ProtocolError:
                counts["protocol_errors"] += 1
            except Exception as exc:  # what the fuzzer is for
                counts["crashes"] += 1
                print(f"CRASH {type(exc).__name__}: {exc} on {t!r} {data.hex()}", file=sys.stderr)
            try:
                protocol.signing_input(t, data)
            except protocol.ProtocolError:
                pass
            except Exception as exc:
                counts["crashes"] += 1
                print(f"CRASH signing_input {type(exc).__name__}: {exc}", file=sys.stderr)
    return counts


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seconds", type=float, default=60.0)
    p.add_argument("--seed", type=int, default=14)
    args = p.parse_args(argv)
    start = time.perf_counter()
    c = run(args.seconds, args.seed)
    took = time.perf_counter() - start
    print(f"# bench/fuzz: seed {args.seed}, {took:.0f} s")
    print(f"inputs {c['inputs']:,} ({c['inputs'] / took:,.0f}/s), decoded {c['decoded']:,}, "
          f"protocol errors {c['protocol_errors']:,}")
    print(f"signed violations decoded {c['verified'] + c['rejected_signature']:,}: verified "
          f"{c['verified']:,} (unchanged bytes), rejected {c['rejected_signature']:,}")
    print(f"crashes {c['crashes']}, forged_ok {c['forged_ok']}   (both must be 0)")
    return 1 if c["crashes"] or c["forged_ok"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
