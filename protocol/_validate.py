"""Field checks shared by the decoder (remote input) and the encoder (our own messages).

Each check takes the value, the field's path in the canonical JSON form and the error class to
raise, so one rule serves both directions: the agent cannot emit what the gateway would reject.
"""

from __future__ import annotations

import math
import re

from protocol._codes import VIOLATION_CODES
from protocol._errors import ErrorClass

DRONE_ID_RE = re.compile(r"[A-Za-z0-9_-]{1,32}")
PLATE_RE = re.compile(r"[A-Z0-9]{1,8}")
REGION_RE = re.compile(r"[A-Z]{2}")
# NYC records: make "TOYOT", "ME/BE"; colour "WH", "BLK"; body "SUBN", "4DSD".
VEHICLE_TEXT_RE = re.compile(r"[A-Z0-9/&.-]{1,8}")
EVIDENCE_HEX_RE = re.compile(r"[0-9a-f]{16}")
EVIDENCE_BYTES = 8

# The plausible-time window, Unix epoch ms, [min, max). A stale but plausible clock passes;
# the time source and the gateway's receive time expose the skew.
TIME_MIN_MS = 1_577_836_800_000  # 2020-01-01T00:00:00Z
TIME_MAX_MS = 4_102_444_800_000  # 2100-01-01T00:00:00Z (fits the wire's uint32 seconds)

UINT32_MAX = 2**32 - 1
SIGNATURE_SIZE = 64  # Ed25519
KEY_ID_MAX = 0xFFFF


def show(value: object) -> str:
    """A short rendering of a bad value for an error message (ints can be huge, strs long)."""
    if isinstance(value, int) and not -(2**64) < value < 2**64:
        return f"a {value.bit_length()}-bit integer"
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def is_int(value: object) -> bool:
    """True for an int that is not a bool (msgpack and JSON keep them apart; so do we)."""
    return isinstance(value, int) and not isinstance(value, bool)


def int_in(value: object, path: str, lo: int, hi: int, err: ErrorClass,
           code: str = "out_of_range") -> int:
    """`value` as an int in [lo, hi]; raises `err` "bad_type" or `code` naming `path`."""
    if type(value) is not int:  # the exact-type test first: it is the hot path of decode
        if not is_int(value):
            raise err("bad_type", f"expected an integer, got {type(value).__name__}", path)
        value = int(value)  # type: ignore[call-overload]  # an IntEnum/IntFlag: plain on the wire
    if not lo <= value <= hi:
        raise err(code, f"{show(value)} is outside [{lo}, {hi}]", path)
    return value


def scaled(value: object, scale: int, path: str, lo: int, hi: int, err: ErrorClass) -> int:
    """A real number as its wire integer round(value * scale), checked in [lo, hi]."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise err("bad_type", f"expected a number, got {type(value).__name__}", path)
    if isinstance(value, float) and not math.isfinite(value * scale):  # round() would raise
        raise err("out_of_range", f"{show(value)} is not a finite number at this scale", path)
    wire = round(value * scale)  # an int stays exact, however large
    if not lo <= wire <= hi:
        raise err("out_of_range", f"{show(value)} is outside [{lo / scale}, {hi / scale}]", path)
    return wire


def text(value: object, path: str, pattern: re.Pattern[str], err: ErrorClass,
         code: str = "bad_text") -> str:
    """`value` as a str matching `pattern` in full; raises `err` "bad_type" or `code`."""
    if not isinstance(value, str):
        raise err("bad_type", f"expected a string, got {type(value).__name__}", path)
    if pattern.fullmatch(value) is None:
        raise err(code, f"{show(value)} does not match {pattern.pattern}", path)
    return value


def optional_text(value: object, path: str, pattern: re.Pattern[str],
                  err: ErrorClass) -> str | None:
    return None if value is None else text(value, path, pattern, err)


def violation_code(value: object, path: str, err: ErrorClass) -> int | None:
    """A code of VIOLATION_CODES, or None (unqualified); raises "bad_type" or "unknown_code"."""
    if value is None:
        return None
    if not is_int(value):
        raise err("bad_type", f"expected an integer or nil, got {type(value).__name__}", path)
    if value not in VIOLATION_CODES:
        raise err("unknown_code", f"{show(value)} is not a NYC DOF violation code", path)
    assert isinstance(value, int)
    return value


def boolean(value: object, path: str, err: ErrorClass) -> bool:
    if not isinstance(value, bool):
        raise err("bad_type", f"expected a boolean, got {type(value).__name__}", path)
    return value


def time_ms(value: object, path: str, err: ErrorClass) -> int:
    """Unix epoch ms inside the plausible window; raises "bad_type" or "invalid_time"."""
    if not is_int(value):
        raise err("bad_type", f"expected an integer, got {type(value).__name__}", path)
    assert isinstance(value, int)
    if not TIME_MIN_MS <= value < TIME_MAX_MS:
        raise err("invalid_time", f"{show(value)} ms is outside [2020-01-01, 2100-01-01) UTC",
                  path)
    return value


def evidence_from_hex(value: object, path: str, err: ErrorClass) -> bytes:
    return bytes.fromhex(text(value, path, EVIDENCE_HEX_RE, err))


def evidence_bytes(value: object, path: str, err: ErrorClass) -> str:
    """The wire's bin 8 as 16 lowercase hex chars."""
    if not isinstance(value, bytes):
        raise err("bad_type", f"expected bin 8, got {type(value).__name__}", path)
    if len(value) != EVIDENCE_BYTES:
        raise err("bad_text", f"expected 8 bytes, got {len(value)}", path)
    return value.hex()


def signature_fields(key_id: object, signature: object, err: ErrorClass) -> tuple[int, bytes]:
    """1.1's signature pair (key_id, signature), as every signed kind carries it: both or
    neither (the caller handles neither)."""
    if key_id is None or signature is None:
        missing = "$.key_id" if key_id is None else "$.signature"
        raise err("missing_field", "key_id and signature go together", missing)
    key = int_in(key_id, "$.key_id", 0, KEY_ID_MAX, err)
    if not isinstance(signature, bytes):
        raise err("bad_type", f"expected bin 64, got {type(signature).__name__}", "$.signature")
    if len(signature) != SIGNATURE_SIZE:
        raise err("bad_type", f"expected {SIGNATURE_SIZE} bytes, got {len(signature)}",
                  "$.signature")
    return key, signature
