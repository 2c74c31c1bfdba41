#!/usr/bin/env bash
# `make bench`: a release build of the service on its own database, driven by
# `order-service bench`. Extra arguments go to the bench (e.g. --clients 32 --duration 20s).
# With --saga-rate N (e.g. `make bench ARGS="--saga-rate 200 --duration 30s"`) it runs the saga
# benchmark: the bench serves fake participants answering in 5 ms on BENCH_PARTICIPANTS_ADDR
# and the service is started pointing at them. With --soak (e.g. `make bench ARGS="--soak
# --duration 10m"`) it runs the soak benchmark with retentions shortened so that the tables
# level off within minutes (each overridable by its ORDER_SERVICE_* variable), and Kafka as
# the only sink unless ORDER_SERVICE_SINKS says otherwise (moto cannot keep up with the API's
# rate for long: its backlog, not the retention, would set the outbox's size).
set -euo pipefail
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

addr=${BENCH_ADDR:-127.0.0.1:18080}
log="$ROOT/target/bench/service.log"
bench_args=("$@")
if [[ " $* " == *" --saga-rate "* ]]; then
  participants=${BENCH_PARTICIPANTS_ADDR:-127.0.0.1:18090}
  export ORDER_SERVICE_CUSTOMER_URL="http://$participants/" ORDER_SERVICE_INVENTORY_URL="http://$participants/" \
    ORDER_SERVICE_PAYMENT_URL="http://$participants/"
  bench_args+=(--participants-addr "$participants")
fi
if [[ " $* " == *" --soak "* ]]; then
  export ORDER_SERVICE_SINKS=${ORDER_SERVICE_SINKS:-kafka} \
    ORDER_SERVICE_OUTBOX_RETENTION=${ORDER_SERVICE_OUTBOX_RETENTION:-1m} \
    ORDER_SERVICE_IDEMPOTENCY_KEY_TTL=${ORDER_SERVICE_IDEMPOTENCY_KEY_TTL:-2m} \
    ORDER_SERVICE_SAGA_RETENTION=${ORDER_SERVICE_SAGA_RETENTION:-2m}
  say "soak: sinks $ORDER_SERVICE_SINKS, outbox retention $ORDER_SERVICE_OUTBOX_RETENTION, idempotency keys $ORDER_SERVICE_IDEMPOTENCY_KEY_TTL, finished sagas $ORDER_SERVICE_SAGA_RETENTION"
fi
# Without authentication until the bench fetches tokens from a local issuer (issue 20's bench
# part); the service warns about it in its log.
export ORDER_SERVICE_AUTH_DISABLED=${ORDER_SERVICE_AUTH_DISABLED:-true}
ORDER_SERVICE_LOG=warn "$bin" serve --addr "$addr" 2>"$log" &
service=$!
on_exit 'kill -TERM "$service" 2>/dev/null && wait "$service"'

say "waiting for the service on $addr (up to 10 s)"
for _ in $(seq 1 100); do
  curl -fsS "http://$addr/readyz" >/dev/null 2>&1 && break
  kill -0 "$service" 2>/dev/null || { cat "$log" >&2; exit 1; }
  sleep 0.1
done
"$bin" bench --url "http://$addr" "${bench_args[@]}"
