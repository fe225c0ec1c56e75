"""`presacop keys gen --drone ID --out DIR`: a new Ed25519 key pair for a drone's violations.

Writes DIR/<drone_id>/<key_id>.key (the private key, mode 0600: copy it onto the drone and
point its agent.toml `signing.key_file` at it, then delete it here) and DIR/<drone_id>/<key_id>.pub
(the public key: the gateway's `security.keys_dir` and `presacop verify --keys` read DIR). The key
id is the drone's next free one, so a drone can hold several keys while it rotates.
Exit status 0, or 2 with the reason (a reserved or invalid drone id, an unwritable directory).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from common.signing import KeyFileError, generate_key


def add_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="keys_command", metavar="ACTION", required=True)
    gen = sub.add_parser("gen", help="generate a key pair for one drone")
    gen.add_argument("--drone", required=True, help="the drone id")
    gen.add_argument("--out", type=Path, default=Path("drone-keys"),
                     help="key directory (default: ./drone-keys)")


def run(args: argparse.Namespace) -> int:
    try:
        files = generate_key(args.out, args.drone)
    except (KeyFileError, OSError) as exc:
        print(f"presacop keys gen: {exc}", file=sys.stderr)
        return 2
    print(f"key {files.key_id} of {files.drone_id}: private {files.private} (0600, for the "
          f"drone), public {files.public}")
    return 0
