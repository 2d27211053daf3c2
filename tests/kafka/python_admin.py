"""Topic administration with kafka-python's KafkaAdminClient: create a topic
with a config override, describe the cluster and the topic's configs, grow
the topic, see the new count in list and describe, refuse a shrink, then
delete the topic. Exit code 0 means every step did what Kafka would.

Usage: python_admin.py BOOTSTRAP TOPIC PARTITIONS GROWN
"""
import sys
import time

from kafka.admin import ConfigResource, ConfigResourceType, KafkaAdminClient
from kafka.errors import InvalidPartitionsError

TIMEOUT_S = 30


def check(cond, what):
    if not cond:
        print(f"FAILED: {what}", file=sys.stderr)
        sys.exit(1)


def partition_count(admin, topic):
    [described] = admin.describe_topics([topic])
    check(described["error_code"] == 0, f"describe_topics {topic}: {described}")
    return len(described["partitions"])


def main():
    bootstrap, topic, partitions, grown = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=TIMEOUT_S * 1000)

    cluster = admin.describe_cluster()
    check(cluster["controller_id"] >= 0 and len(cluster["brokers"]) == 1, f"describe_cluster: {cluster}")
    check(str(cluster["cluster_id"]).startswith("sluice-"), f"cluster id: {cluster}")

    admin.create_topics({topic: {"num_partitions": partitions, "replication_factor": 1,
                                 "configs": {"retention.ms": "3600000"}}})
    check(topic in admin.list_topics(), "the created topic is listed")
    check(partition_count(admin, topic) == partitions, "created with the asked partition count")

    resource = ConfigResource(ConfigResourceType.TOPIC, topic)
    every = admin.describe_configs([resource], config_filter="all")["topic"][topic]
    for name in ("retention.ms", "retention.bytes", "segment.bytes", "max.message.bytes"):
        check(name in every, f"{name} described: {every}")
    check(every["retention.ms"]["value"] == "3600000", f"retention.ms override: {every['retention.ms']}")
    check(every["retention.ms"]["config_source"] == "DYNAMIC_TOPIC_CONFIG", f"source: {every['retention.ms']}")
    check(every["segment.bytes"]["config_source"] != "DYNAMIC_TOPIC_CONFIG", f"a default: {every['segment.bytes']}")
    modified = admin.describe_configs([resource])["topic"][topic]
    check(set(modified) == {"retention.ms"}, f"only the override is modified: {modified}")
    brokers = admin.describe_configs([ConfigResource(ConfigResourceType.BROKER, str(cluster["controller_id"]))])
    check(brokers["broker"][str(cluster["controller_id"])] == {}, f"broker configs: {brokers}")

    admin.create_partitions({topic: grown})
    deadline = time.time() + TIMEOUT_S
    while partition_count(admin, topic) != grown:
        check(time.time() < deadline, f"{topic} never showed {grown} partitions")
        time.sleep(0.1)
    try:
        admin.create_partitions({topic: partitions})
        check(False, "shrinking was accepted")
    except InvalidPartitionsError:
        pass

    admin.delete_topics([topic])
    deadline = time.time() + TIMEOUT_S
    while topic in admin.list_topics():
        check(time.time() < deadline, f"{topic} is still listed after delete")
        time.sleep(0.1)
    admin.close()
    print("admin round trip ok")


if __name__ == "__main__":
    main()
