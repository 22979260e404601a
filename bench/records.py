"""Realistic bulk data for the compressible row: repeated records with text fields.

``bench.Records { repeated bench.Record records = 1; }``, where a record has an id, a name, an
email address, a city, a country, tags, a free-text comment, a score, a timestamp and a flag: the
kind of message a service moves in bulk. The types are built at run time from a descriptor (no
generated code to keep in step) and the records from a seeded random generator over small
vocabularies, so they compress about as well as real data does: well, but not trivially.
"""

from __future__ import annotations

import functools
import random
from typing import Any

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.message import Message

_F = descriptor_pb2.FieldDescriptorProto

FIRST = [
    "Ada",
    "Alan",
    "Grace",
    "Linus",
    "Barbara",
    "Ken",
    "Dennis",
    "Margaret",
    "Guido",
    "Bjarne",
    "Edsger",
    "Donald",
]
LAST = [
    "Lovelace",
    "Turing",
    "Hopper",
    "Torvalds",
    "Liskov",
    "Thompson",
    "Ritchie",
    "Hamilton",
    "Rossum",
    "Knuth",
]
CITIES = [
    ("Lyon", "France"),
    ("Porto", "Portugal"),
    ("Leipzig", "Germany"),
    ("Bologna", "Italy"),
    ("Gdansk", "Poland"),
    ("Tartu", "Estonia"),
    ("Ghent", "Belgium"),
    ("Aarhus", "Denmark"),
]
TAGS = [
    "new",
    "returning",
    "premium",
    "trial",
    "churn-risk",
    "newsletter",
    "beta",
    "mobile",
    "desktop",
    "api",
]
WORDS = [
    "the",
    "order",
    "arrived",
    "late",
    "but",
    "support",
    "was",
    "quick",
    "to",
    "help",
    "and",
    "the",
    "refund",
    "came",
    "within",
    "two",
    "days",
    "customer",
    "asked",
    "about",
    "invoices",
    "shipping",
    "options",
    "export",
    "formats",
    "and",
    "the",
    "yearly",
    "plan",
    "price",
    "please",
    "call",
    "back",
    "after",
    "five",
    "about",
    "the",
    "broken",
    "login",
    "link",
    "on",
    "the",
    "settings",
    "page",
]


def _records_file() -> descriptor_pb2.FileDescriptorProto:
    file = descriptor_pb2.FileDescriptorProto(name="bench/records.proto", package="bench")
    file.syntax = "proto3"
    record = file.message_type.add(name="Record")
    optional, repeated = _F.LABEL_OPTIONAL, _F.LABEL_REPEATED
    for number, (name, kind, label) in enumerate(
        [
            ("id", _F.TYPE_INT64, optional),
            ("name", _F.TYPE_STRING, optional),
            ("email", _F.TYPE_STRING, optional),
            ("city", _F.TYPE_STRING, optional),
            ("country", _F.TYPE_STRING, optional),
            ("tags", _F.TYPE_STRING, repeated),
            ("comment", _F.TYPE_STRING, optional),
            ("score", _F.TYPE_DOUBLE, optional),
            ("created_at", _F.TYPE_INT64, optional),
            ("active", _F.TYPE_BOOL, optional),
        ],
        start=1,
    ):
        record.field.add(name=name, number=number, type=kind, label=label)
    records = file.message_type.add(name="Records")
    records.field.add(
        name="records", number=1, type=_F.TYPE_MESSAGE, label=repeated, type_name=".bench.Record"
    )
    return file


@functools.cache
def records_type() -> type[Message]:
    """The ``bench.Records`` message class."""
    pool = descriptor_pool.DescriptorPool()
    pool.Add(_records_file())
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("bench.Records"))


def make_records(size: int, seed: int = 1) -> Message:
    """A ``bench.Records`` message of about ``size`` serialized bytes (a little more)."""
    rng = random.Random(seed)
    message: Any = records_type()()  # a runtime-built type: its fields are not known statically
    made = ident = 0
    while made < size:
        ident += 1
        first, last = rng.choice(FIRST), rng.choice(LAST)
        record = message.records.add()
        record.id = 1_000_000 + ident
        record.name = f"{first} {last}"
        record.email = f"{first.lower()}.{last.lower()}{rng.randrange(1000)}@example.org"
        record.city, record.country = rng.choice(CITIES)
        record.tags.extend(rng.sample(TAGS, rng.randrange(1, 4)))
        record.comment = " ".join(rng.choices(WORDS, k=rng.randrange(8, 30)))
        record.score = round(rng.uniform(0, 5), 2)
        record.created_at = 1_700_000_000 + rng.randrange(50_000_000)
        record.active = rng.random() < 0.8
        made += record.ByteSize() + 3
    result: Message = message
    return result
