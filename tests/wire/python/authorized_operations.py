#!/usr/bin/env python3
"""Authorized operations (KIP-430) through confluent-kafka's admin client.

Usage: authorized_operations.py BOOTSTRAP

broker-sim has no authorizer, so, as Kafka without one, it answers every operation the
resource type supports when the client asks for them: describe_cluster, describe_topics and
describe_consumer_groups with include_authorized_operations=True. Without the flag the
operations are absent.

Exits 0 on success, 1 with a message on the first failure, 2 if confluent-kafka is missing.
"""

import sys
import time

try:
    from confluent_kafka import Consumer, TopicCollection
    from confluent_kafka.admin import AclOperation, AdminClient, NewTopic
except ImportError as e:  # pragma: no cover - depends on the machine
    print(f"confluent-kafka is not installed ({e}); run scripts/setup.sh", file=sys.stderr)
    sys.exit(2)

TIMEOUT_S = 30.0
A = AclOperation
CLUSTER = {A.CREATE, A.ALTER, A.DESCRIBE, A.CLUSTER_ACTION, A.DESCRIBE_CONFIGS, A.ALTER_CONFIGS, A.IDEMPOTENT_WRITE}
TOPIC = {A.READ, A.WRITE, A.CREATE, A.DELETE, A.ALTER, A.DESCRIBE, A.DESCRIBE_CONFIGS, A.ALTER_CONFIGS}
GROUP = {A.READ, A.DELETE, A.DESCRIBE}


def check(cond, msg):
    if not cond:
        print(f"FAIL: {msg}", file=sys.stderr)
        sys.exit(1)


def main(bootstrap):
    admin = AdminClient({"bootstrap.servers": bootstrap})
    for f in admin.create_topics([NewTopic("ops", num_partitions=1, replication_factor=1)]).values():
        f.result(timeout=TIMEOUT_S)
    # A group with a member, for describe_consumer_groups.
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "ops-group", "session.timeout.ms": 6000})
    consumer.subscribe(["ops"])
    deadline = time.monotonic() + TIMEOUT_S
    while not consumer.assignment():
        check(time.monotonic() < deadline, "the consumer was never assigned")
        consumer.poll(0.1)

    cluster = admin.describe_cluster(include_authorized_operations=True).result(timeout=TIMEOUT_S)
    check(set(cluster.authorized_operations or []) == CLUSTER, f"cluster operations: {cluster.authorized_operations}")
    plain = admin.describe_cluster().result(timeout=TIMEOUT_S)
    check(not plain.authorized_operations, f"cluster operations not asked for: {plain.authorized_operations}")

    topics = admin.describe_topics(TopicCollection(["ops"]), include_authorized_operations=True)
    topic = topics["ops"].result(timeout=TIMEOUT_S)
    check(set(topic.authorized_operations or []) == TOPIC, f"topic operations: {topic.authorized_operations}")

    groups = admin.describe_consumer_groups(["ops-group"], include_authorized_operations=True)
    group = groups["ops-group"].result(timeout=TIMEOUT_S)
    check(set(group.authorized_operations or []) == GROUP, f"group operations: {group.authorized_operations}")
    consumer.close()
    print("OK: cluster, topic and group authorized operations")


if __name__ == "__main__":
    main(sys.argv[1])
