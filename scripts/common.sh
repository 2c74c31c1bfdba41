# shellcheck shell=bash
# Sourced by the scripts in this folder: repo root, logging, toolchain checks, and bringing the
# stack up for the length of one command (stopping only what that command started).

ROOT=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd)
export CARGO_TERM_COLOR=${CARGO_TERM_COLOR:-never}
# Compiled code is cached outside the clone, so a fresh clone (CI's) reuses the dependencies
# built before; cargo keys the artifacts by compiler and crate versions itself.
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/order-platform/cargo-target}

say() { printf '==> %s\n' "$*" >&2; }

# apt_packages PACKAGE...: install Debian packages (as root, or through sudo), or exit saying so.
apt_packages() {
  local sudo=()
  [ "$(id -u)" -eq 0 ] || sudo=(sudo)
  say "installing $* (apt-get)"
  { "${sudo[@]}" apt-get update -q &&
    DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -q --no-install-recommends "$@"; } >&2 || {
    echo "installing $* failed: install them by hand, then retry" >&2
    exit 1
  }
}

# ensure_commands COMMAND=PACKAGE...: install the Debian package of each missing command.
ensure_commands() {
  local pair missing=()
  for pair in "$@"; do
    command -v "${pair%%=*}" >/dev/null 2>&1 || [ -x "/usr/sbin/${pair%%=*}" ] || missing+=("${pair#*=}")
  done
  [ ${#missing[@]} -eq 0 ] || apt_packages "${missing[@]}"
}

# ensure_native_libs: the C libraries the crates link beyond libc: OpenSSL, for librdkafka's
# TLS and SASL (rdkafka's `ssl` feature builds against the system's libssl).
ensure_native_libs() {
  command -v pkg-config >/dev/null 2>&1 && pkg-config --exists openssl && return 0
  apt_packages libssl-dev pkg-config
}

# ensure_rust: cargo with rustfmt and clippy (rustup is on every machine of this kind), and the
# native libraries the build links.
ensure_rust() {
  ensure_native_libs
  if ! command -v cargo >/dev/null 2>&1; then
    [ -x "$HOME/.cargo/bin/cargo" ] && export PATH="$HOME/.cargo/bin:$PATH"
  fi
  command -v cargo >/dev/null 2>&1 || {
    echo "cargo not found: install Rust with rustup (https://rustup.rs)" >&2
    exit 1
  }
  if command -v rustup >/dev/null 2>&1; then
    for component in rustfmt clippy; do
      rustup component list --installed 2>/dev/null | grep -q "^$component" ||
        rustup component add "$component" >&2
    done
  fi
}

# on_exit CMD: run CMD when the script exits, after every CMD registered later (LIFO).
_cleanups=()
on_exit() {
  _cleanups+=("$1")
  trap _run_cleanups EXIT
}
_run_cleanups() {
  local i
  for ((i = ${#_cleanups[@]} - 1; i >= 0; i--)); do eval "${_cleanups[i]}" || true; done
}

# with_stack: `scripts/stack.sh up` and export its environment. On exit, `down` runs only when
# this call found the stack not (fully) running, so a stack a developer started stays up.
with_stack() {
  if ! "$ROOT/scripts/stack.sh" status >/dev/null 2>&1; then
    on_exit '"$ROOT/scripts/stack.sh" down'
  fi
  "$ROOT/scripts/stack.sh" up
  eval "$("$ROOT/scripts/stack.sh" env)"
}

# go_tool NAME VERSION MODULE_DIR PKG LDFLAGS build|path: a Go tool built with `go build` (cgo
# off, `-trimpath -mod=readonly`) from the module pinned in MODULE_DIR (a tools module:
# go.mod, go.sum; nothing vendored), cached as
# ${XDG_CACHE_HOME:-$HOME/.cache}/order-platform/NAME-VERSION-<hash>/NAME, the hash taken over
# go.mod, go.sum and the build flags. `build` builds it when missing (once, under a lock, when
# several runs want it); `path` prints its path, building it first.
go_tool() {
  local name=$1 version=$2 module=$3 pkg=$4 ldflags=$5 cmd=${6:-} flags=(-trimpath -mod=readonly)
  local hash dir bin
  fail() {
    printf '%s: %s\n' "$name" "$*" >&2
    exit 1
  }
  [ -n "$version" ] || fail "no version pinned in $module/go.mod"
  hash=$({
    cat "$module/go.mod" "$module/go.sum"
    printf 'pkg=%s\nflags=%s\nldflags=%s\ncgo=0\n' "$pkg" "${flags[*]}" "$ldflags"
  } | sha256sum | cut -c1-16)
  dir="${XDG_CACHE_HOME:-$HOME/.cache}/order-platform/$name-$version-$hash"
  bin="$dir/$name"
  case $cmd in
    build | path) ;;
    *)
      echo "usage: $0 build|path" >&2
      exit 2
      ;;
  esac
  if [ ! -x "$bin" ]; then
    if ! command -v go >/dev/null 2>&1 && [ -x /usr/local/go/bin/go ]; then
      export PATH="/usr/local/go/bin:$PATH"
    fi
    command -v go >/dev/null 2>&1 || fail "go not found: install Go (https://go.dev/dl/) and put it on PATH"
    local have need
    have=$(go env GOVERSION | sed -e 's/^go//' -e 's/[^0-9.].*//')
    need=$(awk '$1 == "go" && NF == 2 { print $2 }' "$module/go.mod")
    if [ "$(printf '%s\n%s\n' "$need" "$have" | sort -V | head -n1)" != "$need" ]; then
      fail "go $have is too old: ${module#"$ROOT"/}/go.mod needs go >= $need (https://go.dev/dl/)"
    fi
    mkdir -p "$dir"
    exec 9>"$dir/.lock"
    flock 9
    if [ ! -x "$bin" ]; then
      say "$name $version: building $pkg (${module#"$ROOT"/}) into $dir"
      local start=$SECONDS tmp="$dir/.$name.tmp"
      rm -f "$tmp"
      (cd "$module" && GOTOOLCHAIN=local CGO_ENABLED=0 nice -n 10 go build "${flags[@]}" -ldflags "$ldflags" -o "$tmp" "$pkg") ||
        fail "building $name failed"
      mv -f "$tmp" "$bin"
      say "$name: built in $((SECONDS - start)) s"
    fi
  fi
  if [ "$cmd" = path ]; then
    printf '%s\n' "$bin"
  fi
}
