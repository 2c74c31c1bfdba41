#!/usr/bin/env bash
# Dex, the OpenID Connect provider the order-service auth tests get real tokens from
# (order-service/tests/api/auth.rs), built with `go build` from the Go module pinned in
# tools/dex/go.mod (resolved through the Go module proxy; no source is vendored).
#
# `go install github.com/dexidp/dex/cmd/dex@v2.x` cannot work: the module path has no /v2, so
# the v2 tags are not module versions, and Dex's go.mod has a replace directive that
# `go install` refuses. A tools module does: `go get -tool github.com/dexidp/dex/cmd/dex@<the
# tag's pseudo-version>`, where Dex's replace is ignored and its api/v2 comes from the proxy.
#
#   scripts/dex.sh build   build the binary into the cache if it is missing or stale
#   scripts/dex.sh path    print the binary's path (building it first)
#
# Cache: ${XDG_CACHE_HOME:-$HOME/.cache}/order-platform/dex-<version>-<hash>/dex, the hash
# taken over tools/dex/go.mod, go.sum and the build flags. cgo is off: with memory storage
# nothing needs sqlite (Dex builds a stub for it without cgo).
set -euo pipefail
. "$(dirname -- "${BASH_SOURCE[0]}")/common.sh"

MODULE_DIR="$ROOT/tools/dex"
PKG=github.com/dexidp/dex/cmd/dex
# The tag the pinned pseudo-version is (the proxy has no v2.x module versions to name it by).
DEX_TAG=v2.45.1

die() {
  printf 'dex: %s\n' "$*" >&2
  exit 1
}

ensure_go() {
  if ! command -v go >/dev/null 2>&1 && [ -x /usr/local/go/bin/go ]; then
    export PATH="/usr/local/go/bin:$PATH"
  fi
  command -v go >/dev/null 2>&1 || die "go not found: install Go (https://go.dev/dl/) and put it on PATH"
  local have need
  have=$(go env GOVERSION | sed -e 's/^go//' -e 's/[^0-9.].*//')
  need=$(awk '$1 == "go" && NF == 2 { print $2 }' "$MODULE_DIR/go.mod")
  if [ "$(printf '%s\n%s\n' "$need" "$have" | sort -V | head -n1)" != "$need" ]; then
    die "go $have is too old: tools/dex/go.mod needs go >= $need (https://go.dev/dl/)"
  fi
  export GOTOOLCHAIN=local CGO_ENABLED=0
}

GO_BUILD_FLAGS=(-trimpath -mod=readonly)
LDFLAGS="-s -w -X main.version=$DEX_TAG"
HASH=$({
  cat "$MODULE_DIR/go.mod" "$MODULE_DIR/go.sum"
  printf 'pkg=%s\nflags=%s\nldflags=%s\ncgo=0\n' "$PKG" "${GO_BUILD_FLAGS[*]}" "$LDFLAGS"
} | sha256sum | cut -c1-16)
DIR="${XDG_CACHE_HOME:-$HOME/.cache}/order-platform/dex-$DEX_TAG-$HASH"
BIN="$DIR/dex"

build() {
  [ -x "$BIN" ] && return 0
  ensure_go
  mkdir -p "$DIR"
  exec 9>"$DIR/.lock"
  flock 9
  [ -x "$BIN" ] && return 0
  say "dex $DEX_TAG: building $PKG (tools/dex) into $DIR"
  local start=$SECONDS tmp="$DIR/.dex.tmp"
  rm -f "$tmp"
  (cd "$MODULE_DIR" && go build "${GO_BUILD_FLAGS[@]}" -ldflags "$LDFLAGS" -o "$tmp" "$PKG") ||
    die "building dex failed"
  mv -f "$tmp" "$BIN"
  say "dex: built in $((SECONDS - start)) s"
}

case "${1:-}" in
  build) build ;;
  path) build && printf '%s\n' "$BIN" ;;
  *)
    echo "usage: $0 build|path" >&2
    exit 2
    ;;
esac
