"""The gateway as deployed: over TLS, with a username and the password from the environment.

TLS is the production path (deploy/gateway.toml) and where the gateway's buffered MQTT reads
(gateway/mqtt_wire.py) sit on top of OpenSSL, which hands several MQTT packets per record. A burst
of publishes must all reach Kafka, each once, and be acknowledged. (That buffered bytes are
reported to paho's loop, so none waits for the next select timeout, is checked without TLS in
test_gateway_mqtt_wire.py.)"""

from __future__ import annotations

import subprocess
from pathlib import Path

from gateway_testlib import (
    duplicates,
    metric,
    read_ids,
    telemetry,
    topic_names,
    unique,
    violation,
)

from presacop.stack import free_port

PASSWORD = "gateway secret"
BURST = 3000


def test_gateway_over_tls_with_a_password_delivers_a_burst(
        tmp_path: Path, certs: Path, stack, mosquitto_factory, gateway_factory,
        publisher_factory) -> None:
    passwd = tmp_path / "passwd"
    subprocess.run(["mosquitto_passwd", "-c", "-b", str(passwd), "presacop-gateway", PASSWORD],
                   check=True, capture_output=True, timeout=60)
    tls_port = free_port()
    broker = mosquitto_factory(extra_config="\n".join([
        f"password_file {passwd}",  # the plain listener stays anonymous, for the publisher
        f"listener {tls_port} 127.0.0.1",
        f"cafile {certs / 'ca.pem'}",
        f"certfile {certs / 'server.pem'}",
        f"keyfile {certs / 'server.key'}",
    ]))
    topics = topic_names(unique("tls"))
    drone = unique("tls-")
    gw = gateway_factory(tls_port, stack.kafka_bootstrap, topics, drone=drone,
                         mqtt_extra="\n".join([
                             'username = "presacop-gateway"',
                             f'subscription = "presacop/v1/drones/{drone}/+"',
                             "[tls]",  # [mqtt.tls]; last: the lines after a header belong to it
                             "enabled = true",
                             f'ca_file = "{certs / "ca.pem"}"',
                         ]),
                         env={"PRESACOP_MQTT_PASSWORD": PASSWORD}).start()
    gw.wait_ready()
    assert gw.health()[1]["mqtt_connected"] is True

    pub = publisher_factory(broker.host, broker.port)
    sent = {pub.send(violation(drone, s) if s % 4 == 0 else telemetry(drone, s))
            for s in range(BURST)}
    pub.flush()

    want_v = {m for m in sent if int(m.rpartition(":")[2]) % 4 == 0}
    ids = (read_ids(stack.kafka_bootstrap, topics["violations"], want_v)
           + read_ids(stack.kafka_bootstrap, topics["telemetry"], sent - want_v))
    assert set(ids) == sent
    assert duplicates(ids) == 0
    samples = gw.metrics()
    assert metric(samples, "presacop_gateway_messages_acked_total") == BURST
    assert metric(samples, "presacop_gateway_in_flight") == 0
    assert gw.alive()
