"""Real Kafka: a record whose produce attempt failed without a verdict is read back before it is
sent again, so it lands exactly once (docs/gateway.md, "Duplicates").

The ambiguity is made deterministic by a wrapper around the real sink (resend_check_child.py,
run as a process of its own like the gateway): each record's first attempt reports a delivery
timeout, either after Kafka really acknowledged it (the answer lost) or without sending it. A
telemetry record (`message-id` header) and an evidence record (no message id: matched by its
bytes) each time; both producer backends. The topics are then read to their end here."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from gateway_testlib import BACKENDS, read_to_end, unique

ROOT = Path(__file__).resolve().parents[2]
CHILD = Path(__file__).with_name("resend_check_child.py")


@pytest.mark.parametrize("mode", ["written", "never-sent"])
@pytest.mark.parametrize("backend", BACKENDS)
def test_an_ambiguous_record_lands_exactly_once(stack, backend, mode):
    prefix = unique("rc")
    run = subprocess.run([sys.executable, str(CHILD), stack.kafka_bootstrap, prefix, backend, mode],
                         capture_output=True, text=True, timeout=150, cwd=ROOT,
                         env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert run.returncode == 0, run.stderr[-3000:]
    result = json.loads(run.stdout.strip().splitlines()[-1])
    assert result["done"] and result["outcomes"] == [None, None], result
    ids = [r.value["message_id"] for r in read_to_end(stack.kafka_bootstrap, f"{prefix}.telemetry")]
    evidence = [r.value["evidence_id"]
                for r in read_to_end(stack.kafka_bootstrap, f"{prefix}.evidence")]
    assert ids == [result["message_id"]] and evidence == [result["evidence_id"]]
    counts = result["counts"]
    if mode == "written":  # found by the read-back: not handed to a producer again
        assert counts.get("found") == 2 and not counts.get("absent"), counts
        assert result["attempts"] == [1, 1]
    else:  # not in Kafka: sent again, once
        assert counts.get("absent") == 2 and not counts.get("found"), counts
        assert result["attempts"] == [2, 2]
