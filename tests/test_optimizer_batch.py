"""A batch handed to an optimizer with something other than an Order in it is refused
whole: nothing of it is queued (queued up to the bad item and then raising, the good
orders sat unrouted until another submission woke the worker)."""

from __future__ import annotations

from typing import Any

import pytest

from engine import (
    AsyncExecutionOptimizer,
    AsyncOrderRouter,
    ExecutionOptimizer,
    LatencyModel,
    Order,
    OrderRouter,
    OrderStatus,
    SimulatedExchange,
    UnknownOrderError,
    VirtualClock,
)
from tests.conftest import virtual_anyio_backend

REFUSED = "orders[1] is a NoneType, not an Order: None; nothing was queued"


@pytest.fixture
def anyio_backend(virtual_clock: VirtualClock) -> Any:
    return virtual_anyio_backend(virtual_clock)


def good() -> Order:
    return Order(id="good", symbol="BTC/USD", side="BUY", type="MARKET", quantity=0.001)


def test_a_sync_batch_with_a_non_order_is_refused_whole(virtual_clock: VirtualClock) -> None:
    venue = SimulatedExchange("sim", clock=virtual_clock)
    router = OrderRouter(clock=virtual_clock)
    router.register_exchange("sim", venue)
    optimizer = ExecutionOptimizer(router)
    try:
        with pytest.raises(TypeError) as refused:
            optimizer.submit_orders([good(), None])  # type: ignore[list-item]
        assert str(refused.value) == REFUSED
        with pytest.raises(UnknownOrderError):
            optimizer.get_order_status("good")
        assert optimizer.submit_orders([good()]) == ["good"]  # its id is free
        assert optimizer.wait("good", timeout=30).status is OrderStatus.FILLED
        assert venue.counters.submitted == 1
    finally:
        optimizer.stop(drain=False)


@pytest.mark.anyio
async def test_an_async_batch_with_a_non_order_is_refused_whole(virtual_clock: VirtualClock) -> None:
    venue = SimulatedExchange("sim", clock=virtual_clock)
    router = AsyncOrderRouter(clock=virtual_clock)
    router.register_exchange("sim", venue)
    optimizer = AsyncExecutionOptimizer(router)
    await optimizer.start(num_workers=2)
    try:
        with pytest.raises(TypeError) as refused:
            await optimizer.submit_orders_async([good(), None])  # type: ignore[list-item]
        assert str(refused.value) == REFUSED
        with pytest.raises(UnknownOrderError):
            optimizer.get_order_status("good")
        assert await optimizer.submit_orders_async([good()]) == ["good"]
        assert (await optimizer.wait_async("good", timeout=30)).status is OrderStatus.FILLED
        assert venue.counters.submitted == 1
    finally:
        await optimizer.stop(drain=False)


def test_wait_returns_the_final_result_of_an_order_forgotten_as_it_finished(virtual_clock: VirtualClock) -> None:
    # remember_orders=0: the store forgets a finished order at once; a waiter still gets
    # the result the order had when it became final. The venue is 1 ms away in virtual
    # time, which waits for this thread: the order is answered after the wait began.
    venue = SimulatedExchange("sim", clock=virtual_clock, latency=LatencyModel(median_s=0.001, p99_s=0.002))
    router = OrderRouter(clock=virtual_clock, remember_orders=0)
    router.register_exchange("sim", venue)
    optimizer = ExecutionOptimizer(router)
    try:
        optimizer.submit_order(good())
        result = optimizer.wait("good", timeout=30)
        assert (result.order_id, result.status, result.filled_quantity) == ("good", OrderStatus.FILLED, 0.001)
        with pytest.raises(UnknownOrderError):
            optimizer.get_order_status("good")
    finally:
        optimizer.stop(drain=False)
