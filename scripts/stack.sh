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
#   replica   a streaming replica of postgres (pg_basebackup -R, hot standby, hot_standby_feedback)
#             on 127.0.0.1:${STACK_PG_REPLICA_PORT:-55433}: the read replica of the reports; `env`
#             exports ORDER_PLATFORM_REPLICA_URL (its "orders" database)
#   kafka     Apache Kafka (KRaft, one combined broker+controller; version pinned in tools/kafka/pom.xml,
#             jars fetched with Maven into ~/.cache/order-platform) on 127.0.0.1:${STACK_KAFKA_PORT:-59092},
#             controller on 127.0.0.1:${STACK_KAFKA_CONTROLLER_PORT:-59093}, SASL_SSL (SCRAM-SHA-512, a
#             local CA) on 127.0.0.1:${STACK_KAFKA_SECURE_PORT:-59094}; topic orders.events (3 partitions)
#   moto      moto_server (DynamoDB API; pinned in tools/moto/requirements.txt, virtualenv in
#             ~/.cache/order-platform) on 127.0.0.1:${STACK_MOTO_PORT:-58000}
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

SERVICES=(postgres replica kafka moto)

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

# PID recorded in DATA_DIR/postmaster.pid (default $PG_DATA), or nothing.
pg_pid() {
  local data=${1:-$PG_DATA} pid=''
  if [[ -r $data/postmaster.pid ]]; then
    pid=$(head -n 1 -- "$data/postmaster.pid" 2>/dev/null || true)
  fi
  if [[ $pid =~ ^[0-9]+$ ]]; then
    echo "$pid"
  fi
}

# Is the cluster in DATA_DIR (default $PG_DATA) running (on whatever port)? A postmaster that
# died but has not been reaped yet (a zombie: init may take a few seconds) counts as not
# running, although `pg_ctl status` still reports it as running.
pg_cluster_running() {
  local data=${1:-$PG_DATA} pid
  pid=$(pg_pid "$data")
  [[ -n $pid ]] || return 1
  case $(proc_state "$pid") in
    '' | Z | X) return 1 ;;
    *) ;;
  esac
  [[ -x $PG_BIN/pg_ctl ]] && as_pg "$PG_BIN/pg_ctl" status -D "$data" >/dev/null 2>&1
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

# pg_state WHAT DATA_DIR PORT PORT_VARIABLE HOW_TO_STOP: the state line of a cluster of ours
# (the primary or the replica), WHAT naming it in conflicts.
pg_state() {
  local what=$1 data=$2 want=$3 variable=$4 stop=$5 port
  if pg_cluster_running "$data"; then
    port=$(sed -n 4p "$data/postmaster.pid" 2>/dev/null || true)
    if [[ -n $port && $port != "$want" ]]; then
      echo "conflict: the $what in $data is already running on port $port, not $want;" \
        "stop it first ($stop) or set $variable=$port"
    else
      echo running
    fi
  elif port_open "$PG_HOST" "$want"; then
    echo "conflict: $PG_HOST:$want is in use by another process$(describe_listener "$want")," \
      "not by the $what in $data; stop it or pick another port with $variable"
  else
    echo stopped
  fi
}

# pg_stop SERVICE DATA_DIR LOG: stop that cluster if it runs.
pg_stop() {
  if pg_cluster_running "$2"; then
    as_pg "$PG_BIN/pg_ctl" stop -D "$2" -m fast -w -t 60 -s 2>&1 | prefix_lines "$1" ||
      die "$1: pg_ctl stop failed (see $3)"
  fi
}

# pg_ready PORT: does our server on PORT accept connections?
pg_ready() {
  "$PG_BIN/pg_isready" -q -h "$PG_HOST" -p "$1" -U postgres -d postgres -t 2 >/dev/null 2>&1
}

postgres_state() {
  pg_state cluster "$PG_DATA" "$PG_PORT" STACK_PG_PORT \
    "scripts/stack.sh down, or $PG_BIN/pg_ctl stop -D $PG_DATA as the postgres user"
}

postgres_ready() { pg_ready "$PG_PORT"; }

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

postgres_stop() { pg_stop postgres "$PG_DATA" "$PG_LOG"; }

# ---------------------------------------------------------------------------------------------
# replica: a streaming replica of postgres (hot standby), data in target/stack/replica/data
# ---------------------------------------------------------------------------------------------

REPLICA_PORT=${STACK_PG_REPLICA_PORT:-55433}
REPLICA_DIR="$STACK_DIR/replica" # also the unix socket directory
REPLICA_DATA="$REPLICA_DIR/data"
REPLICA_LOG="$REPLICA_DIR/postgres.log"
is_port "$REPLICA_PORT" || die "STACK_PG_REPLICA_PORT must be a TCP port number, got '$REPLICA_PORT'"
[[ $REPLICA_PORT != "$PG_PORT" ]] || die "STACK_PG_REPLICA_PORT and STACK_PG_PORT must differ"

# system_id DATA_DIR: the cluster's system identifier (a clone shares its primary's).
pg_system_id() {
  as_pg "$PG_BIN/pg_controldata" -D "$1" 2>/dev/null | sed -n 's/^Database system identifier: *//p'
}

replica_addr() { printf '%s:%s' "$PG_HOST" "$REPLICA_PORT"; }

replica_env() {
  printf 'export ORDER_PLATFORM_REPLICA_URL=%q\n' "postgres://postgres@$PG_HOST:$REPLICA_PORT/$PG_DB"
}

replica_install() { postgres_install; }

replica_state() {
  pg_state replica "$REPLICA_DATA" "$REPLICA_PORT" STACK_PG_REPLICA_PORT "scripts/stack.sh down replica"
}

replica_ready() { pg_ready "$REPLICA_PORT"; }

replica_start() {
  local sockdir opts primary_id
  postgres_ready || die "replica: the primary is not accepting connections on $(postgres_addr);" \
    "start it first (scripts/stack.sh up postgres)"
  # Without a replication slot (a deleted replica would pin the primary's WAL forever) the
  # primary keeps this much WAL for a replica that was stopped or fell behind; beyond it the
  # clone is made again below.
  pg_psql -c "ALTER SYSTEM SET wal_keep_size = '1GB'" -c "SELECT pg_reload_conf()" >/dev/null ||
    die "replica: could not set wal_keep_size on the primary"
  mkdir -p -- "$REPLICA_DIR" || return 1
  if ((EUID == 0)); then
    chown postgres: -- "$REPLICA_DIR" || return 1
  fi
  primary_id=$(pg_system_id "$PG_DATA")
  if [[ -f $REPLICA_DATA/standby.signal && -n $primary_id &&
    $(pg_system_id "$REPLICA_DATA") != "$primary_id" ]]; then
    log "replica: $REPLICA_DATA is a clone of another cluster; cloning the primary again"
    rm -rf -- "$REPLICA_DATA" || return 1
  elif [[ -d $REPLICA_DATA && ! -f $REPLICA_DATA/standby.signal ]]; then
    log "replica: removing incomplete clone $REPLICA_DATA"
    rm -rf -- "$REPLICA_DATA" || return 1
  fi
  if [[ ! -d $REPLICA_DATA ]]; then
    log "replica: cloning $(postgres_addr) into $REPLICA_DATA (pg_basebackup -R)"
    if ! as_pg "$PG_BIN/pg_basebackup" -d "host=$PG_HOST port=$PG_PORT user=postgres sslmode=disable" \
      -D "$REPLICA_DATA" -R -X stream -c fast >"$REPLICA_DIR/basebackup.log" 2>&1; then
      tail_log "$REPLICA_DIR/basebackup.log"
      rm -rf -- "$REPLICA_DATA"
      log "replica: pg_basebackup failed"
      return 1
    fi
  fi
  sockdir=$REPLICA_DIR
  if ((${#REPLICA_DIR} + ${#REPLICA_PORT} + 10 > 107)); then
    sockdir=''
  fi
  # A hot standby needs max_connections at least the primary's. hot_standby_feedback keeps the
  # primary's vacuum from removing rows a long report still reads (no "conflict with recovery").
  opts="-p $REPLICA_PORT -k $(printf '%q' "$sockdir") -c listen_addresses=$PG_HOST"
  opts+=" -c max_connections=300 -c shared_buffers=128MB -c hot_standby=on -c hot_standby_feedback=on"
  if ! as_pg "$PG_BIN/pg_ctl" start -D "$REPLICA_DATA" -l "$REPLICA_LOG" -w -t 60 -s -o "$opts" 2>&1 |
    prefix_lines replica; then
    tail_log "$REPLICA_LOG"
    log "replica: pg_ctl start failed"
    return 1
  fi
}

# A standby that can no longer stream (the primary recycled the WAL it needs) never catches
# up: say so, with the way out.
replica_provision() {
  local recovering
  recovering=$("$PG_BIN/psql" -X -q -tA -d "host=$PG_HOST port=$REPLICA_PORT user=postgres dbname=postgres sslmode=disable connect_timeout=5" \
    -c "SELECT pg_is_in_recovery()") || die "replica: cannot query $(replica_addr)"
  [[ $recovering == t ]] || die "replica: $(replica_addr) is not in recovery (promoted?); remove $REPLICA_DATA and run up again"
  if grep -q 'requested WAL segment .* has already been removed' "$REPLICA_LOG" 2>/dev/null &&
    ! pg_psql -tAc "SELECT 1 FROM pg_stat_replication WHERE application_name = 'walreceiver'" | grep -q 1; then
    log "replica: it fell too far behind the primary to stream; run 'scripts/stack.sh down replica'," \
      "remove $REPLICA_DATA and run up again to clone afresh"
  fi
}

replica_stop() { pg_stop replica "$REPLICA_DATA" "$REPLICA_LOG"; }

# ---------------------------------------------------------------------------------------------
# Shared by kafka and moto: a daemon we launch ourselves, found by a PID file or by its listener
# ---------------------------------------------------------------------------------------------

# Downloads and virtualenvs live outside the clone, so a fresh clone (CI's) reuses them.
CACHE_BASE=${XDG_CACHE_HOME:-$HOME/.cache}/order-platform

# proc_args PID: the process's command line, arguments separated by spaces (nothing if gone).
proc_args() {
  tr '\0' ' ' <"/proc/$1/cmdline" 2>/dev/null || true
}

# proc_alive PID: does the process exist and has not exited (zombies count as exited)?
proc_alive() {
  case $(proc_state "$1") in
    '' | Z | X) return 1 ;;
    *) return 0 ;;
  esac
}

proc_exited() { ! proc_alive "$1"; }

# listener_pid PORT: PID of the process listening on 127.0.0.1:PORT (or any address), or nothing.
listener_pid() {
  if have ss; then
    ss -Hltnp "sport = :$1" 2>/dev/null | sed -nE 's/.*users:\(\("[^"]*",pid=([0-9]+).*/\1/p' | head -n 1 || true
  fi
}

# daemon_pid PIDFILE PATTERN PORT: PID of our daemon: the one in PIDFILE if it is alive and its
# command line contains PATTERN, else the listener on PORT if its command line contains PATTERN
# (the same daemon started by hand, or with a lost PID file). Prints nothing if there is none.
daemon_pid() {
  local pid=''
  if [[ -r $1 ]]; then
    pid=$(head -n 1 -- "$1" 2>/dev/null || true)
  fi
  if [[ $pid =~ ^[0-9]+$ ]] && proc_alive "$pid" && [[ $(proc_args "$pid") == *"$2"* ]]; then
    echo "$pid"
    return 0
  fi
  pid=$(listener_pid "$3")
  if [[ -n $pid ]] && [[ $(proc_args "$pid") == *"$2"* ]]; then
    echo "$pid"
  fi
}

# launch_daemon PIDFILE LOG COMMAND...: start COMMAND in its own session (so a Ctrl-C aimed at
# whatever runs after `up` does not reach it), output to LOG (the previous one kept as LOG.prev).
launch_daemon() {
  local pidfile=$1 logfile=$2
  shift 2
  if [[ -s $logfile ]]; then
    mv -f -- "$logfile" "$logfile.prev"
  fi
  # Without job control a background job is not a process group leader, so setsid does not
  # fork: $! is the daemon's own PID.
  (cd / && exec setsid "$@" </dev/null >"$logfile" 2>&1) &
  echo "$!" >"$pidfile"
}

# wait_started SERVICE PID LOG: wait until SERVICE_ready (up to STACK_WAIT_TIMEOUT seconds);
# fail, showing the end of LOG, if the process exits first or time runs out.
wait_started() {
  local svc=$1 pid=$2 logfile=$3 deadline=$((SECONDS + STACK_WAIT_TIMEOUT))
  until "${svc}_ready"; do
    if ! proc_alive "$pid"; then
      tail_log "$logfile"
      log "$svc: exited during startup (see $logfile)"
      return 1
    fi
    if ((SECONDS >= deadline)); then
      tail_log "$logfile"
      log "$svc: not ready after ${STACK_WAIT_TIMEOUT}s (PID $pid still running; see $logfile)"
      return 1
    fi
    sleep 0.2
  done
}

# stop_daemon SERVICE PID SECONDS: SIGTERM, wait up to SECONDS for it to exit, then SIGKILL.
stop_daemon() {
  local svc=$1 pid=$2 grace=$3
  kill -TERM "$pid" 2>/dev/null || return 0
  if ! wait_until "$grace" proc_exited "$pid"; then
    log "$svc: PID $pid still running ${grace}s after SIGTERM; sending SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
    wait_until 10 proc_exited "$pid" || die "$svc: PID $pid survived SIGKILL"
  fi
}

# ---------------------------------------------------------------------------------------------
# kafka: Apache Kafka broker (KRaft, combined broker+controller), jars from Maven Central
# ---------------------------------------------------------------------------------------------
# tools/kafka/pom.xml pins the version; `mvn dependency:copy-dependencies` puts the broker's
# runtime classpath (plus the admin/console tools and a log4j2 backend) in
# $CACHE_BASE/kafka-<version>/lib, stamped with the POM's checksum so a warm `up` skips Maven.
# Tests that need a private broker (to stop it for outage tests) get ORDER_PLATFORM_KAFKA_LIB and
# ORDER_PLATFORM_KAFKA_LOG4J from `env`; docs/stack-kafka-moto.md has the recipe.

KAFKA_HOST=127.0.0.1
KAFKA_PORT=${STACK_KAFKA_PORT:-59092}
KAFKA_CONTROLLER_PORT=${STACK_KAFKA_CONTROLLER_PORT:-59093}
# A second listener with TLS and SCRAM-SHA-512, as production brokers have (MSK, Confluent,
# Strimzi): a CA made here signs the broker's certificate; users are created with the storage.
KAFKA_SECURE_PORT=${STACK_KAFKA_SECURE_PORT:-59094}
KAFKA_SCRAM_USER=orders
KAFKA_SCRAM_PASSWORD=orders-local-secret # loopback only, throwaway data
KAFKA_TOPIC=orders.events # needed by the service until the operator provisions topics
KAFKA_TOPIC_PARTITIONS=3
KAFKA_POM="$ROOT/tools/kafka/pom.xml"
KAFKA_DIR="$STACK_DIR/kafka"
KAFKA_DATA="$KAFKA_DIR/data"
KAFKA_CONF="$KAFKA_DIR/server.properties"
KAFKA_LOG="$KAFKA_DIR/kafka.log"
KAFKA_PIDFILE="$KAFKA_DIR/kafka.pid"
KAFKA_TLS="$KAFKA_DIR/tls"
KAFKA_JAVA_PACKAGE=openjdk-17-jre-headless
is_port "$KAFKA_PORT" || die "STACK_KAFKA_PORT must be a TCP port number, got '$KAFKA_PORT'"
is_port "$KAFKA_CONTROLLER_PORT" ||
  die "STACK_KAFKA_CONTROLLER_PORT must be a TCP port number, got '$KAFKA_CONTROLLER_PORT'"
is_port "$KAFKA_SECURE_PORT" ||
  die "STACK_KAFKA_SECURE_PORT must be a TCP port number, got '$KAFKA_SECURE_PORT'"
[[ $KAFKA_PORT != "$KAFKA_CONTROLLER_PORT" ]] ||
  die "STACK_KAFKA_PORT and STACK_KAFKA_CONTROLLER_PORT must differ (both are $KAFKA_PORT)"
[[ $KAFKA_SECURE_PORT != "$KAFKA_PORT" && $KAFKA_SECURE_PORT != "$KAFKA_CONTROLLER_PORT" ]] ||
  die "STACK_KAFKA_SECURE_PORT must differ from the other Kafka ports"

# The version comes from the POM (<kafka.version>), so the cache directory follows an upgrade.
KAFKA_VERSION=$(sed -nE 's:^.*<kafka\.version>[[:space:]]*([^<[:space:]]+)[[:space:]]*</kafka\.version>.*$:\1:p' \
  "$KAFKA_POM" 2>/dev/null | head -n 1 || true)
[[ -n $KAFKA_VERSION ]] || die "kafka: no <kafka.version> in $KAFKA_POM"
KAFKA_HOME="$CACHE_BASE/kafka-$KAFKA_VERSION"
KAFKA_LIB="$KAFKA_HOME/lib"
KAFKA_STAMP="$KAFKA_HOME/lib.stamp"
KAFKA_BROKER_LOG4J="$KAFKA_HOME/log4j2-broker.properties" # INFO to stdout: the stack's broker
# WARN to stderr: StorageTool, admin/console tools, and private brokers started by tests
# (exported as ORDER_PLATFORM_KAFKA_LOG4J; with INFO even StorageTool prints the whole config)
KAFKA_QUIET_LOG4J="$KAFKA_HOME/log4j2-quiet.properties"

kafka_addr() { printf '%s:%s' "$KAFKA_HOST" "$KAFKA_PORT"; }

kafka_env() {
  printf 'export KAFKA_BOOTSTRAP_SERVERS=%q\n' "$(kafka_addr)"
  # The SASL_SSL listener: for tests and for trying TLS settings by hand (docs/testing.md).
  printf 'export KAFKA_SECURE_BOOTSTRAP_SERVERS=%q\n' "$KAFKA_HOST:$KAFKA_SECURE_PORT"
  printf 'export KAFKA_SECURE_CA=%q\n' "$KAFKA_TLS/ca.pem"
  printf 'export KAFKA_SECURE_USER=%q KAFKA_SECURE_PASSWORD=%q\n' "$KAFKA_SCRAM_USER" "$KAFKA_SCRAM_PASSWORD"
  printf 'export ORDER_PLATFORM_KAFKA_LIB=%q\n' "$KAFKA_LIB"
  printf 'export ORDER_PLATFORM_KAFKA_LOG4J=%q\n' "$KAFKA_QUIET_LOG4J"
}

# kafka_java ARGS...: a short-lived JVM on the Kafka classpath (format, admin and console tools).
kafka_java() {
  java -Xmx256m -XX:+UseSerialGC -XX:TieredStopAtLevel=1 -Djava.awt.headless=true \
    "-Dlog4j2.configurationFile=$KAFKA_QUIET_LOG4J" -cp "$KAFKA_LIB/*" "$@"
}

# write_if_changed FILE: replace FILE with stdin unless it already has that content.
write_if_changed() {
  local tmp
  tmp=$(mktemp "$1.XXXXXX") || return 1
  cat >"$tmp"
  if cmp -s -- "$tmp" "$1"; then
    rm -f -- "$tmp"
  else
    mv -f -- "$tmp" "$1"
  fi
}

kafka_write_log4j() {
  write_if_changed "$KAFKA_BROKER_LOG4J" <<'EOF'
# Written by scripts/stack.sh. Broker log: INFO to stdout (redirect it to a file).
name = order-platform-kafka-broker
status = warn
# keep logging while the broker shuts down (log4j's own JVM shutdown hook would stop it first)
shutdownHook = disable
appender.console.type = Console
appender.console.name = STDOUT
appender.console.layout.type = PatternLayout
appender.console.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.console.ref = STDOUT
logger.request.name = kafka.request.logger
logger.request.level = WARN
logger.statechange.name = state.change.logger
logger.statechange.level = WARN
EOF
  write_if_changed "$KAFKA_QUIET_LOG4J" <<'EOF'
# Written by scripts/stack.sh. Kafka tools and test brokers: warnings and errors to stderr.
name = order-platform-kafka-quiet
status = warn
shutdownHook = disable
appender.console.type = Console
appender.console.name = STDERR
appender.console.target = SYSTEM_ERR
appender.console.layout.type = PatternLayout
appender.console.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = WARN
rootLogger.appenderRef.console.ref = STDERR
EOF
}

kafka_install() {
  local want tmp
  if ! java -version >/dev/null 2>&1; then
    apt_install "$KAFKA_JAVA_PACKAGE"
    java -version >/dev/null 2>&1 || die "kafka: java still missing after installing $KAFKA_JAVA_PACKAGE"
  fi
  want=$(sha256sum -- "$KAFKA_POM" | cut -d' ' -f1)
  if [[ $(cat -- "$KAFKA_STAMP" 2>/dev/null || true) != "$want" ]] || ! compgen -G "$KAFKA_LIB/kafka_*.jar" >/dev/null; then
    if ! have mvn; then
      apt_install maven
    fi
    mkdir -p -- "$KAFKA_HOME"
    tmp="$KAFKA_HOME/lib.tmp"
    rm -rf -- "$tmp"
    log "kafka: fetching Kafka $KAFKA_VERSION jars into $KAFKA_LIB (mvn)"
    if ! mvn -B -q -Dstyle.color=never -f "$KAFKA_POM" dependency:copy-dependencies -DincludeScope=runtime \
      "-DoutputDirectory=$tmp" 2>&1 | sed -u -e 's/\x1b\[[0-9;]*m//g' -e '/^[[:space:]]*$/d' | prefix_lines kafka; then
      die "kafka: mvn dependency:copy-dependencies failed for $KAFKA_POM"
    fi
    compgen -G "$tmp/kafka_*.jar" >/dev/null || die "kafka: mvn put no kafka_*.jar in $tmp"
    rm -rf -- "$KAFKA_LIB"
    mv -- "$tmp" "$KAFKA_LIB"
    echo "$want" >"$KAFKA_STAMP"
  fi
  mkdir -p -- "$KAFKA_HOME"
  kafka_write_log4j
}

kafka_pid() { daemon_pid "$KAFKA_PIDFILE" "kafka.Kafka $KAFKA_CONF" "$KAFKA_PORT"; }

# kafka_conf_port FILE KEY: the port of the listener KEY (PLAINTEXT, CONTROLLER, SASL_SSL) in FILE.
kafka_conf_port() {
  sed -nE "s/^listeners=.*$2:\\/\\/[^,:]*:([0-9]+).*$/\\1/p" "$1" 2>/dev/null | head -n 1 || true
}

kafka_state() {
  local pid port cport sport other
  pid=$(kafka_pid)
  if [[ -n $pid ]]; then
    port=$(kafka_conf_port "$KAFKA_CONF" PLAINTEXT)
    cport=$(kafka_conf_port "$KAFKA_CONF" CONTROLLER)
    sport=$(kafka_conf_port "$KAFKA_CONF" SASL_SSL)
    if [[ $sport != "$KAFKA_SECURE_PORT" ]]; then
      echo "conflict: the broker of $KAFKA_DIR (PID $pid) runs without the SASL_SSL listener on" \
        "$KAFKA_SECURE_PORT (an older configuration); restart it: scripts/stack.sh down kafka && scripts/stack.sh up"
    elif [[ $port != "$KAFKA_PORT" || $cport != "$KAFKA_CONTROLLER_PORT" ]]; then
      echo "conflict: the broker of $KAFKA_DIR (PID $pid) is already running on ports $port/$cport," \
        "not $KAFKA_PORT/$KAFKA_CONTROLLER_PORT; stop it first (scripts/stack.sh down kafka, or kill $pid)" \
        "or set STACK_KAFKA_PORT=$port STACK_KAFKA_CONTROLLER_PORT=$cport"
    else
      echo running
    fi
    return 0
  fi
  for port in "$KAFKA_PORT" "$KAFKA_CONTROLLER_PORT" "$KAFKA_SECURE_PORT"; do
    if port_open "$KAFKA_HOST" "$port"; then
      other=$(proc_args "$(listener_pid "$port")")
      if [[ $other == *kafka.Kafka* ]]; then
        other=' (a Kafka broker with another configuration)'
      else
        other=$(describe_listener "$port")
      fi
      echo "conflict: $KAFKA_HOST:$port is in use by another process$other, not by the broker of" \
        "$KAFKA_DIR; stop it or pick other ports with STACK_KAFKA_PORT / STACK_KAFKA_CONTROLLER_PORT / STACK_KAFKA_SECURE_PORT"
      return 0
    fi
  done
  echo stopped
}

# --- a tiny Kafka protocol client in bash: readiness and topic checks without starting a JVM ---

# kafka_call PORT REQUEST_HEX: send one request (header and body as hex digits, no length prefix)
# to the broker and print the response (without its length) as space-separated hex bytes;
# non-zero when there is no complete answer within 3 seconds.
kafka_call() {
  # shellcheck disable=SC2016 # expanded by the inner bash
  timeout 3 bash -c '
    exec 3<>"/dev/tcp/$1/$2" || exit 1
    printf "%08x%s" $((${#3} / 2)) "$3" | sed "s/../\\\\x&/g" | { IFS= read -r esc; printf "%b" "$esc" >&3; }
    n=$(dd bs=4 count=1 iflag=fullblock status=none <&3 | od -An -tu4 --endian=big | tr -d " ")
    [[ $n =~ ^[0-9]+$ ]] && ((n > 0 && n < 16777216)) || exit 1
    dd bs="$n" count=1 iflag=fullblock status=none <&3 | od -An -v -tx1 | tr -s " \n" "  "
  ' _ "$KAFKA_HOST" "$1" "$2" 2>/dev/null
}

# kafka_hexstr STRING: a Kafka protocol STRING (int16 length + bytes) as hex digits.
kafka_hexstr() {
  printf '%04x' "${#1}"
  printf '%s' "$1" | od -An -v -tx1 | tr -d ' \n'
}

# kafka_metadata PORT TOPIC: one Metadata v4 request for TOPIC (never auto-creating it); prints
# "BROKERS TOPIC_ERROR PARTITIONS": the number of live brokers, the topic's error code (0 = it
# exists, 3 = UNKNOWN_TOPIC_OR_PARTITION) and its partition count. Non-zero if no valid answer.
kafka_metadata() {
  local hex brokers err parts k n
  local -a b
  local -i i=0 v
  hex=$(kafka_call "$1" "00030004000000010008$(printf '%s' stack.sh | od -An -v -tx1 | tr -d ' \n')00000001$(kafka_hexstr "$2")00") ||
    return 1
  read -r -a b <<<"$hex"
  # _int LEN: read a big-endian integer of LEN bytes at i into v (signed for 2 and 4), advance i
  _int() {
    ((i + $1 <= ${#b[@]})) || return 1
    v=0
    for ((k = 0; k < $1; k++)); do v=$((v * 256 + 16#${b[i + k]})); done
    i+=$1
    if (($1 == 2 && v >= 32768)); then v=$((v - 65536)); fi
    if (($1 == 4 && v >= 2147483648)); then v=$((v - 4294967296)); fi
  }
  _str() { _int 2 && { ((v < 0)) || { ((i + v <= ${#b[@]})) && i+=v; }; }; } # skip a nullable string
  _int 4 && _int 4 || return 1 # correlation id, throttle_time_ms
  _int 4 || return 1
  brokers=$v
  ((brokers >= 0 && brokers < 10000)) || return 1
  for ((n = 0; n < brokers; n++)); do
    _int 4 && _str && _int 4 && _str || return 1 # node_id, host, port, rack
  done
  _str && _int 4 || return 1 # cluster_id, controller_id
  _int 4 && ((v == 1)) || return 1
  _int 2 || return 1
  err=$v
  _str && _int 1 && _int 4 || return 1 # name, is_internal, partitions
  parts=$v
  echo "$brokers $err $parts"
}

# Ready: the broker answers a Metadata request and lists itself as a live (unfenced) broker, so
# it has caught up with the metadata log and can lead partitions. This costs a few milliseconds,
# where a JVM tool (TopicCommand --list) would take 1-3 seconds per poll on 2 cores.
kafka_ready() {
  local brokers rest
  read -r brokers rest < <(kafka_metadata "$KAFKA_PORT" "$KAFKA_TOPIC") || true
  : "$rest"
  [[ $brokers =~ ^[0-9]+$ ]] && ((brokers >= 1))
}

# kafka_tls: a CA and a broker certificate for 127.0.0.1 and localhost, made once (openssl).
kafka_tls() {
  [[ -s $KAFKA_TLS/broker.pem && -s $KAFKA_TLS/ca.pem ]] && return 0
  have openssl || apt_install openssl
  mkdir -p -- "$KAFKA_TLS" || return 1
  log "kafka: making a CA and a broker certificate in $KAFKA_TLS"
  (
    cd -- "$KAFKA_TLS" &&
      openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.pem -days 3650 \
        -subj /CN=order-platform-local-ca &&
      openssl req -newkey rsa:2048 -nodes -keyout broker.key -out broker.csr -subj /CN=localhost &&
      printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\n' >broker.ext &&
      openssl x509 -req -in broker.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 3650 \
        -extfile broker.ext -out broker.crt &&
      cat broker.key broker.crt >broker.pem.tmp && mv -f broker.pem.tmp broker.pem
  ) >"$KAFKA_DIR/tls.log" 2>&1 || {
    tail_log "$KAFKA_DIR/tls.log"
    log "kafka: making the TLS certificates failed"
    return 1
  }
}

kafka_write_conf() {
  write_if_changed "$KAFKA_CONF" <<EOF
# Written by scripts/stack.sh on every start (edits are lost): single combined broker+controller.
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@$KAFKA_HOST:$KAFKA_CONTROLLER_PORT
controller.listener.names=CONTROLLER
listeners=PLAINTEXT://$KAFKA_HOST:$KAFKA_PORT,CONTROLLER://$KAFKA_HOST:$KAFKA_CONTROLLER_PORT,SASL_SSL://$KAFKA_HOST:$KAFKA_SECURE_PORT
advertised.listeners=PLAINTEXT://$KAFKA_HOST:$KAFKA_PORT,SASL_SSL://$KAFKA_HOST:$KAFKA_SECURE_PORT
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT,SASL_SSL:SASL_SSL
sasl.enabled.mechanisms=SCRAM-SHA-512
listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
ssl.keystore.type=PEM
ssl.keystore.location=$KAFKA_TLS/broker.pem
ssl.truststore.type=PEM
ssl.truststore.location=$KAFKA_TLS/ca.pem
log.dirs=$KAFKA_DATA
num.partitions=3
offsets.topic.replication.factor=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
auto.create.topics.enable=false
delete.topic.enable=true
num.network.threads=2
num.io.threads=4
EOF
}

# A cluster id is 16 random bytes in unpadded base64url; one starting with '-' would read as an
# option on StorageTool's command line (Kafka's own Uuid.randomUuid() avoids those too).
kafka_new_cluster_id() {
  local id='-'
  while [[ $id == -* ]]; do
    id=$(head -c 16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=\n')
  done
  echo "$id"
}

kafka_start() {
  local cid pid
  mkdir -p -- "$KAFKA_DIR" || return 1
  kafka_tls || return 1
  kafka_write_conf || return 1

  # Format the storage once; later starts reuse it (topics and offsets survive down/up).
  if [[ ! -f $KAFKA_DATA/meta.properties ]]; then
    if [[ -d $KAFKA_DATA ]]; then
      log "kafka: removing unformatted storage $KAFKA_DATA"
      rm -rf -- "$KAFKA_DATA" || return 1
    fi
    cid=$(cat -- "$KAFKA_DIR/cluster.id" 2>/dev/null || true)
    if [[ ! $cid =~ ^[A-Za-z0-9_][A-Za-z0-9_-]{21}$ ]]; then
      cid=$(kafka_new_cluster_id)
      echo "$cid" >"$KAFKA_DIR/cluster.id"
    fi
    log "kafka: formatting $KAFKA_DATA (cluster id $cid)"
    if ! kafka_java kafka.tools.StorageTool format -t "$cid" -c "$KAFKA_CONF" \
      --add-scram "SCRAM-SHA-512=[name=$KAFKA_SCRAM_USER,password=$KAFKA_SCRAM_PASSWORD]" \
      >"$KAFKA_DIR/format.log" 2>&1; then
      tail_log "$KAFKA_DIR/format.log"
      log "kafka: kafka.tools.StorageTool format failed"
      return 1
    fi
    touch -- "$KAFKA_DIR/scram-users"
  fi

  # C1 only (-XX:TieredStopAtLevel=1): ready in ~2 s instead of ~4 s on 2 cores; a test
  # broker's load does not need C2's peak throughput.
  launch_daemon "$KAFKA_PIDFILE" "$KAFKA_LOG" \
    java -Xms256m -Xmx1g -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:TieredStopAtLevel=1 \
    -Djava.awt.headless=true "-Dlog4j2.configurationFile=$KAFKA_BROKER_LOG4J" "-Dkafka.logs.dir=$KAFKA_DIR" \
    -cp "$KAFKA_LIB/*" kafka.Kafka "$KAFKA_CONF"
  pid=$(cat -- "$KAFKA_PIDFILE")
  wait_started kafka "$pid" "$KAFKA_LOG"
}

kafka_provision() {
  local brokers err parts
  # Storage formatted before the SASL_SSL listener existed has no SCRAM user yet.
  if [[ ! -f $KAFKA_DIR/scram-users ]]; then
    log "kafka: creating the SCRAM user $KAFKA_SCRAM_USER"
    kafka_java kafka.admin.ConfigCommand --bootstrap-server "$(kafka_addr)" --alter --entity-type users \
      --entity-name "$KAFKA_SCRAM_USER" --add-config "SCRAM-SHA-512=[password=$KAFKA_SCRAM_PASSWORD]" 2>&1 |
      prefix_lines kafka && touch -- "$KAFKA_DIR/scram-users" ||
      die "kafka: creating the SCRAM user $KAFKA_SCRAM_USER failed"
  fi
  read -r brokers err parts < <(kafka_metadata "$KAFKA_PORT" "$KAFKA_TOPIC") || true
  : "$brokers"
  if [[ $err == 0 ]]; then
    if [[ $parts != "$KAFKA_TOPIC_PARTITIONS" ]]; then
      log "kafka: note: topic $KAFKA_TOPIC has $parts partitions, not $KAFKA_TOPIC_PARTITIONS (left as is)"
    fi
    return 0
  fi
  log "kafka: creating topic $KAFKA_TOPIC ($KAFKA_TOPIC_PARTITIONS partitions, replication factor 1)"
  kafka_java org.apache.kafka.tools.TopicCommand --bootstrap-server "$(kafka_addr)" --create --if-not-exists \
    --topic "$KAFKA_TOPIC" --partitions "$KAFKA_TOPIC_PARTITIONS" --replication-factor 1 2>&1 |
    grep -v '^WARNING: Due to limitations in metric names' | prefix_lines kafka ||
    die "kafka: creating topic $KAFKA_TOPIC failed"
  read -r brokers err parts < <(kafka_metadata "$KAFKA_PORT" "$KAFKA_TOPIC") || true
  [[ $err == 0 ]] || die "kafka: topic $KAFKA_TOPIC still missing after TopicCommand --create (error code '$err')"
}

kafka_stop() {
  local pid
  pid=$(kafka_pid)
  if [[ -n $pid ]]; then
    # controlled shutdown of a combined node takes a few seconds
    stop_daemon kafka "$pid" 60
  fi
  rm -f -- "$KAFKA_PIDFILE"
}

# ---------------------------------------------------------------------------------------------
# moto: DynamoDB-compatible server (moto_server), in a virtualenv built from tools/moto
# ---------------------------------------------------------------------------------------------
# The virtualenv is $CACHE_BASE/moto-<hash of requirements.txt>/venv, stamped when complete.
# Nothing to provision: the service's own code and tests create their tables. Tests that need a
# private moto (to stop it for outage tests) run $ORDER_PLATFORM_MOTO_SERVER -H 127.0.0.1 -p PORT.

MOTO_HOST=127.0.0.1
MOTO_PORT=${STACK_MOTO_PORT:-58000}
MOTO_REQUIREMENTS="$ROOT/tools/moto/requirements.txt"
MOTO_DIR="$STACK_DIR/moto"
MOTO_LOG="$MOTO_DIR/moto.log"
MOTO_PIDFILE="$MOTO_DIR/moto.pid"
MOTO_REGION=us-east-1
is_port "$MOTO_PORT" || die "STACK_MOTO_PORT must be a TCP port number, got '$MOTO_PORT'"
[[ -r $MOTO_REQUIREMENTS ]] || die "moto: $MOTO_REQUIREMENTS is missing"
MOTO_HASH=$(sha256sum -- "$MOTO_REQUIREMENTS" | cut -c1-16)
MOTO_VENV="$CACHE_BASE/moto-$MOTO_HASH/venv"
MOTO_SERVER="$MOTO_VENV/bin/moto_server"

moto_addr() { printf '%s:%s' "$MOTO_HOST" "$MOTO_PORT"; }

moto_env() {
  printf 'export DYNAMODB_ENDPOINT=%q\n' "http://$(moto_addr)"
  printf 'export AWS_REGION=%q\n' "$MOTO_REGION"
  printf 'export AWS_ACCESS_KEY_ID=test\n'
  printf 'export AWS_SECRET_ACCESS_KEY=test\n'
  printf 'export ORDER_PLATFORM_MOTO_SERVER=%q\n' "$MOTO_SERVER"
}

moto_install() {
  local stamp="$MOTO_VENV/.order-platform-stamp" want py
  have curl || apt_install curl
  want=$(sha256sum -- "$MOTO_REQUIREMENTS" | cut -d' ' -f1)
  # the stamp says the install finished; a venv whose interpreter vanished must be rebuilt too
  if [[ $(cat -- "$stamp" 2>/dev/null || true) == "$want" && -x $MOTO_SERVER ]] &&
    "$MOTO_VENV/bin/python" -c '' >/dev/null 2>&1; then
    return 0
  fi
  py=$(command -v python3 || true)
  if [[ -z $py ]]; then
    apt_install python3 python3-venv
    py=$(command -v python3) || die "moto: python3 still missing after installing python3"
  fi
  if ! "$py" -c 'import sys; sys.exit(sys.version_info < (3, 9))'; then
    die "moto: $py is $("$py" -V 2>&1); moto 5 needs Python 3.9 or later"
  fi
  log "moto: creating virtualenv $MOTO_VENV (pip install -r $MOTO_REQUIREMENTS)"
  rm -rf -- "$MOTO_VENV"
  mkdir -p -- "$(dirname -- "$MOTO_VENV")"
  if ! "$py" -m venv "$MOTO_VENV" 2>&1 | prefix_lines moto; then
    rm -rf -- "$MOTO_VENV"
    die "moto: '$py -m venv' failed (on Debian's python3, install python3-venv)"
  fi
  if ! "$MOTO_VENV/bin/python" -m pip install -q --no-input -r "$MOTO_REQUIREMENTS" 2>&1 | prefix_lines moto; then
    die "moto: pip install -r $MOTO_REQUIREMENTS failed"
  fi
  [[ -x $MOTO_SERVER ]] || die "moto: $MOTO_SERVER missing after pip install"
  echo "$want" >"$stamp"
}

moto_pid() { daemon_pid "$MOTO_PIDFILE" moto_server "$MOTO_PORT"; }

moto_state() {
  local pid args
  pid=$(moto_pid)
  if [[ -n $pid ]]; then
    args=" $(proc_args "$pid")"
    if [[ $args != *" -p $MOTO_PORT "* && $args != *" --port $MOTO_PORT "* && $args != *" --port=$MOTO_PORT "* ]]; then
      echo "conflict: the moto_server of $MOTO_PIDFILE (PID $pid) is running on another port;" \
        "stop it first (scripts/stack.sh down moto, or kill $pid) or set STACK_MOTO_PORT to its port"
    else
      echo running
    fi
  elif port_open "$MOTO_HOST" "$MOTO_PORT"; then
    echo "conflict: $MOTO_HOST:$MOTO_PORT is in use by another process$(describe_listener "$MOTO_PORT")," \
      "not by moto_server; stop it or pick another port with STACK_MOTO_PORT"
  else
    echo stopped
  fi
}

# Ready: a DynamoDB ListTables call answers. moto picks the service from the Authorization
# header's credential scope (without one the request goes to its S3 handler), so send a fake
# SigV4 header; moto does not check the signature.
moto_ready() {
  local out
  out=$(curl -s -m 3 -X POST "http://$(moto_addr)/" \
    -H 'X-Amz-Target: DynamoDB_20120810.ListTables' \
    -H 'Content-Type: application/x-amz-json-1.0' \
    -H "Authorization: AWS4-HMAC-SHA256 Credential=test/20260101/$MOTO_REGION/dynamodb/aws4_request, SignedHeaders=host;x-amz-target, Signature=0" \
    -d '{}' 2>/dev/null) || return 1
  [[ $out == *'"TableNames"'* ]]
}

moto_start() {
  local pid
  mkdir -p -- "$MOTO_DIR" || return 1
  launch_daemon "$MOTO_PIDFILE" "$MOTO_LOG" "$MOTO_SERVER" -H "$MOTO_HOST" -p "$MOTO_PORT"
  pid=$(cat -- "$MOTO_PIDFILE")
  wait_started moto "$pid" "$MOTO_LOG"
}

moto_provision() {
  # Nothing: the order service creates its DynamoDB tables itself (and its tests theirs).
  :
}

moto_stop() {
  local pid
  pid=$(moto_pid)
  if [[ -n $pid ]]; then
    stop_daemon moto "$pid" 15
  fi
  rm -f -- "$MOTO_PIDFILE"
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
