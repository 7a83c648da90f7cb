#!/bin/sh
# One node of compose.yaml's Kafka cluster: combined broker+controller, three static voters, SASL/SCRAM
# on the broker listener, SASL/PLAIN between controllers, ACLs enforced; users are written at format time.
set -eu
: "${NODE_ID:?}" "${KAFKA_CLUSTER_ID:?}" "${KAFKA_ADMIN_PASSWORD:?}"
props=/tmp/server.properties
cat > "$props" <<PROPS
process.roles=broker,controller
node.id=${NODE_ID}
controller.quorum.voters=1@kafka1:9093,2@kafka2:9093,3@kafka3:9093
listeners=BROKER://:9092,CONTROLLER://:9093
advertised.listeners=BROKER://kafka${NODE_ID}:9092
listener.security.protocol.map=BROKER:SASL_PLAINTEXT,CONTROLLER:SASL_PLAINTEXT
inter.broker.listener.name=BROKER
controller.listener.names=CONTROLLER
sasl.mechanism.inter.broker.protocol=SCRAM-SHA-512
sasl.mechanism.controller.protocol=PLAIN
listener.name.broker.sasl.enabled.mechanisms=SCRAM-SHA-512
listener.name.broker.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username="admin" password="${KAFKA_ADMIN_PASSWORD}";
listener.name.controller.sasl.enabled.mechanisms=PLAIN
listener.name.controller.plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required username="admin" password="${KAFKA_ADMIN_PASSWORD}" user_admin="${KAFKA_ADMIN_PASSWORD}";
authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer
allow.everyone.if.no.acl.found=false
super.users=User:admin
log.dirs=/var/lib/kafka/data
auto.create.topics.enable=false
num.partitions=6
default.replication.factor=3
min.insync.replicas=2
offsets.topic.replication.factor=3
transaction.state.log.replication.factor=3
transaction.state.log.min.isr=2
group.initial.rebalance.delay.ms=0
message.max.bytes=4194304
replica.fetch.max.bytes=4194304
PROPS
cat > /tmp/admin.properties <<PROPS
security.protocol=SASL_PLAINTEXT
sasl.mechanism=SCRAM-SHA-512
sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username="admin" password="${KAFKA_ADMIN_PASSWORD}";
PROPS
if [ ! -f /var/lib/kafka/data/meta.properties ]; then
  set -- --add-scram "SCRAM-SHA-512=[name=admin,password=${KAFKA_ADMIN_PASSWORD}]"
  for user in leads qualification importer activity analytics integrator directory operator; do
    var=$(echo "$user" | tr a-z A-Z)_KAFKA_SASL_PASSWORD
    eval "password=\${$var:?}"
    set -- "$@" --add-scram "SCRAM-SHA-512=[name=${user},password=${password}]"
  done
  /opt/kafka/bin/kafka-storage.sh format --cluster-id="${KAFKA_CLUSTER_ID}" -c "$props" --ignore-formatted "$@"
fi
exec /opt/kafka/bin/kafka-server-start.sh "$props"
