"""Fast tests of the console's logic with a real sqlite file and a fake Kafka `send`: accounts
and lockout, sessions and CSRF, the atomic claim, code parsing, the view, the statistics."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from review_testlib import CHEAP_HASHER, PASSWORD, T0, gateway_records, violation

from backoffice.review import view
from backoffice.review.accounts import Accounts
from backoffice.review.db import Database
from backoffice.review.decisions import Decisions, parse_code, release_all_claims
from backoffice.review.errors import AccountError, DecisionRefused, LoginRefused, PublishFailed
from backoffice.review.sessions import LoginThrottle, Sessions, csrf_ok
from backoffice.review.stats import per_day, percentile
from gateway.records import OutRecord, alert_id

TOPICS = {"violations": "v", "alerts": "a"}


class Clock:
    def __init__(self, ms: int = T0) -> None:
        self.ms = ms

    def __call__(self) -> int:
        return self.ms


@pytest.fixture
def db(tmp_path: Path) -> Database:
    return Database(tmp_path / "state")


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def accounts(db: Database, clock: Clock) -> Accounts:
    acc = Accounts(db, hasher=CHEAP_HASHER, max_failures=3, lockout_s=60, clock=clock)
    acc.add("po-1", "officer", PASSWORD)
    acc.add("sup-1", "supervisor", PASSWORD)
    return acc


def feed(db: Database, *msgs) -> None:
    with db.connect() as conn:
        for msg in msgs:
            for topic, _key, value in gateway_records(msg, TOPICS):
                view.apply(conn, view.VIOLATION if topic == "v" else view.ALERT, value)


# --- accounts ------------------------------------------------------------------------------


def test_passwords_are_argon2id_and_never_stored_plain(db: Database, accounts: Accounts):
    with db.connect() as conn:
        stored = conn.execute("SELECT hash FROM users WHERE name='po-1'").fetchone()[0]
    assert stored.startswith("$argon2id$") and PASSWORD not in stored
    assert accounts.authenticate("po-1", PASSWORD).role == "officer"


@pytest.mark.parametrize(("name", "role", "password"), [
    ("po-1", "officer", PASSWORD),          # exists
    ("bad name", "officer", PASSWORD),
    ("-x", "officer", PASSWORD),
    ("po-2", "admin", PASSWORD),
    ("po-2", "officer", "short"),
])
def test_bad_accounts_are_refused(accounts: Accounts, name: str, role: str, password: str):
    with pytest.raises(AccountError):
        accounts.add(name, role, password)


def test_wrong_unknown_and_disabled_look_the_same(accounts: Accounts):
    messages = set()
    for name, password in (("po-1", "wrong password!"), ("nobody", PASSWORD)):
        with pytest.raises(LoginRefused) as info:
            accounts.authenticate(name, password)
        messages.add(str(info.value))
    accounts.disable("sup-1")
    with pytest.raises(LoginRefused) as info:
        accounts.authenticate("sup-1", PASSWORD)
    messages.add(str(info.value))
    assert messages == {"wrong name or password"}


def test_failed_logins_lock_the_account_for_a_while(accounts: Accounts, clock: Clock):
    for _ in range(3):
        with pytest.raises(LoginRefused):
            accounts.authenticate("po-1", "wrong password!")
    with pytest.raises(LoginRefused) as info:  # the right password does not help while locked
        accounts.authenticate("po-1", PASSWORD)
    assert info.value.reason == "locked" and info.value.retry_after_s == 60
    clock.ms += 60_001
    assert accounts.authenticate("po-1", PASSWORD).name == "po-1"
    for _ in range(3):  # an unknown name locks the same way: the message tells nothing
        with pytest.raises(LoginRefused):
            accounts.authenticate("po-404", "wrong password!")
    with pytest.raises(LoginRefused) as ghost:
        accounts.authenticate("po-404", PASSWORD)
    assert (ghost.value.reason, ghost.value.retry_after_s) == ("locked", 60)
    assert str(ghost.value) == str(info.value).replace("po-1", "po-404")


def test_address_throttle_counts_failures_across_names():
    now = [0.0]
    throttle = LoginThrottle(limit=3, window_s=10, clock=lambda: now[0])
    for _ in range(3):
        assert throttle.retry_after("10.0.0.1") == 0
        throttle.failed("10.0.0.1")
    assert throttle.retry_after("10.0.0.1") > 0 and throttle.retry_after("10.0.0.2") == 0
    now[0] = 10.5
    assert throttle.retry_after("10.0.0.1") == 0


# --- sessions and CSRF ---------------------------------------------------------------------


@pytest.fixture
def sessions(db: Database, clock: Clock) -> Sessions:
    return Sessions(db, b"k" * 32, idle_s=600, max_s=3600, clock=clock)


def test_session_cookie_is_signed_and_server_side(db, accounts, sessions, clock):
    cookie = sessions.create(accounts.get("po-1"))
    s = sessions.resolve(cookie)
    assert s is not None and s.account.name == "po-1"
    sid, mac = cookie.rsplit(".", 1)
    with db.connect() as conn:  # only the id's hash is stored
        found = conn.execute("SELECT COUNT(*) FROM sessions WHERE id_hash=?", (sid,))
        assert found.fetchone()[0] == 0
    assert sessions.resolve(f"{sid}.{'0' * len(mac)}") is None
    other = "A" if sid[-1] != "A" else "B"
    assert sessions.resolve(f"{sid[:-1]}{other}.{mac}") is None
    assert sessions.resolve("") is None and sessions.resolve(None) is None
    assert csrf_ok(s, s.csrf) and not csrf_ok(s, "") and not csrf_ok(s, None)
    assert not csrf_ok(s, s.csrf[:-1])


def test_disabling_or_a_new_password_ends_sessions(accounts, sessions):
    officer = sessions.create(accounts.get("po-1"))
    sup = sessions.create(accounts.get("sup-1"))
    accounts.disable("po-1")
    assert sessions.resolve(officer) is None
    accounts.set_password("sup-1", "another good password")
    assert sessions.resolve(sup) is None


def test_idle_and_old_sessions_end(accounts, sessions, clock):
    cookie = sessions.create(accounts.get("po-1"))
    clock.ms += 599_000
    assert sessions.resolve(cookie) is not None  # and this request refreshes it
    clock.ms += 601_000
    assert sessions.resolve(cookie) is None
    cookie = sessions.create(accounts.get("po-1"))
    for _ in range(7):
        clock.ms += 500_000
        assert sessions.resolve(cookie) is not None
    clock.ms += 500_000  # past 3600 s since login although never idle
    assert sessions.resolve(cookie) is None


def test_login_form_token_is_tied_to_its_cookie(sessions):
    cookie, token = sessions.login_token()
    _, other = sessions.login_token()
    assert sessions.login_token_ok(cookie, token)
    assert not sessions.login_token_ok(cookie, other)
    assert not sessions.login_token_ok(None, token)
    assert not sessions.login_token_ok(token, token)  # an unsigned value is not a cookie


# --- codes and decisions -------------------------------------------------------------------


@pytest.mark.parametrize(("text", "reason"), [
    ("94", "unknown_code"), ("95", "unknown_code"), ("0", "code_out_of_range"),
    ("100", "code_out_of_range"), ("999999", "code_out_of_range"), ("", "bad_code"),
    ("21a", "bad_code"), ("-5", "bad_code"), ("2.5", "bad_code"), ("٢١", "bad_code"),
    (None, "bad_code"), ("1234567", "bad_code"),
])
def test_bad_codes_are_refused_with_a_reason(text, reason):
    with pytest.raises(DecisionRefused) as info:
        parse_code(text)
    assert info.value.reason == reason


def test_codes_are_parsed():
    assert parse_code(" 21 ") == 21 and parse_code("07") == 7 and parse_code("99") == 99


class FakeKafka:
    def __init__(self) -> None:
        self.sent: list[OutRecord] = []
        self.fail = False
        self.during = None

    def __call__(self, records: list[OutRecord]) -> None:
        if self.during:
            self.during()
        if self.fail:
            raise PublishFailed("broker down")
        self.sent.extend(records)


@pytest.fixture
def kafka() -> FakeKafka:
    return FakeKafka()


@pytest.fixture
def decisions(db, kafka, clock) -> Decisions:
    return Decisions(db, kafka, violations_topic="v", alerts_topic="a", console_id="c",
                     clock=clock)


def test_an_officer_decision_writes_the_violation_and_the_alert(db, accounts, decisions, kafka):
    feed(db, violation("d1", 1, None))
    aid = alert_id("d1:1")
    out = decisions.decide_alert(accounts.get("po-1"), aid, "21", "10.1.1.1")
    assert [r.topic for r in kafka.sent] == ["v", "a"]
    v, a = (json.loads(r.value) for r in kafka.sent)
    assert v == out
    assert (v["code"], v["qualified"], v["code_status"], v["original_code"], v["officer"],
            v["revision"], v["decided_ms"]) == (21, True, "officer_set", None, "po-1", 1, T0)
    assert dict(kafka.sent[0].headers)["revision"] == b"1"
    assert (a["state"], a["code"], a["officer"], a["decided_ms"]) == ("resolved", 21, "po-1", T0)
    with db.connect() as conn:
        assert view.queue_depth(conn) == 0
        assert [r["event"] for r in view.audit_log(conn)] == ["decision"]
    with pytest.raises(DecisionRefused) as info:  # the second officer
        decisions.decide_alert(accounts.get("sup-1"), aid, "14")
    assert info.value.reason == "already_decided" and "po-1" in str(info.value)
    assert len(kafka.sent) == 2


def test_a_claimed_alert_cannot_be_decided_twice(db, accounts, decisions, kafka):
    feed(db, violation("d1", 1, None))
    aid = alert_id("d1:1")
    refused: list[DecisionRefused] = []

    def second_officer() -> None:  # runs while the first decision is being written
        kafka.during = None
        try:
            decisions.decide_alert(accounts.get("sup-1"), aid, "14")
        except DecisionRefused as exc:
            refused.append(exc)

    kafka.during = second_officer
    decisions.decide_alert(accounts.get("po-1"), aid, "21")
    assert [e.reason for e in refused] == ["being_decided"]
    assert [json.loads(r.value)["code"] for r in kafka.sent] == [21, 21]


@pytest.mark.parametrize(("alert", "code", "reason"), [
    ("ALERT", "94", "unknown_code"), ("ALERT", "100", "code_out_of_range"),
    ("ALERT", "x", "bad_code"), ("00000000-0000-5000-8000-000000000000", "21", "no_alert"),
    ("not-an-alert-id", "21", "bad_form"), ("ALERT' OR 1=1 --", "21", "bad_form"),
    (None, "21", "bad_form"),
])
def test_bad_decisions_write_nothing(db, accounts, decisions, kafka, alert, code, reason):
    feed(db, violation("d1", 1, None))
    alert = alert_id("d1:1") if alert == "ALERT" else alert
    with pytest.raises(DecisionRefused) as info:
        decisions.decide_alert(accounts.get("po-1"), alert, code)
    assert info.value.reason == reason and kafka.sent == []
    with db.connect() as conn:
        assert view.queue_depth(conn) == 1 and view.audit_log(conn) == []
        assert conn.execute("SELECT claimed_by FROM alerts").fetchone()[0] is None


def test_kafka_failure_releases_the_claim(db, accounts, decisions, kafka):
    feed(db, violation("d1", 1, None))
    kafka.fail = True
    with pytest.raises(PublishFailed):
        decisions.decide_alert(accounts.get("po-1"), alert_id("d1:1"), "21")
    kafka.fail = False
    decisions.decide_alert(accounts.get("sup-1"), alert_id("d1:1"), "21")
    assert json.loads(kafka.sent[0].value)["officer"] == "sup-1"


def test_claims_left_by_a_crash_are_released_at_start(db, accounts, decisions, kafka):
    feed(db, violation("d1", 1, None))
    with db.connect() as conn:
        conn.execute("UPDATE alerts SET claimed_by='po-1'")
    release_all_claims(db)
    decisions.decide_alert(accounts.get("po-1"), alert_id("d1:1"), "21")


def test_a_supervisor_changes_a_drone_code(db, accounts, decisions, kafka):
    feed(db, violation("d1", 5, 21), violation("d1", 6, None))
    with pytest.raises(DecisionRefused) as info:
        decisions.change_code(accounts.get("po-1"), "d1:5", "0", "14")
    assert info.value.reason == "forbidden"
    sup = accounts.get("sup-1")
    for mid, rev, code, reason in (("d1:5", "1", "14", "stale"), ("d1:5", "0", "21", "refused"),
                                   ("d1:6", "0", "14", "pending"), ("d1:7", "0", "14",
                                                                    "no_violation"),
                                   ("d1:5'", "0", "14", "bad_form"), ("d1:5", "x", "14",
                                                                      "bad_form")):
        with pytest.raises(DecisionRefused) as info:
            decisions.change_code(sup, mid, rev, code)
        assert info.value.reason == reason, (mid, rev, code)
    assert kafka.sent == []
    out = decisions.change_code(sup, "d1:5", "0", "14")
    assert (out["code"], out["code_status"], out["original_code"], out["revision"]) == \
        (14, "officer_changed", 21, 1)
    again = decisions.change_code(sup, "d1:5", "1", "40")
    assert (again["code_status"], again["original_code"], again["revision"]) == \
        ("officer_changed", 21, 2)


# --- the view and the statistics -----------------------------------------------------------


def test_the_view_never_reopens_and_keeps_the_highest_revision(db, accounts, decisions):
    feed(db, violation("d1", 1, None))
    decisions.decide_alert(accounts.get("po-1"), alert_id("d1:1"), "21")
    feed(db, violation("d1", 1, None))  # the feeder catching up with the old records
    with db.connect() as conn:
        assert view.queue_depth(conn) == 0
        row = view.violation_row(conn, "d1:1")
        assert (row["revision"], row["code"], row["code_status"]) == (1, 21, "officer_set")
        with pytest.raises(ValueError, match="usable alert"):
            view.apply(conn, view.ALERT, {"state": "open"})


def test_queue_is_oldest_first(db):
    feed(db, violation("d1", 2, None, time_ms=T0 + 40))
    with db.connect() as conn:
        for topic, _k, value in gateway_records(violation("d2", 1, None), TOPICS,
                                                received_ms=T0 - 1000):
            view.apply(conn, view.VIOLATION if topic == "v" else view.ALERT, value)
        assert [a["message_id"] for a in view.open_alerts(conn)] == ["d2:1", "d1:2"]


def test_statistics_per_day(db, accounts, decisions, clock):
    feed(db, violation("d1", 1, None), violation("d1", 2, 21), violation("d1", 3, 21),
         violation("d1", 4, None))
    clock.ms = T0 + 800 + 10_000
    decisions.decide_alert(accounts.get("po-1"), alert_id("d1:1"), "21")
    clock.ms = T0 + 800 + 30_000
    decisions.change_code(accounts.get("sup-1"), "d1:2", "0", "14")
    with db.connect() as conn:
        (day,) = per_day(conn)
    assert (day.violations, day.officer_set, day.officer_changed, day.decisions) == (4, 1, 1, 1)
    assert day.intervention_rate == 0.5 and day.p50_s == day.p95_s == 10.0
    assert percentile([], 50) is None
    assert percentile([5, 1, 4, 2, 3], 50) == 3 and percentile(list(range(1, 101)), 95) == 95


# --- docs and CLI ----------------------------------------------------------------------------


def test_docs_config_table_is_generated_from_the_code():
    from backoffice.review.config import reference_markdown

    doc = (Path(__file__).resolve().parents[3] / "docs" / "review.md").read_text()
    assert doc.endswith(reference_markdown()), (
        "docs/review.md's config table is stale: regenerate it with .venv/bin/python -c "
        "'from backoffice.review.config import reference_markdown as r; print(r(), end=\"\")'")


def test_cli_manages_accounts_without_a_password_argument(tmp_path: Path, capsys):
    from backoffice.review.cli import manage
    from backoffice.review.config import load_config

    cfg_file = tmp_path / "review.toml"
    cfg_file.write_text(f'[review]\nstate_dir = "{tmp_path / "state"}"\n')
    cfg = load_config(cfg_file)
    def run(action: str, name: str, role: str | None = None) -> str:
        return manage(cfg, action, name, role, lambda: PASSWORD, CHEAP_HASHER)

    assert run("add", "po-9") == "account added: po-9 (officer)"
    with pytest.raises(AccountError, match="exists"):
        run("add", "po-9", "supervisor")
    assert run("passwd", "po-9", "supervisor") == "password set: po-9 (supervisor)"
    assert run("disable", "po-9") == "account disabled: po-9 (supervisor)"
    with pytest.raises(AccountError, match="no account"):
        run("disable", "nobody")
    with Database(tmp_path / "state").connect() as conn:
        assert [r["event"] for r in view.audit_log(conn)] == \
            ["account_disabled", "password_set", "account_added"]


def test_config_rejects_half_a_tls_setting_and_bad_topics(tmp_path: Path):
    from backoffice.review.config import load_config
    from common.config import ConfigError

    bad = tmp_path / "review.toml"
    bad.write_text('[review]\ntls_certfile = "c.pem"\n')
    with pytest.raises(ConfigError, match=r"review\.tls_keyfile"):
        load_config(bad)
    bad.write_text('[review]\naudit_topic = "no spaces"\n')
    with pytest.raises(ConfigError, match=r"review\.audit_topic"):
        load_config(bad)


# --- HTTP: headers, cookies, CSRF (no Kafka: the console is not started) ----------------------


@pytest.fixture
def web(tmp_path: Path):
    from starlette.testclient import TestClient

    from backoffice.review.app import create_app
    from backoffice.review.config import load_config
    from backoffice.review.service import Console

    cfg_file = tmp_path / "review.toml"
    cfg_file.write_text(f'[review]\nstate_dir = "{tmp_path / "state"}"\nsecure_cookies = true\n'
                        '[kafka]\nsecurity_protocol = "SASL_SSL"\nsasl_mechanism = "PLAIN"\n'
                        'sasl_username = "review"\nsasl_password = "s3cret"\n'
                        f'[evidence.store]\npath = "{tmp_path / "evidence"}"\n')
    console = Console(load_config(cfg_file))
    console.accounts.hasher = CHEAP_HASHER
    console.accounts.add("po-1", "officer", PASSWORD)
    # https: the cookies are Secure, and the client only sends them back over https
    return console, TestClient(create_app(console), base_url="https://testserver")


def test_every_kafka_client_gets_the_security_settings(web):
    console, _ = web
    for settings in (console.publisher.settings, console.feeder.settings):
        opts = settings.kafka_python()
        assert (opts["security_protocol"], opts["sasl_mechanism"], opts["sasl_plain_username"],
                opts["sasl_plain_password"]) == ("SASL_SSL", "PLAIN", "review", "s3cret")


def test_pages_send_the_security_headers_and_strict_cookies(web):
    _, client = web
    page = client.get("/login")
    h = page.headers
    assert "script-src 'self'" in h["content-security-policy"]
    assert "frame-ancestors 'none'" in h["content-security-policy"]
    assert (h["x-frame-options"], h["x-content-type-options"], h["cache-control"]) == \
        ("DENY", "nosniff", "no-store")
    assert "max-age" in h["strict-transport-security"]
    cookie = h["set-cookie"].lower()
    assert all(flag in cookie for flag in ("httponly", "secure", "samesite=strict",
                                           "path=/login"))


def _token(page_text: str) -> str:
    import re

    return re.search(r'name="csrf" value="([^"]+)"', page_text).group(1)


def test_posts_need_the_token_and_our_origin(web):
    console, client = web
    token = _token(client.get("/login").text)
    form = {"name": "po-1", "password": PASSWORD}
    assert client.post("/login", data=form).status_code == 403  # no token
    refused = client.post("/login", data={**form, "csrf": token},
                          headers={"origin": "https://evil.example"})
    assert refused.status_code == 403 and "another site" in refused.text
    done = client.post("/login", data={**form, "csrf": token}, follow_redirects=False)
    assert done.status_code == 303 and done.headers["location"] == "/queue"
    assert "samesite=strict" in done.headers["set-cookie"].lower()
    queue = client.get("/queue")
    assert queue.status_code == 200 and "po-1 (officer)" in queue.text
    no_token = client.post("/decide", data={"alert_id": alert_id("d:1"), "code": "21"})
    assert no_token.status_code == 403 and "security token" in no_token.text
    wrong = client.post("/decide", data={"alert_id": alert_id("d:1"), "code": "21",
                                         "csrf": token})  # the login form's token
    assert wrong.status_code == 403
    with console.db.connect() as conn:
        assert [r["event"] for r in view.audit_log(conn)] == ["login"]


def test_the_sample_config_loads():
    from backoffice.review.config import load_config

    cfg = load_config(Path(__file__).resolve().parents[3] / "deploy" / "review.toml")
    assert cfg.kafka.security_protocol == "SASL_SSL" and cfg.review.secure_cookies


def test_violations_of_one_frame_share_its_image(db):
    from review_testlib import evidence_record

    image = b"\xff\xd8 one frame, two cars"
    eid = hashlib.sha256(image).hexdigest()[:16]
    first, second = (violation("d1", s, None, evidence_id=eid) for s in (1, 2))
    feed(db, first, second)
    with db.connect() as conn:
        record = evidence_record(first, image, "file:///x")  # under the first violation's id
        view.apply(conn, view.EVIDENCE, record)
        assert [a["evidence"] for a in view.open_alerts(conn)] == [record["sha256"]] * 2
        with pytest.raises(ValueError, match="first 8 bytes"):
            view.apply(conn, view.EVIDENCE, {**record, "evidence_id": "0" * 16})
