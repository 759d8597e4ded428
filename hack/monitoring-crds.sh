#!/usr/bin/env bash
# Fetches, once, the Prometheus Operator CRDs (ServiceMonitor, PodMonitor, PrometheusRule)
# of a pinned release from the Go module proxy, so the chart's monitoring objects can be
# validated against their real schemas by a local API server.
#
# Prints the directory holding the CRD files as the last line of stdout.
set -euo pipefail

VERSION=${PROMETHEUS_OPERATOR_VERSION:-v0.85.0}
module=github.com/prometheus-operator/prometheus-operator
cache_root=${STALK_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/stalk}
out="$cache_root/crds/prometheus-operator-$VERSION"
kinds=(servicemonitors podmonitors prometheusrules)

if [[ -f "$out/.complete" ]]; then
  echo "$out"
  exit 0
fi
command -v go >/dev/null || { echo "error: the Go toolchain is required (go not on PATH)" >&2; exit 1; }

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
dir=$(cd "$tmp" && GOFLAGS=-mod=mod go mod download -json "$module@$VERSION" |
  sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
if [[ -z "$dir" ]]; then
  echo "error: could not download $module@$VERSION from the Go module proxy" >&2
  exit 1
fi
mkdir -p "$out"
for kind in "${kinds[@]}"; do
  cp "$dir/example/prometheus-operator-crd/monitoring.coreos.com_$kind.yaml" "$out/"
done
chmod u+w "$out"/*.yaml
touch "$out/.complete"
echo "$out"
