"""The stack's jars (Kafka, s3proxy): `common.maven` with its errors as the stack's own.

Raises: `MissingToolError` (no mvn or java), `StackError` (resolution failed, with mvn's output).
"""

from __future__ import annotations

from common import maven
from common.maven import cache_dir, pom  # noqa: F401  (re-exported: the stack's cache and POM)
from presacop.stack.errors import MissingToolError, StackError


def resolve(name: str, version: str, *coords: str) -> str:
    """The classpath of `coords`, resolved once into the cache (see `common.maven.resolve`)."""
    try:
        return maven.resolve(name, version, *coords)
    except maven.MissingToolError as exc:
        raise MissingToolError(str(exc)) from exc
    except maven.MavenError as exc:
        raise StackError(str(exc)) from exc
