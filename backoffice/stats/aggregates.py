"""The statistics: violations and history -> additive counters, kept exactly once.

Each micro-batch of the violations and history topics becomes a handful of counter deltas
`(stat, source, key, delta)`; the driver adds them to the current totals and replaces the
statistics file (`stats_dir/current.json`) atomically, recording the batch id. Spark replays a
batch it had not committed with the same id and the same records after a crash: a batch id at or
below the file's is skipped, so nothing is counted twice. Violations are deduplicated on
(`message_id`, `revision`) within `DEDUPE_WINDOW` of Kafka time (the gateway's rare duplicates),
in Spark state kept in the checkpoint.

Counters (source `drone` or `history`; `key` is a string; see docs/statistics.md):

    violations        ""            drone: revision-0 records; history: rows
    by_code           code          current code: the drone's, or the officer's at revision 1
    by_hour           0..23         hour of day, New York time
    by_borough        borough       drone: areas.borough_of_point; history: county/precinct
    by_precinct       precinct      history only
    by_drone          drone id      drone only
    by_day            YYYY-MM-DD    drone only: violations per day (New York date)
    unqualified       ""            drone: revision-0 records without a code
    officer_decisions code_status   drone: officer_set / officer_changed records, all revisions
    interventions     ""            drone: first officer decisions (revision 1)
    interventions_by_day  day       drone: revision 1 by the violation's day
    decision_ms_sum, decision_ms_count   ""   drone: decided_ms - received_ms at revision 1
    decision_bucket   "<1m".."4h+"  drone: the same, bucketed

Raises OSError when the statistics file cannot be written (the batch then fails and Spark retries
it from its checkpoint).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from backoffice.areas import borough_of_point

DEDUPE_WINDOW = "24 hours"
TZ = "America/New_York"
DECISION_BUCKETS = ((60_000, "<1m"), (300_000, "1-5m"), (900_000, "5-15m"),
                    (3_600_000, "15-60m"), (14_400_000, "1-4h"))
LAST_BUCKET = "4h+"

_VIOLATION_FIELDS = (("message_id", "string"), ("drone_id", "string"), ("time_ms", "long"),
                     ("lat_deg", "double"), ("lon_deg", "double"), ("code", "int"),
                     ("code_status", "string"), ("revision", "int"), ("original_code", "int"),
                     ("decided_ms", "long"), ("received_ms", "long"))
_HISTORY_FIELDS = (("violation_code", "int"), ("hour", "int"), ("borough", "string"),
                   ("violation_precinct", "int"))


class StatsStore:
    """The statistics file: totals per (stat, source, key) and the last batch id applied."""

    def __init__(self, directory: str | Path) -> None:
        self.path = Path(directory) / "current.json"

    def load(self) -> dict[str, Any]:
        """{"batch_id": int (-1: none), "updated_ms", "values": {stat: {source: {key: n}}}}."""
        try:
            return json.loads(self.path.read_text())
        except FileNotFoundError:
            return {"batch_id": -1, "updated_ms": 0, "values": {}}

    def apply(self, batch_id: int, rows: list[tuple[str, str, str, int]],
              newest_ms: int | None = None) -> bool:
        """Add `rows` (stat, source, key, delta) unless `batch_id` is already in; True if added."""
        current = self.load()
        if batch_id <= current["batch_id"]:
            return False
        values = current["values"]
        for stat, source, key, delta in rows:
            bucket = values.setdefault(stat, {}).setdefault(source, {})
            bucket[key] = bucket.get(key, 0) + delta
        current.update(batch_id=batch_id, updated_ms=int(time.time() * 1000), values=values)
        if newest_ms is not None:
            current["newest_event_ms"] = max(newest_ms, current.get("newest_event_ms", 0))
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        with tmp.open("w") as fh:
            json.dump(current, fh, sort_keys=True)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self.path)
        return True


def facts(spark: Any, violations: Any, history: Any) -> Any:
    """One streaming DataFrame of (stat, source, key, delta, kafka_ms) from the two Kafka streams
    (`topic`, `value`, `timestamp` columns as Spark's Kafka source gives them)."""
    from pyspark.sql import functions as F

    v = _parse(violations, _VIOLATION_FIELDS)
    v = (v.withColumn("rev", F.coalesce("revision", F.lit(0)))
         .withWatermark("timestamp", DEDUPE_WINDOW)
         .dropDuplicatesWithinWatermark(["message_id", "rev"]))
    h = _parse(history, _HISTORY_FIELDS)
    return _drone_facts(v).unionByName(_history_facts(h))


def _parse(stream: Any, fields: tuple[tuple[str, str], ...]) -> Any:
    from pyspark.sql import functions as F

    schema = ", ".join(f"{name} {typ}" for name, typ in fields)
    return (stream.select(F.from_json(F.col("value").cast("string"), schema).alias("r"),
                          "timestamp")
            .select("r.*", "timestamp"))


def _fact(stat: str, key: Any, cond: Any, delta: Any = 1) -> Any:
    from pyspark.sql import functions as F

    value = F.struct(F.lit(stat).alias("stat"), key.cast("string").alias("key"),
                     F.lit(delta).cast("long").alias("delta") if isinstance(delta, int)
                     else delta.cast("long").alias("delta"))
    return F.when(cond, value)


def _explode(df: Any, source: str, items: list[Any]) -> Any:
    from pyspark.sql import functions as F

    return (df.select(F.explode(F.array(*items)).alias("f"),
                      (F.col("timestamp").cast("double") * 1000).cast("long").alias("kafka_ms"))
            .where(F.col("f").isNotNull())
            .select("f.stat", F.lit(source).alias("source"), "f.key", "f.delta", "kafka_ms"))


def _drone_facts(v: Any) -> Any:
    from pyspark.sql import functions as F
    from pyspark.sql.types import StringType

    # Plain pickled rows: pyarrow is not a dependency (and the UDF is a few comparisons).
    borough = F.udf(borough_of_point, StringType(), useArrow=False)
    local = F.from_utc_timestamp(F.timestamp_millis("time_ms"), TZ)
    day = F.date_format(local, "yyyy-MM-dd")
    observed = F.col("rev") == 0
    first = F.col("rev") == 1
    officer = F.col("code_status").isin("officer_set", "officer_changed")
    wait = F.col("decided_ms") - F.col("received_ms")
    bucket = F.lit(LAST_BUCKET)
    for limit, name in reversed(DECISION_BUCKETS):
        bucket = F.when(wait < limit, F.lit(name)).otherwise(bucket)
    every = F.lit("")
    return _explode(v, "drone", [
        _fact("violations", every, observed),
        _fact("by_code", F.col("code"), observed & F.col("code").isNotNull()),
        _fact("by_code", F.col("code"), first & officer),
        _fact("by_code", F.col("original_code"), first & officer
              & F.col("original_code").isNotNull(), -1),
        _fact("unqualified", every, observed & F.col("code").isNull()),
        _fact("by_hour", F.hour(local), observed),
        _fact("by_borough", F.coalesce(borough("lat_deg", "lon_deg"), F.lit("unknown")),
              observed),
        _fact("by_drone", F.col("drone_id"), observed),
        _fact("by_day", day, observed),
        _fact("officer_decisions", F.col("code_status"), officer),
        _fact("interventions", every, first & officer),
        _fact("interventions_by_day", day, first & officer),
        _fact("decision_ms_sum", every, first & officer & wait.isNotNull(), wait),
        _fact("decision_ms_count", every, first & officer & wait.isNotNull()),
        _fact("decision_bucket", bucket, first & officer & wait.isNotNull()),
    ])


def _history_facts(h: Any) -> Any:
    from pyspark.sql import functions as F

    every = F.lit("")
    yes = F.lit(True)
    return _explode(h, "history", [
        _fact("violations", every, yes),
        _fact("by_code", F.col("violation_code"), F.col("violation_code").isNotNull()),
        _fact("by_hour", F.col("hour"), F.col("hour").isNotNull()),
        _fact("by_borough", F.coalesce("borough", F.lit("unknown")), yes),
        _fact("by_precinct", F.col("violation_precinct"),
              F.col("violation_precinct").isNotNull()),
    ])


def apply_batch(store: StatsStore, batch: Any, batch_id: int) -> bool:
    """foreachBatch body: sum the batch's facts per counter and add them to `store`."""
    from pyspark.sql import functions as F

    sums = (batch.groupBy("stat", "source", "key")
            .agg(F.sum("delta").alias("delta"), F.max("kafka_ms").alias("newest"))
            .collect())
    rows = [(r["stat"], r["source"], r["key"], int(r["delta"])) for r in sums]
    newest = max((r["newest"] for r in sums if r["newest"] is not None), default=None)
    return store.apply(batch_id, rows, newest)
