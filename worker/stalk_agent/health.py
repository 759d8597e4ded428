"""``/healthz`` for a liveness probe that needs nothing in the worker's image, and the
agent's ``/metrics`` beside it.

A daemon thread serves HTTP; it answers from the heartbeat the event loop leaves (a
worker's: :class:`stalk_agent.steps.Heartbeat`; beat's: each tick of
:class:`stalk_agent.scheduler.Scheduler`), never from the broker: ``celery inspect ping``
goes through the broker, so a busy broker would fail healthy workers.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar

Exposition = Callable[[], tuple[bytes, str]]
"""What ``/metrics`` answers: the body and its content type."""

logger = logging.getLogger(__name__)

STARTUP_GRACE_SECONDS = 120.0
"""Before the first beat (the worker is still connecting), the worker counts as alive."""


class Heart:
    """The last beat of the worker's event loop."""

    _instance: ClassVar[Heart | None] = None

    def __init__(self) -> None:
        self.started = time.monotonic()
        self.last_beat: float | None = None

    @classmethod
    def instance(cls) -> Heart:
        if cls._instance is None:
            cls._instance = cls()
        return cls._instance

    def beat(self) -> None:
        self.last_beat = time.monotonic()

    def alive(self, stale_after: float, now: float | None = None) -> tuple[bool, str]:
        now = time.monotonic() if now is None else now
        if self.last_beat is None:
            waited = now - self.started
            return waited < STARTUP_GRACE_SECONDS, f"starting for {waited:.0f}s"
        age = now - self.last_beat
        return age <= stale_after, f"last beat {age:.1f}s ago (limit {stale_after:.0f}s)"


_serving: dict[int, ThreadingHTTPServer] = {}


def serve_once(
    port: int, stale_after: float, metrics: Exposition | None = None
) -> ThreadingHTTPServer | None:
    """:func:`serve`, unless this process already serves ``port`` (Celery may build a
    scheduler more than once). A port already taken is said once and is no reason to stop
    the process (as for a worker, whose ``worker_init`` handlers Celery runs robustly):
    the liveness probe then tells."""
    if port not in _serving:
        try:
            _serving[port] = serve(port, stale_after, metrics)
        except OSError as exc:
            logger.warning("cannot serve /healthz on :%d: %s", port, exc)
            return None
    return _serving[port]


def serve(port: int, stale_after: float, metrics: Exposition | None = None) -> ThreadingHTTPServer:
    """Serve ``/healthz`` (and ``/metrics``, given an exposition) on ``port`` from a
    daemon thread; returns the server."""
    heart = Heart.instance()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            path = self.path.split("?")[0]
            if path == "/healthz":
                ok, detail = heart.alive(stale_after)
                body = f"{'alive' if ok else 'not alive'}: {detail}\n".encode()
                self._answer(200 if ok else 503, body, "text/plain")
            elif path == "/metrics" and metrics is not None:
                self._answer(200, *metrics())
            else:
                self.send_error(404)

        def _answer(self, status: int, body: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass  # a probe every few seconds is not news

    server = ThreadingHTTPServer(("0.0.0.0", port), Handler)  # noqa: S104 - the pod's probe
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="stalk-agent-health", daemon=True).start()
    return server
