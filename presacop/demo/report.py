"""The self-checking summary (the `--json` object) and its human table."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from presacop.demo.ledger import ROLES, Ledger, Tally

LATENCY_BASIS = (
    "drone time_ms (1/25 s resolution: up to 40 ms early) to the Kafka record timestamp, which the"
    " gateway's producer sets")


def percentile(samples: Sequence[int], q: float) -> int | None:
    """Nearest-rank percentile `q` (0..100) of `samples`, None if there are none."""
    if not samples:
        return None
    ordered = sorted(samples)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str


def summarize(ledger: Ledger, tally: Tally, meta: Mapping[str, Any],
              extra_checks: Sequence[Check] = ()) -> dict[str, Any]:
    """The self-checking summary (the --json object); `meta` adds the run's facts."""
    kafka_violations = tally.ids("violation")
    missing_v = sorted(ledger.violations - kafka_violations)
    found_t = Counter(mid.rpartition(":")[0] for mid in tally.ids("telemetry"))
    missing_t = {d: n - found_t[d] for d, n in ledger.telemetry.items() if found_t[d] < n}
    extra_t = sum(max(0, n - ledger.telemetry.get(d, 0)) for d, n in found_t.items())
    unexpected = sorted(kafka_violations - ledger.violations)
    alerted = set(tally.alerts)
    no_alert = sorted(ledger.unqualified - alerted)
    stray_alerts = sorted(alerted - ledger.unqualified)
    telemetry = sum(ledger.telemetry.values())
    lost = len(missing_v) + sum(missing_t.values())
    checks = [
        Check("violations", not missing_v,
              f"{len(ledger.violations) - len(missing_v)} of {len(ledger.violations)} accepted "
              "violations are in Kafka (by message id)" + _some(missing_v)),
        Check("alerts", not no_alert and not stray_alerts,
              f"{len(ledger.unqualified)} unqualified violations, {len(alerted)} with an alert"
              + _some(no_alert, "without an alert") + _some(stray_alerts, "alerts for others")),
        Check("telemetry", not missing_t,
              f"{telemetry - sum(missing_t.values())} of {telemetry} accepted telemetry "
              "messages are in Kafka" + (f"; missing per drone: {missing_t}" if missing_t else "")),
        Check("nothing unknown", not unexpected and not extra_t and not tally.unreadable,
              f"{len(unexpected) + extra_t} messages no agent accepted, {tally.unreadable} "
              "unreadable records" + _some(unexpected, "unknown")),
        Check("dead letters", tally.records["deadletter"] == 0,
              f"{tally.records['deadletter']} dead letters"
              + (f" {dict(tally.dead_reasons)}" if tally.dead_reasons else "")),
        *extra_checks,
    ]
    return {
        "ok": all(c.ok for c in checks),
        **meta,
        "published": {"violations": len(ledger.violations), "unqualified": len(ledger.unqualified),
                      "telemetry": telemetry, "total": len(ledger.violations) + telemetry},
        "delivered": {"violations": len(ledger.violations) - len(missing_v),
                      "telemetry": telemetry - sum(missing_t.values()),
                      "status": len(tally.ids("status")),
                      "total": len(ledger.violations) + telemetry - lost},
        "alerts": len(alerted),
        "deadletter": tally.records["deadletter"],
        "lost": lost,
        "lost_violation_ids": missing_v[:20],
        "still_queued": ledger.queued,
        "duplicates": tally.duplicates,
        "kafka_records": tally.progress(),
        "foreign_records": tally.foreign,
        "latency_ms": {"p50": percentile(tally.latencies_ms, 50),
                       "p99": percentile(tally.latencies_ms, 99),
                       "max": max(tally.latencies_ms, default=None),
                       "basis": LATENCY_BASIS},
        "checks": [{"name": c.name, "ok": c.ok, "detail": c.detail} for c in checks],
    }


def evidence_summary(ledger: Ledger, evidence: Mapping[str, Mapping[str, Any]],
                     verified: set[str]) -> dict[str, Any]:
    """The summary's `evidence` object: images the accepted violations name, stored (a
    presacop.evidence record), verified (the stored object hashes to the record's SHA-256)."""
    expected = ledger.evidence
    return {
        "expected": len(expected),
        "stored": len(expected & set(evidence)),
        "verified": len(expected & verified),
        "bytes": sum(int(evidence[i]["size"]) for i in expected & set(evidence)),
        "uploads_pending": ledger.uploads_pending,
        "uploads_confirmed": ledger.uploads_confirmed,
        "receipts_bad_signature": ledger.receipts_bad_signature,
        "missing_ids": sorted(expected - verified)[:20],
    }


def evidence_check(ledger: Ledger, evidence: Mapping[str, Mapping[str, Any]],
                   verified: set[str]) -> Check:
    summary = evidence_summary(ledger, evidence, verified)
    missing = sorted(ledger.evidence - set(evidence))
    bad = sorted((ledger.evidence & set(evidence)) - verified)
    return Check("evidence", not missing and not bad,
                 f"{summary['verified']} of {summary['expected']} evidence images stored and "
                 f"verified by SHA-256 ({summary['bytes']} bytes)" + _some(missing)
                 + _some(bad, "not verifying"))


def _some(ids: Sequence[str], what: str = "missing") -> str:
    if not ids:
        return ""
    shown = ", ".join(ids[:5]) + (" ..." if len(ids) > 5 else "")
    return f"; {len(ids)} {what}: {shown}"


def render(summary: Mapping[str, Any]) -> str:
    """The human summary table."""
    pub, dlv, kafka = summary["published"], summary["delivered"], summary["kafka_records"]
    checks = {c["name"]: "ok" if c["ok"] else "FAIL" for c in summary["checks"]}
    lat = summary["latency_ms"]
    rows = [
        ("violations", pub["violations"], dlv["violations"], checks["violations"]),
        ("  unqualified -> alerts", pub["unqualified"], summary["alerts"], checks["alerts"]),
        ("telemetry", pub["telemetry"], dlv["telemetry"], checks["telemetry"]),
        ("status (online/offline)", "-", dlv["status"], ""),
        ("dead letters", "-", summary["deadletter"], checks["dead letters"]),
        *_evidence_rows(summary, checks),
        ("duplicates (same message id)", "-", summary["duplicates"], ""),
        ("lost", "-", summary["lost"], "ok" if summary["lost"] == 0 else "FAIL"),
    ]
    lines = [f"{'':30} {'published':>9} {'in Kafka':>9}  check"]
    lines += [f"{name:30} {a:>9} {b:>9}  {c}".rstrip() for name, a, b, c in rows]
    lines += [
        "",
        "Kafka records: " + ", ".join(f"{role} {kafka[role]}" for role in ROLES)
        + f" (topics presacop.demo.{summary.get('run_id', '?')}.*)",
        f"latency: p50 {_ms(lat['p50'])}, p99 {_ms(lat['p99'])}, max {_ms(lat['max'])} "
        f"({lat['basis']})",
        f"link faults injected: {summary.get('link_faults', 0)}"
        + (f" ({summary['link_fault_detail']})" if summary.get("link_fault_detail") else ""),
        "",
        *(f"  [{'ok' if c['ok'] else 'FAIL':>4}] {c['name']}: {c['detail']}"
          for c in summary["checks"]),
        "",
    ]
    failed = sum(not c["ok"] for c in summary["checks"])
    lines.append("OK: nothing lost, every check passed" if summary["ok"]
                 else f"FAILED: {summary['lost']} lost, {failed} check(s) failed")
    return "\n".join(lines)


def _evidence_rows(summary: Mapping[str, Any], checks: Mapping[str, str]) -> list[tuple[Any, ...]]:
    ev = summary.get("evidence")
    if ev is None:
        return []
    return [("evidence images (stored)", ev["expected"], ev["stored"], ""),
            (f"  verified by SHA-256, {ev['bytes']} B", "-", ev["verified"],
             checks.get("evidence", ""))]


def _ms(value: int | None) -> str:
    return "n/a" if value is None else f"{value} ms"
