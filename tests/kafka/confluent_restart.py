"""librdkafka across a broker crash: nothing acknowledged is lost.

usage: confluent_restart.py BOOTSTRAP TOPIC COUNT

Produces COUNT keyed records with acks=all at a steady pace, printing
"HALF" once a third of them are acknowledged; the test then kills the
broker (kill -9) and starts it again while this keeps producing. The
client must reconnect by itself. When every record has a delivery report,
a consumer reads the topic from the beginning and every acknowledged record
must be there (duplicates are allowed: idempotence is off until the broker
serves InitProducerId). Exit code 0 means every check passed.
"""

import sys
import time

from confluent_kafka import Consumer, Producer, TopicPartition

BOOTSTRAP, TOPIC, COUNT = sys.argv[1], sys.argv[2], int(sys.argv[3])


def fail(msg):
    print(f"FAIL: {msg}", file=sys.stderr)
    sys.exit(1)


acked, failed = set(), []


def report(err, msg):
    if err is None:
        acked.add(msg.key().decode())
    else:
        failed.append(str(err))


p = Producer(
    {
        "bootstrap.servers": BOOTSTRAP,
        "acks": "all",
        "enable.idempotence": False,
        "linger.ms": 2,
        "message.timeout.ms": 60000,
        "reconnect.backoff.ms": 50,
        "reconnect.backoff.max.ms": 500,
    }
)
said_half = False
for i in range(COUNT):
    p.produce(TOPIC, key=f"r{i}".encode(), value=f"v{i}".encode(), on_delivery=report)
    p.poll(0)
    if not said_half and len(acked) >= COUNT // 3:
        print("HALF", flush=True)
        said_half = True
    time.sleep(0.001)
left = p.flush(90)
if not said_half:
    fail("never reached a third acknowledged before the end")
if left:
    fail(f"{left} records without a delivery report")
print(f"acknowledged {len(acked)}, failed {len(failed)}", file=sys.stderr)

c = Consumer({"bootstrap.servers": BOOTSTRAP, "group.id": "restart-check", "enable.auto.commit": False})
parts = c.list_topics(TOPIC, timeout=30).topics[TOPIC].partitions
ends = {}
for pid in parts:
    lo, hi = c.get_watermark_offsets(TopicPartition(TOPIC, pid), timeout=30)
    ends[pid] = hi
c.assign([TopicPartition(TOPIC, pid, 0) for pid in parts])
seen = set()
done = {pid for pid, hi in ends.items() if hi == 0}
deadline = time.time() + 60
while len(done) < len(ends):
    if time.time() > deadline:
        fail(f"read {len(seen)} records; partitions done {sorted(done)} of {sorted(ends)}")
    msg = c.poll(0.2)
    if msg is None or msg.error():
        continue
    seen.add(msg.key().decode())
    if msg.offset() + 1 >= ends[msg.partition()]:
        done.add(msg.partition())
c.close()
lost = acked - seen
if lost:
    fail(f"{len(lost)} acknowledged records lost, e.g. {sorted(lost)[:5]}")
print(f"ok: {len(acked)} acknowledged, all readable after the crash ({len(failed)} reported failed)")
