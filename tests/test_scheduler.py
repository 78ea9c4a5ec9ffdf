"""The Scheduler as the Engine wires it: parents' state in the one order store, its
decision performed by the engine's sans-IO drivers, and what it does when a request
below it raises."""

from __future__ import annotations

import logging
from typing import Any

import anyio
import pytest

from engine import (
    AsyncOrderRouter,
    Order,
    OrderRouter,
    OrderStatus,
    RealClock,
    Scheduler,
    SmartOrderRouter,
    VirtualClock,
)
from engine.errors import ConfigurationError
from engine.scheduling.algos.base import ParentState
from engine.store import OrderStore
from tests.algo_support import BTC, one_venue_engine, quiet_venue
from tests.conftest import virtual_anyio_backend


def twap(oid: str, qty: float = 0.3, **meta: Any) -> Order:
    return Order(id=oid, symbol=BTC, side="buy", type="TWAP", quantity=qty,
                 metadata={"duration_s": 120, "slices": 3, **meta})


# -- the store's parents -----------------------------------------------------------------
def parent_state(oid: str) -> ParentState:
    return ParentState(twap(oid), None, created_at=0.0)


def test_the_store_takes_a_parent_id_once_working_or_finished() -> None:
    store = OrderStore(10)
    first = parent_state("p-1")
    assert store.add_parent("p-1", first)
    assert not store.add_parent("p-1", parent_state("p-1"))
    assert store.parent("p-1") is first  # the second was not taken
    assert store.parent_working("p-1") and not store.parent_finished("p-1")
    assert store.active_parents() == ["p-1"]

    store.finish_parent("p-1")
    assert not store.parent_working("p-1") and store.parent_finished("p-1")
    assert store.has_parent("p-1") and store.active_parents() == []
    assert not store.add_parent("p-1", parent_state("p-1"))  # a finished parent's id stays used
    assert store.parent("p-1").order.id == "p-1"


def test_a_finished_parent_past_the_live_ones_is_read_back_as_an_equal_copy() -> None:
    store = OrderStore(1_000)
    states = [parent_state(f"p-{i}") for i in range(150)]
    for state in states:
        store.add_parent(state.order.id, state)
        store.finish_parent(state.order.id)
    oldest = store.parent("p-0")
    assert oldest is not states[0]  # kept compactly, built back on reading
    assert oldest.order == states[0].order and oldest.created_at == states[0].created_at
    assert store.parent("p-149") is states[149]  # the newest stay as they are


# -- the Engine's wiring -----------------------------------------------------------------
@pytest.fixture
def anyio_backend(virtual_clock: VirtualClock) -> tuple[str, dict]:
    return virtual_anyio_backend(virtual_clock)


@pytest.mark.anyio
async def test_the_engine_keeps_parents_in_its_one_store(virtual_clock: VirtualClock) -> None:
    engine = one_venue_engine(virtual_clock, quiet_venue(virtual_clock, level_notional=2_000_000.0))
    assert engine.router.store is engine.store
    assert engine.scheduler.store is engine.store
    assert engine.smart.scheduler is engine.scheduler
    assert engine.optimizer.scheduler is engine.scheduler
    await engine.start()
    oid = await engine.submit(twap("twap-1"))
    with anyio.fail_after(60):
        while engine.scheduler.parent(oid) is None:
            await anyio.sleep(1)
    assert engine.store.parent(oid) is engine.scheduler.parent(oid)
    assert engine.store.active_parents() == [oid] == engine.scheduler.active

    result = await engine.wait(oid, timeout=600)
    await engine.stop()
    assert result.status is OrderStatus.FILLED
    assert engine.store.parent_finished(oid) and engine.scheduler.is_finished(oid)
    assert engine.store.active_parents() == []
    assert engine.store.parent(oid).status is OrderStatus.FILLED


# -- what the scheduler does when a request below it raises ---------------------------------
class PlacingFails(SmartOrderRouter):
    """A smart router with a bug: its first `fail` placements raise."""

    def __init__(self, *args: Any, fail: int = 1, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fail = fail

    async def place_async(self, order: Order, venue: str | None, *, split: bool = False) -> list[Any]:
        if self.fail:
            self.fail -= 1
            raise RuntimeError("bug below the scheduler")
        return await super().place_async(order, venue, split=split)


@pytest.mark.anyio
async def test_a_placement_that_raises_rejects_that_child_and_the_parent_goes_on(
    virtual_clock: VirtualClock, caplog: pytest.LogCaptureFixture
) -> None:
    router = AsyncOrderRouter(clock=virtual_clock)
    router.register_exchange("sim", quiet_venue(virtual_clock, level_notional=2_000_000.0))
    scheduler = Scheduler(clock=virtual_clock, seed=1)
    smart = PlacingFails(router, scheduler=scheduler)
    scheduler.attach(smart)

    with caplog.at_level(logging.ERROR, logger="execdesk.scheduler"):
        first = await smart.route_order_async(twap("twap-1"))
    [child] = first
    assert child.status is OrderStatus.REJECTED
    assert "internal error" in child.reason and "bug below the scheduler" in child.reason
    [logged] = caplog.records  # the bug is logged, with its traceback
    assert logged.getMessage().startswith(f"placing child {child.order_id} of parent twap-1 failed")
    assert logged.exc_info is not None

    with anyio.fail_after(600):
        while not scheduler.is_finished("twap-1"):
            await anyio.sleep(10)
    state = scheduler.parent("twap-1")
    assert state.status is OrderStatus.FILLED  # the later slices caught up on the first
    assert state.filled_quantity == pytest.approx(0.3)
    assert state.children[child.order_id].status is OrderStatus.REJECTED
    await scheduler.aclose()


# -- attaching -------------------------------------------------------------------------------
def test_a_scheduler_works_through_one_smart_router() -> None:
    clock = RealClock()
    scheduler = Scheduler(clock=clock)
    with pytest.raises(ConfigurationError, match="attach"):
        scheduler.submit(twap("twap-1"))
    assert scheduler.parent("twap-1") is None and scheduler.active == []

    smart = SmartOrderRouter(OrderRouter(clock=clock), scheduler=scheduler)
    scheduler.attach(smart)
    scheduler.attach(smart)  # again: nothing changes
    assert scheduler.store is smart.order_router.store
    other = SmartOrderRouter(OrderRouter(clock=clock), scheduler=scheduler)
    with pytest.raises(ConfigurationError, match="another smart router"):
        scheduler.attach(other)


def test_a_parent_id_is_claimed_before_it_is_judged() -> None:
    # A second submission of the id arriving while the first is being judged (here from
    # inside the judging, to make the moment certain) is refused; the first goes on.
    clock = RealClock()
    router = OrderRouter(clock=clock)
    router.register_exchange("sim", quiet_venue(clock))  # type: ignore[arg-type]
    nested: list[list[Any]] = []

    class Reentrant(SmartOrderRouter):
        def instrument(self, symbol: str) -> Any:
            if not nested:
                nested.append([])
                nested[0] = self.scheduler.submit(twap("twap-1"))
            return super().instrument(symbol)

    scheduler = Scheduler(clock=clock)
    smart = Reentrant(router, scheduler=scheduler)
    scheduler.attach(smart)

    first = scheduler.submit(twap("twap-1", duration_s=3600))
    [again] = nested[0]
    assert again.status is OrderStatus.REJECTED
    assert again.reason == "parent order id 'twap-1' is already in use"
    assert first and all(r.status is not OrderStatus.REJECTED for r in first)
    assert scheduler.active == ["twap-1"]
    assert scheduler.cancel("twap-1")
    scheduler.close()


# -- waking ------------------------------------------------------------------------------------
async def turns_until(done: Any, turns: int = 2_000) -> bool:
    for _ in range(turns):
        if done():
            return True
        await anyio.sleep(0)
    return bool(done())


@pytest.mark.parametrize("anyio_backend", ["asyncio"])  # a real-time loop, as the desk's
@pytest.mark.anyio
async def test_wake_runs_the_parents_due_after_a_clock_moved_by_hand(virtual_clock: VirtualClock) -> None:
    # The desk's tests move a VirtualClock by hand while the scheduler waits on the
    # loop's own time: it sees the new time when woken.
    engine = one_venue_engine(virtual_clock, quiet_venue(virtual_clock, level_notional=2_000_000.0))
    await engine.start()
    oid = await engine.submit(twap("twap-1"))  # slices at 0, 40 and 80 s

    def children() -> int:
        state = engine.scheduler.parent(oid)
        return len(state.children) if state is not None else 0

    assert await turns_until(lambda: children() == 1)
    virtual_clock.advance(40.0)
    assert not await turns_until(lambda: children() == 2, turns=200)  # asleep on the loop's time
    engine.scheduler.wake()
    assert await turns_until(lambda: children() == 2)
    await engine.cancel(oid)
    await engine.stop()
