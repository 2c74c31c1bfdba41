#!/usr/bin/env bash
# Manage the local development stack (127.0.0.1 only).
#
#   scripts/stack.sh up     [SERVICE...]  install what is missing, start what is not running, wait until ready
#   scripts/stack.sh down   [SERVICE...]  stop what `up` started (and nothing else)
#   scripts/stack.sh status [SERVICE...]  one line per service; exit 0 if all running, 3 otherwise
#   scripts/stack.sh env    [SERVICE...]  print `export VAR=value` lines: eval "$(scripts/stack.sh env)"
#
# State lives under $ROOT/target/stack/. `up` writes $ROOT/target/stack/<service>.started for
# each service it started itself; `down` stops only services with such a marker and removes it.
# A service that was already running (started by hand, or by an earlier `up`) is left alone.
#
# Services and their defaults (override with the environment):
#   postgres  PostgreSQL 15 on 127.0.0.1:${STACK_PG_PORT:-55432}, database "orders", user postgres (trust)
# Other knobs: STACK_WAIT_TIMEOUT (seconds to wait for a service to accept connections, default 90).
#
# Adding a service NAME: append it to SERVICES and define these functions:
#   NAME_install    make sure its binaries are present (idempotent; may install packages)
#   NAME_state      print "running", "stopped" or "conflict: <why it cannot be started/used>";
#                   must not install or change anything, must return 0
#   NAME_start      start it (called only when NAME_state says "stopped"); return non-zero on failure
#   NAME_ready      return 0 when it accepts connections (polled by the dispatcher with a timeout)
#   NAME_provision  idempotent setup once it is ready (databases, topics, tables, ...)
#   NAME_stop       stop the instance this script manages if it is running (idempotent)
#   NAME_addr       print host:port
#   NAME_env        print `export VAR=value` lines (stdout only)
# Daemons started by NAME_start must not keep this script's stdout/stderr open (redirect to a log).
set -euo pipefail

SCRIPT_PATH=$(readlink -f -- "${BASH_SOURCE[0]}")
SCRIPT_DIR=$(dirname -- "$SCRIPT_PATH")
ROOT=$(dirname -- "$SCRIPT_DIR")
STACK_DIR="$ROOT/target/stack"
STACK_WAIT_TIMEOUT=${STACK_WAIT_TIMEOUT:-90}

SERVICES=(postgres)

# ---------------------------------------------------------------------------------------------
# Generic helpers
# ---------------------------------------------------------------------------------------------

log() { printf 'stack: %s\n' "$*" >&2; }
die() {
  log "$*"
  exit 1
}

usage() {
  cat >&2 <<EOF
usage: scripts/stack.sh up|down|status|env [SERVICE...]
services: ${SERVICES[*]}
EOF
}

have() { command -v "$1" >/dev/null 2>&1; }

# is_port N: a valid TCP port number?
is_port() { [[ $1 =~ ^[0-9]{1,5}$ ]] && (($1 > 0 && $1 < 65536)); }

# port_open HOST PORT: does something accept TCP connections there?
port_open() {
  # shellcheck disable=SC2016 # $1/$2 are expanded by the inner bash
  timeout 2 bash -c 'exec 3<>"/dev/tcp/$1/$2"' _ "$1" "$2" 2>/dev/null
}

# describe_listener PORT: " (NAME pid PID)" for the process listening on PORT, or nothing.
describe_listener() {
  local procs=''
  if have ss; then
    procs=$(ss -Hltnp "sport = :$1" 2>/dev/null |
      sed -nE 's/.*users:\(\("([^"]*)",pid=([0-9]+).*/\1 pid \2/p' | head -n 1 || true)
  fi
  if [[ -n $procs ]]; then
    printf ' (%s)' "$procs"
  fi
}

# wait_until TIMEOUT_SECONDS COMMAND...: poll COMMAND until it succeeds; non-zero on timeout.
wait_until() {
  local deadline=$((SECONDS + $1))
  shift
  until "$@"; do
    if ((SECONDS >= deadline)); then
      return 1
    fi
    sleep 0.2
  done
}

# apt_install PACKAGE...: install Debian packages (as root, or via sudo when available).
apt_install() {
  local -a sudo=()
  if ((EUID != 0)); then
    if have sudo; then
      sudo=(sudo)
    else
      die "need root to install $*: run 'apt-get install $*' as root, then retry"
    fi
  fi
  have apt-get || die "apt-get not found: install $* by hand, then retry"
  log "installing $* (apt-get)"
  "${sudo[@]}" apt-get update -q >&2 || die "apt-get update failed (needed to install $*)"
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive \
    apt-get install -y -q --no-install-recommends "$@" >&2 || die "apt-get install $* failed"
}

# proc_state PID: the process's one-letter state (R, S, Z, ...), or nothing if there is no such process.
proc_state() {
  sed -E 's/^.*\) (.).*$/\1/' "/proc/$1/stat" 2>/dev/null || true
}

# proc_gone PID: has the process disappeared (exited and been reaped)?
proc_gone() { [[ -z $(proc_state "$1") ]]; }

# ... | prefix_lines SERVICE: pass a tool's chatter on to stderr as "stack: SERVICE: ..." lines.
prefix_lines() { sed -u "s/^/stack: $1: /" >&2; }

marker() { printf '%s/%s.started' "$STACK_DIR" "$1"; }

# tail_log FILE: show the end of a log on stderr (after a failure).
tail_log() {
  if [[ -r $1 ]]; then
    log "last lines of $1:"
    tail -n 20 -- "$1" | sed 's/^/    /' >&2
  fi
}

# ---------------------------------------------------------------------------------------------
# postgres: PostgreSQL 15, cluster in target/stack/postgres/data, run as the postgres user
# ---------------------------------------------------------------------------------------------

PG_PACKAGE=postgresql-15
PG_BIN=/usr/lib/postgresql/15/bin
PG_HOST=127.0.0.1
PG_PORT=${STACK_PG_PORT:-55432}
PG_DB=orders
PG_DIR="$STACK_DIR/postgres" # also the unix socket directory
PG_DATA="$PG_DIR/data"
PG_LOG="$PG_DIR/postgres.log"
is_port "$PG_PORT" || die "STACK_PG_PORT must be a TCP port number, got '$PG_PORT'"

# as_pg COMMAND...: run COMMAND as the postgres user (PostgreSQL refuses to run as root).
# Without root, run it as the current user, who then owns the cluster.
as_pg() {
  if ((EUID != 0)); then
    (cd / && "$@")
  elif have runuser; then
    (cd / && runuser -u postgres -- "$@")
  else
    (cd / && su postgres -s /bin/bash -c "$(printf '%q ' "$@")")
  fi
}

# psql against our server over TCP; the conninfo string beats any PG* environment variables.
pg_psql() {
  "$PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 \
    -d "host=$PG_HOST port=$PG_PORT user=postgres dbname=postgres sslmode=disable connect_timeout=5" "$@"
}

# PID recorded in $PG_DATA/postmaster.pid, or nothing.
pg_pid() {
  local pid=''
  if [[ -r $PG_DATA/postmaster.pid ]]; then
    pid=$(head -n 1 -- "$PG_DATA/postmaster.pid" 2>/dev/null || true)
  fi
  if [[ $pid =~ ^[0-9]+$ ]]; then
    echo "$pid"
  fi
}

# Is the cluster in $PG_DATA running (on whatever port)? A postmaster that died but has not been
# reaped yet (a zombie: init may take a few seconds) counts as not running, although
# `pg_ctl status` still reports it as running.
pg_cluster_running() {
  local pid
  pid=$(pg_pid)
  [[ -n $pid ]] || return 1
  case $(proc_state "$pid") in
    '' | Z | X) return 1 ;;
    *) ;;
  esac
  [[ -x $PG_BIN/pg_ctl ]] && as_pg "$PG_BIN/pg_ctl" status -D "$PG_DATA" >/dev/null 2>&1
}

postgres_addr() { printf '%s:%s' "$PG_HOST" "$PG_PORT"; }

postgres_env() {
  printf 'export DATABASE_URL=%q\n' "postgres://postgres@$PG_HOST:$PG_PORT/$PG_DB"
}

postgres_install() {
  if [[ ! -x $PG_BIN/pg_ctl || ! -x $PG_BIN/initdb || ! -x $PG_BIN/psql ]]; then
    apt_install "$PG_PACKAGE"
    [[ -x $PG_BIN/pg_ctl ]] || die "postgres: $PG_BIN/pg_ctl still missing after installing $PG_PACKAGE"
  fi
  if ((EUID == 0)) && ! id -u postgres >/dev/null 2>&1; then
    die "postgres: no 'postgres' user (it comes with the $PG_PACKAGE package): reinstall $PG_PACKAGE"
  fi
}

postgres_state() {
  local port
  if pg_cluster_running; then
    port=$(sed -n 4p "$PG_DATA/postmaster.pid" 2>/dev/null || true)
    if [[ -n $port && $port != "$PG_PORT" ]]; then
      echo "conflict: the cluster in $PG_DATA is already running on port $port, not $PG_PORT;" \
        "stop it first (scripts/stack.sh down, or $PG_BIN/pg_ctl stop -D $PG_DATA as the postgres user)" \
        "or set STACK_PG_PORT=$port"
    else
      echo running
    fi
  elif port_open "$PG_HOST" "$PG_PORT"; then
    echo "conflict: $PG_HOST:$PG_PORT is in use by another process$(describe_listener "$PG_PORT")," \
      "not by the cluster in $PG_DATA; stop it or pick another port with STACK_PG_PORT"
  else
    echo stopped
  fi
}

postgres_ready() {
  "$PG_BIN/pg_isready" -q -h "$PG_HOST" -p "$PG_PORT" -U postgres -d postgres -t 2 >/dev/null 2>&1
}

postgres_start() {
  local -a locale_args=(--no-locale)
  local sockdir opts pid

  mkdir -p -- "$PG_DIR" || return 1
  if ((EUID == 0)); then
    chown postgres: -- "$PG_DIR" || return 1
    if [[ -d $PG_DATA && $(stat -c %U -- "$PG_DATA") != postgres ]]; then
      log "postgres: giving $PG_DIR back to the postgres user"
      chown -R postgres: -- "$PG_DIR" || return 1
    fi
  fi
  if ! as_pg test -x "$PG_DIR" -a -w "$PG_DIR"; then
    die "postgres: the postgres user cannot reach $PG_DIR." \
      "PostgreSQL refuses to run as root, so its data directory must be reachable by the postgres user," \
      "but a parent directory is not searchable by other users (e.g. a 0700 home directory;" \
      "'namei -l $PG_DIR' shows which). Fix: 'chmod o+x' on that directory, or put the checkout" \
      "somewhere world-traversable (e.g. /work or /srv)."
  fi

  if [[ ! -f $PG_DATA/PG_VERSION ]]; then
    if [[ -d $PG_DATA ]]; then
      # no PG_VERSION: an initdb that was interrupted; nothing usable in there
      log "postgres: removing incomplete data directory $PG_DATA"
      rm -rf -- "$PG_DATA" || return 1
    fi
    if locale -a 2>/dev/null | grep -qiE '^c\.utf-?8$'; then
      locale_args=(--locale=C.UTF-8)
    fi
    log "postgres: initializing cluster in $PG_DATA"
    if ! as_pg "$PG_BIN/initdb" -D "$PG_DATA" -U postgres --auth=trust --encoding=UTF8 \
      "${locale_args[@]}" >"$PG_DIR/initdb.log" 2>&1; then
      tail_log "$PG_DIR/initdb.log"
      log "postgres: initdb failed"
      return 1
    fi
  fi

  # The postmaster refuses to start while the PID in postmaster.pid is alive, zombies included.
  pid=$(pg_pid)
  if [[ -n $pid && $(proc_state "$pid") == Z ]]; then
    log "postgres: waiting for the previous postmaster (PID $pid, exited) to be reaped"
    if ! wait_until 30 proc_gone "$pid"; then
      log "postgres: PID $pid is still a zombie after 30s (its parent does not reap it)"
      return 1
    fi
  fi

  # A unix socket path is limited to ~107 bytes; with a very deep checkout go TCP-only.
  sockdir=$PG_DIR
  if ((${#PG_DIR} + ${#PG_PORT} + 10 > 107)); then
    sockdir=''
  fi
  # pg_ctl runs "postgres $opts" through /bin/sh, hence the quoting.
  opts="-p $PG_PORT -k $(printf '%q' "$sockdir") -c listen_addresses=$PG_HOST"
  opts+=" -c max_connections=300 -c shared_buffers=128MB"
  if ! as_pg "$PG_BIN/pg_ctl" start -D "$PG_DATA" -l "$PG_LOG" -w -t 60 -s -o "$opts" 2>&1 | prefix_lines postgres; then
    tail_log "$PG_LOG"
    log "postgres: pg_ctl start failed"
    return 1
  fi
}

postgres_provision() {
  local exists
  exists=$(pg_psql -tAc "SELECT 1 FROM pg_database WHERE datname = '$PG_DB'") ||
    die "postgres: cannot query $(postgres_addr) as user postgres"
  if [[ $exists != 1 ]]; then
    log "postgres: creating database $PG_DB"
    pg_psql -c "CREATE DATABASE \"$PG_DB\"" || die "postgres: CREATE DATABASE $PG_DB failed"
  fi
}

postgres_stop() {
  if pg_cluster_running; then
    as_pg "$PG_BIN/pg_ctl" stop -D "$PG_DATA" -m fast -w -t 60 -s 2>&1 | prefix_lines postgres ||
      die "postgres: pg_ctl stop failed (see $PG_LOG)"
  fi
}

# ---------------------------------------------------------------------------------------------
# Dispatcher
# ---------------------------------------------------------------------------------------------

# wait_ready SERVICE ADDR: poll until it accepts connections; fail early if it stops running.
wait_ready() {
  local svc=$1 addr=$2 deadline=$((SECONDS + STACK_WAIT_TIMEOUT))
  until "${svc}_ready"; do
    if [[ $("${svc}_state") != running ]]; then
      die "$svc: stopped running while waiting for it to accept connections on $addr"
    fi
    if ((SECONDS >= deadline)); then
      die "$svc: not accepting connections on $addr after ${STACK_WAIT_TIMEOUT}s"
    fi
    sleep 0.2
  done
}

up_one() {
  local svc=$1 addr state started=''
  addr=$("${svc}_addr")
  "${svc}_install"
  state=$("${svc}_state")
  case $state in
    running)
      log "$svc: already running on $addr, leaving it alone"
      ;;
    stopped)
      log "$svc: starting on $addr"
      if ! "${svc}_start"; then
        # a half-successful start (e.g. timed out waiting) is still ours to stop
        if [[ $("${svc}_state") == running ]]; then
          date -u +%FT%TZ >"$(marker "$svc")"
        fi
        die "$svc: failed to start"
      fi
      date -u +%FT%TZ >"$(marker "$svc")"
      started=yes
      ;;
    *)
      die "$svc: ${state#conflict: }"
      ;;
  esac
  wait_ready "$svc" "$addr"
  "${svc}_provision"
  if [[ -n $started ]]; then
    log "$svc: ready on $addr"
  fi
}

down_one() {
  local svc=$1 state
  if [[ -e $(marker "$svc") ]]; then
    if [[ $("${svc}_state") == stopped ]]; then
      log "$svc: was started by stack.sh but is no longer running; clearing its marker"
    else
      log "$svc: stopping"
      "${svc}_stop"
      log "$svc: stopped"
    fi
    rm -f -- "$(marker "$svc")"
  else
    state=$("${svc}_state")
    if [[ $state == running ]]; then
      log "$svc: running but not started by stack.sh, leaving it alone"
    else
      log "$svc: not started by stack.sh, nothing to do"
    fi
  fi
}

# status_one SERVICE: print its line; return 0 if running and accepting connections.
status_one() {
  local svc=$1 addr state by='not started by stack.sh'
  addr=$("${svc}_addr")
  state=$("${svc}_state")
  if [[ -e $(marker "$svc") ]]; then
    by='started by stack.sh'
  fi
  case $state in
    running)
      if "${svc}_ready"; then
        echo "$svc: running on $addr ($by)"
        return 0
      fi
      echo "$svc: running on $addr but not accepting connections ($by)"
      ;;
    stopped)
      if [[ -e $(marker "$svc") ]]; then
        echo "$svc: stopped ($addr; stale marker from an earlier up, 'up' will start it again)"
      else
        echo "$svc: stopped ($addr)"
      fi
      ;;
    *)
      echo "$svc: not available on $addr: ${state#conflict: }"
      ;;
  esac
  return 3
}

main() {
  local cmd=${1:-} svc rc=0 i
  local -a selected
  if (($# > 0)); then
    shift
  fi
  case $cmd in
    up | down | status | env) ;;
    -h | --help | help)
      usage
      return 0
      ;;
    '')
      usage
      return 2
      ;;
    *)
      usage
      log "unknown command '$cmd'"
      return 2
      ;;
  esac

  selected=("$@")
  if ((${#selected[@]} == 0)); then
    selected=("${SERVICES[@]}")
  fi
  for svc in "${selected[@]}"; do
    [[ " ${SERVICES[*]} " == *" $svc "* ]] || die "unknown service '$svc' (known: ${SERVICES[*]})"
  done
  [[ $STACK_WAIT_TIMEOUT =~ ^[0-9]+$ ]] || die "STACK_WAIT_TIMEOUT must be a number of seconds"

  # up/down change state: serialize them (flock -o keeps the lock out of the daemons we start).
  if [[ $cmd == up || $cmd == down ]]; then
    mkdir -p -- "$STACK_DIR"
    if [[ -z ${_STACK_SH_LOCKED:-} ]] && have flock; then
      _STACK_SH_LOCKED=1 flock -o -w 300 -E 75 "$STACK_DIR/.lock" bash "$SCRIPT_PATH" "$cmd" "$@" || rc=$?
      if ((rc == 75)); then
        die "another stack.sh up/down has held $STACK_DIR/.lock for 300s; giving up"
      fi
      return "$rc"
    fi
  fi

  case $cmd in
    up)
      for svc in "${selected[@]}"; do up_one "$svc"; done
      ;;
    down)
      # reverse order: later services may depend on earlier ones
      for ((i = ${#selected[@]} - 1; i >= 0; i--)); do down_one "${selected[i]}"; done
      ;;
    status)
      for svc in "${selected[@]}"; do status_one "$svc" || rc=3; done
      return "$rc"
      ;;
    env)
      printf 'export ORDER_PLATFORM_STACK_DIR=%q\n' "$STACK_DIR"
      for svc in "${selected[@]}"; do "${svc}_env"; done
      ;;
    *)
      die "unreachable: $cmd"
      ;;
  esac
}

main "$@"
