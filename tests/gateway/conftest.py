"""Fixtures of the gateway tests; the helpers live in gateway_testlib."""

from gateway_testlib import gateway_factory, publisher_factory

__all__ = ["gateway_factory", "publisher_factory"]
