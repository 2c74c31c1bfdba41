#!/usr/bin/env bash
# `make generate`: the files generated from the operator's Rust types, written where they are
# used. Tests fail when any of them is stale, naming this command.
#   crds/orderplatform.yaml                          order-operator crd
#   charts/order-platform/crds/orderplatform.yaml    the same (Helm installs crds/ of a chart)
#   rbac/operator.yaml                               order-operator rbac
#   charts/order-platform/files/rbac.yaml            the same (the chart's RBAC templates read it)
set -euo pipefail
. "$(dirname -- "${BASH_SOURCE[0]}")/common.sh"
cd "$ROOT"

ensure_rust
cargo build --locked -p order-operator
bin="$CARGO_TARGET_DIR/debug/order-operator"
"$bin" crd >crds/orderplatform.yaml
cp crds/orderplatform.yaml charts/order-platform/crds/orderplatform.yaml
"$bin" rbac >rbac/operator.yaml
cp rbac/operator.yaml charts/order-platform/files/rbac.yaml
say "generated: crds/, rbac/ and their copies in charts/order-platform/"
