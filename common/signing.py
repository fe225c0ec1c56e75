"""Ed25519 signatures of violations and evidence manifests (the drones' keys) and of evidence
receipts (the back office's key): key files, the signers, the verifiers' key registries.

The protocol defines which bytes are signed (`protocol.signing_input`); this module holds the
keys and calls the crypto (`cryptography`, OpenSSL). One home for the three parties that need it:
the agent signs, the gateway and `presacop verify` check.

Key directory (`presacop keys gen --drone ID --out DIR`, the gateway's `security.keys_dir`):

    DIR/<drone_id>/<key_id>.key   private key, PKCS#8 PEM, mode 0600: goes onto the drone only
    DIR/<drone_id>/<key_id>.pub   public key, SubjectPublicKeyInfo PEM: goes to the verifiers

`key_id` is a small integer (0..65535) per drone, so a drone may have several keys at once
(rotation: add a key, move the drone to it, remove the old .pub when its messages are verified).

Back-office receipt keys (`presacop keys gen --backoffice --out DIR`): DIR/<key_id>.key (0600,
the gateways' `evidence.receipt_key_file`) and DIR/<key_id>.pub (the drones'
`evidence.receipt_keys_dir` holds the .pub files: several while the gateways rotate).

Errors: KeyFileError (ValueError) for a key file that cannot be read or parsed (or a private
receipt key others may read), or a drone id that cannot have keys. `KeyRegistry.check` and
`ReceiptKeys.check` never raise for bad input: they return the reason.
"""

from __future__ import annotations

import dataclasses
import os
import re
import threading
import time
from collections.abc import Callable
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

import protocol
from common.accounts import check_drone_id

_KEY_NAME = re.compile(r"(0|[1-9][0-9]{0,4})\.pub")
_PRIVATE_NAME = re.compile(r"[0-9]+\.key")
_DRONE_ID = re.compile(r"[A-Za-z0-9_-]{1,32}")

# Why a message fails verification (the dead letter's detail says which; its reason is
# "bad_signature" for all three).
UNSIGNED = "unsigned"
UNKNOWN_KEY = "unknown_key"
INVALID = "invalid_signature"


class KeyFileError(ValueError):
    """A key file is unreadable or not an Ed25519 key, or a drone id cannot have keys."""


@dataclasses.dataclass(frozen=True)
class KeyFiles:
    drone_id: str
    key_id: int
    private: Path
    public: Path


def generate_key(directory: Path, drone_id: str) -> KeyFiles:
    """A new key pair for `drone_id` under `directory`, with the next free key id.
    The private key is created 0600 and never overwritten. Raises KeyFileError."""
    if not _DRONE_ID.fullmatch(drone_id):
        raise KeyFileError(f"not a drone id: {drone_id!r} (1..32 chars of [A-Za-z0-9_-])")
    if (reason := check_drone_id(drone_id)) is not None:
        raise KeyFileError(reason)
    return _generate(directory / drone_id, drone_id)


def generate_backoffice_key(directory: Path) -> KeyFiles:
    """A new back-office receipt key pair directly under `directory` (DIR/<key_id>.key, .pub),
    with the next free key id; `drone_id` of the result is "". Raises KeyFileError."""
    return _generate(directory, "")


def _generate(folder: Path, drone_id: str) -> KeyFiles:
    folder.mkdir(parents=True, exist_ok=True, mode=0o755)
    used = {int(p.stem) for p in folder.glob("*.*") if p.stem.isdigit()}
    key_id = min(set(range(len(used) + 1)) - used)
    if key_id > protocol.KEY_ID_MAX:
        raise KeyFileError(f"{folder} has no free key id left")
    key = Ed25519PrivateKey.generate()
    files = KeyFiles(drone_id, key_id, folder / f"{key_id}.key", folder / f"{key_id}.pub")
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    fd = os.open(files.private, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(pem)
    files.public.write_bytes(public_pem(key.public_key()))
    return files


def public_pem(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.PEM,
                            serialization.PublicFormat.SubjectPublicKeyInfo)


def load_public(path: Path) -> Ed25519PublicKey:
    """Raises KeyFileError."""
    try:
        key = serialization.load_pem_public_key(path.read_bytes())
    except (OSError, ValueError) as exc:
        raise KeyFileError(f"{path}: cannot read a public key: {exc}") from exc
    if not isinstance(key, Ed25519PublicKey):
        raise KeyFileError(f"{path}: not an Ed25519 public key")
    return key


Signed = protocol.Violation | protocol.EvidenceManifest  # the payloads a drone signs


class Signer:
    """One private key: a drone's signs its violations and evidence manifests, the back
    office's (on the gateways) signs evidence receipts."""

    def __init__(self, key: Ed25519PrivateKey, key_id: int) -> None:
        if not 0 <= key_id <= protocol.KEY_ID_MAX:
            raise KeyFileError(f"key id {key_id} outside 0..{protocol.KEY_ID_MAX}")
        self._key = key
        self.key_id = key_id

    @classmethod
    def from_file(cls, path: Path) -> Signer:
        """The key in `path`, named `<key_id>.key`. Raises KeyFileError."""
        if not path.stem.isdigit():
            raise KeyFileError(f"{path}: the file name must be <key_id>.key")
        try:
            key = serialization.load_pem_private_key(path.read_bytes(), password=None)
        except (OSError, ValueError, TypeError) as exc:
            raise KeyFileError(f"{path}: cannot read a private key: {exc}") from exc
        if not isinstance(key, Ed25519PrivateKey):
            raise KeyFileError(f"{path}: not an Ed25519 private key")
        return cls(key, int(path.stem))

    def encode(self, msg: protocol.Violation) -> bytes:
        """The signed payload of `msg`. Raises protocol.LocalProtocolError for an invalid msg."""
        placeholder = dataclasses.replace(msg, key_id=self.key_id,
                                          signature=bytes(protocol.SIGNATURE_SIZE))
        topic = protocol.topic(msg.header.drone_id, protocol.Kind.VIOLATION)
        return self._signed(topic, protocol.encode(placeholder))

    def encode_manifest(self, manifest: protocol.EvidenceManifest) -> bytes:
        """The signed payload of an evidence manifest (published on its drone's evidence topic).
        Raises protocol.LocalProtocolError for an invalid manifest."""
        return self._signed_frame(protocol.evidence_topic(manifest.drone_id), manifest)

    def encode_receipt(self, receipt: protocol.EvidenceReceipt) -> bytes:
        """The signed payload of an evidence receipt (published on its drone's receipt topic).
        Raises protocol.LocalProtocolError for an invalid receipt."""
        return self._signed_frame(protocol.receipt_topic(receipt.drone_id), receipt)

    def _signed_frame(self, topic: str,
                      frame: protocol.EvidenceManifest | protocol.EvidenceReceipt) -> bytes:
        placeholder = dataclasses.replace(frame, key_id=self.key_id,
                                          signature=bytes(protocol.SIGNATURE_SIZE))
        return self._signed(topic, protocol.encode_evidence(placeholder))

    def _signed(self, topic: str, payload: bytes) -> bytes:
        signature = self._key.sign(protocol.signing_input(topic, payload))
        return protocol.with_signature(topic, payload, signature)


def verify(key: Ed25519PublicKey, topic: str, payload: bytes, signature: bytes) -> bool:
    """True when `signature` over `payload` on `topic` is `key`'s (protocol.signing_input)."""
    try:
        key.verify(signature, protocol.signing_input(topic, payload))
    except (InvalidSignature, protocol.ProtocolError):
        return False
    return True


class KeyRegistry:
    """Public keys under a directory (layout above), read per drone and reread every `reload_s`
    seconds while in use, so keys are added or revoked without a restart. Thread-safe."""

    def __init__(self, directory: Path, reload_s: float = 5.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.directory = directory
        self.reload_s = reload_s
        self._clock = clock
        self._lock = threading.Lock()
        self._drones: dict[str, tuple[float, dict[int, Ed25519PublicKey]]] = {}
        self.load_errors = 0  # unreadable .pub files skipped (logged by the caller's metrics)

    def keys(self, drone_id: str, max_age_s: float | None = None) -> dict[int, Ed25519PublicKey]:
        """The drone's keys by key id (empty when it has none), read at most `max_age_s`
        (default `reload_s`) seconds ago."""
        now = self._clock()
        with self._lock:
            cached = self._drones.get(drone_id)
            if cached is not None and now - cached[0] < (max_age_s or self.reload_s):
                return cached[1]
        keys = self._read(drone_id)
        with self._lock:
            self._drones[drone_id] = (now, keys)
        return keys

    def _read(self, drone_id: str) -> dict[int, Ed25519PublicKey]:
        keys: dict[int, Ed25519PublicKey] = {}
        try:
            entries = list(os.scandir(self.directory / drone_id))
        except OSError:  # no directory: no keys
            return keys
        for entry in entries:
            if _KEY_NAME.fullmatch(entry.name):
                try:
                    keys[int(entry.name[:-4])] = load_public(Path(entry.path))
                except KeyFileError:
                    self.load_errors += 1
        return keys

    def check(self, topic: str, payload: bytes, msg: Signed) -> str | None:
        """None when `msg` (a violation or manifest decoded from `payload` on `topic`) carries a
        valid signature of one of its drone's keys; else why not: UNSIGNED, UNKNOWN_KEY or
        INVALID."""
        if msg.key_id is None or msg.signature is None:
            return UNSIGNED
        drone = msg.drone_id if isinstance(msg, protocol.EvidenceManifest) else \
            msg.header.drone_id
        key = self.keys(drone).get(msg.key_id)
        if key is None:  # maybe added since: reread, but at most once a second per drone
            key = self.keys(drone, min(1.0, self.reload_s)).get(msg.key_id)
        if key is None:
            return UNKNOWN_KEY
        return None if verify(key, topic, payload, msg.signature) else INVALID


def private_key_error(path: Path) -> str | None:
    """Why `path` cannot serve as a private signing key (missing, not `<key_id>.key`, readable by
    others than its owner: it must be 0600), or None."""
    try:
        mode = path.stat().st_mode & 0o777
    except OSError as exc:
        return f"cannot read {path}: {exc.strerror}"
    if not path.stem.isdigit() or path.suffix != ".key":
        return f"{path}: the file name must be <key_id>.key"
    if mode & 0o077:
        return f"{path} is mode {mode:04o}: a private key must be 0600 (chmod 600 {path})"
    return None


class ReceiptKeys:
    """The back office's public receipt keys, as a drone holds them: DIR/<key_id>.pub, read
    once (a rotation installs the new key on the drones before the gateways use it)."""

    def __init__(self, keys: dict[int, Ed25519PublicKey]) -> None:
        self.keys = keys

    @classmethod
    def from_dir(cls, directory: Path) -> ReceiptKeys:
        """Every <key_id>.pub in `directory`. Raises KeyFileError if it cannot be read, a .pub
        does not load, there is none, or a private key (<key_id>.key) is there too: whoever
        takes a drone must not get the key that signs every drone's receipts."""
        try:
            names = sorted(p.name for p in directory.iterdir())
        except OSError as exc:
            raise KeyFileError(f"receipt keys {directory}: {exc.strerror}") from exc
        if private := [n for n in names if _PRIVATE_NAME.fullmatch(n)]:
            raise KeyFileError(f"receipt keys {directory}: holds the back office's private key "
                               f"{private[0]}: remove it, a drone needs only the .pub files")
        keys = {int(n[:-4]): load_public(directory / n) for n in names if _KEY_NAME.fullmatch(n)}
        if not keys:
            raise KeyFileError(f"receipt keys {directory}: no <key_id>.pub file in it")
        return cls(keys)

    def check(self, topic: str, payload: bytes, receipt: protocol.EvidenceReceipt) -> str | None:
        """None when `receipt` (decoded from `payload` on `topic`) is signed by one of the keys;
        else why not: UNSIGNED, UNKNOWN_KEY or INVALID."""
        if receipt.key_id is None or receipt.signature is None:
            return UNSIGNED
        key = self.keys.get(receipt.key_id)
        if key is None:
            return UNKNOWN_KEY
        return None if verify(key, topic, payload, receipt.signature) else INVALID
