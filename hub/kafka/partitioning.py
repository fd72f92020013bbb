"""The producers' partitioner: Kafka's default (murmur2 of the key), its hashes remembered.

aiokafka's murmur2 is pure Python, and the hub hashes the same few keys again and again: every
record of a transaction's steps is keyed by the transaction id, about a dozen records per
request. The hash of a key never changes, so it is kept (for the last `KEPT` keys) and a
record lands on exactly the partition aiokafka's `DefaultPartitioner` would choose."""

from __future__ import annotations

import random
from collections.abc import Sequence

from aiokafka.partitioner import murmur2

KEPT = 8192  # keys whose hash is remembered: the transactions of the last few seconds


class KeyPartitioner:
    """A drop-in for `aiokafka.partitioner.DefaultPartitioner` (same choice, same signature)."""

    def __init__(self, kept: int = KEPT) -> None:
        self.kept = kept
        self.hashes: dict[bytes, int] = {}

    def hash(self, key: bytes) -> int:
        found = self.hashes.get(key)
        if found is None:
            found = murmur2(key) & 0x7FFFFFFF
            if len(self.hashes) >= self.kept:
                self.hashes.clear()  # cheaper than an LRU, and refilled within a second
            self.hashes[key] = found
        return found

    def __call__(
        self, key: bytes | None, all_partitions: Sequence[int], available: Sequence[int]
    ) -> int:
        if key is None:
            return random.choice(available or all_partitions)
        return all_partitions[self.hash(key) % len(all_partitions)]


PARTITIONER = KeyPartitioner()  # one per process: the producers share the hashes
