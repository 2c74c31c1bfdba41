#!/usr/bin/env bash
# `make bench`: a release build of the service on its own database, driven by
# `order-service bench`. Extra arguments go to the bench (e.g. --clients 32 --duration 20s).
# With --saga-rate N (e.g. `make bench ARGS="--saga-rate 200 --duration 30s"`) it runs the saga
# benchmark: the bench serves fake participants answering in 5 ms on BENCH_PARTICIPANTS_ADDR
# and the service is started pointing at them. With --soak (e.g. `make bench ARGS="--soak
# --duration 10m"`) it runs the soak benchmark with retentions shortened so that the tables
# level off within minutes (each overridable by its ORDER_SERVICE_* variable), and Kafka as
# the only sink unless ORDER_SERVICE_SINKS says otherwise (moto cannot keep up with the API's
# rate for long: its backlog, not the retention, would set the outbox's size). With --auth the
# service validates bearer tokens: a local Dex (scripts/dex.sh) is started as the issuer on
# BENCH_DEX_PORT, one staff token is fetched with the password grant and every request of the
# bench carries it; without it the service runs with authentication off and says so. With
# --reports (e.g. `make bench ARGS="--reports --duration 20s"`) it runs the reporting benchmark:
# a second service, reading its reports from the stack's read replica, is started on
# BENCH_REPLICA_ADDR, and the bench runs creates alone, then with --report-clients (4) asking
# the first service (reports from the primary) for reports, then the second (from the replica).
# With --pin-cpus as well, the two sides get a CPU each, as if on machines of their own: the
# primary's PostgreSQL, the first service and the bench on CPU 0; the replica's PostgreSQL and
# the second service on CPU 1 (the stack's servers get every CPU back at the end).
# --catalog (e.g. `make bench ARGS="--catalog"`) the service prices creates from a catalog the
# bench serves on BENCH_CATALOG_ADDR (1,000 SKUs with Zipf-like popularity; --catalog-skus,
# --zipf-exponent, --catalog-latency, --cold-duration): cold cache, then warm, then the same
# statement run directly. --help prints this and the bench's own flags, and starts nothing.
set -euo pipefail
for arg in "$@"; do
  if [ "$arg" = --help ] || [ "$arg" = -h ]; then
    sed -n '2,/^set -euo/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//'
    echo
    echo "The bench's flags (order-service bench --help):"
    exec cargo run --quiet --locked -p order-service -- bench --help
  fi
done
. "$(dirname -- "${BASH_SOURCE[0]}")/common.sh"
cd "$ROOT"

ensure_rust
with_stack

say "building order-service and order-operator (release)"
cargo build --locked --release -p order-service -p order-operator
bin="$CARGO_TARGET_DIR/release/order-service"

# A database of its own, new each run, so figures do not depend on earlier data.
bench_db=orders_bench
psql "$DATABASE_URL" -qc "DROP DATABASE IF EXISTS $bench_db WITH (FORCE)"
psql "$DATABASE_URL" -qc "CREATE DATABASE $bench_db"
export DATABASE_URL="${DATABASE_URL%/*}/$bench_db"
# Tables and topic of their own, so the figures do not mix with `make run`'s: the local example
# with another prefix and topic, provisioned (with the migrations) by the operator's `apply`.
run_id=$(date +%s)
export ORDER_SERVICE_TABLE_PREFIX=bench-$run_id ORDER_SERVICE_EVENTS_TOPIC=bench.events.$run_id
mkdir -p "$ROOT/target/bench"
sed -e "s/tablePrefix: orders/tablePrefix: $ORDER_SERVICE_TABLE_PREFIX/" \
  -e "s/orders\.events/$ORDER_SERVICE_EVENTS_TOPIC/g" examples/local.yaml >"$ROOT/target/bench/platform.yaml"
"$CARGO_TARGET_DIR/release/order-operator" apply -f "$ROOT/target/bench/platform.yaml" \
  --dynamodb-endpoint "$DYNAMODB_ENDPOINT" --kafka-bootstrap-servers "$KAFKA_BOOTSTRAP_SERVERS" >/dev/null

# wait_for WHAT URL PID LOG: until URL answers (up to 10 s); WHAT's log when PID dies first.
wait_for() {
  say "waiting for $1 on $2 (up to 10 s)"
  for _ in $(seq 1 100); do
    curl -fsS "$2" >/dev/null 2>&1 && return 0
    kill -0 "$3" 2>/dev/null || { cat "$4" >&2; exit 1; }
    sleep 0.1
  done
  echo "bench: $1 did not answer $2 within 10 s" >&2
  cat "$4" >&2
  exit 1
}

# A Dex of this run's own as the issuer (its one static client is the audience, one staff user
# in the `staff` group), the service pointed at it, and a token for the bench.
start_dex() {
  local dex port dir issuer secret=bench-secret token
  dex=$("$ROOT/scripts/dex.sh" path)
  port=${BENCH_DEX_PORT:-15556}
  dir="$ROOT/target/bench/dex"
  issuer="http://127.0.0.1:$port/dex"
  mkdir -p "$dir"
  # The bcrypt hash of "password" (Dex's own example configuration uses it too).
  cat >"$dir/config.yaml" <<YAML
issuer: $issuer
storage: {type: memory}
web: {http: "127.0.0.1:$port"}
expiry: {idTokens: 24h}
oauth2: {passwordConnector: local, skipApprovalScreen: true}
enablePasswordDB: true
staticClients:
  - {id: order-service, name: order-service, secret: $secret, redirectURIs: ["http://127.0.0.1/callback"]}
staticPasswords:
  - email: staff@example.com
    hash: "\$2a\$10\$2b2cU8CPhOTaGrs1HRQuAueS7JTT5ZHsHSzYiFPm1leZck7Mc8T4W"
    username: staff
    userID: staff
    groups: [staff]
YAML
  "$dex" serve "$dir/config.yaml" >"$dir/dex.log" 2>&1 &
  dex_pid=$!
  on_exit 'kill -TERM "$dex_pid" 2>/dev/null && wait "$dex_pid" 2>/dev/null'
  wait_for "Dex" "$issuer/.well-known/openid-configuration" "$dex_pid" "$dir/dex.log"
  token=$(curl -fsS -u "order-service:$secret" -d grant_type=password -d username=staff@example.com \
    -d password=password --data-urlencode "scope=openid email groups" "$issuer/token" |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["access_token"])') ||
    { cat "$dir/dex.log" >&2; echo "bench: no token from Dex" >&2; exit 1; }
  export ORDER_SERVICE_AUTH_ISSUER=$issuer ORDER_SERVICE_AUTH_AUDIENCE=order-service \
    ORDER_SERVICE_AUTH_CUSTOMER_CLAIM=email ORDER_SERVICE_BENCH_TOKEN=$token
  unset ORDER_SERVICE_AUTH_DISABLED
  say "authentication on: issuer $issuer, one staff token for every client"
}

addr=${BENCH_ADDR:-127.0.0.1:18080}
log="$ROOT/target/bench/service.log"
bench_args=()
auth=false
reports=false
pin=false
for arg in "$@"; do
  case $arg in
    --auth) auth=true ;;
    --reports) reports=true ;;
    --pin-cpus) pin=true ;;
    *) bench_args+=("$arg") ;;
  esac
done
if [[ " $* " == *" --saga-rate "* ]]; then
  participants=${BENCH_PARTICIPANTS_ADDR:-127.0.0.1:18090}
  export ORDER_SERVICE_CUSTOMER_URL="http://$participants/" ORDER_SERVICE_INVENTORY_URL="http://$participants/" \
    ORDER_SERVICE_PAYMENT_URL="http://$participants/"
  bench_args+=(--participants-addr "$participants")
fi
if [[ " $* " == *" --catalog "* ]]; then
  catalog=${BENCH_CATALOG_ADDR:-127.0.0.1:18091}
  export ORDER_SERVICE_CATALOG_URL="http://$catalog/"
  without=()
  for arg in "${bench_args[@]}"; do [ "$arg" = --catalog ] || without+=("$arg"); done
  bench_args=("${without[@]}" --catalog-addr "$catalog")
  say "catalog: served by the bench on $catalog"
fi
if [[ " $* " == *" --soak "* ]]; then
  export ORDER_SERVICE_SINKS=${ORDER_SERVICE_SINKS:-kafka} \
    ORDER_SERVICE_OUTBOX_RETENTION=${ORDER_SERVICE_OUTBOX_RETENTION:-1m} \
    ORDER_SERVICE_IDEMPOTENCY_KEY_TTL=${ORDER_SERVICE_IDEMPOTENCY_KEY_TTL:-2m} \
    ORDER_SERVICE_SAGA_RETENTION=${ORDER_SERVICE_SAGA_RETENTION:-2m}
  say "soak: sinks $ORDER_SERVICE_SINKS, outbox retention $ORDER_SERVICE_OUTBOX_RETENTION, idempotency keys $ORDER_SERVICE_IDEMPOTENCY_KEY_TTL, finished sagas $ORDER_SERVICE_SAGA_RETENTION"
fi
if $auth; then
  start_dex
else
  export ORDER_SERVICE_AUTH_DISABLED=${ORDER_SERVICE_AUTH_DISABLED:-true}
  say "authentication off (the service warns in its log); --auth measures it on"
fi
ORDER_SERVICE_LOG=warn "$bin" serve --addr "$addr" 2>"$log" &
service=$!
on_exit 'kill -TERM "$service" 2>/dev/null && wait "$service"'

wait_for "the service" "http://$addr/readyz" "$service" "$log"
if $reports; then
  # The same service and database, its reports (and lists) read from the replica's copy.
  replica_addr=${BENCH_REPLICA_ADDR:-127.0.0.1:18081}
  replica_log="$ROOT/target/bench/service-replica.log"
  # BENCH_REPLICA_URL: a replica of the bench database elsewhere (its own machine).
  DATABASE_READ_URL="${BENCH_REPLICA_URL:-${ORDER_PLATFORM_REPLICA_URL%/*}/$bench_db}" ORDER_SERVICE_LOG=warn \
    "$bin" serve --addr "$replica_addr" --retention false --relay false --saga-workers false 2>"$replica_log" &
  replica_service=$!
  on_exit 'kill -TERM "$replica_service" 2>/dev/null && wait "$replica_service"'
  wait_for "the service reading the replica" "http://$replica_addr/readyz" "$replica_service" "$replica_log"
  say "waiting for the replica to serve the bench database (up to 30 s)"
  for _ in $(seq 1 300); do
    curl -fsS "http://$replica_addr/readyz" | grep -q '"replica":{"status":"ok"' && break
    sleep 0.1
  done
  curl -fsS "http://$replica_addr/readyz" | grep -q '"replica":{"status":"ok"' ||
    { cat "$replica_log" >&2; echo "bench: the replica does not serve $bench_db" >&2; exit 1; }
  bench_args+=(--reports-primary-url "http://$addr" --reports-replica-url "http://$replica_addr")
fi
bench_cmd=("$bin" bench --url "http://$addr" "${bench_args[@]}")
if $pin; then
  $reports || { echo "bench: --pin-cpus goes with --reports" >&2; exit 2; }
  (($(nproc) >= 2)) || { echo "bench: --pin-cpus needs two CPUs" >&2; exit 2; }
  ensure_commands taskset=util-linux
  # pin_tree CPUS PID: the process, its threads and its children (PostgreSQL's backends fork
  # from the postmaster, so the later ones inherit it too).
  pin_tree() {
    local child
    taskset -a -p -c "$1" "$2" >/dev/null
    for child in $(pgrep -P "$2"); do taskset -a -p -c "$1" "$child" >/dev/null; done
  }
  primary_pm=$(head -n 1 "$ROOT/target/stack/postgres/data/postmaster.pid")
  replica_pm=$(head -n 1 "$ROOT/target/stack/replica/data/postmaster.pid")
  all_cpus="0-$(($(nproc) - 1))"
  on_exit 'pin_tree "$all_cpus" "$primary_pm"; pin_tree "$all_cpus" "$replica_pm"'
  pin_tree 0 "$primary_pm"
  pin_tree 0 "$service"
  pin_tree 1 "$replica_pm"
  pin_tree 1 "$replica_service"
  say "pinned: primary, service and bench on CPU 0; replica and its service on CPU 1"
  bench_cmd=(taskset -c 0 "${bench_cmd[@]}")
fi
"${bench_cmd[@]}"
