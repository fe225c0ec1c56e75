"""The back office's configuration (`backoffice.toml`), read with `common.config.load`.

    [kafka]    the gateway's Kafka table (bootstrap, security, topics...): the same keys, so one
               cluster's settings are written once and both sides build clients the same way
    [history]  the history topic, where ingest checkpoints live, chunk size
    [stats]    the Spark job: master, archive and checkpoint paths, trigger interval, topics read

Every key has a default that works against `presacop stack up`. Raises `ConfigError` naming the key.
"""

from __future__ import annotations

import dataclasses
import re
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Literal

from common.config import ConfigError, describe, field, load
from gateway.config import KafkaConfig

_TOPIC = re.compile(r"^[A-Za-z0-9._-]{1,249}$")


def _topic(v: str) -> str | None:
    return None if _TOPIC.match(v) else "not a valid Kafka topic name"


def _not_negative(v: int) -> str | None:
    return None if v >= 0 else "must be >= 0"


def _positive(v: float) -> str | None:
    return None if v > 0 else "must be > 0"


@dataclasses.dataclass(frozen=True)
class HistoryConfig:
    topic: str = field("presacop.history", doc="Normalized NYPD history records.", check=_topic)
    state_dir: str = field(".state/history",
                           doc="Ingest checkpoints, one JSON file per input file.")
    chunk_rows: int = field(20000, doc="Rows sent between two checkpoints (and the most a resume "
                            "re-reads from Kafka to skip).", check=_positive)
    linger_ms: int = field(20, doc="Producer batching delay for the bulk load.", check=_positive)
    batch_size: int = field(262144, doc="Producer batch size, bytes.", check=_positive)
    compression_type: Literal["none", "gzip"] = field(
        "none", doc="Producer compression (gzip: ~4x smaller on the wire, more CPU per row).")
    max_line_bytes: int = field(65536, doc="Longer lines are dead-lettered (`line_too_long`).",
                                check=_positive)
    parsers: int = field(1, doc="Processes that parse lines beside the one that sends them (0: "
                         "parse in the sending process; more than the cores left over by Kafka "
                         "does not help).", check=_not_negative)


@dataclasses.dataclass(frozen=True)
class StatsConfig:
    master: str = field("local[2]", doc="Spark master URL (`--master` overrides).")
    archive_dir: str = field(".state/archive", doc="Parquet archive root (a local path or any "
                             "Hadoop URI, e.g. s3a://bucket/archive).")
    stats_dir: str = field(".state/stats", doc="Statistics tables (Parquet), read by the report.")
    checkpoint_dir: str = field(".state/spark-checkpoints", doc="Structured Streaming "
                                "checkpoints: keep them, or the archive is written twice.")
    trigger_s: float = field(2.0, doc="Micro-batch interval of the statistics query of `stats "
                             "run` (continuous mode): the event -> statistic delay.",
                             check=_positive)
    archive_trigger_s: float = field(10.0, doc="Micro-batch interval of the archive query: "
                                     "longer than `trigger_s`, so archive batches seldom compete "
                                     "with a statistics batch and Parquet files are fewer and "
                                     "larger.", check=_positive)
    shuffle_partitions: int = field(2, doc="spark.sql.shuffle.partitions: about the cores "
                                    "(local[2]: 2; a cluster: 2-3x its executor cores).",
                                    check=_positive)


@dataclasses.dataclass(frozen=True)
class BackofficeConfig:
    kafka: KafkaConfig = dataclasses.field(default_factory=KafkaConfig)
    history: HistoryConfig = dataclasses.field(default_factory=HistoryConfig)
    stats: StatsConfig = dataclasses.field(default_factory=StatsConfig)

    def archived_topics(self) -> tuple[str, ...]:
        """Every topic the archive keeps: the gateway's (`kafka.topics.*`) and history."""
        return (*self.kafka.topics.all(), self.history.topic)


def load_config(path: str | Path | None, env: Mapping[str, str] | None = None) -> BackofficeConfig:
    """Read backoffice.toml (None: defaults); raises ConfigError naming the key."""
    return load(BackofficeConfig, path, env)


def load_for_cli(path: str | None, prog: str) -> BackofficeConfig | None:
    """The config for a command, or None after printing `<prog>: bad config: ...` to stderr."""
    try:
        return load_config(path)
    except ConfigError as exc:
        print(f"{prog}: bad config: {exc}", file=sys.stderr)
        return None


def reference_markdown() -> str:
    """The [history] and [stats] tables of docs/statistics.md, generated from the dataclasses."""
    rows = describe(HistoryConfig, "history.") + describe(StatsConfig, "stats.")
    lines = ["| key | type | default | meaning |", "| --- | --- | --- | --- |"]
    lines += [f"| `{key}` | {typ} | `{default}` | {doc} |" for key, typ, default, doc in rows]
    return "\n".join(lines) + "\n"
