#!/usr/bin/env python3
"""confluent-kafka (librdkafka) conformance check against a broker-sim cluster.

Usage: confluent_kafka_conformance.py BOOTSTRAP

For each compression codec (none, gzip, snappy, lz4, zstd): creates topic `ck-<codec>` with
3 partitions through confluent_kafka.admin.AdminClient, produces 500 records, each with a key,
a value and a header, with `compression.type=<codec>`, then reads them all back with a
Consumer in group `ck-<codec>` (auto.offset.reset=earliest) and checks that every key, value
and header round-trips byte for byte.

Exits 0 and prints a summary on success; exits 1 with a message on the first failure, 2 if
confluent-kafka is not installed.
"""

import sys
import time
import traceback

try:
    import confluent_kafka
    from confluent_kafka import Consumer, KafkaException, Producer
    from confluent_kafka.admin import AdminClient, NewTopic
except ImportError as e:  # pragma: no cover - depends on the machine
    print(f"confluent-kafka is not installed ({e}); run scripts/setup.sh", file=sys.stderr)
    sys.exit(2)

CODECS = ["none", "gzip", "snappy", "lz4", "zstd"]
PARTITIONS = 3
RECORDS = 500
# Safety net only: every wait below ends as soon as its condition holds.
DEADLINE_S = 60.0


class Failure(Exception):
    """A conformance check that did not hold."""


def check(cond, msg):
    if not cond:
        raise Failure(msg)


def record(codec, i):
    """The i-th record for `codec`: (key, value, headers). Values are compressible but distinct,
    with some non-UTF-8 bytes, so a codec bug shows up as a mismatch."""
    key = f"{codec}-key-{i % 37}".encode()
    value = (f"{codec}-value-{i:05d}-".encode() + bytes([i % 256, 0, 255]) + b"x" * (i % 300))
    headers = [("seq", str(i).encode()), ("codec", codec.encode())]
    return key, value, headers


def create_topics(bootstrap, topics):
    admin = AdminClient({"bootstrap.servers": bootstrap})
    futures = admin.create_topics(
        [NewTopic(t, num_partitions=PARTITIONS, replication_factor=3) for t in topics],
        operation_timeout=30,
    )
    for topic, f in futures.items():
        try:
            f.result(timeout=DEADLINE_S)
        except KafkaException as e:
            raise Failure(f"creating topic {topic}: {e}") from e
    # Wait until metadata shows every partition with a leader.
    deadline = time.monotonic() + DEADLINE_S
    while True:
        md = admin.list_topics(timeout=10)
        ready = all(
            t in md.topics
            and md.topics[t].error is None
            and len(md.topics[t].partitions) == PARTITIONS
            and all(p.leader >= 0 for p in md.topics[t].partitions.values())
            for t in topics
        )
        if ready:
            return
        check(time.monotonic() < deadline, f"topics not ready in metadata: {md.topics!r}")
        time.sleep(0.1)


def produce(bootstrap, codec, topic):
    producer = Producer(
        {
            "bootstrap.servers": bootstrap,
            "compression.type": codec,
            "acks": "all",
            # Several records per batch, so compressed batches really hold many records.
            "linger.ms": 20,
        }
    )
    errors = []
    delivered = []

    def on_delivery(err, msg):
        if err is not None:
            errors.append(f"{msg.key()!r}: {err}")
        else:
            delivered.append((msg.partition(), msg.offset()))

    for i in range(RECORDS):
        key, value, headers = record(codec, i)
        while True:
            try:
                producer.produce(topic, key=key, value=value, headers=headers, on_delivery=on_delivery)
                break
            except BufferError:
                producer.poll(0.1)
    remaining = producer.flush(DEADLINE_S)
    check(remaining == 0, f"[{codec}] {remaining} records still undelivered after flush")
    check(not errors, f"[{codec}] delivery errors: {errors[:5]}")
    check(len(delivered) == RECORDS, f"[{codec}] {len(delivered)} delivery reports, wanted {RECORDS}")
    check(
        len(set(delivered)) == RECORDS,
        f"[{codec}] some records were given the same partition/offset",
    )
    return len({p for p, _ in delivered})


def consume(bootstrap, codec, topic):
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"ck-{codec}",
            "auto.offset.reset": "earliest",
            "enable.partition.eof": False,
        }
    )
    expected = {}
    for i in range(RECORDS):
        key, value, headers = record(codec, i)
        expected[str(i)] = (key, value, headers)
    seen = set()
    try:
        consumer.subscribe([topic])
        deadline = time.monotonic() + DEADLINE_S
        while len(seen) < RECORDS:
            check(
                time.monotonic() < deadline,
                f"[{codec}] consumed only {len(seen)} of {RECORDS} before the {DEADLINE_S:.0f}s safety deadline",
            )
            for msg in consumer.consume(num_messages=RECORDS, timeout=0.5):
                if msg.error() is not None:
                    raise Failure(f"[{codec}] consumer error: {msg.error()}")
                headers = msg.headers() or []
                seq = dict(headers).get("seq")
                check(seq is not None, f"[{codec}] record at {msg.partition()}/{msg.offset()} has no seq header: {headers!r}")
                seq = seq.decode()
                check(seq in expected, f"[{codec}] unexpected seq header {seq!r}")
                check(seq not in seen, f"[{codec}] record {seq} consumed twice")
                key, value, want_headers = expected[seq]
                check(msg.key() == key, f"[{codec}] record {seq}: key {msg.key()!r}, wanted {key!r}")
                check(msg.value() == value, f"[{codec}] record {seq}: value {msg.value()!r}, wanted {value!r}")
                check(
                    headers == want_headers,
                    f"[{codec}] record {seq}: headers {headers!r}, wanted {want_headers!r}",
                )
                seen.add(seq)
    finally:
        consumer.close()
    missing = sorted(set(expected) - seen, key=int)
    check(not missing, f"[{codec}] {len(missing)} records never consumed, e.g. {missing[:10]}")


def main(bootstrap):
    lib_version = confluent_kafka.libversion()[0]
    print(f"confluent-kafka {confluent_kafka.version()} (librdkafka {lib_version}) against {bootstrap}")
    topics = {codec: f"ck-{codec}" for codec in CODECS}
    create_topics(bootstrap, list(topics.values()))
    for codec, topic in topics.items():
        partitions = produce(bootstrap, codec, topic)
        consume(bootstrap, codec, topic)
        print(f"  {codec:<6}: {RECORDS} records over {partitions} partitions round-tripped (key, value, headers)")
    print(f"OK: all {len(CODECS)} codecs round-tripped {RECORDS} records each")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        sys.exit(64)
    try:
        main(sys.argv[1])
    except Failure as e:
        print(f"FAIL: {e}", file=sys.stderr)
        sys.exit(1)
    except Exception:  # an unexpected client error is a failure too, with its trace
        print("FAIL: unexpected error:", file=sys.stderr)
        traceback.print_exc()
        sys.exit(1)
