"""uvicorn settings that keep slow or idle clients from starving the server.

uvicorn counts every open connection against ``limit_concurrency``, including one that has sent half
a request head and then nothing; 600 of those turn every new request into a 503 for as long as they
stay open, and uvicorn has no timeout on reading a request head. :class:`GuardedH11Protocol` adds:

* a **head size limit**: a request line plus headers over ``MAX_HEAD_BYTES`` (16 KiB) is answered
  ``431 Request Header Fields Too Large`` and the connection closed;
* a **head timeout**: a connection's request line and headers must arrive within ``header_timeout_s``
  of the connection opening (or of the previous response on a keep-alive connection), however
  slowly they trickle in; otherwise it is closed;
* a **connection cap** that sheds instead of refusing: past ``max_connections`` open connections, the
  oldest ones with no request being served (half-open heads, idle keep-alives) are closed to make
  room. Only when every connection is busy with a request does a new one get an immediate 503 with
  ``Retry-After``.

Request bodies have their own deadline (``body_timeout_s``, in the app), and idle keep-alive
connections close after ``keep_alive_s``. In front of a non-loopback bind a reverse proxy belongs
anyway; these bounds keep a server on 127.0.0.1 usable when a local program or page misbehaves.
"""

from __future__ import annotations

import itertools
import json
from typing import Any

import h11
import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

MAX_HEAD_BYTES = 16 * 1024  # request line plus headers
_opened = itertools.count()


class GuardedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with a request-head timeout and connection shedding (see the module)."""

    header_timeout_s = 10.0
    max_connections = 256

    def connection_made(self, transport: Any) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.opened = next(_opened)
        self._head_bytes = 0
        self._head_done = False
        self._refused = False
        self._head_timer: Any = None
        self._arm_head_timer()
        self._shed()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_head_timer()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._refused or (self.idle and not self._head_done and self._head_too_large(data)):
            return  # the rest of a refused head is read and dropped until the connection closes
        super().data_received(data)
        if not self.idle:
            self._cancel_head_timer()

    def on_response_complete(self) -> None:
        # A response sent before the client finished its body (a 413 for an oversized upload): what still
        # arrives is that body, not a new request's head, so it is not counted against the head limit.
        self._head_bytes, self._head_done = 0, self.conn.their_state is h11.SEND_BODY
        super().on_response_complete()
        if self.idle and not self.transport.is_closing():
            self._arm_head_timer()

    def _head_too_large(self, data: bytes) -> bool:
        """Count the bytes of the request head arriving; past MAX_HEAD_BYTES answer 431 and close."""
        end = data.find(b"\r\n\r\n")
        self._head_bytes += len(data) if end < 0 else end + 4
        self._head_done = end >= 0  # what follows in this request is its body, not counted
        if self._head_bytes <= MAX_HEAD_BYTES:
            return False
        body = json.dumps({"detail": f"the request head (request line and headers) is over this server's limit "
                                     f"of {MAX_HEAD_BYTES} bytes"}).encode()
        self.transport.write(b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-type: application/json\r\n"
                             b"connection: close\r\ncontent-length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
        self._cancel_head_timer()
        self._refused = True
        # Closing at once, with the client still sending, would reset the connection and could lose the answer;
        # the client closes on "connection: close", and a client that goes on sending is cut off shortly.
        self.loop.call_later(1.0, self.transport.close)
        return True

    @property
    def idle(self) -> bool:
        """No request is being served: the head is not complete yet, or the last response was sent."""
        return self.cycle is None or self.cycle.response_complete

    def _arm_head_timer(self) -> None:
        self._cancel_head_timer()
        self._head_timer = self.loop.call_later(self.header_timeout_s, self._head_timed_out)

    def _cancel_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if self.idle and not self.transport.is_closing():
            self.transport.close()

    def _shed(self) -> None:
        # connections already closed by an earlier shed stay in the set until their connection_lost runs
        excess = sum(not c.transport.is_closing() for c in self.connections) - self.max_connections
        if excess <= 0:
            return
        idle = sorted((c for c in self.connections
                       if c is not self and isinstance(c, GuardedH11Protocol) and c.idle
                       and not c.transport.is_closing()), key=lambda c: c.opened)
        for connection in idle[:excess]:
            connection._cancel_head_timer()
            connection.transport.close()
        if len(idle) < excess:  # every other connection is serving a request: refuse this one now
            body = json.dumps({"detail": f"server busy: {len(self.connections) - 1} connections are serving "
                                         "requests (max_connections); retry later"}).encode()
            self.transport.write(b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n"
                                 b"retry-after: 1\r\nconnection: close\r\ncontent-length: "
                                 + str(len(body)).encode() + b"\r\n\r\n" + body)
            self._cancel_head_timer()
            self.transport.close()


def guarded_protocol(header_timeout_s: float, max_connections: int) -> type[GuardedH11Protocol]:
    """The protocol class with these bounds (uvicorn takes a class, so one per configuration)."""
    return type("BoundedH11Protocol", (GuardedH11Protocol,),
                {"header_timeout_s": float(header_timeout_s), "max_connections": int(max_connections)})


def uvicorn_config(app: Any, host: str, port: int, limits: Any, log_level: str = "warning") -> uvicorn.Config:
    """A uvicorn Config for the service with the bounds in ``limits`` (a ServiceLimits)."""
    return uvicorn.Config(
        app, host=host, port=port, log_level=log_level,
        http=guarded_protocol(limits.header_timeout_s, limits.max_connections),
        timeout_keep_alive=max(1, round(limits.keep_alive_s)), limit_concurrency=None,
        h11_max_incomplete_event_size=MAX_HEAD_BYTES, timeout_graceful_shutdown=10,
        backlog=max(128, 2 * limits.max_connections))
