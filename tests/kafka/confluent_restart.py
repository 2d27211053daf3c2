"""librdkafka across a broker crash: nothing acknowledged is lost.

usage: confluent_restart.py BOOTSTRAP TOPIC COUNT

Produces COUNT keyed records with an idempotent producer (acks=all,
sequenced batches) at a steady pace, printing "HALF" once a third of them
are acknowledged; the test then kills the broker (kill -9) and starts it
again while this keeps producing. The client must reconnect by itself and
every record must be acknowledged. A consumer then reads the topic from the
beginning: every record is there exactly once (the retries of batches that
were written but not answered before the crash were recognised as
duplicates after the restart) and in the order it was produced within its
partition. Exit code 0 means every check passed.
"""

import sys
import time

from confluent_kafka import Consumer, TopicPartition
from crash_producer import fail, produce_through_crash

BOOTSTRAP, TOPIC, COUNT = sys.argv[1], sys.argv[2], int(sys.argv[3])


acked = produce_through_crash(BOOTSTRAP, TOPIC, COUNT)

c = Consumer({"bootstrap.servers": BOOTSTRAP, "group.id": "restart-check", "enable.auto.commit": False})
parts = c.list_topics(TOPIC, timeout=30).topics[TOPIC].partitions
ends = {}
for pid in parts:
    lo, hi = c.get_watermark_offsets(TopicPartition(TOPIC, pid), timeout=30)
    ends[pid] = hi
c.assign([TopicPartition(TOPIC, pid, 0) for pid in parts])
seen = {}
last = {}
done = {pid for pid, hi in ends.items() if hi == 0}
deadline = time.time() + 60
while len(done) < len(ends):
    if time.time() > deadline:
        fail(f"read {len(seen)} records; partitions done {sorted(done)} of {sorted(ends)}")
    msg = c.poll(0.2)
    if msg is None or msg.error():
        continue
    key = msg.key().decode()
    if key in seen:
        fail(f"{key} stored twice: at {seen[key]} and {msg.partition()}@{msg.offset()}")
    seen[key] = f"{msg.partition()}@{msg.offset()}"
    index = int(key[1:])
    if msg.partition() in last and index <= last[msg.partition()]:
        fail(f"partition {msg.partition()}: {key} after r{last[msg.partition()]}")
    last[msg.partition()] = index
    if msg.offset() + 1 >= ends[msg.partition()]:
        done.add(msg.partition())
c.close()
lost = acked - set(seen)
if lost:
    fail(f"{len(lost)} acknowledged records lost, e.g. {sorted(lost)[:5]}")
if len(acked) != COUNT:
    fail(f"only {len(acked)} of {COUNT} acknowledged")
print(f"ok: all {COUNT} acknowledged, each stored once and in order across the crash")
