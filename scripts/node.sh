#!/usr/bin/env bash
# One real node beside the local control plane's kwok nodes (scripts/cluster.sh runs `up` and
# `down`): containerd with Debian's runc, the CNI bridge, kubelet, kube-proxy and CoreDNS, all
# built from their Go modules (scripts/k8s-tools.sh build node), so pods run as real containers.
#
#   scripts/node.sh up       start the node (the control plane must be up); no-op when Ready
#   scripts/node.sh down     stop everything `up` started and remove its state
#   scripts/node.sh status   exit 0 when the node is Ready
#   scripts/node.sh load ARCHIVE...   import OCI archives into the node's containerd (pinned)
#   scripts/node.sh images            load every archive scripts/images.sh built (`up` does too)
#   scripts/node.sh pid NS POD        the host PID of a pod's container (the rollout tests kill it)
#   scripts/node.sh cgroup NS POD     its cgroup path (scripts/bench-node.sh reads memory and CPU)
#   scripts/node.sh freeze|thaw NS POD   stop or resume all of a pod's container (its freezer
#                                     cgroup): a dependency that hangs
#   scripts/node.sh addresses         print the addresses cluster.sh gives the apiserver
#
# The network lives in a network namespace of its own ($NETNS): the node's address ($NODE_IP) on
# one end of a veth pair, the host end ($HOST_IP) the address the apiserver advertises. The
# apiserver listens on 127.0.0.1 only; one DNAT rule on the host end (with route_localnet on that
# interface) carries the node's connections to it, so nothing listens on the machine's own
# network. Pods get addresses from a bridge in the namespace ($POD_CIDR), Services from
# $SERVICE_CIDR through kube-proxy's rules in the namespace; the namespace has no default route,
# so pods reach the apiserver and each other and nothing off the machine.
#
# The node ($NODE_NAME) carries the taint orders.dev/real-node=true:NoSchedule and the label
# orders.dev/node=real: only pods that tolerate the taint run here; everything else keeps landing
# on kwok's nodes, which kwok manages (it manages only nodes annotated kwok.x-k8s.io/node=fake).
#
# State (containerd's content, kubelet's root, logs, certificates) is under target/cluster/node/;
# the kernel sysctls kubelet sets (vm.overcommit_memory, kernel.panic…) are restored by `down`.
set -euo pipefail
. "$(dirname -- "${BASH_SOURCE[0]}")/common.sh"

NAME=${CLUSTER_NAME:-order-platform}
STATE="$ROOT/target/cluster"
DIR="$STATE/node"
CLUSTER_DIR="$STATE/kwok/clusters/$NAME"
KUBECONFIG_ADMIN="$STATE/kubeconfig"
NODE_NAME=${NODE_NAME:-orders-node}
NETNS="$NAME-node"
HOST_IF=opnode0 # the host end of the veth pair (at most 15 characters)
# The addresses: exported by `scripts/node.sh addresses` for cluster.sh's apiserver flags.
HOST_IP=${NODE_HOST_IP:-10.245.0.1}
NODE_IP=${NODE_IP:-10.245.0.2}
LINK_PREFIX=30
POD_CIDR=${NODE_POD_CIDR:-10.244.0.0/24}
SERVICE_CIDR=${NODE_SERVICE_CIDR:-10.96.0.0/16}
DNS_IP=${NODE_DNS_IP:-10.96.0.10}
TAINT=orders.dev/real-node
CGROUP_ROOT=/$NAME-node
SOCK="$DIR/run/containerd/containerd.sock"
SYSCTLS=(vm.overcommit_memory vm.panic_on_oom kernel.panic kernel.panic_on_oops
  kernel.keys.root_maxkeys kernel.keys.root_maxbytes)
BIN=$("$ROOT/scripts/k8s-tools.sh" path)

die() {
  printf 'node: %s\n' "$*" >&2
  exit 1
}
kubectl() { "$BIN/kubectl" --kubeconfig "$KUBECONFIG_ADMIN" "$@"; }
in_netns() { nsenter --net="/run/netns/$NETNS" "$@"; }
ctr() { "$BIN/ctr" --address "$SOCK" --namespace k8s.io "$@"; }
# Its own (empty) config file: crictl otherwise warns that /etc/crictl.yaml is missing.
crictl() {
  [ -f "$DIR/etc/crictl.yaml" ] || { mkdir -p "$DIR/etc" && : >"$DIR/etc/crictl.yaml"; }
  "$BIN/crictl" --config "$DIR/etc/crictl.yaml" --runtime-endpoint "unix://$SOCK" \
    --image-endpoint "unix://$SOCK" --timeout 30s "$@"
}

# wait_for SECONDS WHAT CMD...: poll CMD every half second until it succeeds, or fail naming WHAT.
wait_for() {
  local secs=$1 what=$2 i
  shift 2
  for ((i = 0; i < secs * 2; i++)); do
    "$@" >/dev/null 2>&1 && return 0
    sleep 0.5
  done
  die "$what not ready after ${secs} s (logs: $DIR/logs)"
}

apiserver_port() {
  sed -n 's#^ *server: https://127.0.0.1:\([0-9]*\)$#\1#p' "$KUBECONFIG_ADMIN" | head -n1
}

# ---- network --------------------------------------------------------------------------------

# check_ranges: none of our ranges may overlap a route this machine already has (another
# bridge, podman's 10.88.0.0/16, the machine's own network).
check_ranges() {
  python3 - "$HOST_IP/$LINK_PREFIX" "$POD_CIDR" "$SERVICE_CIDR" "$HOST_IF" <<'PY' || exit 1
import ipaddress, subprocess, sys
*ours, host_if = sys.argv[1:]
ours = [ipaddress.ip_network(n, strict=False) for n in ours]
for line in subprocess.run(["ip", "-4", "route", "show", "table", "all"], capture_output=True, text=True).stdout.splitlines():
    words = line.split()
    if not words or words[0] in ("default", "broadcast", "local") or f"dev {host_if}" in line:
        continue
    try:
        net = ipaddress.ip_network(words[0], strict=False)
    except ValueError:
        continue
    for n in ours:
        if n.overlaps(net):
            sys.exit(f"node: {n} overlaps this machine's route '{line.strip()}': set NODE_HOST_IP/NODE_IP, NODE_POD_CIDR or NODE_SERVICE_CIDR")
PY
}

dnat_rule() {
  printf '%s\n' PREROUTING -i "$HOST_IF" -d "$HOST_IP" -p tcp --dport "$1" \
    -j DNAT --to-destination "127.0.0.1:$1" -m comment --comment "$NAME real node to apiserver"
}

network_up() {
  local port=$1
  # The namespace, the veth and the addresses are one per machine: refuse another clone's.
  if [ -e "/run/netns/$NETNS" ] && [ ! -f "$DIR/run/netns.ours" ]; then
    die "network namespace $NETNS exists but was not made by this clone ($ROOT): stop that node first (its scripts/cluster.sh down), or remove it: ip netns del $NETNS"
  fi
  if [ ! -e "/run/netns/$NETNS" ]; then
    check_ranges
    say "network namespace $NETNS: $HOST_IF $HOST_IP <-> $NODE_IP, pods $POD_CIDR, services $SERVICE_CIDR"
    ip netns add "$NETNS"
    ip link add "$HOST_IF" type veth peer name eth0 netns "$NETNS"
    ip addr add "$HOST_IP/$LINK_PREFIX" dev "$HOST_IF"
    ip link set "$HOST_IF" up
    in_netns ip addr add "$NODE_IP/$LINK_PREFIX" dev eth0
    in_netns ip link set eth0 up
    in_netns ip link set lo up
    touch "$DIR/run/netns.ours"
  fi
  # Connections to a 127.0.0.1 destination from another interface need route_localnet there.
  sysctl -qw "net.ipv4.conf.$HOST_IF.route_localnet=1"
  # The namespace's own sysctls: routing between the bridge and eth0, and bridged traffic
  # through iptables (else pod -> Service -> pod on one bridge skips conntrack).
  in_netns sysctl -qw net.ipv4.ip_forward=1 net.bridge.bridge-nf-call-iptables=1
  local rule
  mapfile -t rule < <(dnat_rule "$port")
  iptables -t nat -C "${rule[@]}" 2>/dev/null || iptables -t nat -A "${rule[@]}"
}

network_down() {
  local port rule
  # Every DNAT rule of ours, whatever port an earlier cluster had.
  for port in $(iptables -t nat -S PREROUTING 2>/dev/null | grep -F -- "-i $HOST_IF " |
    sed -n 's/.*--dport \([0-9]*\).*/\1/p'); do
    mapfile -t rule < <(dnat_rule "$port")
    iptables -t nat -D "${rule[@]}" || true
  done
  [ ! -e "/run/netns/$NETNS" ] || ip netns del "$NETNS"
  ip link del "$HOST_IF" 2>/dev/null || true
}

# ---- certificates and configuration ---------------------------------------------------------

# client_cert NAME SUBJECT: a client certificate signed by the cluster's CA (kwokctl's), and a
# kubeconfig using it, reaching the apiserver at the advertised address.
client_cert() {
  local name=$1 subj=$2 pki="$CLUSTER_DIR/pki"
  [ -f "$DIR/pki/$name.crt" ] || {
    openssl req -new -newkey rsa:2048 -nodes -keyout "$DIR/pki/$name.key" -subj "$subj" \
      -out "$DIR/pki/$name.csr" 2>/dev/null
    openssl x509 -req -in "$DIR/pki/$name.csr" -CA "$pki/ca.crt" -CAkey "$pki/ca.key" \
      -CAcreateserial -days 365 -out "$DIR/pki/$name.crt" 2>/dev/null
  }
  put "$DIR/etc/$name.kubeconfig" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: $NAME
  cluster:
    certificate-authority: $pki/ca.crt
    server: https://$HOST_IP:$(apiserver_port)
users:
- name: $name
  user:
    client-certificate: $DIR/pki/$name.crt
    client-key: $DIR/pki/$name.key
contexts:
- name: $name
  context: {cluster: $NAME, user: $name}
current-context: $name
EOF
}

# put FILE: stdin into FILE unless FILE already holds exactly that (kube-proxy exits when its
# configuration file changes, so an `up` that changes nothing must not touch it).
put() {
  cat >"$1.new"
  if cmp -s "$1.new" "$1"; then rm -f "$1.new"; else mv -f "$1.new" "$1"; fi
}

write_configs() {
  mkdir -p "$DIR"/{pki,etc,logs,run,cni/net.d,cni/networks,kubelet,pod-logs,containerd}
  # The node's identity under the Node authorizer and NodeRestriction.
  client_cert kubelet "/O=system:nodes/CN=system:node:$NODE_NAME"
  # Covered by the default system:node-proxier binding.
  client_cert kube-proxy "/CN=system:kube-proxy"
  # Bound to the system:coredns ClusterRole by coredns_objects.
  client_cert coredns "/CN=system:coredns"

  # containerd 2.x (config version 3). restrict_oom_score_adj: root here lacks CAP_SYS_RESOURCE,
  # so lowering a container's oom_score_adj (kubelet asks -998 for sandboxes) would fail.
  # The sandbox image is built here (scripts/images.sh pause) and pinned by tag.
  put "$DIR/etc/containerd.toml" <<EOF
version = 3
root = '$DIR/containerd'
state = '$DIR/run/containerd'
[grpc]
  address = '$SOCK'
[plugins.'io.containerd.cri.v1.images']
  snapshotter = 'overlayfs'
  [plugins.'io.containerd.cri.v1.images'.pinned_images]
    sandbox = 'localhost/pause:$(pause_version)'
[plugins.'io.containerd.cri.v1.runtime']
  restrict_oom_score_adj = true
  tolerate_missing_hugetlb_controller = true
  [plugins.'io.containerd.cri.v1.runtime'.containerd]
    default_runtime_name = 'runc'
    [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc]
      runtime_type = 'io.containerd.runc.v2'
      [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options]
        SystemdCgroup = false
        BinaryName = '$(command -v runc || echo /usr/sbin/runc)'
  [plugins.'io.containerd.cri.v1.runtime'.cni]
    bin_dirs = ['$BIN']
    conf_dir = '$DIR/cni/net.d'
EOF

  # One bridge, host-local addresses (stored under our state, not /var/lib/cni).
  put "$DIR/cni/net.d/10-$NAME.conflist" <<EOF
{"cniVersion": "1.0.0", "name": "$NAME", "plugins": [
  {"type": "bridge", "bridge": "opcni0", "isGateway": true, "ipMasq": true, "hairpinMode": true,
   "ipam": {"type": "host-local", "dataDir": "$DIR/cni/networks",
            "ranges": [[{"subnet": "$POD_CIDR"}]], "routes": [{"dst": "0.0.0.0/0"}]}},
  {"type": "portmap", "capabilities": {"portMappings": true}, "externalSetMarkChain": "KUBE-MARK-MASQ"}
]}
EOF

  # kubelet: cgroupfs (what containerd reports), cgroup v1 accepted, kubepods under our own
  # cgroup root, no image GC or eviction of the imported images (they cannot be pulled again),
  # DNS from CoreDNS, and the taint that keeps other pods off this node.
  put "$DIR/etc/kubelet.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
containerRuntimeEndpoint: unix://$SOCK
cgroupDriver: cgroupfs
cgroupRoot: $CGROUP_ROOT
failCgroupV1: false
failSwapOn: false
address: $NODE_IP
healthzBindAddress: 127.0.0.1
readOnlyPort: 0
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: $CLUSTER_DIR/pki/ca.crt}
authorization: {mode: Webhook}
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard: {nodefs.available: "0%", nodefs.inodesFree: "0%", imagefs.available: "0%"}
oomScoreAdj: 0
resolvConf: ""
clusterDNS: [$DNS_IP]
clusterDomain: cluster.local
podLogsDir: $DIR/pod-logs
serializeImagePulls: false
registerWithTaints:
- {key: $TAINT, value: "true", effect: NoSchedule}
EOF

  put "$DIR/etc/kube-proxy.yaml" <<EOF
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection: {kubeconfig: $DIR/etc/kube-proxy.kubeconfig}
hostnameOverride: $NODE_NAME
clusterCIDR: $POD_CIDR
mode: iptables
nodePortAddresses: [primary]
metricsBindAddress: 127.0.0.1:10249
healthzBindAddress: 127.0.0.1:10256
iptables: {minSyncPeriod: 1s}
# Leave the conntrack sysctls alone (as kind and k3s do).
conntrack: {maxPerCore: 0, tcpEstablishedTimeout: 0s, tcpCloseWaitTimeout: 0s}
EOF

  # CoreDNS serves cluster.local from the apiserver; no forward plugin: names outside the
  # cluster do not resolve, so nothing is asked of a DNS server off the machine.
  put "$DIR/etc/Corefile" <<EOF
.:53 {
    errors
    health 127.0.0.1:18080
    ready 127.0.0.1:18181
    kubernetes cluster.local in-addr.arpa ip6.arpa {
        kubeconfig $DIR/etc/coredns.kubeconfig coredns
        pods insecure
        fallthrough in-addr.arpa ip6.arpa
        ttl 5
    }
    cache 5
}
EOF
}

pause_version() {
  local archive ref digest
  archive="$("$ROOT/scripts/images.sh" path)/pause.oci.tar"
  [ -f "$archive" ] || die "no pause image: run scripts/images.sh pause"
  read -r ref digest < <(archive_ref "$archive")
  printf '%s\n' "${ref##*:}"
}

# coredns_objects: CoreDNS's permissions, and the kube-dns Service pods' resolv.conf names: no
# selector, one EndpointSlice with the node's address (CoreDNS runs on the node, not in a pod).
coredns_objects() {
  sed -e "s/DNS_IP/$DNS_IP/" -e "s/NODE_IP/$NODE_IP/" <<'EOF' | kubectl apply -f - >/dev/null
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata:
  name: system:coredns
rules:
- apiGroups: [""]
  resources: [endpoints, services, pods, namespaces]
  verbs: [list, watch]
- apiGroups: [discovery.k8s.io]
  resources: [endpointslices]
  verbs: [list, watch]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata:
  name: system:coredns
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: system:coredns}
subjects:
- {apiGroup: rbac.authorization.k8s.io, kind: User, name: system:coredns}
---
apiVersion: v1
kind: Service
metadata:
  name: kube-dns
  namespace: kube-system
  labels: {k8s-app: kube-dns}
spec:
  clusterIP: DNS_IP
  ports:
  - {name: dns, port: 53, protocol: UDP}
  - {name: dns-tcp, port: 53, protocol: TCP}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: kube-dns-node
  namespace: kube-system
  labels:
    kubernetes.io/service-name: kube-dns
    endpointslice.kubernetes.io/managed-by: scripts.node.sh
addressType: IPv4
endpoints:
- addresses: [NODE_IP]
  conditions: {ready: true}
ports:
- {name: dns, port: 53, protocol: UDP}
- {name: dns-tcp, port: 53, protocol: TCP}
EOF
}

# ---- processes ------------------------------------------------------------------------------

running() {
  local pid
  pid=$(cat "$DIR/run/$1.pid" 2>/dev/null) && kill -0 "$pid" 2>/dev/null
}

# start NAME CMD...: run CMD in the node's network namespace, detached, logging to logs/NAME.log.
start() {
  local name=$1
  shift
  running "$name" && return 0
  setsid nsenter --net="/run/netns/$NETNS" "$@" >>"$DIR/logs/$name.log" 2>&1 </dev/null &
  echo $! >"$DIR/run/$name.pid"
}

# stop NAME: TERM, then KILL after 10 s.
stop() {
  local pid i
  pid=$(cat "$DIR/run/$1.pid" 2>/dev/null) || return 0
  kill "$pid" 2>/dev/null || { rm -f "$DIR/run/$1.pid"; return 0; }
  for ((i = 0; i < 20; i++)); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.5
  done
  kill -9 "$pid" 2>/dev/null || true
  rm -f "$DIR/run/$1.pid"
}

# cgroup_dirs: our cgroup root in every hierarchy (kubelet puts kubepods under it; it wants it
# in name=systemd too, and the unified one gets a copy).
cgroup_dirs() {
  local c
  for c in /sys/fs/cgroup/*/; do printf '%s\n' "${c%/}$CGROUP_ROOT"; done
}

cgroups_up() {
  local d parent
  for d in $(cgroup_dirs); do
    [ -d "$d" ] && continue
    mkdir -p "$d"
    # A new cpuset cgroup starts with no CPUs and no memory nodes: copy the parent's.
    parent=$(dirname "$d")
    if [ -f "$d/cpuset.cpus" ]; then
      cat "$parent/cpuset.cpus" >"$d/cpuset.cpus"
      cat "$parent/cpuset.mems" >"$d/cpuset.mems"
    fi
  done
}

# cgroups_down: kill whatever is still in our cgroups, then remove them, deepest first.
cgroups_down() {
  local d pid
  for d in $(cgroup_dirs); do
    [ -d "$d" ] || continue
    for pid in $(find "$d" -name cgroup.procs -exec cat {} + 2>/dev/null); do kill -9 "$pid" 2>/dev/null || true; done
  done
  for d in $(cgroup_dirs); do
    [ -d "$d" ] || continue
    find "$d" -depth -type d -exec rmdir {} + 2>/dev/null || true
  done
}

save_sysctls() {
  [ -f "$DIR/sysctls.saved" ] && return
  local k
  for k in "${SYSCTLS[@]}"; do printf '%s=%s\n' "$k" "$(sysctl -n "$k")"; done >"$DIR/sysctls.saved"
}

restore_sysctls() {
  [ -f "$DIR/sysctls.saved" ] || return 0
  local kv
  while read -r kv; do sysctl -qw "$kv" || true; done <"$DIR/sysctls.saved"
}

node_ready() {
  [ "$(kubectl get node "$NODE_NAME" -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null)" = True ]
}

# ---- commands -------------------------------------------------------------------------------

# archive_ref ARCHIVE: "<name> <digest>" of the image in an OCI archive (images.sh names it).
archive_ref() {
  python3 - "$1" <<'PY'
import json, sys, tarfile
m = json.load(tarfile.open(sys.argv[1]).extractfile("./index.json"))["manifests"][0]
print(m["annotations"]["org.opencontainers.image.ref.name"], m["digest"])
PY
}

# cmd_load ARCHIVE...: import each archive unless the node already has that exact image; pinned,
# so kubelet's image GC never removes what cannot be pulled again.
cmd_load() {
  local a ref digest out
  for a in "$@"; do
    [ -f "$a" ] || die "no archive $a"
    read -r ref digest < <(archive_ref "$a")
    if ctr images ls "name==$ref" 2>/dev/null | grep -qF "$digest"; then
      continue
    fi
    out=$(ctr images import --label io.cri-containerd.pinned=pinned "$a" 2>&1) ||
      die "importing $a failed: $out"
    say "loaded $ref into $NODE_NAME"
  done
}

# cmd_images: load every archive scripts/images.sh has built (pause, the service images, the
# development stack's).
cmd_images() {
  local archives
  # The names images.sh keeps pointing at the newest archive of each image (-xtype f: not
  # a link left dangling).
  mapfile -t archives < <(find "$("$ROOT/scripts/images.sh" path)" -maxdepth 1 -name '*.oci.tar' -type l -xtype f | sort)
  [ ${#archives[@]} -eq 0 ] || cmd_load "${archives[@]}"
}

# container_of NAMESPACE POD: the id of the pod's first running container.
container_of() {
  local id
  id=$(crictl ps --state running --label "io.kubernetes.pod.namespace=$1" \
    --label "io.kubernetes.pod.name=$2" -q 2>/dev/null | head -n1)
  [ -n "$id" ] || die "no running container of pod $1/$2 on $NODE_NAME"
  printf '%s\n' "$id"
}

# cmd_pid NAMESPACE POD: the host PID of the pod's container process (tests kill it).
cmd_pid() {
  local id
  id=$(container_of "$1" "$2") || exit 1
  crictl inspect "$id" | python3 -c 'import json, sys; print(json.load(sys.stdin)["info"]["pid"])'
}

# cmd_cgroup NAMESPACE POD: the cgroup path of the pod's container (under each hierarchy).
cmd_cgroup() {
  local id
  id=$(container_of "$1" "$2") || exit 1
  crictl inspect "$id" |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["info"]["runtimeSpec"]["linux"]["cgroupsPath"])'
}

# cmd_freeze NAMESPACE POD FROZEN|THAWED: stop or resume every process of the pod's container at
# once, through its cgroup's freezer (a dependency that hangs, as a stopped VM would).
cmd_freeze() {
  local path
  path=$(cmd_cgroup "$1" "$2") || exit 1
  [ -f "/sys/fs/cgroup/freezer$path/freezer.state" ] || die "no freezer cgroup $path"
  echo "$3" >"/sys/fs/cgroup/freezer$path/freezer.state"
}

cmd_up() {
  local start_s=$SECONDS port
  [ -f "$KUBECONFIG_ADMIN" ] || die "the control plane is not up (scripts/cluster.sh up)"
  port=$(apiserver_port)
  [ -n "$port" ] || die "no apiserver port in $KUBECONFIG_ADMIN"
  if running kubelet && running containerd && running kube-proxy && running coredns && node_ready; then
    say "node $NODE_NAME already Ready"
    return
  fi
  [ "$(id -u)" -eq 0 ] || die "a real node needs root (network namespaces, mounts, cgroups)"
  ensure_commands runc=runc iptables=iptables conntrack=conntrack nsenter=util-linux openssl=openssl
  "$ROOT/scripts/k8s-tools.sh" build node
  "$ROOT/scripts/images.sh" pause
  mkdir -p "$DIR/run" "$DIR/logs"
  network_up "$port"
  write_configs
  cgroups_up
  save_sysctls
  # Set beforehand what kubelet would set (it fails outright when it cannot).
  sysctl -qw vm.overcommit_memory=1 vm.panic_on_oom=0 kernel.panic=10 kernel.panic_on_oops=1 \
    kernel.keys.root_maxkeys=1000000 kernel.keys.root_maxbytes=25000000
  # cadvisor watches many files.
  sysctl -qw fs.inotify.max_user_instances=8192 fs.inotify.max_user_watches=524288

  start containerd "$BIN/containerd" --config "$DIR/etc/containerd.toml"
  wait_for 30 containerd crictl info
  cmd_images
  coredns_objects
  start kubelet "$BIN/kubelet" --config "$DIR/etc/kubelet.yaml" \
    --kubeconfig "$DIR/etc/kubelet.kubeconfig" --hostname-override "$NODE_NAME" \
    --node-ip "$NODE_IP" --root-dir "$DIR/kubelet" --cert-dir "$DIR/pki/kubelet" \
    --node-labels "orders.dev/node=real" --v=1
  start kube-proxy "$BIN/kube-proxy" --config "$DIR/etc/kube-proxy.yaml" --v=1
  start coredns "$BIN/coredns" -conf "$DIR/etc/Corefile"
  wait_for 120 "node $NODE_NAME" node_ready
  wait_for 30 CoreDNS in_netns curl -fsS http://127.0.0.1:18181/ready
  say "node $NODE_NAME Ready at $NODE_IP ($((SECONDS - start_s)) s); logs in $DIR/logs"
}

cmd_down() {
  if [ -S "$SOCK" ] && running containerd; then
    stop kubelet
    # Stop and remove every pod sandbox while containerd can still tear down their networks.
    crictl rmp --all --force >/dev/null 2>&1 || true
  fi
  local n
  for n in coredns kube-proxy kubelet containerd; do stop "$n"; done
  # Shims outlive containerd; so would containers a failed `rmp` left.
  pkill -9 -f "containerd-shim-runc-v2 .*-address $SOCK" 2>/dev/null || true
  cgroups_down
  # Mounts under our state (overlay snapshots, kubelet's volumes, sandbox /dev/shm), deepest first.
  local m
  for m in $(findmnt -rn -o TARGET | grep -F "$DIR/" | sort -r); do umount -l "$m" 2>/dev/null || true; done
  network_down
  restore_sysctls
  [ -f "$KUBECONFIG_ADMIN" ] && kubectl delete node "$NODE_NAME" --ignore-not-found --wait=false >/dev/null 2>&1 || true
  rm -rf -- "$DIR"
}

cmd_status() {
  running kubelet && node_ready || {
    echo "node $NODE_NAME is not Ready" >&2
    return 1
  }
  kubectl get node "$NODE_NAME" -o wide
}

case "${1:-}" in
  up) cmd_up ;;
  down) cmd_down ;;
  status) cmd_status ;;
  load) shift && cmd_load "$@" ;;
  images) cmd_images ;;
  pid) shift && cmd_pid "$@" ;;
  cgroup) shift && cmd_cgroup "$@" ;;
  freeze) shift && cmd_freeze "$1" "$2" FROZEN ;;
  thaw) shift && cmd_freeze "$1" "$2" THAWED ;;
  addresses) printf 'NODE_HOST_IP=%s\nNODE_IP=%s\nNODE_SERVICE_CIDR=%s\n' "$HOST_IP" "$NODE_IP" "$SERVICE_CIDR" ;;
  *)
    echo "usage: $0 up|down|status|load ARCHIVE...|images|pid NS POD|cgroup NS POD|freeze NS POD|thaw NS POD|addresses" >&2
    exit 2
    ;;
esac
