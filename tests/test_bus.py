"""EventBus: bounded queues per subscriber; a lossy one drops the oldest and
counts, a lossless one never drops and tells publishers to wait instead.
Publishing never blocks, whoever is slow."""

from __future__ import annotations

import threading
from typing import Any

import anyio
import pytest

from engine import EventBus, VirtualClock
from engine.events import Event, Halted
from tests.conftest import virtual_anyio_backend


@pytest.fixture
def anyio_backend(virtual_clock: VirtualClock) -> Any:
    return virtual_anyio_backend(virtual_clock)


def ev(i: int) -> Event:
    return Halted(float(i), float(i), f"e{i}")


def test_publishing_with_nobody_listening_is_counted_and_cheap() -> None:
    bus = EventBus()
    assert not bus.active
    bus.publish(ev(1))
    assert bus.published == 1


def test_a_lossy_subscriber_keeps_the_newest_and_counts_what_it_dropped() -> None:
    bus = EventBus()
    sub = bus.subscribe(maxsize=3, name="screen")
    for i in range(10):
        bus.publish(ev(i))
    assert (sub.backlog, sub.dropped) == (3, 7)
    assert [e.reason for e in sub.drain()] == ["e7", "e8", "e9"]
    assert sub.delivered == 3 and sub.backlog == 0
    assert bus.has_capacity()  # a lossy subscriber never holds anyone back


def test_drain_takes_a_batch_oldest_first() -> None:
    bus = EventBus()
    sub = bus.subscribe()
    for i in range(5):
        bus.publish(ev(i))
    assert [e.reason for e in sub.drain(2)] == ["e0", "e1"]
    assert [e.reason for e in sub.drain()] == ["e2", "e3", "e4"]
    assert sub.drain() == []


def test_every_subscriber_gets_every_event_from_when_it_subscribed() -> None:
    bus = EventBus()
    early = bus.subscribe()
    bus.publish(ev(1))
    late = bus.subscribe()
    bus.publish(ev(2))
    assert [e.reason for e in early.drain()] == ["e1", "e2"]
    assert [e.reason for e in late.drain()] == ["e2"]


def test_a_lossless_subscriber_never_drops_and_signals_back_pressure() -> None:
    bus = EventBus()
    journal = bus.subscribe(maxsize=3, lossless=True, name="journal")
    for i in range(5):
        bus.publish(ev(i))  # never blocks, never drops: past maxsize by what was in flight
    assert (journal.backlog, journal.dropped) == (5, 0)
    assert journal.full and not bus.has_capacity()
    journal.drain(2)
    assert not bus.has_capacity()  # 3 left: still at its bound
    journal.drain(1)
    assert bus.has_capacity()
    assert [e.reason for e in journal.drain()] == ["e3", "e4"]


@pytest.mark.anyio
async def test_wait_for_capacity_waits_until_the_lossless_subscriber_drains() -> None:
    bus = EventBus()
    journal = bus.subscribe(maxsize=2, lossless=True)
    bus.publish(ev(1))
    bus.publish(ev(2))
    passed = anyio.Event()

    async def worker() -> None:
        await bus.wait_for_capacity()
        passed.set()

    async with anyio.create_task_group() as tg:
        tg.start_soon(worker)
        await anyio.sleep(5)
        assert not passed.is_set()
        journal.drain(1)
        with anyio.fail_after(1):
            await passed.wait()


@pytest.mark.anyio
async def test_capacity_freed_from_another_thread_wakes_the_waiter() -> None:
    bus = EventBus()
    journal = bus.subscribe(maxsize=1, lossless=True)
    bus.publish(ev(1))
    passed = anyio.Event()

    async def worker() -> None:
        await bus.wait_for_capacity()
        passed.set()

    async with anyio.create_task_group() as tg:
        tg.start_soon(worker)
        await anyio.sleep(1)
        await anyio.to_thread.run_sync(journal.drain)
        with anyio.fail_after(1):
            await passed.wait()


def test_closing_a_full_lossless_subscriber_releases_the_publishers() -> None:
    bus = EventBus()
    journal = bus.subscribe(maxsize=1, lossless=True)
    bus.publish(ev(1))
    assert not bus.has_capacity()
    journal.close()
    assert bus.has_capacity() and not bus.active
    bus.publish(ev(2))
    assert journal.backlog == 1  # a closed subscriber gets nothing more


@pytest.mark.anyio
async def test_async_iteration_waits_for_events_and_ends_when_closed() -> None:
    bus = EventBus()
    sub = bus.subscribe()
    got: list[str] = []

    async def reader() -> None:
        async for event in sub:
            got.append(event.reason)

    async with anyio.create_task_group() as tg:
        tg.start_soon(reader)
        await anyio.sleep(1)
        bus.publish(ev(1))
        await anyio.sleep(1)
        # From another thread (the engine's sync parts publish from theirs).
        await anyio.to_thread.run_sync(bus.publish, ev(2))
        await anyio.sleep(1)
        assert got == ["e1", "e2"]
        sub.close()
    assert got == ["e1", "e2"]


def test_a_blocked_callback_never_blocks_the_publisher() -> None:
    bus = EventBus()
    release = threading.Event()
    seen: list[str] = []
    first = threading.Event()

    def callback(event: Event) -> None:
        seen.append(event.reason)
        first.set()
        release.wait(30)

    sub = bus.subscribe(maxsize=10, name="stuck", callback=callback)
    bus.publish(ev(0))
    assert first.wait(30)
    for i in range(1, 100):
        bus.publish(ev(i))  # returns at once although the callback is stuck
    assert bus.published == 100
    assert sub.backlog == 10 and sub.dropped == 89
    release.set()
    sub.close()


def test_a_failing_callback_is_logged_and_the_next_event_still_arrives(
    caplog: pytest.LogCaptureFixture,
) -> None:
    bus = EventBus()
    seen: list[str] = []
    done = threading.Event()

    def callback(event: Event) -> None:
        if event.reason == "e0":
            raise ValueError("consumer bug")
        seen.append(event.reason)
        done.set()

    sub = bus.subscribe(callback=callback, name="buggy")
    bus.publish(ev(0))
    bus.publish(ev(1))
    assert done.wait(30)
    assert seen == ["e1"]
    sub.close()
    assert any("consumer bug" in (r.exc_text or "") or r.exc_info for r in caplog.records)


def test_maxsize_must_be_positive() -> None:
    with pytest.raises(ValueError, match="maxsize must be >= 1, got 0"):
        EventBus().subscribe(maxsize=0)
