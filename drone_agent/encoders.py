"""The agent's message encoders: plain, or signed with the drone's Ed25519 key when the config names
one (`signing.key_file`); and the uploader's settings, with the check of the back office's receipt
signatures when the config names its public keys (`evidence.receipt_keys_dir`). All raise
`common.signing.KeyFileError` for a key file that will not load.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import protocol
from drone_agent.config import AgentConfig
from protocol import EvidenceManifest, EvidenceReceipt, Violation

ReceiptCheck = Callable[[str, bytes, EvidenceReceipt], str | None]


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


def receipt_checker(config: AgentConfig) -> ReceiptCheck | None:
    """None (every receipt is acted on: the weaker mode), or the check of the back office's
    public keys in `evidence.receipt_keys_dir`. Raises common.signing.KeyFileError naming the
    key."""
    if not config.evidence.receipt_keys_dir:
        return None
    from common.signing import KeyFileError, ReceiptKeys

    try:
        return ReceiptKeys.from_dir(Path(config.evidence.receipt_keys_dir)).check
    except KeyFileError as exc:
        raise KeyFileError(f"evidence.receipt_keys_dir: {exc}") from exc


def upload_options(config: AgentConfig) -> dict[str, Any]:
    """The Uploader's keyword arguments from `config`, keys loaded (manifests signed with the
    drone's key, receipts checked against the back office's). Raises KeyFileError."""
    ev = config.evidence
    return {"policy": ev.upload, "chunk_size": ev.chunk_size, "window": ev.upload_window,
            "budget_bps": ev.upload_budget_bps, "reply_timeout_s": ev.reply_timeout_s,
            "confirm_timeout_s": ev.confirm_timeout_s, "encode_manifest": manifest_encoder(config),
            "check_receipt": receipt_checker(config)}
