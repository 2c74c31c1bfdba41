#!/usr/bin/env bash
# OCI image archives built without Docker: order-service and order-operator (the release binaries
# on a distroless-like runtime assembled from Debian packages), the sandbox image, and the images
# of the chart's development stack; packed with umoci.
#
#   scripts/images.sh build [order-service|order-operator…]   build (default: both), print sizes
#   scripts/images.sh pause                                    the sandbox image a real node's
#                                                              containerd needs, from its source
#   scripts/images.sh dev [order-dev-postgres|order-dev-kafka|order-dev-moto…]
#                                                              the development stack's images
#                                                              (default: all three), print sizes
#   scripts/images.sh variants                                 order-service releases for the
#                                                              rollout tests (next, crashloop,
#                                                              badmigrate; see cmd_variants)
#   scripts/images.sh path                                     the directory of the archives
#
# The runtime is what gcr.io/distroless/cc-debian12 holds (GoogleContainerTools/distroless:
# static + base + cc) that the binaries use: base-files, netbase, tzdata, media-types, a CA
# bundle, libc6, and the packages owning every library `ldd` shows for the binaries (libssl3,
# libgcc-s1, zlib1g on Debian 12; found, not listed, so another distribution's names work too);
# passwd and group with root, nobody and nonroot (65532); no shell, no package manager. The image config matches the Dockerfile's
# runtime stages (user 65532:65532, entrypoint, cmd, exposed port); a test compares the two.
#
# The development stack's images (dev.enabled=true in the chart) are the same base with a shell
# (dash as /bin/sh) for their entrypoints (tools/dev-images/), run as nonroot too:
#   order-dev-postgres  PostgreSQL 15 (postgresql-15, postgresql-client-15; no LLVM JIT), initdb
#                       from POSTGRES_USER, POSTGRES_PASSWORD, POSTGRES_DB on first start
#   order-dev-kafka     openjdk-17-jre-headless and the Kafka jars of tools/kafka/pom.xml (the
#                       stack's), one KRaft broker+controller advertising KAFKA_ADVERTISED_ADDRESS
#   order-dev-moto      python3 and tools/moto/requirements.txt, `moto_server -H 0.0.0.0 -p 8000`
# Their packages are the ones named and, recursively, the libraries those depend on (found from
# apt's metadata, checked by running each ELF file's loader in the root filesystem).
#
# Cache: ${XDG_CACHE_HOME:-$HOME/.cache}/order-platform/images/: the unpacked runtime per package
# set and versions, and each archive keyed by a hash of its inputs (binary and runtime; package
# versions, jars, requirements and entrypoint files) and this script, so a warm run only hashes.
# Archives: <dir>/<name>.oci.tar (image localhost/<name>:<version>, the crates' version, which is
# the chart's appVersion; the pause image keeps upstream's tag).
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
  # ldd of several files heads each list with "FILE:"; only library paths count.
  for lib in $(ldd "$@" | awk '$3 ~ /^\// { print $3 } $1 ~ /^\// && $1 !~ /:$/ { print $1 }' | sort -u); do
    real=$(readlink -f "$lib")
    dpkg -S "*/$(basename "$real")" 2>/dev/null | head -n1 | cut -d: -f1 ||
      die "no package owns $real (needed by $*)"
  done | sort -u
}

# candidate_versions PACKAGE...: PACKAGE=VERSION for each package apt knows a version of.
candidate_versions() {
  apt-cache policy "$@" 2>/dev/null |
    awk '/^[^ ]/ { p = $1; sub(/:$/, "", p) } $1 == "Candidate:" && $2 != "(none)" { print p "=" $2 }'
}

# package_versions PACKAGE...: the exact versions this machine's apt would fetch (part of the
# cache keys), sorted.
package_versions() {
  local versions p
  versions=$(candidate_versions "$@")
  if [ "$(grep -c . <<<"$versions")" -ne $# ]; then
    # A fresh machine may have no package lists yet.
    say "apt knows no version of some of $*: apt-get update"
    apt-get update -q >&2 || die "apt-get update failed"
    versions=$(candidate_versions "$@")
  fi
  for p in "$@"; do grep -q "^$p=" <<<"$versions" || die "apt knows no version of $p"; done
  sort <<<"$versions"
}

# unpack_packages ROOTFS PACKAGE=VERSION...: those exact Debian packages, unpacked into ROOTFS
# (no maintainer scripts run).
unpack_packages() {
  local root=$1 debs deb
  shift
  debs=$(mktemp -d)
  on_exit "rm -rf -- $(printf '%q' "$debs")" # when a download fails
  # As root into a directory _apt cannot write: no sandbox user (else apt warns it runs unsandboxed).
  (cd "$debs" && apt-get download -q -o APT::Sandbox::User=root "$@" >&2) || die "apt-get download failed"
  for deb in "$debs"/*.deb; do dpkg-deb -x "$deb" "$root"; done
  rm -rf -- "$debs"
}

# distroless_files ROOTFS: what distroless adds around the packages (its common/ and base/
# rules), and the packages' docs and dpkg's leftovers gone.
distroless_files() {
  local root=$1
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
  # No package manager: drop maintainer scripts' leftovers and docs.
  rm -rf -- "$root/usr/share/doc" "$root/usr/share/man" "$root/usr/share/lintian" "$root/var/lib/dpkg"
}

# runtime: the unpacked distroless-like root filesystem; prints its directory.
runtime() {
  local versions key dir tmp
  versions=$(package_versions "${RUNTIME_PACKAGES[@]}")
  key=$(printf '%s\n' "$versions" | cat - "$0" | sha256sum | cut -c1-16)
  dir="$CACHE/runtime-$key"
  if [ -f "$dir/.complete" ]; then
    printf '%s\n' "$dir"
    return
  fi
  say "assembling the runtime from ${#RUNTIME_PACKAGES[@]} Debian packages into $dir"
  tmp="$dir.tmp"
  rm -rf -- "$tmp" && mkdir -p -- "$tmp/rootfs"
  # shellcheck disable=SC2086 # one PACKAGE=VERSION a word
  unpack_packages "$tmp/rootfs" $versions
  distroless_files "$tmp/rootfs"
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
  on_exit "rm -rf -- $(printf '%q %q' "$layout" "$bundle")" # when FILL fails
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
  # NAME-<16 hex>.oci.tar only: order-service's must not take order-service-next's with it.
  find "$CACHE" -maxdepth 1 -name "$1-????????????????.oci.tar" ! -name "$(basename "$2")" -delete
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

# ---- the development stack's images ---------------------------------------------------------

DEV_FILES=$ROOT/tools/dev-images
DEV_PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
PG_MAJOR=15 # the stack's (scripts/stack.sh: postgresql-15)
KAFKA_POM=$ROOT/tools/kafka/pom.xml
MOTO_REQUIREMENTS=$ROOT/tools/moto/requirements.txt
# The runtime's base, a shell for the entrypoints (and `kubectl exec`), and libc-bin for the
# C.UTF-8 locale (and `locale`, which initdb runs).
DEV_BASE_PACKAGES=("${BASE_PACKAGES[@]}" dash libc-bin)
DEV_VERSIONS=() # PACKAGE=VERSION of the image being built

# package_closure SKIP PACKAGE...: the packages and, recursively, the shared libraries they
# depend on (Depends and Pre-Depends, the first of alternatives): packages named lib* or in the
# libs section (zlib1g), but no Perl modules, and none whose name matches the regex SKIP. Other
# dependencies (debconf, adduser, perl, postgresql-common…) serve maintainer scripts, which
# never run in an image. One `apt-cache depends --recurse`; missing_libraries checks the result.
package_closure() {
  local skip=$1 graph
  shift
  graph=$(apt-cache depends --recurse --no-recommends --no-suggests --no-conflicts --no-breaks \
    --no-replaces --no-enhances "$@" 2>/dev/null) || die "apt-cache depends $* failed"
  # shellcheck disable=SC2046 # one package a word
  apt-cache show --no-all-versions $(awk '/^[^ <]/ && !/^lib/ { print $1 }' <<<"$graph" | sort -u) 2>/dev/null |
    awk '/^Package:/ { p = $2 } /^Section:/ { print p, $2 }' |
    awk -v roots="$*" -v skip="$skip" '
      FNR == NR { section[$1] = $2; next }
      /^[^ ]/ { pkg = $1; alt = 0; virtual = 0; next }
      /^ [ |](Pre)?Depends:/ {
        dep = $2; sub(/:any$/, "", dep)
        if (!alt) {
          if (dep ~ /^</) virtual = 1  # its first provider follows, indented
          else { deps[pkg] = deps[pkg] " " dep; virtual = 0 }
        } else virtual = 0
        alt = ($1 ~ /^\|/); next
      }
      /^    / { if (virtual) { deps[pkg] = deps[pkg] " " $1; virtual = 0 } next }
      END {
        n = split(roots, queue, " ")
        for (i = 1; i <= n; i++) seen[queue[i]] = 1
        for (i = 1; i <= n; i++) {
          m = split(deps[queue[i]], d, " ")
          for (j = 1; j <= m; j++) {
            p = d[j]
            if (p in seen || (p !~ /^lib/ && section[p] != "libs") || p ~ /-perl$/ || (skip != "" && p ~ skip)) continue
            seen[p] = 1; queue[++n] = p
          }
        }
        for (p in seen) print p
      }' - <(printf '%s\n' "$graph") | sort
}

# missing_libraries ROOTFS: each ELF file in ROOTFS whose shared libraries the loader of ROOTFS,
# run inside it (chroot), cannot find, with the first one missing. Libraries beside other
# libraries count as found (the JVM's are loaded after libjvm.so, by absolute path).
missing_libraries() {
  local root=$1 dirs file out
  dirs=$(find "$root" -name '*.so*' -printf '%h\n' | sed "s|^$root||" | sort -u | tr '\n' ':')
  find "$root" -type f \( -perm -u+x -o -name '*.so*' \) -print0 | while IFS= read -r -d '' file; do
    [ "$(head -c4 -- "$file" | od -An -tx1 | tr -d ' ')" = 7f454c46 ] || continue
    out=$(chroot "$root" /lib64/ld-linux-x86-64.so.2 --library-path "$dirs" --list "${file#"$root"}" 2>&1) ||
      printf '%s: %s\n' "${file#"$root"}" "${out##*: error while loading shared libraries: }"
  done
}

# dev_rootfs ROOTFS: the packages of DEV_VERSIONS with what the runtime adds around them
# (nonroot and its home, the CA bundle); no translations (the images speak C.UTF-8).
dev_rootfs() {
  unpack_packages "$1" "${DEV_VERSIONS[@]}"
  distroless_files "$1"
  rm -rf -- "$1/usr/share/locale"
}

# check_libraries ROOTFS: fail naming what package_closure missed.
check_libraries() {
  local missing
  missing=$(missing_libraries "$1")
  [ -z "$missing" ] || die "libraries missing from the image (a package for package_closure to follow?):
$missing"
}

# dev_image NAME KEY FILL CONFIG...: the archive of localhost/NAME:TAG for the cache key KEY (a
# hash of every input): packed by FILL (a root filesystem's directory last) with image config
# CONFIG unless the cache has it; prints its path and size.
dev_image() {
  local name=$1 key=$2 fill=$3 out
  shift 3
  out="$CACHE/$name-$key.oci.tar"
  if [ ! -f "$out" ]; then
    say "$name: assembling from ${#DEV_VERSIONS[@]} Debian packages, packing with umoci"
    pack "$name" "$TAG" "$out" "$fill" --config.user 65532:65532 "$@" \
      --config.label org.opencontainers.image.title="$name" \
      --config.label org.opencontainers.image.source=https://github.com/order-platform/order-platform \
      --config.label org.opencontainers.image.version="$TAG" \
      --history.created_by "scripts/images.sh dev"
  fi
  keep_newest "$name" "$out"
  say "$name: $out ($(du -h "$out" | cut -f1), localhost/$name:$TAG)"
}

# dev_key FILE...: the cache key of an image: a hash of DEV_VERSIONS, standard input (hashes of
# further inputs, or nothing), the FILEs and this script.
dev_key() {
  { printf '%s\n' "${DEV_VERSIONS[@]}"; cat - "$@" "$0"; } | sha256sum | cut -c1-16
}

dev_postgres() {
  local packages
  mapfile -t packages < <(package_closure '^libllvm' "${DEV_BASE_PACKAGES[@]}" \
    "postgresql-$PG_MAJOR" "postgresql-client-$PG_MAJOR")
  mapfile -t DEV_VERSIONS < <(package_versions "${packages[@]}")
  dev_image order-dev-postgres "$(dev_key "$DEV_FILES/postgres/entrypoint.sh" </dev/null)" fill_postgres \
    --config.entrypoint /usr/local/bin/entrypoint --config.workingdir /var/lib/postgresql \
    --config.env "PATH=/usr/lib/postgresql/$PG_MAJOR/bin:$DEV_PATH" \
    --config.env PGDATA=/var/lib/postgresql/data --config.env LANG=C.UTF-8 \
    --config.exposedports 5432/tcp --config.stopsignal SIGINT
}

fill_postgres() {
  local root=$1 lib=$1/usr/lib/postgresql/$PG_MAJOR/lib
  dev_rootfs "$root"
  # The JIT (llvmjit.so and its bitcode) needs libLLVM (about 100 MB), for queries a development
  # stack never runs; without the provider PostgreSQL runs with jit unavailable.
  rm -rf -- "$lib/bitcode" "$lib"/llvmjit*
  install -d -o 65532 -g 65532 -m 0700 "$root/var/lib/postgresql"
  # The unix socket's directory (Debian's default); the readiness probe's pg_isready uses it.
  install -d -o 65532 -g 65532 -m 2775 "$root/var/run/postgresql"
  install -D -m 0755 "$DEV_FILES/postgres/entrypoint.sh" "$root/usr/local/bin/entrypoint"
  check_libraries "$root"
}

# kafka_jars: the broker's classpath from tools/kafka/pom.xml in the directory scripts/stack.sh
# uses, stamped with the POM's checksum the same way (so the stack and the image share one
# download and one set of jars); prints the directory.
kafka_jars() {
  local version home want tmp
  version=$(sed -nE 's:^.*<kafka\.version>[[:space:]]*([^<[:space:]]+)[[:space:]]*</kafka\.version>.*$:\1:p' "$KAFKA_POM" | head -n1)
  [ -n "$version" ] || die "no <kafka.version> in $KAFKA_POM"
  home=${XDG_CACHE_HOME:-$HOME/.cache}/order-platform/kafka-$version
  want=$(sha256sum "$KAFKA_POM" | cut -d' ' -f1)
  if [ "$(cat "$home/lib.stamp" 2>/dev/null)" != "$want" ] || ! compgen -G "$home/lib/kafka_*.jar" >/dev/null; then
    ensure_commands mvn=maven
    say "fetching Kafka $version jars into $home/lib (mvn)"
    tmp="$home/lib.images.tmp"
    rm -rf -- "$tmp" && mkdir -p -- "$home"
    mvn -B -q -Dstyle.color=never -f "$KAFKA_POM" dependency:copy-dependencies -DincludeScope=runtime \
      "-DoutputDirectory=$tmp" >&2 || die "mvn dependency:copy-dependencies failed for $KAFKA_POM"
    compgen -G "$tmp/kafka_*.jar" >/dev/null || die "mvn put no kafka_*.jar in $tmp"
    rm -rf -- "$home/lib" && mv -- "$tmp" "$home/lib"
    echo "$want" >"$home/lib.stamp"
  fi
  printf '%s\n' "$home/lib"
}

dev_kafka() {
  local packages
  KAFKA_LIB=$(kafka_jars)
  mapfile -t packages < <(package_closure '' "${DEV_BASE_PACKAGES[@]}" openjdk-17-jre-headless)
  mapfile -t DEV_VERSIONS < <(package_versions "${packages[@]}")
  dev_image order-dev-kafka "$( (cd "$KAFKA_LIB" && sha256sum -- *.jar) | dev_key "$DEV_FILES"/kafka/*)" fill_kafka \
    --config.entrypoint /usr/local/bin/entrypoint --config.workingdir /var/lib/kafka \
    --config.env "PATH=$DEV_PATH" --config.env LANG=C.UTF-8 --config.exposedports 9092/tcp
}

fill_kafka() {
  local root=$1 java
  dev_rootfs "$root"
  # What update-alternatives (a maintainer script) would link.
  java=$(cd "$root" && compgen -G 'usr/lib/jvm/*/bin/java' | head -n1)
  [ -n "$java" ] || die "no usr/lib/jvm/*/bin/java in openjdk-17-jre-headless"
  ln -s "/$java" "$root/usr/bin/java"
  install -d "$root/opt/kafka/libs" "$root/opt/kafka/config"
  cp -- "$KAFKA_LIB"/*.jar "$root/opt/kafka/libs/"
  install -m 0644 "$DEV_FILES/kafka/log4j2.properties" "$DEV_FILES/kafka/log4j2-tools.properties" "$root/opt/kafka/config/"
  install -d -o 65532 -g 65532 -m 0755 "$root/var/lib/kafka"
  install -D -m 0755 "$DEV_FILES/kafka/entrypoint.sh" "$root/usr/local/bin/entrypoint"
  check_libraries "$root"
}

dev_moto() {
  local packages
  # python3's own version (python3.11 on Debian 12): its interpreter packages are named for it.
  PYTHON=$(apt-cache depends python3 2>/dev/null | awk '$1 == "Depends:" && $2 ~ /^python3\.[0-9]+$/ { print $2; exit }')
  [ -n "$PYTHON" ] || die "apt names no python3.X that python3 depends on"
  mapfile -t packages < <(package_closure '' "${DEV_BASE_PACKAGES[@]}" python3 python3-minimal "$PYTHON" "$PYTHON-minimal")
  mapfile -t DEV_VERSIONS < <(package_versions "${packages[@]}")
  dev_image order-dev-moto "$(dev_key "$MOTO_REQUIREMENTS" </dev/null)" fill_moto \
    --config.entrypoint /usr/local/bin/moto_server --config.entrypoint -H --config.entrypoint 0.0.0.0 \
    --config.entrypoint -p --config.entrypoint 8000 --config.workingdir /home/nonroot \
    --config.env "PATH=$DEV_PATH" --config.env LANG=C.UTF-8 --config.exposedports 8000/tcp
}

fill_moto() {
  local root=$1 version=${PYTHON#python} site glibc platforms i
  dev_rootfs "$root"
  site="$root/usr/local/lib/$PYTHON/dist-packages"
  # This machine's pip installs the pinned wheels for the image's interpreter and C library
  # (manylinux up to its glibc), not for its own; the image's Python compiles them below.
  glibc=$(printf '%s\n' "${DEV_VERSIONS[@]}" | sed -nE 's/^libc6=2\.([0-9]+).*/\1/p')
  [ -n "$glibc" ] || die "no libc6 version among the packages"
  # (manylinux2014 also brings the older manylinux tags.)
  platforms=(--platform "manylinux2014_$(uname -m)")
  for ((i = 17; i <= glibc; i++)); do platforms+=(--platform "manylinux_2_${i}_$(uname -m)"); done
  python3 -m pip --version >/dev/null 2>&1 || apt_packages python3-pip
  say "order-dev-moto: pip install -r $MOTO_REQUIREMENTS (wheels for $PYTHON, glibc 2.$glibc)"
  python3 -m pip install -q --no-input --disable-pip-version-check --root-user-action=ignore \
    --no-warn-conflicts --no-compile --only-binary=:all: --implementation cp \
    --python-version "$version" --abi "cp${version/./}" "${platforms[@]}" \
    --target "$site" -r "$MOTO_REQUIREMENTS" >&2 || die "pip install -r $MOTO_REQUIREMENTS failed"
  # pip's console scripts name this machine's interpreter: the one moto_server the image runs.
  rm -rf -- "$site/bin"
  mkdir -p -- "$root/usr/local/bin"
  printf '#!/usr/bin/%s\nimport sys\nfrom moto.server import main\nsys.exit(main())\n' "$PYTHON" >"$root/usr/local/bin/moto_server"
  chmod 0755 "$root/usr/local/bin/moto_server"
  # Byte code, which the image's user could not write: the standard library's (Debian compiles
  # it in a maintainer script) and the wheels'.
  env -i PATH="$DEV_PATH" chroot "$root" "/usr/bin/$PYTHON" -m compileall -q -x '/tests?/' \
    "/usr/lib/$PYTHON" "${site#"$root"}" >&2 || die "compiling the Python modules in the image failed"
  check_libraries "$root"
}

cmd_dev() {
  [ $# -gt 0 ] || set -- order-dev-postgres order-dev-kafka order-dev-moto
  local name
  for name in "$@"; do
    case $name in
      order-dev-postgres | order-dev-kafka | order-dev-moto) ;;
      *) die "unknown image $name (order-dev-postgres, order-dev-kafka, order-dev-moto)" ;;
    esac
  done
  TAG=$(cargo_version)
  ensure_commands umoci=umoci dpkg-deb=dpkg python3=python3
  mkdir -p -- "$CACHE"
  exec 8>"$CACHE/.lock"
  flock 8
  # package_closure needs apt's lists: package_versions updates them on a fresh machine.
  package_versions "${DEV_BASE_PACKAGES[@]}" >/dev/null
  for name in "$@"; do "dev_${name#order-dev-}"; done
}

# ---- releases for the rollout tests ---------------------------------------------------------

# Each is the order-service image with one change to its config (the layers stay shared), so the
# realnode suite can roll a new version, a crash-looping one and one whose migration fails
# without building another binary:
#   next        a label only: a new image (new digest) that works
#   crashloop   ORDER_SERVICE_BODY_LIMIT not a number: `serve` exits 2 at once (its own flag),
#               `migrate` ignores it, so the migration succeeds and the new pods never get ready
#   badmigrate  ORDER_SERVICE_DB_ACQUIRE_TIMEOUT not a duration: `migrate` (and `serve`) exit 2
declare -A VARIANT_ENV=(
  [next]=""
  [crashloop]="ORDER_SERVICE_BODY_LIMIT=not-a-number"
  [badmigrate]="ORDER_SERVICE_DB_ACQUIRE_TIMEOUT=not-a-duration"
)

# cmd_variants: localhost/order-service:<version>-<variant> for each variant, from the archive
# `build` made (run it first).
cmd_variants() {
  local base="$CACHE/order-service.oci.tar" tag variant key out layout flags
  [ -f "$base" ] || die "no order-service archive: run $0 build first"
  tag=$(cargo_version)
  for variant in "${!VARIANT_ENV[@]}"; do
    key=$( { sha256sum "$(readlink -f "$base")" | cut -d' ' -f1; echo "$variant=${VARIANT_ENV[$variant]}"; cat "$0"; } |
      sha256sum | cut -c1-16)
    out="$CACHE/order-service-$variant-$key.oci.tar"
    if [ ! -f "$out" ]; then
      layout=$(mktemp -d)
      on_exit "rm -rf -- $(printf '%q' "$layout")"
      tar -C "$layout" -xf "$base"
      # umoci addresses images by a bare tag; the archive names its image in full.
      name_archive "$layout/index.json" "$tag"
      flags=(--config.label "org.opencontainers.image.version=$tag-$variant")
      [ -z "${VARIANT_ENV[$variant]}" ] || flags+=(--config.env "${VARIANT_ENV[$variant]}")
      umoci config --image "$layout:$tag" --tag "$tag-$variant" "${flags[@]}" >&2
      umoci rm --image "$layout:$tag" >&2
      umoci gc --layout "$layout" >&2
      name_archive "$layout/index.json" "localhost/order-service:$tag-$variant"
      tar -C "$layout" -cf "$out.tmp" . && mv -f "$out.tmp" "$out"
      rm -rf -- "$layout"
    fi
    keep_newest "order-service-$variant" "$out"
    say "order-service-$variant: $out (localhost/order-service:$tag-$variant)"
  done
}

case "${1:-}" in
  build) shift && cmd_build "$@" ;;
  variants) cmd_variants ;;
  pause) cmd_pause ;;
  dev) shift && cmd_dev "$@" ;;
  path) printf '%s\n' "$CACHE" ;;
  *)
    echo "usage: $0 build [order-service|order-operator…] | pause | dev [order-dev-postgres|order-dev-kafka|order-dev-moto…] | variants | path" >&2
    exit 2
    ;;
esac
