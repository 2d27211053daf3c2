"""librdkafka (confluent-kafka) against Sluice's Kafka listener.

usage: confluent_group.py BOOTSTRAP TOPIC PARTITIONS

1. An idempotent producer (enable.idempotence, so InitProducerId, acks=all
   and sequenced batches) sends keyed records with every compression codec
   librdkafka has (none, gzip, snappy, lz4, zstd); every delivery report
   must be a success.
2. A consumer group of three (one process, three consumers polled in turn)
   reads until every record was seen, committing after each record it
   processed; every partition must be assigned to exactly one member at a
   time; per partition the offsets must come in increasing order and the
   records in the order they were produced, each exactly once.
3. The consumers close (committing and leaving); more records are
   produced; a new group of three resumes exactly from the committed
   offsets: it sees the new records and none of the old ones.

Exit code 0 means every check passed.
"""

import sys
import time

from confluent_kafka import Consumer, KafkaException, Producer

BOOTSTRAP, TOPIC, PARTITIONS = sys.argv[1], sys.argv[2], int(sys.argv[3])
CODECS = ["none", "gzip", "snappy", "lz4", "zstd"]
PER_CODEC = 400
DEADLINE_S = 90
# Production order of every value, to check per-partition order.
ORDER = {}


def fail(msg):
    print(f"FAIL: {msg}", file=sys.stderr)
    sys.exit(1)


def produce(values):
    """Sends `values` (each its own key) with every codec in turn."""
    failures = []

    def report(err, msg):
        if err is not None:
            failures.append(str(err))

    for i, codec in enumerate(CODECS):
        p = Producer(
            {
                "bootstrap.servers": BOOTSTRAP,
                "enable.idempotence": True,
                "compression.type": codec,
                "linger.ms": 5,
            }
        )
        chunk = values[i::len(CODECS)]
        for v in chunk:
            ORDER[v] = len(ORDER)
            p.produce(TOPIC, key=v.encode(), value=f"{codec}:{v}".encode(), on_delivery=report)
            p.poll(0)
        left = p.flush(30)
        if left:
            fail(f"{left} records with {codec} not delivered")
    if failures:
        fail(f"delivery failures: {failures[:5]}")


def consumers(group):
    out = []
    for i in range(3):
        c = Consumer(
            {
                "bootstrap.servers": BOOTSTRAP,
                "group.id": group,
                "client.id": f"member-{i}",
                "auto.offset.reset": "earliest",
                "enable.auto.commit": False,
                "session.timeout.ms": 6000,
                "heartbeat.interval.ms": 1000,
            }
        )
        c.subscribe([TOPIC])
        out.append(c)
    return out


def consume_all(members, expected):
    """Polls the members in turn until `expected` values were seen."""
    seen = {}
    last_offset = {}
    last_order = {}
    deadline = time.time() + DEADLINE_S
    while len(seen) < len(expected):
        if time.time() > deadline:
            fail(f"group saw {len(seen)} of {len(expected)} records")
        owners = {}
        for idx, c in enumerate(members):
            for tp in c.assignment():
                if tp.partition in owners:
                    fail(f"partition {tp.partition} owned by members {owners[tp.partition]} and {idx}")
                owners[tp.partition] = idx
        for c in members:
            msg = c.poll(0.05)
            if msg is None:
                continue
            if msg.error():
                raise KafkaException(msg.error())
            p, o = msg.partition(), msg.offset()
            if p in last_offset and o <= last_offset[p]:
                fail(f"partition {p}: offset {o} after {last_offset[p]}")
            last_offset[p] = o
            key = msg.key().decode()
            value = msg.value().decode()
            if not value.endswith(":" + key):
                fail(f"record {p}@{o}: value {value!r} does not match key {key!r}")
            if p in last_order and ORDER[key] <= last_order[p]:
                fail(f"partition {p}: {key} was produced before the record at the previous offset")
            last_order[p] = ORDER[key]
            if key in seen:
                fail(f"{key} delivered twice")
            seen[key] = 1
            c.commit(message=msg, asynchronous=False)
    unexpected = set(seen) - set(expected)
    if unexpected:
        fail(f"records from before the commit redelivered: {sorted(unexpected)[:5]}")
    return seen


def main():
    first = [f"k{i}" for i in range(PER_CODEC * len(CODECS))]
    produce(first)
    group = f"confluent-{int(time.time() * 1000)}"
    members = consumers(group)
    consume_all(members, first)
    for c in members:
        c.close()

    second = [f"n{i}" for i in range(200)]
    produce(second)
    members = consumers(group)
    consume_all(members, second)
    for c in members:
        c.close()
    print(f"ok: {len(first)} + {len(second)} records, {len(CODECS)} codecs, group of 3 resumed from its commits")


main()
