"""The gateway's config and CLI: defaults, errors that name the key (exit 2), --check-config,
environment overrides for secrets, and the docs that must match the code."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest
from gateway_testlib import PRESACOP

import protocol
from common.config import ConfigError
from gateway import config as gwconfig
from gateway.config import GatewayConfig, load_config

ROOT = Path(__file__).resolve().parents[2]


def check(path: Path | None, *, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    args = [PRESACOP, "gateway", "--check-config"]
    if path is not None:
        args += ["--config", str(path)]
    return subprocess.run(args, capture_output=True, text=True, timeout=60,
                          env={"PATH": "/usr/bin:/bin", **(env or {})})


def test_defaults_target_the_local_dev_stack():
    cfg = load_config(None, env={})
    assert (cfg.mqtt.host, cfg.mqtt.port) == ("127.0.0.1", 11883)
    assert cfg.kafka.bootstrap_servers == "127.0.0.1:19092"
    assert cfg.mqtt.subscription == protocol.SUBSCRIPTION
    assert cfg.kafka.topics.all() == ("presacop.telemetry", "presacop.violations",
                                      "presacop.alerts", "presacop.deadletter",
                                      "presacop.evidence")
    assert cfg == GatewayConfig()
    assert cfg.mqtt.effective_client_id().startswith("presacop-gateway-")


@pytest.mark.parametrize(("toml", "key"), [
    ("[mqtt]\nprot = 1883\n", "mqtt.prot"),
    ("[mqtt]\nport = 70000\n", "mqtt.port"),
    ("[mqtt]\nport = \"1883\"\n", "mqtt.port"),
    ("[mqtt]\nshare_group = \"a/b\"\n", "mqtt.share_group"),
    ("[mqtt]\nsubscription = \"$share/x/y\"\n", "mqtt.subscription"),
    ("[mqtt]\nreceive_maximum = 2000\n", "mqtt.receive_maximum"),
    ("[mqtt]\nreconnect_min_s = 5.0\nreconnect_max_s = 1.0\n", "mqtt.reconnect_max_s"),
    ("[kafka.topics]\nalerts = \"bad topic\"\n", "kafka.topics.alerts"),
    ("[kafka.topics]\nalerts = \"presacop.telemetry\"\n", "kafka.topics"),
    ("[kafka.producer]\nmax_in_flight = 6\n", "kafka.producer.max_in_flight"),
    ("[kafka.producer]\ncompression_type = \"brotli\"\n", "kafka.producer.compression_type"),
    ("[kafka]\nsecurity_protocol = \"SASL_SSL\"\n", "kafka.sasl_mechanism"),
    ("[metrics]\naddress = \"9464\"\n", "metrics.address"),
    ("[log]\nformat = \"xml\"\n", "log.format"),
    ("[nonsense]\n", "nonsense"),
])
def test_bad_config_is_rejected_naming_the_key(tmp_path: Path, toml: str, key: str):
    path = tmp_path / "gateway.toml"
    path.write_text(toml)
    with pytest.raises(ConfigError) as err:
        load_config(path, env={})
    assert err.value.key == key
    result = check(path)
    assert result.returncode == 2
    assert f"{key}:" in result.stderr and str(path) in result.stderr


def test_check_config_prints_the_effective_config_and_redacts_secrets(tmp_path: Path):
    path = tmp_path / "gateway.toml"
    path.write_text('[mqtt]\nport = 1884\nusername = "gw"\n')
    result = check(path, env={"PRESACOP_MQTT_PASSWORD": "s3cret"})
    assert result.returncode == 0, result.stderr
    shown = json.loads(result.stdout)
    assert shown["mqtt"]["port"] == 1884 and shown["mqtt"]["password"] == "***"
    assert "s3cret" not in result.stdout


def test_password_comes_from_the_environment(tmp_path: Path):
    path = tmp_path / "gateway.toml"
    path.write_text('[mqtt]\npassword = "from-file"\n')
    assert load_config(path, env={}).mqtt.password == "from-file"
    env = {"PRESACOP_MQTT_PASSWORD": "from-env", "PRESACOP_KAFKA_SASL_PASSWORD": "k"}
    cfg = load_config(path, env=env)
    assert cfg.mqtt.password == "from-env" and cfg.kafka.sasl_password == "k"


def test_missing_config_file_exits_2():
    result = check(Path("/nonexistent/gateway.toml"))
    assert result.returncode == 2 and "file not found" in result.stderr


def test_sample_config_is_valid_and_documented_defaults_match():
    sample = load_config(ROOT / "deploy" / "gateway.toml", env={})
    assert sample.log.format == "json"
    assert sample.mqtt.receive_maximum <= sample.limits.max_in_flight


def test_config_reference_in_docs_matches_the_code():
    doc = (ROOT / "docs" / "gateway.md").read_text()
    match = re.search(r"<!-- config-table:start -->\n(.*?)<!-- config-table:end -->", doc, re.S)
    assert match, "docs/gateway.md lacks the config-table markers"
    assert match.group(1) == gwconfig.reference_markdown(), (
        "docs/gateway.md is stale; regenerate the table with: .venv/bin/python -c "
        "'from gateway.config import reference_markdown as r; print(r(), end=\"\")'")


def test_kafka_records_doc_lists_every_field():
    """Every field of every record the gateway builds has a row in docs/kafka-records.md."""
    from gateway_testlib import status, telemetry, violation

    from gateway.records import Receipt
    from gateway.router import RouteSettings, route

    doc = (ROOT / "docs" / "kafka-records.md").read_text()
    documented = set(re.findall(r"^\| `([a-z0-9_]+)` \|", doc, re.M))
    settings = RouteSettings(GatewayConfig().kafka.topics)
    built: list[dict] = []
    for m in (telemetry("d", 1), violation("d", 2, code=None), status("d", 3)):
        t = protocol.topic("d", protocol.kind_of(m))
        built += [json.loads(r.value) for r in route(t, protocol.encode(m), Receipt(t, 1, "g"),
                                                     settings).records]
    built.append(json.loads(route("x", b"", Receipt("x", 1, "g"), settings).records[0].value))
    from gateway import records

    built.append(records.resolved_alert(built[2], 21, officer="o", now_ms=2))
    built.append(records.corrected_violation(built[1], 21, officer="o", now_ms=2))
    fields = {k for value in built for k in value}
    assert fields - documented == set()
    for code in protocol.ERROR_CODES:
        assert f"`{code}`" in doc, code
    for reason in ("internal_error", "kafka_rejected"):
        assert f"`{reason}`" in doc, reason


def test_systemd_unit_verifies(tmp_path: Path):
    unit = ROOT / "deploy" / "systemd" / "presacop-gateway.service"
    text = unit.read_text()
    for needed in ("Type=notify", "WatchdogSec=", "Restart=on-failure", "NoNewPrivileges=yes",
                   "ProtectSystem=strict", "EnvironmentFile="):
        assert needed in text, needed
    analyze = Path("/usr/bin/systemd-analyze")
    if not analyze.exists():
        pytest.fail("systemd-analyze is not installed: apt-get install systemd")
    # verify resolves ExecStart: point it at a binary that exists on this machine.
    copy = tmp_path / "presacop-gateway.service"
    copy.write_text(re.sub(r"^ExecStart=\S+", f"ExecStart={PRESACOP}", text, flags=re.M))
    result = subprocess.run([str(analyze), "verify", str(copy)], capture_output=True,
                            text=True, timeout=60)
    problems = [line for line in (result.stdout + result.stderr).splitlines()
                if "presacop-gateway.service" in line]
    assert result.returncode == 0 and not problems, result.stdout + result.stderr


def test_metrics_port_in_use_exits_2_naming_the_key(tmp_path: Path):
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        path = tmp_path / "gateway.toml"
        path.write_text(f'[metrics]\naddress = "127.0.0.1:{port}"\n[mqtt]\nport = 1\n'
                        '[kafka]\nbootstrap_servers = "127.0.0.1:1"\n')
        result = subprocess.run([PRESACOP, "gateway", "--config", str(path)],
                                capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "metrics.address" in result.stderr and "cannot listen" in result.stderr
