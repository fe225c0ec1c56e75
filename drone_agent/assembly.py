"""Build an agent from its config: the plug-ins it names, the violation encoder, then the Agent.

`drone_agent.agent` re-exports `from_config` and `violation_encoder` (their documented home).

Raises: `from_config` raises `PluginError` naming the config key (parts already built are closed)
and passes `HardwareError` through; `violation_encoder` and `manifest_encoder` raise
`common.signing.KeyFileError`.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import protocol
from drone_agent import plugins
from drone_agent.config import AgentConfig
from drone_agent.workers import close_quietly
from protocol import EvidenceManifest, Violation

if TYPE_CHECKING:
    from drone_agent.agent import Agent


def violation_encoder(config: AgentConfig) -> Callable[[Violation], bytes]:
    """protocol.encode, or the signer of `signing.key_file`. Raises common.signing.KeyFileError."""
    if not config.signing.key_file:
        return protocol.encode
    from common.signing import Signer  # the crypto only where a key is configured

    return Signer.from_file(Path(config.signing.key_file)).encode


def manifest_encoder(config: AgentConfig) -> Callable[[EvidenceManifest], bytes]:
    """protocol.encode_evidence, or the same key's manifest signer: a signed manifest binds the
    image's SHA-256 to the drone. Raises common.signing.KeyFileError."""
    if not config.signing.key_file:
        return protocol.encode_evidence
    from common.signing import Signer

    return Signer.from_file(Path(config.signing.key_file)).encode_manifest


def from_config(config: AgentConfig) -> Agent:
    """Build the camera, position, power, recognizer and time reference that `config` names, and
    the agent. Raises `PluginError` naming the config key; parts already built are closed."""
    from drone_agent.agent import Agent  # agent.py re-exports this function: import it late

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
