"""Plug-in loading: dotted paths, entry points, and errors that say what failed where."""

from __future__ import annotations

import pytest

from drone_agent import plugins
from drone_agent.errors import PluginError
from drone_agent.hardware import HardwareError
from drone_agent.stub_recognizer import StubRecognizer


class NoRecognize:
    def __init__(self, **kwargs: object) -> None:
        self.kwargs = kwargs


def failing_factory() -> object:
    raise HardwareError("camera unplugged")


NOT_CALLABLE = 42


def test_dotted_path_with_options() -> None:
    from hw_sim.recognizer import SimRecognizer

    rec = plugins.build(plugins.RECOGNIZER, "hw_sim.recognizer:SimRecognizer",
                        {"misread_rate": 0.5, "seed": 3})
    assert isinstance(rec, SimRecognizer) and rec.misread_rate == 0.5


def test_entry_point_names() -> None:
    assert plugins.resolve(plugins.RECOGNIZER, "stub") is StubRecognizer
    power = plugins.build(plugins.POWER, "fixed", {"battery_pct": 55})
    assert power.read().battery_pct == 55
    pos = plugins.build(plugins.POSITION, "fixed", {"lat": 40.7, "lon": -74.0})
    assert pos.fix().lat == 40.7


@pytest.mark.parametrize(("spec", "fragment"), [
    ("no_such_pkg.mod:Thing", "cannot import module 'no_such_pkg.mod'"),
    ("drone_agent.stub_recognizer:Missing", "has no attribute 'Missing'"),
    (f"{__name__}:NOT_CALLABLE", "is not callable"),
    (f"{__name__}:NoRecognize", "lacks recognize()"),
    ("nonesuch", "no entry point 'nonesuch' in group presacop.recognizers (known: stub"),
])
def test_errors_name_the_key_and_the_failure(spec: str, fragment: str) -> None:
    with pytest.raises(PluginError) as info:
        plugins.build(plugins.RECOGNIZER, spec, {})
    assert info.value.key == "recognizer.factory"
    assert fragment in str(info.value)
    assert str(info.value).startswith("recognizer.factory: ")


def test_factory_raising_names_the_options() -> None:
    with pytest.raises(PluginError, match=r"raised TypeError.*recognizer.options = \{'bogus': 1\}"):
        plugins.build(plugins.RECOGNIZER, "stub", {"bogus": 1})


def test_hardware_errors_pass_through() -> None:
    with pytest.raises(HardwareError, match="unplugged"):
        plugins.build(plugins.CAMERA, f"{__name__}:failing_factory", {})
