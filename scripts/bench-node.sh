#!/usr/bin/env bash
# `make bench-node`: the real memory and CPU of the operator and the service, read from their
# containers' cgroups on the local cluster's real node, at idle and under `order-service bench`'s
# load through the platform's Service. The figures behind the chart's and the operator's default
# requests and limits (docs/performance.md).
#
#   scripts/bench-node.sh [BENCH ARGS…]   default: --clients 4 --duration 20s (the dev stack's
#                                         moto holds everything in memory: keep the load small)
#
# Installs the chart (examples/real-node-values.yaml, one service replica) in the namespace
# order-bench, prints a table, uninstalls. Brings the cluster up and down only if it was not up.
set -euo pipefail
. "$(dirname -- "${BASH_SOURCE[0]}")/common.sh"
cd "$ROOT"

ensure_rust
NS=order-bench
RELEASE=bench
PORT=30990
IDLE_SECONDS=${BENCH_IDLE_SECONDS:-20}
[ $# -gt 0 ] || set -- --clients 4 --duration 20s

if ! scripts/cluster.sh status >/dev/null 2>&1; then
  on_exit '"$ROOT/scripts/cluster.sh" down'
fi
scripts/images.sh build
scripts/images.sh pause
scripts/images.sh dev
scripts/cluster.sh up
scripts/node.sh images
eval "$(scripts/cluster.sh env)"
kubectl() { "$ORDER_PLATFORM_KUBECTL" "$@"; }
helm() { "$ORDER_PLATFORM_HELM" "$@"; }

kubectl create namespace "$NS" >/dev/null
on_exit 'kubectl delete namespace "$NS" --wait=false >/dev/null 2>&1'
say "installing the chart in $NS"
helm install "$RELEASE" charts/order-platform -n "$NS" -f examples/real-node-values.yaml \
  --set dev.nodePort=$PORT --set operator.watchNamespace=$NS --wait --timeout 5m >/dev/null
on_exit 'helm uninstall "$RELEASE" -n "$NS" --wait >/dev/null 2>&1'
kubectl -n "$NS" wait orderplatform/shop --for=condition=Ready --timeout=5m >/dev/null

operator=$(kubectl -n "$NS" get lease "$RELEASE-order-operator-leader" -o jsonpath='{.spec.holderIdentity}')
service=$(kubectl -n "$NS" get pods -o name | sed -n 's#^pod/\(shop-.*\)#\1#p' | grep -v '^shop-migrate-' | head -n1)
if [ -z "$operator" ] || [ -z "$service" ]; then
  echo "bench-node: no operator leader or service pod in $NS" >&2
  exit 1
fi

# sample POD SECONDS: "<peak working set MiB> <average CPU millicores>" over SECONDS, from the
# container's cgroup (working set = usage minus inactive file cache, as kubelet computes it).
sample() {
  python3 - "$(scripts/node.sh cgroup "$NS" "$1")" "$2" <<'PY'
import sys, time
path, seconds = sys.argv[1], float(sys.argv[2])
mem = f"/sys/fs/cgroup/memory{path}"
cpu = f"/sys/fs/cgroup/cpuacct{path}/cpuacct.usage"
def working_set():
    usage = int(open(f"{mem}/memory.usage_in_bytes").read())
    stat = dict(line.split() for line in open(f"{mem}/memory.stat"))
    return usage - int(stat.get("total_inactive_file", 0))
start_cpu, start, peak = int(open(cpu).read()), time.monotonic(), 0
while time.monotonic() - start < seconds:
    peak = max(peak, working_set())
    time.sleep(0.5)
used = int(open(cpu).read()) - start_cpu
print(f"{peak / 2**20:.0f} {used / 1e6 / (time.monotonic() - start):.0f}")
PY
}

say "idle for ${IDLE_SECONDS} s"
sample "$operator" "$IDLE_SECONDS" >"$ROOT/target/bench-operator-idle" &
sampler=$!
sample "$service" "$IDLE_SECONDS" >"$ROOT/target/bench-service-idle"
wait "$sampler"
read -r op_idle_mem op_idle_cpu <"$ROOT/target/bench-operator-idle"
read -r svc_idle_mem svc_idle_cpu <"$ROOT/target/bench-service-idle"

# The bench also reads the outbox and runs its SQL baseline against the platform's database:
# the dev stack's PostgreSQL, through a port-forward (apiserver, kubelet, containerd).
pf_port=55990
kubectl -n "$NS" port-forward "svc/$RELEASE-postgres" "$pf_port:5432" >/dev/null 2>&1 &
pf=$!
on_exit 'kill "$pf" 2>/dev/null'
for _ in $(seq 1 50); do
  (exec 3<>"/dev/tcp/127.0.0.1/$pf_port") 2>/dev/null && break
  sleep 0.2
done
export DATABASE_URL="postgres://orders:orders@127.0.0.1:$pf_port/orders"

say "order-service bench $* against http://$ORDER_PLATFORM_NODE_IP:$PORT"
bench_seconds=$(printf '%s\n' "$@" | awk 'prev == "--duration" { sub(/s$/, ""); print; exit } { prev = $0 }')
# The bench's two HTTP phases (creates, then status changes) each last --duration.
sample "$operator" "$((2 * ${bench_seconds:-30}))" >"$ROOT/target/bench-operator-load" &
samplers=("$!")
sample "$service" "$((2 * ${bench_seconds:-30}))" >"$ROOT/target/bench-service-load" &
samplers+=("$!")
"$CARGO_TARGET_DIR/release/order-service" bench --url "http://$ORDER_PLATFORM_NODE_IP:$PORT" "$@" |
  tee "$ROOT/target/bench-node-load.txt"
wait "${samplers[@]}"
read -r op_load_mem op_load_cpu <"$ROOT/target/bench-operator-load"
read -r svc_load_mem svc_load_cpu <"$ROOT/target/bench-service-load"

printf '\n%-16s %18s %18s %18s %18s\n' container "idle MiB" "idle millicores" "load MiB (peak)" "load millicores"
printf '%-16s %18s %18s %18s %18s\n' order-operator "$op_idle_mem" "$op_idle_cpu" "$op_load_mem" "$op_load_cpu"
printf '%-16s %18s %18s %18s %18s\n' order-service "$svc_idle_mem" "$svc_idle_cpu" "$svc_load_mem" "$svc_load_cpu"
