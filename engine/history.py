"""Finished records, kept compactly.

A finished order is history: it is still asked about (its status, a resubmitted
client order id) but rarely, and it no longer changes. Kept as live objects, each
remembered order was about ten Python objects (the order, its result, their dicts,
sets and fills) that the cycle collector walked on every full collection: with
100,000 remembered per layer, under the desk's demo flow those walks were pauses of
200-400 ms, the worst of the desk's key-to-screen latency. Here a record is pickled
(`bytes`, in small pieces when long): about half the memory, and nothing for the
collector to walk.
Reading one back builds a fresh copy (tens of microseconds), so a caller that wants to
change a record takes it out and puts it back. A record that cannot be pickled (a
venue's `detail` may hold anything) is kept live, with a warning, rather than lost.
"""

from __future__ import annotations

import logging
import pickle
from collections import OrderedDict
from collections.abc import Callable, Iterator
from typing import Any, Generic, TypeVar

V = TypeVar("V")
log = logging.getLogger("execdesk.history")

_PROTOCOL = pickle.HIGHEST_PROTOCOL


# The most a kept piece holds: with a bytes object's 33-byte header it stays within the
# 512 bytes Python's small-object allocator serves; larger objects come from malloc.
_PIECE = 448


def _small_pieces(raw: bytes) -> bytes | tuple[bytes, ...]:
    """`raw` as what Python's small-object allocator keeps: a copy, or copies of its pieces.

    Kept records come and go all day in an order unlike the one they were made in. From
    malloc, they left the C heap ever more holes: `dumps` writes into a 4 KiB block and
    shrinks it in place, so each record pinned a ~250-byte chunk in front of a ~3.8 KiB
    hole, and records over 512 bytes (an order with many fills) were chunks of every size.
    That free space, not anything kept, made the desk's RSS climb all through an hour's
    soak. Small objects live in pools of one size each, where a freed slot is reused.
    """
    view = memoryview(raw)
    if len(raw) <= _PIECE:
        return bytes(view)
    return tuple(bytes(view[i:i + _PIECE]) for i in range(0, len(raw), _PIECE))


class _Live:
    """A record that could not be pickled, kept as it is."""

    __slots__ = ("value",)

    def __init__(self, value: object) -> None:
        self.value = value


class History(Generic[V]):
    """An insertion-ordered, bounded map of finished records (the oldest leave first).

    The newest `live` records are kept as they are (the ones still read soon after they
    finish: no pickling for them); older ones are pickled. Not thread-safe: its owner
    guards it (a router with its lock).
    """

    __slots__ = ("_data", "_pack", "_recent", "_unpack", "limit", "live")

    def __init__(
        self,
        limit: int,
        *,
        live: int = 0,
        pack: Callable[[V], Any] | None = None,
        unpack: Callable[[Any], V] | None = None,
    ) -> None:
        """`pack` turns a record into something smaller to pickle (plain tuples), and
        `unpack` builds an equal record back from it; both or neither."""
        if limit < 0:
            raise ValueError(f"limit must be >= 0, got {limit}")
        if live < 0:
            raise ValueError(f"live must be >= 0, got {live}")
        self.limit = limit
        self.live = min(live, limit)
        self._data: OrderedDict[str, bytes | tuple[bytes, ...] | _Live] = OrderedDict()  # older, pickled
        self._recent: OrderedDict[str, V] = OrderedDict()  # newest, as they are
        if (pack is None) != (unpack is None):
            raise ValueError("pack and unpack go together")
        self._pack = pack
        self._unpack = unpack

    def put(self, key: str, value: V) -> None:
        if self.limit == 0:
            return
        self._data.pop(key, None)
        recent = self._recent
        recent[key] = value
        recent.move_to_end(key)
        while len(recent) > self.live:
            old, old_value = recent.popitem(last=False)
            self._store(old, old_value)
        data = self._data
        while len(data) + len(recent) > self.limit:
            data.popitem(last=False)

    def _store(self, key: str, value: V) -> None:
        try:
            pack = self._pack
            self._data[key] = _small_pieces(pickle.dumps(value if pack is None else pack(value), _PROTOCOL))
        except Exception as exc:  # e.g. a lock in a venue's `detail`: keep it live, never fail
            log.warning("history keeps %r as a live object: it cannot be pickled (%s: %s)",
                        key, type(exc).__name__, exc)
            self._data[key] = _Live(value)

    def get(self, key: str) -> V | None:
        value = self._recent.get(key)
        if value is not None:
            return value
        return self._load(self._data.get(key))

    def pop(self, key: str) -> V | None:
        value = self._recent.pop(key, None)
        if value is not None:
            return value
        return self._load(self._data.pop(key, None))

    def _load(self, raw: bytes | tuple[bytes, ...] | _Live | None) -> Any:
        if raw is None:
            return None
        if isinstance(raw, _Live):
            return raw.value
        if type(raw) is tuple:
            raw = b"".join(raw)
        value = pickle.loads(raw)
        return value if self._unpack is None else self._unpack(value)

    def packed(self, key: str) -> Any:
        """A pickled record's packed form (what `pack` made), not built back: for a reader
        that needs only part of it. None when it is kept as an object or is unknown."""
        raw = self._data.get(key)
        if raw is None or isinstance(raw, _Live):
            return None
        if type(raw) is tuple:
            raw = b"".join(raw)
        return pickle.loads(raw)

    def kept(self, key: str) -> bytes | tuple[bytes, ...] | None:
        """The pickled form kept for `key` (its pieces, when long): what it costs to keep.
        None when it is kept as an object (among the newest `live`, or not picklable) or
        is unknown."""
        raw = self._data.get(key)
        return None if raw is None or isinstance(raw, _Live) else raw

    def __contains__(self, key: object) -> bool:
        return key in self._recent or key in self._data

    def __len__(self) -> int:
        return len(self._data) + len(self._recent)

    def __iter__(self) -> Iterator[str]:
        yield from list(self._data)
        yield from list(self._recent)

    def clear(self) -> None:
        self._data.clear()
        self._recent.clear()
