#!/usr/bin/env bash
# OCI image archives of order-service and order-operator, built without Docker: the release
# binaries on a distroless-like runtime assembled from Debian packages, packed with umoci.
#
#   scripts/images.sh build [order-service|order-operator…]   build (default: both), print sizes
#   scripts/images.sh pause                                    the sandbox image a real node's
#                                                              containerd needs, from its source
#   scripts/images.sh path                                     the directory of the archives
#
# The runtime is what gcr.io/distroless/cc-debian12 holds (GoogleContainerTools/distroless:
# static + base + cc) that the binaries use: base-files, netbase, tzdata, media-types, a CA
# bundle, libc6, and the packages owning every library `ldd` shows for the binaries (libssl3,
# libgcc-s1, zlib1g on Debian 12; found, not listed, so another distribution's names work too);
# passwd and group with root, nobody and nonroot (65532); no shell, no package manager. The image config matches the Dockerfile's
# runtime stages (user 65532:65532, entrypoint, cmd, exposed port); a test compares the two.
#
# Cache: ${XDG_CACHE_HOME:-$HOME/.cache}/order-platform/images/: the unpacked runtime per package
# set and versions, and each archive keyed by a hash of its binary, the runtime and this script,
# so a warm run only hashes. Archives: <dir>/<name>.oci.tar (image localhost/<name>:<version>,
# the crates' version, which is the chart's appVersion).
set -euo pipefail
. "$(dirname -- "${BASH_SOURCE[0]}")/common.sh"
cd "$ROOT"

die() {
  printf 'images: %s\n' "$*" >&2
  exit 1
}

CACHE="${XDG_CACHE_HOME:-$HOME/.cache}/order-platform/images"
BASE_PACKAGES=(base-files netbase tzdata media-types ca-certificates libc6)
RUNTIME_PACKAGES=()
declare -A PORT=([order-service]=8080 [order-operator]=8081)
declare -A CMD=([order-service]=serve [order-operator]=run)

# library_packages BINARY...: the Debian packages owning the shared libraries the binaries load.
library_packages() {
  local lib real
  for lib in $(ldd "$@" | awk '$3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }' | sort -u); do
    real=$(readlink -f "$lib")
    dpkg -S "*/$(basename "$real")" 2>/dev/null | head -n1 | cut -d: -f1 ||
      die "no package owns $real (needed by $*)"
  done | sort -u
}

# The exact package versions this machine's apt would fetch: part of the runtime's cache key.
package_versions() {
  local p v updated=
  for p in "${RUNTIME_PACKAGES[@]}"; do
    v=$(apt-cache policy "$p" 2>/dev/null | awk '$1 == "Candidate:" { print $2 }')
    if { [ -z "$v" ] || [ "$v" = "(none)" ]; } && [ -z "$updated" ]; then
      # A fresh machine may have no package lists yet.
      say "apt knows no version of $p: apt-get update"
      apt-get update -q >&2 || die "apt-get update failed"
      updated=1
      v=$(apt-cache policy "$p" 2>/dev/null | awk '$1 == "Candidate:" { print $2 }')
    fi
    [ -n "$v" ] && [ "$v" != "(none)" ] || die "apt knows no version of $p"
    printf '%s=%s\n' "$p" "$v"
  done
}

# runtime: the unpacked distroless-like root filesystem; prints its directory.
runtime() {
  local versions key dir tmp
  versions=$(package_versions)
  key=$(printf '%s\n' "$versions" | cat - "$0" | sha256sum | cut -c1-16)
  dir="$CACHE/runtime-$key"
  if [ -f "$dir/.complete" ]; then
    printf '%s\n' "$dir"
    return
  fi
  say "assembling the runtime from ${#RUNTIME_PACKAGES[@]} Debian packages into $dir"
  tmp="$dir.tmp"
  rm -rf -- "$tmp" && mkdir -p -- "$tmp/debs" "$tmp/rootfs"
  # As root into a cache _apt cannot write: no sandbox user (else apt warns it runs unsandboxed).
  (cd "$tmp/debs" && apt-get download -q -o APT::Sandbox::User=root $versions >&2) ||
    die "apt-get download failed"
  local deb
  for deb in "$tmp"/debs/*.deb; do dpkg-deb -x "$deb" "$tmp/rootfs"; done
  rm -rf -- "$tmp/debs"
  local root=$tmp/rootfs
  # What distroless adds around the packages (its common/ and base/ rules).
  printf 'root:x:0:0:root:/root:/sbin/nologin\nnobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n' >"$root/etc/passwd"
  printf 'root:x:0:\nnobody:x:65534:\ntty:x:5:\nstaff:x:50:\nnonroot:x:65532:\n' >"$root/etc/group"
  printf 'hosts: files dns\n' >"$root/etc/nsswitch.conf"
  mkdir -p "$root/tmp" "$root/home/nonroot" "$root/root" "$root/etc/ssl/certs"
  chmod 1777 "$root/tmp"
  chmod 700 "$root/home/nonroot" "$root/root"
  chown 65532:65532 "$root/home/nonroot"
  # The ca-certificates package ships separate certificates; update-ca-certificates (not run
  # here) would make the bundle every TLS client looks for.
  cat "$root"/usr/share/ca-certificates/mozilla/*.crt >"$root/etc/ssl/certs/ca-certificates.crt"
  # No shell and no package manager: drop maintainer scripts' leftovers and docs.
  rm -rf -- "$root/usr/share/doc" "$root/usr/share/man" "$root/usr/share/lintian" "$root/var/lib/dpkg"
  mv -- "$tmp" "$dir"
  touch "$dir/.complete"
  # One runtime in the cache: the one the current package versions make.
  find "$CACHE" -maxdepth 1 -name 'runtime-*' ! -name "$(basename "$dir")" -exec rm -rf {} +
  printf '%s\n' "$dir"
}

# pack NAME TAG OUT FILL [CONFIG…]: an OCI archive at OUT of one layer that the command FILL
# writes (called with the root filesystem's directory last), image config CONFIG (umoci config
# flags), named localhost/NAME:TAG.
pack() {
  local name=$1 tag=$2 out=$3 fill=$4 layout bundle
  shift 4
  layout=$(mktemp -d) bundle=$(mktemp -d)
  umoci init --layout "$layout/oci" >&2
  umoci new --image "$layout/oci:$tag" >&2
  umoci unpack --image "$layout/oci:$tag" "$bundle/b" >&2
  $fill "$bundle/b/rootfs"
  umoci repack --image "$layout/oci:$tag" "$bundle/b" >&2
  umoci config --image "$layout/oci:$tag" "$@" >&2
  umoci gc --layout "$layout/oci" >&2
  name_archive "$layout/oci/index.json" "localhost/$name:$tag"
  tar -C "$layout/oci" -cf "$out.tmp" . && mv -f "$out.tmp" "$out"
  rm -rf -- "$layout" "$bundle"
}

# keep_newest NAME OUT: <dir>/NAME.oci.tar points at OUT, the cache's only archive of NAME
# (older keys are never used again).
keep_newest() {
  ln -sfn "$(basename "$2")" "$CACHE/$1.oci.tar"
  find "$CACHE" -maxdepth 1 -name "$1-*.oci.tar" ! -name "$(basename "$2")" -delete
}

# fill_service RUNTIME BIN NAME ROOTFS: the runtime and the binary.
fill_service() {
  cp -a "$1/rootfs/." "$4/"
  install -D -m 0755 "$2" "$4/usr/local/bin/$3"
}

# build_one NAME RUNTIME: the OCI archive of NAME; prints its path.
build_one() {
  local name=$1 runtime=$2 bin key out
  bin="$CARGO_TARGET_DIR/release/$name"
  [ -x "$bin" ] || die "$bin missing"
  key=$( { sha256sum "$bin" | cut -d' ' -f1; basename "$runtime"; cat "$0"; } | sha256sum | cut -c1-16)
  out="$CACHE/$name-$key.oci.tar"
  if [ ! -f "$out" ]; then
    say "$name: packing with umoci"
    pack "$name" "$TAG" "$out" "fill_service $runtime $bin $name" \
      --config.user 65532:65532 --config.workingdir /home/nonroot \
      --config.entrypoint "/usr/local/bin/$name" --config.cmd "${CMD[$name]}" \
      --config.exposedports "${PORT[$name]}/tcp" \
      --config.env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
      --config.env SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt \
      --config.label org.opencontainers.image.title="$name" \
      --config.label org.opencontainers.image.source=https://github.com/order-platform/order-platform \
      --config.label org.opencontainers.image.version="$(cargo_version)" \
      --config.label org.opencontainers.image.revision="$(git -C "$ROOT" rev-parse HEAD 2>/dev/null || echo unknown)" \
      --history.created_by "scripts/images.sh"
  fi
  keep_newest "$name" "$out"
  printf '%s\n' "$out"
}

cargo_version() {
  awk -F'"' '/^version *=/ { print $2; exit }' "$ROOT/order-service/Cargo.toml"
}

# cmd_pause: the pause (sandbox) image, compiled from build/pause/linux/pause.c of the pinned
# k8s.io/kubernetes module and packed like upstream's (FROM scratch, /pause, user 65535).
cmd_pause() {
  ensure_commands gcc=gcc umoci=umoci
  local k8s version src key out bin
  k8s=$(awk '$1 == "k8s.io/kubernetes" && $2 ~ /^v/ { print $2; exit }' "$ROOT/tools/k8s/go.mod")
  [ -n "$k8s" ] || die "no k8s.io/kubernetes version in tools/k8s/go.mod"
  src=$(cd "$ROOT/tools/k8s" && GOTOOLCHAIN=local GOFLAGS=-mod=mod go mod download -json "k8s.io/kubernetes@$k8s" |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["Dir"])')/build/pause
  [ -f "$src/linux/pause.c" ] || die "pause.c missing under $src"
  version=$(awk '$1 == "TAG" && $2 == "?=" { print $3; exit }' "$src/Makefile")
  mkdir -p -- "$CACHE"
  key=$( { cat "$src/linux/pause.c"; echo "$version"; cat "$0"; gcc --version | head -n1; } | sha256sum | cut -c1-16)
  out="$CACHE/pause-$key.oci.tar"
  if [ ! -f "$out" ]; then
    say "pause $version: compiling $src/linux/pause.c (static)"
    bin=$(mktemp -d)/pause
    gcc -Os -Wall -Werror -static -DVERSION="v$version" -o "$bin" "$src/linux/pause.c" >&2
    pack pause "$version" "$out" "install -m 0755 $bin" --config.user 65535:65535 \
      --config.entrypoint /pause --history.created_by "scripts/images.sh pause"
    rm -rf -- "$(dirname "$bin")"
  fi
  keep_newest pause "$out"
  say "pause: $out ($(du -h "$out" | cut -f1), localhost/pause:$version)"
}

# name_archive INDEX REF: the name `ctr images import` gives the image (a bare tag would get
# docker.io/ in front).
name_archive() {
  python3 - "$1" "$2" <<'PY'
import json, sys
path, ref = sys.argv[1], sys.argv[2]
index = json.load(open(path))
for m in index["manifests"]:
    m.setdefault("annotations", {})["org.opencontainers.image.ref.name"] = ref
json.dump(index, open(path, "w"))
PY
}

cmd_build() {
  [ $# -gt 0 ] || set -- order-service order-operator
  # The crate version, which the chart's appVersion follows (a test checks): the chart's default
  # images are localhost/<name>:<appVersion>.
  TAG=$(cargo_version)
  local name
  for name in "$@"; do [ -n "${PORT[$name]:-}" ] || die "unknown image $name (order-service, order-operator)"; done
  ensure_commands umoci=umoci dpkg-deb=dpkg
  ensure_rust
  mkdir -p -- "$CACHE"
  exec 8>"$CACHE/.lock"
  flock 8
  local packages=()
  for name in "$@"; do packages+=(-p "$name"); done
  say "cargo build --release ${packages[*]}"
  cargo build --release --locked "${packages[@]}" >&2
  local bins=() rt out
  for name in "$@"; do bins+=("$CARGO_TARGET_DIR/release/$name"); done
  mapfile -t RUNTIME_PACKAGES < <({ printf '%s\n' "${BASE_PACKAGES[@]}"; library_packages "${bins[@]}"; } | sort -u)
  say "runtime packages: ${RUNTIME_PACKAGES[*]}"
  rt=$(runtime)
  for name in "$@"; do
    out=$(build_one "$name" "$rt")
    say "$name: $out ($(du -h "$out" | cut -f1), localhost/$name:$TAG)"
  done
}

case "${1:-}" in
  build) shift && cmd_build "$@" ;;
  pause) cmd_pause ;;
  path) printf '%s\n' "$CACHE" ;;
  *)
    echo "usage: $0 build [order-service|order-operator…] | pause | path" >&2
    exit 2
    ;;
esac
