"""`presacop stats run`: two Structured Streaming queries over the project's Kafka topics.

    archive   every record of every topic -> Parquet under `stats.archive_dir`, partitioned by
              `topic` and `date` (of the Kafka timestamp, UTC); columns: topic, partition, offset,
              timestamp, key, value, headers, date. Spark's file sink with a checkpoint writes
              each batch exactly once (the `_spark_metadata` log names the committed files).
    stats     violations + history -> the counters of `aggregates`, kept in
              `stats.stats_dir/current.json`, exactly once (batch ids, see `aggregates`).

Both start from the earliest offsets the first time and from their checkpoints
(`stats.checkpoint_dir/{archive,stats}`) afterwards. `once=True` processes what is in Kafka now
(availableNow) and returns; otherwise the job runs until SIGTERM/SIGINT, a statistics
micro-batch every `stats.trigger_s` and an archive one every `stats.archive_trigger_s` (an archive
batch on the same cores delays the statistics batch beside it: measured, docs/statistics.md).

Raises `jars.JarError` (no connector jars), Spark's `StreamingQueryException` when a query fails.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from backoffice import kafka_clients
from backoffice.config import BackofficeConfig

from . import aggregates
from .spark import kafka_options, session, stop_session

log = logging.getLogger("backoffice.stats")


class StatsJob:
    """The running queries; `stop()` ends them (from a signal handler too)."""

    def __init__(self, cfg: BackofficeConfig, master: str | None = None,
                 spark: Any = None) -> None:
        self.cfg = cfg
        self.spark = spark or session(cfg, master)
        self.queries: list[Any] = []
        self.stopping = threading.Event()

    def _stream(self, topics: tuple[str, ...]) -> Any:
        reader = self.spark.readStream.format("kafka")
        for key, value in kafka_options(self.cfg.kafka).items():
            reader = reader.option(key, value)
        return (reader.option("subscribe", ",".join(topics))
                .option("startingOffsets", "earliest")
                .option("includeHeaders", "true")
                .load())

    def start(self, once: bool = False) -> None:
        """Start both queries (topics are created first when `kafka.create_topics`)."""
        from pyspark.sql import functions as F

        cfg = self.cfg
        kafka_clients.ensure_topics(cfg.kafka, cfg.archived_topics())
        checkpoints = cfg.stats.checkpoint_dir.rstrip("/")
        def trigger(seconds: float) -> dict[str, Any]:
            return {"availableNow": True} if once else {"processingTime": f"{seconds} seconds"}
        archive = (self._stream(cfg.archived_topics())
                   .withColumn("date", F.to_date("timestamp")))
        self.queries.append(
            archive.writeStream.queryName("archive").format("parquet")
            .option("path", cfg.stats.archive_dir)
            .option("checkpointLocation", f"{checkpoints}/archive")
            .partitionBy("topic", "date").trigger(**trigger(cfg.stats.archive_trigger_s)).start())
        store = aggregates.StatsStore(cfg.stats.stats_dir)
        facts = aggregates.facts(self.spark, self._stream((cfg.kafka.topics.violations,)),
                                 self._stream((cfg.history.topic,)))
        self.queries.append(
            facts.writeStream.queryName("stats")
            .foreachBatch(lambda batch, batch_id: aggregates.apply_batch(store, batch, batch_id))
            .option("checkpointLocation", f"{checkpoints}/stats")
            .trigger(**trigger(cfg.stats.trigger_s)).start())

    def wait(self) -> None:
        """Until every query ended (availableNow) or `stop()`; re-raises a query's failure."""
        while not self.stopping.is_set() and any(q.isActive for q in self.queries):
            self.spark.streams.awaitAnyTermination(1.0)
            self.spark.streams.resetTerminated()
        for q in self.queries:
            if q.exception() is not None:
                raise q.exception()

    def stop(self) -> None:
        self.stopping.set()

    def close(self) -> None:
        for q in self.queries:
            if q.isActive:
                q.stop()
        self.queries.clear()


def run(cfg: BackofficeConfig, master: str | None = None, once: bool = False) -> None:
    """Run the job (see the module doc) in a new Spark session, stopped at the end."""
    job = StatsJob(cfg, master)
    try:
        job.start(once)
        job.wait()
    finally:
        job.close()
        stop_session(job.spark)
