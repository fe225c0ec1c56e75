"""The agent's message encoders: plain, or signed with the drone's Ed25519 key when the config names
one (`signing.key_file`). Both raise `common.signing.KeyFileError` for a key file that will not
load.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import protocol
from drone_agent.config import AgentConfig
from protocol import EvidenceManifest, Violation


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
