#!/usr/bin/env bash
# A local Kubernetes control plane (etcd, kube-apiserver with Node and RBAC authorization,
# kube-controller-manager, kube-scheduler) plus kwok fake nodes, run by kwokctl's "binary" runtime
# from the binaries that scripts/k8s-tools.sh builds, and one real node (scripts/node.sh:
# containerd, kubelet, kube-proxy, CoreDNS in a network namespace of its own). The control plane
# listens on 127.0.0.1 and advertises the address node.sh gives the node's side of its link; all
# state stays under target/cluster/ (KWOK_WORKDIR), nothing goes to ~/.kwok or ~/.kube.
#
#   scripts/cluster.sh up       create (or restart) the cluster, its fake nodes and the real node;
#                               no-op when up (CLUSTER_REAL_NODE=0: no real node)
#   scripts/cluster.sh down     stop the cluster's processes and the real node, delete their state
#   scripts/cluster.sh status   exit 0 when the apiserver is ready (prints nodes), 1 otherwise
#   scripts/cluster.sh env      print `export KUBECONFIG=...`, where the pinned helm and
#                               kubectl are (ORDER_PLATFORM_HELM, ORDER_PLATFORM_KUBECTL), and the
#                               real node's address (ORDER_PLATFORM_NODE_IP)
#
# Pods of Jobs complete (kwok's default stages); a pod labelled orders.dev/simulate=fail fails
# instead (exit code 1), so a Job made of such pods fails; one labelled orders.dev/simulate=hang
# keeps running for an hour (a migration still in progress).
set -euo pipefail

ROOT=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd)
STATE="$ROOT/target/cluster"
NAME=${CLUSTER_NAME:-order-platform}
NODES=${CLUSTER_NODES:-3}
FAIL_LABEL=orders.dev/simulate
KCM_CONTROLLERS=deployment-controller,replicaset-controller,job-controller,garbage-collector-controller
KCM_CONTROLLERS+=,namespace-controller,serviceaccount-controller,serviceaccount-token-controller
KCM_CONTROLLERS+=,node-lifecycle-controller,root-ca-certificate-publisher-controller
KCM_CONTROLLERS+=,ttl-after-finished-controller,resourcequota-controller,disruption-controller
KCM_CONTROLLERS+=,horizontal-pod-autoscaler-controller,endpointslice-controller
REAL_NODE=${CLUSTER_REAL_NODE:-1}
# The apiserver's advertised address and the Service range, shared with the real node.
eval "$("$ROOT/scripts/node.sh" addresses)"
KUBECONFIG_OUT="$STATE/kubeconfig"
# kwokctl keeps its config (kwok.yaml), cluster state, PKI, pid files and logs here.
export KWOK_WORKDIR="$STATE/kwok"
CLUSTER_DIR="$KWOK_WORKDIR/clusters/$NAME"

say() { printf '==> %s\n' "$*" >&2; }
die() {
  printf 'cluster: %s\n' "$*" >&2
  exit 1
}

BIN=$("$ROOT/scripts/k8s-tools.sh" path)
KWOKCTL="$BIN/kwokctl"
# The kubectl built with the control plane (scripts/k8s-tools.sh), not whatever is on PATH.
kubectl() { "$BIN/kubectl" "$@"; }

kwokctl() { "$KWOKCTL" --name "$NAME" -v=WARN "$@"; }

ready() {
  [ -f "$KUBECONFIG_OUT" ] &&
    kubectl --kubeconfig "$KUBECONFIG_OUT" --request-timeout=3s get --raw=/readyz >/dev/null 2>&1
}

# write_config: $KWOK_WORKDIR/kwok.yaml, read by every kwokctl call. Giving any Stage replaces all
# of kwok's default stages, so the defaults kwokctl would embed (node-initialize,
# node-heartbeat-with-lease, pod-ready, pod-complete, pod-delete) are taken from the pinned kwok
# module and our pod-fail stage is added. pod-fail has weight 1 and the defaults weight 0: when
# both pod-complete and pod-fail match a Running Job pod, kwok picks only among positive weights.
# labelled_running_pod_stage VALUE: the head of a kwok Stage for running pods labelled
# $FAIL_LABEL=VALUE, up to its weight; the caller writes what happens to them.
labelled_running_pod_stage() {
  cat <<EOF
---
apiVersion: kwok.x-k8s.io/v1alpha1
kind: Stage
metadata:
  name: pod-$1-on-label
spec:
  resourceRef:
    apiGroup: v1
    kind: Pod
  selector:
    matchExpressions:
    - key: '.metadata.labels["$FAIL_LABEL"]'
      operator: 'In'
      values:
      - '$1'
    - key: '.metadata.deletionTimestamp'
      operator: 'DoesNotExist'
    - key: '.status.phase'
      operator: 'In'
      values:
      - 'Running'
  weight: 1
EOF
}

write_config() {
  local kwok_dir k8s_version
  command -v go >/dev/null 2>&1 || export PATH="/usr/local/go/bin:$PATH"
  # The pinned kwok module's source dir (downloaded into GOMODCACHE if needed).
  kwok_dir=$(cd "$ROOT/tools/kwok" && go mod download -json sigs.k8s.io/kwok |
    sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
  if [ -z "$kwok_dir" ] || [ ! -d "$kwok_dir/kustomize/stage" ]; then
    die "kwok module source not found (run scripts/k8s-tools.sh build)"
  fi
  k8s_version=$(basename "$BIN")
  k8s_version=${k8s_version#k8s-}
  mkdir -p "$KWOK_WORKDIR"
  {
    cat <<EOF
apiVersion: config.kwok.x-k8s.io/v1alpha1
kind: KwokctlConfiguration
options:
  runtime: binary
  kubeVersion: $k8s_version
  bindAddress: 127.0.0.1
  securePort: true
  kubeAuthorization: true
  kubeAdmission: true
  kubeApiserverBinary: $BIN/kube-apiserver
  kubeControllerManagerBinary: $BIN/kube-controller-manager
  kubeSchedulerBinary: $BIN/kube-scheduler
  kwokControllerBinary: $BIN/kwok
  etcdBinary: $BIN/etcd
  kubectlBinary: $BIN/kubectl
  # Pods reach the apiserver through the kubernetes Service (first address of the Service range)
  # and the advertised address; its serving certificate must name both.
  kubeApiserverCertSANs:
  - $NODE_HOST_IP
  - $(python3 -c 'import ipaddress,sys; print(ipaddress.ip_network(sys.argv[1])[1])' "$NODE_SERVICE_CIDR")
componentsPatches:
# Throwaway test data: skip fsync (faster writes, not crash-safe).
- name: etcd
  extraArgs:
  - key: unsafe-no-fsync
    value: "true"
# kwokctl's binary runtime has kwok manage every node; it must leave the real node to its
# kubelet: only nodes `kwokctl scale node` annotates are kwok's.
- name: kwok-controller
  extraArgs:
  - key: manage-all-nodes
    value: "false"
  - key: manage-nodes-with-annotation-selector
    value: kwok.x-k8s.io/node=fake
- name: kube-apiserver
  extraArgs:
  # The kubernetes Service's endpoint: an address the real node reaches (node.sh's link), not
  # 127.0.0.1, which the apiserver refuses to publish.
  - key: advertise-address
    value: $NODE_HOST_IP
  - key: service-cluster-ip-range
    value: $NODE_SERVICE_CIDR
  # Kubelets may change only their own Node and their pods (the Node authorizer is on already).
  - key: enable-admission-plugins
    value: NodeRestriction
  # logs, exec and port-forward: the apiserver authenticates to kubelets with the admin
  # certificate (system:masters).
  - key: kubelet-client-certificate
    value: $CLUSTER_DIR/pki/admin.crt
  - key: kubelet-client-key
    value: $CLUSTER_DIR/pki/admin.key
  - key: kubelet-preferred-address-types
    value: InternalIP
- name: kube-controller-manager
  extraArgs:
  # node-lifecycle removes the node.kubernetes.io/not-ready taint the apiserver's admission puts
  # on new nodes (without it nothing schedules); ttl-after-finished cleans up finished Jobs;
  # resourcequota fills quota usage (tests hold a Job back with a quota); disruption fills PDB status;
  # the HPA controller keeps replicas within min and max (no metrics API here, so no more);
  # endpointslice feeds the real node's kube-proxy.
  - key: controllers
    value: $KCM_CONTROLLERS
  - key: horizontal-pod-autoscaler-sync-period
    value: 2s
EOF
    local f
    for f in node/fast/node-initialize.yaml node/heartbeat-with-lease/node-heartbeat-with-lease.yaml \
      pod/fast/pod-ready.yaml pod/fast/pod-complete.yaml pod/fast/pod-delete.yaml; do
      printf -- '---\n'
      cat "$kwok_dir/kustomize/stage/$f"
    done
    # Stages for running pods labelled $FAIL_LABEL=VALUE; weight 1 wins over kwok's own.
    labelled_running_pod_stage fail
    cat <<EOF
  next:
    statusTemplate: |
      {{ \$now := Now }}
      conditions:
      - lastTransitionTime: {{ \$now | Quote }}
        status: "False"
        type: Ready
      - lastTransitionTime: {{ \$now | Quote }}
        status: "False"
        type: ContainersReady
      containerStatuses:
      {{ range .spec.containers }}
      - image: {{ .image | Quote }}
        name: {{ .name | Quote }}
        ready: false
        restartCount: 0
        started: false
        state:
          terminated:
            exitCode: 1
            finishedAt: {{ \$now | Quote }}
            reason: Error
            message: simulated failure ($FAIL_LABEL=fail)
            startedAt: {{ \$now | Quote }}
      {{ end }}
      phase: Failed
EOF
    labelled_running_pod_stage hang
    cat <<EOF
  delay:
    durationMilliseconds: 3600000
  next:
    statusTemplate: |
      phase: Succeeded
EOF
  } >"$KWOK_WORKDIR/kwok.yaml.tmp"
  mv -f "$KWOK_WORKDIR/kwok.yaml.tmp" "$KWOK_WORKDIR/kwok.yaml"
}

wait_ready() {
  local i
  for ((i = 0; i < ${1:-60} * 2; i++)); do
    ready && return 0
    sleep 0.5
  done
  return 1
}

cmd_up() {
  local start=$SECONDS
  if [ -d "$CLUSTER_DIR" ] && ready; then
    [ "$REAL_NODE" = 0 ] || "$ROOT/scripts/node.sh" up
    say "cluster $NAME already up ($((SECONDS - start)) s)"
    return
  fi
  "$ROOT/scripts/k8s-tools.sh" build
  write_config
  if [ -d "$CLUSTER_DIR" ]; then
    say "restarting cluster $NAME"
    kwokctl start cluster || die "kwokctl start failed; try: $0 down && $0 up"
  else
    say "creating cluster $NAME in $KWOK_WORKDIR"
    # --kubeconfig "": do not touch ~/.kube/config (kwokctl's default); we export our own.
    kwokctl create cluster --runtime binary --kubeconfig "" --wait 2m
  fi
  kwokctl get kubeconfig >"$KUBECONFIG_OUT.tmp"
  mv -f "$KUBECONFIG_OUT.tmp" "$KUBECONFIG_OUT"
  wait_ready 60 || die "apiserver not ready; logs: $CLUSTER_DIR/logs"
  kwokctl scale node --replicas "$NODES" >/dev/null
  kubectl --kubeconfig "$KUBECONFIG_OUT" wait --for=condition=Ready node --all --timeout=60s >/dev/null
  # The not-ready taint (admission) goes once node-lifecycle sees Ready; wait so pods schedule now.
  local i
  for ((i = 0; i < 120; i++)); do
    [ -z "$(kubectl --kubeconfig "$KUBECONFIG_OUT" get nodes -o jsonpath='{.items[*].spec.taints}')" ] && break
    sleep 0.5
  done
  [ "$REAL_NODE" = 0 ] || "$ROOT/scripts/node.sh" up
  say "cluster $NAME up with $NODES kwok nodes$([ "$REAL_NODE" = 0 ] || echo " and a real node") ($((SECONDS - start)) s); $(cmd_env)"
}

cmd_down() {
  "$ROOT/scripts/node.sh" down
  if [ ! -d "$CLUSTER_DIR" ]; then
    say "cluster $NAME not found"
  else
    # kwokctl removes the cluster's context from --kubeconfig (default ~/.kube/config; "" is
    # rejected here), so point it at our own kubeconfig, deleted right after.
    touch "$KUBECONFIG_OUT"
    kwokctl delete cluster --kubeconfig "$KUBECONFIG_OUT"
  fi
  rm -f "$KUBECONFIG_OUT"
}

cmd_status() {
  if [ -d "$CLUSTER_DIR" ] && ready; then
    kubectl --kubeconfig "$KUBECONFIG_OUT" get nodes
    return 0
  fi
  echo "cluster $NAME is not running" >&2
  return 1
}

cmd_env() {
  printf 'export KUBECONFIG=%s\n' "$KUBECONFIG_OUT"
  printf 'export ORDER_PLATFORM_HELM=%s ORDER_PLATFORM_KUBECTL=%s\n' "$BIN/helm" "$BIN/kubectl"
  # The real node's address: NodePort Services answer there (from this machine only).
  [ "$REAL_NODE" = 0 ] || printf 'export ORDER_PLATFORM_NODE_IP=%s\n' "$NODE_IP"
}

case "${1:-}" in
  up) cmd_up ;;
  down) cmd_down ;;
  status) cmd_status ;;
  env) cmd_env ;;
  *)
    echo "usage: $0 up|down|status|env" >&2
    exit 2
    ;;
esac
