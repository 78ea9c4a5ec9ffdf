"""What the router tells the event stream about cancels and amends: PENDING_CANCEL while a
cancel is out, OrderCancelRejected (and the state before) when it fails, OrderAmended
when an amend lands (DESIGN's state table; FIX OrdStatus 6, OrderCancelReject, Replaced)."""

from __future__ import annotations

from typing import Any

from engine import ExchangeClient, Order, OrderRouter, OrderStatus, SimulatedExchange, VirtualClock
from engine.errors import TransientVenueError
from engine.events import (
    Event,
    OrderAmended,
    OrderCanceled,
    OrderCancelRejected,
    OrderPendingCancel,
)

SYMBOL = "BTC/USD"


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
