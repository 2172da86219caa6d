#!/usr/bin/env python3
"""kafka-python 3.x conformance check against a broker-sim cluster.

Usage: kafka_python_conformance.py BOOTSTRAP

Creates a 6-partition topic with KafkaAdminClient, produces 1,000 keyed records (acks=all),
reads 600 of them in group `kp-group` and commits synchronously, then resumes the group with a
second consumer that must read exactly the other 400. Finally checks the group through the
admin client (describe groups, committed offsets summing to 1,000) and the topic's configs
(retention.ms present).

Exits 0 and prints a summary on success; exits 1 with a message on the first failure, 2 if
kafka-python 3 is not installed.
"""

import sys
import time
import traceback
import uuid

try:
    import kafka
    from kafka import KafkaConsumer, KafkaProducer, TopicPartition
    from kafka.admin import ConfigResource, ConfigResourceType, KafkaAdminClient, NewTopic
except ImportError as e:  # pragma: no cover - depends on the machine
    print(f"kafka-python is not installed ({e}); run scripts/setup.sh", file=sys.stderr)
    sys.exit(2)

GROUP = "kp-group"
PARTITIONS = 6
TOTAL = 1000
FIRST = 600
# Safety nets only: every wait below ends as soon as its condition holds.
DEADLINE_S = 60.0


class Failure(Exception):
    """A conformance check that did not hold."""


def check(cond, msg):
    if not cond:
        raise Failure(msg)


def value_of(i):
    return f"value-{i:04d}"


def key_of(i):
    return f"key-{i % 50}"


def create_topic(bootstrap, topic):
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="kp-admin")
    try:
        admin.create_topics([NewTopic(topic, num_partitions=PARTITIONS, replication_factor=3)])
        # Wait until every broker's metadata has the topic with all partitions led.
        deadline = time.monotonic() + DEADLINE_S
        while True:
            described = admin.describe_topics([topic])
            if described and described[0].get("error_code", 0) == 0:
                parts = described[0].get("partitions", [])
                if len(parts) == PARTITIONS and all(p.get("leader_id", p.get("leader", -1)) >= 0 for p in parts):
                    return
            check(time.monotonic() < deadline, f"topic {topic} not ready: {described!r}")
            time.sleep(0.1)
    finally:
        admin.close()


def produce(bootstrap, topic):
    producer = KafkaProducer(
        bootstrap_servers=bootstrap,
        acks="all",
        # kafka-python 3 makes producers idempotent by default (KIP-679): InitProducerId and
        # sequence numbers are exercised here.
        client_id="kp-producer",
    )
    try:
        futures = [producer.send(topic, key=key_of(i).encode(), value=value_of(i).encode()) for i in range(TOTAL)]
        producer.flush(timeout=DEADLINE_S)
        partitions = set()
        for i, f in enumerate(futures):
            md = f.get(timeout=DEADLINE_S)
            check(0 <= md.partition < PARTITIONS, f"record {i} went to partition {md.partition}")
            check(md.offset >= 0, f"record {i} got offset {md.offset}")
            partitions.add(md.partition)
        check(len(partitions) > 1, f"50 distinct keys all landed in partitions {partitions}")
        return partitions
    finally:
        producer.close()


def new_consumer(bootstrap, topic, client_id):
    return KafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=GROUP,
        client_id=client_id,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        # Cap each poll so the first consumer can stop at exactly FIRST records.
        max_poll_records=50,
    )


def consume(consumer, want, seen, label):
    """Polls until `want` records are read; records each value into `seen` (fails on repeats)."""
    got = 0
    deadline = time.monotonic() + DEADLINE_S
    while got < want:
        check(
            time.monotonic() < deadline,
            f"{label}: read only {got} of {want} records before the {DEADLINE_S:.0f}s safety deadline",
        )
        batches = consumer.poll(timeout_ms=500, max_records=want - got)
        for tp, records in batches.items():
            for r in records:
                value = r.value.decode()
                check(value not in seen, f"{label}: {value} seen twice (again at {tp} offset {r.offset})")
                want_key = key_of(int(value.rsplit("-", 1)[1]))
                check(r.key == want_key.encode(), f"{label}: {value} came back with key {r.key!r}, wanted {want_key}")
                seen[value] = (tp.partition, r.offset)
                got += 1
    return got


def main(bootstrap):
    topic = f"kp-conformance-{uuid.uuid4().hex[:8]}"
    print(f"kafka-python {kafka.__version__} against {bootstrap}, topic {topic}")
    create_topic(bootstrap, topic)
    partitions = produce(bootstrap, topic)

    seen = {}
    first = new_consumer(bootstrap, topic, "kp-consumer-1")
    try:
        n1 = consume(first, FIRST, seen, "first consumer")
        check(n1 == FIRST, f"first consumer read {n1}, wanted {FIRST}")
        first.commit()  # synchronous: commits the positions after the records returned
    finally:
        first.close(autocommit=False)

    second = new_consumer(bootstrap, topic, "kp-consumer-2")
    try:
        n2 = consume(second, TOTAL - FIRST, seen, "second consumer")
        # Anything more would be a record the group already committed: one last poll must
        # return nothing (the log holds exactly TOTAL records, all of which are now seen).
        extra = second.poll(timeout_ms=1000)
        extra_values = [r.value.decode() for rs in extra.values() for r in rs]
        check(not extra_values, f"second consumer read more than {TOTAL - FIRST}: {extra_values[:10]}")
        second.commit()
    finally:
        second.close(autocommit=False)

    expected = {value_of(i) for i in range(TOTAL)}
    missing = sorted(expected - seen.keys())
    unexpected = sorted(seen.keys() - expected)
    check(not missing, f"{len(missing)} records never read, e.g. {missing[:10]}")
    check(not unexpected, f"unexpected values read: {unexpected[:10]}")

    admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="kp-admin")
    try:
        describe_groups = getattr(admin, "describe_groups", None) or admin.describe_consumer_groups
        groups = describe_groups([GROUP])
        if isinstance(groups, dict):
            check(GROUP in groups, f"describe groups did not return {GROUP}: {groups!r}")
            desc = groups[GROUP]
            group_error = desc.get("error_code", 0)
            state = desc.get("group_state", desc.get("state"))
            protocol_type = desc.get("protocol_type")
        else:  # kafka-python 2.x: a list of GroupInformation tuples
            check(len(groups) == 1 and groups[0].group == GROUP, f"describe groups: {groups!r}")
            desc = groups[0]
            group_error, state, protocol_type = desc.error_code, desc.state, desc.protocol_type
        check(group_error == 0, f"describe group {GROUP} error_code {group_error}: {desc!r}")
        check(state == "Empty", f"group {GROUP} state {state!r} after both consumers left, wanted 'Empty'")
        check(protocol_type == "consumer", f"group {GROUP} protocol_type {protocol_type!r}")

        if hasattr(admin, "list_group_offsets"):
            offsets = admin.list_group_offsets(GROUP)[GROUP]
        else:  # kafka-python 2.x
            offsets = admin.list_consumer_group_offsets(GROUP)
        ours = {tp: om for tp, om in offsets.items() if tp.topic == topic}
        total = sum(om.offset for om in ours.values())
        check(total == TOTAL, f"committed offsets sum to {total}, wanted {TOTAL}: {ours!r}")
        check(
            {tp.partition for tp in ours} >= partitions,
            f"no committed offset for some written partitions: have {sorted(tp.partition for tp in ours)}, "
            f"written {sorted(partitions)}",
        )

        configs = admin.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, topic)], config_filter="all"
        )
        topic_configs = configs.get("topic", {}).get(topic) if isinstance(configs, dict) else None
        check(topic_configs is not None, f"describe_configs returned no entry for {topic}: {configs!r}")
        check("retention.ms" in topic_configs, f"retention.ms missing from {sorted(topic_configs)}")
        retention = topic_configs["retention.ms"].get("value")
    finally:
        admin.close()

    print(
        f"OK: produced {TOTAL} records to {len(partitions)} partitions; consumer 1 read {FIRST}, "
        f"consumer 2 resumed and read {TOTAL - FIRST} (none twice, none missing); group {GROUP} "
        f"is {state} with committed offsets summing to {total}; retention.ms={retention}"
    )


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
