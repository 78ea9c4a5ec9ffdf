"""The optimizers stop and report honestly.

- What an optimizer answers and what it publishes agree: an order canceled
  while queued (or by a stop) is CANCELED in both, never REJECTED on the stream.
- Stopping never reports an order CANCELED while one of its pieces works or
  filled at a venue: an order a worker holds is finished, not abandoned.
- The sync `ExecutionOptimizer` stops like the async one (drain or cancel,
  timeout), and its threads never keep a process alive at exit.
- The async hand-off: a bounded queue (back-pressure when full), batches
  whose orders all go out, and a worker pool that still lets the loop breathe.

Everything runs in virtual time; venues are `SimulatedExchange`s, checked
through their own public `status`.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from typing import Any

import anyio
import pytest

from engine import (
    AsyncExchangeClient,
    AsyncExecutionOptimizer,
    AsyncOrderRouter,
    BookLevel,
    BookSnapshot,
    EventBus,
    ExecutionOptimizer,
    LatencyModel,
    OptimizerStoppedError,
    Order,
    OrderRouter,
    OrderStatus,
    SimulatedExchange,
    SmartOrderRouter,
    UnknownOrderError,
    VirtualClock,
)
from engine.events import OrderCanceled, OrderDenied, OrderEvent
from tests.conftest import virtual_anyio_backend

SYMBOL = "BTC/USD"


@pytest.fixture
def anyio_backend(virtual_clock: VirtualClock) -> Any:
    return virtual_anyio_backend(virtual_clock)


def market(oid: str, qty: float = 0.01, side: str = "BUY") -> Order:
    return Order(id=oid, symbol=SYMBOL, side=side, type="MARKET", quantity=qty)


def _order_events(bus_sub: Any, order_id: str) -> list[OrderEvent]:
    return [e for e in bus_sub.drain() if isinstance(e, OrderEvent) and e.order_id == order_id]


def _venue_status(venue: SimulatedExchange, order_id: str) -> OrderStatus | None:
    try:
        return venue.status(order_id).status
    except UnknownOrderError:
        return None


# -- events say what results say ---------------------------------------------------------------


@pytest.mark.anyio
async def test_canceling_a_queued_order_publishes_order_canceled(virtual_clock: VirtualClock) -> None:
    bus = EventBus()
    events = bus.subscribe(maxsize=1_000, lossless=True)
    venue = SimulatedExchange("sim", clock=virtual_clock, latency=LatencyModel(median_s=1.0))
    router = AsyncOrderRouter(clock=virtual_clock, max_latency_s=None, on_event=bus.publish)
    router.register_exchange("sim", AsyncExchangeClient(venue))
    optimizer = AsyncExecutionOptimizer(order_router=router)
    await optimizer.start(num_workers=1)
    for i in range(3):
        await optimizer.submit_order_async(market(f"q{i}"))
    answer = await optimizer.cancel_order_async("q2")
    assert (answer.status, answer.reason) == (OrderStatus.CANCELED, "canceled before it was routed")
    published = _order_events(events, "q2")
    assert [(type(e), e.status, e.venue) for e in published] == [(OrderCanceled, OrderStatus.CANCELED, None)]
    assert published[0].reason == "canceled before it was routed"
    assert published[0].filled_quantity == 0.0
    await optimizer.stop(drain=True)
    assert optimizer.get_order_status("q2").status is OrderStatus.CANCELED
    assert _venue_status(venue, "q2") is None


@pytest.mark.anyio
async def test_orders_a_stop_cancels_are_published_as_canceled(virtual_clock: VirtualClock) -> None:
    bus = EventBus()
    events = bus.subscribe(maxsize=1_000, lossless=True)
    venue = SimulatedExchange("sim", clock=virtual_clock, latency=LatencyModel(median_s=1.0))
    router = AsyncOrderRouter(clock=virtual_clock, max_latency_s=None, on_event=bus.publish)
    router.register_exchange("sim", AsyncExchangeClient(venue))
    optimizer = AsyncExecutionOptimizer(order_router=router)
    await optimizer.start(num_workers=1)
    for i in range(4):
        await optimizer.submit_order_async(market(f"s{i}"))
    await anyio.sleep(0.5)  # s0 is on its way to the venue
    await optimizer.stop(drain=False)
    drained = events.drain()
    assert not [e for e in drained if isinstance(e, OrderDenied)]
    canceled = {e.order_id: e for e in drained if isinstance(e, OrderCanceled)}
    assert sorted(canceled) == ["s1", "s2", "s3"]  # s0 was in hand: it filled
    assert all(e.status is OrderStatus.CANCELED and e.reason == "optimizer stopped" for e in canceled.values())
    assert optimizer.get_order_status("s0").status is OrderStatus.FILLED


def test_the_sync_optimizer_publishes_a_queued_cancel_as_canceled(virtual_clock: VirtualClock) -> None:
    bus = EventBus()
    events = bus.subscribe(maxsize=1_000, lossless=True)
    venue = SimulatedExchange("sim", clock=virtual_clock, latency=LatencyModel(median_s=1.0))
    router = OrderRouter(clock=virtual_clock, max_latency_s=None, on_event=bus.publish)
    router.register_exchange("sim", venue)
    optimizer = ExecutionOptimizer(order_router=router)
    for i in range(3):
        optimizer.submit_order(market(f"y{i}"))
    assert optimizer.cancel_order("y2").status is OrderStatus.CANCELED
    published = _order_events(events, "y2")
    assert [(type(e), e.status) for e in published] == [(OrderCanceled, OrderStatus.CANCELED)]
    optimizer.stop()


# -- stopping with a timeout never mis-reports split orders -------------------------------------


class _ShowsLiquidity:
    """A venue whose book shows 0.05 at `price` on the ask, however much has traded:
    a 0.1 buy at that price splits across two such venues, and its pieces rest."""

    def __init__(self, inner: AsyncExchangeClient, venue: SimulatedExchange, price: float) -> None:
        self.inner, self.name, self.fees, self.price = inner, venue.name, venue.fees, price
        self.clock = venue.clock

    def book(self, symbol: str, depth: int = 10) -> BookSnapshot:
        return BookSnapshot(self.name, symbol, (BookLevel(self.price - 10.0, 1.0),),
                            (BookLevel(self.price, 0.05),), self.clock.now())

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


@pytest.mark.anyio
async def test_stop_with_a_timeout_reports_split_orders_as_their_venues_do(virtual_clock: VirtualClock) -> None:
    venues: dict[str, SimulatedExchange] = {}
    router = AsyncOrderRouter(clock=virtual_clock, max_latency_s=None)
    for i, name in enumerate(("a", "b")):
        # Different latencies, so the timeout falls between one order's pieces.
        sim = SimulatedExchange(name, clock=virtual_clock, seed=i,
                                latency=LatencyModel(median_s=0.001 * (1 + 2 * i)))
        venues[name] = sim
        price = sim.book(SYMBOL).best_bid  # rests: no seller there yet
        router.register_exchange(name, _ShowsLiquidity(AsyncExchangeClient(sim), sim, price))
    optimizer = AsyncExecutionOptimizer(order_router=SmartOrderRouter(router))
    await optimizer.start(num_workers=10)
    ids = [await optimizer.submit_order_async(
        Order(id=f"o{i}", symbol=SYMBOL, side="BUY", type="LIMIT", quantity=0.1, price=price))
        for i in range(300)]
    await optimizer.stop(drain=True, timeout=0.05)

    went_out = pieces = 0
    for oid in ids:
        result = optimizer.get_order_status(oid)
        if result.status is OrderStatus.CANCELED:
            assert result.reason == "optimizer stopped"
            assert result.filled_quantity == 0.0 and not result.children
            continue
        went_out += 1
        pieces += len(result.children)
        assert len(result.children) == 2, result  # split, both pieces at their venues
        for child in result.children:
            at_venue = venues[child.exchange_id].status(child.order_id)
            assert child.status is at_venue.status
            assert child.filled_quantity == pytest.approx(at_venue.filled_quantity)
        if any(not c.status.is_final for c in result.children):
            assert not result.status.is_final and oid in optimizer.working
    assert 0 < went_out < len(ids)  # the timeout fell in the middle of the queue
    # Every piece any venue received belongs to an order reported as gone out.
    assert sum(sim.counters.submitted for sim in venues.values()) == pieces


class _AsyncAdapterBug:
    """An async venue adapter whose submit raises a plain RuntimeError (a bug)."""

    def __init__(self, inner: AsyncExchangeClient, venue: SimulatedExchange) -> None:
        self.inner, self.name, self.fees = inner, venue.name, venue.fees

    async def submit_async(self, order: Order) -> Any:
        raise RuntimeError("adapter bug")

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


@pytest.mark.anyio
async def test_a_split_order_whose_second_piece_fails_inside_the_engine_keeps_the_first(
    virtual_clock: VirtualClock,
) -> None:
    router = AsyncOrderRouter(clock=virtual_clock, max_latency_s=None)
    first = SimulatedExchange("a", clock=virtual_clock, seed=0)
    second = SimulatedExchange("b", clock=virtual_clock, seed=1, latency=LatencyModel(median_s=0.003))
    price = first.book(SYMBOL).best_bid
    router.register_exchange("a", _ShowsLiquidity(AsyncExchangeClient(first), first, price))
    router.register_exchange("b", _ShowsLiquidity(_AsyncAdapterBug(AsyncExchangeClient(second), second),
                                                  second, price))
    optimizer = AsyncExecutionOptimizer(order_router=SmartOrderRouter(router))
    await optimizer.start(num_workers=1)
    oid = await optimizer.submit_order_async(
        Order(id="two", symbol=SYMBOL, side="BUY", type="LIMIT", quantity=0.1, price=price))
    await optimizer.stop(drain=True)
    result = optimizer.get_order_status(oid)
    sent, failed = result.children
    assert (sent.exchange_id, sent.status) == ("a", first.status(sent.order_id).status)
    assert sent.status is OrderStatus.NEW  # resting at a: the order still works
    assert (failed.exchange_id, failed.status) == ("b", OrderStatus.REJECTED)
    assert failed.reason == "internal error: RuntimeError('adapter bug')"
    assert second.counters.submitted == 0
    assert result.status is OrderStatus.NEW and oid in optimizer.working


# -- the sync optimizer's stop -----------------------------------------------------------------


def _sync_optimizer(clock: VirtualClock, latency_s: float = 1.0) -> tuple[ExecutionOptimizer, SimulatedExchange]:
    venue = SimulatedExchange("sim", clock=clock, latency=LatencyModel(median_s=latency_s))
    router = OrderRouter(clock=clock, max_latency_s=None)
    router.register_exchange("sim", venue)
    return ExecutionOptimizer(order_router=SmartOrderRouter(order_router=router)), venue


def test_sync_stop_with_drain_finishes_everything_queued(virtual_clock: VirtualClock) -> None:
    optimizer, venue = _sync_optimizer(virtual_clock)
    ids = [optimizer.submit_order(market(f"d{i}", side="BUY" if i % 2 else "SELL")) for i in range(5)]
    t0 = virtual_clock.now()
    optimizer.stop(drain=True)
    assert virtual_clock.now() - t0 == pytest.approx(5.0)  # one virtual second a venue call
    assert [optimizer.get_order_status(i).status for i in ids] == [OrderStatus.FILLED] * 5
    assert venue.counters.submitted == 5
    assert optimizer.working == []
    with pytest.raises(OptimizerStoppedError, match="stopped"):
        optimizer.submit_order(market("late"))
    with pytest.raises(UnknownOrderError):
        optimizer.get_order_status("late")
    optimizer.start()  # it can be opened again
    assert optimizer.wait(optimizer.submit_order(market("again")), timeout=30).status is OrderStatus.FILLED
    optimizer.stop()


def test_sync_stop_without_drain_cancels_the_queue_and_finishes_the_order_in_hand(
    virtual_clock: VirtualClock,
) -> None:
    optimizer, venue = _sync_optimizer(virtual_clock)
    ids = [optimizer.submit_order(market(f"c{i}")) for i in range(4)]
    virtual_clock.sleep(1.5)  # c0 done, c1 on its way to the venue
    optimizer.stop(drain=False)
    statuses = [optimizer.get_order_status(i) for i in ids]
    assert [r.status for r in statuses] == [OrderStatus.FILLED, OrderStatus.FILLED,
                                            OrderStatus.CANCELED, OrderStatus.CANCELED]
    assert {r.reason for r in statuses[2:]} == {"optimizer stopped"}
    assert [_venue_status(venue, i) for i in ids] == [OrderStatus.FILLED, OrderStatus.FILLED, None, None]


def test_sync_stop_with_a_timeout_never_abandons_the_order_in_hand(virtual_clock: VirtualClock) -> None:
    optimizer, venue = _sync_optimizer(virtual_clock)
    ids = [optimizer.submit_order(market(f"t{i}")) for i in range(10)]
    t0 = virtual_clock.now()
    optimizer.stop(drain=True, timeout=2.5)
    # At 2.5 s the third order was on its way: it is finished, the rest canceled.
    assert virtual_clock.now() - t0 == pytest.approx(3.0)
    assert [optimizer.get_order_status(i).status for i in ids] == (
        [OrderStatus.FILLED] * 3 + [OrderStatus.CANCELED] * 7)
    assert [_venue_status(venue, i) for i in ids] == [OrderStatus.FILLED] * 3 + [None] * 7


def test_sync_stop_cancels_working_parents(virtual_clock: VirtualClock) -> None:
    venue = SimulatedExchange("sim", clock=virtual_clock, seed=1)
    router = OrderRouter(clock=virtual_clock, max_latency_s=None)
    router.register_exchange("sim", venue)
    optimizer = ExecutionOptimizer(order_router=SmartOrderRouter(order_router=router))
    price = venue.book(SYMBOL).best_bid  # rests: the parent keeps working
    pid = optimizer.submit_order(Order(id="ice", symbol=SYMBOL, side="BUY", type="ICEBERG", quantity=1.0,
                                       price=price, metadata={"display_size": 0.1}))
    assert not optimizer.wait(pid, timeout=1.0).status.is_final
    optimizer.stop()
    final = optimizer.wait(pid, timeout=30)
    assert final.status is OrderStatus.CANCELED
    assert [r for r in venue.open_orders(SYMBOL) if r.order_id.startswith("ice")] == []


def test_a_sync_optimizer_never_keeps_the_process_alive_at_exit() -> None:
    # A venue call that would take an hour of real time is in hand and more wait in the
    # queue when the script ends without stop(): the process must still exit at once.
    script = textwrap.dedent("""
        from engine import (ExecutionOptimizer, LatencyModel, Order, OrderRouter, RealClock,
                            SimulatedExchange, SmartOrderRouter)
        clock = RealClock()
        venue = SimulatedExchange("sim", clock=clock, latency=LatencyModel(median_s=3600.0))
        router = OrderRouter(clock=clock, max_latency_s=None)
        router.register_exchange("sim", venue)
        optimizer = ExecutionOptimizer(order_router=SmartOrderRouter(order_router=router))
        for i in range(3):
            optimizer.submit_order(Order(id=f"x{i}", symbol="BTC/USD", side="BUY", type="MARKET",
                                         quantity=0.01))
        print("submitted", flush=True)
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "submitted"


# -- the async hand-off ----------------------------------------------------------------------


def _async_optimizer(clock: VirtualClock, *, latency_s: float = 1.0,
                     max_queue: int = 10_000) -> tuple[AsyncExecutionOptimizer, SimulatedExchange]:
    venue = SimulatedExchange("sim", clock=clock, latency=LatencyModel(median_s=latency_s))
    router = AsyncOrderRouter(clock=clock, max_latency_s=None)
    router.register_exchange("sim", AsyncExchangeClient(venue))
    return AsyncExecutionOptimizer(order_router=router, max_queue=max_queue), venue


@pytest.mark.anyio
async def test_a_full_queue_holds_the_submitter_back_until_a_worker_takes_one(
    virtual_clock: VirtualClock,
) -> None:
    optimizer, venue = _async_optimizer(virtual_clock, max_queue=2)
    await optimizer.start(num_workers=1)
    for i in range(3):  # one in the worker's hand, two queued: full
        await optimizer.submit_order_async(market(f"f{i}"))
    t0 = virtual_clock.now()
    await optimizer.submit_order_async(market("f3"))
    assert virtual_clock.now() - t0 == pytest.approx(1.0)  # waited for f0 to finish
    await optimizer.stop(drain=True)
    assert [optimizer.get_order_status(f"f{i}").status for i in range(4)] == [OrderStatus.FILLED] * 4
    assert venue.counters.submitted == 4


@pytest.mark.anyio
async def test_a_submit_given_up_while_the_queue_is_full_leaves_no_trace(virtual_clock: VirtualClock) -> None:
    optimizer, venue = _async_optimizer(virtual_clock, max_queue=1)
    await optimizer.start(num_workers=1)
    for i in range(2):
        await optimizer.submit_order_async(market(f"g{i}"))
    with anyio.move_on_after(0.5):
        await optimizer.submit_order_async(market("gone"))
    with pytest.raises(UnknownOrderError):
        optimizer.get_order_status("gone")
    assert "gone" not in optimizer.working
    # The id is free again: the caller may send it once more.
    assert await optimizer.submit_order_async(market("gone")) == "gone"
    await optimizer.stop(drain=True)
    assert optimizer.get_order_status("gone").status is OrderStatus.FILLED
    assert venue.counters.submitted == 3


@pytest.mark.anyio
async def test_a_submitter_held_back_by_a_full_queue_is_refused_when_the_optimizer_stops(
    virtual_clock: VirtualClock,
) -> None:
    optimizer, venue = _async_optimizer(virtual_clock, max_queue=1)
    await optimizer.start(num_workers=1)
    for i in range(2):
        await optimizer.submit_order_async(market(f"h{i}"))
    refused: list[BaseException] = []

    async def held_back() -> None:
        try:
            await optimizer.submit_order_async(market("held"))
        except OptimizerStoppedError as exc:
            refused.append(exc)

    async with anyio.create_task_group() as tg:
        tg.start_soon(held_back)
        await anyio.sleep(0.1)
        await optimizer.stop(drain=False)
    assert len(refused) == 1 and "not accepted" in str(refused[0])
    with pytest.raises(UnknownOrderError):
        optimizer.get_order_status("held")
    assert venue.counters.submitted == 1


@pytest.mark.anyio
async def test_a_batch_larger_than_the_queue_is_routed_whole(virtual_clock: VirtualClock) -> None:
    optimizer, venue = _async_optimizer(virtual_clock, latency_s=0.01, max_queue=5)
    await optimizer.start(num_workers=2)
    orders = [market(f"b{i}", side="BUY" if i % 2 else "SELL") for i in range(20)]
    orders.insert(7, market("b3"))  # a duplicate id inside the batch is skipped, not sent twice
    ids = await optimizer.submit_orders_async(orders)
    assert ids == [f"b{i}" for i in range(20)]
    await optimizer.stop(drain=True)
    assert [optimizer.get_order_status(i).status for i in ids] == [OrderStatus.FILLED] * 20
    assert venue.counters.submitted == 20


@pytest.mark.anyio
async def test_workers_draining_a_long_queue_let_the_rest_of_the_loop_run(virtual_clock: VirtualClock) -> None:
    optimizer, venue = _async_optimizer(virtual_clock, latency_s=0.0)  # answers without waiting
    await optimizer.start(num_workers=2)
    ticks = 0
    orders = [market(f"l{i}", side="BUY" if i % 2 else "SELL") for i in range(1_000)]

    def finished() -> bool:
        try:
            return optimizer.get_order_status(orders[-1].id).status.is_final
        except UnknownOrderError:
            return False  # not queued yet

    async def screen() -> None:  # the desk's timer, which must keep getting turns
        nonlocal ticks
        while not finished():
            ticks += 1
            await anyio.sleep(0)

    async with anyio.create_task_group() as tg:
        tg.start_soon(screen)
        await anyio.sleep(0)
        ids = await optimizer.submit_orders_async(orders)
    assert ticks >= 10
    await optimizer.stop(drain=True)
    assert all(optimizer.get_order_status(i).status is OrderStatus.FILLED for i in ids)
