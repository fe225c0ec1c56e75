"""`presacop keys gen`: new Ed25519 key pairs, for a drone or for the back office's receipts.

`--drone ID --out DIR` writes DIR/<drone_id>/<key_id>.key (the private key, mode 0600: copy it
onto the drone and point its agent.toml `signing.key_file` at it, then delete it here) and
DIR/<drone_id>/<key_id>.pub (the public key: the gateway's `security.keys_dir` and `presacop
verify --keys` read DIR). The key id is the drone's next free one, so a drone can hold several
keys while it rotates.

`--backoffice --out DIR` writes DIR/<key_id>.key (0600: the gateways' `evidence.receipt_key_file`,
signing every evidence receipt) and DIR/<key_id>.pub (copy the .pub files, never the .key, into
every drone's `evidence.receipt_keys_dir`: the drone then deletes an image only on a receipt the
back office signed). Rotation: install the new .pub on the drones first, then move the gateways.

Exit status 0, or 2 with the reason (a reserved or invalid drone id, an unwritable directory).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from common.signing import KeyFileError, generate_backoffice_key, generate_key


def add_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="keys_command", metavar="ACTION", required=True)
    gen = sub.add_parser("gen", help="generate a key pair for one drone, or the back office's "
                         "receipt key pair")
    whose = gen.add_mutually_exclusive_group(required=True)
    whose.add_argument("--drone", help="the drone id")
    whose.add_argument("--backoffice", action="store_true",
                       help="the back office's evidence receipt key (the gateways sign, the "
                       "drones check)")
    gen.add_argument("--out", type=Path, default=None,
                     help="key directory (default: ./drone-keys, or ./backoffice-keys)")


def run(args: argparse.Namespace) -> int:
    try:
        if args.backoffice:
            files = generate_backoffice_key(args.out or Path("backoffice-keys"))
        else:
            files = generate_key(args.out or Path("drone-keys"), args.drone)
    except (KeyFileError, OSError) as exc:
        print(f"presacop keys gen: {exc}", file=sys.stderr)
        return 2
    if args.backoffice:
        print(f"back-office receipt key {files.key_id}: private {files.private} (0600, for the "
              f"gateways' evidence.receipt_key_file), public {files.public} (for the drones' "
              "evidence.receipt_keys_dir)")
    else:
        print(f"key {files.key_id} of {files.drone_id}: private {files.private} (0600, for the "
              f"drone), public {files.public}")
    return 0
