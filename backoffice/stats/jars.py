"""The Kafka connector jars Spark needs, resolved once with mvn into the project's cache.

pyspark ships Spark itself but not the Kafka source. `spark-sql-kafka-0-10_2.13:4.2.0` resolves
from Maven Central with mvn (a tiny pom, `dependency:build-classpath`); of its dependency tree
only four jars are missing from pyspark (the connector, the token provider, kafka-clients and
commons-pool2), and only those go on `spark.jars`: the rest would put a second copy of Spark's own
classes on the classpath. Nothing is downloaded when a job starts: `ensure_jars()` reads the cache
(`$PRESACOP_CACHE_DIR` or `~/.cache/presacop`, like the Kafka jars) and resolves only when the
cache is missing; scripts/bootstrap calls it so CI resolves before the tests.

Errors:

    JarError (RuntimeError)   mvn or java missing, or resolution failed (with mvn's output)
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import subprocess
from pathlib import Path

SPARK_VERSION = "4.2.0"
CONNECTOR = f"org.apache.spark:spark-sql-kafka-0-10_2.13:{SPARK_VERSION}"
# Artifact names (without version) of the jars pyspark lacks.
NEEDED = ("spark-sql-kafka-0-10_2.13", "spark-token-provider-kafka-0-10_2.13", "kafka-clients",
          "commons-pool2")

_POM = """<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>presacop</groupId><artifactId>spark-kafka-jars</artifactId><version>1</version>
  <dependencies>
    <dependency>
      <groupId>{group}</groupId><artifactId>{artifact}</artifactId><version>{version}</version>
    </dependency>
  </dependencies>
</project>
"""


class JarError(RuntimeError):
    """The connector jars could not be resolved; the message says why (and mvn's output)."""


def cache_dir() -> Path:
    """$PRESACOP_CACHE_DIR, else $XDG_CACHE_HOME/presacop, else ~/.cache/presacop."""
    env = os.environ.get("PRESACOP_CACHE_DIR")
    if env:
        return Path(env)
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg) / "presacop"


def ensure_jars() -> list[str]:
    """Paths of the four jars, resolving them with mvn on first use. Raises JarError."""
    group, artifact, version = CONNECTOR.split(":")
    pom = _POM.format(group=group, artifact=artifact, version=version)
    directory = cache_dir() / f"spark-kafka-{version}"
    directory.mkdir(parents=True, exist_ok=True)
    stamp = hashlib.sha256(pom.encode()).hexdigest()[:16]
    with (directory / ".lock").open("w") as lock:
        # Several test sessions may start at once: one resolves, the others wait and reuse.
        fcntl.flock(lock, fcntl.LOCK_EX)
        cached = _cached(directory, stamp)
        if cached is not None:
            return cached
        jars = _resolve(directory, pom)
        (directory / "jars.txt").write_text("\n".join(jars) + "\n")
        (directory / "stamp").write_text(stamp)
        return jars


def _cached(directory: Path, stamp: str) -> list[str] | None:
    try:
        if (directory / "stamp").read_text() != stamp:
            return None
        jars = (directory / "jars.txt").read_text().split()
    except OSError:
        return None
    return jars if len(jars) == len(NEEDED) and all(Path(j).is_file() for j in jars) else None


def _resolve(directory: Path, pom: str) -> list[str]:
    for tool in ("mvn", "java"):
        if shutil.which(tool) is None:
            raise JarError(f"{tool} is not installed; run: "
                           "sudo apt-get install -y openjdk-17-jre-headless maven")
    (directory / "pom.xml").write_text(pom)
    cp_file = directory / "classpath.txt"
    result = subprocess.run(
        ["mvn", "-q", "-B", "-f", str(directory / "pom.xml"), "dependency:build-classpath",
         f"-Dmdep.outputFile={cp_file}"],
        capture_output=True, text=True, check=False)
    if result.returncode != 0 or not cp_file.exists():
        raise JarError(f"mvn could not resolve {CONNECTOR} (exit {result.returncode}):\n"
                       f"{(result.stdout + result.stderr)[-3000:]}")
    jars = [_pick(cp_file.read_text().strip().split(os.pathsep), name) for name in NEEDED]
    missing = [j for j in jars if not Path(j).is_file()]
    if missing:
        raise JarError(f"mvn reported jars that are not on disk: {missing}")
    return jars


def _pick(classpath: list[str], artifact: str) -> str:
    for jar in classpath:
        name = Path(jar).name
        # "<artifact>-<version>.jar": the artifact followed by a dash and a digit.
        if name.startswith(artifact + "-") and name[len(artifact) + 1:][:1].isdigit():
            return jar
    raise JarError(f"{artifact} is not in the resolved tree of {CONNECTOR}")
