"""Bad values of the config keys added in session 4 name the key and the file (the typed loader's
promise, common.config): history.parsers, stats.archive_trigger_s, kafka.backend."""

from __future__ import annotations

from pathlib import Path

import pytest

from backoffice.config import load_config as load_backoffice
from common.config import ConfigError
from gateway.config import load_config as load_gateway


@pytest.mark.parametrize(("text", "key"), [
    ("[history]\nparsers = -1\n", "history.parsers"),
    ("[history]\nparsers = \"two\"\n", "history.parsers"),
    ("[stats]\narchive_trigger_s = 0\n", "stats.archive_trigger_s"),
])
def test_backoffice_keys(tmp_path: Path, text: str, key: str) -> None:
    path = tmp_path / "backoffice.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_backoffice(path, env={})
    assert info.value.key == key and str(path) in str(info.value)


def test_gateway_backend(tmp_path: Path) -> None:
    path = tmp_path / "gateway.toml"
    path.write_text('[kafka]\nbackend = "librdkafka-rs"\n')
    with pytest.raises(ConfigError) as info:
        load_gateway(path, env={})
    assert info.value.key == "kafka.backend" and str(path) in str(info.value)
