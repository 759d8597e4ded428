"""Build lightkube's model decoders once, before any watch thread starts.

lightkube decodes with msgspec, which builds a model's decoder on its first use. Two
threads doing that for the same model at once crash the interpreter (seen here: a
segmentation fault with four process-kubelet watches starting together). Decoding a
tiny document of each model on one thread first makes every later decode a lookup.
"""

from __future__ import annotations

import contextlib
import threading

import msgspec
from lightkube.core.decoders import decode_object, decode_watch_event
from lightkube.resources.apps_v1 import Deployment
from lightkube.resources.core_v1 import ConfigMap, Pod, Secret

_lock = threading.Lock()
_ready = False


def prepare_decoders() -> None:
    global _ready
    with _lock:
        if _ready:
            return
        decode_watch_event(b'{"type": "ADDED", "object": {}}')
        for model in (Pod, Deployment, Secret, ConfigMap):
            # A validation error still leaves the decoder built.
            with contextlib.suppress(msgspec.ValidationError):
                decode_object(b'{"metadata": {"name": "warm-up"}}', model)
        _ready = True
