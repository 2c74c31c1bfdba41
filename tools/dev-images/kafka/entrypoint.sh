#!/bin/sh
# shellcheck shell=dash
# Entrypoint of localhost/order-dev-kafka (scripts/images.sh dev), run by dash as user 65532: one
# Kafka process that is both broker and KRaft controller, configured as scripts/stack.sh's broker
# (replication factors 1, no automatic topic creation) without its SASL_SSL listener.
#
#   KAFKA_ADVERTISED_ADDRESS  host:port the broker tells clients to connect to (default
#                             localhost:9092); the chart sets its Service, <release>-kafka:9092
#   KAFKA_HEAP_OPTS           the JVM's heap flags (default -Xms256m -Xmx512m)
#
# The storage is formatted on the first start with a random cluster id; later starts of the same
# container reuse it. The image has a shell and a JRE, not coreutils: builtins only here.
set -eu

advertised=${KAFKA_ADVERTISED_ADDRESS:-localhost:9092}
dir=/var/lib/kafka
conf=$dir/server.properties

printf '%s\n' \
  '# Written by the entrypoint on every start (edits are lost).' \
  process.roles=broker,controller \
  node.id=1 \
  controller.quorum.voters=1@127.0.0.1:9093 \
  controller.listener.names=CONTROLLER \
  listeners=PLAINTEXT://:9092,CONTROLLER://127.0.0.1:9093 \
  "advertised.listeners=PLAINTEXT://$advertised" \
  inter.broker.listener.name=PLAINTEXT \
  listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT \
  "log.dirs=$dir/data" \
  num.partitions=3 \
  offsets.topic.replication.factor=1 \
  transaction.state.log.replication.factor=1 \
  transaction.state.log.min.isr=1 \
  share.coordinator.state.topic.replication.factor=1 \
  share.coordinator.state.topic.min.isr=1 \
  group.initial.rebalance.delay.ms=0 \
  auto.create.topics.enable=false \
  delete.topic.enable=true \
  num.network.threads=2 \
  num.io.threads=4 >"$conf"

# tool CLASS ARGS...: a short-lived JVM for Kafka's storage tool (warnings only, on stderr).
tool() {
  java -Xmx256m -XX:+UseSerialGC -XX:TieredStopAtLevel=1 -Djava.awt.headless=true \
    -Dlog4j2.configurationFile=/opt/kafka/config/log4j2-tools.properties -cp '/opt/kafka/libs/*' "$@"
}

if [ ! -f "$dir/data/meta.properties" ]; then
  # Kafka's own random ids never start with '-', which would read as an option.
  cluster_id=$(tool kafka.tools.StorageTool random-uuid)
  tool kafka.tools.StorageTool format --cluster-id "$cluster_id" --config "$conf"
fi

# C1 only (-XX:TieredStopAtLevel=1): ready in about half the time on small nodes, as stack.sh's.
# shellcheck disable=SC2086 # KAFKA_HEAP_OPTS holds several flags
exec java ${KAFKA_HEAP_OPTS:--Xms256m -Xmx512m} -XX:+UseG1GC -XX:MaxGCPauseMillis=20 \
  -XX:TieredStopAtLevel=1 -Djava.awt.headless=true \
  -Dlog4j2.configurationFile=/opt/kafka/config/log4j2.properties -cp '/opt/kafka/libs/*' \
  kafka.Kafka "$conf"
