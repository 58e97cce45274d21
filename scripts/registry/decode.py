"""Reads a topic from the start with Confluent's JSONDeserializer and the
schema registry, and prints each record as a JSON line
{"partition", "offset", "schema_id", "value"}; exits non-zero on a record it
cannot decode. Used by tests/tests/registry.rs:

    decode.py BROKERS TOPIC REGISTRY_URL COUNT
"""

import json
import sys
import time

from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.json_schema import JSONDeserializer
from confluent_kafka.serialization import MessageField, SerializationContext


def main() -> int:
    brokers, topic, registry_url, count = sys.argv[1:5]
    count = int(count)
    registry = SchemaRegistryClient({"url": registry_url})
    # No reader schema: the writer's schema, fetched by the id in each
    # record, validates it.
    deserializer = JSONDeserializer(None, schema_registry_client=registry)
    consumer = Consumer(
        {
            "bootstrap.servers": brokers,
            "group.id": f"registry-decode-{time.time_ns()}",
            "enable.auto.commit": False,
            "isolation.level": "read_committed",
            "auto.offset.reset": "earliest",
        }
    )
    partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
    consumer.assign([TopicPartition(topic, p, 0) for p in partitions])
    seen = 0
    deadline = time.monotonic() + 60
    while seen < count and time.monotonic() < deadline:
        msg = consumer.poll(0.2)
        if msg is None or msg.error() or msg.value() is None:
            continue
        raw = msg.value()
        value = deserializer(raw, SerializationContext(topic, MessageField.VALUE))
        print(
            json.dumps(
                {
                    "partition": msg.partition(),
                    "offset": msg.offset(),
                    "schema_id": int.from_bytes(raw[1:5], "big"),
                    "value": value,
                }
            ),
            flush=True,
        )
        seen += 1
    consumer.close()
    if seen < count:
        print(f"only {seen} of {count} records in 60 s", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
