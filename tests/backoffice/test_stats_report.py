"""The report from a statistics file written by hand: the shares and rates it prints, the files."""

from __future__ import annotations

from backoffice_testlib import load_config, write_config

from backoffice.stats.aggregates import StatsStore
from backoffice.stats.report import ReportError, load_figures, write_report
from presacop.cli import main

ROWS = [
    ("violations", "drone", "", 200), ("unqualified", "drone", "", 20),
    ("interventions", "drone", "", 25), ("decision_ms_sum", "drone", "", 25 * 120_000),
    ("decision_ms_count", "drone", "", 25), ("decision_bucket", "drone", "1-5m", 25),
    ("by_code", "drone", "21", 150), ("by_code", "drone", "38", 50),
    ("by_code", "history", "21", 1000), ("by_code", "history", "14", 3000),
    ("violations", "history", "", 4000), ("by_borough", "drone", "Queens", 200),
    ("by_borough", "history", "Queens", 1000), ("by_borough", "history", "Bronx", 3000),
    ("by_hour", "drone", "9", 200), ("by_hour", "history", "9", 4000),
    ("by_day", "drone", "2026-05-28", 120), ("by_day", "drone", "2026-05-29", 80),
    ("interventions_by_day", "drone", "2026-05-28", 24),
    ("interventions_by_day", "drone", "2026-05-29", 1), ("by_drone", "drone", "drone-1", 200),
]


def test_report_figures_files_and_table(tmp_path, capsys) -> None:
    config = write_config(tmp_path, "127.0.0.1:9")
    cfg = load_config(config)
    StatsStore(cfg.stats.stats_dir).apply(0, ROWS)
    f = load_figures(cfg)
    assert (f.unqualified_share(), f.intervention_rate(), f.mean_decision_s()) == (0.1, 0.125,
                                                                                   120.0)
    assert f.share("by_code", "drone", "21") == 0.75 and f.share("by_code", "history", "21") == 0.25
    assert f.days() == [("2026-05-28", 120, 24), ("2026-05-29", 80, 1)]
    assert f.top_codes()[:2] == ["21", "14"]

    assert main(["stats", "report", "-c", str(config), "--out", str(tmp_path / "r")]) == 0
    out = capsys.readouterr().out
    assert "officer intervention rate: 12.5%" in out and "mean time to decision: 2.0 min" in out
    assert "NO PARKING-STREET CLEANING" in out  # code 21's DOF text
    names = {p.name for p in (tmp_path / "r").iterdir()}
    assert names == {"index.html", "per_hour.png", "codes.png", "boroughs.png",
                     "interventions.png", "decisions.png"}
    assert all((tmp_path / "r" / n).read_bytes()[:4] == b"\x89PNG" for n in names if "png" in n)
    assert 'src="codes.png"' in (tmp_path / "r" / "index.html").read_text()


def test_no_statistics_yet_is_a_clear_error(tmp_path, capsys) -> None:
    config = write_config(tmp_path, "127.0.0.1:9")
    try:
        write_report(load_config(config), tmp_path / "r")
    except ReportError as exc:
        assert "presacop stats run" in str(exc)
    else:
        raise AssertionError("expected ReportError")
    assert main(["stats", "report", "-c", str(config), "--out", str(tmp_path / "r")]) == 2
    assert "no statistics" in capsys.readouterr().err
