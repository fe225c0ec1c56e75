"""The Kafka health probe: one owned thread, `gateway-kafka-health`, asks the cluster every
`interval_s` whether it answers, so `kafka_up` and `/healthz` move also when nothing is being
produced. The check itself is the sink's (`Sink.probe`: an admin request, kafka_admin.py).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

log = logging.getLogger("gateway.kafka")


class HealthProbe:
    """Calls `probe()` every `interval_s` and `on_result(ok)` after each; `close()` at the end."""

    def __init__(self, probe: Callable[[], None], close: Callable[[], None], interval_s: float,
                 on_result: Callable[[bool], None]) -> None:
        self._probe = probe
        self._close = close
        self._interval_s = interval_s
        self._on_result = on_result
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="gateway-kafka-health",
                                        daemon=True)

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread.ident is None:  # never started
            return
        self._thread.join(timeout)
        if self._thread.is_alive():
            log.error("kafka health probe did not stop within %.0f s", timeout)

    def _loop(self) -> None:
        try:
            while not self._stop.is_set():
                try:
                    self._probe()
                    ok = True
                except Exception as exc:  # whatever the failure, Kafka is not usable now
                    log.debug("kafka probe failed: %s", exc)
                    ok = False
                self._on_result(ok)
                self._stop.wait(self._interval_s)
        finally:
            self._close()
