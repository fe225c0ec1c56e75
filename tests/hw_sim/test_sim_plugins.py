"""hw_sim devices plug into the agent by config, and the dependency points one way only."""

from __future__ import annotations

import ast
from pathlib import Path

from drone_agent import plugins
from drone_agent.hardware import Camera, PositionSource, PowerSource

ROOT = Path(__file__).parents[2]


def test_devices_build_from_agent_config_factory_paths() -> None:
    camera = plugins.build(plugins.CAMERA, "hw_sim.camera:SimCamera",
                           {"seed": 1, "width": 320, "height": 240, "fps": 0})
    position = plugins.build(plugins.POSITION, "hw_sim.position:RoutePosition",
                             {"seed": 1, "route": "broadway"})
    power = plugins.build(plugins.POWER, "hw_sim.power:SimBattery", {"start_pct": 50})
    try:
        assert isinstance(camera, Camera) and camera.read() is not None
        assert isinstance(position, PositionSource) and position.fix() is not None
        assert isinstance(power, PowerSource) and power.read().battery_pct == 50
    finally:
        for part in (camera, position, power):
            part.close()


def imported_modules(package: str) -> set[str]:
    found: set[str] = set()
    for path in (ROOT / package).rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                found.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                found.add(node.module)
    return found


def test_agent_and_protocol_never_import_the_simulator() -> None:
    for package in ("drone_agent", "protocol"):
        offenders = {m for m in imported_modules(package) if m.split(".")[0] == "hw_sim"}
        assert not offenders, (package, offenders)


def test_simulator_devices_do_not_import_the_gateway_or_kafka() -> None:
    # presacop.demo runs a gateway; no part of the simulator (devices, proxy, fleet, the
    # one-process fleet CLI) needs one.
    mine = set()
    for path in sorted((ROOT / "hw_sim").glob("*.py")):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                mine.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                mine.add(node.module.split(".")[0])
    assert not mine & {"gateway", "kafka", "aiokafka"}
