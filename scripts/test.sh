#!/usr/bin/env bash
# `make test`: bring the stack up, run every test suite against it, stop what was started.
set -euo pipefail
. "$(dirname -- "${BASH_SOURCE[0]}")/common.sh"
cd "$ROOT"

ensure_rust
with_stack

# Each test makes its own database `test_<uuid>`; drop those an earlier run left behind.
say "dropping test databases of earlier runs"
psql "$DATABASE_URL" -Atqc "SELECT datname FROM pg_database WHERE datname LIKE 'test\_%'" |
  while read -r db; do psql "$DATABASE_URL" -qc "DROP DATABASE \"$db\" WITH (FORCE)"; done

say "cargo test --workspace"
cargo test --workspace --locked "$@"
