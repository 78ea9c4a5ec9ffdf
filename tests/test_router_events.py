"""What the router tells the event stream about cancels and amends: PENDING_CANCEL while a
cancel is out, OrderCancelRejected (and the state before) when it fails, OrderAmended
when an amend lands (DESIGN's state table; FIX OrdStatus 6, OrderCancelReject, Replaced)."""

from __future__ import annotations

from typing import Any

import pytest

from engine import ExchangeClient, Order, OrderRouter, OrderStatus, SimulatedExchange, VirtualClock
from engine.errors import TransientVenueError, UnknownOrderError
from tests.conftest import virtual_anyio_backend
from engine.events import (
    Event,
    OrderAmended,
    OrderCanceled,
    OrderCancelRejected,
    OrderPendingCancel,
)

SYMBOL = "BTC/USD"


@pytest.fixture
def anyio_backend(virtual_clock: VirtualClock) -> Any:
    return virtual_anyio_backend(virtual_clock)


class _Client(ExchangeClient):
    """The simulator, with cancels that can be made to fail, and a look at the router's
    view of the order while the cancel is at the venue."""

    def __init__(self, venue: SimulatedExchange) -> None:
        super().__init__(venue)
        self.fail_cancel = False
        self.seen_during_cancel: list[OrderStatus] = []
        self.router: OrderRouter | None = None

    def cancel(self, order_id: str) -> Any:
        assert self.router is not None
        self.seen_during_cancel.append(self.router.get_order_status(order_id).status)
        if self.fail_cancel:
            raise TransientVenueError("connection reset")
        return super().cancel(order_id)


def _router(clock: VirtualClock) -> tuple[OrderRouter, _Client, list[Event], float]:
    venue = SimulatedExchange("sim", clock=clock, seed=1)
    client = _Client(venue)
    router = OrderRouter(clock=clock, max_latency_s=None)
    router.register_exchange("sim", client)
    client.router = router
    events: list[Event] = []
    router.store.subscribe(events.append)
    far_bid = round(venue.book(SYMBOL, 1).best_bid * 0.9, 2)
    return router, client, events, far_bid


def _resting(router: OrderRouter, oid: str, price: float) -> None:
    order = Order(id=oid, symbol=SYMBOL, side="BUY", type="LIMIT", quantity=0.5, price=price)
    assert router.submit_order(order, "sim").status is OrderStatus.NEW


def test_a_cancel_is_pending_until_the_venue_confirms_it(virtual_clock: VirtualClock) -> None:
    router, client, events, bid = _router(virtual_clock)
    _resting(router, "c1", bid)
    events.clear()

    result = router.cancel_order("c1")

    assert result.status is OrderStatus.CANCELED
    assert client.seen_during_cancel == [OrderStatus.PENDING_CANCEL]
    assert [(type(e), e.status) for e in events] == [
        (OrderPendingCancel, OrderStatus.PENDING_CANCEL), (OrderCanceled, OrderStatus.CANCELED)]
    assert router.working_orders() == []


def test_a_failed_cancel_puts_the_order_back_and_says_why(virtual_clock: VirtualClock) -> None:
    router, client, events, bid = _router(virtual_clock)
    _resting(router, "c2", bid)
    events.clear()
    client.fail_cancel = True

    result = router.cancel_order("c2")

    assert result.status is OrderStatus.REJECTED
    assert result.reason == "cancel failed at sim: connection reset"
    assert router.get_order_status("c2").status is OrderStatus.NEW
    assert [type(e) for e in events] == [OrderPendingCancel, OrderCancelRejected]
    assert events[-1].status is OrderStatus.NEW and events[-1].reason == "cancel failed at sim: connection reset"
    assert [r.order_id for r in router.working_orders()] == ["c2"]
    client.fail_cancel = False  # and it can still be canceled
    assert router.cancel_order("c2").status is OrderStatus.CANCELED


def test_a_cancel_the_venue_refuses_puts_the_order_back(virtual_clock: VirtualClock) -> None:
    router, client, events, bid = _router(virtual_clock)
    _resting(router, "c3", bid)
    client.venue.cancel("c3")  # canceled behind the router's back: the venue will refuse
    events.clear()

    result = router.cancel_order("c3")

    assert result.status is OrderStatus.REJECTED
    rejected = [e for e in events if isinstance(e, OrderCancelRejected)]
    assert len(rejected) == 1 and rejected[0].reason == result.reason


def test_an_amend_that_lands_is_one_event_with_the_new_terms(virtual_clock: VirtualClock) -> None:
    router, _, events, bid = _router(virtual_clock)
    _resting(router, "a1", bid)
    events.clear()

    result = router.amend_order("a1", quantity=0.25, price=round(bid - 1.0, 2))

    assert result.status is OrderStatus.NEW and result.quantity == 0.25
    assert [type(e) for e in events] == [OrderAmended]
    amended = events[0]
    assert (amended.order_id, amended.status, amended.quantity, amended.price) == (
        "a1", OrderStatus.NEW, 0.25, round(bid - 1.0, 2))


def test_a_refused_amend_publishes_nothing(virtual_clock: VirtualClock) -> None:
    router, _, events, bid = _router(virtual_clock)
    _resting(router, "a2", bid)
    events.clear()

    result = router.amend_order("a2", price=bid + 0.001)  # off the tick

    assert result.status is OrderStatus.REJECTED
    assert events == [] and router.get_order_status("a2").quantity == 0.5


# -- what the probe of the rebuilt core found ----------------------------------------------

from engine import AsyncOrderRouter, FaultConfig  # noqa: E402
from engine.errors import UnknownOutcomeError  # noqa: E402
from engine.events import OrderFilled, OrderSubmitted  # noqa: E402


class _TimingOut(_Client):
    """Cancels and amends that time out, having reached the book (`reach`) or not."""

    def __init__(self, venue: SimulatedExchange) -> None:
        super().__init__(venue)
        self.reach = True
        self.time_out = False

    def cancel(self, order_id: str) -> Any:
        if not self.time_out:
            return super().cancel(order_id)
        if self.reach:
            self.venue.cancel(order_id)
        raise UnknownOutcomeError("cancel timed out", venue="sim")

    def amend(self, order_id: str, quantity: float | None = None, price: float | None = None) -> Any:
        if not self.time_out:
            return super().amend(order_id, quantity=quantity, price=price)
        if self.reach:
            self.venue.amend(order_id, quantity=quantity, price=price)
        raise UnknownOutcomeError("amend timed out", venue="sim")


def _timing_out_router(clock: VirtualClock) -> tuple[OrderRouter, _TimingOut, list[Event], float]:
    venue = SimulatedExchange("sim", clock=clock, seed=1)
    client = _TimingOut(venue)
    router = OrderRouter(clock=clock, max_latency_s=None)
    router.register_exchange("sim", client)
    client.router = router
    events: list[Event] = []
    router.store.subscribe(events.append)
    return router, client, events, round(venue.book(SYMBOL, 1).best_bid * 0.9, 2)


def test_a_cancel_that_timed_out_after_reaching_the_book_is_canceled(virtual_clock: VirtualClock) -> None:
    router, client, events, bid = _timing_out_router(virtual_clock)
    _resting(router, "t1", bid)
    client.time_out = True

    result = router.cancel_order("t1")

    assert result.status is OrderStatus.CANCELED  # the venue's word, by status query
    assert router.working_orders() == [] and type(events[-1]) is OrderCanceled


def test_a_cancel_that_timed_out_before_the_book_leaves_the_order_working(virtual_clock: VirtualClock) -> None:
    router, client, events, bid = _timing_out_router(virtual_clock)
    _resting(router, "t2", bid)
    client.time_out, client.reach = True, False

    result = router.cancel_order("t2")

    assert result.status is OrderStatus.REJECTED
    assert result.reason == "cancel at sim timed out and did not take effect: the order still works there"
    assert router.get_order_status("t2").status is OrderStatus.NEW and type(events[-1]) is OrderCancelRejected
    client.time_out = False
    assert router.cancel_order("t2").status is OrderStatus.CANCELED


@pytest.mark.parametrize("reach", [True, False])
def test_an_amend_that_timed_out_is_settled_by_what_the_venue_holds(virtual_clock: VirtualClock, reach: bool) -> None:
    router, client, _, bid = _timing_out_router(virtual_clock)
    _resting(router, "t3", bid)
    client.time_out, client.reach = True, reach

    result = router.amend_order("t3", quantity=0.25)

    venue_quantity = client.venue.status("t3").quantity
    assert router.get_order_status("t3").quantity == venue_quantity == (0.25 if reach else 0.5)
    assert (result.status is OrderStatus.NEW) is reach


def test_an_amend_that_crosses_publishes_its_fill(virtual_clock: VirtualClock) -> None:
    router, client, events, bid = _router(virtual_clock)
    _resting(router, "x1", bid)
    ask = client.venue.book(SYMBOL, 1).best_ask
    events.clear()

    result = router.amend_order("x1", quantity=0.01, price=round(ask * 1.01, 2))

    assert result.status is OrderStatus.FILLED
    fills = [e for e in events if isinstance(e, OrderFilled)]
    assert fills and fills[-1].status is OrderStatus.FILLED and fills[-1].filled_quantity == 0.01


def test_an_amend_answered_while_a_cancel_is_out_keeps_the_cancel_pending(virtual_clock: VirtualClock) -> None:
    router, client, events, bid = _router(virtual_clock)
    _resting(router, "x2", bid)
    seen: list[OrderStatus] = []
    plain_cancel = client.cancel

    def cancel_amending_first(order_id: str) -> Any:
        router.amend_order(order_id, quantity=0.4)  # its answer lands while the cancel is out
        seen.append(router.get_order_status(order_id).status)
        client.fail_cancel = True
        return plain_cancel(order_id)

    client.cancel = cancel_amending_first  # type: ignore[method-assign]
    result = router.cancel_order("x2")

    assert seen == [OrderStatus.PENDING_CANCEL]
    assert result.status is OrderStatus.REJECTED and router.get_order_status("x2").status is OrderStatus.NEW
    assert type(events[-1]) is OrderCancelRejected and events[-1].status is OrderStatus.NEW


def test_a_second_order_under_a_working_orders_id_is_refused_without_a_word_under_that_id(
    virtual_clock: VirtualClock,
) -> None:
    router, _, events, bid = _router(virtual_clock)
    _resting(router, "w1", bid)
    heard: list[Any] = []
    router.add_order_listener(heard.append)
    events.clear()

    other = Order(id="w1", symbol=SYMBOL, side="SELL", type="LIMIT", quantity=0.5, price=bid * 2)
    result = router.submit_order(other, "sim")

    assert result.status is OrderStatus.REJECTED and "already used for a different order" in (result.reason or "")
    assert events == [] and heard == []
    assert router.get_order_status("w1").status is OrderStatus.NEW


class _LostAnswers(ExchangeClient):
    """Submits reach the book and their answers are lost; status queries fail while `down`."""

    def __init__(self, venue: SimulatedExchange) -> None:
        super().__init__(venue)
        self.down = True

    def submit(self, order: Order) -> Any:
        super().submit(order)
        raise UnknownOutcomeError("timed out", venue="sim")

    def status(self, client_order_id: str) -> Any:
        if self.down:
            raise TransientVenueError("status unavailable", venue="sim")
        return super().status(client_order_id)


def test_a_timed_out_submit_tells_its_story_once(virtual_clock: VirtualClock) -> None:
    venue = SimulatedExchange("sim", clock=virtual_clock, seed=1)
    client = _LostAnswers(venue)
    router = OrderRouter(clock=virtual_clock, max_latency_s=None)
    router.register_exchange("sim", client)
    events: list[Event] = []
    router.store.subscribe(events.append)
    bid = venue.book(SYMBOL, 1).best_bid
    tick = float(venue.instruments()[SYMBOL].tick_size)
    order = Order(id="u1", symbol=SYMBOL, side="BUY", type="LIMIT", quantity=0.01, price=round(bid + tick, 2))

    first = router.submit_order(order, "sim")
    venue.submit(Order(id="taker", symbol=SYMBOL, side="SELL", type="MARKET", quantity=0.01))  # fills u1, pushed
    client.down = False
    router.reconcile_pending()

    assert first.status is OrderStatus.PENDING_NEW
    assert router.get_order_status("u1").status is OrderStatus.FILLED
    mine = [e for e in events if getattr(e, "order_id", None) == "u1"]
    assert type(mine[0]) is OrderSubmitted and [type(e) for e in mine].count(OrderSubmitted) == 1
    assert sum(1 for e in mine if isinstance(e, OrderFilled) and e.fill is not None) == 1
    assert all(e.status is OrderStatus.FILLED for e in mine[mine.index(next(e for e in mine if e.status.is_final)):])


@pytest.mark.anyio
async def test_a_submit_its_caller_gave_up_on_is_unknown_until_reconciled(virtual_clock: VirtualClock) -> None:
    import anyio

    venue = SimulatedExchange("sim", clock=virtual_clock, seed=7, faults=FaultConfig(timeout_rate=1.0, timeout_s=1.0))
    router = AsyncOrderRouter(clock=virtual_clock, max_latency_s=None)
    router.register_exchange("sim", venue)
    bid = venue.book(SYMBOL, 1).best_bid
    order = Order(id="g1", symbol=SYMBOL, side="BUY", type="LIMIT", quantity=0.01, price=round(bid - 50, 2))
    with anyio.move_on_after(0.5):
        await router.submit_order_async(order)
    venue.faults = FaultConfig()

    pending = router.get_order_status("g1")
    assert pending.status is OrderStatus.PENDING_NEW and "outcome unknown" in (pending.reason or "")
    assert [r.order_id for r in router.working_orders()] == ["g1"]  # cancel-all and halt see it
    settled = await router.reconcile_pending_async()
    try:
        at_venue = venue.status("g1").status
    except UnknownOrderError:
        at_venue = OrderStatus.REJECTED  # it never arrived: the status query says so
    assert [(r.order_id, r.status) for r in settled] == [("g1", at_venue)]
    assert (await router.submit_order_async(order)).status is settled[0].status  # a resend is no second order
    assert venue.counters.submitted <= 1
