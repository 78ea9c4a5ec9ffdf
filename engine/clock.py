"""Time for the engine: one `Clock` that tells the time and waits until a time.

Everything that needs the time takes a Clock, so the same scheduler, routers
and venues run in real time (the desk, throughput benchmarks) or in virtual
time (tests, benchmarks of long schedules) unchanged.

Rules of the virtual clock (trio's MockClock autojump, for threads and for
an asyncio loop):

* Sync side: threads that take part register (`VirtualClock.participate()`;
  the thread that creates the clock is registered). Time moves only when
  every registered thread is waiting in the clock (`sleep_until` or
  `wait_event`); then it jumps to the earliest wake-up. Unregistered threads
  may sleep too, they just never hold time back.
* Async side: `clock.loop_factory` makes an asyncio loop whose `time()` is the
  clock's, and which, when it has nothing ready to run and would block until
  its next timer, jumps there instead. Every `anyio.sleep`, timeout and
  `sleep_until_async` on that loop is then virtual.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import math
import selectors
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, Protocol

import anyio

__all__ = ["Clock", "RealClock", "VirtualClock", "ClockEvent"]


class ClockEvent(Protocol):
    def set(self) -> None: ...
    def is_set(self) -> bool: ...
    def clear(self) -> None: ...


class Clock(Protocol):
    """What every part of the engine needs of time."""

    def now(self) -> float:
        """Seconds since the epoch (virtual clocks start where they are told)."""

    def now_ns(self) -> int:
        """The same instant in integer nanoseconds, for latency measurement."""

    def sleep_until(self, deadline: float) -> None:
        """Block the calling thread until `now() >= deadline`."""

    def sleep(self, seconds: float) -> None: ...

    async def sleep_until_async(self, deadline: float) -> None:
        """Wait in the running event loop until `now() >= deadline`."""

    async def sleep_async(self, seconds: float) -> None: ...

    def event(self) -> ClockEvent:
        """An event that `wait_event` can wait for on this clock."""

    def wait_event(self, event: ClockEvent, deadline: float | None = None) -> bool:
        """Block until the event is set (True) or the deadline passes (False)."""

    def backend_options(self) -> dict[str, Any]:
        """anyio backend options for an event loop that keeps this clock's time."""

    def expect_participant(self) -> None:
        """Announce a thread that will take part (virtual time waits for it)."""

    def participate(self) -> contextlib.AbstractContextManager[None]:
        """Context in which the calling thread takes part in virtual time."""


class RealClock:
    """Wall-clock time: `time.time()` for timestamps, a monotonic clock for waits."""

    def expect_participant(self) -> None:
        """Only virtual time needs to know who takes part."""

    @contextmanager
    def participate(self) -> Iterator[None]:
        yield

    def __init__(self) -> None:
        # Timestamps are wall time; intervals come from perf_counter_ns so a
        # wall-clock step never makes a latency negative.
        self._offset = time.time() - time.perf_counter()
        self._offset_ns = time.time_ns() - time.perf_counter_ns()

    def now(self) -> float:
        return time.perf_counter() + self._offset

    def now_ns(self) -> int:
        return time.perf_counter_ns() + self._offset_ns

    def sleep_until(self, deadline: float) -> None:
        delay = deadline - self.now()
        if delay > 0:
            time.sleep(delay)

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            time.sleep(seconds)

    async def sleep_until_async(self, deadline: float) -> None:
        await anyio.sleep(max(deadline - self.now(), 0.0))

    async def sleep_async(self, seconds: float) -> None:
        await anyio.sleep(max(seconds, 0.0))

    def event(self) -> threading.Event:
        return threading.Event()

    def wait_event(self, event: ClockEvent, deadline: float | None = None) -> bool:
        timeout = None if deadline is None else max(deadline - self.now(), 0.0)
        return event.wait(timeout)  # type: ignore[attr-defined]

    def backend_options(self) -> dict[str, Any]:
        return {}


class _VirtualEvent:
    """An event whose waiters sleep in a VirtualClock, so they count as waiting."""

    __slots__ = ("_clock", "_flag")

    def __init__(self, clock: VirtualClock) -> None:
        self._clock = clock
        self._flag = False

    def set(self) -> None:
        with self._clock._cond:
            self._flag = True
            self._clock._cond.notify_all()

    def clear(self) -> None:
        self._flag = False

    def is_set(self) -> bool:
        return self._flag


class VirtualClock:
    """Virtual time that jumps to the earliest wake-up when everyone waits.

    `advance(seconds)` moves time by hand (tests of a single component);
    otherwise time moves by itself as the module docstring says.
    """

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self._now = float(start)
        self._cond = threading.Condition()
        self._deadlines: list[tuple[float, int]] = []  # heap of sleeping deadlines
        self._seq = itertools.count()
        self._registered: dict[int, int] = {threading.get_ident(): 1}
        self._waiting: set[int] = set()  # registered threads now waiting in the clock
        self._ready_checks: dict[int, Callable[[], bool]] = {}  # every waiter's wake condition
        self._expected = 0  # threads announced by expect_participant, not yet started

    # -- telling the time -------------------------------------------------
    def now(self) -> float:
        return self._now

    def now_ns(self) -> int:
        return round(self._now * 1e9)

    def is_waiting(self, thread_ident: int) -> bool:
        """Whether that thread is parked in this clock now (in `sleep_until` or
        `wait_event`): how a test knows, without a timing guess, that a thread waits."""
        with self._cond:
            return thread_ident in self._waiting

    def advance(self, seconds: float) -> None:
        """Move time forward by hand and wake whoever is due."""
        if seconds < 0 or not math.isfinite(seconds):
            raise ValueError(f"seconds must be finite and >= 0, got {seconds!r}")
        with self._cond:
            self._now += seconds
            self._cond.notify_all()

    def _jump_to(self, t: float) -> None:
        # Called by the async loop: time only ever moves forward.
        with self._cond:
            if t > self._now:
                self._now = t
                self._cond.notify_all()

    # -- taking part ---------------------------------------------------------
    def expect_participant(self) -> None:
        """Announce a thread about to start and `participate()`: time waits for it meanwhile."""
        with self._cond:
            self._expected += 1

    @contextmanager
    def participate(self) -> Iterator[None]:
        """Register the calling thread: time waits for it while it is busy."""
        ident = threading.get_ident()
        with self._cond:
            self._registered[ident] = self._registered.get(ident, 0) + 1
            if self._expected:
                self._expected -= 1
        try:
            yield
        finally:
            with self._cond:
                count = self._registered[ident] - 1
                if count:
                    self._registered[ident] = count
                else:
                    del self._registered[ident]
                    self._waiting.discard(ident)
                # A thread leaving may be the last one busy.
                self._maybe_jump()
                self._cond.notify_all()

    def _maybe_jump(self) -> None:
        """With the lock held: if every registered thread waits, jump to the earliest deadline."""
        if self._expected or len(self._waiting) < len(self._registered):
            return
        # A waiter whose event is set is about to run: it is busy, not waiting.
        if any(ready() for ready in self._ready_checks.values()):
            return
        if self._deadlines:
            earliest = self._deadlines[0][0]
            if earliest <= self._now:
                # Its sleeper is due and about to run, like a set event: it is
                # busy. (Dropping its deadline here let time jump past it.)
                return
            self._now = earliest
            self._cond.notify_all()

    def _wait(self, deadline: float | None, ready: Callable[[], bool]) -> bool:
        ident = threading.get_ident()
        registered = ident in self._registered
        with self._cond:
            entry = None
            key = next(self._seq)
            self._ready_checks[key] = ready
            if deadline is not None:
                entry = (deadline, next(self._seq))
                heapq.heappush(self._deadlines, entry)
            if registered:
                self._waiting.add(ident)
            try:
                while True:
                    if ready():
                        return True
                    if deadline is not None and self._now >= deadline:
                        return False
                    self._maybe_jump()
                    if ready() or (deadline is not None and self._now >= deadline):
                        continue
                    self._cond.wait()
            finally:
                del self._ready_checks[key]
                if registered:
                    self._waiting.discard(ident)
                if entry is not None:
                    self._deadlines.remove(entry)
                    heapq.heapify(self._deadlines)
                # A due or ready waiter held time back until now; if the others
                # all wait, time moves on (a registered thread leaving is busy,
                # so this does nothing for it).
                self._maybe_jump()

    # -- waiting from threads ---------------------------------------------------
    def sleep_until(self, deadline: float) -> None:
        if deadline > self._now:
            self._wait(deadline, lambda: False)

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            self.sleep_until(self._now + seconds)

    def event(self) -> _VirtualEvent:
        return _VirtualEvent(self)

    def wait_event(self, event: ClockEvent, deadline: float | None = None) -> bool:
        if event.is_set():
            return True
        return self._wait(deadline, event.is_set)

    # -- waiting in an event loop ----------------------------------------------
    async def sleep_until_async(self, deadline: float) -> None:
        loop = asyncio.get_running_loop()
        if not isinstance(loop, _VirtualLoop) or loop.clock is not self:
            raise RuntimeError(
                "VirtualClock.sleep_until_async needs an event loop that keeps the clock's time: "
                "run with anyio.run(..., backend_options=clock.backend_options())"
            )
        await anyio.sleep(max(deadline - self._now, 0.0))

    async def sleep_async(self, seconds: float) -> None:
        await self.sleep_until_async(self._now + max(seconds, 0.0))

    def loop_factory(self) -> asyncio.AbstractEventLoop:
        return _VirtualLoop(self)

    def backend_options(self) -> dict[str, Any]:
        return {"loop_factory": self.loop_factory}


class _AutojumpSelector(selectors.DefaultSelector):  # type: ignore[misc,valid-type]
    """Polls for real I/O; when there is none, jumps virtual time to the next timer."""

    def __init__(self, clock: VirtualClock) -> None:
        super().__init__()
        self._clock = clock

    def select(self, timeout: float | None = None) -> list[Any]:
        if timeout is None:
            return super().select(None)  # nothing scheduled at all: genuinely idle
        events = super().select(0)
        if events or timeout <= 0:
            return events
        self._clock._jump_to(self._clock.now() + timeout)
        return []


class _VirtualLoop(asyncio.SelectorEventLoop):
    def __init__(self, clock: VirtualClock) -> None:
        self.clock = clock
        super().__init__(_AutojumpSelector(clock))

    def time(self) -> float:
        return self.clock.now()

    # asyncio runs a timer once `when < time() + _clock_resolution`. Its 1 ns
    # resolution is below the float spacing of epoch-scale times (~2.4e-7 s at
    # 1.7e9), so time() + 1e-9 == time() and a timer due exactly now never ran:
    # the loop spun on select(0) forever. One float step of now is the real
    # resolution of this clock.
    @property
    def _clock_resolution(self) -> float:
        return max(1e-9, 2 * math.ulp(self.clock.now()))

    @_clock_resolution.setter
    def _clock_resolution(self, value: float) -> None:
        pass  # BaseEventLoop.__init__ sets the monotonic clock's; ours is derived
