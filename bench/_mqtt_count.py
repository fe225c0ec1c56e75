"""The MQTT limit (private helper of bench/gateway.py): a paho subscriber that only counts.

    _mqtt_count.py HOST PORT CLIENT_ID FILTER COUNT

QoS 1, persistent session (like the bridges), automatic PUBACK. Each message is kept as
(receive time, topic, payload) and nothing else is done with it until the parent asks. stdout
lines: "ready" once subscribed, "done" after COUNT messages. On the stdin line "report" it
prints "report <json>": count, duplicates, first/last receive time (s), and per message id its
first receive time (wall-clock ms), which it decodes only then (decoding is not part of what is
measured; the topic is needed because it carries the drone id and kind). The parent subtracts
the publishers' own publish times.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def main() -> int:
    import paho.mqtt.client as mqtt

    host, port, client_id, topic_filter, count = sys.argv[1:6]
    want = int(count)
    got: list[tuple[int, str, bytes]] = []

    def on_connect(client: Any, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        if not reason.is_failure:
            client.subscribe(topic_filter, qos=1)

    def on_subscribe(_c: Any, _u: Any, _mid: int, _codes: Any, _p: Any) -> None:
        print("ready", flush=True)

    def on_message(_c: Any, _u: Any, msg: Any) -> None:
        got.append((time.time_ns(), msg.topic, msg.payload))
        if len(got) == want:
            print("done", flush=True)

    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id,
                         protocol=mqtt.MQTTv311, clean_session=False)
    client.on_connect, client.on_subscribe, client.on_message = on_connect, on_subscribe, on_message
    client.connect(host, int(port), keepalive=60)
    client.loop_start()
    for line in sys.stdin:
        if line.strip() == "report":
            break
    client.disconnect()
    client.loop_stop()
    print("report " + json.dumps(report(list(got))), flush=True)
    return 0


def report(got: list[tuple[int, str, bytes]]) -> dict[str, Any]:
    import protocol

    ids: dict[str, float] = {}
    dup = 0
    for received_ns, topic, payload in got:
        mid = protocol.message_id(protocol.decode(payload, topic))
        if mid in ids:
            dup += 1
        else:
            ids[mid] = received_ns / 1e6
    return {"count": len(got), "duplicates": dup,
            "first": got[0][0] / 1e9 if got else None, "last": got[-1][0] / 1e9 if got else None,
            "received_ms": ids}


if __name__ == "__main__":
    sys.exit(main())
