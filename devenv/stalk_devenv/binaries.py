"""The local cluster's binaries, built once from Go modules and cached.

No Docker engine and no prebuilt downloads are available where Stalk is tested, so
etcd, the Kubernetes components, KWOK and helm are compiled from the Go module proxy.
k8s.io/kubernetes is not meant to be a dependency: its go.mod points every k8s.io
staging module at ./staging, so the build module replaces each with its published v0.x
tag (kubernetes/kubernetes#79384).

``python -m stalk_devenv.binaries`` builds what is missing and prints the directory;
``--cached-only`` prints it only if everything is there. Each stage prints one line
with what it does and how long it took; the Go toolchain's own output goes to a log
file that a failure names.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

VERSIONS = {
    "k8s": "v1.34.4",
    "etcd": "v3.6.4",
    "kwok": "v0.7.0",
    "helm": "v3.19.0",
}
BINARIES = (
    "etcd",
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
    "kubectl",
    "kwok",
    "helm",
)
KWOK_STAGES = "kwok-stages.yaml"

NODE_VERSIONS = {"k8s": VERSIONS["k8s"], "coredns": "v1.13.1", "crictl": "v1.34.0"}
"""A real node's binaries, a set of their own: the fast tests never wait for them."""
NODE_BINARIES = ("kubelet", "kube-proxy", "coredns", "crictl")

ADDON_VERSIONS = {"kube-router": "v2.1.0"}
"""What the real node adds to a bare cluster, a set of its own so that adding one never
rebuilds the node's binaries: kube-router's NetworkPolicy controller (iptables and
ipset; the bridge CNI enforces no policy). SIG Network's kube-network-policies needs the
kernel's nftables ``queue`` expression, which this machine lacks ("Could not process
rule: No such file or directory"); v2.1.0 is the one kube-router release the Go module
proxy serves here, so its golang.org/x dependencies are raised to current releases
(:data:`KUBE_ROUTER_RAISED`), whose older versions carry reported vulnerabilities."""
ADDON_BINARIES = ("kube-router",)
KEDA_VERSIONS = {"keda": "v2.21.0"}
"""KEDA, for the side-by-side benchmark only: a set of its own so that the tests that do
not compare with it never wait for its build. v2.21.0 is built against Kubernetes 1.36's
client libraries and supports clusters down to N-2, which covers the local 1.34."""
KEDA_BINARIES = ("keda-operator", "keda-adapter")
KEDA_CRDS = "keda-crds.yaml"
"""KEDA's CRDs as its module ships them (config/crd/bases), kept beside the binaries."""
KUBE_ROUTER_RAISED = (
    ("golang.org/x/crypto", "v0.59.0"),
    ("golang.org/x/net", "v0.62.0"),
    ("golang.org/x/sys", "v0.50.0"),
    ("golang.org/x/text", "v0.44.0"),
)


class BinariesMissingError(RuntimeError):
    """The binaries are not built; the message says how to build them."""


def cache_root() -> Path:
    configured = os.environ.get("STALK_CACHE_DIR")
    if configured:
        return Path(configured)
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "stalk"


def bin_dir(versions: dict[str, str] = VERSIONS, prefix: str = "") -> Path:
    """Where a set of versions is built: one directory per version set."""
    key = "_".join(f"{name}-{version}" for name, version in versions.items())
    return cache_root() / "bin" / f"{prefix}{key}"


def node_bin_dir() -> Path:
    return bin_dir(NODE_VERSIONS, prefix="node_")


def find_node_binaries() -> Path:
    """The real node's binaries (kubelet, kube-proxy, CoreDNS, crictl), if built."""
    directory = node_bin_dir()
    missing = [b for b in NODE_BINARIES if not (directory / b).is_file()]
    if missing:
        raise BinariesMissingError(
            f"{directory} lacks {', '.join(missing)}: run `python -m stalk_devenv.binaries --node`"
        )
    return directory


def addon_bin_dir() -> Path:
    return bin_dir(ADDON_VERSIONS, prefix="addons_")


def find_addon_binary(name: str) -> Path:
    """An add-on's binary (see :data:`ADDON_VERSIONS`), if built."""
    binary = addon_bin_dir() / name
    if not binary.is_file():
        raise BinariesMissingError(
            f"{binary} is missing: run `python -m stalk_devenv.binaries --node`"
        )
    return binary


def keda_bin_dir() -> Path:
    return bin_dir(KEDA_VERSIONS, prefix="keda_")


def find_keda_binaries() -> Path:
    """KEDA's operator and metrics adapter (see :data:`KEDA_VERSIONS`), if built."""
    directory = keda_bin_dir()
    missing = [b for b in (*KEDA_BINARIES, KEDA_CRDS) if not (directory / b).is_file()]
    if missing:
        raise BinariesMissingError(
            f"{directory} lacks {', '.join(missing)}: run `python -m stalk_devenv.binaries --keda`"
        )
    return directory


def find_binaries() -> Path:
    """The built binaries: ``$STALK_K8S_BIN_DIR`` if set, else the build cache."""
    configured = os.environ.get("STALK_K8S_BIN_DIR", "")
    directory = Path(configured) if configured else bin_dir()
    missing = [b for b in (*BINARIES, KWOK_STAGES) if not (directory / b).is_file()]
    if missing:
        raise BinariesMissingError(
            f"{directory} lacks {', '.join(missing)}: run `make setup` "
            "(or python -m stalk_devenv.binaries)"
        )
    return directory


@dataclass(frozen=True)
class Stage:
    name: str
    outputs: tuple[str, ...]
    expected: str
    """How long it takes on 2 cores with an empty Go cache."""
    run: Callable[[Builder], None]


class Builder:
    """Runs the Go toolchain in throwaway modules, its output into one log file."""

    def __init__(self, target: Path, log: Path) -> None:
        self.target = target
        self.log = log
        self.src = cache_root() / "src" / target.name

    def go(self, *args: str, cwd: Path | None = None, env: dict[str, str] | None = None) -> str:
        cwd = cwd or self.src
        cwd.mkdir(parents=True, exist_ok=True)
        with self.log.open("a") as log:
            log.write(f"$ (cd {cwd}) go {' '.join(args)}\n")
            log.flush()
            result = subprocess.run(
                ["go", *args],
                cwd=cwd,
                env={**os.environ, **(env or {})},
                stdout=subprocess.PIPE,
                stderr=log,
                text=True,
                check=False,
            )
        if result.returncode != 0:
            raise subprocess.CalledProcessError(result.returncode, ["go", *args])
        return result.stdout

    def module_info(self, module: str, version: str) -> dict[str, str]:
        return dict(json.loads(self.go("mod", "download", "-json", f"{module}@{version}")))

    def build_in_module(
        self,
        name: str,
        module: str,
        version: str,
        replaces: Sequence[tuple[str, str]],
        packages: Sequence[str],
        ldflags: str = "",
        directives: Sequence[str] = (),
    ) -> None:
        """``go build`` of ``packages`` in a module that requires ``module@version``;
        ``replaces`` pins modules to versions of ours (``m => m v``), ``directives`` are
        go.mod lines carried over from the module's own go.mod (its replace and exclude
        lines, which Go honours only in the main module)."""
        directory = self.src / name
        directory.mkdir(parents=True, exist_ok=True)
        lines = [
            f"module stalk.dev/build/{name}",
            "",
            "go 1.24.0",
            "",
            f"require {module} {version}",
        ]
        if replaces:
            lines += ["", "replace (", *(f"\t{m} => {m} {v}" for m, v in replaces), ")"]
        if directives:
            lines += ["", *directives]
        (directory / "go.mod").write_text("\n".join(lines) + "\n")
        self.go(
            "build",
            "-trimpath",
            "-ldflags",
            f"-s -w {ldflags}".strip(),
            "-o",
            f"{self.target}/",
            *packages,
            cwd=directory,
            env={"GOFLAGS": "-mod=mod"},
        )

    def install(self, package: str, version: str, ldflags: str = "") -> None:
        self.go(
            "install",
            "-trimpath",
            "-ldflags",
            f"-s -w {ldflags}".strip(),
            f"{package}@{version}",
            env={"GOBIN": str(self.target)},
        )


def _kubernetes(builder: Builder, commands: Sequence[str] = BINARIES[1:5]) -> None:
    version = VERSIONS["k8s"]
    gomod = Path(builder.module_info("k8s.io/kubernetes", version)["GoMod"]).read_text()
    staging = f"v0.{version.removeprefix('v1.')}"
    modules = re.findall(r"^\s*(k8s\.io/[a-z0-9-]+) => \./staging/", gomod, re.MULTILINE)
    minor = version.removeprefix("v1.").split(".")[0]
    component = "k8s.io/component-base/version"
    ldflags = (
        f"-X {component}.gitVersion={version} -X {component}.gitMajor=1 "
        f"-X {component}.gitMinor={minor} -X {component}.gitTreeState=clean "
        f"-X k8s.io/client-go/pkg/version.gitVersion={version}"
    )
    builder.build_in_module(
        "kubernetes",
        "k8s.io/kubernetes",
        version,
        [(m, staging) for m in modules],
        [f"k8s.io/kubernetes/cmd/{c}" for c in commands],
        ldflags,
    )


def _etcd(builder: Builder) -> None:
    version = VERSIONS["etcd"]
    parts = ("api/v3", "client/pkg/v3", "client/v3", "pkg/v3")
    builder.build_in_module(
        "etcd",
        "go.etcd.io/etcd/server/v3",
        version,
        [(f"go.etcd.io/etcd/{p}", version) for p in parts],
        ["go.etcd.io/etcd/server/v3"],
    )
    (builder.target / "server").rename(builder.target / "etcd")  # named after /v3's parent


def _kwok(builder: Builder) -> None:
    builder.install("sigs.k8s.io/kwok/cmd/kwok", VERSIONS["kwok"])
    # KWOK's own "fast" stages (nodes Ready with leases, pods Running at once), as shipped
    # in its module; the control plane adjusts pod deletion for the process kubelet.
    stages = Path(builder.module_info("sigs.k8s.io/kwok", VERSIONS["kwok"])["Dir"])
    stages /= "kustomize/stage"
    files = [
        *sorted((stages / "node" / "fast").glob("node-*.yaml")),
        stages / "node" / "heartbeat-with-lease" / "node-heartbeat-with-lease.yaml",
        *sorted((stages / "pod" / "fast").glob("pod-*.yaml")),
    ]
    text = "".join(f"---\n{f.read_text()}" for f in files)
    (builder.target / KWOK_STAGES).write_text(text)


def _helm(builder: Builder) -> None:
    version = VERSIONS["helm"]
    builder.install(
        "helm.sh/helm/v3/cmd/helm",
        version,
        f"-X helm.sh/helm/v3/internal/version.version={version}",
    )


def _node_kubernetes(builder: Builder) -> None:
    _kubernetes(builder, ("kubelet", "kube-proxy"))


def _coredns(builder: Builder) -> None:
    builder.install("github.com/coredns/coredns", NODE_VERSIONS["coredns"])


def _crictl(builder: Builder) -> None:
    builder.install("sigs.k8s.io/cri-tools/cmd/crictl", NODE_VERSIONS["crictl"])


def _kube_router(builder: Builder) -> None:
    module = "github.com/cloudnativelabs/kube-router/v2"
    builder.build_in_module(
        "kube-router",
        module,
        ADDON_VERSIONS["kube-router"],
        KUBE_ROUTER_RAISED,
        (f"{module}/cmd/kube-router",),
    )


def _keda(builder: Builder) -> None:
    module = "github.com/kedacore/keda/v2"
    version = KEDA_VERSIONS["keda"]
    info = builder.module_info(module, version)
    gomod = Path(info["GoMod"]).read_text()
    directives = re.findall(r"^(?:replace|exclude) [^(\n]+$", gomod, re.MULTILINE)
    builder.build_in_module(
        "keda",
        module,
        version,
        (),
        (f"{module}/cmd/operator", f"{module}/cmd/adapter"),
        f"-X {module}/version.Version={version}",
        directives,
    )
    for command in ("operator", "adapter"):
        (builder.target / command).rename(builder.target / f"keda-{command}")
    crds = sorted((Path(info["Dir"]) / "config" / "crd" / "bases").glob("*.yaml"))
    (builder.target / KEDA_CRDS).write_text("".join(f"---\n{f.read_text()}" for f in crds))


KEDA_STAGES = (
    Stage(
        "KEDA operator and metrics adapter",
        (*KEDA_BINARIES, KEDA_CRDS),
        "about 7 min",
        _keda,
    ),
)

ADDON_STAGES = (
    Stage("kube-router (NetworkPolicy enforcement)", ADDON_BINARIES, "about 3 min", _kube_router),
)

NODE_STAGES = (
    Stage("kubelet, kube-proxy", ("kubelet", "kube-proxy"), "about 6 min", _node_kubernetes),
    Stage("CoreDNS", ("coredns",), "about 3 min", _coredns),
    Stage("crictl", ("crictl",), "about 1 min", _crictl),
)

STAGES = (
    Stage(
        "kube-apiserver, kube-controller-manager, kube-scheduler, kubectl",
        BINARIES[1:5],
        "about 15 min",
        _kubernetes,
    ),
    Stage("etcd", ("etcd",), "about 2 min", _etcd),
    Stage("kwok", ("kwok", KWOK_STAGES), "about 2 min", _kwok),
    Stage("helm", ("helm",), "about 2 min", _helm),
)


def build(
    target: Path | None = None,
    out: Callable[[str], None] = print,
    stages: Sequence[Stage] = STAGES,
) -> Path:
    """Build every missing binary of ``stages`` into ``target``; returns it."""
    target = target or bin_dir()
    target.mkdir(parents=True, exist_ok=True)
    log = target.parent / f"{target.name}.build.log"
    builder = Builder(target, log)
    for stage in stages:
        if all((target / o).is_file() for o in stage.outputs):
            continue
        out(f"[build] {stage.name} from Go modules ({stage.expected} on 2 cores, once) ...")
        started = time.monotonic()
        try:
            stage.run(builder)
        except (subprocess.CalledProcessError, OSError, KeyError) as exc:
            raise BinariesMissingError(f"building {stage.name} failed ({exc}); see {log}") from exc
        out(f"[build] {stage.name}: done in {_elapsed(time.monotonic() - started)}")
    return target


def _stderr(line: str) -> None:
    print(line, file=sys.stderr)


def _elapsed(seconds: float) -> str:
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes}m{rest:02d}s" if minutes else f"{rest}s"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m stalk_devenv.binaries")
    parser.add_argument("--cached-only", action="store_true", help="fail if not built")
    parser.add_argument("--node", action="store_true", help="a real node's binaries")
    parser.add_argument("--keda", action="store_true", help="KEDA, for the benchmark")
    args = parser.parse_args(argv)
    if args.keda:
        try:
            if not args.cached_only:
                build(keda_bin_dir(), _stderr, KEDA_STAGES)
            print(find_keda_binaries())
        except BinariesMissingError as exc:
            print(exc, file=sys.stderr)
            return 1
        return 0
    if args.node:
        try:
            if not args.cached_only:
                build(node_bin_dir(), _stderr, NODE_STAGES)
                build(addon_bin_dir(), _stderr, ADDON_STAGES)
            for name in ADDON_BINARIES:
                find_addon_binary(name)
            print(find_node_binaries())
        except BinariesMissingError as exc:
            print(exc, file=sys.stderr)
            return 1
        return 0
    try:
        directory = find_binaries() if args.cached_only else None
        if directory is None:
            build(out=_stderr)
            directory = find_binaries()
    except BinariesMissingError as exc:
        print(exc, file=sys.stderr)
        return 1
    print(directory)
    return 0


if __name__ == "__main__":
    sys.exit(main())
