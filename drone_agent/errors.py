"""The agent's error tree (drawn in the `drone_agent` package docstring)."""

from __future__ import annotations


class AgentError(Exception):
    """Root of the errors the agent raises on purpose."""


class PluginError(AgentError):
    """A factory named in config cannot be imported, called, or built something unusable.

    `key` is the config key that named it (e.g. ``recognizer.factory``)."""

    def __init__(self, key: str, reason: str) -> None:
        self.key = key
        self.reason = reason
        super().__init__(f"{key}: {reason}")


class OutboxFull(AgentError):
    """The outbox has no room for a violation, even after dropping all telemetry it may drop."""


class OutboxError(AgentError):
    """The outbox database cannot be used (corrupt, foreign schema, sequence space exhausted)."""


class EvidenceRefused(AgentError):
    """The evidence store cannot keep a JPEG: over quota or short of free disk, and nothing it
    may delete is left. `evidence_id` is the content id the image would have had."""

    def __init__(self, evidence_id: str, reason: str) -> None:
        self.evidence_id = evidence_id
        self.reason = reason
        super().__init__(f"evidence {evidence_id} not stored: {reason}")
