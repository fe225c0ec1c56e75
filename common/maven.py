"""Jars resolved by Maven into a cache outside the repository, once, and reused as a classpath.

`resolve(name, version, *coords)` writes a small POM naming the artifacts, runs
`mvn dependency:build-classpath` under a file lock (several test sessions may ask at once: one
resolves, the others wait and reuse) and returns the classpath. The result is cached in
`<cache>/<name>-<version>/` with a stamp of the POM, so a changed artifact list resolves again and
nothing is downloaded at run time once the cache is warm. Every JVM part comes through here: the
local stack's Kafka and s3proxy (`presacop.stack`), the statistics' Spark connector
(`backoffice`); `scripts/bootstrap` prefetches them.

Errors:

    MavenError             resolution failed (the message has mvn's output), or a bad coordinate
     +-- MissingToolError  mvn or java is not installed; says what to install
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path


class MavenError(Exception):
    """Jars could not be resolved; the message says why (with mvn's output)."""


class MissingToolError(MavenError):
    """mvn or java is not installed."""

_POM_HEAD = """<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>presacop</groupId><artifactId>{name}-runtime</artifactId><version>{version}</version>
  <dependencies>
"""
_POM_DEPENDENCY = """    <dependency><groupId>{group}</groupId><artifactId>{artifact}</artifactId>
      <version>{version}</version></dependency>
"""
_POM_TAIL = """  </dependencies>
</project>
"""


def cache_dir() -> Path:
    """Where resolved artefacts live, outside the repository: $PRESACOP_CACHE_DIR or XDG cache."""
    env = os.environ.get("PRESACOP_CACHE_DIR")
    if env:
        return Path(env)
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg) / "presacop"


def pom(name: str, version: str, coords: Sequence[str]) -> str:
    """The POM that resolves `coords` ("group:artifact:version" each). Raises MavenError for a
    malformed coordinate."""
    deps = []
    for coord in coords:
        parts = coord.split(":")
        if len(parts) != 3 or not all(parts):
            raise MavenError(f"Maven coordinate {coord!r} is not group:artifact:version")
        group, artifact, dep_version = parts
        deps.append(_POM_DEPENDENCY.format(group=group, artifact=artifact, version=dep_version))
    return _POM_HEAD.format(name=name, version=version) + "".join(deps) + _POM_TAIL


def require_tools(*tools: str) -> None:
    """Raise MissingToolError naming the packages to install if one of `tools` is missing."""
    for tool in tools:
        if shutil.which(tool) is None:
            raise MissingToolError(
                f"{tool} is not installed; run: "
                "sudo apt-get install -y openjdk-17-jre-headless maven"
            )


def resolve(name: str, version: str, *coords: str) -> str:
    """The JVM classpath (jar paths joined by os.pathsep) of `coords` and their dependencies,
    resolved with mvn into `<cache>/<name>-<version>/` the first time. Raises MissingToolError
    or MavenError."""
    require_tools("java", "mvn")
    text = pom(name, version, coords)
    directory = cache_dir() / f"{name}-{version}"
    directory.mkdir(parents=True, exist_ok=True)
    stamp = hashlib.sha256(text.encode()).hexdigest()[:16]
    cp_file = directory / "classpath.txt"
    with (directory / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        cached = _cached_classpath(directory, stamp)
        if cached is not None:
            return cached
        (directory / "pom.xml").write_text(text)
        result = subprocess.run(
            ["mvn", "-q", "-B", "-f", str(directory / "pom.xml"), "dependency:build-classpath",
             f"-Dmdep.outputFile={cp_file}"],
            capture_output=True, text=True, check=False,
        )
        if result.returncode != 0 or not cp_file.exists():
            raise MavenError(
                f"mvn could not resolve {name} {version} (exit {result.returncode}):\n"
                f"{(result.stdout + result.stderr)[-3000:]}"
            )
        (directory / "stamp").write_text(stamp)
        classpath = cp_file.read_text().strip()
        if not _jars_exist(classpath):
            raise MavenError(f"mvn reported a classpath with missing jars: {cp_file}")
        return classpath


def _cached_classpath(directory: Path, stamp: str) -> str | None:
    try:
        if (directory / "stamp").read_text() != stamp:
            return None
        classpath = (directory / "classpath.txt").read_text().strip()
    except OSError:
        return None
    return classpath if _jars_exist(classpath) else None


def _jars_exist(classpath: str) -> bool:
    jars = [j for j in classpath.split(os.pathsep) if j]
    return bool(jars) and all(Path(j).is_file() for j in jars)
