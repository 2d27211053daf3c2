"""Shared by the crash tests: an idempotent librdkafka producer that keeps
producing keyed records at a steady pace while the test kills brokers,
printing "HALF" once a third are acknowledged so the test knows when."""

import sys
import time

from confluent_kafka import Producer


def fail(msg):
    print(f"FAIL: {msg}", file=sys.stderr)
    sys.exit(1)


def produce_through_crash(bootstrap, topic, count, acks="all", timeout_ms=60000, pause=0.001):
    """Produces `count` records keyed r0.. with values v0..; returns the set
    of acknowledged keys. Fails unless every record is acknowledged."""
    acked, failed = set(), []

    def report(err, msg):
        if err is None:
            acked.add(msg.key().decode())
        else:
            failed.append(str(err))

    p = Producer(
        {
            "bootstrap.servers": bootstrap,
            "enable.idempotence": True,
            "acks": acks,
            "linger.ms": 2,
            "message.timeout.ms": timeout_ms,
            "reconnect.backoff.ms": 50,
            "reconnect.backoff.max.ms": 500,
        }
    )
    said_half = False
    for i in range(count):
        p.produce(topic, key=f"r{i}".encode(), value=f"v{i}".encode(), on_delivery=report)
        p.poll(0)
        if not said_half and len(acked) >= count // 3:
            print("HALF", flush=True)
            said_half = True
        time.sleep(pause)
    left = p.flush(timeout_ms / 1000 + 30)
    if not said_half:
        fail("never reached a third acknowledged before the end")
    if left or failed:
        fail(f"{left} records without a delivery report; failures: {failed[:5]}")
    print(f"acknowledged {len(acked)}", file=sys.stderr)
    return acked
