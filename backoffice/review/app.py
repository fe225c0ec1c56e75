"""The console's pages: Starlette routes rendering Jinja2 templates (no frontend build).

Every page but /login and /healthz needs a live session; every POST needs the session's CSRF
token (the login form: its own signed token) and, when the browser sends one, an Origin equal to
the Host. Blocking work (sqlite, argon2, Kafka) runs in the thread pool. Refusals are pages
with a clear message and a 4xx status; nothing is written for them.
"""

from __future__ import annotations

import datetime
import json
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import anyio
import anyio.to_thread
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

import protocol

from . import stats, view
from .errors import DecisionRefused, LoginRefused, PublishFailed
from .evidence import EvidenceMissing
from .service import Console
from .sessions import COOKIE, LOGIN_COOKIE, Session, csrf_ok

HERE = Path(__file__).parent
CODES = sorted(protocol.VIOLATION_CODES.items())
_STATUS = {"already_decided": 409, "being_decided": 409, "stale": 409, "no_alert": 404,
           "no_violation": 404, "forbidden": 403, "violation_missing": 409}
_CSP = ("default-src 'none'; img-src 'self'; script-src 'self'; style-src 'self'; "
        "form-action 'self'; frame-ancestors 'none'; base-uri 'none'; connect-src 'self'")


class Refused(Exception):
    """A request turned away before any work: (status, message)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def create_app(console: Console) -> Starlette:
    templates = Jinja2Templates(directory=str(HERE / "templates"))
    templates.env.filters["utc"] = _utc
    web = _Pages(console, templates)
    routes = [
        Route("/", lambda _r: RedirectResponse("/queue", 303)),
        Route("/login", web.login_form, methods=["GET"]),
        Route("/login", web.login, methods=["POST"]),
        Route("/logout", web.logout, methods=["POST"]),
        Route("/queue", web.queue, methods=["GET"]),
        Route("/decide", web.decide, methods=["POST"]),
        Route("/evidence/{alert_id}", web.evidence, methods=["GET"]),
        Route("/violations", web.violations, methods=["GET"]),
        Route("/violations/change", web.change, methods=["POST"]),
        Route("/audit", web.audit_page, methods=["GET"]),
        Route("/stats", web.stats_page, methods=["GET"]),
        Route("/healthz", web.healthz, methods=["GET"]),
        Mount("/static", StaticFiles(directory=str(HERE / "static")), name="static"),
    ]
    app = Starlette(routes=routes, exception_handlers={Refused: web.refused})
    app.add_middleware(_SecurityHeaders, hsts=console.secure_cookies)
    return app


class _SecurityHeaders:
    """Pure ASGI middleware: CSP (no inline script), no framing, no sniffing, no caching."""

    def __init__(self, app: Any, hsts: bool) -> None:
        self.app = app
        self.hsts = hsts

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)

        async def send_with_headers(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                headers = message.setdefault("headers", [])
                have = {k.lower() for k, _ in headers}
                extra = [(b"content-security-policy", _CSP.encode()),
                         (b"x-content-type-options", b"nosniff"), (b"x-frame-options", b"DENY"),
                         (b"referrer-policy", b"same-origin")]
                if b"cache-control" not in have:
                    extra.append((b"cache-control", b"no-store"))
                if self.hsts:
                    extra.append((b"strict-transport-security", b"max-age=31536000"))
                headers.extend(extra)
            await send(message)

        await self.app(scope, receive, send_with_headers)


class _Pages:
    def __init__(self, console: Console, templates: Jinja2Templates) -> None:
        self.c = console
        self.t = templates
        self.flash: dict[str, str] = {}  # session -> message shown once after a redirect
        self.hashing = anyio.CapacityLimiter(4)

    # --- helpers ---------------------------------------------------------------------------

    def render(self, request: Request, name: str, status: int = 200, **ctx: Any) -> Response:
        ctx.setdefault("session", None)
        return self.t.TemplateResponse(request, name, ctx, status_code=status)

    async def session(self, request: Request, *, supervisor: bool = False) -> Session:
        found = await run_in_threadpool(self.c.sessions.resolve, request.cookies.get(COOKIE))
        if found is None:
            raise Refused(401, "not logged in, or the session ended: log in again")
        if supervisor and not found.account.supervisor:
            raise Refused(403, "this page is for supervisors")
        return found

    async def form(self, request: Request, session: Session | None) -> dict[str, Any]:
        """The POSTed fields, after the origin and CSRF checks (Refused 403 otherwise)."""
        # Referrer-Policy same-origin makes browsers send the real Origin on our own forms
        # ("no-referrer" would make it "null", refused like any foreign origin).
        origin = request.headers.get("origin")
        if origin and urlsplit(origin).netloc != request.headers.get("host"):
            raise Refused(403, "refused: the form was posted from another site")
        try:
            data = dict(await request.form(max_files=0, max_fields=20, max_part_size=4096))
        except HTTPException as exc:  # starlette's refusal of an oversized or odd form
            raise Refused(400, f"refused: the form is too large or malformed ({exc.detail})") \
                from None
        if session is not None and not csrf_ok(session, data.get("csrf")):
            raise Refused(403, "refused: the form's security token is missing or wrong "
                          "(reload the page and try again)")
        return data

    def set_cookie(self, response: Response, name: str, value: str, path: str = "/",
                   max_age: int | None = None) -> None:
        response.set_cookie(name, value, max_age=max_age, path=path, httponly=True,
                            secure=self.c.secure_cookies, samesite="strict")

    async def refused(self, request: Request, exc: Exception) -> Response:
        assert isinstance(exc, Refused)
        if exc.status == 401 and request.method == "GET":
            return RedirectResponse("/login", 303)
        return self.render(request, "message.html", exc.status, message=str(exc))

    @staticmethod
    def address(request: Request) -> str:
        return request.client.host if request.client else ""

    # --- login / logout --------------------------------------------------------------------

    async def login_form(self, request: Request, error: str = "", status: int = 200) -> Response:
        cookie, token = self.c.sessions.login_token()
        response = self.render(request, "login.html", status, token=token, error=error)
        self.set_cookie(response, LOGIN_COOKIE, cookie, path="/login", max_age=900)
        return response

    async def login(self, request: Request) -> Response:
        data = await self.form(request, None)
        if not self.c.sessions.login_token_ok(request.cookies.get(LOGIN_COOKIE),
                                              str(data.get("csrf", ""))):
            raise Refused(403, "refused: the login form's security token is missing or wrong "
                          "(reload the page and try again)")
        name, password = str(data.get("name", ""))[:64], str(data.get("password", ""))
        addr = self.address(request)
        wait = self.c.throttle.retry_after(addr)
        if wait:
            return await self.login_form(request, f"too many failed logins from this address: "
                                         f"try again in {wait} s", 429)
        try:
            # At most 4 argon2id checks at once (64 MiB each): a flood of logins queues here
            # instead of taking the machine's memory.
            account = await anyio.to_thread.run_sync(self.c.accounts.authenticate, name,
                                                      password, limiter=self.hashing)
        except LoginRefused as exc:
            self.c.throttle.failed(addr)
            await run_in_threadpool(self.c.audit, "login_failed", name, addr, reason=exc.reason)
            return await self.login_form(request, str(exc), 429 if exc.retry_after_s else 401)
        previous = await run_in_threadpool(self.c.sessions.resolve, request.cookies.get(COOKIE))
        if previous is not None:  # logging in again (maybe as someone else) ends the old one
            await run_in_threadpool(self.c.sessions.end, previous)
        cookie = await run_in_threadpool(self.c.sessions.create, account)
        await run_in_threadpool(self.c.audit, "login", account.name, addr, role=account.role)
        response = RedirectResponse("/queue", 303)
        self.set_cookie(response, COOKIE, cookie)
        response.delete_cookie(LOGIN_COOKIE, path="/login")
        return response

    async def logout(self, request: Request) -> Response:
        session = await self.session(request)
        await self.form(request, session)
        await run_in_threadpool(self.c.sessions.end, session)
        await run_in_threadpool(self.c.audit, "logout", session.account.name,
                                self.address(request))
        response = RedirectResponse("/login", 303)
        response.delete_cookie(COOKIE, path="/")
        return response

    # --- the queue -------------------------------------------------------------------------

    async def queue(self, request: Request, *, error: str = "", status: int = 200,
                    typed: str = "", refused_alert: object = None) -> Response:
        session = await self.session(request)

        def load() -> tuple[list[dict[str, Any]], int]:
            with self.c.db.connect() as conn:
                return view.open_alerts(conn), view.queue_depth(conn)

        alerts, depth = await run_in_threadpool(load)
        wanted = refused_alert or request.query_params.get("alert")
        focus = next((a for a in alerts if a["alert_id"] == wanted), alerts[0] if alerts else None)
        if focus is None or focus["alert_id"] != refused_alert:
            typed = ""  # a refused code is shown again only on the alert it was typed for
        return self.render(request, "queue.html", status, session=session, alerts=alerts,
                           depth=depth, focus=focus, codes=CODES, error=error, typed=typed,
                           notice=self.flash.pop(session.id_hash, ""))

    async def decide(self, request: Request) -> Response:
        session = await self.session(request)
        data = await self.form(request, session)
        try:
            done = await run_in_threadpool(self.c.decisions.decide_alert, session.account,
                                           data.get("alert_id"), data.get("code"),
                                           self.address(request))
        except (DecisionRefused, PublishFailed) as exc:
            return await self.queue(request, error=str(exc), status=_status(exc),
                                    typed=str(data.get("code", ""))[:6],
                                    refused_alert=data.get("alert_id"))
        self.c.forwarder.wake.set()
        self.flash[session.id_hash] = (f"{done['message_id']} ({done['plate']}): code "
                                       f"{done['code']} recorded")
        return RedirectResponse("/queue", 303)

    async def evidence(self, request: Request) -> Response:
        await self.session(request)
        aid = request.path_params["alert_id"]

        def read() -> tuple[bytes, str] | None:
            with self.c.db.connect() as conn:
                row = view.evidence_of_alert(conn, aid)
            if row is None:
                return None
            try:
                return self.c.evidence.get(row["sha256"]), row["content_type"]
            except EvidenceMissing:
                return None

        found = await run_in_threadpool(read)
        if found is None:
            return Response("evidence not available yet", 404, media_type="text/plain")
        body, ctype = found
        ctype = ctype if ctype in ("image/jpeg", "image/png") else "application/octet-stream"
        # Content-addressed: the same URL always serves the same bytes to this browser only.
        return Response(body, media_type=ctype, headers={"cache-control": "private, max-age=3600"})

    # --- supervisor pages ------------------------------------------------------------------

    async def violations(self, request: Request, *, error: str = "", status: int = 200,
                         notice: str = "", q: object = None) -> Response:
        session = await self.session(request, supervisor=True)
        q = str(q if q is not None else request.query_params.get("q", "")).strip()[:64]

        def load() -> list[dict[str, Any]]:
            with self.c.db.connect() as conn:
                return view.find_violations(conn, q) if q else []

        found = await run_in_threadpool(load)
        return self.render(request, "violations.html", status, session=session, q=q,
                           found=found, codes=CODES, error=error, notice=notice)

    async def change(self, request: Request) -> Response:
        session = await self.session(request, supervisor=True)
        data = await self.form(request, session)
        try:
            done = await run_in_threadpool(self.c.decisions.change_code, session.account,
                                           data.get("message_id"), data.get("revision"),
                                           data.get("code"), self.address(request))
        except (DecisionRefused, PublishFailed) as exc:  # the same violation shown again
            return await self.violations(request, error=str(exc), status=_status(exc),
                                         q=data.get("message_id", ""))
        self.c.forwarder.wake.set()
        return await self.violations(request, q=done["message_id"], notice=(
            f"{done['message_id']}: code {done['code']} recorded (was {done['original_code']}, "
            f"revision {done['revision']})"))

    async def audit_page(self, request: Request) -> Response:
        session = await self.session(request, supervisor=True)

        def load() -> list[dict[str, Any]]:
            with self.c.db.connect() as conn:
                return view.audit_log(conn)

        rows = await run_in_threadpool(load)
        return self.render(request, "audit.html", session=session, rows=rows, dumps=json.dumps)

    async def stats_page(self, request: Request) -> Response:
        session = await self.session(request)

        def load() -> tuple[int, list[stats.Day]]:
            with self.c.db.connect() as conn:
                return view.queue_depth(conn), stats.per_day(conn)

        depth, days = await run_in_threadpool(load)
        return self.render(request, "stats.html", session=session, depth=depth, days=days)

    async def healthz(self, _request: Request) -> Response:
        def queued() -> int:
            with self.c.db.connect() as conn:
                return conn.execute("SELECT COUNT(*) FROM audit WHERE sent=0").fetchone()[0]

        f = self.c.feeder
        body = {"feeder_alive": f.is_alive(), "records_applied": f.applied,
                "records_skipped": f.skipped, "audit_sent": self.c.forwarder.sent,
                "audit_queued": await run_in_threadpool(queued)}
        return JSONResponse(body, status_code=200 if f.is_alive() else 503)


def _status(exc: Exception) -> int:
    if isinstance(exc, PublishFailed):
        return 503
    return _STATUS.get(getattr(exc, "reason", ""), 400)


def _utc(ms: int | None) -> str:
    if ms is None:
        return ""
    return datetime.datetime.fromtimestamp(ms / 1000, datetime.timezone.utc).strftime(
        "%Y-%m-%d %H:%M:%S UTC")

