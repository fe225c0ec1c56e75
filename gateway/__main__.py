"""`python -m gateway [--config FILE] [--check-config]`: the same as `presacop gateway`."""

from __future__ import annotations

import argparse
import sys

from gateway import cli

if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m gateway", description=cli.__doc__)
    cli.add_arguments(parser)
    sys.exit(cli.run(parser.parse_args()))
