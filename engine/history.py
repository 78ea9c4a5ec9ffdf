"""Finished records, kept compactly.

A finished order is history: it is still asked about (its status, a resubmitted
client order id) but rarely, and it no longer changes. Kept as live objects, each
remembered order was about ten Python objects (the order, its result, their dicts,
sets and fills) that the cycle collector walked on every full collection: with
100,000 remembered per layer, under the desk's demo flow those walks were pauses of
200-400 ms, the worst of the desk's key-to-screen latency. Here a record is one
pickled `bytes` value: about half the memory, and nothing for the collector to walk.
Reading one back builds a fresh copy (a few microseconds), so a caller that wants to
change a record takes it out with `pop` and puts it back.
"""

from __future__ import annotations

import pickle
from collections import OrderedDict
from collections.abc import Iterator
from typing import Generic, TypeVar

V = TypeVar("V")

_PROTOCOL = pickle.HIGHEST_PROTOCOL


class History(Generic[V]):
    """An insertion-ordered, bounded map of finished records (the oldest leave first)."""

    __slots__ = ("_data", "limit")

    def __init__(self, limit: int) -> None:
        if limit < 0:
            raise ValueError(f"limit must be >= 0, got {limit}")
        self.limit = limit
        self._data: OrderedDict[str, bytes] = OrderedDict()

    def put(self, key: str, value: V) -> None:
        data = self._data
        data[key] = pickle.dumps(value, _PROTOCOL)
        data.move_to_end(key)
        while len(data) > self.limit:
            data.popitem(last=False)

    def get(self, key: str) -> V | None:
        raw = self._data.get(key)
        return None if raw is None else pickle.loads(raw)

    def pop(self, key: str) -> V | None:
        raw = self._data.pop(key, None)
        return None if raw is None else pickle.loads(raw)

    def __contains__(self, key: object) -> bool:
        return key in self._data

    def __len__(self) -> int:
        return len(self._data)

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def clear(self) -> None:
        self._data.clear()
