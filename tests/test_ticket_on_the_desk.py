"""The desk gives its ticket what the venues know: an order a venue would refuse for
certain (under the lot's minimum) is never 'Ready' and Enter sends nothing."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.desk_support import make_app, until
from tests.test_desk import send_ticket
from tui.screens.ticket import TicketScreen


@pytest.mark.anyio
async def test_the_desks_ticket_knows_the_symbols_minimum_quantity(tmp_path: Path) -> None:
    app = make_app(tmp_path)
    async with app.run_test(size=(160, 48)) as pilot:
        await send_ticket(pilot, ["0", ".", "0", "0", "0", "0", "1"])  # 0.00001 BTC
        summary = str(app.screen.query_one("#ticket-summary").render())
        assert "Ready" not in summary, summary
        errors = " ".join(str(w.render()) for w in app.screen.query(".tk-error"))
        assert "minimum 0.0001" in errors, errors
        await pilot.press("enter")
        await pilot.pause()
        assert isinstance(app.screen, TicketScreen) and app.engine.stats.submitted == 0
        await pilot.press("escape")
        await until(pilot, lambda: not isinstance(app.screen, TicketScreen))
        await app.shutdown_engine()


@pytest.mark.anyio
async def test_the_ticket_opens_at_every_digit_of_the_touch(tmp_path: Path) -> None:
    app = make_app(tmp_path)
    async with app.run_test(size=(160, 48)) as pilot:
        app._touch = lambda symbol, side: 49_995.25  # a touch of seven significant digits
        await send_ticket(pilot, [])
        assert app.screen.query_one("#field-price").value == "49995.25"  # ':g' read 49995.2
        await pilot.press("escape")
        await until(pilot, lambda: not isinstance(app.screen, TicketScreen))
        await app.shutdown_engine()
