"""common.kafka: the one place Kafka clients are built, with the configured security settings."""

from __future__ import annotations

import subprocess
import sys

import pytest

from common import kafka
from gateway.config import KafkaConfig


def test_settings_of_a_config_carry_every_security_setting_to_both_libraries():
    cfg = KafkaConfig(bootstrap_servers="k1:9093, k2:9093", security_protocol="SASL_SSL",
                      sasl_mechanism="SCRAM-SHA-512", sasl_username="gw",
                      sasl_password="secret", ssl_ca_file="/ca.pem",
                      ssl_cert_file="/c.pem", ssl_key_file="/k.pem")
    s = kafka.KafkaSettings.of(cfg)
    assert s.kafka_python() == {
        "bootstrap_servers": ["k1:9093", "k2:9093"], "security_protocol": "SASL_SSL",
        "sasl_mechanism": "SCRAM-SHA-512", "sasl_plain_username": "gw",
        "sasl_plain_password": "secret", "ssl_cafile": "/ca.pem", "ssl_certfile": "/c.pem",
        "ssl_keyfile": "/k.pem"}
    assert s.librdkafka() == {
        "bootstrap.servers": "k1:9093,k2:9093", "security.protocol": "SASL_SSL",
        "sasl.mechanism": "SCRAM-SHA-512", "sasl.username": "gw", "sasl.password": "secret",
        "ssl.ca.location": "/ca.pem", "ssl.certificate.location": "/c.pem",
        "ssl.key.location": "/k.pem"}
    assert "secret" not in repr(s)


def test_plaintext_settings_add_nothing_but_the_servers():
    s = kafka.KafkaSettings("127.0.0.1:19092")
    assert s.kafka_python() == {"bootstrap_servers": ["127.0.0.1:19092"],
                                "security_protocol": "PLAINTEXT"}


@pytest.mark.parametrize(("kwargs", "words"), [
    ({"bootstrap_servers": " , "}, "bootstrap_servers"),
    ({"security_protocol": "TLS"}, "security_protocol"),
    ({"security_protocol": "SASL_SSL"}, "sasl_mechanism"),
])
def test_settings_that_cannot_work_are_refused_by_name(kwargs, words):
    with pytest.raises(ValueError, match=words):
        kafka.KafkaSettings(**kwargs)


def test_the_quiet_import_is_the_kafka_package_with_its_errors():
    k = kafka.import_kafka()
    assert k.__name__ == "kafka" and k.errors.KafkaTimeoutError.retriable
    assert kafka.import_kafka() is k


def test_failed_admin_attempts_leak_no_threads():
    """kafka-python 3.0 leaves an I/O thread behind when an admin client cannot bootstrap;
    `admin` stops it, or a long Kafka outage would pile up one thread per probe. Run in a child:
    kafka-python also leaves the refused sockets to the garbage collector (ResourceWarning)."""
    script = (
        "import threading\n"
        "from common import kafka\n"
        "s = kafka.KafkaSettings('127.0.0.1:1')\n"
        "kafka.import_kafka()\n"
        "before = threading.active_count()\n"
        "for _ in range(2):\n"
        "    try:\n"
        "        kafka.admin(s, bootstrap_timeout_ms=500)\n"
        "    except Exception as exc:\n"
        "        assert 'bootstrap' in str(exc).lower() or 'broker' in str(exc).lower(), exc\n"
        "    else:\n"
        "        raise SystemExit('an admin client bootstrapped against nothing')\n"
        "print(before, threading.active_count())\n"
    )
    out = subprocess.run([sys.executable, "-W", "ignore", "-c", script], capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    before, after = map(int, out.stdout.split())
    assert after == before
