"""The optimizers stop and report honestly.

- What an optimizer answers and what it publishes agree: an order canceled
  while queued (or by a stop) is CANCELED in both, never REJECTED on the stream.
- The sync `ExecutionOptimizer` stops like the async one (drain or cancel,
  timeout), and its threads never keep a process alive at exit.

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
