"""History ingest against the real Kafka of the `stack` fixture: every row once, bad rows
dead-lettered with their line numbers, a kill -9 mid-file resumed without duplicates or loss."""

from __future__ import annotations

import collections
import gzip
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from backoffice_testlib import load_config, read_topic, topic_size, values, write_config

from backoffice.history.ingest import InputError, file_id, ingest
from backoffice.history.records import HEADER
from backoffice.history.sample import generate_lines, write_sample
from tests.support import wait_until

ROOT = Path(__file__).resolve().parents[2]


def bad_lines(rows: int, seed: int, bad_fraction: float) -> set[int]:
    """Line numbers (header = line 1) of the rows the sample spoiled on purpose."""
    return {i + 2 for i, (_, bad) in enumerate(generate_lines(rows, seed=seed,
                                                              bad_fraction=bad_fraction)) if bad}


@pytest.mark.parametrize("backend", ["kafka-python", "confluent"])
def test_every_row_once_and_bad_rows_dead_lettered_with_line_numbers(stack, tmp_path,
                                                                     backend) -> None:
    cfg = load_config(write_config(tmp_path, stack.kafka_bootstrap, kafka={"backend": backend}))
    sample = tmp_path / "violations.csv.gz"
    write_sample(sample, 4000, seed=3, bad_fraction=0.01)
    summary = ingest(cfg, sample)

    expected_bad = bad_lines(4000, 3, 0.01)
    history = values(read_topic(cfg, cfg.history.topic))
    assert summary.sent == len(history) == 4000 - len(expected_bad)
    assert len({r["summons_number"] for r in history}) == len(history)
    assert {r["source_line"] for r in history}.isdisjoint(expected_bad)
    assert all(r["source_file_id"] == file_id(sample) for r in history)
    dead = [r for r in values(read_topic(cfg, cfg.kafka.topics.deadletter))
            if r.get("source") == "history"]
    assert sorted(r["line"] for r in dead) == sorted(expected_bad)
    assert {r["reason"] for r in dead} <= {"missing_summons", "bad_date", "column_count",
                                           "bad_code", "bad_summons"}
    assert summary.bad == len(dead) and sum(summary.bad_by_reason.values()) == len(dead)


def test_records_are_keyed_by_summons_number_with_headers(stack, tmp_path) -> None:
    cfg = load_config(write_config(tmp_path, stack.kafka_bootstrap))
    sample = tmp_path / "v.csv"
    write_sample(sample, 50, seed=4, bad_fraction=0)
    ingest(cfg, sample)
    for r in read_topic(cfg, cfg.history.topic):
        value = json.loads(r.value)
        headers = dict(r.headers)
        assert r.key.decode() == value["summons_number"]
        assert headers["record-type"] == b"history"
        assert headers["source-line"] == str(value["source_line"]).encode()


def test_hand_written_quirks_blank_and_overlong_lines(stack, tmp_path) -> None:
    cfg = load_config(write_config(tmp_path, stack.kafka_bootstrap,
                                   history={"max_line_bytes": 2000}))
    row = dict.fromkeys(HEADER, "")
    row.update({"Summons Number": "1111111111", "Issue Date": "07/14/2023",
                "Violation Code": "21", "Violation Time": "1143P", "Violation County": "BX"})
    good = ",".join(row[h] for h in HEADER)
    stray = good.replace("1111111111", "2222222222").replace(",1143P,", ',"1143P,')
    path = tmp_path / "quirks.csv"
    path.write_text("\n".join([",".join(HEADER), good, "", stray, "x" * 5000,
                               good.replace("1111111111", "3333333333")]) + "\n")
    summary = ingest(cfg, path)
    history = {r["summons_number"]: r for r in values(read_topic(cfg, cfg.history.topic))}
    assert sorted(history) == ["1111111111", "2222222222", "3333333333"]
    assert history["2222222222"]["violation_time"] == "23:43"
    assert history["1111111111"]["borough"] == "Bronx"
    dead = values(read_topic(cfg, cfg.kafka.topics.deadletter))
    assert [(d["line"], d["reason"], d["payload_truncated"]) for d in dead] == [
        (5, "line_too_long", False)]
    assert (summary.blank, summary.sent, summary.bad) == (1, 3, 1)


def test_not_the_data_sets_header_is_refused(stack, tmp_path) -> None:
    cfg = load_config(write_config(tmp_path, stack.kafka_bootstrap))
    path = tmp_path / "other.csv"
    path.write_text("a,b,c\n1,2,3\n")
    with pytest.raises(InputError, match="line 1"):
        ingest(cfg, path)
    assert topic_size(cfg, cfg.history.topic) == 0


def test_a_finished_file_is_not_sent_twice(stack, tmp_path) -> None:
    cfg = load_config(write_config(tmp_path, stack.kafka_bootstrap))
    sample = tmp_path / "v.csv"
    write_sample(sample, 300, seed=6, bad_fraction=0)
    ingest(cfg, sample)
    assert ingest(cfg, sample).already_done
    assert topic_size(cfg, cfg.history.topic) == 300


def test_kill_9_mid_file_and_resume_sends_every_summons_once(stack, tmp_path) -> None:
    rows = 30000
    config = write_config(tmp_path, stack.kafka_bootstrap, history={"chunk_rows": 3000})
    cfg = load_config(config)
    sample = tmp_path / "big.csv.gz"
    write_sample(sample, rows, seed=9, bad_fraction=0.002)
    ckpt = Path(cfg.history.state_dir) / f"{file_id(sample)}.json"
    cmd = [sys.executable, "-m", "presacop.cli", "history", "ingest", str(sample),
           "-c", str(config)]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    with (tmp_path / "first-run.log").open("w") as log:
        proc = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=log, stderr=log)
    try:
        def between_checkpoints() -> bool:
            # Kill once a chunk is checkpointed and part of the next one is already in Kafka:
            # the resume must skip exactly those records.
            if not ckpt.exists():
                return False
            sent = json.loads(ckpt.read_text())["totals"].get("sent", 0)
            return sent > 0 and topic_size(cfg, cfg.history.topic) > sent + 100
        wait_until(between_checkpoints, 120, "a checkpoint, then more records in Kafka")
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(30)
    state = json.loads(ckpt.read_text())
    assert not state["done"] and state["next_line"] < rows
    in_kafka = topic_size(cfg, cfg.history.topic)
    # Usually a partial chunk lies past the checkpoint (the predicate saw one); the ingest may
    # still have checkpointed it between the predicate and the kill (seen in CI: 5989 == 5989,
    # then 0 skipped). Either way the resume below must send every summons exactly once.
    assert in_kafka >= state["totals"]["sent"]
    # What the resume must find and skip: every record of either topic past the offsets the
    # checkpoint saved (zero when the kill came just after a checkpoint).
    past_checkpoint = sum(topic_size(cfg, topic) - sum(state["offsets"].get(topic, {}).values())
                          for topic in (cfg.history.topic, cfg.kafka.topics.deadletter))

    done = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "resumed at line" in done.stdout

    expected_bad = bad_lines(rows, 9, 0.002)
    history = values(read_topic(cfg, cfg.history.topic))
    counts = collections.Counter(r["summons_number"] for r in history)
    assert [s for s, n in counts.items() if n > 1] == []
    assert len(counts) == rows - len(expected_bad)
    dead = values(read_topic(cfg, cfg.kafka.topics.deadletter))
    assert sorted(d["line"] for d in dead) == sorted(expected_bad)
    summary_skipped = int(done.stdout.split(" already in Kafka")[0].rsplit(" ", 1)[-1]
                          .replace(",", ""))
    assert summary_skipped == past_checkpoint


def test_gzip_and_plain_give_the_same_records(stack, tmp_path) -> None:
    cfg = load_config(write_config(tmp_path, stack.kafka_bootstrap))
    plain = tmp_path / "v.csv"
    write_sample(plain, 500, seed=8)
    packed = tmp_path / "v.csv.gz"
    packed.write_bytes(gzip.compress(plain.read_bytes()))
    ingest(cfg, plain)
    ingest(cfg, packed)
    by_file = collections.defaultdict(list)
    for r in values(read_topic(cfg, cfg.history.topic)):
        by_file[r.pop("source_file_id")].append(
            {k: v for k, v in r.items() if k not in ("ingested_ms", "source_file")})
    a, b = by_file.values()
    key = lambda r: r["source_line"]  # noqa: E731
    assert sorted(a, key=key) == sorted(b, key=key)
