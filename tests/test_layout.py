"""The layering of docs/architecture.md and TEAM rules, read from the source.

    protocol     imports nothing of ours; sans-I/O (no asyncio, socket, selectors, logging, time)
    common       protocol only; otherwise the standard library (Kafka libraries in common/kafka.py)
    drone_agent  protocol, common         no Kafka client, no web framework (the drone stays light)
    gateway      protocol, common         no OpenCV, no numpy (the gateway never touches pixels)
    hw_sim       drone_agent, protocol    no presacop, common or Kafka: it only simulates hardware
    backoffice   gateway, protocol, common
    presacop     everything above (the top: CLI, stack, demo)
    bench, tools everything but tests;    nothing imports tests

Every import counts: top-level, inside functions, `importlib.import_module("x")` and
`__import__("x")` with a literal name. Plug-ins named as strings in config
("hw_sim.camera:SimCamera") are not imports. Also: Kafka clients are built only in common/kafka.py
(with the configured security settings), no file of a package is over 500 lines, and each
`module.function` hop docs/architecture.md names exists. Each rule is shown to fire on a bad
sample (the `test_*_rejects_*` tests), so a checker that sees nothing cannot pass.
"""

from __future__ import annotations

import ast
import importlib
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# Our top-level packages, bottom first, with the ones of ours each may import (itself always).
ALLOWED: dict[str, frozenset[str]] = {
    "protocol": frozenset(),
    "common": frozenset({"protocol"}),
    "drone_agent": frozenset({"protocol", "common"}),
    "gateway": frozenset({"protocol", "common"}),
    "hw_sim": frozenset({"drone_agent", "protocol"}),
    "backoffice": frozenset({"gateway", "protocol", "common"}),
    "presacop": frozenset({"protocol", "common", "drone_agent", "gateway", "hw_sim",
                           "backoffice"}),
    "bench": frozenset({"protocol", "common", "drone_agent", "gateway", "hw_sim", "backoffice",
                        "presacop"}),
    "tools": frozenset({"protocol", "common", "drone_agent", "gateway", "hw_sim", "backoffice",
                        "presacop"}),
}
OURS = frozenset(ALLOWED) | {"tests"}
# Packages whose directory may not exist yet: their rule is written down all the same.
NOT_YET = frozenset({"backoffice"})

KAFKA = frozenset({"kafka", "confluent_kafka"})
WEB = frozenset({"starlette", "fastapi", "flask", "uvicorn", "jinja2"})
# Third-party (or stdlib) modules a package may not import, with the reason shown on failure.
BANNED: dict[str, dict[str, str]] = {
    "protocol": dict.fromkeys(("asyncio", "socket", "selectors", "logging", "time"),
                              "the protocol is sans-I/O"),
    "drone_agent": {**dict.fromkeys(KAFKA, "the drone has no Kafka client"),
                    **dict.fromkeys(WEB, "no web framework on the drone")},
    "gateway": dict.fromkeys(("cv2", "numpy"), "the gateway never touches pixels"),
    "hw_sim": dict.fromkeys(KAFKA, "the simulator only simulates hardware"),
}
# common is the bottom: the standard library (tomli: tomllib's backport on 3.10), protocol, the
# Kafka libraries in one room and the signature crypto in another (issue 14).
COMMON_THIRD_PARTY: dict[str, frozenset[str]] = {"*": frozenset({"tomli"}),
                                                 "common/kafka.py": KAFKA,
                                                 "common/signing.py": frozenset({"cryptography"})}

# Kafka client classes (kafka-python; confluent-kafka): built only in common/kafka.py.
KAFKA_CLIENTS = frozenset({"KafkaProducer", "KafkaConsumer", "KafkaAdminClient", "Producer",
                           "Consumer", "AdminClient", "SerializingProducer",
                           "DeserializingConsumer"})
KAFKA_BUILDER = "common/kafka.py"
PRODUCT = ("protocol", "common", "drone_agent", "gateway", "hw_sim", "backoffice", "presacop")

MAX_LINES = 500
LINE_LIMITED = ("protocol", "common", "drone_agent", "gateway", "hw_sim", "presacop", "backoffice")
ARCHITECTURE = ROOT / "docs" / "architecture.md"


@dataclass(frozen=True)
class Import:
    module: str  # top-level name: "kafka" for `from kafka.admin import NewTopic`
    line: int
    how: str  # "import", "from", "import_module" or "__import__"


def imports_in(source: str, filename: str = "<sample>") -> list[Import]:
    """Every absolute import in `source`, at any depth, plus literal dynamic imports."""
    found: list[Import] = []
    for node in ast.walk(ast.parse(source, filename=filename)):
        if isinstance(node, ast.Import):
            found += [Import(a.name.split(".")[0], node.lineno, "import") for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append(Import(node.module.split(".")[0], node.lineno, "from"))
        elif isinstance(node, ast.Call) and node.args:
            name = _dynamic_import(node.func)
            arg = node.args[0]
            if name and isinstance(arg, ast.Constant) and isinstance(arg.value, str) \
                    and not arg.value.startswith("."):
                found.append(Import(arg.value.split(".")[0], node.lineno, name))
    return sorted(found, key=lambda i: (i.line, i.module))


def _dynamic_import(func: ast.expr) -> str | None:
    if isinstance(func, ast.Attribute) and func.attr == "import_module":
        return "import_module"
    if isinstance(func, ast.Name) and func.id in ("import_module", "__import__"):
        return func.id
    return None


def layering_errors(package: str, relpath: str, source: str) -> list[str]:
    """What in `source` (the file `relpath` of `package`) breaks the layering, one line each."""
    errors: list[str] = []
    for imp in imports_in(source, relpath):
        where = f"{relpath}:{imp.line} {package} imports {imp.module}"
        if imp.module == "tests":
            errors.append(f"{where}: nothing imports tests")
        elif imp.module in OURS and imp.module != package and imp.module not in ALLOWED[package]:
            allowed = ", ".join(sorted(ALLOWED[package])) or "nothing of ours"
            errors.append(f"{where}: {package} may import only {allowed}")
        elif imp.module in BANNED.get(package, {}):
            errors.append(f"{where}: {BANNED[package][imp.module]}")
        elif package == "common" and imp.module not in OURS \
                and imp.module not in sys.stdlib_module_names \
                and imp.module not in COMMON_THIRD_PARTY["*"] \
                and imp.module not in COMMON_THIRD_PARTY.get(relpath, ()):
            errors.append(f"{where}: common is the bottom (standard library and protocol only; "
                          "Kafka libraries in common/kafka.py)")
    return errors


def kafka_clients_built(relpath: str, source: str) -> list[str]:
    """Kafka clients constructed in `source` outside common/kafka.py: calls of a client class
    imported from kafka/confluent_kafka, or reached as an attribute of those modules (or of the
    module common.kafka.import_kafka() returns: any `x.KafkaProducer(...)`)."""
    if relpath == KAFKA_BUILDER:
        return []
    tree = ast.parse(source, filename=relpath)
    imported: dict[str, str] = {}  # local name -> client class, from `from kafka import X as Y`
    modules: set[str] = set()  # local names bound to the client libraries
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module \
                and node.module.split(".")[0] in KAFKA:
            imported.update({a.asname or a.name: a.name for a in node.names
                             if a.name in KAFKA_CLIENTS})
        elif isinstance(node, ast.Import):
            modules.update(a.asname or a.name for a in node.names
                           if a.name.split(".")[0] in KAFKA)
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        f = node.func
        name = None
        if isinstance(f, ast.Name) and f.id in imported:
            name = imported[f.id]
        elif isinstance(f, ast.Attribute) and f.attr in KAFKA_CLIENTS and (
                f.attr.startswith("Kafka") or (isinstance(f.value, ast.Name)
                                               and f.value.id in modules)):
            name = f.attr
        if name:
            found.append(f"{relpath}:{node.lineno} builds a {name}: Kafka clients are built in "
                         f"{KAFKA_BUILDER} (security settings)")
    return found


def too_long(relpath: str, text: str, limit: int = MAX_LINES) -> str | None:
    lines = len(text.splitlines())
    return f"{relpath}: {lines} lines (limit {limit})" if lines > limit else None


HOP = re.compile(r"`([A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)+)`")


def hops_in(markdown: str) -> list[str]:
    """The backticked dotted names in `markdown` that start with one of our packages."""
    return [m for m in HOP.findall(markdown) if m.split(".")[0] in ALLOWED]


def unresolved(dotted: str) -> str | None:
    """None if `dotted` names something that exists (a module, or an attribute path inside the
    longest importable module prefix); else why not."""
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        module_name = ".".join(parts[:cut])
        try:
            obj: object = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name is not None and not module_name.startswith(exc.name) \
                    and exc.name != module_name:
                return f"{dotted}: importing {module_name} failed: {exc}"
            continue
        for i, attr in enumerate(parts[cut:], start=cut):
            if not hasattr(obj, attr):
                return f"{dotted}: {'.'.join(parts[:i])} has no attribute {attr!r}"
            obj = getattr(obj, attr)
        return None
    return f"{dotted}: no such module"


def sources(package: str) -> list[Path]:
    return sorted(p for p in (ROOT / package).rglob("*.py") if "__pycache__" not in p.parts)


def rel(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


# -- the tree ------------------------------------------------------------------------------------


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_package_imports_respect_the_layering(package: str) -> None:
    files = sources(package)
    if package in NOT_YET and not (ROOT / package).exists():
        return  # nothing to check yet; its rule above applies as soon as it exists
    assert files, f"no sources found for {package}"
    errors = [e for path in files for e in layering_errors(package, rel(path), path.read_text())]
    assert not errors, "\n".join(errors)


def test_kafka_clients_are_built_only_in_common_kafka() -> None:
    errors = [e for package in PRODUCT for path in sources(package)
              for e in kafka_clients_built(rel(path), path.read_text())]
    assert not errors, "\n".join(errors)


def test_package_files_are_at_most_500_lines() -> None:
    errors = [e for package in LINE_LIMITED for path in sources(package)
              if (e := too_long(rel(path), path.read_text()))]
    assert not errors, "split these files:\n" + "\n".join(errors)


def test_architecture_doc_names_hops_that_exist() -> None:
    assert ARCHITECTURE.exists(), f"{rel(ARCHITECTURE)} is missing"
    hops = hops_in(ARCHITECTURE.read_text())
    # The path of one violation from camera frame to Kafka record crosses these packages.
    assert {"drone_agent", "protocol", "gateway"} <= {h.split(".")[0] for h in hops}, hops
    errors = [e for hop in hops if (e := unresolved(hop))]
    assert not errors, "\n".join(errors)


# -- each rule fires on a bad sample --------------------------------------------------------------


def test_the_scanner_sees_every_kind_of_import() -> None:
    source = (
        "import os.path\nfrom kafka.admin import NewTopic\nfrom . import sibling\n"
        "def f():\n    import hw_sim.camera\n"
        "    importlib.import_module('presacop.stack')\n"
        "    import_module('gateway.records')\n"
        "    __import__('cv2')\n"
        "    importlib.import_module(name)\n"  # not a literal: a plug-in, not an import
        "    importlib.import_module('.relative', __package__)\n"
    )
    assert [(i.module, i.line, i.how) for i in imports_in(source)] == [
        ("os", 1, "import"), ("kafka", 2, "from"), ("hw_sim", 5, "import"),
        ("presacop", 6, "import_module"), ("gateway", 7, "import_module"),
        ("cv2", 8, "__import__")]


BAD_SAMPLES = [
    # (package, file, source, what the error must say)
    ("protocol", "protocol/x.py", "import common.config", "protocol may import only nothing"),
    ("protocol", "protocol/x.py", "import socket", "sans-I/O"),
    ("protocol", "protocol/x.py", "def f():\n    import logging", "sans-I/O"),
    ("common", "common/x.py", "from gateway import records", "common may import only protocol"),
    ("common", "common/x.py", "import paho.mqtt.client", "common is the bottom"),
    ("common", "common/x.py", "import kafka", "Kafka libraries in common/kafka.py"),
    ("drone_agent", "drone_agent/x.py", "from gateway.records import x", "may import only"),
    ("drone_agent", "drone_agent/x.py", "import hw_sim.camera", "may import only"),
    ("drone_agent", "drone_agent/x.py", "from presacop.stack import free_port", "may import only"),
    ("drone_agent", "drone_agent/x.py", "def f():\n    import kafka", "no Kafka client"),
    ("drone_agent", "drone_agent/x.py", "from confluent_kafka import Producer", "no Kafka client"),
    *[("drone_agent", "drone_agent/x.py", f"import {web}", "no web framework") for web in WEB],
    ("gateway", "gateway/x.py", "import cv2", "never touches pixels"),
    ("gateway", "gateway/x.py", "import numpy as np", "never touches pixels"),
    ("gateway", "gateway/x.py", "from drone_agent.outbox import Outbox", "may import only"),
    ("gateway", "gateway/x.py", "import backoffice.console", "may import only"),
    ("hw_sim", "hw_sim/x.py", "from presacop.stack import Stack", "may import only"),
    ("hw_sim", "hw_sim/x.py", "from common.backoff import Backoff", "may import only"),
    ("hw_sim", "hw_sim/x.py", "importlib.import_module('presacop.demo')", "may import only"),
    ("hw_sim", "hw_sim/x.py", "import kafka", "only simulates hardware"),
    ("hw_sim", "hw_sim/x.py", "from gateway import service", "may import only"),
    ("backoffice", "backoffice/x.py", "import drone_agent.agent", "may import only"),
    ("backoffice", "backoffice/x.py", "from presacop.cli import main", "may import only"),
    ("presacop", "presacop/x.py", "import bench._common", "may import only"),
    ("presacop", "presacop/x.py", "from tests.support import wait_until", "nothing imports tests"),
    ("bench", "bench/x.py", "from tests.gateway import gateway_testlib",
     "nothing imports tests"),
    ("tools", "tools/x.py", "__import__('tests.support')", "nothing imports tests"),
]


@pytest.mark.parametrize(("package", "relpath", "source", "says"), BAD_SAMPLES,
                         ids=[f"{p}:{s.splitlines()[-1].strip()}" for p, _, s, _ in BAD_SAMPLES])
def test_layering_rejects_a_bad_import(package: str, relpath: str, source: str,
                                       says: str) -> None:
    errors = layering_errors(package, relpath, source)
    assert len(errors) == 1 and says in errors[0], errors


@pytest.mark.parametrize(("package", "relpath", "source"), [
    ("common", "common/kafka.py", "import kafka\nfrom confluent_kafka import Producer"),
    ("common", "common/x.py", "import tomllib, protocol\nfrom common.merge import deep_merge"),
    ("hw_sim", "hw_sim/x.py", "from drone_agent.hardware import Frame\nimport protocol"),
    ("gateway", "gateway/x.py", "from common.kafka import kafka\nfrom . import records"),
    ("presacop", "presacop/x.py", "import hw_sim.fleet, gateway.cli, backoffice.console"),
    ("bench", "bench/x.py", "import presacop.stack, kafka, numpy"),
])
def test_layering_accepts_what_the_rules_allow(package: str, relpath: str, source: str) -> None:
    assert layering_errors(package, relpath, source) == []


@pytest.mark.parametrize("source", [
    "from kafka import KafkaProducer\np = KafkaProducer(bootstrap_servers='x')",
    "import kafka\ndef f():\n    return kafka.KafkaConsumer('t')",
    "from confluent_kafka import Producer as P\np = P({})",
    "import confluent_kafka as ck\na = ck.AdminClient({})",
    "k = import_kafka()\nadmin = k.KafkaAdminClient()",
])
def test_the_kafka_client_rule_rejects_a_client_built_elsewhere(source: str) -> None:
    errors = kafka_clients_built("gateway/x.py", source)
    assert len(errors) == 1 and "Kafka clients are built in common/kafka.py" in errors[0], errors
    assert kafka_clients_built(KAFKA_BUILDER, source) == []


def test_the_kafka_client_rule_lets_other_calls_be() -> None:
    source = ("from kafka.errors import KafkaError\nfrom common import kafka\n"
              "p = kafka.producer(settings)\nc = Consumer()\nraise KafkaError('x')")
    assert kafka_clients_built("gateway/x.py", source) == []


def test_the_line_limit_rejects_a_long_file() -> None:
    assert too_long("gateway/x.py", "x = 1\n" * MAX_LINES) is None
    assert too_long("gateway/x.py", "x = 1\n" * (MAX_LINES + 1)) == \
        "gateway/x.py: 501 lines (limit 500)"


def test_the_hop_check_rejects_a_hop_that_does_not_exist() -> None:
    doc = ("1. `drone_agent.agent.Agent` reads a frame\n"
           "2. `protocol.encode` then `gateway.no_such_module.route` and "
           "`protocol.NoSuchThing.x`; `os.path.join` and `cfg.value` are not ours\n")
    assert hops_in(doc) == ["drone_agent.agent.Agent", "protocol.encode",
                            "gateway.no_such_module.route", "protocol.NoSuchThing.x"]
    assert unresolved("drone_agent.agent.Agent") is None
    assert unresolved("protocol.encode") is None
    assert "gateway has no attribute 'no_such_module'" in (
        unresolved("gateway.no_such_module.route") or "")
    assert "protocol has no attribute 'NoSuchThing'" in (unresolved("protocol.NoSuchThing.x") or "")
