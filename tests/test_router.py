"""OrderRouter and AsyncOrderRouter: the per-venue path every order takes.

Covers the router's own surface (venue choice, batches, idempotency by client
order id, unknown outcomes) and AsyncOrderRouter's context-aware
`submit_order`: a concurrent.futures.Future from sync code, a scheduled task
inside a running loop, any later loop, and a process that exits without
close(). Faults, the breaker and the latency gate are in test_resilience.py.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import gc
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import anyio
import pytest

from engine import (
    AsyncExchangeClient,
    AsyncOrderRouter,
    ExchangeClient,
    LatencyModel,
    Order,
    OrderResult,
    OrderRouter,
    OrderStatus,
    SimulatedExchange,
    TransientVenueError,
    UnknownOrderError,
    UnknownOutcomeError,
    VirtualClock,
)
from tests.conftest import virtual_anyio_backend

ROOT = Path(__file__).parent.parent
SYMBOL = "BTC/USD"


@pytest.fixture
def anyio_backend(virtual_clock: VirtualClock) -> Any:
    return virtual_anyio_backend(virtual_clock)


def market(oid: str, qty: float = 0.01, side: str = "BUY") -> Order:
    return Order(id=oid, symbol=SYMBOL, side=side, type="MARKET", quantity=qty)


# -- venue choice and batches ----------------------------------------------------------------


def test_one_venue_may_be_omitted_several_must_be_named(virtual_clock: VirtualClock) -> None:
    router = OrderRouter(clock=virtual_clock)
    router.register_exchange("a", ExchangeClient(SimulatedExchange("a", clock=virtual_clock)))
    assert router.submit_order(market("o1")).status is OrderStatus.FILLED
    router.register_exchange("b", ExchangeClient(SimulatedExchange("b", clock=virtual_clock)))
    refused = router.submit_order(market("o2"))
    assert refused.status is OrderStatus.REJECTED
    assert "exchange_id is required" in refused.reason and "a, b" in refused.reason
    unknown = router.submit_order(market("o3"), "nowhere")
    assert unknown.status is OrderStatus.REJECTED and "'nowhere'" in unknown.reason


def test_a_batch_gives_one_result_per_order_and_a_bad_one_sinks_nothing(
    virtual_clock: VirtualClock,
) -> None:
    venue = SimulatedExchange("a", clock=virtual_clock)
    router = OrderRouter(clock=virtual_clock)
    router.register_exchange("a", venue)
    orders = [
        market("b1"),
        Order(id="b2", symbol="DOGE/USD", side="BUY", type="MARKET", quantity=1.0),
        Order(id="b3", symbol=SYMBOL, side="SELL", type="LIMIT", quantity=0.01, price=50_000.001),
        market("b4", side="SELL"),
    ]
    results = router.submit_orders(orders)
    assert [r.order_id for r in results] == ["b1", "b2", "b3", "b4"]
    assert [r.status for r in results] == [
        OrderStatus.FILLED, OrderStatus.REJECTED, OrderStatus.REJECTED, OrderStatus.FILLED,
    ]
    assert "unknown symbol 'DOGE/USD'" in results[1].reason
    assert "tick" in results[2].reason


def test_algorithm_types_are_not_sent_to_a_venue_as_they_are(virtual_clock: VirtualClock) -> None:
    venue = SimulatedExchange("a", clock=virtual_clock)
    router = OrderRouter(clock=virtual_clock)
    router.register_exchange("a", venue)
    iceberg = Order(id="i1", symbol=SYMBOL, side="BUY", type="ICEBERG", quantity=1.0,
                    price=50_000.0, metadata={"display_size": 0.1})
    result = router.submit_order(iceberg)
    assert result.status is OrderStatus.REJECTED and "SmartOrderRouter" in result.reason
    assert venue.counters.submitted == 0


# -- idempotency -------------------------------------------------------------------------


def test_resubmitting_the_same_order_returns_the_known_result_without_a_second_venue_order(
    virtual_clock: VirtualClock,
) -> None:
    venue = SimulatedExchange("a", clock=virtual_clock)
    router = OrderRouter(clock=virtual_clock)
    router.register_exchange("a", venue)
    order = Order(id="same", symbol=SYMBOL, side="BUY", type="LIMIT", quantity=0.01, price=40_000.0)
    first = router.submit_order(order)
    assert first.status is OrderStatus.NEW
    again = router.submit_order(order)
    assert again is first
    # An equal copy is the same order too.
    assert router.submit_order(order.model_copy()) is first
    assert venue.counters.submitted == 1
    assert len(venue.open_orders()) == 1


def test_the_same_id_with_different_fields_is_refused(virtual_clock: VirtualClock) -> None:
    venue = SimulatedExchange("a", clock=virtual_clock)
    router = OrderRouter(clock=virtual_clock)
    router.register_exchange("a", venue)
    router.submit_order(market("dup", qty=0.01))
    other = router.submit_order(market("dup", qty=0.02))
    assert other.status is OrderStatus.REJECTED
    assert other.reason == "client order id 'dup' was already used for a different order"
    assert venue.counters.submitted == 1
    # The refusal did not replace what the router knows about the first order.
    assert router.get_order_status("dup").status is OrderStatus.FILLED
    assert router.get_order_status("dup").quantity == 0.01


@pytest.mark.anyio
async def test_async_router_idempotency(virtual_clock: VirtualClock) -> None:
    venue = SimulatedExchange("a", clock=virtual_clock)
    router = AsyncOrderRouter(clock=virtual_clock)
    router.register_exchange("a", AsyncExchangeClient(venue))
    order = market("adup")
    first = await router.submit_order_async(order)
    assert (await router.submit_order_async(order)) is first
    other = await router.submit_order_async(market("adup", qty=0.5))
    assert other.status is OrderStatus.REJECTED and "already used" in other.reason
    assert venue.counters.submitted == 1


class _LostAnswerVenue:
    """A venue whose first submit reaches the book but the answer is lost, and
    whose status queries fail until `answering` is set."""

    def __init__(self, clock: VirtualClock) -> None:
        self.inner = SimulatedExchange("lost", clock=clock)
        self.name, self.fees = "lost", self.inner.fees
        self.submits = 0
        self.answering = False

    def instruments(self) -> Any:
        return self.inner.instruments()

    def submit(self, order: Order) -> OrderResult:
        self.submits += 1
        result = self.inner.submit(order)
        if self.submits == 1:
            raise UnknownOutcomeError("answer lost", venue=self.name)
        return result

    def status(self, cid: str) -> OrderResult:
        if not self.answering:
            raise TransientVenueError("status unavailable", venue=self.name)
        return self.inner.status(cid)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def test_an_unknown_outcome_is_never_resent_blindly(virtual_clock: VirtualClock) -> None:
    venue = _LostAnswerVenue(virtual_clock)
    router = OrderRouter(clock=virtual_clock, retry_delay=0.01)
    router.register_exchange("lost", venue)
    order = market("u1")
    first = router.submit_order(order)
    assert first.status is OrderStatus.PENDING_NEW
    assert "outcome unknown" in first.reason
    assert router.unreconciled == ["u1"]
    # Asking again answers from memory: nothing is resent while the outcome is unknown.
    assert router.submit_order(order).status is OrderStatus.PENDING_NEW
    assert venue.submits == 1
    venue.answering = True
    [done] = router.reconcile_pending()
    assert done.status is OrderStatus.FILLED
    assert router.get_order_status("u1").status is OrderStatus.FILLED
    assert router.unreconciled == [] and venue.submits == 1
    assert venue.inner.counters.submitted == 1


# -- the context-aware wrapper -------------------------------------------------------------


def _async_router(clock: VirtualClock) -> tuple[AsyncOrderRouter, SimulatedExchange]:
    venue = SimulatedExchange("sim", clock=clock, latency=LatencyModel(median_s=0.002))
    router = AsyncOrderRouter(clock=clock)
    router.register_exchange("sim", AsyncExchangeClient(venue))
    return router, venue


def test_from_sync_code_submit_order_returns_a_future_that_fills(virtual_clock: VirtualClock) -> None:
    router, venue = _async_router(virtual_clock)
    try:
        future = router.submit_order(market("s1"))
        assert isinstance(future, concurrent.futures.Future)
        result = future.result(timeout=30)
        assert result.status is OrderStatus.FILLED and result.filled_quantity == 0.01
        assert venue.status("s1").status is OrderStatus.FILLED
        # The loop is reused for later calls, and the sync cancel/amend forms work too.
        resting = Order(id="s2", symbol=SYMBOL, side="BUY", type="LIMIT", quantity=0.01, price=40_000.0)
        assert router.submit_order(resting).result(timeout=30).status is OrderStatus.NEW
        amended = router.amend_order("s2", price=41_000.0).result(timeout=30)
        assert amended.price == 41_000.0
        assert router.cancel_order("s2").result(timeout=30).status is OrderStatus.CANCELED
    finally:
        router.close()
    assert not router.has_loop_thread


@pytest.mark.anyio
async def test_in_a_running_loop_the_order_goes_out_even_if_never_awaited(
    virtual_clock: VirtualClock,
) -> None:
    router, venue = _async_router(virtual_clock)
    task = router.submit_order(market("t1"))
    assert isinstance(task, asyncio.Task)
    del task
    gc.collect()  # nobody holds the task but the router
    with anyio.fail_after(5):
        while True:
            try:
                if venue.status("t1").status is OrderStatus.FILLED:
                    break
            except UnknownOrderError:
                pass
            await anyio.sleep(0.001)
    assert router.get_order_status("t1").status is OrderStatus.FILLED
    assert not router.has_loop_thread  # no thread was needed inside a loop


def test_the_router_works_from_a_second_later_loop_and_from_sync_in_between(
    virtual_clock: VirtualClock,
) -> None:
    router, venue = _async_router(virtual_clock)
    options = virtual_clock.backend_options()

    async def first() -> OrderResult:
        return await router.submit_order(market("l1"))

    async def second() -> OrderResult:
        task = router.submit_order(market("l3"))
        assert isinstance(task, asyncio.Task)
        return await task

    try:
        assert anyio.run(first, backend_options=options).status is OrderStatus.FILLED
        assert router.submit_order(market("l2")).result(timeout=30).status is OrderStatus.FILLED
        assert anyio.run(second, backend_options=options).status is OrderStatus.FILLED
        with asyncio.Runner(loop_factory=virtual_clock.loop_factory) as runner:  # plain asyncio
            assert runner.run(router.submit_order_async(market("l4"))).status is OrderStatus.FILLED
    finally:
        router.close()
    assert [venue.status(i).status for i in ("l1", "l2", "l3", "l4")] == [OrderStatus.FILLED] * 4


def test_a_script_using_the_sync_wrapper_exits_promptly_without_close() -> None:
    script = textwrap.dedent(
        """
        from engine import (AsyncExchangeClient, AsyncOrderRouter, LatencyModel, Order,
                            SimulatedExchange)

        router = AsyncOrderRouter()
        router.register_exchange("quick", AsyncExchangeClient())
        router.register_exchange(
            "stuck", AsyncExchangeClient(SimulatedExchange("stuck", latency=LatencyModel(median_s=3600.0)))
        )
        order = Order(id="x1", symbol="BTC/USD", side="BUY", type="MARKET", quantity=0.01)
        print(router.submit_order(order, "quick").result(timeout=20).status.value)
        # A call still in flight at exit must not hold the process either.
        pending = router.submit_order(
            Order(id="x2", symbol="BTC/USD", side="BUY", type="MARKET", quantity=0.01), "stuck"
        )
        print("pending" if not pending.done() else "done")
        """
    )
    proc = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=30
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["FILLED", "pending"]
    assert "Traceback" not in proc.stderr


def test_the_router_forgets_the_oldest_finished_orders_but_never_a_working_one(
    virtual_clock: VirtualClock,
) -> None:
    venue = SimulatedExchange("a", clock=virtual_clock)
    router = OrderRouter(clock=virtual_clock, remember_orders=3)
    router.register_exchange("a", venue)
    working = Order(id="w", symbol=SYMBOL, side="BUY", type="LIMIT", quantity=0.01, price=40_000.0)
    router.submit_order(working)
    for i in range(6):
        router.submit_order(market(f"f{i}", side="BUY" if i % 2 else "SELL"))
    assert router.get_order_status("w").status is OrderStatus.NEW
    assert [r.order_id for r in router.working_orders()] == ["w"]
    assert [router.get_order_status(f"f{i}").status for i in range(3, 6)] == [OrderStatus.FILLED] * 3
    for i in range(3):
        forgotten = router.get_order_status(f"f{i}")
        assert forgotten.status is OrderStatus.REJECTED and "expired from memory" in forgotten.reason
    assert router.cancel_order("w").status is OrderStatus.CANCELED
    # Finished just now, it is the newest finished order: the oldest one makes room.
    assert "expired from memory" in router.get_order_status("f3").reason
    for i in range(6, 8):
        router.submit_order(market(f"f{i}"))
    assert router.get_order_status("w").status is OrderStatus.CANCELED
    router.submit_order(market("f8"))
    assert "expired from memory" in router.get_order_status("w").reason
    assert router.working_orders() == []
