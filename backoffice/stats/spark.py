"""The Spark session of the statistics job and the Kafka source options it reads with.

The session gets the four connector jars from the cache (`jars.ensure_jars`, never a download at
start), RocksDB for streaming state (the dedupe state outgrows the heap otherwise), UTC as the
session time zone, and no UI. The Kafka options carry the `[kafka]` table's security settings in
the Java client's terms (`kafka.`-prefixed, as Spark's Kafka source wants them).

Raises `jars.JarError` when the jars cannot be resolved; Spark's own errors otherwise.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
import zipfile
from pathlib import Path
from typing import Any

from backoffice.config import BackofficeConfig
from gateway.config import KafkaConfig

from .jars import ensure_jars

_LOGIN = {
    "PLAIN": "org.apache.kafka.common.security.plain.PlainLoginModule",
    "SCRAM-SHA-256": "org.apache.kafka.common.security.scram.ScramLoginModule",
    "SCRAM-SHA-512": "org.apache.kafka.common.security.scram.ScramLoginModule",
}


def session(cfg: BackofficeConfig, master: str | None = None, app: str = "presacop-stats") -> Any:
    """A SparkSession for the job: `master` (default `stats.master`), connector jars attached."""
    from pyspark.sql import SparkSession

    builder = (
        SparkSession.builder.master(master or cfg.stats.master).appName(app)
        .config("spark.jars", ",".join(ensure_jars()))
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.sql.shuffle.partitions", str(cfg.stats.shuffle_partitions))
        .config("spark.sql.streaming.stateStore.providerClass",
                "org.apache.spark.sql.execution.streaming.state.RocksDBStateStoreProvider")
        # Latency: a batch commits a changelog, not a RocksDB snapshot; and no extra batch runs
        # just because the watermark moved (dedupe state is evicted by the next data batch).
        .config("spark.sql.streaming.stateStore.rocksdb.changelogCheckpointing.enabled", "true")
        .config("spark.sql.streaming.noDataMicroBatches.enabled", "false")
        .config("spark.driver.memory", os.environ.get("PRESACOP_SPARK_DRIVER_MEMORY", "1g"))
    )
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("ERROR")
    _ship_areas(spark)
    return spark


def stop_session(spark: Any, timeout: float = 30.0) -> None:
    """Stop the session and the JVM pyspark started for it. pyspark leaves that JVM to notice
    its parent's exit, which it does seconds later: long enough to outlive a test run or a
    service stop that expects its children gone."""
    from pyspark import SparkContext

    spark.stop()
    gateway = SparkContext._gateway
    if gateway is None:
        return
    proc = getattr(gateway, "proc", None)  # set by pyspark.java_gateway.launch_gateway
    gateway.shutdown()
    SparkContext._gateway = SparkContext._jvm = None
    if proc is None:
        return
    if proc.stdin is not None:
        proc.stdin.close()  # the JVM watches this pipe: its end is the signal to exit
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout)


def _ship_areas(spark: Any) -> None:
    # The borough UDF runs in Python workers, which may be another interpreter (a cluster's, or
    # the base interpreter behind a venv): ship the two modules it needs (stdlib only) as a zip.
    import backoffice
    import backoffice.areas

    out = Path(tempfile.mkdtemp(prefix="presacop-pyfiles-")) / "backoffice_areas.zip"
    with zipfile.ZipFile(out, "w") as zf:
        zf.write(backoffice.__file__, "backoffice/__init__.py")
        zf.write(backoffice.areas.__file__, "backoffice/areas.py")
    spark.sparkContext.addPyFile(str(out))


def kafka_options(cfg: KafkaConfig) -> dict[str, str]:
    """Spark Kafka source options for `cfg`: bootstrap servers and security, Java client names."""
    opts = {"kafka.bootstrap.servers": cfg.bootstrap_servers,
            "kafka.security.protocol": cfg.security_protocol}
    if cfg.sasl_mechanism:
        user = cfg.sasl_username.replace('"', '\\"')
        password = cfg.sasl_password.replace('"', '\\"')
        opts["kafka.sasl.mechanism"] = cfg.sasl_mechanism
        opts["kafka.sasl.jaas.config"] = (f'{_LOGIN[cfg.sasl_mechanism]} required '
                                          f'username="{user}" password="{password}";')
    if cfg.ssl_ca_file:
        opts["kafka.ssl.truststore.type"] = "PEM"
        opts["kafka.ssl.truststore.location"] = cfg.ssl_ca_file
    if cfg.ssl_cert_file and cfg.ssl_key_file:
        # The Java client takes PEM client credentials as text, not as file names.
        opts["kafka.ssl.keystore.type"] = "PEM"
        opts["kafka.ssl.keystore.certificate.chain"] = Path(cfg.ssl_cert_file).read_text()
        opts["kafka.ssl.keystore.key"] = Path(cfg.ssl_key_file).read_text()
    return opts
