"""The optimizers: the worker pool and status store in front of the routers.

AsyncExecutionOptimizer: stop() drains or cancels, a stopped optimizer
refuses work, a worker's exception costs one order and not the pool, and
finished orders are remembered up to a bound. ExecutionOptimizer:
submit_order returns at once, wait() returns the final result, and an
ICEBERG runs through the real path (optimizer, scheduler, smart router,
order router, venue) in virtual time, never showing more than its display.
"""

from __future__ import annotations

from typing import Any

import anyio
import pytest

from engine import (
    AsyncExchangeClient,
    AsyncExecutionOptimizer,
    AsyncOrderRouter,
    ExecutionOptimizer,
    FeeSchedule,
    LatencyModel,
    MarketConfig,
    OptimizerStoppedError,
    Order,
    OrderResult,
    OrderRouter,
    OrderStatus,
    SimulatedExchange,
    SmartOrderRouter,
    UnknownOrderError,
    VirtualClock,
)
from engine.errors import ConfigurationError
from engine.scheduling.algos.base import ParentState
from tests.conftest import virtual_anyio_backend

SYMBOL = "BTC/USD"


@pytest.fixture
def anyio_backend(virtual_clock: VirtualClock) -> Any:
    return virtual_anyio_backend(virtual_clock)


def market(oid: str, qty: float = 0.01, side: str = "BUY") -> Order:
    return Order(id=oid, symbol=SYMBOL, side=side, type="MARKET", quantity=qty)


def _async_optimizer(
    clock: VirtualClock, *, latency_s: float = 0.1, remember: int = 100_000, venue: Any = None,
) -> tuple[AsyncExecutionOptimizer, SimulatedExchange]:
    sim = SimulatedExchange("sim", clock=clock, latency=LatencyModel(median_s=latency_s))
    router = AsyncOrderRouter(clock=clock, remember_orders=remember, max_latency_s=None)
    router.register_exchange("sim", venue if venue is not None else AsyncExchangeClient(sim))
    return AsyncExecutionOptimizer(order_router=router, remember_orders=remember), sim


# -- AsyncExecutionOptimizer -----------------------------------------------------------------


@pytest.mark.anyio
async def test_stop_with_drain_processes_everything_queued(virtual_clock: VirtualClock) -> None:
    optimizer, venue = _async_optimizer(virtual_clock)
    await optimizer.start(num_workers=2)
    ids = [await optimizer.submit_order_async(market(f"d{i}", side="BUY" if i % 2 else "SELL"))
           for i in range(20)]
    # Queued, not done: each venue call takes 0.1 s of virtual time.
    assert (await optimizer.get_order_status_async(ids[-1])).status is OrderStatus.PENDING_NEW
    await optimizer.stop(drain=True)
    assert not optimizer.running
    for oid in ids:
        assert (await optimizer.get_order_status_async(oid)).status is OrderStatus.FILLED
        assert venue.status(oid).status is OrderStatus.FILLED
    assert venue.counters.submitted == 20


@pytest.mark.anyio
async def test_stop_without_drain_cancels_what_is_queued(virtual_clock: VirtualClock) -> None:
    optimizer, venue = _async_optimizer(virtual_clock)
    await optimizer.start(num_workers=1)
    ids = [await optimizer.submit_order_async(market(f"c{i}")) for i in range(10)]
    await anyio.sleep(0.15)  # the worker has finished one and is in the middle of the next
    await optimizer.stop(drain=False)
    statuses = {oid: await optimizer.get_order_status_async(oid) for oid in ids}
    done = [oid for oid, r in statuses.items() if r.status is OrderStatus.FILLED]
    canceled = [oid for oid, r in statuses.items() if r.status is OrderStatus.CANCELED]
    assert done and canceled and len(done) + len(canceled) == 10
    assert done == ids[: len(done)]  # first in, first out
    for oid in canceled:
        assert statuses[oid].reason == "optimizer stopped"
        with pytest.raises(UnknownOrderError):
            venue.status(oid)  # never sent
    for oid in done:
        assert venue.status(oid).status is OrderStatus.FILLED
    assert venue.counters.submitted == len(done)


class _AnswerLostOnCancel:
    """An async venue whose request reaches the book before its answer comes
    back, as over a network: a caller canceled while waiting loses the answer,
    not the order."""

    def __init__(self, inner: SimulatedExchange) -> None:
        self.inner, self.name, self.fees = inner, inner.name, inner.fees

    def instruments(self) -> Any:
        return self.inner.instruments()

    async def submit_async(self, order: Order) -> OrderResult:
        result = self.inner.submit(order)
        await anyio.sleep(0.5)  # the answer travels back
        return result

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


@pytest.mark.anyio
async def test_stop_without_drain_never_calls_an_order_in_flight_canceled(
    virtual_clock: VirtualClock,
) -> None:
    sim = SimulatedExchange("net", clock=virtual_clock)
    router = AsyncOrderRouter(clock=virtual_clock, max_latency_s=None)
    router.register_exchange("net", _AnswerLostOnCancel(sim))
    optimizer = AsyncExecutionOptimizer(order_router=router)
    await optimizer.start(num_workers=1)
    ids = [await optimizer.submit_order_async(market(f"n{i}")) for i in range(3)]
    await anyio.sleep(0.1)  # n0 has reached the venue; its answer is on the way
    assert sim.status("n0").status is OrderStatus.FILLED
    await optimizer.stop(drain=False)
    # What the optimizer says agrees with the venue.
    assert optimizer.get_order_status("n0").status is OrderStatus.FILLED
    for oid in ids[1:]:
        assert optimizer.get_order_status(oid).status is OrderStatus.CANCELED
        with pytest.raises(UnknownOrderError):
            sim.status(oid)


@pytest.mark.anyio
async def test_a_queued_order_canceled_before_routing_never_reaches_the_venue(
    virtual_clock: VirtualClock,
) -> None:
    optimizer, venue = _async_optimizer(virtual_clock)
    await optimizer.start(num_workers=1)
    ids = [await optimizer.submit_order_async(market(f"q{i}")) for i in range(3)]
    canceled = await optimizer.cancel_order_async("q2")
    assert canceled.status is OrderStatus.CANCELED
    await optimizer.stop(drain=True)
    assert optimizer.get_order_status("q2").status is OrderStatus.CANCELED
    with pytest.raises(UnknownOrderError):
        venue.status("q2")
    assert [optimizer.get_order_status(i).status for i in ids[:2]] == [OrderStatus.FILLED] * 2


@pytest.mark.anyio
async def test_an_order_already_on_its_way_is_not_reported_canceled(virtual_clock: VirtualClock) -> None:
    optimizer, venue = _async_optimizer(virtual_clock, latency_s=1.0)
    await optimizer.start(num_workers=1)
    oid = await optimizer.submit_order_async(market("busy"))
    await anyio.sleep(0.5)  # the worker is waiting for the venue's answer
    answer = await optimizer.cancel_order_async(oid)
    assert answer.status is not OrderStatus.CANCELED
    final = await optimizer.wait_async(oid, timeout=10)
    assert final.status is OrderStatus.FILLED
    assert venue.status(oid).status is OrderStatus.FILLED
    await optimizer.stop()


@pytest.mark.anyio
async def test_a_stopped_optimizer_refuses_work_clearly(virtual_clock: VirtualClock) -> None:
    optimizer, venue = _async_optimizer(virtual_clock)
    with pytest.raises(OptimizerStoppedError, match="not running: await start"):
        await optimizer.submit_order_async(market("early"))
    await optimizer.start(num_workers=1)
    await optimizer.submit_order_async(market("ok"))
    await optimizer.stop()
    with pytest.raises(OptimizerStoppedError, match="not running"):
        await optimizer.submit_order_async(market("late"))
    with pytest.raises(UnknownOrderError):
        optimizer.get_order_status("late")
    assert venue.counters.submitted == 1
    # It can be started again.
    await optimizer.start(num_workers=1)
    oid = await optimizer.submit_order_async(market("again"))
    assert (await optimizer.wait_async(oid, timeout=10)).status is OrderStatus.FILLED
    await optimizer.stop()


class _BuggyVenue:
    """A venue whose submit raises a plain RuntimeError for ids starting "boom"."""

    def __init__(self, inner: SimulatedExchange) -> None:
        self.inner, self.name, self.fees = inner, inner.name, inner.fees

    def instruments(self) -> Any:
        return self.inner.instruments()

    async def submit_async(self, order: Order) -> OrderResult:
        if order.id.startswith("boom"):
            raise RuntimeError("venue adapter bug")
        return await self.inner.submit_async(order)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


@pytest.mark.anyio
async def test_a_worker_exception_rejects_that_order_and_the_pool_keeps_working(
    virtual_clock: VirtualClock,
) -> None:
    sim = SimulatedExchange("sim", clock=virtual_clock)
    optimizer, _ = _async_optimizer(virtual_clock, venue=_BuggyVenue(sim))
    await optimizer.start(num_workers=1)  # one worker: it must survive
    ids = [await optimizer.submit_order_async(market(oid)) for oid in ("ok1", "boom1", "ok2", "boom2", "ok3")]
    results = {oid: await optimizer.wait_async(oid, timeout=10) for oid in ids}
    for oid in ("boom1", "boom2"):
        assert results[oid].status is OrderStatus.REJECTED
        assert "RuntimeError" in results[oid].reason and "venue adapter bug" in results[oid].reason
    for oid in ("ok1", "ok2", "ok3"):
        assert results[oid].status is OrderStatus.FILLED
    assert optimizer.running
    await optimizer.stop()


@pytest.mark.anyio
async def test_finished_orders_are_remembered_up_to_a_bound(virtual_clock: VirtualClock) -> None:
    optimizer, venue = _async_optimizer(virtual_clock, latency_s=0.0, remember=5)
    await optimizer.start(num_workers=2)
    ids = [await optimizer.submit_order_async(market(f"m{i}", side="BUY" if i % 2 else "SELL"))
           for i in range(30)]
    await optimizer.stop(drain=True)
    for oid in ids[-5:]:
        assert optimizer.get_order_status(oid).status is OrderStatus.FILLED
    for oid in ids[:20]:
        with pytest.raises(UnknownOrderError, match="unknown or expired from memory"):
            await optimizer.get_order_status_async(oid)
    assert venue.counters.submitted == 30
    assert len(optimizer.store.taken_ids()) == 5 and optimizer.store.record_count() <= 5


@pytest.mark.anyio
async def test_start_and_stop_from_different_tasks(virtual_clock: VirtualClock) -> None:
    optimizer, _ = _async_optimizer(virtual_clock)

    async def starter() -> None:
        await optimizer.start(num_workers=3)

    async with anyio.create_task_group() as tg:
        tg.start_soon(starter)
    ids = [await optimizer.submit_order_async(market(f"x{i}")) for i in range(5)]

    async def stopper() -> None:
        await optimizer.stop(drain=True)

    async with anyio.create_task_group() as tg:
        tg.start_soon(stopper)
    assert not optimizer.running
    assert all(optimizer.get_order_status(i).status is OrderStatus.FILLED for i in ids)


# -- ExecutionOptimizer (sync) ---------------------------------------------------------------


def _sync_optimizer(clock: VirtualClock, latency_s: float = 1.0) -> tuple[ExecutionOptimizer, SimulatedExchange]:
    venue = SimulatedExchange("sim", clock=clock, latency=LatencyModel(median_s=latency_s))
    router = OrderRouter(clock=clock, max_latency_s=None)
    router.register_exchange("sim", venue)
    return ExecutionOptimizer(order_router=SmartOrderRouter(order_router=router)), venue


def test_submit_order_returns_at_once_and_wait_returns_the_final_result(
    virtual_clock: VirtualClock,
) -> None:
    optimizer, venue = _sync_optimizer(virtual_clock, latency_s=1.0)
    t0 = virtual_clock.now()
    oid = optimizer.submit_order(market("w1"))
    assert oid == "w1"
    # The venue call takes a virtual second, and this thread has not waited yet.
    assert virtual_clock.now() == t0
    assert not optimizer.get_order_status(oid).status.is_final
    result = optimizer.wait(oid, timeout=30)
    assert result.status is OrderStatus.FILLED and result.filled_quantity == 0.01
    assert virtual_clock.now() - t0 == pytest.approx(1.0)
    assert venue.status("w1").status is OrderStatus.FILLED


def test_a_queued_order_can_be_canceled_before_the_worker_takes_it(virtual_clock: VirtualClock) -> None:
    optimizer, venue = _sync_optimizer(virtual_clock, latency_s=1.0)
    ids = [optimizer.submit_order(market(f"sq{i}")) for i in range(3)]
    assert optimizer.get_order_status("sq2").reason == "queued for routing"
    answer = optimizer.cancel_order("sq2")
    assert (answer.status, answer.reason) == (OrderStatus.CANCELED, "canceled before it was routed")
    assert optimizer.wait("sq1", timeout=30).status is OrderStatus.FILLED
    assert optimizer.wait("sq2", timeout=30).status is OrderStatus.CANCELED
    virtual_clock.sleep(5)  # the worker has long passed it
    with pytest.raises(UnknownOrderError):
        venue.status("sq2")
    assert optimizer.get_order_status(ids[0]).status is OrderStatus.FILLED


def test_wait_gives_up_at_its_timeout(virtual_clock: VirtualClock) -> None:
    optimizer, _ = _sync_optimizer(virtual_clock, latency_s=5.0)
    t0 = virtual_clock.now()
    oid = optimizer.submit_order(market("w2"))
    early = optimizer.wait(oid, timeout=1.0)
    assert not early.status.is_final
    assert virtual_clock.now() - t0 == pytest.approx(1.0)
    assert optimizer.wait(oid, timeout=30).status is OrderStatus.FILLED


class _DisplayGuard:
    """The venue as the router sees it; checks, at every submit, that the
    parent's orders resting at the venue plus the new one stay within display."""

    def __init__(self, inner: SimulatedExchange, parent_id_prefix: str, display: float) -> None:
        self.inner, self.name, self.fees = inner, inner.name, inner.fees
        self.prefix, self.display = parent_id_prefix, display
        self.max_visible = 0.0

    def visible(self) -> float:
        return sum(
            r.quantity - r.filled_quantity
            for r in self.inner.open_orders(SYMBOL)
            if r.order_id.startswith(self.prefix)
        )

    def submit(self, order: Order) -> OrderResult:
        after = self.visible() + order.quantity
        self.max_visible = max(self.max_visible, after)
        assert after <= self.display + 1e-12, f"would show {after} > display {self.display}"
        return self.inner.submit(order)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def test_an_iceberg_completes_through_the_real_path_never_showing_more_than_display(
    virtual_clock: VirtualClock,
) -> None:
    clock = virtual_clock
    sim = SimulatedExchange("sim", clock=clock, seed=1)
    price = sim.book(SYMBOL).best_bid  # joins the bid: rests until sellers reach it
    guard = _DisplayGuard(sim, "ice", display=0.1)
    router = OrderRouter(clock=clock)
    router.register_exchange("sim", guard)
    optimizer = ExecutionOptimizer(order_router=SmartOrderRouter(order_router=router))
    order = Order(id="ice", symbol=SYMBOL, side="BUY", type="ICEBERG", quantity=1.0, price=price,
                  metadata={"display_size": 0.1})
    oid = optimizer.submit_order(order)
    seen_resting = 0
    for _ in range(3600):  # the desk's market timer, one virtual second at a time
        status = optimizer.wait(oid, timeout=1.0)
        if status.status.is_final:
            break
        sim.tick()
        visible = guard.visible()
        seen_resting += visible > 0
        assert visible <= 0.1 + 1e-12
    final = optimizer.get_order_status(oid)
    assert final.status is OrderStatus.FILLED, final
    assert final.filled_quantity == pytest.approx(1.0)
    assert len(final.children) >= 10
    assert all(c.quantity <= 0.1 + 1e-12 for c in final.children)
    assert all(f.price <= price for f in final.fills)
    assert any(f.liquidity.value == "MAKER" for f in final.fills)  # filled while resting
    assert seen_resting > 0, "the children never rested: the display was never tested"
    assert 0 < guard.max_visible <= 0.1 + 1e-12
    assert [r for r in sim.open_orders(SYMBOL) if r.order_id.startswith("ice")] == []


# -- one order store: what the optimizer answers comes from the router's store ------------------


def test_remember_orders_other_than_the_stores_is_refused_naming_both(virtual_clock: VirtualClock) -> None:
    router = OrderRouter(clock=virtual_clock, remember_orders=50)
    assert ExecutionOptimizer(order_router=router, remember_orders=50).store is router.store
    with pytest.raises(ConfigurationError, match=r"remember_orders=10 differs from the order store's bound \(50\)"):
        ExecutionOptimizer(order_router=router, remember_orders=10)


def test_an_order_refused_under_its_own_client_order_id_before_any_venue_is_final(
    virtual_clock: VirtualClock,
) -> None:
    optimizer, venue = _sync_optimizer(virtual_clock, latency_s=0.0)
    order = Order(id="own", client_order_id="own.c", symbol="DOGE/USD", side="BUY", type="MARKET", quantity=1.0)
    result = optimizer.wait(optimizer.submit_order(order), timeout=30)
    assert result.status is OrderStatus.REJECTED
    assert result.reason is not None and result.reason.startswith("no venue can take DOGE/USD now")
    assert "own" not in optimizer.working
    assert venue.counters.submitted == 0


def test_an_order_filled_under_its_own_client_order_id_answers_under_its_id(virtual_clock: VirtualClock) -> None:
    optimizer, venue = _sync_optimizer(virtual_clock, latency_s=0.0)
    order = Order(id="mine", client_order_id="mine.c", symbol=SYMBOL, side="BUY", type="MARKET", quantity=0.01)
    result = optimizer.wait(optimizer.submit_order(order), timeout=30)
    assert (result.order_id, result.status, result.filled_quantity) == ("mine", OrderStatus.FILLED, 0.01)
    assert [c.order_id for c in result.children] == ["mine.c"]
    assert venue.status("mine.c").status is OrderStatus.FILLED


def _two_venue_smart(clock: VirtualClock) -> tuple[SmartOrderRouter, dict[str, SimulatedExchange]]:
    venues = {
        "thin": SimulatedExchange("thin", clock=clock, seed=1, fees=FeeSchedule(0.0, 1.0),
                                  market=MarketConfig(level_notional=20_000.0)),
        "deep": SimulatedExchange("deep", clock=clock, seed=1, fees=FeeSchedule(0.0, 3.0),
                                  market=MarketConfig(level_notional=200_000.0)),
    }
    router = OrderRouter(clock=clock)
    for name, venue in venues.items():
        router.register_exchange(name, venue)
    return SmartOrderRouter(order_router=router), venues


def test_the_smart_router_and_the_optimizer_share_one_record_of_a_split(virtual_clock: VirtualClock) -> None:
    smart, venues = _two_venue_smart(virtual_clock)
    optimizer = ExecutionOptimizer(order_router=smart)
    order = Order(id="big", symbol=SYMBOL, side="BUY", type="MARKET", quantity=3.0)
    result = optimizer.wait(optimizer.submit_order(order), timeout=30)
    assert result.status is OrderStatus.FILLED and len(result.children) == 2
    first, pieces = optimizer.store.split("big")
    assert first == order and list(pieces) == [c.order_id for c in result.children]
    sent = sum(v.counters.submitted for v in venues.values())
    # Sent again straight to the smart router: answered from that record, nothing planned again.
    assert [r.order_id for r in smart.route_order(order)] == list(pieces)
    assert sum(v.counters.submitted for v in venues.values()) == sent
    # And an order the smart router split by itself (a sell: the bids are untouched) is
    # answered by the optimizer over it.
    [*direct] = smart.route_order(Order(id="bare", symbol=SYMBOL, side="SELL", type="MARKET", quantity=3.0))
    answer = optimizer.get_order_status("bare")
    assert len(direct) > 1 and [c.order_id for c in answer.children] == [r.order_id for r in direct]
    assert answer.filled_quantity == pytest.approx(3.0)


def test_waiting_on_a_parent_never_builds_its_result_per_update(
    virtual_clock: VirtualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A parent's result carries every child and its TCA: building one each time a child
    # moved cost more than the child's own routing. Whether it is final is cheap to know.
    optimizer, _ = _sync_optimizer(virtual_clock, latency_s=0.0)
    built: list[str] = []
    to_result = ParentState.to_result

    def counted(self: ParentState, *args: Any, **kwargs: Any) -> OrderResult:
        built.append(self.order.id)
        return to_result(self, *args, **kwargs)

    monkeypatch.setattr(ParentState, "to_result", counted)
    order = Order(id="tw", symbol=SYMBOL, side="BUY", type="TWAP", quantity=0.1,
                  metadata={"duration_s": 10, "slices": 10})
    result = optimizer.wait(optimizer.submit_order(order), timeout=60)
    assert result.status is OrderStatus.FILLED and len(result.children) == 10
    assert built == ["tw"]  # the answer wait returns, once
