"""The order ticket driven by keys: what opens selected, what follows the market, what it refuses."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from textual.app import App
from textual.widgets import Input

from tests.desk_support import make_app
from tui.screens.ticket import TicketScreen
from tui.ticket_model import FIELDS_BY_TYPE

from engine import OrderType


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def until(pilot, condition: Callable[[], bool], tries: int = 100) -> None:
    for _ in range(tries):
        if condition():
            return
        await pilot.pause(0.02)
    raise AssertionError("the desk never reached the expected state")


def value(screen: TicketScreen, name: str) -> str:
    return screen.query_one(f"#field-{name}", Input).value


@pytest.mark.anyio
@pytest.mark.parametrize("close", ["escape", "enter"])
async def test_a_reopened_ticket_replaces_its_quantity_as_the_operator_types(tmp_path: Path, close: str) -> None:
    app = make_app(tmp_path)
    async with app.run_test(size=(160, 48)) as pilot:
        await pilot.press("b")
        await until(pilot, lambda: isinstance(app.screen, TicketScreen))
        await pilot.press("1", close)  # a quantity of 1 (typed over the selected one)
        await until(pilot, lambda: not isinstance(app.screen, TicketScreen))
        await pilot.press("b")
        await until(pilot, lambda: isinstance(app.screen, TicketScreen))
        await pilot.press("2")
        assert value(app.screen, "quantity") == "2"
        await pilot.press("escape")
        await app.shutdown_engine()


@pytest.mark.anyio
async def test_every_field_that_opens_with_a_value_is_replaced_by_typing(tmp_path: Path) -> None:
    app = make_app(tmp_path)
    async with app.run_test(size=(160, 48)) as pilot:
        for order_type in ("LIMIT", "ICEBERG", "TWAP", "VWAP", "SMART", "MARKET"):
            await pilot.press("b")  # the second ticket on reuses the first's screen (prepare)
            await until(pilot, lambda: isinstance(app.screen, TicketScreen))
            ticket = app.screen
            while ticket.values["type"] != order_type:
                await pilot.press("ctrl+t")
            shown = [n for n in FIELDS_BY_TYPE[OrderType(order_type)] if isinstance(
                ticket.query_one(f"#field-{n}"), Input) and value(ticket, n)]
            typed: dict[str, str] = {}
            for _ in range(2 * len(FIELDS_BY_TYPE[OrderType(order_type)])):
                focused = app.focused
                name = (focused.id or "").removeprefix("field-") if focused else ""
                if isinstance(focused, Input) and focused.value and name not in typed:
                    await pilot.press("7")
                    typed[name] = focused.value
                await pilot.press("tab")
            assert typed == {name: "7" for name in shown}, order_type
            quantity = ticket.query_one("#field-quantity")
            for _ in range(len(FIELDS_BY_TYPE[OrderType(order_type)])):
                if app.focused is quantity:
                    break
                await pilot.press("tab")
            await pilot.press("escape")  # closed in Quantity: the next ticket gets that focus back
            await until(pilot, lambda: not isinstance(app.screen, TicketScreen))
        await app.shutdown_engine()
