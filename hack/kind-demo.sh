#!/usr/bin/env bash
# Stalk on a kind cluster, for machines with Docker: creates the cluster, builds and loads
# both images, installs the chart (bundled Redis with Sentinel included), applies the
# example TaskQueues, runs `helm test`, and sends a burst of tasks to watch the scaling.
#
#   hack/kind-demo.sh            # everything
#   hack/kind-demo.sh --delete   # remove the kind cluster
#
# Needs docker, kind, kubectl and helm on PATH. Settings: KIND_CLUSTER (stalk),
# NAMESPACE (stalk), TAG (dev).
set -euo pipefail

KIND_CLUSTER=${KIND_CLUSTER:-stalk}
NAMESPACE=${NAMESPACE:-stalk}
TAG=${TAG:-dev}
RELEASE=stalk
repo=$(cd "$(dirname "$0")/.." && pwd)

log() { printf '\n==> %s\n' "$*"; }
die() { echo "error: $*" >&2; exit 1; }

if [[ ${1:-} == --delete ]]; then
  kind delete cluster --name "$KIND_CLUSTER"
  exit 0
fi

for tool in docker kind kubectl helm; do
  command -v "$tool" >/dev/null || die "$tool is required on PATH"
done
docker info >/dev/null 2>&1 || die "the Docker engine is not running"

if kind get clusters | grep -qx "$KIND_CLUSTER"; then
  log "kind cluster $KIND_CLUSTER exists; reusing it"
else
  log "creating kind cluster $KIND_CLUSTER"
  kind create cluster --name "$KIND_CLUSTER" --wait 120s
fi
kubectl config use-context "kind-$KIND_CLUSTER" >/dev/null

log "building images stalk-worker:$TAG and stalk-operator:$TAG"
docker build -f "$repo/Dockerfile.worker" -t "stalk-worker:$TAG" "$repo"
docker build -f "$repo/Dockerfile.operator" -t "stalk-operator:$TAG" "$repo"

log "loading images into the kind nodes"
kind load docker-image --name "$KIND_CLUSTER" "stalk-worker:$TAG" "stalk-operator:$TAG"

log "installing the chart into namespace $NAMESPACE"
helm upgrade --install "$RELEASE" "$repo/charts/stalk" \
  --namespace "$NAMESPACE" --create-namespace \
  --set operator.image.repository=stalk-operator \
  --set operator.image.tag="$TAG" \
  --set worker.image.repository=stalk-worker \
  --set worker.image.tag="$TAG" \
  --set helmTest.queue=email \
  --wait --timeout 10m

log "applying the example TaskQueues"
kubectl apply --namespace "$NAMESPACE" -f "$repo/manifests/examples/taskqueues.yaml"

log "helm test: one task through the broker to a worker and back"
helm test "$RELEASE" --namespace "$NAMESPACE" --timeout 5m

log "sending a burst of 60 tasks to file_processing (the files pool scales from 0)"
kubectl exec --namespace "$NAMESPACE" "deploy/$RELEASE-beat" -- python -c '
from stalk_worker.app import app
for i in range(60):
    app.send_task("stalk_worker.tasks.canvas.sleep", args=(5, f"burst-{i}"),
                  queue="file_processing", priority=i % 10)
print("sent 60 tasks")
'

cat <<NEXT

Watch the scaling (backlog, in-flight, replicas per TaskQueue):
  kubectl get taskqueues --namespace $NAMESPACE --watch

Flower (user admin; password below):
  kubectl get secret $RELEASE-flower-auth --namespace $NAMESPACE -o jsonpath='{.data.password}' | base64 -d; echo
  kubectl port-forward --namespace $NAMESPACE svc/$RELEASE-flower 5555:5555

Remove everything:
  $0 --delete
NEXT
