#!/usr/bin/env bash
# promtool, which runs the unit tests of the chart's alerting rules
# (charts/order-platform/files/prometheus-rules.yaml against
# charts/order-platform/tests/prometheus-rules.test.yaml; operator/tests/rules.rs), built with
# `go build` from the Prometheus Go module pinned in tools/promtool/go.mod (resolved through the
# Go module proxy; no source is vendored). The module's v0.3xx.y versions are Prometheus 3.x
# releases (v0.316.0 is Prometheus 3.16.0).
#
#   scripts/promtool.sh build   build the binary into the cache if it is missing or stale
#   scripts/promtool.sh path    print the binary's path (building it first)
#
# Cache: ${XDG_CACHE_HOME:-$HOME/.cache}/order-platform/promtool-<version>-<hash>/promtool, the
# hash taken over tools/promtool/go.mod, go.sum and the build flags. cgo is off.
set -euo pipefail
. "$(dirname -- "${BASH_SOURCE[0]}")/common.sh"

MODULE_DIR="$ROOT/tools/promtool"
PKG=github.com/prometheus/prometheus/cmd/promtool
VERSION=$(awk '$1 == "github.com/prometheus/prometheus" { print $2 }' "$MODULE_DIR/go.mod")

die() {
  printf 'promtool: %s\n' "$*" >&2
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
    die "go $have is too old: tools/promtool/go.mod needs go >= $need (https://go.dev/dl/)"
  fi
  export GOTOOLCHAIN=local CGO_ENABLED=0
}

[ -n "$VERSION" ] || die "tools/promtool/go.mod does not require github.com/prometheus/prometheus"
GO_BUILD_FLAGS=(-trimpath -mod=readonly)
# promtool --version prints what these set (Prometheus' own release builds set them the same way).
LDFLAGS="-s -w -X github.com/prometheus/common/version.Version=$VERSION -X github.com/prometheus/common/version.Branch=HEAD"
HASH=$({
  cat "$MODULE_DIR/go.mod" "$MODULE_DIR/go.sum"
  printf 'pkg=%s\nflags=%s\nldflags=%s\ncgo=0\n' "$PKG" "${GO_BUILD_FLAGS[*]}" "$LDFLAGS"
} | sha256sum | cut -c1-16)
DIR="${XDG_CACHE_HOME:-$HOME/.cache}/order-platform/promtool-$VERSION-$HASH"
BIN="$DIR/promtool"

build() {
  [ -x "$BIN" ] && return 0
  ensure_go
  mkdir -p "$DIR"
  exec 9>"$DIR/.lock"
  flock 9
  [ -x "$BIN" ] && return 0
  say "promtool $VERSION: building $PKG (tools/promtool) into $DIR"
  local start=$SECONDS tmp="$DIR/.promtool.tmp"
  rm -f "$tmp"
  (cd "$MODULE_DIR" && nice -n 10 go build "${GO_BUILD_FLAGS[@]}" -ldflags "$LDFLAGS" -o "$tmp" "$PKG") ||
    die "building promtool failed"
  mv -f "$tmp" "$BIN"
  say "promtool: built in $((SECONDS - start)) s"
}

case "${1:-}" in
  build) build ;;
  path) build && printf '%s\n' "$BIN" ;;
  *)
    echo "usage: $0 build|path" >&2
    exit 2
    ;;
esac
