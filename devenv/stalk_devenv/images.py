"""Container images made here, with no registry: a Debian base, the pause image, and
Stalk's own images built from the repository's Dockerfiles.

* The base is a ``debootstrap --variant=minbase`` bookworm with Debian's Python, imported
  as ``localhost/stalk-python:bookworm``; the Dockerfiles take it through their
  ``PYTHON_IMAGE`` build argument (elsewhere they default to the official Python image).
* The pause image (the kubelet's sandbox) is Kubernetes' own ``pause.c``, from the
  ``k8s.io/kubernetes`` module the binaries were built from, compiled static onto
  ``scratch`` as upstream does, under the name containerd is configured to look for.
* Every image is built with buildah (``--isolation chroot``: no runtime needed to build)
  and handed to the node's containerd as an OCI archive.

``python -m stalk_devenv.images`` builds what is missing and prints one line per stage.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from stalk_devenv.binaries import VERSIONS, cache_root

REPO_ROOT = Path(__file__).resolve().parents[2]
BASE_IMAGE = "localhost/stalk-python:bookworm"
BASE_PACKAGES = ("python3", "python3-venv", "python-is-python3", "ca-certificates")
PAUSE_IMAGE = "localhost/pause:3.10.1"
"""containerd's ``sandbox_image``: the name must match, since nothing can be pulled."""
APT_SOURCES = (Path("/etc/apt/sources.list.d/debian.sources"), Path("/etc/apt/sources.list"))


def debian_mirror() -> str:
    """``$STALK_DEBIAN_MIRROR``, else the mirror this machine's apt already uses."""
    configured = os.environ.get("STALK_DEBIAN_MIRROR")
    if configured:
        return configured
    for sources in APT_SOURCES:
        text = sources.read_text() if sources.exists() else ""
        found = re.search(r"^(?:URIs:|deb)\s+(\S+)", text, re.MULTILINE)
        if found:
            return found.group(1)
    raise ImageBuildError("no Debian mirror in apt's sources: set STALK_DEBIAN_MIRROR")


WORKER_IMAGE = "localhost/stalk-worker:dev"
OPERATOR_IMAGE = "localhost/stalk-operator:dev"
REDIS_IMAGE = "localhost/stalk-redis:bookworm"
"""Debian's Redis and Sentinel, standing in for the official image the chart names."""
NODE_IMAGES = (PAUSE_IMAGE, WORKER_IMAGE, OPERATOR_IMAGE, REDIS_IMAGE)
"""What a real node's containerd gets: everything the chart runs."""


class ImageBuildError(RuntimeError):
    """A build failed; the message names the log."""


@dataclass(frozen=True)
class ImageStage:
    image: str
    what: str
    expected: str
    build: Callable[[Path], None]
    from_repository: bool = False
    """Built from the repository's code: built again on every run (buildah's layer cache
    makes that a few seconds when nothing changed), so an image never lags the code."""


def images_dir() -> Path:
    return cache_root() / "images"


def run(argv: list[str], log: Path, cwd: Path | None = None) -> str:
    with log.open("a") as out:
        out.write(f"$ {' '.join(argv)}\n")
        out.flush()
        result = subprocess.run(
            argv, cwd=cwd, stdout=subprocess.PIPE, stderr=out, text=True, check=False
        )
    if result.returncode != 0:
        raise ImageBuildError(f"{argv[0]} {argv[1]} failed; see {log}")
    return result.stdout.strip()


def exists(image: str) -> bool:
    return (
        subprocess.run(
            ["buildah", "inspect", "--type", "image", image], capture_output=True, check=False
        ).returncode
        == 0
    )


def _base(log: Path) -> None:
    rootfs = images_dir() / "bookworm-rootfs"
    tarball = images_dir() / "bookworm-rootfs.tar"
    if not tarball.exists():
        subprocess.run(["rm", "-rf", str(rootfs)], check=True)
        run(
            [
                "debootstrap",
                "--variant=minbase",
                f"--include={','.join(BASE_PACKAGES)}",
                "bookworm",
                str(rootfs),
                debian_mirror(),
            ],
            log,
        )
        for leftover in ("var/cache/apt/archives", "var/lib/apt/lists", "usr/share/doc"):
            subprocess.run(["find", str(rootfs / leftover), "-type", "f", "-delete"], check=False)
        run(["tar", "--numeric-owner", "-C", str(rootfs), "-cf", str(tarball), "."], log)
        subprocess.run(["rm", "-rf", str(rootfs)], check=True)
    container = run(["buildah", "from", "scratch"], log)
    run(["buildah", "add", container, str(tarball), "/"], log)
    path = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
    run(["buildah", "config", "--env", f"PATH={path}", "--cmd", "/bin/sh", container], log)
    run(["buildah", "commit", "--rm", container, BASE_IMAGE], log)


def _pause(log: Path) -> None:
    module = run(["go", "mod", "download", "-json", f"k8s.io/kubernetes@{VERSIONS['k8s']}"], log)
    source = Path(json.loads(module)["Dir"]) / "build" / "pause" / "linux" / "pause.c"
    binary = images_dir() / "pause"
    tag = PAUSE_IMAGE.rsplit(":", 1)[1]
    run(
        [
            "gcc",
            "-Os",
            "-Wall",
            "-Werror",
            "-static",
            f"-DVERSION=v{tag}-stalk",
            "-o",
            str(binary),
            str(source),
        ],
        log,
    )
    container = run(["buildah", "from", "scratch"], log)
    run(["buildah", "copy", container, str(binary), "/pause"], log)
    run(
        ["buildah", "config", "--entrypoint", '["/pause"]', "--user", "65535:65535", container], log
    )
    run(["buildah", "commit", "--rm", container, PAUSE_IMAGE], log)


HOST_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")


def _trust_this_machine() -> list[str]:
    """The machine's CA bundle, mounted read-only into the build's RUN steps (never into
    an image layer): pip reaches PyPI through whatever this machine trusts, a TLS-
    inspecting proxy's CA included."""
    if not HOST_CA_BUNDLE.exists():
        return []
    return [f"--volume={HOST_CA_BUNDLE}:{HOST_CA_BUNDLE}:ro"]


def _dockerfile(dockerfile: str, image: str, base_argument: str) -> Callable[[Path], None]:
    def build(log: Path) -> None:
        run(
            [
                "buildah",
                "bud",
                "--pull=never",
                "--isolation=chroot",
                "--network=host",
                "--layers",
                f"--build-arg={base_argument}={BASE_IMAGE}",
                *_trust_this_machine(),
                "-f",
                dockerfile,
                "-t",
                image,
                ".",
            ],
            log,
            cwd=REPO_ROOT,
        )

    return build


STAGES = (
    ImageStage(
        BASE_IMAGE,
        "Debian bookworm base with Python (debootstrap)",
        "about 1 min on 2 cores",
        _base,
    ),
    ImageStage(PAUSE_IMAGE, "pause (the kubelet's sandbox)", "seconds on 2 cores", _pause),
    ImageStage(
        REDIS_IMAGE,
        "Redis and Sentinel from Debian",
        "about 10 s on 2 cores",
        _dockerfile("devenv/images/redis.Containerfile", REDIS_IMAGE, "BASE_IMAGE"),
    ),
    ImageStage(
        WORKER_IMAGE,
        "worker image from Dockerfile.worker",
        "about 3 min on 2 cores; seconds when only the code changed",
        _dockerfile("Dockerfile.worker", WORKER_IMAGE, "PYTHON_IMAGE"),
        from_repository=True,
    ),
    ImageStage(
        OPERATOR_IMAGE,
        "operator image from Dockerfile.operator",
        "about 2 min on 2 cores; seconds when only the code changed",
        _dockerfile("Dockerfile.operator", OPERATOR_IMAGE, "PYTHON_IMAGE"),
        from_repository=True,
    ),
)


def build(rebuild: tuple[str, ...] = (), out: Callable[[str], None] = print) -> None:
    """Build every missing image, those made from the repository's code, and those named
    in ``rebuild``."""
    images_dir().mkdir(parents=True, exist_ok=True)
    log = images_dir() / "build.log"
    for stage in STAGES:
        if not stage.from_repository and stage.image not in rebuild and exists(stage.image):
            continue
        out(f"[images] {stage.what} ({stage.expected}) ...")
        started = time.monotonic()
        stage.build(log)
        out(f"[images] {stage.image}: done in {time.monotonic() - started:.0f}s")


def export(image: str, directory: Path) -> Path:
    """The image as an OCI archive that keeps its name (``ctr images import`` takes it)."""
    archive = directory / (image.replace("/", "_").replace(":", "_") + ".tar")
    archive.unlink(missing_ok=True)
    run(["buildah", "push", image, f"oci-archive:{archive}:{image}"], images_dir() / "build.log")
    return archive


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m stalk_devenv.images")
    parser.add_argument("--rebuild", nargs="*", default=(), help="images to build again")
    args = parser.parse_args(argv)
    try:
        build(tuple(args.rebuild), out=lambda line: print(line, file=sys.stderr))
    except ImageBuildError as exc:
        print(exc, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
