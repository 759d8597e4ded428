#!/usr/bin/env bash
# Installs everything the tests and the demo need on a fresh Debian machine, and
# reuses what a previous run installed: Debian's Redis and Sentinel, the project's
# virtualenv, and the control-plane binaries (built once from Go modules, cached).
set -euo pipefail
cd "$(dirname "$0")/.."

log() { echo "[setup] $*" >&2; }
as_root() { if [[ $(id -u) -eq 0 ]]; then "$@"; else sudo "$@"; fi; }

# Debian packages, with nothing started on install: the tests and the devenv run their
# own servers with their own configuration.
apt_install() {
  local policy=/usr/sbin/policy-rc.d created=""
  if [[ ! -e $policy ]]; then
    printf '#!/bin/sh\nexit 101\n' | as_root tee "$policy" >/dev/null
    as_root chmod +x "$policy"
    created=1
  fi
  as_root apt-get update -qq
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq --no-install-recommends \
    "$@" >/dev/null
  if [[ -n $created ]]; then as_root rm -f "$policy"; fi
}

# 1. Debian packages: real Redis and Sentinel for the tests, and Prometheus (with
#    promtool) for the monitoring tests.
if ! command -v redis-server >/dev/null || ! command -v redis-sentinel >/dev/null ||
  ! command -v prometheus >/dev/null || ! command -v promtool >/dev/null; then
  log "installing redis-server, redis-sentinel and prometheus"
  apt_install redis-server redis-sentinel prometheus
fi

# 2. The virtualenv, reinstalled only when pyproject.toml changes.
python=${PYTHON:-python3}
stamp=.venv/.installed-$(sha256sum pyproject.toml | cut -c1-16)
if [[ ! -f $stamp ]]; then
  log "installing Python dependencies into .venv"
  [[ -x .venv/bin/python ]] || "$python" -m venv .venv
  .venv/bin/pip install -q --upgrade pip
  .venv/bin/pip install -q -e ".[dev]"
  rm -f .venv/.installed-*
  touch "$stamp"
fi
checkov=$(PYTHON="$python" bash hack/checkov.sh)
log "checkov (the chart's policy scan): $checkov"

# 3. The control plane (etcd, kube-apiserver, ...), kwok, helm and KEDA, from Go modules.
if command -v go >/dev/null; then
  bin_dir=$(PYTHONPATH=devenv .venv/bin/python -m stalk_devenv.binaries)
  log "control-plane binaries: $bin_dir"
  keda_dir=$(PYTHONPATH=devenv .venv/bin/python -m stalk_devenv.binaries --keda)
  log "KEDA (the side-by-side benchmark): $keda_dir"
  crd_dir=$(bash hack/monitoring-crds.sh)
  log "Prometheus Operator CRDs (to validate the chart's monitoring objects): $crd_dir"
else
  log "no Go toolchain: the e2e tests will be skipped (they need the control plane)"
fi

# 4. A real node (the container tests and the demo's real mode): Debian's containerd,
#    runc, CNI plugins, buildah and debootstrap, the node's binaries (kubelet, kube-proxy,
#    CoreDNS, crictl, and kube-router to enforce NetworkPolicies) from Go modules, and the
#    images built from the Dockerfiles. Needs root; without it the container tests skip
#    and say so.
container_packages=(containerd runc containernetworking-plugins buildah debootstrap iptables
  ipset conntrack gcc libc6-dev)
if [[ $(id -u) -ne 0 ]]; then
  log "not root: no real node here (the container tests will skip and say why)"
elif ! command -v go >/dev/null; then
  log "no Go toolchain: no real node here"
else
  missing=()
  for package in "${container_packages[@]}"; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "ok installed" ||
      missing+=("$package")
  done
  if ((${#missing[@]})); then
    log "installing ${missing[*]}"
    apt_install "${missing[@]}"
  fi
  node_bin_dir=$(PYTHONPATH=devenv .venv/bin/python -m stalk_devenv.binaries --node)
  log "real node binaries: $node_bin_dir"
  PYTHONPATH=devenv .venv/bin/python -m stalk_devenv.images
fi
