#!/usr/bin/env bash
# `make run`: the platform locally. Brings the stack up (with its read replica, which serves
# the order lists and reports), provisions it with
# `order-operator apply -f examples/local.yaml` (DynamoDB tables, Kafka topic, PostgreSQL
# migrations), serves the API on ORDER_SERVICE_ADDR (default 127.0.0.1:8080) until Ctrl-C, then
# stops what it started.
set -euo pipefail
. "$(dirname -- "${BASH_SOURCE[0]}")/common.sh"
cd "$ROOT"

ensure_rust
with_stack

say "building order-service and order-operator"
cargo build --locked -p order-service -p order-operator
bin="$CARGO_TARGET_DIR/debug/order-service"

say "provisioning: order-operator apply -f examples/local.yaml"
"$CARGO_TARGET_DIR/debug/order-operator" apply -f examples/local.yaml \
  --dynamodb-endpoint "$DYNAMODB_ENDPOINT" --kafka-bootstrap-servers "$KAFKA_BOOTSTRAP_SERVERS"
export ORDER_SERVICE_ADDR=${ORDER_SERVICE_ADDR:-127.0.0.1:8080}
# Lists and reports read from the stack's streaming replica, as they would in production.
export DATABASE_READ_URL=${DATABASE_READ_URL:-$ORDER_PLATFORM_REPLICA_URL}
# Authentication is on by default in the service; locally it is off unless an issuer is given
# (ORDER_SERVICE_AUTH_ISSUER and ORDER_SERVICE_AUTH_AUDIENCE), and this says so loudly.
if [ -z "${ORDER_SERVICE_AUTH_ISSUER:-}" ]; then
  export ORDER_SERVICE_AUTH_DISABLED=${ORDER_SERVICE_AUTH_DISABLED:-true}
  say "AUTHENTICATION IS OFF: anyone reaching $ORDER_SERVICE_ADDR may read and change every order."
  say "  For bearer tokens set ORDER_SERVICE_AUTH_ISSUER and ORDER_SERVICE_AUTH_AUDIENCE (README, Authentication)."
fi
say "serving on http://$ORDER_SERVICE_ADDR (docs: http://$ORDER_SERVICE_ADDR/docs); Ctrl-C stops"
# Not exec: the EXIT trap must run after the service stops so the stack goes down too.
"$bin" serve &
service=$!
trap 'kill -TERM "$service" 2>/dev/null || true' INT TERM
# The first wait returns when a signal arrives; the second waits for the graceful shutdown.
wait "$service" || true
wait "$service" 2>/dev/null || true
