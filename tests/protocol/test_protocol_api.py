"""The public surface: the contract's names, sans-I/O, no dependency on our other packages."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import protocol

PACKAGE = Path(protocol.__file__).resolve().parent

CONTRACT = {  # COMMON.md's protocol contract, plus the error split and ERROR_CODES
    "encode", "decode", "to_json", "from_json", "message_id", "topic", "parse_topic", "Kind",
    "kind_of", "SUBSCRIPTION", "MAX_MESSAGE_SIZE", "SCHEMA_VERSION", "VIOLATION_CODES",
    "ProtocolError", "TopicError", "Telemetry", "Violation", "Status", "Header", "Position",
    "Vehicle", "TimeSource", "StatusFlags", "Message", "LocalProtocolError",
    "RemoteProtocolError", "ERROR_CODES",
    # evidence upload frames, 1.1 (issue 12)
    "MAX_CHUNK_SIZE", "MAX_EVIDENCE_MESSAGE", "MAX_EVIDENCE_SIZE", "EvidenceChunk",
    "EvidenceFrame", "EvidenceManifest", "EvidenceReceipt", "ReceiptState", "chunk_count",
    "chunk_span", "decode_evidence", "encode_evidence", "evidence_topic", "is_evidence_topic",
    "parse_evidence_topic", "receipt_topic",
    # violation signatures, 1.1 (issue 14)
    "KEY_ID_MAX", "SIGNATURE_SIZE", "signing_input", "with_signature",
}


def test_all_lists_exactly_the_contract() -> None:
    assert set(protocol.__all__) == CONTRACT
    for name in protocol.__all__:
        assert hasattr(protocol, name), name


def test_no_other_public_names_leak() -> None:
    public = {n for n in vars(protocol) if not n.startswith("_")}
    assert public - set(protocol.__all__) == set()


def test_modules_are_private() -> None:
    modules = {p.stem for p in PACKAGE.glob("*.py")} - {"__init__"}
    assert modules and all(m.startswith("_") for m in modules)


def test_error_tree() -> None:
    for cls in (protocol.LocalProtocolError, protocol.RemoteProtocolError, protocol.TopicError):
        assert issubclass(cls, protocol.ProtocolError)
    assert issubclass(protocol.ProtocolError, Exception)
    err = protocol.TopicError("x")
    assert err.code == "bad_topic" and err.path is None


def test_constants() -> None:
    assert protocol.SCHEMA_VERSION == "1.1"
    assert protocol.SUBSCRIPTION == "presacop/v1/drones/+/+"
    assert protocol.MAX_MESSAGE_SIZE == 512
    assert {k.value for k in protocol.Kind} == {"telemetry", "violation", "status"}


def test_violation_codes_are_the_dof_table() -> None:
    codes = protocol.VIOLATION_CODES
    assert set(codes) == set(range(1, 100)) - {94, 95}
    assert codes[14] == "NO STANDING-DAY/TIME LIMITS"
    assert codes[21] == "NO PARKING-STREET CLEANING"
    assert codes[38] == "FAIL TO DSPLY MUNI METER RECPT"
    assert codes[40] == "FIRE HYDRANT"
    assert codes[46] == "DOUBLE PARKING"
    assert codes[7] == "FAILURE TO STOP AT RED LIGHT"
    assert all(isinstance(v, str) and v == v.strip() and v for v in codes.values())


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def test_sans_io_and_depends_on_nothing_of_ours() -> None:
    forbidden = {"socket", "asyncio", "logging", "threading", "time", "selectors", "ssl",
                 "gateway", "drone_agent", "hw_sim", "presacop", "paho", "kafka", "cv2"}
    for path in PACKAGE.glob("*.py"):
        assert _imports(path) & forbidden == set(), path.name


def test_importing_protocol_loads_no_io_module() -> None:
    code = ("import sys, protocol; "
            "print(','.join(sorted(m for m in ('asyncio', 'socket', 'logging', 'threading') "
            "if m in sys.modules)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
