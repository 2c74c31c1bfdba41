#!/usr/bin/env bash
# schemathesis (PyPI), pinned in tools/schemathesis/requirements.txt, in a virtualenv cached
# outside the clone and keyed by its version and the requirements' hash; built once, then reused.
#
#   scripts/schemathesis.sh install   build the venv if missing or stale
#   scripts/schemathesis.sh path      print the schemathesis binary (installing first)
set -euo pipefail
. "$(dirname -- "${BASH_SOURCE[0]}")/common.sh"

REQUIREMENTS="$ROOT/tools/schemathesis/requirements.txt"
VERSION=$(sed -n 's/^schemathesis==//p' "$REQUIREMENTS")
[ -n "$VERSION" ] || { echo "schemathesis: no schemathesis== pin in $REQUIREMENTS" >&2; exit 1; }
HASH=$(sha256sum -- "$REQUIREMENTS" | cut -c1-16)
VENV=${XDG_CACHE_HOME:-$HOME/.cache}/order-platform/schemathesis-$VERSION-$HASH/venv
BIN="$VENV/bin/schemathesis"

install() {
  local stamp="$VENV/.order-platform-stamp" py
  # the stamp says the install finished; a venv whose interpreter vanished is rebuilt too
  if [ "$(cat -- "$stamp" 2>/dev/null || true)" = "$HASH" ] && [ -x "$BIN" ] &&
    "$VENV/bin/python" -c '' >/dev/null 2>&1; then
    return 0
  fi
  ensure_commands python3=python3
  py=$(command -v python3)
  "$py" -c 'import sys; sys.exit(sys.version_info < (3, 10))' ||
    { echo "schemathesis: $py is $("$py" -V 2>&1); schemathesis 4 needs Python 3.10 or later" >&2; exit 1; }
  "$py" -c 'import venv, ensurepip' 2>/dev/null || apt_packages python3-venv
  say "schemathesis $VERSION: creating $VENV (pip install -r $REQUIREMENTS)"
  rm -rf -- "$VENV"
  mkdir -p -- "$(dirname -- "$VENV")"
  "$py" -m venv "$VENV" >&2
  "$VENV/bin/python" -m pip install -q --no-input -r "$REQUIREMENTS" >&2 ||
    { echo "schemathesis: pip install -r $REQUIREMENTS failed" >&2; exit 1; }
  [ -x "$BIN" ] || { echo "schemathesis: $BIN missing after pip install" >&2; exit 1; }
  echo "$HASH" >"$stamp"
}

case "${1:-}" in
  install) install ;;
  path) install && echo "$BIN" ;;
  *) echo "usage: $0 install|path" >&2; exit 2 ;;
esac
