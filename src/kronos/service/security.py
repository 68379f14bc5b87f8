"""Browser safety for a server on this machine: Host allow-list, cross-origin refusal, security headers.

A web page the user visits can make their browser send requests to ``127.0.0.1``. Three checks keep
such pages from using the local service:

* **Host allow-list.** A DNS-rebinding page reaches the server under its own host name; requests
  whose ``Host`` is not a loopback name, the bound address or a name given with ``--allowed-host``
  get a 400.
* **Cross-origin requests.** A POST whose ``Origin`` (or ``Sec-Fetch-Site``) says it comes from another
  site gets a 403, unless that origin was given with ``--cors-origin`` (CORS is off otherwise).
* **No simple form posts.** A browser may send a cross-site ``multipart/form-data`` POST without
  asking first, so uploads must carry the header ``X-Kronos-Client`` (any value), which a page on
  another site cannot add without a CORS preflight this server does not grant. The page at ``/``
  adds it; ``curl -F`` users add ``-H 'X-Kronos-Client: curl'``.

Every response carries ``Content-Security-Policy`` (only this origin's scripts, no framing),
``X-Content-Type-Options: nosniff``, ``X-Frame-Options: DENY`` and ``Referrer-Policy: no-referrer``;
``HEAD`` is answered wherever ``GET`` is.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")
CLIENT_HEADER = "x-kronos-client"
SAFE_METHODS = ("GET", "HEAD", "OPTIONS")
CSP = ("default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data: blob:; "
       "font-src 'self' data:; connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
       "frame-ancestors 'none'")
SECURITY_HEADERS = [
    (b"content-security-policy", CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"cross-origin-resource-policy", b"same-origin"),
]


def host_name(host: str) -> str:
    """The name part of a Host header (``[::1]:8000`` -> ``::1``, ``Example.com:80`` -> ``example.com``)."""
    host = host.strip().lower()
    if host.startswith("["):
        return host[1:host.find("]")] if "]" in host else host
    if host.count(":") == 1:
        return host.split(":", 1)[0]
    return host


@dataclass
class BrowserPolicy:
    """Which Host names and which cross-origin callers this server accepts."""

    allowed_hosts: set[str] = field(default_factory=lambda: set(LOOPBACK_HOSTS))
    cors_origins: tuple[str, ...] = ()

    @classmethod
    def for_bind(cls, host: str, extra_hosts: Iterable[str] = (), cors_origins: Iterable[str] = ()) -> BrowserPolicy:
        """Loopback names, the bound address (unless a wildcard) and ``extra_hosts`` (``*`` allows any)."""
        hosts = set(LOOPBACK_HOSTS) | {host_name(h) for h in extra_hosts if h.strip()}
        if host not in ("0.0.0.0", "::", ""):
            hosts.add(host_name(host if ":" not in host else f"[{host}]"))
        return cls(hosts, tuple(o.rstrip("/").lower() for o in cors_origins))

    def host_allowed(self, host: str) -> bool:
        return "*" in self.allowed_hosts or host_name(host) in self.allowed_hosts


class BrowserGuard:
    """ASGI middleware applying a :class:`BrowserPolicy`, adding the security headers and answering HEAD."""

    def __init__(self, app: Any, policy: BrowserPolicy):
        self.app, self.policy = app, policy

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope.get("headers") or []}
        refusal = self._refusal(scope, headers)
        if refusal is not None:
            status, detail = refusal
            await _send_json(send, status, detail)
            return
        head = scope["method"] == "HEAD"
        if head:
            scope = dict(scope, method="GET")

        async def guarded_send(message: dict) -> None:
            if message["type"] == "http.response.start":
                existing = {k.lower() for k, _ in message.get("headers", [])}
                extra = [(k, v) for k, v in SECURITY_HEADERS if k not in existing]
                message = dict(message, headers=[*message.get("headers", []), *extra])
            elif head and message["type"] == "http.response.body":
                message = dict(message, body=b"")
            await send(message)

        await self.app(scope, receive, guarded_send)

    def _refusal(self, scope: dict, headers: dict[str, str]) -> tuple[int, str] | None:
        host = headers.get("host")
        if host is not None and not self.policy.host_allowed(host):
            shown = host[:80]
            return 400, (f"Host header {shown!r} is not allowed (DNS-rebinding protection); a server reached "
                         f"under that name needs kronos serve --allowed-host {host_name(shown) or shown}")
        if scope["method"] in SAFE_METHODS:
            return None
        origin = headers.get("origin")
        own = f"{scope.get('scheme', 'http')}://{host}".lower() if host else None
        allowed = origin is not None and origin.rstrip("/").lower() in self.policy.cors_origins
        if origin is not None and origin.lower() != own and not allowed:
            return 403, (f"cross-origin request from {origin[:80]!r} refused; this server answers only its own "
                         "page (kronos serve --cors-origin ORIGIN allows another)")
        fetch_site = headers.get("sec-fetch-site", "").lower()
        if fetch_site in ("cross-site", "same-site") and not allowed:
            return 403, (f"cross-site request (Sec-Fetch-Site: {fetch_site}) refused; kronos serve --cors-origin "
                         "ORIGIN allows another site")
        content_type = headers.get("content-type", "").split(";")[0].strip().lower()
        if content_type == "multipart/form-data" and CLIENT_HEADER not in headers:
            return 403, ("a multipart/form-data POST needs the header X-Kronos-Client (any value, e.g. curl -H "
                         "'X-Kronos-Client: curl'): it keeps other web pages from posting forms to this server")
        return None


async def _send_json(send: Any, status: int, detail: str) -> None:
    body = json.dumps({"detail": detail}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            *SECURITY_HEADERS]})
    await send({"type": "http.response.body", "body": body})
