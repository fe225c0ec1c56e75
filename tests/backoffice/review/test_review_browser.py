"""The officer console end to end: `presacop review serve` on a real Kafka, driven by headless
Chromium. Each test uses its own drones, so the tests share one console and one queue."""

from __future__ import annotations

import urllib.request
import uuid
from typing import Any

from review_testlib import PASSWORD, T0, end_offsets, read_to_end
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys

from gateway.records import alert_id
from tests.support import wait_until


def drone() -> str:
    return f"rv-{uuid.uuid4().hex[:8]}"


def login(driver: Any, console: Any, name: str, password: str = PASSWORD) -> None:
    driver.get(f"{console.url}/login")
    driver.find_element(By.ID, "name").send_keys(name)
    driver.find_element(By.ID, "password").send_keys(password)
    driver.find_element(By.ID, "login").click()
    wait_until(lambda: driver.find_elements(By.ID, "who") or driver.find_elements(By.ID, "error"),
               30, "the page after logging in")


def text(driver: Any, element_id: str) -> str:
    found = driver.find_elements(By.ID, element_id)
    return found[0].text if found else ""


def open_alert(driver: Any, console: Any, aid: str) -> None:
    """Load the queue focused on `aid`, reloading until the console's view has it."""
    def shown() -> bool:
        driver.get(f"{console.url}/queue?alert={aid}")
        return bool(driver.find_elements(By.CSS_SELECTOR, f"input[name=alert_id][value='{aid}']"))

    wait_until(shown, 60, f"alert {aid} in the queue")


def image_loaded(driver: Any) -> bool:
    return driver.execute_script(
        "const i = document.getElementById('evidence'); return !!i && i.complete && "
        "i.naturalWidth > 0;")


def in_queue(driver: Any, console: Any, aid: str) -> bool:
    driver.get(f"{console.url}/queue")
    return bool(driver.find_elements(By.CSS_SELECTOR, f"[value='{aid}'], [data-alert='{aid}']"))


def kafka_writes(console: Any) -> dict[Any, int]:
    return end_offsets(console.bootstrap, [console.topics["violations"], console.topics["alerts"]])


def officer_at_new_alert(console: Any, browsers: Any) -> tuple[Any, str, dict[Any, int]]:
    """(browser, alert id, Kafka end offsets): po-1 looking at a fresh alert."""
    aid = console.add_alert(drone(), 1)
    (b,) = browsers(1)
    login(b, console, "po-1")
    open_alert(b, console, aid)
    return b, aid, kafka_writes(console)


def test_an_officer_sees_the_evidence_and_sets_the_code(console, browsers, doc_screenshot):
    d = drone()
    aid = console.add_alert(d, 1)
    waiting = console.add_alert(d, 2, image=False)  # its upload is still on its way
    (b,) = browsers(1)
    login(b, console, "po-1")
    assert b.current_url.endswith("/queue"), text(b, "error")
    open_alert(b, console, waiting)
    assert "on its way" in text(b, "evidence-pending")
    open_alert(b, console, aid)
    wait_until(lambda: image_loaded(b), 30, "the evidence image to load")
    assert text(b, "plate").startswith("K001XY") and text(b, "confidence") == "62 %"
    assert text(b, "drone") == d
    b.find_element(By.ID, "code-search").send_keys("hydrant")
    visible = [r.text for r in b.find_elements(By.CSS_SELECTOR, "#code-table tbody tr")
               if r.is_displayed()]
    assert visible == ["40 FIRE HYDRANT"]
    b.find_element(By.ID, "code").send_keys("40")
    assert text(b, "code-text") == "FIRE HYDRANT"
    if doc_screenshot is not None:
        b.save_screenshot(str(doc_screenshot))
    b.find_element(By.ID, "code").send_keys(Keys.ENTER)  # type the code, Enter
    wait_until(lambda: "code 40 recorded" in text(b, "notice"), 30, "the decision's notice")
    assert not in_queue(b, console, aid) and in_queue(b, console, waiting)

    mid = f"{d}:1"
    revisions = [(v, h) for v, h in read_to_end(console.bootstrap, console.topics["violations"])
                 if v["message_id"] == mid]
    assert [(v["revision"], v["code_status"]) for v, _ in revisions] == \
        [(0, "pending"), (1, "officer_set")]
    v, headers = revisions[1]
    assert (v["code"], v["qualified"], v["original_code"], v["officer"]) == \
        (40, True, None, "po-1")
    assert headers["revision"] == b"1" and headers["record-type"] == b"violation"
    states = [a for a, _ in read_to_end(console.bootstrap, console.topics["alerts"])
              if a["alert_id"] == aid]
    assert [(a["state"], a["code"], a.get("officer")) for a in states] == \
        [("open", None, None), ("resolved", 40, "po-1")]
    assert states[1]["decided_ms"] == v["decided_ms"]

    def audited() -> list[tuple[str, str]]:
        got = [(r["event"], r["account"]) for r, _ in
               read_to_end(console.bootstrap, console.topics["audit"])]
        return got if ("decision", "po-1") in got else []

    events = wait_until(audited, 30, "the decision in the audit topic")
    assert ("login", "po-1") in events


def test_the_image_replaces_the_placeholder_when_it_arrives(console, browsers):
    d = drone()
    aid = console.add_alert(d, 7, image=False)
    (b,) = browsers(1)
    login(b, console, "po-1")
    open_alert(b, console, aid)
    assert text(b, "evidence-pending")
    from review_testlib import produce

    produce(console.bootstrap, [console.put_image(console.sent[(d, 7)])])
    wait_until(lambda: image_loaded(b), 30, "the page to reload itself with the image")


def test_a_wrong_password_is_refused_and_audited(console, browsers):
    (b,) = browsers(1)
    login(b, console, "po-2", "not the password")
    assert text(b, "error") == "wrong name or password"
    assert b.current_url.endswith("/login") and b.get_cookie("presacop_session") is None
    b.get(f"{console.url}/queue")
    assert b.current_url.endswith("/login")

    def audited() -> bool:
        return any((r["event"], r["account"], r["detail"].get("reason")) ==
                   ("login_failed", "po-2", "bad_credentials")
                   for r, _ in read_to_end(console.bootstrap, console.topics["audit"]))

    wait_until(audited, 30, "the failed login in the audit topic")


def test_a_post_without_the_csrf_token_is_refused(console, browsers):
    b, aid, before = officer_at_new_alert(console, browsers)
    b.execute_script("document.querySelector('#decide-form input[name=csrf]').remove()")
    b.find_element(By.ID, "code").send_keys("21", Keys.ENTER)
    wait_until(lambda: "security token" in text(b, "error"), 30, "the CSRF refusal")
    b.get(f"{console.url}/queue?alert={aid}")
    b.execute_script("document.querySelector('#decide-form input[name=csrf]').value = 'x'")
    b.find_element(By.ID, "code").send_keys("21", Keys.ENTER)
    wait_until(lambda: "security token" in text(b, "error"), 30, "the wrong-token refusal")
    assert kafka_writes(console) == before and in_queue(b, console, aid)


def test_a_disabled_accounts_session_cookie_is_refused(console, browsers):
    done = console.cli("user", "add", "po-3", "--role", "officer", stdin=PASSWORD + "\n")
    assert done.returncode == 0, done.stderr
    (b,) = browsers(1)
    login(b, console, "po-3")
    assert b.current_url.endswith("/queue"), text(b, "error")
    cookie = b.get_cookie("presacop_session")["value"]
    done = console.cli("user", "disable", "po-3")
    assert done.returncode == 0, done.stderr
    b.get(f"{console.url}/queue")
    assert b.current_url.endswith("/login")
    request = urllib.request.Request(f"{console.url}/stats",
                                     headers={"Cookie": f"presacop_session={cookie}"})
    with urllib.request.urlopen(request, timeout=10) as reply:  # the cookie, replayed by hand
        assert reply.geturl() == f"{console.url}/login"  # sent to log in, no statistics
    login(b, console, "po-3")
    assert text(b, "error") == "wrong name or password"


def test_two_officers_cannot_both_decide_one_alert(console, browsers):
    d = drone()
    aid = console.add_alert(d, 1)
    first, second = browsers(2)
    login(first, console, "po-1")
    login(second, console, "po-2")
    open_alert(first, console, aid)
    open_alert(second, console, aid)
    first.find_element(By.ID, "code").send_keys("21", Keys.ENTER)
    wait_until(lambda: "recorded" in text(first, "notice"), 30, "the first decision")
    before = kafka_writes(console)
    second.find_element(By.ID, "code").send_keys("14", Keys.ENTER)
    wait_until(lambda: "already decided by po-1" in text(second, "error"), 30,
               "the second officer's refusal")
    # whatever alert is in focus now, the refused code is not waiting in it for an Enter
    assert all(c.get_attribute("value") == "" for c in second.find_elements(By.ID, "code"))
    assert kafka_writes(console) == before
    corrected = [v for v, _ in read_to_end(console.bootstrap, console.topics["violations"])
                 if v["message_id"] == f"{d}:1" and v["revision"] > 0]
    assert [(v["code"], v["officer"]) for v in corrected] == [(21, "po-1")]


def test_bad_input_gets_a_clear_message_and_writes_nothing(console, browsers):
    console.add_alert(drone(), 1, received_ms=T0 - 60_000)  # older: first in the queue
    b, aid, before = officer_at_new_alert(console, browsers)
    cases = [
        ("94", None, "94 is not a DOF violation code"),
        ("100", None, "code 100 is out of range: DOF codes are 1..99"),
        ("0", None, "code 0 is out of range"),
        ("2x", None, "the code must be a number"),
        ("21", alert_id("nobody:1"), "no alert"),           # tampered: another, unknown alert
        ("21", "../../etc/passwd", "not a valid alert id"),  # tampered: not an alert id
    ]
    for code, tampered, message in cases:
        b.get(f"{console.url}/queue?alert={aid}")
        if tampered is not None:
            b.execute_script("document.querySelector('input[name=alert_id]').value = "
                             "arguments[0]", tampered)
        b.find_element(By.ID, "code").send_keys(code, Keys.ENTER)
        wait_until(lambda m=message: m in text(b, "error"), 30, f"the message {message!r}")
        if tampered is None:  # still on the same alert, the code kept for correcting
            assert b.find_element(By.CSS_SELECTOR, "input[name=alert_id]").get_attribute(
                "value") == aid
            assert b.find_element(By.ID, "code").get_attribute("value") == code
    b.get(f"{console.url}/queue?alert={aid}")
    b.execute_script("const c = document.querySelector('#code'); c.removeAttribute('maxlength');"
                     "c.value = '1'.repeat(5000);")
    b.find_element(By.ID, "code").send_keys(Keys.ENTER)
    wait_until(lambda: "too large" in text(b, "error"), 30, "a huge code refused")
    assert kafka_writes(console) == before and in_queue(b, console, aid)


def test_a_supervisor_changes_a_drone_code_and_reads_the_audit_log(console, browsers):
    d = drone()
    mid = console.add_drone_violation(d, 3, 21)
    officer, sup = browsers(2)
    login(officer, console, "po-1")
    officer.get(f"{console.url}/violations")
    assert "for supervisors" in text(officer, "error")
    login(sup, console, "sup-1")

    def found() -> bool:
        sup.get(f"{console.url}/violations?q={mid}")
        return bool(sup.find_elements(By.CSS_SELECTOR, "form.violation input.code"))

    wait_until(found, 60, f"violation {mid} on the supervisor's page")
    sup.find_element(By.CSS_SELECTOR, "form.violation input.code").send_keys("14", Keys.ENTER)
    wait_until(lambda: "code 14 recorded (was 21, revision 1)" in text(sup, "notice"), 30,
               "the change's notice")
    assert "code 14 (officer_changed by sup-1) · revision 1" in \
        sup.find_element(By.CSS_SELECTOR, "form.violation").text
    revisions = [v for v, _ in read_to_end(console.bootstrap, console.topics["violations"])
                 if v["message_id"] == mid]
    assert [(v["revision"], v["code"], v["code_status"], v.get("original_code"))
            for v in revisions] == [(0, 21, "drone", None), (1, 14, "officer_changed", 21)]
    sup.get(f"{console.url}/audit")
    rows = sup.find_element(By.ID, "audit").text
    assert "code_change sup-1" in rows and "login sup-1" in rows
    aid = console.add_alert(d, 4)
    open_alert(sup, console, aid)  # in the view now: the statistics count it
    sup.get(f"{console.url}/stats")
    assert int(text(sup, "stats-depth")) >= 1
    (day,) = [[c.text for c in row.find_elements(By.TAG_NAME, "td")]
              for row in sup.find_elements(By.CSS_SELECTOR, "#stats tbody tr")
              if row.text.startswith("2026-05-28")]  # the test violations' receive day
    violations, officer_changed = int(day[1]), int(day[3])
    assert violations >= 2 and officer_changed >= 1 and day[4].endswith("%")


def test_the_view_survives_a_restart(console, browsers):
    d = drone()
    decided = console.add_alert(d, 1)
    (b,) = browsers(1)
    login(b, console, "po-1")
    open_alert(b, console, decided)
    b.find_element(By.ID, "code").send_keys("20", Keys.ENTER)
    wait_until(lambda: "recorded" in text(b, "notice"), 30, "the decision")
    console.stop()
    arrived = console.add_alert(d, 2)  # while the console is down
    console.start()
    login(b, console, "po-1")
    open_alert(b, console, arrived)
    assert not in_queue(b, console, decided)
    assert console.health()["records_skipped"] == 0
    wait_until(lambda: console.health()["audit_queued"] == 0, 30, "the audit outbox sent")


def test_served_over_tls_the_cookies_are_secure(tls_console):
    with urllib.request.urlopen(f"{tls_console.url}/login", timeout=10,
                                context=tls_console.ssl) as reply:
        cookie = reply.headers["set-cookie"].lower()
        assert "secure" in cookie and "httponly" in cookie and "samesite=strict" in cookie
        assert reply.headers["strict-transport-security"].startswith("max-age=")
