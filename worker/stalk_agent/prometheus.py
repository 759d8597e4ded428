"""prometheus-client for the agent, wherever it runs.

In Stalk's image and with ``pip install celery-stalk`` it is installed. An agent injected
into a team's image brings its own copy in a directory that goes at the *end* of
``sys.path`` (:data:`stalk_agent.install.FALLBACK_DIR`), so the app's own version, if it
has one, always wins.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from types import ModuleType

from stalk_agent.install import FALLBACK_DIR


def load() -> ModuleType:
    """``prometheus_client``: the app's, else the copy injected with the agent."""
    try:
        return importlib.import_module("prometheus_client")
    except ImportError:
        sys.path.append(str(Path(__file__).resolve().parents[1] / FALLBACK_DIR))
        return importlib.import_module("prometheus_client")
