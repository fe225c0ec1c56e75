"""The Kafka connector jars Spark needs, resolved once with mvn into the project's cache.

pyspark ships Spark itself but not the Kafka source. `spark-sql-kafka-0-10_2.13:4.2.0` resolves
from Maven Central with mvn (`common.maven`: a tiny pom, `dependency:build-classpath`, cached in
`~/.cache/presacop/spark-kafka-4.2.0/`); of its dependency tree only four jars are missing from
pyspark (the connector, the token provider, kafka-clients and commons-pool2), and only those go
on `spark.jars`: the rest would put a second copy of Spark's own classes on the classpath.
Nothing is downloaded when a job starts once the cache is warm; scripts/bootstrap calls
`ensure_jars()` so CI resolves before the tests.

Errors:

    JarError (RuntimeError)   mvn or java missing, or resolution failed (with mvn's output)
"""

from __future__ import annotations

import os
from pathlib import Path

from common import maven

SPARK_VERSION = "4.2.0"
CONNECTOR = f"org.apache.spark:spark-sql-kafka-0-10_2.13:{SPARK_VERSION}"
# Artifact names (without version) of the jars pyspark lacks.
NEEDED = ("spark-sql-kafka-0-10_2.13", "spark-token-provider-kafka-0-10_2.13", "kafka-clients",
          "commons-pool2")


class JarError(RuntimeError):
    """The connector jars could not be resolved; the message says why (and mvn's output)."""


def ensure_jars() -> list[str]:
    """Paths of the four jars, resolving them with mvn on first use. Raises JarError."""
    try:
        classpath = maven.resolve("spark-kafka", SPARK_VERSION, CONNECTOR)
    except maven.MavenError as exc:
        raise JarError(str(exc)) from exc
    return [_pick(classpath.split(os.pathsep), name) for name in NEEDED]


def _pick(classpath: list[str], artifact: str) -> str:
    for jar in classpath:
        name = Path(jar).name
        # "<artifact>-<version>.jar": the artifact followed by a dash and a digit.
        if name.startswith(artifact + "-") and name[len(artifact) + 1:][:1].isdigit():
            return jar
    raise JarError(f"{artifact} is not in the resolved tree of {CONNECTOR}")
