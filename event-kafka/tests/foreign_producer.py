"""A foreign Kafka producer for event-kafka/tests/foreign.rs: kafka-python (pip) writes one
binary-mode CloudEvent whose headers include one whose name is the bytes ff 62 61 64, not UTF-8
(Kafka allows any bytes there). Usage: foreign_producer.py BOOTSTRAP TOPIC."""
import sys

from kafka import KafkaProducer


class RawName(str):
    """A header name whose encoded form is `raw`, whatever it is: kafka-python encodes names
    with `str.encode("utf-8")`, which no `str` turns into invalid UTF-8."""

    def __new__(cls, raw):
        obj = super().__new__(cls, raw.decode("latin-1"))
        obj.raw = raw
        return obj

    def encode(self, *args, **kwargs):
        return self.raw


servers, topic = sys.argv[1], sys.argv[2]
producer = KafkaProducer(
    bootstrap_servers=servers, api_version=(2, 1, 0), enable_idempotence=False, acks=1
)
headers = [
    ("ce_specversion", b"1.0"),
    ("ce_id", b"reading-1"),
    ("ce_source", b"/meters"),
    ("ce_type", b"meters.reading"),
    ("ce_time", b"2026-12-03T10:00:00Z"),
    (RawName(b"\xffbad"), b"1"),
    ("content-type", b"application/json"),
]
producer.send(
    topic, key=b"m-1", value=b'{"meter":"m-1","seq":1}', headers=headers, partition=0
).get(timeout=10)
producer.flush()
