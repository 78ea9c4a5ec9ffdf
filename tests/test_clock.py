"""The clocks: RealClock basics, VirtualClock's autojump for threads and loops.

No test here sleeps in real time or asserts on wall time beyond "close to
time.time()": virtual time is asserted exactly. Thread joins carry a generous
real timeout only so that a broken clock fails the test instead of hanging it.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable

import anyio
import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine import Clock, RealClock, VirtualClock
from tests.conftest import VIRTUAL_START, virtual_anyio_backend

START = VIRTUAL_START
JOIN_TIMEOUT = 30.0  # a safety net against a hang, never a timing assertion


def _join(*threads: threading.Thread) -> None:
    for t in threads:
        t.join(JOIN_TIMEOUT)
        assert not t.is_alive(), f"{t.name} is stuck: virtual time did not move for it"


def _spawn(target: Callable[[], None], name: str) -> threading.Thread:
    t = threading.Thread(target=target, name=name, daemon=True)
    t.start()
    return t


def _until_parked(clock: VirtualClock, ident: int | None) -> None:
    """Block (in real time) until thread `ident` waits inside the clock.

    `is_waiting` is the only way to know, without a timing guess, that a thread is
    parked in `wait_event`/`sleep_until`.
    """
    deadline = time.monotonic() + JOIN_TIMEOUT
    while True:
        if clock.is_waiting(ident):
            return
        assert time.monotonic() < deadline, "thread never started waiting in the clock"
        time.sleep(0.0005)  # yield to the other threads; not a timing assumption


# -- RealClock ---------------------------------------------------------------


def test_real_clock_is_a_clock_and_tells_wall_time() -> None:
    clock: Clock = RealClock()
    assert abs(clock.now() - time.time()) < 1.0
    assert abs(clock.now_ns() / 1e9 - clock.now()) < 1.0
    readings = [clock.now_ns() for _ in range(1000)]
    assert readings == sorted(readings), "now_ns must never step backwards"


def test_real_clock_past_deadlines_return_at_once() -> None:
    clock = RealClock()
    clock.sleep_until(clock.now() - 3600)  # would hang for an hour if it slept
    clock.sleep(-5)
    clock.sleep(0)
    assert clock.wait_event(clock.event(), deadline=clock.now() - 3600) is False
    ev = clock.event()
    ev.set()
    assert clock.wait_event(ev) is True
    assert clock.backend_options() == {}
    with clock.participate():
        clock.expect_participant()


def test_real_clock_async_past_deadline_returns() -> None:
    clock = RealClock()

    async def main() -> None:
        await clock.sleep_until_async(clock.now() - 3600)
        await clock.sleep_async(-1)

    anyio.run(main)


# -- VirtualClock: by hand -------------------------------------------------------


def test_virtual_clock_starts_where_told(virtual_clock: VirtualClock) -> None:
    assert virtual_clock.now() == START
    assert virtual_clock.now_ns() == 1_700_000_000 * 10**9
    assert VirtualClock(start=12.5).now() == 12.5


def test_advance_moves_time(virtual_clock: VirtualClock) -> None:
    virtual_clock.advance(1.5)
    virtual_clock.advance(0)
    assert virtual_clock.now() == START + 1.5
    assert virtual_clock.now_ns() == round((START + 1.5) * 1e9)


@pytest.mark.parametrize("bad", [-1.0, -1e-9, math.nan, math.inf])
def test_advance_refuses_negative_and_non_finite(virtual_clock: VirtualClock, bad: float) -> None:
    with pytest.raises(ValueError, match="finite and >= 0"):
        virtual_clock.advance(bad)
    assert virtual_clock.now() == START


def test_advance_wakes_an_unregistered_sleeper(virtual_clock: VirtualClock) -> None:
    woke: list[float] = []
    t = _spawn(lambda: (virtual_clock.sleep_until(START + 5), woke.append(virtual_clock.now())), "u")
    virtual_clock.advance(5)
    _join(t)
    assert woke == [START + 5]


def test_past_deadlines_return_without_moving_time(virtual_clock: VirtualClock) -> None:
    virtual_clock.sleep_until(START - 10)
    virtual_clock.sleep_until(START)
    virtual_clock.sleep(0)
    virtual_clock.sleep(-3)
    assert virtual_clock.wait_event(virtual_clock.event(), deadline=START) is False
    assert virtual_clock.now() == START


# -- VirtualClock: autojump for threads -------------------------------------------


def test_lone_thread_jumps_to_its_own_wake_up(virtual_clock: VirtualClock) -> None:
    virtual_clock.sleep(5)
    assert virtual_clock.now() == START + 5
    virtual_clock.sleep_until(START + 3600)
    assert virtual_clock.now() == START + 3600


def test_wait_event_returns_false_exactly_at_the_deadline(virtual_clock: VirtualClock) -> None:
    ev = virtual_clock.event()
    assert virtual_clock.wait_event(ev, deadline=START + 7.25) is False
    assert virtual_clock.now() == START + 7.25


def test_wait_event_set_event_returns_true_without_moving_time(virtual_clock: VirtualClock) -> None:
    ev = virtual_clock.event()
    ev.set()
    assert ev.is_set()
    assert virtual_clock.wait_event(ev, deadline=START + 10) is True
    assert virtual_clock.now() == START
    ev.clear()
    assert not ev.is_set()


def _run_workers(clock: VirtualClock, plans: list[list[float]]) -> list[list[float]]:
    """Each plan is one registered worker's sleeps; returns each worker's wake-up times.

    The main thread waits in `wait_event` with a far deadline; the workers are
    announced with `expect_participant` before they start.
    """
    wakes: list[list[float]] = [[] for _ in plans]
    done = [clock.event() for _ in plans]
    errors: list[BaseException] = []

    def worker(i: int) -> None:
        # done is set while still taking part: once a thread leaves, time
        # no longer waits for it, and the main thread's deadline could come first.
        with clock.participate():
            try:
                for s in plans[i]:
                    clock.sleep(s)
                    wakes[i].append(clock.now())
            except BaseException as exc:  # reported by the main thread
                errors.append(exc)
            finally:
                done[i].set()

    threads = []
    for i in range(len(plans)):
        clock.expect_participant()
        threads.append(_spawn(lambda i=i: worker(i), f"w{i}"))
    far = START + 10 * (1 + sum(sum(p) for p in plans))
    for ev in done:
        assert clock.wait_event(ev, deadline=far) is True
    _join(*threads)
    assert not errors
    return wakes


def _cumulative(plan: list[float]) -> list[float]:
    out, t = [], START
    for s in plan:
        t += s
        out.append(t)
    return out


def test_worker_sleeps_jump_exactly_to_each_deadline(virtual_clock: VirtualClock) -> None:
    plan = [1.0, 0.5, 2.0, 0.25, 10.0]
    [wakes] = _run_workers(virtual_clock, [plan])
    assert wakes == _cumulative(plan)
    # where the last sleeper woke, not the main thread's far deadline
    assert virtual_clock.now() == START + sum(plan)


def test_many_workers_never_overshoot_a_deadline_repeatedly() -> None:
    # Several sleepers due together is where a jump could skip someone who is
    # due but not yet running; repeat to give the race many chances.
    plans = [[1.0] * 20, [1.0] * 20, [0.5] * 40]
    for _ in range(100):
        clock = VirtualClock(start=START)
        wakes = _run_workers(clock, plans)
        assert wakes == [_cumulative(p) for p in plans]
        assert clock.now() == START + 20


@given(
    st.lists(
        st.lists(st.integers(min_value=0, max_value=8).map(lambda n: n / 4), min_size=1, max_size=12),
        min_size=1,
        max_size=4,
    )
)
def test_every_worker_wakes_exactly_at_its_deadlines(plans: list[list[float]]) -> None:
    clock = VirtualClock(start=START)
    wakes = _run_workers(clock, plans)
    assert wakes == [_cumulative(p) for p in plans]
    assert clock.now() == START + max(sum(p) for p in plans)


def test_time_waits_for_an_announced_participant(virtual_clock: VirtualClock) -> None:
    clock = virtual_clock
    go = threading.Event()  # holds the worker back until the main thread waits
    done = clock.event()
    seen: list[float] = []

    def worker() -> None:
        go.wait(JOIN_TIMEOUT)
        with clock.participate():
            seen.append(clock.now())
            clock.sleep(1)
            done.set()

    main_ident = threading.get_ident()

    def release() -> None:
        _until_parked(clock, main_ident)
        seen.append(clock.now())  # main waits, the worker has not started: no jump
        go.set()

    clock.expect_participant()
    w = _spawn(worker, "announced")
    r = _spawn(release, "release")
    assert clock.wait_event(done, deadline=START + 100) is True
    _join(w, r)
    assert seen == [START, START]
    assert clock.now() == START + 1


def test_leaving_participation_lets_time_move(virtual_clock: VirtualClock) -> None:
    clock = virtual_clock
    go = threading.Event()

    def worker() -> None:
        with clock.participate():
            go.wait(JOIN_TIMEOUT)  # busy outside the clock: holds time back

    clock.expect_participant()
    w = _spawn(worker, "busy")
    main_ident = threading.get_ident()
    seen: list[float] = []

    def release() -> None:
        _until_parked(clock, main_ident)
        seen.append(clock.now())
        go.set()

    r = _spawn(release, "release")
    assert clock.wait_event(clock.event(), deadline=START + 50) is False
    _join(w, r)
    assert seen == [START]
    assert clock.now() == START + 50


def test_an_unregistered_busy_thread_never_holds_time_back(virtual_clock: VirtualClock) -> None:
    go = threading.Event()
    u = _spawn(lambda: go.wait(JOIN_TIMEOUT), "busy-unregistered")
    virtual_clock.sleep(5)  # would hang if the busy thread counted
    assert virtual_clock.now() == START + 5
    go.set()
    _join(u)


def test_an_unregistered_sleeper_never_holds_time_back(virtual_clock: VirtualClock) -> None:
    clock = virtual_clock
    woke: list[float] = []

    def late() -> None:
        clock.sleep_until(START + 1000)
        woke.append(clock.now())

    u = _spawn(late, "late-unregistered")
    clock.sleep(5)
    assert clock.now() == START + 5
    clock.sleep_until(START + 1000)  # the main thread takes time there; the sleeper wakes
    _join(u)
    assert woke == [START + 1000]


def test_an_unregistered_early_sleeper_wakes_and_time_goes_on() -> None:
    # The sleeper is due first; once it has woken and left, the main thread's
    # later wake-up must still come (nobody else would move time).
    for _ in range(50):
        clock = VirtualClock(start=START)
        woke: list[float] = []

        def early(clock: VirtualClock = clock, woke: list[float] = woke) -> None:
            clock.sleep_until(START + 2)
            woke.append(clock.now())

        u = _spawn(early, "early-unregistered")
        clock.sleep_until(START + 2)
        clock.sleep_until(START + 5)
        _join(u)
        assert clock.now() == START + 5
        assert len(woke) == 1 and START + 2 <= woke[0] <= START + 5


def test_event_set_by_a_worker_wakes_the_main_thread(virtual_clock: VirtualClock) -> None:
    clock = virtual_clock
    ev, done = clock.event(), clock.event()

    def worker() -> None:
        with clock.participate():
            clock.sleep(3)
            ev.set()
            # still taking part and straight back to sleep: only set() can wake
            # the main thread, and time must not move until it has run
            clock.sleep(10)
            done.set()

    clock.expect_participant()
    w = _spawn(worker, "setter")
    assert clock.wait_event(ev) is True
    assert clock.now() == START + 3
    assert clock.wait_event(done) is True
    assert clock.now() == START + 13
    _join(w)


# -- VirtualClock: autojump for an asyncio loop -------------------------------------


def test_async_tasks_sleep_an_hour_of_virtual_time(virtual_clock: VirtualClock) -> None:
    clock = virtual_clock
    ends: list[float] = []

    async def sleeper() -> None:
        for _ in range(3600):
            await anyio.sleep(1)
        ends.append(clock.now())

    async def main() -> None:
        async with anyio.create_task_group() as tg:
            for _ in range(3):
                tg.start_soon(sleeper)

    anyio.run(main, backend="asyncio", backend_options=clock.backend_options())
    assert ends == [START + 3600] * 3
    assert clock.now() == START + 3600


def test_timeouts_are_virtual_on_the_clock_loop(virtual_clock: VirtualClock) -> None:
    clock = virtual_clock

    async def main() -> None:
        with anyio.move_on_after(10) as scope:
            await anyio.sleep(100)
        assert scope.cancelled_caught
        assert clock.now() == START + 10
        with pytest.raises(TimeoutError):
            with anyio.fail_after(30):
                await anyio.sleep(3600)
        assert clock.now() == START + 40
        await clock.sleep_until_async(START + 100.5)
        assert clock.now() == START + 100.5
        await clock.sleep_async(0.25)
        assert clock.now() == START + 100.75
        await clock.sleep_until_async(START)  # in the past: returns at once
        assert clock.now() == START + 100.75

    anyio.run(main, backend="asyncio", backend_options=clock.backend_options())


def test_sleep_until_async_on_a_plain_loop_says_how_to_fix_it(virtual_clock: VirtualClock) -> None:
    with pytest.raises(RuntimeError, match=r"backend_options=clock\.backend_options\(\)"):
        anyio.run(virtual_clock.sleep_until_async, START + 1, backend="asyncio")
    other = VirtualClock(start=START)
    # a virtual loop of another clock is not this clock's time either
    with pytest.raises(RuntimeError, match="keeps the clock's time"):
        anyio.run(
            virtual_clock.sleep_async, 1, backend="asyncio", backend_options=other.backend_options()
        )
    assert virtual_clock.now() == START


# -- the same through the pytest anyio plugin ------------------------------------------


@pytest.fixture
def anyio_backend(virtual_clock: VirtualClock) -> tuple[str, dict]:
    return virtual_anyio_backend(virtual_clock)


@pytest.mark.anyio
async def test_pytest_anyio_plugin_runs_on_virtual_time(virtual_clock: VirtualClock) -> None:
    assert virtual_clock.now() == START
    await anyio.sleep(3600)
    with anyio.move_on_after(5):
        await anyio.sleep_forever()
    await virtual_clock.sleep_until_async(START + 7200)
    assert virtual_clock.now() == START + 7200


def test_virtual_anyio_backend_helper(virtual_clock: VirtualClock) -> None:
    name, options = virtual_anyio_backend(virtual_clock)
    assert name == "asyncio"
    assert options == {"loop_factory": virtual_clock.loop_factory}
