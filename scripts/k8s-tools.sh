#!/usr/bin/env bash
# Local Kubernetes binaries, built with `go build` from the Go modules pinned in
# tools/{k8s,etcd,kwok,helm,containerd,cni,crictl,coredns}/go.mod (resolved through the Go module proxy;
# no source is vendored).
#
#   scripts/k8s-tools.sh build [NAME…]   build the control plane: kube-apiserver,
#                                kube-controller-manager, kube-scheduler, kubectl, etcd, kwok,
#                                kwokctl and helm (or only the NAMEs) into the cache, skipping
#                                up-to-date ones; `build node` builds what a real node runs:
#                                kubelet, kube-proxy, containerd (with its runc shim and ctr),
#                                the CNI plugins bridge, host-local, loopback and portmap, crictl,
#                                and CoreDNS (the node's cluster DNS)
#   scripts/k8s-tools.sh path    print the bin dir
#   scripts/k8s-tools.sh check   run each binary's --version and compare with the pins
#
# Cache: ${XDG_CACHE_HOME:-$HOME/.cache}/order-platform/k8s-v<K8S_VERSION>/ with one stamp per
# binary under .stamps/ (hash of the module's go.mod + go.sum, the package and the build flags),
# so bumping a pin rebuilds only what changed. GOMODCACHE and GOCACHE stay at go's defaults.
# Cold (empty GOMODCACHE and GOCACHE) on 2 cores: ~7-11 min, ~1.4 GB of modules, ~4 GB of
# GOCACHE, peak RSS ~1.9 GB; kube-apiserver is about half of it. A no-op run takes ~0.1 s.
set -euo pipefail

ROOT=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd)
TOOLS="$ROOT/tools"

say() { printf '==> %s\n' "$*" >&2; }
die() {
  printf 'k8s-tools: %s\n' "$*" >&2
  exit 1
}

# mod_version DIR MODULE: the version of MODULE required by tools/DIR/go.mod.
mod_version() {
  local v
  v=$(awk -v m="$2" '
    /^replace/ || /=>/ { next }
    { for (i = 1; i < NF; i++) if ($i == m && $(i + 1) ~ /^v[0-9]/) { print $(i + 1); exit } }
  ' "$TOOLS/$1/go.mod")
  [ -n "$v" ] || die "no version of $2 in tools/$1/go.mod"
  printf '%s\n' "$v"
}

K8S_VERSION=$(mod_version k8s k8s.io/kubernetes) # e.g. v1.34.10
K8S_MINOR=$(printf '%s\n' "$K8S_VERSION" | cut -d. -f2)
BIN="${XDG_CACHE_HOME:-$HOME/.cache}/order-platform/k8s-$K8S_VERSION"

# ensure_go: go on PATH (or /usr/local/go/bin), at least the newest `go` directive of tools/*/go.mod.
ensure_go() {
  if ! command -v go >/dev/null 2>&1 && [ -x /usr/local/go/bin/go ]; then
    export PATH="/usr/local/go/bin:$PATH"
  fi
  command -v go >/dev/null 2>&1 ||
    die "go not found: install Go >= $(go_required) (https://go.dev/dl/) and put it on PATH"
  local have need
  have=$(go env GOVERSION | sed -e 's/^go//' -e 's/[^0-9.].*//')
  need=$(go_required)
  if [ "$(printf '%s\n%s\n' "$need" "$have" | sort -V | head -n1)" != "$need" ]; then
    die "go $have is too old: tools/*/go.mod need go >= $need (https://go.dev/dl/)"
  fi
  # Use exactly this toolchain (no silent toolchain download), cgo off for static binaries.
  export GOTOOLCHAIN=local CGO_ENABLED=0
}
go_required() {
  local d
  for d in k8s etcd kwok helm containerd cni crictl coredns; do awk '$1 == "go" && NF == 2 { print $2 }' "$TOOLS/$d/go.mod"; done |
    sort -V | tail -n1
}

# The binaries: name, module dir under tools/, package, extra -ldflags.
declare -a NAMES=(kube-apiserver kube-controller-manager kube-scheduler kubectl etcd kwok kwokctl helm)
declare -a NODE_NAMES=(kubelet kube-proxy containerd containerd-shim-runc-v2 ctr bridge host-local
  loopback portmap crictl coredns)
declare -A DIR PKG LDFLAGS TAGS
k8s_ld="-X k8s.io/component-base/version.gitVersion=$K8S_VERSION"
k8s_ld+=" -X k8s.io/component-base/version.gitMajor=1"
k8s_ld+=" -X k8s.io/component-base/version.gitMinor=$K8S_MINOR"
k8s_ld+=" -X k8s.io/component-base/version.gitTreeState=clean"
k8s_ld+=" -X k8s.io/client-go/pkg/version.gitVersion=$K8S_VERSION"
k8s_ld+=" -X k8s.io/client-go/pkg/version.gitMajor=1"
k8s_ld+=" -X k8s.io/client-go/pkg/version.gitMinor=$K8S_MINOR"
k8s_ld+=" -X k8s.io/client-go/pkg/version.gitTreeState=clean"
# kubectl too: the machine's kubectl (if any) may be years older than the apiserver.
for n in kube-apiserver kube-controller-manager kube-scheduler kubectl kubelet kube-proxy; do
  DIR[$n]=k8s PKG[$n]=k8s.io/kubernetes/cmd/$n LDFLAGS[$n]=$k8s_ld
done
# containerd as kind builds it: no btrfs, devmapper or zfs snapshotters (they need cgo).
containerd_v=$(mod_version containerd github.com/containerd/containerd/v2)
for n in containerd containerd-shim-runc-v2 ctr; do
  DIR[$n]=containerd PKG[$n]=github.com/containerd/containerd/v2/cmd/$n TAGS[$n]="no_btrfs no_devmapper no_zfs"
  LDFLAGS[$n]="-X github.com/containerd/containerd/v2/version.Version=$containerd_v"
done
cni_v=$(mod_version cni github.com/containernetworking/plugins)
for n in bridge loopback; do DIR[$n]=cni PKG[$n]=github.com/containernetworking/plugins/plugins/main/$n; done
DIR[host-local]=cni PKG[host-local]=github.com/containernetworking/plugins/plugins/ipam/host-local
DIR[portmap]=cni PKG[portmap]=github.com/containernetworking/plugins/plugins/meta/portmap
for n in bridge loopback host-local portmap; do
  LDFLAGS[$n]="-X github.com/containernetworking/plugins/pkg/utils/buildversion.BuildVersion=$cni_v"
done
DIR[crictl]=crictl PKG[crictl]=sigs.k8s.io/cri-tools/cmd/crictl
LDFLAGS[crictl]="-X sigs.k8s.io/cri-tools/pkg/version.Version=$(mod_version crictl sigs.k8s.io/cri-tools)"
# CoreDNS with its default plugin set (core/plugin/zplugin.go), version stamped like its Makefile.
DIR[coredns]=coredns PKG[coredns]=github.com/coredns/coredns
LDFLAGS[coredns]="-X github.com/coredns/coredns/coremain.GitCommit=$(mod_version coredns github.com/coredns/coredns)"
DIR[etcd]=etcd PKG[etcd]=go.etcd.io/etcd/server/v3 LDFLAGS[etcd]=""
# kwok's release build stamps its default Kubernetes version; point it at the pinned one so
# kwokctl's defaults (feature gates, runtime config) match the binaries built here.
kwok_ld="-X sigs.k8s.io/kwok/pkg/consts.KubeVersion=${K8S_VERSION#v}"
DIR[kwok]=kwok PKG[kwok]=sigs.k8s.io/kwok/cmd/kwok LDFLAGS[kwok]=$kwok_ld
DIR[kwokctl]=kwok PKG[kwokctl]=sigs.k8s.io/kwok/cmd/kwokctl LDFLAGS[kwokctl]=$kwok_ld
# helm's Makefile flags: its version, and the Kubernetes version `helm template`/`lint` assume
# without a cluster (default v1.20 otherwise).
helm_ld="-X helm.sh/helm/v3/internal/version.version=$(mod_version helm helm.sh/helm/v3)"
helm_ld+=" -X helm.sh/helm/v3/internal/version.gitTreeState=clean"
for p in pkg/chartutil pkg/lint/rules; do
  helm_ld+=" -X helm.sh/helm/v3/$p.k8sVersionMajor=1 -X helm.sh/helm/v3/$p.k8sVersionMinor=$K8S_MINOR"
done
DIR[helm]=helm PKG[helm]=helm.sh/helm/v3/cmd/helm LDFLAGS[helm]=$helm_ld

GO_BUILD_FLAGS=(-trimpath -mod=readonly)

# stamp_of NAME: hash of everything that determines the binary.
stamp_of() {
  local n=$1 d="$TOOLS/${DIR[$1]}"
  {
    cat "$d/go.mod" "$d/go.sum"
    printf 'pkg=%s\nflags=%s\nldflags=%s\ntags=%s\ncgo=0\n' "${PKG[$n]}" "${GO_BUILD_FLAGS[*]}" \
      "-s -w ${LDFLAGS[$n]}" "${TAGS[$n]:-}"
  } | sha256sum | cut -d' ' -f1
}

build_one() {
  local n=$1 stamp want start tmp
  stamp="$BIN/.stamps/$n"
  want=$(stamp_of "$n")
  if [ -x "$BIN/$n" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
    say "$n: up to date (0 s)"
    return
  fi
  say "$n: building ${PKG[$n]} (tools/${DIR[$n]})"
  start=$SECONDS
  tmp="$BIN/.$n.tmp"
  rm -f "$tmp"
  (cd "$TOOLS/${DIR[$n]}" && go build "${GO_BUILD_FLAGS[@]}" -tags "${TAGS[$n]:-}" \
    -ldflags "-s -w ${LDFLAGS[$n]}" -o "$tmp" "${PKG[$n]}") ||
    die "building $n failed"
  mv -f "$tmp" "$BIN/$n"
  printf '%s\n' "$want" >"$stamp"
  say "$n: built in $((SECONDS - start)) s"
}

cmd_build() {
  ensure_go
  mkdir -p "$BIN/.stamps"
  # One build at a time per cache dir.
  exec 9>"$BIN/.lock"
  flock 9
  local start=$SECONDS n
  [ $# -gt 0 ] || set -- "${NAMES[@]}"
  [ "$*" != node ] || set -- "${NODE_NAMES[@]}"
  for n in "$@"; do [ -n "${PKG[$n]:-}" ] || die "unknown binary $n (one of: ${NAMES[*]} ${NODE_NAMES[*]})"; done
  for n in "$@"; do build_one "$n"; done
  say "all binaries in $BIN ($((SECONDS - start)) s)"
}

# expect NAME PATTERN ARGS...: run the binary and grep its output for PATTERN (fixed string).
expect() {
  local n=$1 pat=$2 out
  shift 2
  [ -x "$BIN/$n" ] || die "$n missing in $BIN: run scripts/k8s-tools.sh build"
  out=$("$BIN/$n" "$@" 2>&1) || die "$n $*: failed: $out"
  out=$(printf '%s\n' "$out" | head -n1)
  case "$out" in
    *"$pat"*) printf '%-24s %s\n' "$n" "$out" ;;
    *) die "$n $*: expected '$pat', got: $out" ;;
  esac
}

cmd_check() {
  local etcd_v kwok_v helm_v
  etcd_v=$(mod_version etcd go.etcd.io/etcd/server/v3)
  kwok_v=$(mod_version kwok sigs.k8s.io/kwok)
  helm_v=$(mod_version helm helm.sh/helm/v3)
  for n in kube-apiserver kube-controller-manager kube-scheduler; do
    expect "$n" "Kubernetes $K8S_VERSION" --version
  done
  expect kubectl "Client Version: $K8S_VERSION" version --client
  expect etcd "etcd Version: ${etcd_v#v}" --version
  expect kwok "${kwok_v#v}" --version
  expect kwokctl "${kwok_v#v}" --version
  expect helm "$helm_v" version --short
  # The real node's binaries, when built (scripts/k8s-tools.sh build node).
  if [ -x "$BIN/kubelet" ]; then
    expect kubelet "Kubernetes $K8S_VERSION" --version
    expect kube-proxy "Kubernetes $K8S_VERSION" --version
    expect containerd "$containerd_v" --version
    expect ctr "$containerd_v" --version
    expect crictl "$(mod_version crictl sigs.k8s.io/cri-tools)" --version
    expect coredns "CoreDNS-$(mod_version coredns github.com/coredns/coredns | tr -d v)" -version
  fi
  # helm's default Kubernetes version (no cluster), set by the ldflags above.
  local chart kv
  chart=$(mktemp -d)
  printf 'apiVersion: v2\nname: kv\nversion: 0.1.0\n' >"$chart/Chart.yaml"
  mkdir "$chart/templates"
  printf 'kv: {{ .Capabilities.KubeVersion.Version }}\n' >"$chart/templates/kv.yaml"
  kv=$("$BIN/helm" template "$chart" 2>&1 | awk '$1 == "kv:" { print $2 }') || true
  rm -rf "$chart"
  [ "$kv" = "v1.$K8S_MINOR.0" ] || die "helm template: default kube version '$kv', expected v1.$K8S_MINOR.0"
  printf '%-24s %s\n' "helm (kube version)" "$kv"
}

case "${1:-}" in
  build) shift && cmd_build "$@" ;;
  path) printf '%s\n' "$BIN" ;;
  check) cmd_check ;;
  *)
    echo "usage: $0 build|path|check" >&2
    exit 2
    ;;
esac
