"""Dependency direction, read from the source (every import statement, also lazy ones):

    protocol     <- imports nothing of ours, and no I/O, clocks or logging (sans-I/O)
    drone_agent  -> protocol          never hw_sim, gateway, kafka (the drone has no Kafka client)
    gateway      -> protocol          never drone_agent, hw_sim, cv2 (the gateway has no OpenCV)
    hw_sim       -> drone_agent       implements its hardware interfaces (the demo may run gateway)
    nothing      -> tests

Plug-ins named as strings in config ("hw_sim.camera:SimCamera") are not imports and are allowed.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("presacop", "protocol", "drone_agent", "gateway", "hw_sim")
OURS = {*PACKAGES, "tests"}

FORBIDDEN: dict[str, set[str]] = {
    "protocol": (OURS - {"protocol"}) | {"asyncio", "socket", "logging", "time", "selectors"},
    "drone_agent": {"hw_sim", "gateway", "kafka", "tests"},
    "gateway": {"drone_agent", "hw_sim", "cv2", "tests"},
    "hw_sim": {"tests"},
    "presacop": {"tests"},
}


def imports_of(path: Path) -> list[tuple[str, int]]:
    """(top-level module, line) for every absolute import in `path`."""
    tree = ast.parse(path.read_text(), filename=str(path))
    found: list[tuple[str, int]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(alias.name.split(".")[0], node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.module.split(".")[0], node.lineno))
    return found


def sources(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_package_imports_respect_the_dependency_direction(package: str) -> None:
    files = sources(package)
    assert files, f"no sources found for {package}"
    violations = [
        f"{path.relative_to(ROOT)}:{line} imports {module}"
        for path in files
        for module, line in imports_of(path)
        if module in FORBIDDEN[package]
    ]
    assert not violations, "\n".join(violations)


def test_the_scanner_sees_lazy_and_from_imports(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text(
        "import os.path\nfrom kafka.admin import NewTopic\nfrom . import sibling\n"
        "def f():\n    import hw_sim.camera\n"
    )
    assert imports_of(sample) == [("os", 1), ("kafka", 2), ("hw_sim", 5)]
