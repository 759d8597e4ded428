"""``python -m stalk_agent.install DIR``: copy the agent into DIR for another image.

The operator's init container runs this from Stalk's worker image into an ``emptyDir``
that the worker container puts on its ``PYTHONPATH``. Only pure-Python packages are
copied: the agent and the two small Stalk packages it imports; Celery and redis-py are
the app's own. prometheus-client (for the agent's task metrics) goes to a directory of
its own that the agent puts at the *end* of ``sys.path``, only if the app lacks it: a
copy on ``PYTHONPATH`` would shadow the version the app chose.
"""

from __future__ import annotations

import argparse
import importlib
import shutil
import sys
from pathlib import Path

PACKAGES = ("stalk_agent", "stalk_broker", "stalk_config")
FALLBACK_PACKAGES = ("prometheus_client",)
FALLBACK_DIR = "fallback-packages"
"""Beside the agent: packages it uses only when the app's image has none of its own."""
BEAT_PACKAGES = ("redbeat", "tenacity")
"""For a beat: celery-redbeat and its one dependency an app's image may lack."""


def install(target: Path, beat: bool = False) -> list[Path]:
    copied = [_copy(name, target) for name in (*PACKAGES, *(BEAT_PACKAGES if beat else ()))]
    copied += [_copy(name, target / FALLBACK_DIR) for name in FALLBACK_PACKAGES]
    return copied


def _copy(package: str, target: Path) -> Path:
    source = Path(importlib.import_module(package).__file__ or "").parent
    destination = target / package
    shutil.rmtree(destination, ignore_errors=True)
    shutil.copytree(source, destination, ignore=shutil.ignore_patterns("__pycache__"))
    return destination


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("target", type=Path)
    parser.add_argument("--beat", action="store_true", help="also celery-redbeat, for beat")
    args = parser.parse_args(argv)
    for path in install(args.target, beat=args.beat):
        print(f"installed {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
