"""Agent config: errors name the key; docs/agent.md carries the generated reference."""

from __future__ import annotations

from pathlib import Path

import pytest

from common.config import ConfigError, load
from drone_agent.config import AgentConfig, reference_table

ROOT = Path(__file__).resolve().parents[2]
MINIMAL = 'drone_id = "d1"\n[position]\nfactory = "fixed"\n'


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "agent.toml"
    path.write_text(text)
    return path


def test_minimal_config_gets_documented_defaults(tmp_path: Path) -> None:
    cfg = load(AgentConfig, write(tmp_path, MINIMAL), env={})
    assert cfg.drone_id == "d1" and cfg.position.factory == "fixed"
    assert cfg.recognizer.factory == "stub" and cfg.mqtt.protocol == "5"
    assert cfg.outbox.max_rows == 200_000 and cfg.violations.dedupe_window_s == 600.0


@pytest.mark.parametrize(("text", "key"), [
    ('[position]\nfactory = "fixed"\n', "drone_id"),
    ('drone_id = "d1"\n', "position.factory"),
    ('drone_id = "no spaces allowed"\n[position]\nfactory = "fixed"\n', "drone_id"),
    (MINIMAL + "[mqtt]\nport = 0\n", "mqtt.port"),
    (MINIMAL + "[mqtt]\nport = \"1883\"\n", "mqtt.port"),
    (MINIMAL + "[mqtt]\nprotocol = \"4\"\n", "mqtt.protocol"),
    (MINIMAL + "[mqtt]\nbackoff_min_s = 5.0\nbackoff_max_s = 1.0\n", "mqtt"),
    (MINIMAL + "[mqtt]\nca_file = \"/nonexistent/ca.pem\"\ntls = true\n", "mqtt.ca_file"),
    (MINIMAL + "[mqtt]\nhots = \"x\"\n", "mqtt.hots"),
    (MINIMAL + "[outbox]\nmax_rows = 10\ntelemetry_reserve_rows = 10\n", "outbox"),
    (MINIMAL + "[evidence]\njpeg_quality = 101\n", "evidence.jpeg_quality"),
    (MINIMAL + "[evidence]\nreply_timeout_s = 0\n", "evidence.reply_timeout_s"),
    (MINIMAL + "[evidence]\nconfirm_timeout_s = -5\n", "evidence.confirm_timeout_s"),
    (MINIMAL + "[recognizer]\nfactory = \"pkg.mod:\"\n", "recognizer.factory"),
    (MINIMAL + "[recognizer]\nmax_rate_hz = 0\n", "recognizer.max_rate_hz"),
    (MINIMAL + "[telemetry]\nperiod_s = -1\n", "telemetry.period_s"),
    (MINIMAL + "[camera]\noptions = 3\n", "camera.options"),
])
def test_bad_values_name_the_key(tmp_path: Path, text: str, key: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load(AgentConfig, path, env={})
    assert info.value.key == key
    assert str(path) in str(info.value)


def test_password_comes_from_the_environment(tmp_path: Path) -> None:
    path = write(tmp_path, MINIMAL + '[mqtt]\nusername = "drone"\npassword = "in-file"\n')
    cfg = load(AgentConfig, path, env={"PRESACOP_MQTT_PASSWORD": "s3cret"})
    assert cfg.mqtt.password == "s3cret" and cfg.mqtt.username == "drone"


def test_sample_config_in_deploy_is_valid() -> None:
    cfg = load(AgentConfig, ROOT / "deploy" / "agent.toml", env={})
    assert cfg.drone_id


def test_docs_table_matches_the_code() -> None:
    doc = (ROOT / "docs" / "agent.md").read_text()
    start, end = "<!-- config-table:start -->\n", "<!-- config-table:end -->"
    assert start in doc and end in doc, "docs/agent.md lost its config-table markers"
    embedded = doc.split(start, 1)[1].split(end, 1)[0]
    assert embedded == reference_table(), \
        "docs/agent.md is stale: regenerate with `python -m drone_agent.config`"
