#!/bin/sh
# shellcheck shell=dash
# Entrypoint of localhost/order-dev-postgres (scripts/images.sh dev), run by dash as user 65532.
# What the official postgres image's does, reduced to what the chart's development stack needs:
# on an empty data directory, initdb with the superuser POSTGRES_USER (default postgres) and its
# password POSTGRES_PASSWORD (required), scram-sha-256 for every TCP connection and trust on the
# unix socket, and the database POSTGRES_DB (default: POSTGRES_USER); then postgres listening on
# every address of the pod, with this script's arguments passed on (e.g. -c max_connections=300).
# The image has a shell and PostgreSQL's own programs, not coreutils: builtins only here.
set -eu

: "${POSTGRES_PASSWORD:?must be set: the password of the superuser POSTGRES_USER}"
user=${POSTGRES_USER:-postgres}
db=${POSTGRES_DB:-$user}
export PGDATA="${PGDATA:-/var/lib/postgresql/data}"

if [ ! -s "$PGDATA/PG_VERSION" ]; then
  # The password through a pipe, never on a command line or in a file.
  printf '%s\n' "$POSTGRES_PASSWORD" |
    initdb --username="$user" --pwfile=/dev/stdin --auth-local=trust --auth-host=scram-sha-256 \
      --encoding=UTF8 --locale=C.UTF-8
  # initdb's host lines cover loopback only; other pods connect through the Service.
  printf 'host all all all scram-sha-256\n' >>"$PGDATA/pg_hba.conf"
  printf "listen_addresses = '*'\n" >>"$PGDATA/postgresql.conf"
  if [ "$db" != postgres ]; then
    # A server on a socket of its own (no TCP), so no client, the readiness probe's pg_isready
    # included, sees it before the database exists.
    pg_ctl --wait --silent --options="-c listen_addresses='' -c unix_socket_directories=$PGDATA" start
    createdb --host="$PGDATA" --username="$user" "$db"
    pg_ctl --wait --silent --mode=fast stop
  fi
fi

exec postgres "$@"
