#!/usr/bin/env python3
"""Python transactional producers and read_committed consumers against broker-sim.

Usage: transactions.py BOOTSTRAP

1. A confluent-kafka transactional producer runs 12 transactions of 6 records over 2
   partitions of `py-txn`, aborting every third one (after flushing, so the aborted records are
   in the log). A confluent-kafka consumer and a kafka-python consumer, both read_committed,
   must see exactly the committed records, in order; a read_uncommitted consumer sees all.
2. A kafka-python 3 transactional producer commits one transaction and aborts one on
   `kp-txn`; a read_committed kafka-python consumer sees only the committed record.

Exits 0 on success; 1 with a message on the first failure; 2 if a client is missing.
"""

import sys
import time

try:
    from confluent_kafka import Consumer, Producer, TopicPartition
    from confluent_kafka.admin import AdminClient, NewTopic
    import kafka
except ImportError as e:  # pragma: no cover - depends on the machine
    print(f"a Python Kafka client is missing ({e}); run scripts/setup.sh", file=sys.stderr)
    sys.exit(2)

DEADLINE_S = 60.0
TXNS = 12
PER_TXN = 6


def fail(msg):
    print(f"FAIL: {msg}", file=sys.stderr)
    sys.exit(1)


def create_topic(bs, name, partitions):
    admin = AdminClient({"bootstrap.servers": bs})
    for _, f in admin.create_topics([NewTopic(name, partitions, 1)]).items():
        f.result(30)


def read_confluent(bs, topic, partitions, isolation):
    """Every value per partition up to the end (the LSO for read_committed)."""
    c = Consumer({
        "bootstrap.servers": bs,
        "group.id": f"reader-{isolation}",
        "isolation.level": isolation,
        "enable.partition.eof": True,
        "enable.auto.commit": False,
    })
    c.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
    out = {p: [] for p in range(partitions)}
    at_end = set()
    deadline = time.monotonic() + DEADLINE_S
    while len(at_end) < partitions:
        if time.monotonic() > deadline:
            fail(f"reading {topic} ({isolation}) timed out")
        m = c.poll(0.2)
        if m is None:
            continue
        if m.error():
            if m.error().code() == -191:  # _PARTITION_EOF
                at_end.add(m.partition())
                continue
            fail(f"consume error: {m.error()}")
        at_end.discard(m.partition())
        out[m.partition()].append(m.value().decode())
    c.close()
    return out


def read_kafka_python(bs, topic, partitions, expected_total):
    """read_committed with kafka-python: polls until `expected_total` records, then a bit more."""
    c = kafka.KafkaConsumer(
        bootstrap_servers=bs,
        isolation_level="read_committed",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    c.assign([kafka.TopicPartition(topic, p) for p in range(partitions)])
    c.seek_to_beginning()
    out = {p: [] for p in range(partitions)}
    deadline = time.monotonic() + DEADLINE_S
    quiet_until = None
    while time.monotonic() < deadline:
        got = c.poll(timeout_ms=200)
        for tp, msgs in got.items():
            out[tp.partition].extend(m.value.decode() for m in msgs)
        total = sum(len(v) for v in out.values())
        if total >= expected_total and quiet_until is None:
            quiet_until = time.monotonic() + 1.0  # anything extra would show up now
        if quiet_until is not None and time.monotonic() > quiet_until:
            break
    c.close()
    return out


def confluent_producer_scenario(bs):
    topic = "py-txn"
    create_topic(bs, topic, 2)
    p = Producer({"bootstrap.servers": bs, "transactional.id": "py-txn-1"})
    p.init_transactions(30)
    expected = {0: [], 1: []}
    for t in range(TXNS):
        p.begin_transaction()
        for i in range(PER_TXN):
            value = f"{t}-{i}"
            p.produce(topic, key=value, value=value, partition=i % 2)
        if t % 3 == 1:
            p.flush(30)
            p.abort_transaction(30)
        else:
            p.commit_transaction(30)
            for i in range(PER_TXN):
                expected[i % 2].append(f"{t}-{i}")
    committed = read_confluent(bs, topic, 2, "read_committed")
    if committed != expected:
        fail(f"confluent read_committed saw {committed}, expected {expected}")
    everything = read_confluent(bs, topic, 2, "read_uncommitted")
    if sum(len(v) for v in everything.values()) != TXNS * PER_TXN:
        fail(f"read_uncommitted saw {sum(len(v) for v in everything.values())} records, not {TXNS * PER_TXN}")
    kp = read_kafka_python(bs, topic, 2, sum(len(v) for v in expected.values()))
    if kp != expected:
        fail(f"kafka-python read_committed saw {kp}, expected {expected}")
    print(f"confluent-kafka transactions: {TXNS} transactions, read_committed saw {sum(len(v) for v in expected.values())} records")


def kafka_python_producer_scenario(bs):
    topic = "kp-txn"
    create_topic(bs, topic, 1)
    p = kafka.KafkaProducer(bootstrap_servers=bs, transactional_id="kp-txn-1")
    p.init_transactions()
    p.begin_transaction()
    p.send(topic, b"kept", partition=0)
    p.commit_transaction()
    p.begin_transaction()
    p.send(topic, b"dropped", partition=0)
    p.flush()
    p.abort_transaction()
    p.close()
    seen = read_kafka_python(bs, topic, 1, 1)
    if seen != {0: ["kept"]}:
        fail(f"kafka-python transactional producer: read_committed saw {seen}")
    print("kafka-python transactions: commit kept, abort dropped")


def main():
    bs = sys.argv[1]
    confluent_producer_scenario(bs)
    kafka_python_producer_scenario(bs)
    print("OK")


if __name__ == "__main__":
    main()
