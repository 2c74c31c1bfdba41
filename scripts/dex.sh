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
go_tool dex "$DEX_TAG" "$MODULE_DIR" "$PKG" "-s -w -X main.version=$DEX_TAG" "${1:-}"
