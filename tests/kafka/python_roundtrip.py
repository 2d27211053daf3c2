"""Produce keyed records with kafka-python (its default idempotent producer:
InitProducerId, acks=all, sequenced batches; gzip), then consume
them with a manually assigned consumer from the beginning and check that
every record came back unchanged. Exit code 0 means it did.

Usage: python_roundtrip.py BOOTSTRAP TOPIC PARTITIONS COUNT
"""
import sys

from kafka import KafkaConsumer, KafkaProducer, TopicPartition

TIMEOUT_S = 30


def main():
    bootstrap, topic, partitions, count = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    sent = {}
    producer = KafkaProducer(
        bootstrap_servers=bootstrap,
        acks="all",
        enable_idempotence=True,
        compression_type="gzip",
        linger_ms=5,
        request_timeout_ms=TIMEOUT_S * 1000,
    )
    futures = []
    for i in range(count):
        key = f"key-{i}".encode()
        value = f"value {i} ".encode() * (1 + i % 7)
        sent[key] = value
        futures.append(producer.send(topic, key=key, value=value, partition=i % partitions))
    for f in futures:
        f.get(timeout=TIMEOUT_S)
    producer.flush(timeout=TIMEOUT_S)
    producer.close(timeout=TIMEOUT_S)

    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap,
        enable_auto_commit=False,
        consumer_timeout_ms=TIMEOUT_S * 1000,
        fetch_max_wait_ms=100,
    )
    tps = [TopicPartition(topic, p) for p in range(partitions)]
    consumer.assign(tps)
    consumer.seek_to_beginning(*tps)
    received = {}
    offsets = {p: [] for p in range(partitions)}
    for msg in consumer:
        if msg.key in received:
            print(f"duplicate record {msg.key!r} at {msg.partition}/{msg.offset}", file=sys.stderr)
            return 1
        received[msg.key] = msg.value
        offsets[msg.partition].append(msg.offset)
        if len(received) == count:
            break
    consumer.close()
    if received != sent:
        missing = sorted(set(sent) - set(received))[:5]
        print(f"got {len(received)} of {count} records; missing e.g. {missing}", file=sys.stderr)
        return 1
    for p, offs in offsets.items():
        if offs != list(range(len(offs))):
            print(f"partition {p}: offsets not consecutive from 0: {offs[:10]}", file=sys.stderr)
            return 1
    print(f"ok: {count} records round-tripped over {partitions} partitions")
    return 0


if __name__ == "__main__":
    sys.exit(main())
