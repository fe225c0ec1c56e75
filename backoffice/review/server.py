"""`presacop review serve`: the console (`service.Console`) under uvicorn, its pages from `app`."""

from __future__ import annotations

import logging
from typing import Any

from .app import create_app
from .config import ReviewConfig
from .service import Console

log = logging.getLogger("backoffice.review")


def serve(cfg: ReviewConfig) -> int:
    """Run the console until SIGTERM/SIGINT (uvicorn handles both)."""
    import uvicorn

    console = Console(cfg)
    console.start()
    r = cfg.review
    options: dict[str, Any] = {"host": r.host, "port": r.port, "log_level": "info",
                               "server_header": False, "proxy_headers": bool(
                                   r.forwarded_allow_ips)}
    if r.forwarded_allow_ips:
        options["forwarded_allow_ips"] = r.forwarded_allow_ips
    if cfg.tls:
        options.update(ssl_certfile=r.tls_certfile, ssl_keyfile=r.tls_keyfile)
    if not (cfg.tls or r.secure_cookies or r.host in ("127.0.0.1", "::1", "localhost")):
        log.warning("plain HTTP on %s: passwords and cookies cross the network in clear; set "
                    "review.tls_certfile or put a TLS proxy in front (docs/review.md)", r.host)
    log.info("officer console on %s://%s:%d", "https" if cfg.tls else "http", r.host, r.port)
    try:
        uvicorn.run(create_app(console), **options)
    finally:
        console.stop()
    return 0
