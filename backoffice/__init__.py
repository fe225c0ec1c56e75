"""The back office: what runs on PresaCop's side of Kafka.

    backoffice.history   NYPD history: a sample generator and a resumable Kafka ingest
    backoffice.areas     NYC boroughs and grid cells, shared by history and drone statistics
    backoffice.review    the officer console (its own package docstring)
    backoffice.verify    `presacop verify`: drones' signatures on violation records, offline

Imports gateway, protocol and common only (tests/test_layout.py). Each subpackage draws its own
error tree; configuration errors are `common.config.ConfigError`.
"""
