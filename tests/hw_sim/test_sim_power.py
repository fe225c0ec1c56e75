"""SimBattery: drains with time, voltage follows, low flag at the threshold."""

from __future__ import annotations

import pytest

from drone_agent.hardware import PowerSource
from hw_sim.power import EMPTY_VOLTS, FULL_VOLTS, SimBattery


def test_drains_and_flags_low() -> None:
    now = [0.0]
    bat = SimBattery(start_pct=100, drain_pct_per_min=2.0, low_pct=20, clock=lambda: now[0])
    assert isinstance(bat, PowerSource)
    first = bat.read()
    assert first.battery_pct == 100 and first.voltage == FULL_VOLTS and not first.low
    now[0] = 30 * 60  # 30 minutes: 60 % used
    mid = bat.read()
    assert mid.battery_pct == 40 and not mid.low
    assert EMPTY_VOLTS < mid.voltage < FULL_VOLTS
    now[0] = 40 * 60
    low = bat.read()
    assert low.battery_pct == 20 and low.low
    now[0] = 100 * 60
    empty = bat.read()
    assert empty.battery_pct == 0 and empty.voltage == EMPTY_VOLTS and empty.low


def test_voltage_falls_monotonically() -> None:
    now = [0.0]
    bat = SimBattery(drain_pct_per_min=5.0, clock=lambda: now[0])
    volts = []
    for minute in range(0, 25):
        now[0] = minute * 60.0
        volts.append(bat.read().voltage)
    assert volts == sorted(volts, reverse=True)
    assert volts[0] > volts[-1]


def test_recharge_starts_a_new_drain() -> None:
    now = [0.0]
    bat = SimBattery(start_pct=25, drain_pct_per_min=1.0, low_pct=20, clock=lambda: now[0])
    now[0] = 600.0
    assert bat.read().low
    bat.recharge(90)
    assert bat.read().battery_pct == 90 and not bat.read().low


@pytest.mark.parametrize("kwargs, word", [
    ({"start_pct": 101}, "start_pct"), ({"low_pct": -1}, "low_pct"),
    ({"drain_pct_per_min": -0.5}, "drain_pct_per_min"),
])
def test_bad_arguments(kwargs: dict, word: str) -> None:
    with pytest.raises(ValueError, match=word):
        SimBattery(**kwargs)
