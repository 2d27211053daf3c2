"""librdkafka against a three-node cluster, across a leader kill and a
coordinator kill: nothing acknowledged is lost, and a consumer group
resumes from its committed offsets.

usage: confluent_cluster.py BOOTSTRAP TOPIC COUNT GROUP

1. Produces COUNT keyed records with an idempotent producer (acks=all),
   printing "HALF" once a third are acknowledged; the test then kills the
   leader of a partition (kill -9) while this keeps producing. Every
   record must be acknowledged. Prints "PRODUCED".
2. A consumer of group GROUP reads about half the records, committing
   synchronously as it goes, and closes. Prints "COORDINATOR <id>" (the
   group's coordinator, from DescribeConsumerGroups) and waits for a line
   on stdin: the test kills that node meanwhile.
3. A new consumer of the same group starts at the committed offsets (its
   first record of each partition is the committed one) and reads the
   rest. Every acknowledged record was read by one of the two consumers.
Exit code 0 means every check passed.
"""

import sys
import time

from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient
from crash_producer import fail, produce_through_crash

BOOTSTRAP, TOPIC, COUNT, GROUP = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]


acked = {f"v{k[1:]}" for k in produce_through_crash(BOOTSTRAP, TOPIC, COUNT, timeout_ms=90000, pause=0.002)}
print("PRODUCED", flush=True)


def consumer():
    return Consumer(
        {
            "bootstrap.servers": BOOTSTRAP,
            "group.id": GROUP,
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "session.timeout.ms": 10000,
            "heartbeat.interval.ms": 500,
            "reconnect.backoff.ms": 50,
            "reconnect.backoff.max.ms": 500,
        }
    )


first = consumer()
first.subscribe([TOPIC])
read1 = set()
deadline = time.time() + 90
while len(read1) < COUNT // 2:
    if time.time() > deadline:
        fail(f"the first consumer read {len(read1)} of {COUNT // 2}")
    msgs = first.consume(100, 0.5)
    good = [m for m in msgs if m.error() is None]
    if not good:
        continue
    read1.update(m.value().decode() for m in good)
    first.commit(asynchronous=False)
committed = {
    tp.partition: tp.offset
    for tp in first.committed(
        [TopicPartition(TOPIC, pid) for pid in first.list_topics(TOPIC, timeout=30).topics[TOPIC].partitions],
        timeout=30,
    )
}
first.close()

admin = AdminClient({"bootstrap.servers": BOOTSTRAP})
desc = admin.describe_consumer_groups([GROUP])[GROUP].result(timeout=30)
print(f"COORDINATOR {desc.coordinator.id}", flush=True)
sys.stdin.readline()

second = consumer()
second.subscribe([TOPIC])
read2 = set()
firsts = {}
deadline = time.time() + 120
while not acked <= (read1 | read2):
    if time.time() > deadline:
        missing = sorted(acked - read1 - read2)
        fail(f"{len(missing)} acknowledged records never read, e.g. {missing[:5]}")
    msgs = second.consume(100, 0.5)
    for m in msgs:
        if m.error() is not None:
            continue
        firsts.setdefault(m.partition(), m.offset())
        read2.add(m.value().decode())
second.close()
for pid, offset in firsts.items():
    want = committed.get(pid, -1001)
    want = 0 if want < 0 else want
    if offset != want:
        fail(f"partition {pid}: resumed at {offset}, committed {want}")
print(f"acknowledged {len(acked)}, first read {len(read1)}, second read {len(read2)}", file=sys.stderr)
