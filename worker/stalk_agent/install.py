"""``python -m stalk_agent.install DIR``: copy the agent into DIR for another image.

The operator's init container runs this from Stalk's worker image into an ``emptyDir``
that the worker container puts on its ``PYTHONPATH``. Only pure-Python packages are
copied: the agent and the two small Stalk packages it imports; Celery and redis-py are
the app's own.
"""

from __future__ import annotations

import argparse
import importlib
import shutil
import sys
from pathlib import Path

PACKAGES = ("stalk_agent", "stalk_broker", "stalk_config")


def install(target: Path) -> list[Path]:
    copied = []
    for name in PACKAGES:
        source = Path(importlib.import_module(name).__file__ or "").parent
        destination = target / name
        shutil.rmtree(destination, ignore_errors=True)
        shutil.copytree(source, destination, ignore=shutil.ignore_patterns("__pycache__"))
        copied.append(destination)
    return copied


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("target", type=Path)
    args = parser.parse_args(argv)
    for path in install(args.target):
        print(f"installed {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
