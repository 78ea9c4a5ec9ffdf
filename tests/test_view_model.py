"""The desk's order tracking (tui.view_model): no Textual, no engine."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from engine import OrderStatus
from tui.view_model import DeskOrders


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
