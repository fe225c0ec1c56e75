"""docs/statistics.md carries the generated configuration table; the CLI parses as documented."""

from __future__ import annotations

from pathlib import Path

from backoffice.config import load_config, reference_markdown
from presacop.cli import build_parser

ROOT = Path(__file__).resolve().parents[2]


def test_the_config_table_in_the_docs_is_generated_from_the_code() -> None:
    text = (ROOT / "docs" / "statistics.md").read_text()
    start = text.index("<!-- generated: backoffice.config.reference_markdown() -->\n")
    end = text.index("<!-- end generated -->")
    assert text[start:end].split("\n", 1)[1] == reference_markdown()


def test_defaults_load_without_a_file() -> None:
    cfg = load_config(None)
    assert cfg.history.topic == "presacop.history"
    assert cfg.history.topic in cfg.archived_topics()


def test_history_subcommands_parse() -> None:
    parser, _ = build_parser()
    args = parser.parse_args(["history", "ingest", "f.csv.gz", "--config", "b.toml"])
    assert (args.history_command, args.file, args.config) == ("ingest", "f.csv.gz", "b.toml")
    args = parser.parse_args(["history", "sample", "--rows", "10", "--out", "s.csv"])
    assert (args.rows, args.out, args.seed) == (10, "s.csv", 17)
