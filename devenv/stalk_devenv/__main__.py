"""``python -m stalk_devenv up|down|status``: the local cluster by hand, for kubectl.

``up`` starts the control plane in the background and prints the ``KUBECONFIG`` to
export; ``down`` stops every process it started. State lives in ``.stalk/devenv``.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from pathlib import Path

from stalk_devenv import demo, demo_containers, real_cluster
from stalk_devenv.binaries import find_binaries
from stalk_devenv.controlplane import ControlPlane

STATE_DIR = Path(os.environ.get("STALK_DEVENV_DIR", ".stalk/devenv")).resolve()
STATE_FILE = STATE_DIR / "state.json"


def up(args: argparse.Namespace) -> int:
    if STATE_FILE.exists():
        print(
            f"already up; run `python -m stalk_devenv down` first ({STATE_FILE})", file=sys.stderr
        )
        return 1
    started = time.monotonic()
    cluster = ControlPlane(
        STATE_DIR / "cluster", bin_dir=find_binaries(), nodes=args.nodes, detached=True
    )
    cluster.start()
    pids = {name: process.pid for name, process in cluster.processes.items()}
    STATE_FILE.write_text(
        json.dumps(
            {"pids": pids, "kubeconfig": str(cluster.kubeconfig), "bin_dir": str(cluster.bin_dir)},
            indent=2,
        )
    )
    print(
        f"control plane up in {time.monotonic() - started:.1f}s "
        f"({args.nodes} KWOK nodes, Kubernetes API at {cluster.server})"
    )
    print(f"export KUBECONFIG={cluster.kubeconfig}")
    print(f"export PATH={cluster.bin_dir}:$PATH")
    return 0


def down(args: argparse.Namespace) -> int:
    if not STATE_FILE.exists():
        print("not up", file=sys.stderr)
        return 0
    state = json.loads(STATE_FILE.read_text())
    for name, pid in reversed(list(state["pids"].items())):
        try:
            os.killpg(pid, signal.SIGTERM)
        except ProcessLookupError:
            continue
        for _ in range(100):
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.1)
        else:
            os.killpg(pid, signal.SIGKILL)
        print(f"stopped {name}")
    STATE_FILE.unlink()
    return 0


def status(args: argparse.Namespace) -> int:
    if not STATE_FILE.exists():
        print("down")
        return 1
    state = json.loads(STATE_FILE.read_text())
    alive = {}
    for name, pid in state["pids"].items():
        try:
            os.kill(pid, 0)
            alive[name] = True
        except ProcessLookupError:
            alive[name] = False
    for name, ok in alive.items():
        print(f"{name}: {'running' if ok else 'DEAD'}")
    print(f"export KUBECONFIG={state['kubeconfig']}")
    return 0 if all(alive.values()) else 1


def run_demo(args: argparse.Namespace) -> int:
    mode = args.mode
    if mode == "auto":
        reason = real_cluster.unavailable()
        mode = "containers" if reason is None else "processes"
        if reason is not None:
            print(f"mode: processes ({reason})", flush=True)
    if mode == "containers":
        return demo.main(demo_containers.run)
    return demo.main(demo.run)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m stalk_devenv", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    start = commands.add_parser("up", help="start the local control plane in the background")
    start.add_argument("--nodes", type=int, default=3, help="KWOK nodes to create")
    start.set_defaults(run=up)
    commands.add_parser("down", help="stop it").set_defaults(run=down)
    commands.add_parser("status", help="show its processes").set_defaults(run=status)
    demo_command = commands.add_parser(
        "demo", help="the whole stack autoscaling real workers under a burst of tasks"
    )
    demo_command.add_argument(
        "--mode",
        choices=("auto", "containers", "processes"),
        default=os.environ.get("STALK_DEMO_MODE", "auto"),
        help="real containers on a real node, or the release's pods as local processes; "
        "auto: containers wherever this machine can run them",
    )
    demo_command.set_defaults(run=run_demo)
    args = parser.parse_args(argv)
    return int(args.run(args))


if __name__ == "__main__":
    sys.exit(main())
