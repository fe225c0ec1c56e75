"""Build an agent from its config: the plug-ins it names, then the Agent.

Raises: `from_config` raises `PluginError` naming the config key (parts already built are closed)
and passes `HardwareError` through; the signing key's `common.signing.KeyFileError` too.
"""

from __future__ import annotations

from typing import Any

from drone_agent import plugins
from drone_agent.agent import Agent
from drone_agent.config import AgentConfig
from drone_agent.workers import close_quietly


def from_config(config: AgentConfig) -> Agent:
    """Build the camera, position, power, recognizer and time reference that `config` names, and
    the agent. Raises `PluginError` naming the config key; parts already built are closed."""
    reference = ((plugins.CLOCK, config.clock),) if config.clock.factory else ()
    parts = ((plugins.CAMERA, config.camera), (plugins.POSITION, config.position),
             (plugins.POWER, config.power), (plugins.RECOGNIZER, config.recognizer), *reference)
    for part, section in parts:  # every name resolves before any device is opened
        plugins.resolve(part, section.factory)
    built: list[Any] = []
    try:
        for part, section in parts:
            built.append(plugins.build(part, section.factory, section.options))
    except BaseException:
        for thing in built:
            close_quietly(thing)
        raise
    camera, position, power, recognizer, *clock = built
    return Agent(config, camera=camera, position=position, power=power, recognizer=recognizer,
                 time_reference=clock[0] if clock else None)
