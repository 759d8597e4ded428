"""HTTP status of an endpoint the way a user's browser or Prometheus meets it."""

from __future__ import annotations

import base64
import urllib.error
import urllib.request


def http_status(url: str, auth: str | None = None) -> int:
    """The status code; ``auth`` is ``user:password`` for basic auth."""
    request = urllib.request.Request(url)
    if auth:
        request.add_header("Authorization", "Basic " + base64.b64encode(auth.encode()).decode())
    try:
        with urllib.request.urlopen(request, timeout=5) as reply:
            return int(reply.status)
    except urllib.error.HTTPError as exc:
        return exc.code


def http_body(url: str) -> str:
    """The body, whatever the status ('' when nothing answers)."""
    try:
        with urllib.request.urlopen(url, timeout=5) as reply:
            return str(reply.read().decode())
    except urllib.error.HTTPError as exc:
        return str(exc.read().decode())
    except OSError:
        return ""
