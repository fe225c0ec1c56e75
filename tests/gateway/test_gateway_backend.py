"""`kafka.backend`: "auto" (the default) picks confluent-kafka where it is importable, else
kafka-python; explicit values are honoured; the choice is visible in /metrics and /healthz.
Building connects to nothing, so no broker is needed here (the delivery and Kafka-outage tests
run both backends against real brokers)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from prometheus_client.exposition import generate_latest

from common.config import ConfigError
from gateway import config as gwconfig
from gateway import factory
from gateway.config import GatewayConfig, KafkaConfig, load_config
from gateway.service import Gateway


def config(tmp_path: Path, backend: str) -> GatewayConfig:
    text = (f'[kafka]\nbackend = "{backend}"\n[metrics]\naddress = ""\n'
            f'[evidence]\nstaging_dir = "{tmp_path / "staging"}"\n'
            f'[evidence.store]\npath = "{tmp_path / "store"}"\n')
    path = tmp_path / "gateway.toml"
    path.write_text(text)
    return load_config(path, env={})


def test_auto_is_the_default_and_takes_confluent_when_installed():
    assert GatewayConfig().kafka.backend == "auto"
    assert KafkaConfig().effective_backend() == "confluent"  # the dev extra installs it


def test_auto_falls_back_to_kafka_python_without_confluent(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(gwconfig, "_confluent_installed", lambda: False)
    assert KafkaConfig().effective_backend() == "kafka-python"
    sink = factory.make_sink(KafkaConfig(), "gw-test")
    assert type(sink).__name__ == "KafkaPythonSink"


@pytest.mark.parametrize("backend", ["kafka-python", "confluent"])
def test_an_explicit_backend_is_honoured(backend: str):
    assert dataclasses.replace(KafkaConfig(), backend=backend).effective_backend() == backend


def test_explicit_confluent_without_the_package_is_refused_naming_the_key(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(gwconfig, "_confluent_installed", lambda: False)
    path = tmp_path / "gateway.toml"
    path.write_text('[kafka]\nbackend = "confluent"\n')
    with pytest.raises(ConfigError) as err:
        load_config(path, env={})
    assert err.value.key == "kafka.backend"


@pytest.mark.parametrize(("backend", "sink", "shown"), [
    ("auto", "ConfluentSink", "confluent"),
    ("kafka-python", "KafkaPythonSink", "kafka-python"),
])
def test_the_built_gateway_uses_and_shows_its_backend(
        tmp_path: Path, backend: str, sink: str, shown: str):
    cfg = config(tmp_path, backend)
    assert type(factory.make_sink(cfg.kafka, "gw-test")).__name__ == sink
    gateway: Gateway = factory.build(cfg)
    scrape = generate_latest(gateway.metrics.registry).decode()
    assert f'presacop_gateway_kafka_backend{{backend="{shown}"}} 1.0' in scrape
    assert gateway.health()[1]["kafka_backend"] == shown
