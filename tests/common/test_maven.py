"""common.maven: the POM a resolution writes (resolution itself runs with every Kafka start)."""

from __future__ import annotations

import pytest

from common import maven


def test_the_pom_names_each_coordinate_and_refuses_a_malformed_one() -> None:
    text = maven.pom("s3proxy", "2.1", ["org.gaul:s3proxy:2.1.0", "a.b:c:1"])
    assert "<artifactId>s3proxy-runtime</artifactId><version>2.1</version>" in text
    assert ("<groupId>org.gaul</groupId><artifactId>s3proxy</artifactId>\n"
            "      <version>2.1.0</version>") in text
    assert "<groupId>a.b</groupId><artifactId>c</artifactId>" in text
    with pytest.raises(maven.MavenError, match=r"'org\.gaul:s3proxy' is not group:artifact"):
        maven.pom("x", "1", ["org.gaul:s3proxy"])


def test_the_stack_sees_maven_errors_as_its_own(monkeypatch: pytest.MonkeyPatch) -> None:
    from presacop.stack import MissingToolError, StackError
    from presacop.stack import maven as stack_maven

    with pytest.raises(StackError, match="not group:artifact:version"):
        stack_maven.resolve("x", "1", "a:b")  # refused before mvn runs
    monkeypatch.setattr(maven.shutil, "which", lambda _tool: None)
    with pytest.raises(MissingToolError, match="java is not installed"):
        stack_maven.resolve("x", "1", "a:b:1")
