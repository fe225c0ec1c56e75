"""The Spark job on the real Kafka of the `stack` fixture and a real local Spark: the archive
holds every record once, the statistics equal a plain-Python reference, and a restart that
replays an uncommitted batch (a crash after the batch's output, before Spark's commit) counts
nothing twice."""

from __future__ import annotations

import collections
import datetime as dt
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from backoffice_testlib import (
    drone_violations,
    load_config,
    officer_decision,
    produce,
    read_topic,
    topic_size,
    values,
    write_config,
)

from backoffice.areas import borough_of_point
from backoffice.history.ingest import ingest
from backoffice.history.sample import write_sample
from backoffice.stats import aggregates
from backoffice.stats.job import StatsJob
from backoffice.stats.spark import session, stop_session

NY = ZoneInfo("America/New_York")


@pytest.fixture(scope="module")
def spark() -> Iterator[Any]:
    s = session(load_config(None), "local[2]")
    try:
        yield s
    finally:
        stop_session(s)


def run_once(cfg: Any, spark: Any) -> None:
    job = StatsJob(cfg, spark=spark)
    try:
        job.start(once=True)
        job.wait()
    finally:
        job.close()


def reference(violations: list[dict[str, Any]], history: list[dict[str, Any]]) -> dict:
    """The counters of backoffice.stats.aggregates, computed record by record."""
    n: collections.Counter[tuple[str, str, str]] = collections.Counter()
    seen = set()
    for v in violations:
        ident = (v["message_id"], v.get("revision", 0))
        if ident in seen:
            continue
        seen.add(ident)
        local = dt.datetime.fromtimestamp(v["time_ms"] / 1000, NY)
        day = local.date().isoformat()
        if ident[1] == 0:
            n["violations", "drone", ""] += 1
            n["by_hour", "drone", str(local.hour)] += 1
            n["by_borough", "drone", borough_of_point(v["lat_deg"], v["lon_deg"]) or "unknown"] += 1
            n["by_drone", "drone", v["drone_id"]] += 1
            n["by_day", "drone", day] += 1
            if v["code"] is None:
                n["unqualified", "drone", ""] += 1
            else:
                n["by_code", "drone", str(v["code"])] += 1
            continue
        n["officer_decisions", "drone", v["code_status"]] += 1
        if ident[1] == 1:
            wait = v["decided_ms"] - v["received_ms"]
            n["interventions", "drone", ""] += 1
            n["interventions_by_day", "drone", day] += 1
            n["by_code", "drone", str(v["code"])] += 1
            if v["original_code"] is not None:
                n["by_code", "drone", str(v["original_code"])] -= 1
            n["decision_ms_sum", "drone", ""] += wait
            n["decision_ms_count", "drone", ""] += 1
            bucket = next((name for limit, name in aggregates.DECISION_BUCKETS if wait < limit),
                          aggregates.LAST_BUCKET)
            n["decision_bucket", "drone", bucket] += 1
    for h in history:
        n["violations", "history", ""] += 1
        n["by_borough", "history", h["borough"] or "unknown"] += 1
        for stat, field in (("by_code", "violation_code"), ("by_hour", "hour"),
                            ("by_precinct", "violation_precinct")):
            if h[field] is not None:
                n[stat, "history", str(h[field])] += 1
    return {k: c for k, c in n.items() if c}


def stored(cfg: Any) -> dict:
    values_ = aggregates.StatsStore(cfg.stats.stats_dir).load()["values"]
    return {(stat, source, key): c for stat, by_source in values_.items()
            for source, by_key in by_source.items() for key, c in by_key.items() if c}


def archive_counts(spark: Any, cfg: Any) -> dict[str, int]:
    rows = spark.read.parquet(cfg.stats.archive_dir)
    assert rows.select("topic", "partition", "offset").distinct().count() == rows.count()
    return {r["topic"]: r["count"] for r in rows.groupBy("topic").count().collect()}


def uncommit_last_batch(checkpoint: Path) -> None:
    """Forget Spark's commit of the last batch, as a crash right after its output would."""
    last = max(int(p.name) for p in (checkpoint / "commits").iterdir() if p.name.isdigit())
    (checkpoint / "commits" / str(last)).unlink()
    (checkpoint / "commits" / f".{last}.crc").unlink(missing_ok=True)  # Hadoop's checksum


def test_archive_and_statistics_exactly_once_across_a_replayed_restart(stack, spark, tmp_path):
    cfg = load_config(write_config(tmp_path, stack.kafka_bootstrap,
                                   history={"chunk_rows": 500}))
    t = cfg.kafka.topics
    rng = random.Random(17)
    first = drone_violations(rng, 300, 1)
    pending = [v for v in first if v["code"] is None]
    changed = [v for v in first if v["code"] is not None][:12]
    decisions = [officer_decision(v, 21, v["received_ms"] + rng.randint(5_000, 20_000_000))
                 for v in pending + changed]
    decisions.append(officer_decision(changed[0], 38, changed[0]["received_ms"] + 9e6, 2))
    wave1 = first + first[:10] + decisions  # 10 duplicates, as a gateway crash may write them
    produce(cfg, t.violations, [(v["drone_id"], v) for v in wave1])
    produce(cfg, t.telemetry, [("drone-0", {"kind": "telemetry", "seq": i}) for i in range(40)])
    sample = tmp_path / "history.csv"
    write_sample(sample, 1500, seed=2, bad_fraction=0.01)
    ingest(cfg, sample)

    run_once(cfg, spark)
    history = values(read_topic(cfg, cfg.history.topic))
    assert stored(cfg) == reference(wave1, history)
    in_kafka = {topic: topic_size(cfg, topic) for topic in cfg.archived_topics()}
    assert archive_counts(spark, cfg) == {k: v for k, v in in_kafka.items() if v}

    # A crash after the last batch's output and before Spark's commit: the batch is replayed.
    for query in ("archive", "stats"):
        uncommit_last_batch(Path(cfg.stats.checkpoint_dir) / query)
    wave2 = drone_violations(rng, 100, 1000) + first[:5]  # new ones + late duplicates
    produce(cfg, t.violations, [(v["drone_id"], v) for v in wave2])
    run_once(cfg, spark)
    assert stored(cfg) == reference(wave1 + wave2, history)
    in_kafka = {topic: topic_size(cfg, topic) for topic in cfg.archived_topics()}
    assert archive_counts(spark, cfg) == {k: v for k, v in in_kafka.items() if v}

    run_once(cfg, spark)  # nothing new: nothing changes
    assert stored(cfg) == reference(wave1 + wave2, history)


def test_the_store_skips_a_batch_it_already_applied(tmp_path) -> None:
    store = aggregates.StatsStore(tmp_path)
    assert store.apply(0, [("violations", "drone", "", 3)], 1000)
    assert not store.apply(0, [("violations", "drone", "", 3)], 2000)
    assert store.apply(1, [("violations", "drone", "", -1), ("by_code", "drone", "21", 1)])
    state = store.load()
    assert state["batch_id"] == 1 and state["newest_event_ms"] == 1000
    assert state["values"] == {"violations": {"drone": {"": 2}}, "by_code": {"drone": {"21": 1}}}
