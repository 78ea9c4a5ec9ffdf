"""The desk driven by keys only (Textual's Pilot), checked on screen and in the engine."""

from __future__ import annotations

import gc
import time
from pathlib import Path

import pytest

from engine import Engine, Order, OrderStatus
from tests.desk_support import instant_specs, make_app, until
from tui.app import DeskApp
from tui.screens.dialogs import AmendScreen, ConfirmScreen
from tui.screens.ticket import TicketScreen


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"




def cell(app: DeskApp, order_id: str, column: str) -> str:
    """What the Orders panel shows for this order in this column (by the column's key)."""
    return str(app.blotter.cell(order_id, column))


def status_of(app: DeskApp, order_id: str) -> OrderStatus:
    return app.engine.status(order_id).status


def open_orders(app: DeskApp) -> list:
    return [o for v in app.engine.venues.values() for o in v.open_orders()]


def record_notices(app: DeskApp) -> list[str]:
    """The messages the desk shows the operator from now on (toasts)."""
    seen: list[str] = []
    notify = app.notify

    def recording(message: str, *args, **kwargs):
        seen.append(str(message))
        return notify(message, *args, **kwargs)

    app.notify = recording  # type: ignore[method-assign]
    return seen


async def send_ticket(pilot, keys: list[str], side: str = "b") -> None:
    await pilot.press(side)
    await until(pilot, lambda: isinstance(pilot.app.screen, TicketScreen))
    await pilot.press(*keys)


@pytest.mark.anyio
async def test_limit_order_by_keys_shows_in_blotter_and_rests_at_a_venue(tmp_path: Path) -> None:
    app = make_app(tmp_path)
    async with app.run_test(size=(160, 48)) as pilot:
        # b opens a buy ticket priced at the best bid: Enter sends it as it is (2 keys).
        await send_ticket(pilot, ["enter"])
        await until(pilot, lambda: "T-1" in app.blotter.keys and status_of(app, "T-1") is OrderStatus.NEW)
        app.draw_frame()
        assert cell(app, "T-1", "id") == "T-1" and cell(app, "T-1", "side") == "BUY"
        assert cell(app, "T-1", "type") == "LIMIT" and cell(app, "T-1", "status") == "NEW"
        assert cell(app, "T-1", "limit") == f"{open_orders(app)[0].price:,.2f}"
        assert [o.order_id for o in open_orders(app)] == ["T-1"]
        await app.shutdown_engine()


@pytest.mark.anyio
async def test_market_order_fills_and_the_tape_shows_the_fills(tmp_path: Path) -> None:
    app = make_app(tmp_path)
    async with app.run_test(size=(160, 48)) as pilot:
        # LIMIT -> ICEBERG -> TWAP -> VWAP -> SMART -> MARKET: five ctrl+t, then Enter (7 keys).
        await send_ticket(pilot, ["ctrl+t"] * 5 + ["enter"])
        await until(pilot, lambda: "T-1" in app.blotter.keys and status_of(app, "T-1") is OrderStatus.FILLED)
        app.draw_frame()
        assert cell(app, "T-1", "status") == "FILLED"
        assert cell(app, "T-1", "prog").startswith("100%")
        tape_orders = {app.tape.cell(k, "id") for k in app.tape.keys}
        assert any(oid.startswith("T-1") for oid in tape_orders), tape_orders
        await app.shutdown_engine()


@pytest.mark.anyio
async def test_iceberg_by_keys_never_shows_more_than_its_display(tmp_path: Path) -> None:
    app = make_app(tmp_path)
    async with app.run_test(size=(160, 48)) as pilot:
        await send_ticket(pilot, ["ctrl+t"])  # LIMIT -> ICEBERG
        ticket = app.screen
        assert isinstance(ticket, TicketScreen)
        ticket.query_one("#field-quantity").value = "1"
        ticket.query_one("#field-display_size").value = "0.2"
        await pilot.pause()
        await pilot.press("enter")
        await until(pilot, lambda: "T-1" in app.blotter.keys and app.engine.scheduler.parent("T-1") is not None)
        await until(pilot, lambda: any(o.order_id.startswith("T-1.") for o in open_orders(app)))
        app.draw_frame()
        assert cell(app, "T-1", "type") == "ICEBERG"
        assert status_of(app, "T-1") in (OrderStatus.NEW, OrderStatus.PARTIALLY_FILLED)
        shown = sum(o.quantity - o.filled_quantity for o in open_orders(app) if o.order_id.startswith("T-1."))
        assert 0 < shown <= 0.2
        await app.shutdown_engine()


@pytest.mark.anyio
async def test_a_bad_ticket_shows_the_message_and_sends_nothing(tmp_path: Path) -> None:
    app = make_app(tmp_path)
    async with app.run_test(size=(160, 48)) as pilot:
        await send_ticket(pilot, ["minus", "5"])  # the quantity field is focused and selected
        ticket = app.screen
        assert isinstance(ticket, TicketScreen)
        error = str(ticket.query_one("#error-quantity").render())
        assert "Quantity must be > 0" in error
        await pilot.press("enter")
        await pilot.pause(0.1)
        assert isinstance(app.screen, TicketScreen), "a bad ticket cannot be sent"
        assert app.engine.stats.submitted == 0
        assert open_orders(app) == []
        await pilot.press("escape")
        await app.shutdown_engine()


@pytest.mark.anyio
async def test_toggling_a_venue_stops_routing_to_it(tmp_path: Path) -> None:
    app = make_app(tmp_path)
    async with app.run_test(size=(160, 48)) as pilot:
        app.venues_panel.focus()
        await pilot.press("v")  # the cursor is on the first venue
        first = next(iter(app.engine.venues))
        assert not app.engine.router.is_enabled(first)
        app.draw_slow_panels()
        assert str(app.venues_panel.cell(first, "on")) == "OFF"
        # A large market order would sweep every venue: none of it may reach the disabled one.
        await send_ticket(pilot, ["ctrl+t"] * 5)
        app.screen.query_one("#field-quantity").value = "5"
        await pilot.press("enter")
        await until(pilot, lambda: "T-1" in app.blotter.keys and status_of(app, "T-1").is_final)
        result = app.engine.status("T-1")
        venues = {c.exchange_id for c in (result.children or [result])}
        assert first not in venues and venues
        assert app.engine.venues[first].counters.submitted == 0
        await app.shutdown_engine()


@pytest.mark.anyio
async def test_halt_cancels_everything_and_refuses_tickets_until_resume(tmp_path: Path) -> None:
    app = make_app(tmp_path)
    async with app.run_test(size=(160, 48)) as pilot:
        await send_ticket(pilot, ["enter"])
        await send_ticket(pilot, ["enter"], side="s")
        await until(pilot, lambda: len(open_orders(app)) == 2)
        await pilot.press("k")
        await until(pilot, lambda: app.engine.halted_reason is not None and not open_orders(app))
        app.draw_frame()
        assert "HALTED" in str(app.topbar.render())
        await pilot.press("b")
        await pilot.pause(0.05)
        assert not isinstance(app.screen, TicketScreen), "no ticket while halted"
        await pilot.press("r")
        await until(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        await pilot.press("y")
        await until(pilot, lambda: app.engine.halted_reason is None)
        await send_ticket(pilot, ["enter"])
        await until(pilot, lambda: "T-3" in app.blotter.keys and status_of(app, "T-3") is OrderStatus.NEW)
        await app.shutdown_engine()


@pytest.mark.anyio
async def test_cancel_all_leaves_nothing_working_at_any_venue(tmp_path: Path) -> None:
    app = make_app(tmp_path)
    async with app.run_test(size=(160, 48)) as pilot:
        for side in ("b", "s", "b"):
            await send_ticket(pilot, ["enter"], side=side)
        await until(pilot, lambda: len(open_orders(app)) == 3)
        await pilot.press("x")
        await until(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        await pilot.press("y")
        await until(pilot, lambda: not open_orders(app))
        await until(pilot, lambda: all(status_of(app, f"T-{i}") is OrderStatus.CANCELED for i in (1, 2, 3)))
        await app.shutdown_engine()


@pytest.mark.anyio
async def test_amend_changes_the_order_at_the_venue(tmp_path: Path) -> None:
    app = make_app(tmp_path)
    async with app.run_test(size=(160, 48)) as pilot:
        await send_ticket(pilot, ["enter"])
        await until(pilot, lambda: len(open_orders(app)) == 1)
        old_price = open_orders(app)[0].price
        new_price = round(old_price - 10, 2)
        app.blotter.focus()
        await pilot.press("a")
        await until(pilot, lambda: isinstance(app.screen, AmendScreen))
        await pilot.press("tab", *f"{new_price:g}", "enter")  # the cursor starts in quantity
        await until(pilot, lambda: open_orders(app) and open_orders(app)[0].price == new_price)
        venue = app.engine.status("T-1").exchange_id
        assert app.engine.venues[venue].status("T-1").price == new_price
        await app.shutdown_engine()


@pytest.mark.anyio
async def test_an_engine_error_shows_in_the_event_log_and_the_desk_keeps_working(tmp_path: Path) -> None:
    app = make_app(tmp_path)
    async with app.run_test(size=(160, 48)) as pilot:
        venue = next(iter(app.engine.venues.values()))

        def broken_tick() -> None:
            raise RuntimeError("simulated market feed crashed")

        venue.tick = broken_tick
        await app.housekeep()
        app.draw_frame()
        lines = [str(line.text) for line in app.event_log.lines]
        assert any("ERROR in housekeeping" in ln and "simulated market feed crashed" in ln for ln in lines), lines
        del venue.tick
        await send_ticket(pilot, ["enter"])
        await until(pilot, lambda: "T-1" in app.blotter.keys and status_of(app, "T-1") is OrderStatus.NEW)
        await app.shutdown_engine()


@pytest.mark.parametrize(("order_type", "presses"), [("TWAP", 2), ("VWAP", 3), ("SMART", 4)])
@pytest.mark.anyio
async def test_algorithm_orders_by_keys_work_to_fills_on_the_tape(
    tmp_path: Path, order_type: str, presses: int
) -> None:
    app = make_app(tmp_path)
    clock = app.engine.clock
    async with app.run_test(size=(160, 48)) as pilot:
        await send_ticket(pilot, ["ctrl+t"] * presses)
        ticket = app.screen
        assert isinstance(ticket, TicketScreen)
        ticket.query_one("#field-price").value = ""  # no limit: the algorithm prices its children
        if order_type == "SMART":
            ticket.query_one("#field-urgency").value = "high"
        await pilot.pause()  # let the ticket hear the changes before Enter
        await pilot.press("enter")
        await until(pilot, lambda: "T-1" in app.blotter.keys and app.engine.scheduler.parent("T-1") is not None)
        # Let market time pass (the desk's clock is virtual here) until the parent has fills.
        for _ in range(40):
            if app.engine.status("T-1").filled_quantity > 0:
                break
            clock.advance(5.0)
            app.engine.tick()
            app.engine.scheduler.wake()
            await pilot.pause(0.05)
        app.draw_frame()
        result = app.engine.status("T-1")
        assert result.status is not OrderStatus.REJECTED, result.reason
        assert result.filled_quantity > 0, f"{order_type} never filled: {result.reason}"
        assert cell(app, "T-1", "type") == order_type
        tape_orders = {app.tape.cell(k, "id") for k in app.tape.keys}
        assert any(oid.startswith("T-1.") for oid in tape_orders), tape_orders
        await app.shutdown_engine()


@pytest.mark.anyio
async def test_the_command_palette_finds_and_runs_desk_actions(tmp_path: Path) -> None:
    app = make_app(tmp_path)
    async with app.run_test(size=(160, 48)) as pilot:
        first = next(iter(app.engine.venues))
        await pilot.press("ctrl+p")
        await pilot.pause(0.2)
        await pilot.press(*f"disable venue {first}")
        await pilot.pause(0.5)
        await pilot.press("enter")
        await until(pilot, lambda: not app.engine.router.is_enabled(first))
        await pilot.press("ctrl+p")
        await pilot.pause(0.2)
        await pilot.press(*"halt trading")
        await pilot.pause(0.5)
        await pilot.press("enter")
        await until(pilot, lambda: app.engine.halted_reason is not None)
        await app.shutdown_engine()


@pytest.mark.anyio
async def test_the_theme_is_remembered_between_runs_and_an_unknown_one_falls_back(tmp_path: Path) -> None:
    app = make_app(tmp_path)
    async with app.run_test(size=(160, 48)) as pilot:
        app.set_desk_theme("execdesk-light")
        await pilot.pause()
        await app.shutdown_engine()
    again = make_app(tmp_path)  # same settings file: no --theme given this time
    async with again.run_test(size=(160, 48)) as pilot:
        await pilot.pause()
        assert again.theme == "execdesk-light"
        await again.shutdown_engine()
    odd = make_app(tmp_path, theme="textual-ansi")  # a name Textual 8.2.5 removed
    async with odd.run_test(size=(160, 48)) as pilot:
        await pilot.pause()
        assert odd.theme == "execdesk-dark"
        notices = [n.message for n in odd._notifications]
        assert any("unknown theme 'textual-ansi'" in m for m in notices), notices
        await odd.shutdown_engine()


@pytest.mark.anyio
async def test_a_sent_tickets_price_is_kept_within_a_run_and_not_into_the_next(tmp_path: Path) -> None:
    import json

    saved = {"symbol": "BTC/USD", "side": "BUY", "type": "LIMIT", "quantity": "0.3", "price": "61000"}
    (tmp_path / "settings.json").write_text(json.dumps({"theme": None, "ticket": saved}))
    app = make_app(tmp_path)
    async with app.run_test(size=(160, 48)) as pilot:
        bid = app.engine.smart.merged_book("BTC/USD", depth=1).best_bid
        await pilot.press("b")
        await until(pilot, lambda: isinstance(app.screen, TicketScreen))
        ticket = app.screen
        # The quantity comes back from the last run; the price starts at the touch.
        assert ticket.query_one("#field-quantity").value == "0.3"
        assert ticket.query_one("#field-price").value == f"{bid:g}"
        below = f"{bid - 5:g}"
        ticket.query_one("#field-price").value = below
        await pilot.pause()
        await pilot.press("enter")  # sent: its price is this run's
        await until(pilot, lambda: not app.desk_covered)
        await pilot.press("b")
        await until(pilot, lambda: isinstance(app.screen, TicketScreen))
        assert app.screen.query_one("#field-price").value == below
        await pilot.press("escape")
        await app.shutdown_engine()


@pytest.mark.anyio
async def test_an_abandoned_ticket_is_not_remembered(tmp_path: Path) -> None:
    import json

    settings = tmp_path / "settings.json"
    app = make_app(tmp_path)
    async with app.run_test(size=(160, 48)) as pilot:
        await send_ticket(pilot, ["0", "full_stop", "2", "enter"])  # typed over the selected quantity
        await until(pilot, lambda: not app.desk_covered)
        assert json.loads(settings.read_text())["ticket"]["quantity"] == "0.2"
        written = settings.read_text()
        # Half-typed nonsense, then Esc: neither the file nor the next ticket keeps it.
        await send_ticket(pilot, [*"1e120.1", "ctrl+t", "escape"])
        await until(pilot, lambda: not app.desk_covered)
        assert settings.read_text() == written
        await pilot.press("b")
        await until(pilot, lambda: isinstance(app.screen, TicketScreen))
        assert app.screen.query_one("#field-quantity").value == "0.2"
        assert app.screen.values["type"] == "LIMIT"
        await pilot.press("escape")
        await until(pilot, lambda: not app.desk_covered)
        # The abandoned tickets used no order ids: the next order is T-2.
        await send_ticket(pilot, ["enter"])
        await until(pilot, lambda: "T-2" in app.blotter.keys)
        await app.shutdown_engine()


@pytest.mark.anyio
async def test_the_ticket_quotes_its_symbol_and_the_desk_behind_it_catches_up_when_it_closes(
    tmp_path: Path,
) -> None:
    from engine import Order

    app = make_app(tmp_path)
    async with app.run_test(size=(160, 48)) as pilot:
        await pilot.press("b")
        await until(pilot, lambda: isinstance(app.screen, TicketScreen))
        book = app.engine.smart.merged_book(app.symbol, depth=1)
        title = str(app.screen.query_one("#ticket-title").render())
        assert f"bid {book.best_bid:,.2f}" in title and f"ask {book.best_ask:,.2f}" in title, title
        # An order fills while the ticket is open: the desk behind is not redrawn...
        app.track_order(Order(id="behind", symbol=app.symbol, side="SELL", type="MARKET", quantity=0.01))
        await app.engine.submit(Order(id="behind", symbol=app.symbol, side="SELL", type="MARKET", quantity=0.01))
        await until(pilot, lambda: status_of(app, "behind") is OrderStatus.FILLED)
        app.draw_frame()
        assert "behind" not in app.blotter.keys
        assert not any(app.tape.cell(k, "id") == "behind" for k in app.tape.keys)
        # ...and shows it, fills and all, as soon as the ticket closes.
        await pilot.press("escape")
        await until(pilot, lambda: not app.desk_covered)
        app.draw_frame()
        assert cell(app, "behind", "status") == "FILLED"
        assert any(app.tape.cell(k, "id") == "behind" for k in app.tape.keys)
        await app.shutdown_engine()


@pytest.mark.anyio
async def test_the_ticket_says_what_the_hidden_desk_would_show_loudly(tmp_path: Path) -> None:
    # The ticket hides the desk: a halt or a venue leaving routing must still be seen.
    app = make_app(tmp_path)
    async with app.run_test(size=(160, 48)) as pilot:
        await pilot.press("b")
        await until(pilot, lambda: isinstance(app.screen, TicketScreen))
        screen = app.screen
        alert = screen.query_one("#ticket-alert")
        assert not alert.display
        first, second = list(app.engine.venues)[:2]
        app.engine.disable_venue(first)
        app.engine.router.breaker(second).force_open("drill")
        screen._refresh_header()
        assert alert.display
        assert str(alert.render()) == f"Venues: {first} OFF · {second} breaker OPEN"
        await app.engine.halt("[risk] desk limit")
        screen._refresh_header()
        assert str(alert.render()) == (
            "HALTED ([risk] desk limit): orders are refused. Esc, then r resumes trading."
        )
        summary = screen.query_one("#ticket-summary")
        assert str(summary.render()).startswith("Not sendable while trading is halted: BUY")
        await pilot.press("enter")  # refused here, nothing sent
        assert app.screen is screen and app.orders.working_count == 0
        app.engine.resume()
        app.engine.enable_venue(first)
        app.engine.router.breaker(second).reset()
        screen._refresh_header()
        assert not alert.display
        assert str(summary.render()).startswith("Ready: BUY")
        await app.shutdown_engine()


@pytest.mark.anyio
async def test_opening_and_closing_the_ticket_keeps_no_old_footer_keys(tmp_path: Path) -> None:
    # Textual's Footer re-creates its keys on every focus or screen change and its
    # data binding kept each old set alive: an hour of trading grew without bound.
    from textual.widgets._footer import FooterKey

    def footer_keys() -> int:
        gc.collect()
        return sum(1 for o in gc.get_objects() if isinstance(o, FooterKey))

    app = make_app(tmp_path)
    async with app.run_test(size=(160, 48)) as pilot:
        await pilot.press("b")
        await pilot.press("escape")
        await pilot.pause()
        settled = footer_keys()
        for _ in range(20):
            await pilot.press("b")
            await pilot.pause()
            await pilot.press("escape")
            await pilot.pause()
        assert footer_keys() <= settled + 20  # at most one more footer's worth, not 20 of them
        await app.shutdown_engine()


@pytest.mark.anyio
async def test_periodic_redraws_wait_just_after_an_operators_key(tmp_path: Path) -> None:
    # Under --demo a table batch or the chart takes 10-40 ms: just after a key they wait
    # a tick, so the frame that shows the key is not queued behind them.
    from tui.app import KEY_FIRST_MAX_DEFER_S, KEY_FIRST_S

    app = make_app(tmp_path)
    async with app.run_test(size=(160, 48)) as pilot:
        redraws: list[int] = []
        tick = app._after_keys(lambda: redraws.append(1))
        app._key_at -= 10 * KEY_FIRST_S
        tick()
        assert redraws == [1]
        await pilot.press("2")
        assert app.market.border_title.endswith(app.symbols[1])  # the key itself is not held
        tick()
        assert redraws == [1]  # just after the key: skipped
        app._key_at -= KEY_FIRST_S
        tick()
        assert redraws == [1, 1]
        # A held key (auto-repeat) defers a redraw for half a second at most.
        app._key_at = time.monotonic()
        tick()
        assert redraws == [1, 1]
        app._redrawn_at["<lambda>"] -= KEY_FIRST_MAX_DEFER_S
        tick()
        assert redraws == [1, 1, 1]


@pytest.mark.anyio
async def test_the_running_desk_tunes_the_process_and_holds_the_collector_while_a_key_is_drawn(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    # tui.runtime's tuning, as the execdesk command's desk (tune_gc) applies it.
    import tui.app as app_module
    from tui import runtime

    monkeypatch.setattr(app_module, "KEY_FIRST_S", 30.0)  # a slow machine's press is not "later"
    app = make_app(tmp_path)
    app.tune_gc = True  # as the running desk (cli) has it
    try:
        async with app.run_test(size=(160, 48)) as pilot:
            assert gc.get_threshold() == runtime.GC_THRESHOLDS and gc.get_freeze_count() > 0
            assert gc.isenabled() and app.collector_hold is not None
            app.collector_hold.first_s = 0.05
            await pilot.press("1")
            await until(pilot, gc.isenabled)  # left alone, the loop's timer gives it back
            app.collector_hold.first_s = 30.0
            await pilot.press("2")
            assert app.market.border_title.endswith(app.symbols[1])
            assert not gc.isenabled()  # held while the key's frame is drawn
        assert gc.isenabled()  # leaving the desk never leaves it off
    finally:
        runtime.restore_garbage_collector()


@pytest.mark.anyio
async def test_a_desk_in_a_test_process_leaves_the_collector_alone(tmp_path: Path) -> None:
    app = make_app(tmp_path)  # tune_gc off: the default
    thresholds = gc.get_threshold()
    async with app.run_test(size=(160, 48)) as pilot:
        await pilot.press("2")
        assert gc.isenabled() and app.collector_hold is None
        assert gc.get_threshold() == thresholds and gc.get_freeze_count() == 0
        await app.shutdown_engine()


@pytest.mark.anyio
async def test_the_blotter_keeps_its_size_as_orders_come_and_finish(tmp_path: Path) -> None:
    from engine import OrderSide
    from tui.view_model import OrderRow

    ranks: dict[str, int] = {}  # each order's place in time: when first shown

    def result(order_id: str, status: OrderStatus) -> OrderRow:
        rank = ranks.setdefault(order_id, len(ranks) + 1)
        return OrderRow(order_id, "LIMIT", True, rank, symbol="BTC/USD", side=OrderSide.BUY,
                        quantity=1.0, status=status, venue="deep")

    app = make_app(tmp_path)
    async with app.run_test(size=(160, 48)) as pilot:
        blotter = app.blotter
        blotter.max_rows = 5
        for i in range(3):
            blotter.show(result(f"w{i}", OrderStatus.NEW))
        blotter.select("w2")
        for i in range(6):
            blotter.show(result(f"f{i}", OrderStatus.FILLED))
        # Finished rows left, oldest first, to make room; working orders stayed.
        assert blotter.keys == ["f5", "f4", "w2", "w1", "w0"]
        await pilot.pause()
        size = blotter.virtual_size
        assert size.height == 6  # the rows and the header line
        # A new order and the finished row it replaces land in one batch: same size,
        # so the screen is not laid out again.
        layouts = 0
        original = app.screen._refresh_layout

        def counting(*args, **kwargs):
            nonlocal layouts
            layouts += 1
            return original(*args, **kwargs)

        app.screen._refresh_layout = counting
        for i in (3, 4):
            blotter.show(result(f"w{i}", OrderStatus.NEW))
            await pilot.pause()
        assert blotter.keys == ["w4", "w3", "w2", "w1", "w0"]
        assert blotter.virtual_size == size and layouts == 0
        # Working orders are never dropped to keep the bound; once over it, a row that
        # finishes leaves at once.
        blotter.show(result("w5", OrderStatus.NEW))
        assert blotter.row_count == 6
        blotter.show(result("w0", OrderStatus.CANCELED))
        assert blotter.keys == ["w5", "w4", "w3", "w2", "w1"]
        # The row the operator is looking at stays, finished or not.
        blotter.show(result("w1", OrderStatus.FILLED))
        blotter.select("w1")
        blotter.show(result("w6", OrderStatus.NEW))
        blotter.show(result("w2", OrderStatus.FILLED))
        assert blotter.keys == ["w6", "w5", "w4", "w3", "w1"] and blotter.selected_key() == "w1"


# -- the Orders panel is drawn from the engine's events, never from status reads -----------------


def count_status_reads(app: DeskApp, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The order ids the desk asks the engine about from now on (one per question)."""
    engine = app.engine
    asked: list[str] = []
    inside = False

    def counted(read):
        def read_counted(order_id: str):
            nonlocal inside
            if inside:  # order_status_or_none asks status: one question
                return read(order_id)
            asked.append(order_id)
            inside = True
            try:
                return read(order_id)
            finally:
                inside = False
        return read_counted

    monkeypatch.setattr(engine, "status", counted(engine.status))
    monkeypatch.setattr(engine, "order_status_or_none", counted(engine.order_status_or_none))
    return asked


@pytest.mark.anyio
async def test_orders_fills_and_a_cancel_are_drawn_from_events_without_status_reads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    app = make_app(tmp_path)
    asked = count_status_reads(app, monkeypatch)
    async with app.run_test(size=(160, 48)) as pilot:
        await send_ticket(pilot, ["ctrl+t"] * 5 + ["enter"])  # a market buy: fills
        await until(pilot, lambda: "T-1" in app.blotter.keys and cell(app, "T-1", "status") == "FILLED")
        await send_ticket(pilot, ["ctrl+t", "enter"])  # MARKET -> LIMIT at the bid: rests
        await until(pilot, lambda: "T-2" in app.blotter.keys and cell(app, "T-2", "status") == "NEW")
        assert cell(app, "T-1", "prog").startswith("100%") and cell(app, "T-1", "avg") != "—"
        assert cell(app, "T-2", "venue") in app.engine.venues
        assert ": " in cell(app, "T-2", "why")  # the smart router's reason for its venue
        app.blotter.select("T-2")
        app.blotter.focus()
        await pilot.press("c")
        await until(pilot, lambda: cell(app, "T-2", "status") == "CANCELED")
        await until(pilot, lambda: str(app.detail.render()).startswith("T-2 CANCELED  filled 0/"))
        assert app.orders.working_count == 0
        assert asked == []  # every row and the selected order's line came from events
        await app.shutdown_engine()
    engine = app.engine
    assert [engine.status(oid).status for oid in ("T-1", "T-2")] == [OrderStatus.FILLED, OrderStatus.CANCELED]


@pytest.mark.anyio
async def test_an_amend_and_a_pending_cancel_show_on_the_row_as_their_events_say(tmp_path: Path) -> None:
    from engine.events import OrderAmended, OrderPendingCancel

    app = make_app(tmp_path)
    async with app.run_test(size=(160, 48)) as pilot:
        await send_ticket(pilot, ["enter"])  # a limit buy at the bid: rests
        await until(pilot, lambda: "T-1" in app.blotter.keys and cell(app, "T-1", "status") == "NEW")
        venue = cell(app, "T-1", "venue")
        now = app.engine.clock.now()
        # What the router will publish for a cancel/replace and a cancel in flight.
        app.engine.bus.publish(OrderAmended(now, now, "T-1", venue, OrderStatus.NEW, None, 0.25, 45_000.0))
        await until(pilot, lambda: (cell(app, "T-1", "qty"), cell(app, "T-1", "limit")) == ("0.25", "45,000.00"))
        assert cell(app, "T-1", "status") == "NEW"
        app.engine.bus.publish(OrderPendingCancel(now, now, "T-1", venue, OrderStatus.PENDING_CANCEL, None))
        await until(pilot, lambda: cell(app, "T-1", "status") == "PENDING_CANCEL")
        assert app.orders.is_working("T-1")
        await app.shutdown_engine()


@pytest.mark.anyio
async def test_after_the_desk_lost_events_it_reads_its_working_orders_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    import tui.app as app_module
    from engine.events import VenueEnabled

    monkeypatch.setattr(app_module, "EVENT_QUEUE", 2)
    app = make_app(tmp_path)
    engine = app.engine
    async with app.run_test(size=(160, 48)) as pilot:
        venue = engine.venues["deep"]
        book = venue.book("BTC/USD")
        tick = venue.instruments()["BTC/USD"].tick_size
        price = round(book.best_bid + float(tick), 2)  # the best bid, alone at its level
        assert price < book.best_ask
        order = Order(id="D-1", symbol="BTC/USD", side="BUY", type="LIMIT", quantity=0.01, price=price)
        app.send_order(order, "deep")
        await until(pilot, lambda: "D-1" in app.blotter.keys and cell(app, "D-1", "status") == "NEW")
        asked = count_status_reads(app, monkeypatch)
        # Between two frames: a counterparty fills D-1 at the venue, and two more events
        # push the fill's event out of the desk's queue of two.
        venue.submit(Order(id="X-1", symbol="BTC/USD", side="SELL", type="MARKET", quantity=0.01))
        now = engine.clock.now()
        engine.bus.publish(VenueEnabled(now, now, "deep"))
        engine.bus.publish(VenueEnabled(now, now, "deep"))
        await until(pilot, lambda: cell(app, "D-1", "status") == "FILLED")
        assert asked == ["D-1"]  # the one working order, read once
        assert "dropped events" in str(app.status_bar.render())
        await app.shutdown_engine()


# -- the command: a crash never exits 0, the log is bounded ------------------------------------


def test_a_desk_that_crashes_exits_non_zero_and_logs_why(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    from tui.cli import run_desk

    app = make_app(tmp_path)

    def broken_action(index: int) -> None:
        raise RuntimeError("symbol table went away")

    app.action_symbol = broken_action  # what `2` runs

    async def operator(pilot) -> None:
        await pilot.press("2")

    with caplog.at_level("ERROR", logger="execdesk.cli"):
        code = run_desk(app, headless=True, size=(80, 24), auto_pilot=operator)
    assert code == 1
    assert "ended on an unhandled exception" in caplog.text
    assert "RuntimeError: symbol table went away" in caplog.text


def test_a_desk_that_quits_normally_exits_zero(tmp_path: Path) -> None:
    from tui.cli import run_desk

    app = make_app(tmp_path)

    async def operator(pilot) -> None:
        await pilot.press("q")  # nothing is working: q quits without asking

    assert run_desk(app, headless=True, size=(80, 24), auto_pilot=operator) == 0


def test_the_log_file_rotates_instead_of_growing(tmp_path: Path) -> None:
    import logging

    from tui.cli import configure_logging

    root = logging.getLogger()
    level = root.level
    handler = configure_logging(tmp_path, max_bytes=2_000, backups=2)
    try:
        noisy = logging.getLogger("execdesk.test")
        for i in range(500):
            noisy.warning("venue thrift slow again (%d)", i)
    finally:
        root.removeHandler(handler)
        handler.close()
        root.setLevel(level)
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == ["execdesk.log", "execdesk.log.1", "execdesk.log.2"]
    assert all((tmp_path / name).stat().st_size <= 2_000 for name in files)
    assert "venue thrift slow again (499)" in (tmp_path / "execdesk.log").read_text()


# -- the quit guard ----------------------------------------------------------------------------


async def _resting_order(pilot) -> None:
    await send_ticket(pilot, ["enter"])  # a LIMIT at the bid: it rests
    await until(pilot, lambda: len(open_orders(pilot.app)) == 1)


async def _palette_quit(pilot) -> None:
    await pilot.press("ctrl+p")
    await until(pilot, lambda: type(pilot.app.screen).__name__ == "CommandPalette")
    await pilot.press(*"quit")
    await pilot.pause(0.3)  # the palette searches in a worker
    await pilot.press("enter")


@pytest.mark.parametrize("way_out", ["q", "ctrl+q", "ctrl+c", "palette"])
@pytest.mark.anyio
async def test_every_way_out_asks_first_while_orders_work(tmp_path: Path, way_out: str) -> None:
    app = make_app(tmp_path)
    async with app.run_test(size=(160, 48)) as pilot:
        await _resting_order(pilot)

        async def leave() -> None:
            if way_out == "palette":
                await _palette_quit(pilot)
            else:
                await pilot.press(way_out)
            await until(pilot, lambda: isinstance(app.screen, ConfirmScreen))

        await leave()
        question = app.screen
        assert str(question.query_one("#confirm-question").render()) == "1 order is working. Cancel it and quit?"
        if way_out != "palette":
            await pilot.press(way_out)  # pressed again: still the one question, nothing skipped
            assert app.screen is question and app.is_running
        await pilot.press("n")
        await until(pilot, lambda: not app.desk_covered)
        assert app.is_running and len(open_orders(app)) == 1
        await leave()
        await pilot.press("y")
        await until(pilot, lambda: not app.is_running)
        assert open_orders(app) == []  # canceled on the way out
    assert app.return_code == 0


# -- rows stay live ----------------------------------------------------------------------------


@pytest.mark.anyio
async def test_an_algorithm_row_keeps_moving_after_thousands_of_newer_orders(tmp_path: Path) -> None:
    # Under --demo a one-minute TWAP's row froze at its first slices: the desk forgot the
    # oldest orders it showed, working or not, after 5,000 newer ones (a few seconds of
    # demo flow), and from then on the parent's events touched no row.
    engine = Engine.default(seed=1, specs=instant_specs())  # real time: the TWAP slices by itself
    app = make_app(tmp_path, engine=engine)
    async with app.run_test(size=(160, 48)) as pilot:
        app.send_order(Order(id="twap-1", symbol="BTC/USD", side="BUY", type="TWAP", quantity=0.3,
                             metadata={"duration_s": 1.0, "slices": 4}))
        await until(pilot, lambda: app.engine.order_status_or_none("twap-1") is not None)
        for i in range(6_000):  # the demo's flow, tracked as it is sent
            app.track_order(Order(id=f"demo-{i}", symbol="BTC/USD", side="SELL", type="MARKET", quantity=0.01),
                            mine=False)
        await until(pilot, lambda: app.engine.status("twap-1").status is OrderStatus.FILLED, tries=500)
        await until(pilot, lambda: str(app.blotter.cell("twap-1", "status")) == "FILLED")
        assert "100%" in app.blotter.cell("twap-1", "prog")
        await app.shutdown_engine()


@pytest.mark.anyio
async def test_amending_an_algorithm_parent_is_refused_before_the_dialog_opens(tmp_path: Path) -> None:
    app = make_app(tmp_path)
    async with app.run_test(size=(160, 48)) as pilot:
        notices = record_notices(app)
        app.send_order(Order(id="twap-1", symbol="BTC/USD", side="BUY", type="TWAP", quantity=0.3,
                             metadata={"duration_s": 600, "slices": 10}))
        await until(pilot, lambda: app.engine.scheduler.parent("twap-1") is not None)
        app.blotter.focus()
        assert app.blotter.selected_key() == "twap-1"
        await pilot.press("a")
        await pilot.pause()
        assert not app.desk_covered, "no amend dialog for a parent"
        assert notices == [
            "twap-1 is a TWAP parent: it cannot be amended (its algorithm sends and prices the child orders); "
            "cancel it (c) and send a new one"
        ]
        await app.shutdown_engine()


@pytest.mark.anyio
async def test_the_tickets_price_follows_its_symbol_and_side_to_the_desks_touch(tmp_path: Path) -> None:
    app = make_app(tmp_path)
    async with app.run_test(size=(160, 48)) as pilot:
        await pilot.press("b")
        await until(pilot, lambda: isinstance(app.screen, TicketScreen))
        price = app.screen.query_one("#field-price")
        eth = app.engine.smart.merged_book("ETH/USD", depth=1)
        await pilot.press("ctrl+y")  # BTC -> ETH: the ETH bid, not the BTC price
        assert app.screen.values["symbol"] == "ETH/USD"
        assert float(price.value) == pytest.approx(eth.best_bid)
        await pilot.press("ctrl+f")  # a sell starts at the ask
        assert float(price.value) == pytest.approx(eth.best_ask)
        await pilot.press("escape")
        await app.shutdown_engine()


# -- the whole desk at 80x24 -------------------------------------------------------------------


def rendered(renderable) -> str:
    """A Rich renderable as the plain text a wide terminal would show."""
    import io

    from rich.console import Console

    console = Console(width=200, file=io.StringIO(), record=True)
    console.print(renderable)
    return console.export_text()


def line_text(table, y: int) -> str:
    """What a table draws on its line `y` (0 is the header)."""
    return table.render_line(y).text


@pytest.mark.anyio
async def test_at_80x24_the_orders_row_shows_status_and_limit_before_it_is_cut(tmp_path: Path) -> None:
    app = make_app(tmp_path)
    async with app.run_test(size=(80, 24)) as pilot:
        await send_ticket(pilot, ["enter"])
        await until(pilot, lambda: "T-1" in app.blotter.keys and cell(app, "T-1", "status") == "NEW")
        await pilot.pause()
        header, row = line_text(app.blotter, 0), line_text(app.blotter, 1)
        assert len(row) <= 80
        for label in ("Order", "Side", "Type", "Qty", "Status", "Limit", "Avg px"):
            assert label in header, header
        price = f"{open_orders(app)[0].price:,.2f}"
        for text in ("T-1", "BUY", "BTC/USD", "LIMIT", "NEW", price):
            assert text in row, row
        await app.shutdown_engine()


@pytest.mark.anyio
async def test_at_80x24_every_panel_is_reached_with_the_panel_keys(tmp_path: Path) -> None:
    from tui.app import PANELS

    app = make_app(tmp_path)
    async with app.run_test(size=(80, 24)) as pilot:
        panels = {"market": app.market, "venues": app.venues_panel, "fills": app.tape,
                  "positions": app.positions, "latency": app.chart, "events": app.event_log}
        assert set(panels) == set(PANELS)

        def showing() -> set[str]:
            return {name for name, widget in panels.items() if widget.region.height > 0}

        seen = []
        for _ in PANELS:
            await pilot.pause()
            assert showing() == {app.panel}, (showing(), app.panel)
            assert app.panel == "venues" or app.blotter.has_focus  # the focus stays on the orders
            seen.append(app.panel)
            tabs = str(app.tabs.render())
            assert all(label in tabs for label in PANELS.values()), tabs
            await pilot.press("right_square_bracket")
        assert sorted(seen) == sorted(PANELS) and app.panel == seen[0]
        await pilot.press("left_square_bracket")
        assert app.panel == seen[-1]
        # A key about a hidden panel brings it into view.
        await pilot.press("p")
        assert app.panel == "positions" and app.positions.by_venue
        await pilot.press("l")
        assert app.panel == "latency"
        # A large terminal shows every panel at once; ] then does nothing.
        await pilot.resize_terminal(160, 48)
        await pilot.pause()
        assert showing() == set(PANELS) and not app.tabs.display
        await pilot.press("right_square_bracket")
        assert app.panel == "latency"
        await pilot.resize_terminal(80, 24)
        await pilot.pause()
        assert showing() == {"latency"}
        await app.shutdown_engine()


@pytest.mark.anyio
async def test_fills_that_come_while_the_fills_tab_is_hidden_show_when_it_is(tmp_path: Path) -> None:
    app = make_app(tmp_path)
    async with app.run_test(size=(80, 24)) as pilot:
        await send_ticket(pilot, ["ctrl+t"] * 5 + ["enter"])  # a market order: it fills
        await until(pilot, lambda: "T-1" in app.blotter.keys and cell(app, "T-1", "status") == "FILLED")
        assert app.panel != "fills"
        app.show_panel("fills")
        await until(pilot, lambda: any(str(app.tape.cell(k, "id")).startswith("T-1") for k in app.tape.keys))
        await app.shutdown_engine()


# -- what an operator expects ------------------------------------------------------------------


@pytest.mark.anyio
async def test_an_open_breaker_says_when_it_tries_again(tmp_path: Path) -> None:
    app = make_app(tmp_path)
    async with app.run_test(size=(160, 48)) as pilot:
        breaker = app.engine.router.breaker("swift")
        while breaker.state.value == "CLOSED":
            breaker.allow_request()
            breaker.record_failure(0.01)
        wait = breaker.retry_at - app.engine.clock.now()
        await until(pilot, lambda: str(app.venues_panel.cell("swift", "breaker")) == f"OPEN · retry {wait:.0f}s")
        app.engine.clock.advance(wait - 2)
        await until(pilot, lambda: str(app.venues_panel.cell("swift", "breaker")) == "OPEN · retry 2s")
        app.engine.clock.advance(2)
        await until(pilot, lambda: str(app.venues_panel.cell("swift", "breaker")) == "OPEN · retry due")
        breaker.force_open("drill")
        await until(pilot, lambda: str(app.venues_panel.cell("swift", "breaker")) == "OPEN (forced)")
        await app.shutdown_engine()


@pytest.mark.anyio
async def test_the_operators_orders_and_fills_are_in_the_events_log(tmp_path: Path) -> None:
    app = make_app(tmp_path)
    async with app.run_test(size=(160, 48)) as pilot:
        await send_ticket(pilot, ["ctrl+t"] * 5 + ["enter"])  # a market buy
        await until(pilot, lambda: "T-1" in app.blotter.keys and cell(app, "T-1", "status") == "FILLED")
        await send_ticket(pilot, ["ctrl+t", "enter"])  # MARKET -> LIMIT, at the bid: it rests
        await until(pilot, lambda: "T-2" in app.blotter.keys and cell(app, "T-2", "status") == "NEW")
        app.blotter.select("T-2")
        app.blotter.focus()
        await pilot.press("c")
        await until(pilot, lambda: cell(app, "T-2", "status") == "CANCELED")

        def log() -> str:
            return "\n".join(str(line.text) for line in app.event_log.lines)

        await until(pilot, lambda: "CANCELED T-2" in log())
        fills = [line for line in log().splitlines() if "FILL T-1 BUY" in line]
        assert fills and fills[-1].endswith(": filled"), log()
        assert "CANCELED T-2 after 0 filled" in log()
        await app.shutdown_engine()


@pytest.mark.anyio
async def test_demo_orders_are_dimmed_and_m_shows_only_the_operators(tmp_path: Path) -> None:
    app = make_app(tmp_path)
    async with app.run_test(size=(160, 48)) as pilot:
        app.demo = True  # as --demo shows it, without its synthetic flow
        await send_ticket(pilot, ["enter"])  # the operator's: T-1
        flow = Order(id="demo-1", symbol="BTC/USD", side="SELL", type="MARKET", quantity=0.01)
        app.track_order(flow, mine=False)
        await app.engine.submit(flow)
        await until(pilot, lambda: {"T-1", "demo-1"} <= set(app.blotter.keys))
        assert "dim" in str(app.blotter.cell("demo-1", "id").style)
        assert "bold" in str(app.blotter.cell("T-1", "id").style)
        assert "working    1 (mine 1)" in str(app.status_bar.render())
        await pilot.press("m")
        assert app.blotter.keys == ["T-1"] and "only yours" in app.blotter.border_title
        # Demo news keeps coming and stays out while filtered.
        more = Order(id="demo-2", symbol="BTC/USD", side="BUY", type="MARKET", quantity=0.01)
        app.track_order(more, mine=False)
        await app.engine.submit(more)
        await until(pilot, lambda: app.engine.status("demo-2").status is OrderStatus.FILLED)
        await pilot.pause(0.2)
        assert app.blotter.keys == ["T-1"]
        await pilot.press("m")
        assert set(app.blotter.keys) == {"T-1", "demo-1", "demo-2"}
        await app.shutdown_engine()


@pytest.mark.anyio
async def test_the_detail_view_shows_the_full_id_children_fills_and_reasons(tmp_path: Path) -> None:
    from tui.order_detail import OrderScreen

    app = make_app(tmp_path)
    long_id = "operator-iceberg-000000000042"  # longer than the Orders column
    async with app.run_test(size=(80, 24)) as pilot:
        ask = app.engine.smart.merged_book("BTC/USD", depth=1).best_ask
        through = round(ask * 1.001, 2)  # through every venue's ask: it fills, child by child
        app.send_order(Order(id=long_id, symbol="BTC/USD", side="BUY", type="ICEBERG", quantity=0.3,
                             price=through, metadata={"display_size": 0.1}))
        await until(pilot, lambda: (r := app.engine.order_status_or_none(long_id)) is not None
                    and r.filled_quantity > 0)
        await until(pilot, lambda: long_id in app.blotter.keys)
        assert long_id not in line_text(app.blotter, 1)  # the row cuts it short...
        app.blotter.select(long_id)
        app.blotter.focus()
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, OrderScreen))
        body = rendered(app.screen.query_one("#order-detail-body").content)
        assert long_id in body and "(yours)" in body and "ICEBERG BUY 0.3 BTC/USD" in body  # ...the detail does not
        assert "Fills (" in body and f"{long_id[:16]}." in body  # children's fills, by child id
        await pilot.press("escape")
        await until(pilot, lambda: not app.desk_covered)
        # A refused order: its reason, whole.
        app.send_order(Order(id="bad-1", symbol="BTC/USD", side="BUY", type="LIMIT", quantity=0.1,
                             price=ask), venue="swift")
        app.engine.router.breaker("swift").force_open("drill: swift down")
        await until(pilot, lambda: (r := app.engine.order_status_or_none("bad-1")) is not None
                    and r.status.is_final)
        reason = app.engine.status("bad-1").reason
        app.blotter.select("bad-1")
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, OrderScreen))
        body = rendered(app.screen.query_one("#order-detail-body").content)
        if reason:
            assert f"Reason: {reason}" in body
        await pilot.press("escape")
        await app.shutdown_engine()


@pytest.mark.anyio
async def test_a_halt_reason_is_shown_as_written_never_read_as_markup(tmp_path: Path) -> None:
    app = make_app(tmp_path)
    async with app.run_test(size=(80, 24)) as pilot:
        reason = "[risk] desk limit [/] hit"
        await app.engine.halt(reason)
        await until(pilot, lambda: f"HALTED: {reason}" in str(app.status_bar.render()))
        assert "HALTED: press r to resume" in str(app.topbar.render())
        await pilot.press("r")
        await until(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        await pilot.press("y")
        await until(pilot, lambda: "TRADING" in str(app.status_bar.render()))
        await app.shutdown_engine()


# -- risk limits on the desk -------------------------------------------------------------------


def log_text(app: DeskApp) -> str:
    return "\n".join(str(line.text) for line in app.event_log.lines)


@pytest.mark.anyio
async def test_the_desk_runs_under_its_risk_file_written_with_the_defaults_on_first_run(tmp_path: Path) -> None:
    from engine.risk import DEFAULT_RISK_LIMITS

    risk_file = tmp_path / "risk.toml"
    app = DeskApp(seed=1, live=False, settings_path=tmp_path / "settings.json", order_prefix="T")
    async with app.run_test(size=(160, 48)) as pilot:
        assert risk_file.exists() and app.engine.risk.limits == DEFAULT_RISK_LIMITS
        await until(pilot, lambda: f"RISK limits (from {risk_file}): per order at most 2,500,000 notional"
                    in log_text(app))
        await app.shutdown_engine()
    # The operator edits it: the next start runs under the new limits.
    risk_file.write_text(risk_file.read_text().replace("max_order_notional = 2_500_000", "max_order_notional = 1_000"))
    app = DeskApp(seed=1, live=False, settings_path=tmp_path / "settings.json", order_prefix="T")
    async with app.run_test(size=(160, 48)) as pilot:
        assert app.engine.risk.limits.max_order_notional == 1000
        await until(pilot, lambda: "per order at most 1,000 notional" in log_text(app))
        await app.shutdown_engine()
    # A broken file: the built-in limits, and the operator is told which file and why.
    risk_file.write_text("max_order_notional = 'lots'\n")
    app = DeskApp(seed=1, live=False, settings_path=tmp_path / "settings.json", order_prefix="T")
    notices = record_notices(app)
    async with app.run_test(size=(160, 48)) as pilot:
        await pilot.pause()
        assert app.engine.risk.limits == DEFAULT_RISK_LIMITS
        assert any(str(risk_file) in n and "max_order_notional" in n for n in notices), notices
        await app.shutdown_engine()


@pytest.mark.anyio
async def test_a_refused_risk_file_is_said_lastingly_and_the_log_names_the_limits_in_force(tmp_path: Path) -> None:
    # The notice alone went after 8 s, and the Events log named the refused file as the
    # limits' source although the built-in ones were in force.
    from engine.risk import DEFAULT_RISK_LIMITS

    risk_file = tmp_path / "risk.toml"
    risk_file.write_text("max_order_notional = 'lots'\n")
    app = DeskApp(seed=1, live=False, settings_path=tmp_path / "settings.json", order_prefix="T")
    async with app.run_test(size=(160, 48)) as pilot:
        assert app.engine.risk.limits == DEFAULT_RISK_LIMITS
        await until(pilot, lambda: "RISK limits" in log_text(app))
        log = " ".join(log_text(app).split())  # the log wraps long lines
        assert (f"RISK limits: the built-in ones are in force, risk.toml was refused (risk limits file {risk_file}:"
                " max_order_notional must be a number, got 'lots'") in log, log
        assert "They allow per order at most 2,500,000 notional" in log
        assert f"from {risk_file}" not in log
        await until(pilot, lambda: "RISK: built-in limits (risk.toml refused)" in str(app.topbar.render()))
        app.clear_notifications()
        await pilot.press("2")  # the top bar is drawn again (ETH): the marker stays
        await until(pilot, lambda: "ETH/USD" in str(app.topbar.render()))
        assert "RISK: built-in limits (risk.toml refused)" in str(app.topbar.render())
        await pilot.resize_terminal(80, 24)
        await until(pilot, lambda: app.tabbed)
        await pilot.press("1")
        await until(pilot, lambda: "RISK: built-in, file refused" in str(app.topbar.render()))
        app.demo = True  # the longest top bar an 80-column desk has, halts aside
        await pilot.press("1")
        await until(pilot, lambda: "DEMO" in str(app.topbar.render()))
        assert len(str(app.topbar.render())) <= 78, str(app.topbar.render())  # within 80 with its padding
        await app.shutdown_engine()
    # A good file: no marker, and the log names the file.
    risk_file.unlink()
    app = DeskApp(seed=1, live=False, settings_path=tmp_path / "settings.json", order_prefix="T")
    async with app.run_test(size=(160, 48)) as pilot:
        await until(pilot, lambda: f"RISK limits (from {risk_file}):" in log_text(app))
        assert "RISK" not in str(app.topbar.render())
        await app.shutdown_engine()


@pytest.mark.anyio
async def test_a_refusal_by_the_limits_shows_its_reason_on_the_row_in_events_and_is_counted(tmp_path: Path) -> None:
    app = make_app(tmp_path)
    async with app.run_test(size=(160, 48)) as pilot:
        app.send_order(Order(id="fat-1", symbol="BTC/USD", side="BUY", type="MARKET", quantity=100))
        await until(pilot, lambda: "fat-1" in app.blotter.keys and cell(app, "fat-1", "status") == "REJECTED")
        reason = app.engine.status("fat-1").reason
        assert reason.startswith("quantity 100 > max 50"), reason
        await until(pilot, lambda: cell(app, "fat-1", "why") == reason)
        assert f"REJECTED fat-1 by engine: {reason}" in log_text(app)
        await until(pilot, lambda: "risk refused 1 (quantity 1)" in str(app.status_bar.render()))
        await pilot.resize_terminal(80, 24)  # no room for the breakdown: the total stays
        await until(pilot, lambda: "risk refused 1" in str(app.status_bar.render()))
        await app.shutdown_engine()


@pytest.mark.anyio
async def test_the_ticket_checks_the_engines_limits_as_the_operator_types(tmp_path: Path) -> None:
    app = make_app(tmp_path)
    async with app.run_test(size=(160, 48)) as pilot:
        await send_ticket(pilot, ["1", "0", "0"])  # 100 BTC, over the 50 BTC limit
        summary = str(app.screen.query_one("#ticket-summary").render())
        assert "quantity 100 > max 50" in summary, summary
        await pilot.press("enter")
        await pilot.pause()
        assert isinstance(app.screen, TicketScreen) and app.engine.stats.submitted == 0
        await pilot.press("escape")
        await app.shutdown_engine()


@pytest.mark.anyio
async def test_the_palette_reaches_panels_and_the_orders_views(tmp_path: Path) -> None:
    app = make_app(tmp_path)
    async with app.run_test(size=(80, 24)) as pilot:
        for query, check in (("show panel fills", lambda: app.panel == "fills"),
                             ("orders only mine", lambda: app.mine_only)):
            await pilot.press("ctrl+p")
            await until(pilot, lambda: type(app.screen).__name__ == "CommandPalette")
            await pilot.press(*query)
            await pilot.pause(0.3)  # the palette searches in a worker
            await pilot.press("enter")
            await until(pilot, check)
        await app.shutdown_engine()


# -- one ticket or dialog at a time -------------------------------------------------------------


async def run_from_palette(pilot, query: str) -> None:
    """Open the palette over whatever is on top, find `query` and run it."""
    from textual.command import CommandList, CommandPalette

    app = pilot.app
    await pilot.press("ctrl+p")
    await until(pilot, lambda: isinstance(app.screen, CommandPalette))
    await pilot.press(*query)
    # The palette searches in a worker: wait for its list, then run the first hit.
    await until(pilot, lambda: app.screen.query_one(CommandList).option_count > 0)
    await pilot.press("enter")
    await until(pilot, lambda: not isinstance(app.screen, CommandPalette))
    await pilot.pause()


def screen_names(app: DeskApp) -> list[str]:
    return [type(screen).__name__ for screen in app.screen_stack]


@pytest.mark.anyio
async def test_the_palettes_other_side_inside_an_open_ticket_opens_no_second_ticket(tmp_path: Path) -> None:
    # The probe's case: "Place sell order" inside a buy ticket pushed the same ticket again;
    # Enter then sent the order and left a ticket up, and a second Enter reused the id.
    app = make_app(tmp_path)
    notices = record_notices(app)
    async with app.run_test(size=(160, 48)) as pilot:
        await pilot.press("b")
        await until(pilot, lambda: isinstance(app.screen, TicketScreen))
        await run_from_palette(pilot, "place sell order")
        assert screen_names(app) == ["Screen", "TicketScreen"]
        assert ("sell ticket not opened: a ticket is open (Enter sends it, Esc closes it, ctrl+f flips its side)"
                in notices), notices
        await pilot.press("enter")
        await until(pilot, lambda: "T-1" in app.engine.working() or "T-1" in app.blotter.keys)
        await until(pilot, lambda: screen_names(app) == ["Screen"])
        assert app.engine.status("T-1").side.value == "BUY"  # the ticket as it was, sent once
        assert not any("already in use" in n for n in notices), notices
        await app.shutdown_engine()


OPEN_A_DIALOG = {
    "AmendScreen": ["b", "enter", "a"],  # a resting limit buy, then amend it
    "OrderScreen": ["b", "enter", "enter"],
    "ConfirmScreen": ["b", "enter", "x"],
    "HelpScreen": ["question_mark"],
}


@pytest.mark.parametrize("dialog", list(OPEN_A_DIALOG))
@pytest.mark.anyio
async def test_the_palette_opens_no_ticket_or_dialog_over_an_open_dialog(tmp_path: Path, dialog: str) -> None:
    app = make_app(tmp_path)
    notices = record_notices(app)
    async with app.run_test(size=(160, 48)) as pilot:
        for key in OPEN_A_DIALOG[dialog]:
            await pilot.press(key)
            if key == "b":
                await until(pilot, lambda: isinstance(app.screen, TicketScreen))
            elif key == "enter" and "T-1" not in app.blotter.keys:
                await until(pilot, lambda: "T-1" in app.engine.working())
        await until(pilot, lambda: type(app.screen).__name__ == dialog)
        for command in ("place buy order", "place sell order", "order detail", "show keys",
                        "cancel all working orders", "fault drill on deep"):
            await run_from_palette(pilot, command)
            assert screen_names(app) == ["Screen", dialog], command
        assert sum("not opened:" in n for n in notices) == 6, notices
        await app.shutdown_engine()


# -- under a flow of orders the selected row stays in view, and rows stay in time order ----------


def rows_on_screen(app: DeskApp) -> list[str]:
    """The Orders rows the operator sees, top to bottom (each line as drawn)."""
    blotter = app.blotter
    lines = [blotter.render_line(y).text for y in range(1, blotter.scrollable_content_region.height)]
    return [line.split()[0] for line in lines if line.strip()]


def shown_id(order_id: str, width: int = 10) -> str:
    """An id as the narrow Orders column shows it: cut from the left."""
    return order_id if len(order_id) <= width else "…" + order_id[-(width - 1):]


async def demo_flow(pilot, first: int, count: int) -> list[str]:
    """`count` --demo orders, tracked and sent as the demo does; their ids, oldest first."""
    app: DeskApp = pilot.app
    ids = [f"demo-{first + i}" for i in range(count)]
    for i, order_id in enumerate(ids):
        order = Order(id=order_id, symbol="BTC/USD", side="BUY" if i % 2 else "SELL", type="MARKET", quantity=0.01)
        app.track_order(order, mine=False)
        await app.engine.submit(order)
    await until(pilot, lambda: all(oid in app.blotter.keys for oid in ids))
    await pilot.pause()
    return ids


@pytest.mark.anyio
async def test_under_a_flow_of_orders_the_selected_row_stays_in_view_and_rows_keep_time_order(
    tmp_path: Path,
) -> None:
    # Under --demo the selected order scrolled out of view, so c, a and Enter acted on a
    # row the operator could not see; and rows landed in the order their events were
    # drawn (a set's order), not the order they were sent.
    app = make_app(tmp_path)
    async with app.run_test(size=(80, 24)) as pilot:
        blotter = app.blotter
        rows = blotter.rows_shown
        # Nobody has selected anything: the newest rows show on top as they come.
        flow = await demo_flow(pilot, 0, rows + 5)
        assert blotter.selected_key() is None
        assert rows_on_screen(app) == [shown_id(oid) for oid in reversed(flow)][:rows]
        # The operator's order is selected when sent; newer orders push in above it...
        await send_ticket(pilot, ["enter"])  # a limit buy at the bid: it rests
        await until(pilot, lambda: "T-1" in app.engine.working())
        flow += await demo_flow(pilot, 100, 2)
        assert blotter.selected_key() == "T-1"
        assert rows_on_screen(app)[:3] == ["demo-101", "demo-100", "T-1"]
        # ...until they would push it out: from then on the view follows it.
        for start in (200, 300):
            flow += await demo_flow(pilot, start, 3 * rows)
            assert blotter.selected_key() == "T-1"
            assert rows_on_screen(app)[-1] == "T-1", rows_on_screen(app)
        # Every row in the order it was sent, newest on top.
        sent = [*flow[: rows + 5], "T-1", *flow[rows + 5:]]
        assert blotter.keys == list(reversed(sent))
        # What c cancels is the row in view.
        await pilot.press("c")
        await until(pilot, lambda: status_of(app, "T-1") is OrderStatus.CANCELED)
        # Down from nothing selected starts at the newest row (the top).
        blotter.clear()
        await demo_flow(pilot, 900, 3)
        await pilot.press("down")
        assert blotter.selected_key() == "demo-902"
        await app.shutdown_engine()


# -- small answers: nothing to cancel, which venue, a failed save, a reason said once -------------


@pytest.mark.anyio
async def test_cancel_all_with_nothing_working_says_so_instead_of_asking(tmp_path: Path) -> None:
    app = make_app(tmp_path)
    notices = record_notices(app)
    async with app.run_test(size=(160, 48)) as pilot:
        await pilot.press("x")
        await pilot.pause()
        assert not app.desk_covered and notices == ["cancel all: nothing is working"]
        await _resting_order(pilot)
        await pilot.press("x")
        await until(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        assert str(app.screen.query_one("#confirm-question").render()) == "Cancel the 1 working order?"
        await pilot.press("y")
        await until(pilot, lambda: open_orders(app) == [])
        await app.shutdown_engine()


@pytest.mark.anyio
async def test_venue_keys_with_the_orders_focused_act_on_the_venue_in_view_or_say_to_pick_one(
    tmp_path: Path,
) -> None:
    app = make_app(tmp_path)
    notices = record_notices(app)
    async with app.run_test(size=(160, 48)) as pilot:
        assert app.focused is app.blotter
        chosen = app.venues_panel.selected_key()  # the row the Venues panel shows selected
        await pilot.press("v")
        await until(pilot, lambda: not app.engine.router.is_enabled(chosen))
        assert f"{chosen} disabled: no new orders go there" in notices
        await pilot.press("d")
        await until(pilot, lambda: type(app.screen).__name__ == "DrillScreen")
        assert app.screen.venue == chosen
        await pilot.press("escape")
        # A small terminal showing another tab: which venue is selected is not in view.
        await pilot.resize_terminal(80, 24)
        await until(pilot, lambda: app.tabbed)
        app.show_panel("market")
        app.blotter.focus()
        await pilot.press("v")
        await until(pilot, lambda: app.panel == "venues")
        assert not app.engine.router.is_enabled(chosen)  # nothing toggled unseen
        assert "v: select a venue first (Venues is shown now: ↑/↓, then v)" in notices
        await pilot.pause()
        assert app.focused is app.venues_panel
        await pilot.press("v")  # now in view: it acts
        await until(pilot, lambda: app.engine.router.is_enabled(chosen))
        await app.shutdown_engine()


def test_a_latency_history_that_cannot_be_saved_at_quit_is_said_on_the_terminal(
    tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    from tui.cli import run_desk

    app = make_app(tmp_path)
    history = tmp_path / "latency.json"
    history.mkdir()  # where the file should go, a directory: the save fails
    app.engine.profiler.autosave_path = history

    async def operator(pilot) -> None:
        await pilot.press("q")

    assert run_desk(app, headless=True, size=(80, 24), auto_pilot=operator) == 0
    err = capsys.readouterr().err
    assert f"execdesk: latency history not saved to {history}: Is a directory" in err, err


@pytest.mark.anyio
async def test_a_breaker_forced_from_the_palette_says_its_reason_once(tmp_path: Path) -> None:
    app = make_app(tmp_path)
    async with app.run_test(size=(160, 48)) as pilot:
        await run_from_palette(pilot, "force breaker open on swift")
        await until(pilot, lambda: app.engine.router.breaker("swift").state.value == "OPEN")
        await until(pilot, lambda: "BREAKER swift" in log_text(app))
        log = " ".join(log_text(app).split())
        assert "BREAKER swift: CLOSED → OPEN (forced open by operator: from the desk's palette)" in log, log
        assert log.count("forced open by operator") == 1
        await app.shutdown_engine()
