"""The desk's orders as rows fed by events (tui.view_model): no Textual, no engine."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from engine import Fill, OrderResult, OrderSide, OrderStatus, OrderType
from engine.events import (
    BreakerStateChanged,
    OrderAccepted,
    OrderAmended,
    OrderCanceled,
    OrderDenied,
    OrderExpired,
    OrderFilled,
    OrderCancelRejected,
    OrderPendingCancel,
    OrderRejected,
    OrderSubmitted,
    OrderUpdated,
)
from engine.models import Liquidity
from tui.view_model import DeskOrders, EventDigest

BUY = OrderSide.BUY
S = OrderStatus


def event(order_id: str, parent_id: str | None = None, status: OrderStatus = S.NEW) -> SimpleNamespace:
    return SimpleNamespace(order_id=order_id, parent_id=parent_id, status=status)


def fill_event(order_id: str, parent_id: str | None = None, *, qty: float = 0.1, leaves: float = 0.0,
               status: OrderStatus = S.FILLED, price: float = 50_000.0, venue: str = "deep",
               filled: float | None = None) -> OrderFilled:
    fill = Fill(order_id, venue, "BTC/USD", BUY, price, qty, 0.2, Liquidity.TAKER, 0.0)
    return OrderFilled(0.0, 0.0, order_id, venue, status, parent_id, fill, qty if filled is None else filled, leaves)


def submitted(order_id: str, parent_id: str | None = None, *, qty: float = 0.3, venue: str = "deep",
              price: float | None = 49_990.0) -> OrderSubmitted:
    return OrderSubmitted(0.0, 0.0, order_id, venue, S.PENDING_NEW, parent_id, "BTC/USD", BUY,
                          OrderType.LIMIT, qty, price)


def accepted(order_id: str, parent_id: str | None = None, venue: str = "deep") -> OrderAccepted:
    return OrderAccepted(0.0, 0.0, order_id, venue, S.NEW, parent_id)


def feed(orders: DeskOrders, *events: object) -> EventDigest:
    digest = EventDigest(orders)
    digest.digest(list(events), now=0.0)
    return digest


def track_limit(orders: DeskOrders, order_id: str = "T-1", *, mine: bool = True, qty: float = 0.3) -> None:
    orders.track(order_id, "LIMIT", mine=mine, symbol="BTC/USD", side=BUY, quantity=qty, price=49_990.0,
                 sent="sent to smart routing")


# -- which rows an event touches, and the bound --------------------------------------------------


def test_a_childs_event_touches_its_tracked_parents_row_and_untracked_ones_touch_nothing() -> None:
    orders = DeskOrders()
    orders.track("P", "TWAP", mine=True)
    orders.track("L", "LIMIT", mine=False)
    touched = orders.rows_touched([
        event("P.ab12.1", parent_id="P", status=S.FILLED),  # a child: the parent's row
        event("L"),
        event("stranger"),
        SimpleNamespace(venue="deep"),  # not an order's event
    ])
    assert touched == {"P", "L"}
    feed(orders, fill_event("P.ab12.1", parent_id="P"))
    assert orders.is_working("P")  # a child finishing says nothing of its parent


def test_working_orders_are_never_forgotten_and_finished_ones_go_oldest_first() -> None:
    orders = DeskOrders(max_finished=3)
    orders.track("twap", "TWAP", mine=True)
    for i in range(10):
        orders.track(f"m{i}", "MARKET", mine=False)
        feed(orders, fill_event(f"m{i}"))  # finished: it may be forgotten now
    assert "twap" in orders and orders.is_working("twap")
    assert [oid for oid in orders if oid != "twap"] == ["m7", "m8", "m9"]
    assert orders.is_mine("twap") and not orders.is_mine("m9")
    assert orders.rows_touched([event("twap.c.9", parent_id="twap")]) == {"twap"}


def test_each_tracked_order_keeps_its_place_in_time_and_a_forgotten_one_has_none() -> None:
    # The Orders panel's time order: when the desk tracked (sent) an order, not when its
    # first event happened to be drawn.
    orders = DeskOrders(max_finished=2)
    for order_id in ("a", "b", "c"):
        orders.track(order_id, "MARKET", mine=False)
    assert orders.sequence("a") < orders.sequence("b") < orders.sequence("c")
    for order_id in ("a", "b", "c"):
        feed(orders, fill_event(order_id))
    assert orders.sequence("a") is None and "a" not in orders  # forgotten, oldest first
    assert orders.sequence("b") < orders.sequence("c")
    assert orders.sequence("unknown") is None
    before = orders.sequence("b")
    orders.track("b", "MARKET", mine=True)  # tracked again: still where it was sent
    assert orders.sequence("b") == before
    assert orders.row("b").status is S.FILLED  # ...and still what its events said


@pytest.mark.parametrize("bad", [0, -1, 2.5, True])
def test_the_bound_is_a_whole_number(bad: object) -> None:
    with pytest.raises(ValueError, match="max_finished must be a whole number >= 1"):
        DeskOrders(max_finished=bad)  # type: ignore[arg-type]


# -- what a row shows, from events only ---------------------------------------------------------


def test_a_plain_orders_row_follows_its_events_from_sent_to_canceled() -> None:
    asked: list[str] = []

    def routing_reason(order_id: str) -> str:
        asked.append(order_id)
        return "deep: best price 49,990.00 for 0.3"

    orders = DeskOrders(routing_reason=routing_reason)
    track_limit(orders)
    row = orders.row("T-1")
    assert (row.status, row.why, row.symbol, row.side, row.quantity, row.price) == (
        S.PENDING_NEW, "sent to smart routing", "BTC/USD", BUY, 0.3, 49_990.0)

    feed(orders, submitted("T-1"), accepted("T-1"))
    assert (row.status, row.venues, row.why) == (S.NEW, "deep", "deep: best price 49,990.00 for 0.3")
    feed(orders,
         fill_event("T-1", qty=0.1, price=49_990.0, leaves=0.2, status=S.PARTIALLY_FILLED),
         fill_event("T-1", qty=0.1, price=49_980.0, leaves=0.1, status=S.PARTIALLY_FILLED, filled=0.2))
    assert (row.status, row.filled, row.average_price) == (S.PARTIALLY_FILLED, 0.2, pytest.approx(49_985.0))
    assert [f.price for f in row.fills] == [49_990.0, 49_980.0]
    assert orders.is_working("T-1")

    feed(orders, OrderCanceled(0.0, 0.0, "T-1", "deep", S.CANCELED, None, 0.2, "canceled by operator"))
    assert (row.status, row.filled, row.cause) == (S.CANCELED, 0.2, "canceled by operator")
    assert row.why == "deep: best price 49,990.00 for 0.3"  # routing still says where it went
    assert not orders.is_working("T-1") and orders.working_count == 0
    assert asked == ["T-1"]  # once, when it was submitted


def test_a_final_row_stays_final_though_a_late_report_arrives() -> None:
    orders = DeskOrders()
    track_limit(orders)
    feed(orders, submitted("T-1"), accepted("T-1"),
         OrderCanceled(0.0, 0.0, "T-1", "deep", S.CANCELED, None, 0.0, "canceled by operator"),
         OrderPendingCancel(0.0, 0.0, "T-1", "deep", S.PENDING_CANCEL),
         accepted("T-1"))
    row = orders.row("T-1")
    assert row.status is S.CANCELED and not orders.is_working("T-1")


def test_an_amend_changes_quantity_and_price_never_the_status() -> None:
    orders = DeskOrders()
    track_limit(orders)
    feed(orders, submitted("T-1"), accepted("T-1"),
         fill_event("T-1", qty=0.1, leaves=0.2, status=S.PARTIALLY_FILLED))
    feed(orders, OrderAmended(0.0, 0.0, "T-1", "deep", S.NEW, None, 0.5, 49_950.0))
    row = orders.row("T-1")
    assert (row.status, row.quantity, row.price, row.filled) == (S.PARTIALLY_FILLED, 0.5, 49_950.0, 0.1)
    # An amend of the quantity alone keeps the price.
    feed(orders, OrderAmended(0.0, 0.0, "T-1", "deep", S.PARTIALLY_FILLED, None, 0.4, None))
    assert (row.quantity, row.price) == (0.4, 49_950.0)


def test_a_pending_cancel_shows_until_the_cancel_is_confirmed() -> None:
    orders = DeskOrders()
    track_limit(orders)
    feed(orders, submitted("T-1"), accepted("T-1"), OrderPendingCancel(0.0, 0.0, "T-1", "deep", S.PENDING_CANCEL))
    row = orders.row("T-1")
    assert row.status is S.PENDING_CANCEL and orders.is_working("T-1")
    feed(orders, OrderCanceled(0.0, 0.0, "T-1", "deep", S.CANCELED, None, 0.0, "canceled by operator"))
    assert row.status is S.CANCELED and not orders.is_working("T-1")


def test_a_refused_cancel_puts_the_row_back_and_says_why() -> None:
    orders = DeskOrders()
    track_limit(orders)
    feed(orders, submitted("T-1"), accepted("T-1"), OrderPendingCancel(0.0, 0.0, "T-1", "deep", S.PENDING_CANCEL))
    news = EventDigest(orders).digest(
        [OrderCancelRejected(0.0, 0.0, "T-1", "deep", S.NEW, None, "cancel failed at deep: timeout")], now=0.0)
    row = orders.row("T-1")
    assert row.status is S.NEW and orders.is_working("T-1")
    assert news.lines == ["CANCEL REFUSED T-1, still NEW: cancel failed at deep: timeout"]


@pytest.mark.parametrize(("refusal", "venue"), [
    (OrderDenied(0.0, 0.0, "T-1", None, S.REJECTED, None, "quantity 100 > max 50 for BTC/USD"), None),
    (OrderRejected(0.0, 0.0, "T-1", "thrift", S.REJECTED, None, "quantity 100 > max 50 for BTC/USD"), "thrift"),
])
def test_a_refusal_shows_its_reason_in_the_reason_column(refusal: object, venue: str | None) -> None:
    orders = DeskOrders(routing_reason=lambda oid: "thrift: best price")
    track_limit(orders)
    feed(orders, refusal)
    row = orders.row("T-1")
    assert (row.status, row.why, row.venues) == (S.REJECTED, "quantity 100 > max 50 for BTC/USD", venue)
    assert not orders.is_working("T-1")


def test_an_order_the_desk_could_not_send_ends_rejected_with_why() -> None:
    orders = DeskOrders()
    track_limit(orders)
    orders.refuse("T-1", "the engine is not running")
    row = orders.row("T-1")
    assert (row.status, row.why) == (S.REJECTED, "the engine is not running")
    assert orders.working_count == 0
    orders.refuse("never-tracked", "x")  # nothing to say about an order it does not show
    assert "never-tracked" not in orders


def test_a_parents_row_takes_its_progress_from_its_updates_and_lists_its_children() -> None:
    orders = DeskOrders(routing_reason=lambda oid: pytest.fail("a parent's row reads no routing reason"))
    orders.track("P", "TWAP", mine=True, symbol="BTC/USD", side=BUY, quantity=0.6, sent="sent to smart routing")
    tca = {"slippage_bps": 1.25, "arrival_price": 49_990.0}
    feed(orders,
         OrderUpdated(0.0, 0.0, "P", None, S.NEW, None, 0.0, 0.6, None, "slice 1/3 in 2 s", tca),
         submitted("P.c.1", "P", qty=0.2, venue="deep"), accepted("P.c.1", "P"),
         fill_event("P.c.1", "P", qty=0.2, price=50_000.0),
         submitted("P.c.2", "P", qty=0.2, venue="swift"), accepted("P.c.2", "P", venue="swift"))
    row = orders.row("P")
    # A child's fill adds to the fills and children, not to the parent's progress: its update says that.
    assert (row.status, row.filled, row.average_price, row.why) == (S.NEW, 0.0, None, "slice 1/3 in 2 s")
    feed(orders, OrderUpdated(0.0, 0.0, "P", None, S.PARTIALLY_FILLED, None, 0.2, 0.6, 50_000.0,
                              "slice 2/3 working", tca))
    assert (row.status, row.filled, row.average_price, row.why) == (S.PARTIALLY_FILLED, 0.2, 50_000.0,
                                                                    "slice 2/3 working")
    assert (row.slippage_bps, row.arrival_price, row.venues) == (1.25, 49_990.0, "deep,swift")
    assert [(c.order_id, c.status, c.filled, c.quantity, c.venue) for c in row.children.values()] == [
        ("P.c.1", S.FILLED, 0.2, 0.2, "deep"), ("P.c.2", S.NEW, 0.0, 0.2, "swift")]
    assert [f.order_id for f in row.fills] == ["P.c.1"]
    assert orders.is_working("P")
    feed(orders, OrderUpdated(0.0, 0.0, "P", None, S.FILLED, None, 0.6, 0.6, 50_001.0, "done", tca))
    assert row.status is S.FILLED and not orders.is_working("P")


def test_a_split_orders_row_sums_its_pieces_until_all_are_done() -> None:
    asked: list[str] = []
    orders = DeskOrders(routing_reason=lambda oid: asked.append(oid) or f"{oid}: best of the merged book")
    track_limit(orders, "T-1", qty=0.3)
    feed(orders,
         submitted("T-1.x.1", "T-1", qty=0.2, venue="deep"), accepted("T-1.x.1", "T-1"),
         fill_event("T-1.x.1", "T-1", qty=0.2, price=50_000.0))
    row = orders.row("T-1")
    # One piece filled, the other not heard of yet: the order is partly filled, not done.
    assert (row.status, row.filled, row.average_price) == (S.PARTIALLY_FILLED, 0.2, 50_000.0)
    assert orders.is_working("T-1")
    feed(orders,
         submitted("T-1.x.2", "T-1", qty=0.1, venue="swift"), accepted("T-1.x.2", "T-1", venue="swift"),
         fill_event("T-1.x.2", "T-1", qty=0.1, price=50_003.0, venue="swift"))
    assert (row.status, row.filled, row.average_price, row.venues) == (
        S.FILLED, pytest.approx(0.3), pytest.approx(50_001.0), "deep,swift")
    assert row.why == "T-1.x.1: best of the merged book" and asked == ["T-1.x.1"]
    assert not orders.is_working("T-1")


def test_a_split_order_whose_pieces_all_end_unfilled_ends_as_they_did() -> None:
    orders = DeskOrders()
    track_limit(orders, "T-1", qty=0.3)
    feed(orders,
         submitted("T-1.x.1", "T-1", qty=0.2), accepted("T-1.x.1", "T-1"),
         OrderDenied(0.0, 0.0, "T-1.x.2", "swift", S.REJECTED, "T-1", "breaker open at swift"))
    row = orders.row("T-1")
    assert row.status is S.NEW  # one piece works
    feed(orders, OrderExpired(0.0, 0.0, "T-1.x.1", "deep", S.EXPIRED, "T-1", 0.0, "day ended"))
    assert (row.status, row.cause) == (S.EXPIRED, "breaker open at swift")


# -- after a loss: one read of what still works ---------------------------------------------------


def test_after_lost_events_the_working_rows_are_read_once() -> None:
    orders = DeskOrders()
    track_limit(orders, "T-1")
    track_limit(orders, "T-2")
    track_limit(orders, "T-3")
    feed(orders, submitted("T-3"), accepted("T-3"),
         OrderCanceled(0.0, 0.0, "T-3", "deep", S.CANCELED, None, 0.0, "canceled by operator"))
    fill = Fill("T-1", "deep", "BTC/USD", BUY, 49_990.0, 0.3, 0.1, Liquidity.MAKER, 0.0)
    engine_says = {
        "T-1": OrderResult("T-1", "deep", S.FILLED, 0.3, 0.3, 49_990.0, [fill], symbol="BTC/USD", side=BUY,
                           price=49_990.0),
        "T-2": None,  # the engine forgot it: long finished
    }
    asked: list[str] = []

    def status_of(order_id: str) -> OrderResult | None:
        asked.append(order_id)
        return engine_says[order_id]

    assert orders.resync(status_of) == {"T-1", "T-2"}
    assert sorted(asked) == ["T-1", "T-2"]  # the finished T-3 is not asked about
    row = orders.row("T-1")
    assert (row.status, row.filled, row.average_price, row.venues) == (S.FILLED, 0.3, 49_990.0, "deep")
    assert [f.price for f in row.fills] == [49_990.0]
    assert orders.working_count == 0


# -- what the Events log is told ----------------------------------------------------------------


def test_the_operators_fills_and_endings_each_get_a_line_the_demo_flow_one_per_period() -> None:
    orders = DeskOrders()
    orders.track("T-1", "LIMIT", mine=True)
    orders.track("P", "TWAP", mine=True)
    digest = EventDigest(orders, summary_every_s=10.0)
    flow = []
    for i in range(500):
        orders.track(f"demo-{i}", "MARKET", mine=False)
        flow += [OrderSubmitted(0.0, 0.0, f"demo-{i}", "deep", S.PENDING_NEW), fill_event(f"demo-{i}")]
    flow.append(OrderRejected(0.0, 0.0, "demo-7", "thrift", S.REJECTED, None, "venue busy"))
    news = digest.digest([
        fill_event("T-1", qty=0.1, leaves=0.2, status=S.PARTIALLY_FILLED),
        fill_event("P.ab.1", parent_id="P"),
        OrderCanceled(0.0, 0.0, "T-1", "deep", S.CANCELED, None, 0.1, "canceled by operator"),
        *flow,
        BreakerStateChanged(0.0, 0.0, "swift", "CLOSED", "OPEN", "failure rate 60%"),
    ], now=100.0)
    assert news.lines == [
        "FILL T-1 BUY 0.1 BTC/USD @ 50,000.00 on deep: 0.2 left",
        "FILL P.ab.1 (child of P) BUY 0.1 BTC/USD @ 50,000.00 on deep: 0 left",
        "CANCELED T-1 after 0.1 filled: canceled by operator",
        "BREAKER swift: CLOSED → OPEN (failure rate 60%)",
    ]
    assert news.rows == {"T-1", "P", *(f"demo-{i}" for i in range(500))}
    assert len(news.fills) == 502 and news.submitted == 500
    # The flow is told once the period has passed, counted, with the last refusal's reason.
    assert digest.digest([], now=105.0).lines == []
    assert digest.digest([], now=110.0).lines == [
        "DEMO flow in 10 s: 500 orders, 500 fills, 1 rejected (last: venue busy)"]
    assert digest.digest([], now=125.0).lines == []  # nothing happened: nothing said


def test_a_parent_finishing_says_so_once_with_its_average() -> None:
    orders = DeskOrders()
    orders.track("P", "VWAP", mine=True)
    digest = EventDigest(orders)
    working = OrderUpdated(0.0, 0.0, "P", None, S.PARTIALLY_FILLED, None, 0.5, 1.0, 50_000.0)
    done = OrderUpdated(0.0, 0.0, "P", None, S.FILLED, None, 1.0, 1.0, 50_001.5)
    assert digest.digest([working], now=0.0).lines == []
    assert digest.digest([done], now=0.0).lines == ["FILLED VWAP P: 1/1 filled avg 50,001.50"]
