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
# promtool --version prints what these set (Prometheus' own release builds set them the same way).
go_tool promtool "$VERSION" "$MODULE_DIR" "$PKG" \
  "-s -w -X github.com/prometheus/common/version.Version=$VERSION -X github.com/prometheus/common/version.Branch=HEAD" \
  "${1:-}"
