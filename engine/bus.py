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
* Publishing is on the engine's hot path (three or four events per order):
  a put is an append and two compares, and wakes a consumer only when one is
  blocked waiting (a desk that drains on its frame timer never is).
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
        # The length at which the next put drops the oldest: never, for a lossless queue.
        self._drops_at = -1 if lossless else maxsize
        self._cond = threading.Condition()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._async_ready: asyncio.Event | None = None
        self.closed = False
        # Consumers blocked in get() or an async iteration: only then does a put wake
        # anyone. Changed under _cond; a publisher reads it after its append, so a
        # consumer that counted itself before looking at the queue is never missed.
        self._waiting = 0
        self._async_waiting = False

    def _wake(self) -> None:
        """A put found a consumer waiting (publisher side)."""
        if self._async_waiting:
            set_event(self._loop, self._async_ready)
        with self._cond:
            self._cond.notify_all()

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
            self._waiting += 1
            try:
                if not self._queue and not self.closed:
                    self._cond.wait(timeout)
            finally:
                self._waiting -= 1
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
            with self._cond:
                self._waiting += 1
                self._async_waiting = True
            try:
                if self._queue or self.closed:
                    continue
                await self._async_ready.wait()
            finally:
                with self._cond:
                    self._waiting -= 1
                    self._async_waiting = False
        return self.drain(1)[0]

    def __aiter__(self) -> AsyncIterator[Event]:
        return self

    def close(self) -> None:
        self.closed = True
        self._bus._remove(self)
        with self._cond:
            self._cond.notify_all()
        if self._async_ready is not None:
            set_event(self._loop, self._async_ready)


class EventBus:
    def __init__(self) -> None:
        self._subs: tuple[Subscription, ...] = ()
        # What publish needs of each subscriber, read in one tuple: its queue, the length
        # at which a put drops the oldest, the subscription.
        self._targets: tuple[tuple[deque[Event], int, Subscription], ...] = ()
        self._lossless: tuple[Subscription, ...] = ()
        self._capacity: asyncio.Event | None = None
        self._capacity_loop: asyncio.AbstractEventLoop | None = None
        self.published = 0

    @property
    def active(self) -> bool:
        """True when anyone listens: publishers skip building events otherwise."""
        return bool(self._subs)

    def publish(self, event: Event) -> None:
        # The hot path (three or four events per order): one Python call per event,
        # whatever the number of subscribers; a put is an append and two compares.
        self.published += 1
        for queue, drops_at, sub in self._targets:
            if len(queue) == drops_at:
                sub.dropped += 1  # deque(maxlen) drops the oldest on append
            queue.append(event)
            if sub._waiting:
                sub._wake()

    def subscribe(
        self,
        *,
        maxsize: int = 10_000,
        lossless: bool = False,
        name: str = "",
        callback: Callable[[Event], Any] | None = None,
        on_idle: Callable[[], Any] | None = None,
    ) -> Subscription:
        """A new bounded queue of every event from now on.

        With `callback`, a daemon dispatcher thread drains the queue and calls
        it for each event, so a slow callback never runs on the engine's path;
        `on_idle` (on that thread) each time the queue is empty after events, and
        every IDLE_TICK_S while it stays empty (the journal's time-bounded commit).
        """
        sub = Subscription(self, maxsize, lossless, name or f"subscriber-{len(self._subs) + 1}")
        self._set_subs((*self._subs, sub))
        if callback is not None:
            thread = threading.Thread(
                target=_dispatch, args=(sub, callback, on_idle), name=f"execdesk-bus-{sub.name}", daemon=True
            )
            thread.start()
        return sub

    def _remove(self, sub: Subscription) -> None:
        self._set_subs(tuple(s for s in self._subs if s is not sub))
        self._capacity_freed()

    def _set_subs(self, subs: tuple[Subscription, ...]) -> None:
        # Each tuple is replaced whole: a publisher on another thread reads the old or the new.
        self._targets = tuple((s._queue, s._drops_at, s) for s in subs)
        self._lossless = tuple(s for s in subs if s.lossless)
        self._subs = subs

    # -- back-pressure from lossless subscribers ---------------------------------------------
    def has_capacity(self) -> bool:
        for sub in self._lossless:  # the engine's workers ask before each order
            if len(sub._queue) >= sub.maxsize:
                return False
        return True

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


# How often a dispatcher with an `on_idle` calls it while nothing comes.
IDLE_TICK_S = 0.05


def _dispatch(sub: Subscription, callback: Callable[[Event], Any],
              on_idle: Callable[[], Any] | None = None) -> None:
    wait = 0.5 if on_idle is None else IDLE_TICK_S
    while not sub.closed:
        event = sub.get(timeout=wait)
        if event is not None:
            try:
                callback(event)
            except Exception:
                log.exception("event callback %s failed on %s", sub.name, type(event).__name__)
            if sub._queue or on_idle is None:
                continue
        elif on_idle is None:
            continue
        try:
            on_idle()
        except Exception:
            log.exception("event callback %s failed when idle", sub.name)
