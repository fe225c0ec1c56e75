"""docs/hw_sim.md stays in step with the code: codes drawn, routes, CLI flags."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import protocol
from hw_sim import cli, nyc
from hw_sim.camera import SCENES

DOC = (Path(__file__).parents[2] / "docs" / "hw_sim.md").read_text()


def test_every_drawn_code_is_documented_with_the_protocol_description() -> None:
    rows = {int(m[1]): m[2] for m in re.finditer(r"^\| (\d+) \| ([^|]+?) \|", DOC, re.M)}
    assert set(rows) == set(SCENES)
    for code, description in rows.items():
        assert description == protocol.VIOLATION_CODES[code]


def test_every_route_is_documented() -> None:
    for name in nyc.ROUTES:
        assert f"| `{name}` |" in DOC


def test_every_cli_flag_is_documented() -> None:
    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    for action in parser._actions:
        if action.help == argparse.SUPPRESS or not action.option_strings:
            continue
        flag = action.option_strings[-1]
        if flag in ("--help",):
            continue
        assert f"`{flag}" in DOC, flag
