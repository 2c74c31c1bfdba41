#!/usr/bin/env bash
# `make test`: bring the stack and the local Kubernetes control plane up, run every test suite
# against them, stop what was started.
set -euo pipefail
. "$(dirname -- "${BASH_SOURCE[0]}")/common.sh"
cd "$ROOT"

ensure_rust
with_stack

# The operator's suites need the control plane and its real node (scripts/cluster.sh; their
# binaries are built on first use). As with the stack, `down` on exit only when this run found it
# not running.
if ! "$ROOT/scripts/cluster.sh" status >/dev/null 2>&1; then
  # shellcheck disable=SC2016 # expanded when the cleanup runs
  on_exit '"$ROOT/scripts/cluster.sh" down'
fi
"$ROOT/scripts/cluster.sh" up
eval "$("$ROOT/scripts/cluster.sh" env)"

# Each test makes its own database `test_<uuid>` (kept while the run lasts, for a failure's
# post-mortem); drop those an earlier run left behind, and this run's when it ends, so the
# stack's disk (and its replica's, which copies every database) does not grow run after run.
drop_test_databases() {
  psql "$DATABASE_URL" -Atqc "SELECT datname FROM pg_database WHERE datname LIKE 'test\_%'" |
    while read -r db; do psql "$DATABASE_URL" -qc "DROP DATABASE \"$db\" WITH (FORCE)"; done
}
say "dropping test databases of earlier runs"
drop_test_databases
on_exit 'say "dropping this run'"'"'s test databases"; drop_test_databases'

# The container images (release binaries on a distroless-like runtime; the sandbox image; the
# chart's development stack, from Debian packages and the stack's pins); the images suite checks
# them against the Dockerfile and runs them. Cached: a warm run only hashes.
"$ROOT/scripts/images.sh" build
"$ROOT/scripts/images.sh" pause
"$ROOT/scripts/images.sh" dev
# Releases of order-service for the realnode suite's rollouts (a new one, a crash-looping one,
# one whose migration fails): the same layers, one config change each.
"$ROOT/scripts/images.sh" variants
ORDER_PLATFORM_IMAGES=$("$ROOT/scripts/images.sh" path)
# A real container runtime (containerd from its Go module, Debian's runc): the images suite runs
# the images in a containerd of its own (the dev stack's each in a network namespace).
ensure_commands runc=runc ip=iproute2
"$ROOT/scripts/k8s-tools.sh" build node
ORDER_PLATFORM_NODE_BIN=$("$ROOT/scripts/k8s-tools.sh" path)
export ORDER_PLATFORM_IMAGES ORDER_PLATFORM_NODE_BIN
# The cluster's real node (scripts/node.sh) runs these same archives: the realnode suite
# installs the chart on it. Imported only when the node lacks that exact image.
"$ROOT/scripts/node.sh" images

# The OpenAPI fuzz test (order-service/tests/api/openapi.rs) runs schemathesis from PyPI, pinned
# in tools/schemathesis and installed once into a cached venv.
ORDER_PLATFORM_SCHEMATHESIS=$("$ROOT/scripts/schemathesis.sh" path)
export ORDER_PLATFORM_SCHEMATHESIS

# The auth tests (order-service/tests/api/auth.rs) get their tokens from a real OpenID Connect
# provider: Dex, built once from its Go module pinned in tools/dex.
ORDER_PLATFORM_DEX=$("$ROOT/scripts/dex.sh" path)
export ORDER_PLATFORM_DEX

# The read-replica tests (order-service/tests/api/replica.rs) use the stack's streaming replica.
export ORDER_PLATFORM_REPLICA_URL
# The alerting rules' unit tests (operator/tests/rules.rs) run promtool, built once from the
# Prometheus Go module pinned in tools/promtool.
ORDER_PLATFORM_PROMTOOL=$("$ROOT/scripts/promtool.sh" path)
export ORDER_PLATFORM_PROMTOOL

say "cargo test --workspace"
cargo test --workspace --locked "$@"
