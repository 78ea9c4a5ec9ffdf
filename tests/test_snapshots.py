"""How the desk looks: fixed seed, frozen virtual clock, instant venues, fixed size.

Update after an intended change with `python3 dev.py test tests/test_snapshots.py --snapshot-update`
and look at the new SVGs (../shared/tools/svg2png turns them into pictures).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from engine import OrderStatus
from tests.desk_support import make_app, make_engine
from tests.test_desk import until
from tui.app import PANELS

TYPES_FROM_LIMIT = {"LIMIT": 0, "ICEBERG": 1, "TWAP": 2, "VWAP": 3, "SMART": 4, "MARKET": 5}


def test_main_screen_wide(snap_compare, tmp_path: Path) -> None:
    assert snap_compare(make_app(tmp_path), terminal_size=(160, 48))


def test_main_screen_compact(snap_compare, tmp_path: Path) -> None:
    assert snap_compare(make_app(tmp_path), terminal_size=(80, 24))


async def _a_filled_and_a_working_order(pilot) -> None:
    """A market buy that fills (tape, positions) and a limit sell that rests (orders)."""
    app = pilot.app
    await pilot.press("b", *["ctrl+t"] * 5, "enter")  # LIMIT -> ... -> MARKET
    await until(pilot, lambda: "T-1" in app.blotter.keys and str(app.blotter.cell("T-1", "status")) == "FILLED")
    await pilot.press("s", *["ctrl+t"], "enter")  # MARKET -> LIMIT at the ask
    await until(pilot, lambda: "T-2" in app.blotter.keys and str(app.blotter.cell("T-2", "status")) == "NEW")


@pytest.mark.parametrize("panel", list(PANELS))
def test_compact_desk_shows_each_panel_under_the_orders(snap_compare, tmp_path: Path, panel: str) -> None:
    # 80x24: the orders, the selected order's line and one panel at a time (] and [).
    async def run_before(pilot) -> None:
        await _a_filled_and_a_working_order(pilot)
        pilot.app.show_panel(panel)
        # The fills held while the tab was hidden are drawn when it shows.
        await until(pilot, lambda: panel != "fills" or pilot.app.tape.row_count > 0)
        # The venues panel takes the focus (its keys work on its row): the picture waits for
        # it, or a loaded machine caught the orders' cursor still lit as focused.
        await until(pilot, lambda: panel != "venues" or pilot.app.focused is pilot.app.venues_panel)
        await pilot.pause()  # the footer shows the keys of the panel given the focus

    assert snap_compare(make_app(tmp_path), terminal_size=(80, 24), run_before=run_before)


def test_compact_desk_with_a_tripped_breaker_and_a_halt(snap_compare, tmp_path: Path) -> None:
    # What must never be cut at 80x24: the HALT banner, a venue out of routing (on the
    # tab line whatever panel shows) and when its breaker tries again.
    engine = make_engine()
    breaker = engine.router.breaker("swift")
    while breaker.state.value == "CLOSED":
        breaker.allow_request()
        breaker.record_failure(0.01)

    async def run_before(pilot) -> None:
        app = pilot.app
        await _a_filled_and_a_working_order(pilot)
        app.show_panel("venues")
        await pilot.press("k")
        await until(pilot, lambda: app.engine.status("T-2").status is OrderStatus.CANCELED)
        await until(pilot, lambda: str(app.blotter.cell("T-2", "status")) == "CANCELED")

    assert snap_compare(make_app(tmp_path, engine=engine), terminal_size=(80, 24), run_before=run_before)


@pytest.mark.parametrize("order_type", list(TYPES_FROM_LIMIT))
def test_ticket_for_each_order_type(snap_compare, tmp_path: Path, order_type: str) -> None:
    keys = ["b", *["ctrl+t"] * TYPES_FROM_LIMIT[order_type]]
    assert snap_compare(make_app(tmp_path), terminal_size=(160, 48), press=keys)


def test_ticket_with_a_validation_error(snap_compare, tmp_path: Path) -> None:
    assert snap_compare(make_app(tmp_path), terminal_size=(160, 48), press=["s", "minus", "3"])


def test_ticket_over_a_venue_out_of_routing(snap_compare, tmp_path: Path) -> None:
    # The ticket hides the desk, so it carries the desk's loud news itself.
    engine = make_engine()
    engine.router.breaker("swift").force_open("drill: venue down")
    assert snap_compare(make_app(tmp_path, engine=engine), terminal_size=(160, 48), press=["b"])


def test_venue_with_an_open_breaker(snap_compare, tmp_path: Path) -> None:
    engine = make_engine()
    engine.router.breaker("swift").force_open("drill: venue down")
    assert snap_compare(make_app(tmp_path, engine=engine), terminal_size=(160, 48))


def test_help_screen(snap_compare, tmp_path: Path) -> None:
    assert snap_compare(make_app(tmp_path), terminal_size=(160, 48), press=["question_mark"])


@pytest.mark.parametrize("theme", ["execdesk-dark", "execdesk-light", "execdesk-contrast"])
def test_each_theme(snap_compare, tmp_path: Path, theme: str) -> None:
    assert snap_compare(make_app(tmp_path, theme=theme), terminal_size=(160, 48))
