#!/usr/bin/env bash
# The platform on a local kind cluster, for machines with Docker (this project's own test
# machines have none: there, scripts/cluster.sh is the cluster).
#
#   scripts/kind.sh up     create the kind cluster (kind-config.yaml), build the two images and
#                          the dev stack's three (scripts/images.sh build, dev) and load them,
#                          install the chart with its dev stack and example platform, wait until
#                          the platform is Ready, call the API once
#   scripts/kind.sh down   delete the kind cluster
#
# kind and helm: from PATH, else built from their Go modules into the cache (kind pinned below,
# helm pinned in tools/helm/go.mod). kubectl: from PATH, else the one scripts/k8s-tools.sh builds.
set -euo pipefail
. "$(dirname -- "${BASH_SOURCE[0]}")/common.sh"
cd "$ROOT"

die() {
  printf 'kind: %s\n' "$*" >&2
  exit 1
}

CACHE_BASE=${XDG_CACHE_HOME:-$HOME/.cache}/order-platform
KIND_VERSION=${KIND_VERSION:-v0.30.0}
CLUSTER=order-platform
NAMESPACE=${KIND_NAMESPACE:-order-platform}
RELEASE=order-platform

tool_dir() { "$ROOT/scripts/k8s-tools.sh" path; }

# ensure_kind: kind on PATH, or `go install` of the pinned version into the cache.
ensure_kind() {
  if command -v kind >/dev/null 2>&1; then KIND=$(command -v kind); return; fi
  KIND="$CACHE_BASE/kind-$KIND_VERSION/kind"
  if [[ ! -x $KIND ]]; then
    command -v go >/dev/null 2>&1 || export PATH="/usr/local/go/bin:$PATH"
    say "building kind $KIND_VERSION (go install sigs.k8s.io/kind)"
    GOBIN=$(dirname -- "$KIND") CGO_ENABLED=0 go install "sigs.k8s.io/kind@$KIND_VERSION"
  fi
}

ensure_helm_kubectl() {
  if command -v helm >/dev/null 2>&1; then HELM=$(command -v helm); else
    "$ROOT/scripts/k8s-tools.sh" build helm
    HELM="$(tool_dir)/helm"
  fi
  if command -v kubectl >/dev/null 2>&1; then KUBECTL=$(command -v kubectl); else
    "$ROOT/scripts/k8s-tools.sh" build kubectl
    KUBECTL="$(tool_dir)/kubectl"
  fi
}

cmd_up() {
  command -v docker >/dev/null 2>&1 || die "kind needs Docker: docker is not installed"
  docker info >/dev/null 2>&1 || die "kind needs a running Docker engine (docker info failed)"
  ensure_kind
  ensure_helm_kubectl
  if "$KIND" get clusters 2>/dev/null | grep -qx "$CLUSTER"; then
    say "kind cluster $CLUSTER exists"
  else
    say "creating kind cluster $CLUSTER (kind-config.yaml)"
    "$KIND" create cluster --config kind-config.yaml --wait 2m
  fi
  export KUBECONFIG="$ROOT/target/kind/kubeconfig"
  mkdir -p "$(dirname -- "$KUBECONFIG")"
  "$KIND" get kubeconfig --name "$CLUSTER" >"$KUBECONFIG"

  # The same OCI archives `make images` builds and `make test` checks (not `docker build`), so
  # kind and the local cluster run one set of images: localhost/<name>:<appVersion>, the dev
  # stack's (PostgreSQL, Kafka, moto) included, as nothing is pulled from a registry.
  "$ROOT/scripts/images.sh" build
  "$ROOT/scripts/images.sh" dev
  local images image
  images=$("$ROOT/scripts/images.sh" path)
  say "loading the images into kind"
  for image in order-service order-operator order-dev-postgres order-dev-kafka order-dev-moto; do
    "$KIND" load image-archive --name "$CLUSTER" "$images/$image.oci.tar"
  done

  say "installing the chart with dev.enabled=true into namespace $NAMESPACE"
  "$HELM" upgrade --install "$RELEASE" charts/order-platform --namespace "$NAMESPACE" --create-namespace \
    --set dev.enabled=true --set operator.image.pullPolicy=Never --wait --timeout 5m

  say "waiting for OrderPlatform shop to be Ready (up to 10 min)"
  if ! "$KUBECTL" -n "$NAMESPACE" wait orderplatform/shop --for=condition=Ready --timeout=10m; then
    "$KUBECTL" -n "$NAMESPACE" describe orderplatform shop >&2 || true
    die "the example platform did not become Ready"
  fi
  "$KUBECTL" -n "$NAMESPACE" get orderplatforms

  say "calling the order API on http://127.0.0.1:8080"
  local i
  for ((i = 0; i < 60; i++)); do
    curl -fsS http://127.0.0.1:8080/readyz >/dev/null 2>&1 && break
    sleep 1
  done
  curl -fsS -X POST http://127.0.0.1:8080/v1/orders \
    -H 'Content-Type: application/json' -H "Idempotency-Key: kind-up-$(date +%s)" \
    -d @examples/order.json
  echo
  say "the platform runs on kind: KUBECONFIG=$KUBECONFIG; scripts/kind.sh down removes it"
}

cmd_down() {
  ensure_kind
  "$KIND" delete cluster --name "$CLUSTER"
  rm -f "$ROOT/target/kind/kubeconfig"
}

case "${1:-}" in
  up) cmd_up ;;
  down) cmd_down ;;
  *)
    echo "usage: $0 up|down" >&2
    exit 2
    ;;
esac
