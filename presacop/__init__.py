"""PresaCop edge: the top floor: the `presacop` command and the local development stack.

The product packages (`protocol`, `drone_agent`, `gateway`, `hw_sim`) are top level, with the
small shared pieces (typed TOML config, backoff, child processes) in `common`; this package only
holds what ties them together for an operator: the `presacop` command and the local Mosquitto +
Kafka stack.
"""

__version__ = "0.1.0"
