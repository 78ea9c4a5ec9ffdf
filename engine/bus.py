"""The event bus: typed engine events fanned out through bounded queues.

Rules:

* `publish` never blocks and never waits on a consumer: the engine must not
  slow down because a screen is slow.
* A lossy subscriber (the default, for displays) keeps the newest `maxsize`
  events; when full it drops the oldest and counts what it dropped.
* A lossless subscriber (the journal) never drops. It applies back-pressure
  instead: its queue may run past `maxsize` by what is already in flight,
  and the engine's workers `await bus.wait_for_capacity()` before taking the
  next order, so the engine slows to the consumer's pace by design.
* Consumers read in batches (`drain`), by async iteration, or through a
  callback run on a small dispatcher thread (never on the publisher).
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections import deque
from collections.abc import AsyncIterator, Callable
from typing import Any

from .events import Event
from .loops import set_event

log = logging.getLogger("execdesk.bus")

__all__ = ["EventBus", "Subscription"]


class Subscription:
    def __init__(self, bus: EventBus, maxsize: int, lossless: bool, name: str) -> None:
        if maxsize < 1:
            raise ValueError(f"maxsize must be >= 1, got {maxsize}")
        self._bus = bus
        self.maxsize = maxsize
        self.lossless = lossless
        self.name = name
        self.dropped = 0
        self.delivered = 0
        self._queue: deque[Event] = deque() if lossless else deque(maxlen=maxsize)
        self._cond = threading.Condition()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._async_ready: asyncio.Event | None = None
        self.closed = False
        self._waiting_threads = 0

    # -- publisher side (the engine) -----------------------------------------------
    def _put(self, event: Event) -> None:
        queue = self._queue
        if not self.lossless and len(queue) == self.maxsize:
            self.dropped += 1  # deque(maxlen) drops the oldest on append
        queue.append(event)
        if self._async_ready is not None:
            self._wake_async()
        if self._waiting_threads:
            with self._cond:
                self._cond.notify_all()

    def _wake_async(self) -> None:
        set_event(self._loop, self._async_ready)

    @property
    def backlog(self) -> int:
        return len(self._queue)

    @property
    def full(self) -> bool:
        return len(self._queue) >= self.maxsize

    # -- consumer side ------------------------------------------------------------------
    def drain(self, limit: int | None = None) -> list[Event]:
        """Take up to `limit` queued events (all by default), oldest first."""
        queue = self._queue
        n = len(queue) if limit is None else min(limit, len(queue))
        out = [queue.popleft() for _ in range(n)]
        self.delivered += n
        if self.lossless and n:
            self._bus._capacity_freed()
        return out

    def get(self, timeout: float | None = None) -> Event | None:
        """Block the calling thread for the next event (None on timeout or close)."""
        with self._cond:
            self._waiting_threads += 1
            try:
                if not self._queue and not self.closed:
                    self._cond.wait(timeout)
            finally:
                self._waiting_threads -= 1
        batch = self.drain(1)
        return batch[0] if batch else None

    async def __anext__(self) -> Event:
        while not self._queue:
            if self.closed:
                raise StopAsyncIteration
            loop = asyncio.get_running_loop()
            if self._loop is not loop or self._async_ready is None:
                self._loop, self._async_ready = loop, asyncio.Event()
            self._async_ready.clear()
            if self._queue:
                break
            await self._async_ready.wait()
        return self.drain(1)[0]

    def __aiter__(self) -> AsyncIterator[Event]:
        return self

    def close(self) -> None:
        self.closed = True
        self._bus._remove(self)
        with self._cond:
            self._cond.notify_all()
        if self._async_ready is not None:
            self._wake_async()


class EventBus:
    def __init__(self) -> None:
        self._subs: tuple[Subscription, ...] = ()
        self._capacity: asyncio.Event | None = None
        self._capacity_loop: asyncio.AbstractEventLoop | None = None
        self.published = 0

    @property
    def active(self) -> bool:
        """True when anyone listens: publishers skip building events otherwise."""
        return bool(self._subs)

    def publish(self, event: Event) -> None:
        self.published += 1
        for sub in self._subs:
            sub._put(event)

    def subscribe(
        self,
        *,
        maxsize: int = 10_000,
        lossless: bool = False,
        name: str = "",
        callback: Callable[[Event], Any] | None = None,
    ) -> Subscription:
        """A new bounded queue of every event from now on.

        With `callback`, a daemon dispatcher thread drains the queue and calls
        it for each event, so a slow callback never runs on the engine's path.
        """
        sub = Subscription(self, maxsize, lossless, name or f"subscriber-{len(self._subs) + 1}")
        self._subs = (*self._subs, sub)
        if callback is not None:
            thread = threading.Thread(
                target=_dispatch, args=(sub, callback), name=f"execdesk-bus-{sub.name}", daemon=True
            )
            thread.start()
        return sub

    def _remove(self, sub: Subscription) -> None:
        self._subs = tuple(s for s in self._subs if s is not sub)
        self._capacity_freed()

    # -- back-pressure from lossless subscribers ---------------------------------------------
    def has_capacity(self) -> bool:
        return not any(s.lossless and s.full for s in self._subs)

    async def wait_for_capacity(self) -> None:
        """Wait while a lossless subscriber is full (the engine's workers call this)."""
        while not self.has_capacity():
            loop = asyncio.get_running_loop()
            if self._capacity is None or self._capacity_loop is not loop:
                self._capacity, self._capacity_loop = asyncio.Event(), loop
            self._capacity.clear()
            if self.has_capacity():
                return
            await self._capacity.wait()

    def _capacity_freed(self) -> None:
        set_event(self._capacity_loop, self._capacity)


def _dispatch(sub: Subscription, callback: Callable[[Event], Any]) -> None:
    while not sub.closed:
        event = sub.get(timeout=0.5)
        if event is None:
            continue
        try:
            callback(event)
        except Exception:
            log.exception("event callback %s failed on %s", sub.name, type(event).__name__)
