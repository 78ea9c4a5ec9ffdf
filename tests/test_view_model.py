"""The desk's order tracking (tui.view_model): no Textual, no engine."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from engine import Fill, OrderSide, OrderStatus
from engine.events import BreakerStateChanged, OrderCanceled, OrderFilled, OrderRejected, OrderSubmitted, OrderUpdated
from engine.models import Liquidity
from tui.view_model import DeskOrders, EventDigest


def event(order_id: str, parent_id: str | None = None, status: OrderStatus = OrderStatus.NEW) -> SimpleNamespace:
    return SimpleNamespace(order_id=order_id, parent_id=parent_id, status=status)


def test_a_childs_event_touches_its_tracked_parents_row_and_untracked_ones_touch_nothing() -> None:
    orders = DeskOrders()
    orders.track("P", "TWAP", mine=True)
    orders.track("L", "LIMIT", mine=False)
    touched = orders.rows_touched([
        event("P.ab12.1", parent_id="P", status=OrderStatus.FILLED),  # a child: the parent's row
        event("L"),
        event("stranger"),
        SimpleNamespace(venue="deep"),  # not an order's event
    ])
    assert touched == {"P", "L"}
    assert orders.is_working("P")  # a child finishing says nothing of its parent


def test_working_orders_are_never_forgotten_and_finished_ones_go_oldest_first() -> None:
    orders = DeskOrders(max_finished=3)
    orders.track("twap", "TWAP", mine=True)
    for i in range(10):
        orders.track(f"m{i}", "MARKET", mine=False)
        orders.set_working(f"m{i}", False)
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
        orders.set_working(order_id, False)
    assert orders.sequence("a") is None and "a" not in orders  # forgotten, oldest first
    assert orders.sequence("b") < orders.sequence("c")
    assert orders.sequence("unknown") is None
    before = orders.sequence("b")
    orders.track("b", "MARKET", mine=True)  # tracked again: still where it was sent
    assert orders.sequence("b") == before


def test_an_old_order_thought_working_is_asked_about_once_the_bound_is_reached() -> None:
    asked: list[str] = []
    really_working = {"alive"}

    def still_working(order_id: str) -> bool:
        asked.append(order_id)
        return order_id in really_working

    orders = DeskOrders(max_finished=2, still_working=still_working)
    orders.track("alive", "TWAP", mine=True)
    orders.track("lost", "LIMIT", mine=True)  # its last redraw never came
    for i in range(3):
        orders.track(f"f{i}", "MARKET", mine=False)
        orders.set_working(f"f{i}", False)
    assert asked == ["alive", "lost"]
    assert "lost" not in orders and "alive" in orders
    assert orders.working_count == 1 and orders.mine_working() == ["alive"]


@pytest.mark.parametrize("bad", [0, -1, 2.5, True])
def test_the_bound_is_a_whole_number(bad: object) -> None:
    with pytest.raises(ValueError, match="max_finished must be a whole number >= 1"):
        DeskOrders(max_finished=bad)  # type: ignore[arg-type]


# -- what the Events log is told ----------------------------------------------------------------


def fill_event(order_id: str, parent_id: str | None = None, *, qty: float = 0.1, leaves: float = 0.0,
               status: OrderStatus = OrderStatus.FILLED) -> OrderFilled:
    fill = Fill(order_id, "deep", "BTC/USD", OrderSide.BUY, 50_000.0, qty, 0.2, Liquidity.TAKER, 0.0)
    return OrderFilled(0.0, 0.0, order_id, "deep", status, parent_id, fill, qty, leaves)


def test_the_operators_fills_and_endings_each_get_a_line_the_demo_flow_one_per_period() -> None:
    orders = DeskOrders()
    orders.track("T-1", "LIMIT", mine=True)
    orders.track("P", "TWAP", mine=True)
    digest = EventDigest(orders, summary_every_s=10.0)
    flow = []
    for i in range(500):
        orders.track(f"demo-{i}", "MARKET", mine=False)
        flow += [OrderSubmitted(0.0, 0.0, f"demo-{i}", "deep", OrderStatus.PENDING_NEW), fill_event(f"demo-{i}")]
    flow.append(OrderRejected(0.0, 0.0, "demo-7", "thrift", OrderStatus.REJECTED, None, "venue busy"))
    news = digest.digest([
        fill_event("T-1", qty=0.1, leaves=0.2, status=OrderStatus.PARTIALLY_FILLED),
        fill_event("P.ab.1", parent_id="P"),
        OrderCanceled(0.0, 0.0, "T-1", "deep", OrderStatus.CANCELED, None, 0.1, "canceled by operator"),
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
    working = OrderUpdated(0.0, 0.0, "P", None, OrderStatus.PARTIALLY_FILLED, None, 0.5, 1.0, 50_000.0)
    done = OrderUpdated(0.0, 0.0, "P", None, OrderStatus.FILLED, None, 1.0, 1.0, 50_001.5)
    assert digest.digest([working], now=0.0).lines == []
    assert digest.digest([done], now=0.0).lines == ["FILLED VWAP P: 1/1 filled avg 50,001.50"]
