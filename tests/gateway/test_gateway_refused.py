"""Real Mosquitto + a real Kafka with an authorizer that denies the gateway one topic: the gateway
stops with exit code 3 and a CRITICAL log instead of retrying or dead-lettering, the denied
message stays unacknowledged at the broker, and is delivered once the ACL is fixed
(docs/gateway.md, "When Kafka refuses the gateway"). Both producer backends."""

from __future__ import annotations

from gateway_testlib import BACKENDS, read_ids, telemetry, topic_names, unique, violation

from common import kafka

PRINCIPAL = "User:ANONYMOUS"  # what a PLAINTEXT client is to Kafka's authorizer
AUTHORIZER = {"authorizer.class.name": "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
              "allow.everyone.if.no.acl.found": "true"}


def acls(topic: str) -> list:
    """Everything allowed on `topic` except writing to it."""
    admin = kafka.import_kafka().admin
    pattern = admin.ResourcePattern(admin.ResourceType.TOPIC, topic)
    return [admin.ACL(PRINCIPAL, "*", admin.ACLOperation.ALL, admin.ACLPermissionType.ALLOW,
                      pattern),
            admin.ACL(PRINCIPAL, "*", admin.ACLOperation.WRITE, admin.ACLPermissionType.DENY,
                      pattern)]


def test_kafka_refusing_a_topic_stops_the_gateway_and_keeps_the_message(
        stack, kafka_factory, gateway_factory, publisher_factory):
    broker = kafka_factory(extra_properties=AUTHORIZER)
    admin = kafka.admin(kafka.KafkaSettings(broker.bootstrap))
    pub = publisher_factory(stack.mqtt_host, stack.mqtt_port)
    try:
        for backend in BACKENDS:
            topics = topic_names(unique("acl"))
            drone = unique("acl-")
            denied = acls(topics["violations"])
            admin.create_acls(denied)
            gw = gateway_factory(stack.mqtt_port, broker.bootstrap, topics, drone=drone,
                                 backend=backend).start()
            gw.wait_ready()
            sent = pub.send(telemetry(drone, 1)), pub.send(violation(drone, 2))
            pub.flush()
            assert gw.proc is not None and gw.proc.wait(90) == 3, gw.log_tail()
            critical = [r for r in gw.log_records() if r.get("level") == "CRITICAL"]
            assert critical and "kafka refuses the gateway" in critical[0]["msg"], gw.log_tail()
            assert "authorization" in critical[0]["msg"].lower(), critical[0]["msg"]
            assert read_ids(broker.bootstrap, topics["telemetry"], {sent[0]}) == [sent[0]]
            # The violation was neither acknowledged nor dead-lettered: with the ACL fixed, the
            # same gateway (same client id, same MQTT session) delivers it.
            admin.delete_acls([_filter(denied[1])])
            gw.start()
            assert sent[1] in read_ids(broker.bootstrap, topics["violations"], {sent[1]})
            gw.stop()
    finally:
        admin.close()


def _filter(acl):
    """The ACL filter that matches exactly `acl` (for delete_acls)."""
    admin = kafka.import_kafka().admin
    return admin.ACLFilter(acl.principal, acl.host, acl.operation, acl.permission_type,
                           admin.ResourcePatternFilter(acl.resource_pattern.resource_type,
                                                       acl.resource_pattern.resource_name,
                                                       acl.resource_pattern.pattern_type))
