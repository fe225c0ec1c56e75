"""PresaCop edge: the command line, the shared config loader and the local development stack.

The product packages (`protocol`, `drone_agent`, `gateway`, `hw_sim`) are top level; this package
only holds what ties them together for an operator: the `presacop` command, typed TOML config
loading with errors that name the key, and the local Mosquitto + Kafka stack.
"""

__version__ = "0.1.0"
