#!/usr/bin/env bash
# Builds, once, the binaries of a local Kubernetes control plane from Go modules:
# etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kubectl, kwok and helm.
#
# No Docker engine and no prebuilt downloads are available where Stalk is tested,
# so everything is compiled from the Go module proxy. k8s.io/kubernetes is not meant to
# be a dependency: its go.mod points every k8s.io staging module at ./staging, so we
# replace each with its published v0.x tag (kubernetes/kubernetes#79384).
#
# Output: one directory of binaries per version set, under the cache directory, printed
# on stdout as the last line. A second run finds the stamp and returns at once;
# --cached-only prints it only if it is already built, and fails otherwise.
set -euo pipefail

K8S_VERSION=${K8S_VERSION:-v1.34.4}
ETCD_VERSION=${ETCD_VERSION:-v3.6.4}
KWOK_VERSION=${KWOK_VERSION:-v0.7.0}
HELM_VERSION=${HELM_VERSION:-v3.19.0}

cache_root=${STALK_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/stalk}
key="k8s-${K8S_VERSION}_etcd-${ETCD_VERSION}_kwok-${KWOK_VERSION}_helm-${HELM_VERSION}"
bin_dir="$cache_root/bin/$key"
stamp="$bin_dir/.complete"

if [[ -f "$stamp" && -f "$bin_dir/kwok-stages.yaml" ]]; then
  echo "$bin_dir"
  exit 0
fi
if [[ ${1:-} == --cached-only ]]; then
  echo "not built yet: run hack/controlplane-binaries.sh" >&2
  exit 1
fi

command -v go >/dev/null || { echo "error: the Go toolchain is required (go not on PATH)" >&2; exit 1; }
mkdir -p "$bin_dir"
src="$cache_root/src/$key"
mkdir -p "$src"
log() { echo "[controlplane-binaries] $*" >&2; }

# Builds package paths in a throwaway module that requires $1 at $2 plus replace lines.
build_in_module() {
  local dir=$1 module=$2 version=$3 replaces=$4 ldflags=$5
  shift 5
  mkdir -p "$dir"
  cat >"$dir/go.mod" <<MOD
module stalk.dev/build/$(basename "$dir")

go 1.24.0

require $module $version

$replaces
MOD
  (cd "$dir" && GOFLAGS=-mod=mod go build -trimpath -ldflags "-s -w $ldflags" -o "$bin_dir/" "$@")
}

k8s_minor=${K8S_VERSION#v1.}; k8s_minor=${k8s_minor%%.*}
staging_tag="v0.${K8S_VERSION#v1.}"

if [[ ! -x "$bin_dir/kube-apiserver" || ! -x "$bin_dir/kubectl" ]]; then
  log "resolving k8s.io/kubernetes $K8S_VERSION staging modules"
  gomod=$(cd "$src" && go mod download -json "k8s.io/kubernetes@$K8S_VERSION" |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["GoMod"])')
  replaces="replace ("$'\n'
  while read -r mod; do
    replaces+="	$mod => $mod $staging_tag"$'\n'
  done < <(sed -nE 's#^[[:space:]]*(k8s\.io/[a-z0-9-]+) => \./staging/.*#\1#p' "$gomod")
  replaces+=")"
  version_pkg=k8s.io/component-base/version
  ldflags="-X $version_pkg.gitVersion=$K8S_VERSION -X $version_pkg.gitMajor=1"
  ldflags+=" -X $version_pkg.gitMinor=$k8s_minor -X $version_pkg.gitTreeState=clean"
  ldflags+=" -X k8s.io/client-go/pkg/version.gitVersion=$K8S_VERSION"
  log "building kube-apiserver, kube-controller-manager, kube-scheduler, kubectl (slow the first time)"
  build_in_module "$src/kubernetes" k8s.io/kubernetes "$K8S_VERSION" "$replaces" "$ldflags" \
    k8s.io/kubernetes/cmd/kube-apiserver \
    k8s.io/kubernetes/cmd/kube-controller-manager \
    k8s.io/kubernetes/cmd/kube-scheduler \
    k8s.io/kubernetes/cmd/kubectl
fi

if [[ ! -x "$bin_dir/etcd" ]]; then
  log "building etcd $ETCD_VERSION"
  etcd_replaces="replace ("$'\n'
  for m in api/v3 client/pkg/v3 client/v3 pkg/v3; do
    etcd_replaces+="	go.etcd.io/etcd/$m => go.etcd.io/etcd/$m $ETCD_VERSION"$'\n'
  done
  etcd_replaces+=")"
  build_in_module "$src/etcd" go.etcd.io/etcd/server/v3 "$ETCD_VERSION" "$etcd_replaces" "" \
    go.etcd.io/etcd/server/v3
  mv "$bin_dir/server" "$bin_dir/etcd"  # go names a /v3 main package after its parent
fi

if [[ ! -x "$bin_dir/kwok" ]]; then
  log "building kwok $KWOK_VERSION"
  GOBIN="$bin_dir" go install -trimpath -ldflags "-s -w" "sigs.k8s.io/kwok/cmd/kwok@$KWOK_VERSION"
fi

if [[ ! -x "$bin_dir/helm" ]]; then
  log "building helm $HELM_VERSION"
  GOBIN="$bin_dir" go install -trimpath \
    -ldflags "-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION" \
    "helm.sh/helm/v3/cmd/helm@$HELM_VERSION"
fi

if [[ ! -f "$bin_dir/kwok-stages.yaml" ]]; then
  # KWOK's own "fast" stages (nodes Ready with leases, pods Running at once), as shipped
  # in its module; the dev cluster adjusts pod deletion for the process kubelet.
  kwok_src=$(cd "$src" && go mod download -json "sigs.k8s.io/kwok@$KWOK_VERSION" |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["Dir"])')
  stage_dir="$kwok_src/kustomize/stage"
  for f in "$stage_dir"/node/fast/node-*.yaml \
           "$stage_dir"/node/heartbeat-with-lease/node-heartbeat-with-lease.yaml \
           "$stage_dir"/pod/fast/pod-*.yaml; do
    echo "---"
    cat "$f"
  done >"$bin_dir/kwok-stages.yaml"
fi

touch "$stamp"
log "done: $bin_dir"
echo "$bin_dir"
