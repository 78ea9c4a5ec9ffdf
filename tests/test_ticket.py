"""The order ticket driven by keys: what opens selected, what follows the market, what it refuses."""

from __future__ import annotations

from pathlib import Path

import pytest
from textual.app import App
from textual.widgets import Input

from tests.desk_support import make_app, make_engine, until
from tui.screens.ticket import TicketScreen
from tui.ticket_model import FIELDS_BY_TYPE, build_order, describe

from engine import OrderStatus, OrderType, RiskPreview


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"




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


class Host(App[None]):
    """The smallest app that shows one ticket and keeps what it returned."""

    def __init__(self, ticket: TicketScreen) -> None:
        super().__init__()
        self.ticket = ticket
        self.results: list[object] = []

    def on_mount(self) -> None:
        self.push_screen(self.ticket, self.results.append)


SYMBOLS = ["BTC/USD", "ETH/USD", "SOL/USD"]
TOUCH = {
    ("BTC/USD", "BUY"): 49_100.5, ("BTC/USD", "SELL"): 49_101.5,
    ("ETH/USD", "BUY"): 3_004.0, ("ETH/USD", "SELL"): 3_004.25,
    ("SOL/USD", "BUY"): 150.12, ("SOL/USD", "SELL"): 150.14,
}


def eth_ticket(**kwargs) -> TicketScreen:
    values = {"symbol": "ETH/USD", "side": "BUY", "type": "LIMIT", "quantity": "2", "price": "3004"}
    return TicketScreen(values, SYMBOLS, ["swift"], "T-1", blink=False, **kwargs)


@pytest.mark.anyio
async def test_next_symbol_and_flip_side_move_the_price_to_the_new_touch() -> None:
    app = Host(eth_ticket(touch=lambda symbol, side: TOUCH[symbol, side]))
    async with app.run_test(size=(80, 24)) as pilot:
        ticket = app.ticket
        await pilot.press("ctrl+y")
        assert (ticket.values["symbol"], value(ticket, "price")) == ("SOL/USD", "150.12")
        await pilot.press("ctrl+f")
        assert (ticket.values["side"], value(ticket, "price")) == ("SELL", "150.14")
        await pilot.press("tab", "1", "5", "1")  # the new price is selected: typing replaces it
        assert value(ticket, "price") == "151"
        await pilot.press("ctrl+y")  # SOL -> BTC
        assert value(ticket, "price") == "49101.5"
        await pilot.press("enter")
        await pilot.pause()
        [(order, venue)] = app.results
        assert (order.symbol, order.side.value, order.price, order.quantity) == ("BTC/USD", "SELL", 49_101.5, 2.0)


@pytest.mark.anyio
async def test_without_a_touch_a_new_symbol_or_side_clears_the_price_and_cannot_be_sent() -> None:
    for key in ("ctrl+y", "ctrl+f"):
        app = Host(eth_ticket())
        async with app.run_test(size=(80, 24)) as pilot:
            ticket = app.ticket
            await pilot.press(key)
            assert value(ticket, "price") == "", key
            assert str(ticket.query_one("#error-price").render()).startswith("Limit price is required")
            await pilot.press("enter")
            await pilot.pause()
            assert app.results == [] and app.screen is ticket


@pytest.mark.anyio
async def test_no_touch_known_clears_the_price_and_no_limit_stays_no_limit() -> None:
    app = Host(eth_ticket(touch=lambda symbol, side: None))
    async with app.run_test(size=(80, 24)) as pilot:
        ticket = app.ticket
        await pilot.press("ctrl+y")
        assert value(ticket, "price") == ""
    # A SMART order without a limit price keeps none when the symbol or side changes.
    values = {"symbol": "ETH/USD", "side": "BUY", "type": "SMART", "quantity": "2", "price": ""}
    app2 = Host(TicketScreen(values, SYMBOLS, ["swift"], "T-2", blink=False,
                             touch=lambda symbol, side: TOUCH[symbol, side]))
    async with app2.run_test(size=(80, 24)) as pilot:
        await pilot.press("ctrl+y", "ctrl+f")
        assert value(app2.ticket, "price") == ""
        assert app2.ticket.result is not None and app2.ticket.result.ok
        assert app2.ticket.result.order.price is None


@pytest.mark.anyio
async def test_the_desk_never_sends_one_symbols_price_on_another(tmp_path: Path) -> None:
    app = make_app(tmp_path)
    async with app.run_test(size=(160, 48)) as pilot:
        await pilot.press("b")
        await until(pilot, lambda: isinstance(app.screen, TicketScreen))
        ticket = app.screen
        before = ticket.values["symbol"]
        await pilot.press("ctrl+y")
        symbol = ticket.values["symbol"]
        assert symbol != before
        book = app.engine.smart.merged_book(symbol, depth=1)
        mid = (book.best_bid + book.best_ask) / 2
        price = value(ticket, "price")
        # Cleared (the desk gives no touch) or at the new symbol's market: never the old one's.
        assert price == "" or abs(float(price) / mid - 1) < 0.01, (symbol, price, mid)
        await pilot.press("escape")
        await app.shutdown_engine()


ODD_VALUES = [
    {"type": "BOGUS"}, {"tif": "XYZ"}, {"profile": "flat"}, {"urgency": None}, {"quantity": 5},
    {"quantity": None}, {"side": "HOLD"}, {"venue": 3}, {"symbol": ["BTC/USD"]}, {"price": float("nan")},
    {"display_variance": True}, {"slices": {"n": 1}}, {"profile": "flat", "urgency": 7, "tif": 1.5},
]


@pytest.mark.anyio
@pytest.mark.parametrize("odd", ODD_VALUES, ids=[repr(v) for v in ODD_VALUES])
async def test_a_ticket_opens_on_any_values_each_field_falling_back_on_its_own(odd: dict) -> None:
    values = {"symbol": "ETH/USD", "side": "SELL", "type": "LIMIT", "quantity": "2", "price": "3004", **odd}
    app = Host(TicketScreen(values, SYMBOLS, ["swift"], "T-1", blink=False))
    async with app.run_test(size=(80, 24)) as pilot:
        ticket = app.ticket
        defaults = {"type": "LIMIT", "tif": "GTC", "profile": "u_shape", "urgency": "normal", "quantity": "0.1",
                    "side": "BUY", "venue": "SMART", "symbol": "BTC/USD", "price": "", "display_variance": "0",
                    "slices": "10"}
        for name, odd_value in odd.items():
            expected = "5" if odd_value == 5 and name == "quantity" else defaults[name]
            assert ticket.values[name] == expected, name
        # What was good in the same values is kept.
        kept = {k: v for k, v in values.items() if k not in odd}
        assert {k: ticket.values[k] for k in kept} == kept
        # Every type's fields can be shown with these values.
        for _ in range(len(OrderType)):
            await pilot.press("ctrl+t")
        assert app.screen is ticket and ticket.values["type"] == "LIMIT"


@pytest.mark.anyio
async def test_a_reused_ticket_takes_odd_values_too() -> None:
    app = App()
    async with app.run_test(size=(80, 24)) as pilot:
        ticket = eth_ticket()
        app.install_screen(ticket, name="ticket")  # as the desk does, to reuse it
        await app.push_screen("ticket")
        await pilot.press("escape")
        await pilot.pause()
        ticket.prepare({"type": "BOGUS", "tif": None, "quantity": 5, "urgency": []}, "T-2")
        await app.push_screen("ticket")
        await pilot.pause()
        assert (ticket.values["type"], ticket.values["tif"], value(ticket, "quantity")) == ("LIMIT", "GTC", "5")
        assert app.screen is ticket


TYPE_BINDINGS = [b for b in TicketScreen.BINDINGS if b.action.startswith("order_type(")]


@pytest.mark.anyio
@pytest.mark.parametrize("binding", TYPE_BINDINGS, ids=[b.id for b in TYPE_BINDINGS])
async def test_each_order_type_has_its_own_keys_that_never_type_into_a_field(binding) -> None:
    keys = binding.key.split(",")
    assert len(keys) == 2 and keys[0].startswith("f") and keys[1].startswith("alt+"), keys
    order_type = binding.action.removeprefix("order_type('").removesuffix("')")
    for key in keys:
        app = Host(eth_ticket())
        async with app.run_test(size=(80, 24)) as pilot:
            ticket = app.ticket
            await pilot.press(key)
            assert ticket.values["type"] == order_type, key
            assert value(ticket, "quantity") == "2", f"{key} typed into the quantity"
            title = str(ticket.query_one("#ticket-title").render())
            assert order_type in title
            shown = {n for n in FIELDS_BY_TYPE[OrderType(order_type)]}
            visible = {w.id.removeprefix("row-") for w in ticket.query(".tk-row") if w.display}
            assert visible == shown
    # The ticket's key line shows the key.
    async with Host(eth_ticket()).run_test(size=(80, 24)) as pilot:
        line = str(pilot.app.ticket.query_one("#ticket-types").render())
        assert f"{keys[0].upper()} {order_type}" in line, line


@pytest.mark.anyio
async def test_field_help_shows_under_its_field_and_every_type_fits_80x24() -> None:
    app = Host(eth_ticket())
    async with app.run_test(size=(80, 24)) as pilot:
        ticket = app.ticket
        for order_type in OrderType:
            ticket.action_order_type(order_type.value)
            await pilot.pause()
            for name in ("display_variance", "max_participation", "profile", "urgency"):
                help_line = ticket.query_one(f"#help-{name}")
                assert help_line.display is (name in FIELDS_BY_TYPE[order_type]), (order_type, name)
                if help_line.display:
                    # The line under the field, whole.
                    assert help_line.region.y == ticket.query_one(f"#field-{name}").region.y + 1, name
                    assert help_line.region.width >= len(str(help_line.render())), name
            summary = ticket.query_one("#ticket-summary")
            assert summary.region.bottom <= 23, f"{order_type}: the summary is cut at 80x24"
        ticket.action_order_type("SMART")
        await pilot.pause()
        assert str(ticket.query_one("#help-urgency").render()) == (
            "low: rest at the touch; normal: near mid; high: cross")


def text(screen: TicketScreen, selector: str) -> str:
    return str(screen.query_one(selector).render())


def btc_ticket(quantity: str, price: str = "49995", **kwargs) -> TicketScreen:
    values = {"symbol": "BTC/USD", "side": "BUY", "type": "LIMIT", "quantity": quantity, "price": price}
    return TicketScreen(values, SYMBOLS, ["swift"], "T-1", blink=False, **kwargs)


@pytest.mark.anyio
async def test_the_ticket_shows_the_notional_and_the_nearest_limit_as_the_operator_types() -> None:
    engine = make_engine()
    app = Host(btc_ticket("0.1", risk=engine.check_risk))
    async with app.run_test(size=(80, 24)) as pilot:
        ticket = app.ticket
        assert text(ticket, "#ticket-risk") == "Notional 4,999.50 USD · quantity 0.1 is 0% of max 50 (BTC/USD)"
        await pilot.press("2")  # replaces the selected quantity
        assert text(ticket, "#ticket-risk") == "Notional 99,990.00 USD · quantity 2 is 4% of max 50 (BTC/USD)"
        assert text(ticket, "#ticket-summary").startswith("Ready: BUY 2 BTC/USD LIMIT @ 49995")
        await pilot.press("enter")
        await pilot.pause()
        [(order, _)] = app.results
        assert order.quantity == 2


@pytest.mark.anyio
async def test_the_ticket_refuses_what_the_engines_limits_refuse_with_the_reason() -> None:
    engine = make_engine()
    for quantity, price, reason, notional in [
        ("60", "49995", "quantity 60 > max 50 (BTC/USD)", "2,999,700.00"),
        ("1", "60000", "price 60,000 is 20.0% from the mid 49,999.5: outside the 5% band", "60,000.00"),
    ]:
        app = Host(btc_ticket(quantity, price, risk=engine.check_risk))
        async with app.run_test(size=(80, 24)) as pilot:
            ticket = app.ticket
            assert text(ticket, "#ticket-summary") == f"Refused by the risk limits: {reason}"
            assert text(ticket, "#ticket-risk") == f"Notional {notional} USD"
            await pilot.press("enter", "enter")
            await pilot.pause()
            assert app.results == [] and app.screen is ticket
        assert engine.stats.submitted == 0


@pytest.mark.anyio
async def test_a_large_order_goes_only_on_its_own_key_never_on_repeated_enters() -> None:
    engine = make_engine()
    app = Host(btc_ticket("30", risk=engine.check_risk))  # 60% of the 50 BTC limit; confirm above 50%
    async with app.run_test(size=(80, 24)) as pilot:
        ticket = app.ticket
        assert text(ticket, "#ticket-risk").endswith("quantity 30 is 60% of max 50 (BTC/USD)")
        assert text(ticket, "#ticket-summary") == (
            "Large order: Ctrl+S sends BUY 30 BTC/USD LIMIT @ 49995 → smart routing  (Enter does not)")
        # A bounced or auto-repeated Enter (the probe's: 150 ms apart) is no confirmation.
        await pilot.press(*["enter"] * 5)
        await pilot.pause()
        assert app.results == [] and app.screen is ticket
        await pilot.press("3", "1")  # what Ctrl+S sends is the order shown, as it stands now
        assert text(ticket, "#ticket-summary").startswith("Large order: Ctrl+S sends BUY 31 BTC/USD")
        await pilot.press("ctrl+s")
        await pilot.pause()
        [(order, _)] = app.results
        assert order.quantity == 31


@pytest.mark.anyio
async def test_ctrl_s_sends_nothing_the_ticket_refuses() -> None:
    engine = make_engine()
    app = Host(btc_ticket("60", risk=engine.check_risk))  # over the 50 BTC limit
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("ctrl+s")
        app.ticket.query_one("#field-quantity", Input).value = "abc"
        await pilot.pause()
        await pilot.press("ctrl+s")
        await pilot.pause()
        assert app.results == [] and app.screen is app.ticket


@pytest.mark.anyio
async def test_the_risk_preview_follows_the_market_while_the_ticket_is_open() -> None:
    verdicts = [RiskPreview(None, 100.0, 0.1, "notional", False, "first"),
                RiskPreview("price 1 is 20% from the mid: outside the 5% band", 100.0, 4.0, "price_band")]
    app = Host(btc_ticket("1", risk=lambda order: verdicts[0]))
    async with app.run_test(size=(80, 24)) as pilot:
        ticket = app.ticket
        assert text(ticket, "#ticket-summary").startswith("Ready:")
        verdicts.pop(0)  # the market moved
        ticket.refresh_header()  # what the ticket's timer does every QUOTE_S
        assert text(ticket, "#ticket-summary") == (
            "Refused by the risk limits: price 1 is 20% from the mid: outside the 5% band")
        await pilot.press("enter")
        await pilot.pause()
        assert app.results == []


@pytest.mark.anyio
async def test_without_a_risk_check_the_ticket_shows_no_notional_line() -> None:
    app = Host(btc_ticket("30"))
    async with app.run_test(size=(80, 24)) as pilot:
        assert not app.ticket.query_one("#ticket-risk").display
        await pilot.press("enter")
        await pilot.pause()
        assert len(app.results) == 1


@pytest.mark.anyio
@pytest.mark.parametrize(("name", "typed", "error"), [
    ("quantity", "1e300", "Quantity must be at most 1,000,000,000,000,000 (MAX_QUANTITY), got 1e+300"),
    ("price", "1e-300", "Limit price must be in [1e-12, 1,000,000,000,000] (MIN_PRICE, MAX_PRICE), got 1e-300"),
    ("quantity", "[b]2[/b]", "Quantity must be a number, got '[b]2[/b]'"),
])
async def test_the_ticket_names_the_bound_an_absurd_number_breaks(name: str, typed: str, error: str) -> None:
    app = Host(btc_ticket("1"))
    async with app.run_test(size=(80, 24)) as pilot:
        ticket = app.ticket
        ticket.query_one(f"#field-{name}", Input).value = typed
        await pilot.pause()
        assert text(ticket, f"#error-{name}") == error  # as typed: never read as markup
        await pilot.press("enter")
        await pilot.pause()
        assert app.results == []


@pytest.mark.anyio
async def test_a_market_orders_notional_is_said_once() -> None:
    engine = make_engine()
    values = {"symbol": "BTC/USD", "side": "BUY", "type": "MARKET", "quantity": "0.1"}
    app = Host(TicketScreen(values, SYMBOLS, ["swift"], "T-1", blink=False, risk=engine.check_risk))
    async with app.run_test(size=(80, 24)):
        preview = engine.check_risk(app.ticket.result.order)
        assert preview.limit == "notional"
        assert text(app.ticket, "#ticket-risk") == (
            f"Notional {preview.notional:,.2f} USD · 0% of max 2,500,000 USD (BTC/USD)")


@pytest.mark.anyio
async def test_a_decimal_comma_is_refused_not_read_as_thousands() -> None:
    app = Host(btc_ticket("0.1"))
    async with app.run_test(size=(80, 24)) as pilot:
        ticket = app.ticket
        await pilot.press("1", "comma", "5")  # typed over the selected quantity
        assert value(ticket, "quantity") == "1,5"
        assert text(ticket, "#error-quantity") == "Quantity: use . for decimals: got '1,5'"
        await pilot.press("enter", "enter")
        await pilot.pause()
        assert app.results == [] and app.screen is ticket
        # Commas that group thousands are what an operator means by them.
        ticket.query_one("#field-quantity", Input).value = "1,000"
        ticket.query_one("#field-price", Input).value = "12,345.5"
        await pilot.pause()
        await pilot.press("enter")
        await pilot.pause()
        [(order, _)] = app.results
        assert (order.quantity, order.price) == (1000.0, 12_345.5)


@pytest.mark.parametrize(("typed", "error"), [
    ("1,5", "Quantity: use . for decimals: got '1,5'"),
    ("0,25", "Quantity: use . for decimals: got '0,25'"),
    ("1,0000", "Quantity: use . for decimals: got '1,0000'"),
    ("1,5abc", "Quantity must be a number, got '1,5abc'"),
    ("\u0661\u0662", "Quantity takes the digits 0-9 only, got '\u0661\u0662'"),  # Arabic-Indic 12
    ("\uff11\uff12", "Quantity takes the digits 0-9 only, got '\uff11\uff12'"),  # full-width 12
    ("1_5", "Quantity must be a number, got '1_5'"),
    ("1 000", "Quantity must be a number, got '1 000'"),
])
def test_the_ticket_reads_only_plain_ascii_numbers(typed: str, error: str) -> None:
    values = {"symbol": "BTC/USD", "side": "BUY", "type": "LIMIT", "quantity": typed, "price": "49995"}
    result = build_order(values, "T-1")
    assert result.order is None and result.errors == {"quantity": error}


@pytest.mark.parametrize(("typed", "quantity"), [
    ("1,000", 1000.0), ("12,345.5", 12_345.5), ("1,000,000", 1e6), (" 2.5 ", 2.5), (".5", 0.5), ("1e3", 1000.0),
])
def test_the_ticket_reads_thousands_groups_and_plain_forms(typed: str, quantity: float) -> None:
    values = {"symbol": "BTC/USD", "side": "BUY", "type": "LIMIT", "quantity": typed, "price": "49995"}
    result = build_order(values, "T-1")
    assert result.errors == {} and result.order.quantity == quantity


SWITCHES = [pytest.param(k, id=k) for k in ("f5", "alt+t", "ctrl+t")]


@pytest.mark.anyio
@pytest.mark.parametrize("switch", SWITCHES)
async def test_typing_after_a_change_of_type_replaces_the_field(switch: str) -> None:
    app = Host(eth_ticket(touch=lambda symbol, side: TOUCH[symbol, side]))
    async with app.run_test(size=(80, 24)) as pilot:
        ticket = app.ticket
        await pilot.press("2")
        await pilot.press(switch)  # to TWAP (ctrl+t: to ICEBERG)
        await pilot.press("3")
        assert value(ticket, "quantity") == "3", "the type's key left the quantity unselected"


@pytest.mark.anyio
async def test_a_field_the_new_type_hides_gives_the_focus_to_the_quantity() -> None:
    app = Host(eth_ticket())
    async with app.run_test(size=(80, 24)) as pilot:
        ticket = app.ticket
        ticket.query_one("#field-tif").focus()
        await pilot.press("f5")  # TWAP has no time in force
        await pilot.press("7")
        assert app.focused is ticket.query_one("#field-quantity")
        assert value(ticket, "quantity") == "7"


@pytest.mark.anyio
@pytest.mark.parametrize("algo", ["TWAP", "VWAP", "SMART"])
async def test_an_optional_limit_is_never_one_the_operator_did_not_type(algo: str) -> None:
    app = Host(eth_ticket(touch=lambda symbol, side: TOUCH[symbol, side]))
    async with app.run_test(size=(80, 24)) as pilot:
        ticket = app.ticket
        assert value(ticket, "price") == "3004"  # the desk's touch, not typed
        ticket.action_order_type(algo)
        await pilot.pause()
        assert value(ticket, "price") == ""
        assert ticket.query_one("#field-price", Input).placeholder == "blank: no limit"
        assert ticket.result.order.price is None
        assert f"BUY 2 ETH/USD {algo} no limit" in text(ticket, "#ticket-summary")
        ticket.action_order_type("LIMIT")  # a type that needs a price starts at the touch again
        await pilot.pause()
        assert value(ticket, "price") == "3004"
        # A price the operator typed is kept through the change.
        await pilot.press("tab", *"2990")
        ticket.action_order_type(algo)
        await pilot.pause()
        assert value(ticket, "price") == "2990"
        assert f"BUY 2 ETH/USD {algo} @ 2990" in text(ticket, "#ticket-summary")
        await pilot.press("enter")
        await pilot.pause()
        [(order, _)] = app.results
        assert (order.type.value, order.price) == (algo, 2990.0)


@pytest.mark.anyio
async def test_an_algorithm_ticket_opens_without_the_desks_price() -> None:
    values = {"symbol": "ETH/USD", "side": "BUY", "type": "VWAP", "quantity": "2", "price": "3004"}
    app = Host(TicketScreen(values, SYMBOLS, ["swift"], "T-1", blink=False,
                            touch=lambda symbol, side: TOUCH[symbol, side]))
    async with app.run_test(size=(80, 24)) as pilot:
        ticket = app.ticket
        assert value(ticket, "price") == "" and ticket.result.order.price is None
        await pilot.press("tab", *"3001", "ctrl+y")  # a typed limit does not follow to another symbol
        assert (ticket.values["symbol"], value(ticket, "price")) == ("SOL/USD", "")


def test_the_summary_shows_every_digit_of_what_enter_sends() -> None:
    values = {"symbol": "BTC/USD", "side": "SELL", "type": "LIMIT", "quantity": "1234567", "price": "49100.55"}
    result = build_order(values, "T-1")
    assert describe(result.order, None) == "SELL 1234567 BTC/USD LIMIT @ 49100.55 → smart routing"


# -- what a venue refuses for certain, refused as the operator types ---------------------------

VENUE_REFUSES = [
    # (quantity, price, the field that says it, the ticket's words)
    ("0.00015", "50000", "quantity", "quantity 0.00015 is not a multiple of the lot 0.0001 for BTC/USD"),
    ("0.1", "50000.001", "price", "price 50000.001 is not a multiple of the tick 0.01 for BTC/USD"),
    ("2000", "50000", "quantity", "quantity 2000 over the maximum 1,000 of BTC/USD"),
    ("0.0001", "1", "notional", "notional 0.00 (0.0001 at 1) under the minimum 1 of BTC/USD"),
]


@pytest.mark.parametrize(("quantity", "price", "name", "words"), VENUE_REFUSES)
def test_the_ticket_refuses_what_the_venue_refuses_in_the_venues_words(
        quantity: str, price: str, name: str, words: str) -> None:
    venue = make_engine().venues["swift"]
    values = {"symbol": "BTC/USD", "side": "BUY", "type": "LIMIT", "quantity": quantity, "price": price}
    result = build_order(values, "T-1", instrument=venue.instruments()["BTC/USD"])
    assert result.order is None and result.errors == {name: words}
    answer = venue.submit(build_order(values, "T-1").order)  # the same order, sent
    assert (answer.status, answer.reason) == (OrderStatus.REJECTED, words)


def test_a_size_under_the_minimum_is_written_as_typed() -> None:
    venue = make_engine().venues["swift"]
    values = {"symbol": "BTC/USD", "side": "BUY", "type": "LIMIT", "quantity": "0.00001", "price": "50000"}
    result = build_order(values, "T-1", instrument=venue.instruments()["BTC/USD"])
    assert result.errors == {"quantity": "quantity 0.00001 is under the minimum 0.0001 for BTC/USD"}
    answer = venue.submit(build_order(values, "T-1").order)
    assert answer.status is OrderStatus.REJECTED and answer.reason.endswith("is under the minimum 0.0001 for BTC/USD")


def test_what_the_venue_takes_the_ticket_takes() -> None:
    venue = make_engine().venues["swift"]
    for quantity, price in [("0.1", "50000"), ("0.0001", "50000"), ("1000", "5000.01"), ("0.02", "50")]:
        values = {"symbol": "BTC/USD", "side": "BUY", "type": "LIMIT", "quantity": quantity, "price": price}
        result = build_order(values, f"T-{quantity}", instrument=venue.instruments()["BTC/USD"])
        assert result.errors == {}, (quantity, price)
        assert venue.submit(result.order).status is not OrderStatus.REJECTED, (quantity, price)


@pytest.mark.anyio
async def test_a_twap_whose_slices_are_under_the_minimum_is_refused_as_the_engine_refuses_it(
        tmp_path: Path) -> None:
    values = {"symbol": "BTC/USD", "side": "BUY", "type": "TWAP", "quantity": "0.0005", "price": "",
              "duration_s": "60", "slices": "10"}
    words = ("TWAP slice 0.00005 (0.0005 in 10 slices) is under the minimum quantity 0.0001 of BTC/USD: "
             "use at most 5 slices, or a larger quantity")
    app = make_app(tmp_path)
    async with app.run_test(size=(80, 24)) as pilot:
        engine = app.engine
        result = build_order(values, "T-1", instrument=engine.smart.instrument("BTC/USD"))
        assert result.errors == {"slices": words}
        oid = await engine.submit(build_order(values, "T-1").order)
        await until(pilot, lambda: engine.status(oid).status.is_final)
        answer = engine.status(oid)
        assert answer.status is OrderStatus.REJECTED and words in answer.reason
        await app.shutdown_engine()


def btc_instrument(symbol: str):
    return make_engine().smart.instrument(symbol) if symbol == "BTC/USD" else None


@pytest.mark.anyio
async def test_the_ticket_says_a_venue_would_refuse_before_enter_is_pressed() -> None:
    app = Host(btc_ticket("0.1", instrument=btc_instrument))
    async with app.run_test(size=(80, 24)) as pilot:
        ticket = app.ticket
        assert text(ticket, "#ticket-summary").startswith("Ready:")
        assert ticket.query_one("#field-quantity", Input).placeholder == "a multiple of 0.0001"
        assert ticket.query_one("#field-price", Input).placeholder == "> 0, a multiple of the tick 0.01"
        await pilot.press(*"0.00001")
        assert text(ticket, "#error-quantity") == "quantity 0.00001 is under the minimum 0.0001 for BTC/USD"
        assert text(ticket, "#ticket-summary") == "Fix the fields marked above to send."
        await pilot.press("enter", "ctrl+s")
        await pilot.pause()
        assert app.results == [] and app.screen is ticket


@pytest.mark.anyio
async def test_an_iceberg_off_the_tick_or_under_the_minimum_notional_is_not_ready() -> None:
    values = {"symbol": "BTC/USD", "side": "BUY", "type": "ICEBERG", "quantity": "0.1", "price": "0.00001",
              "display_size": "0.05"}
    app = Host(TicketScreen(values, SYMBOLS, ["swift"], "T-1", blink=False, instrument=btc_instrument))
    async with app.run_test(size=(80, 24)) as pilot:
        ticket = app.ticket
        assert text(ticket, "#error-price") == "price 0.00001 is not a multiple of the tick 0.01 for BTC/USD"
        ticket.query_one("#field-price", Input).value = "0.01"
        await pilot.pause()
        assert text(ticket, "#ticket-summary") == (
            "each child shows the display size: notional 0.00 (0.05 at 0.01) under the minimum 1 of BTC/USD")
        await pilot.press("enter", "ctrl+s")
        await pilot.pause()
        assert app.results == []


@pytest.mark.anyio
async def test_a_market_orders_notional_filter_is_judged_at_the_far_touch() -> None:
    values = {"symbol": "BTC/USD", "side": "BUY", "type": "MARKET", "quantity": "500"}
    app = Host(TicketScreen(values, SYMBOLS, ["swift"], "T-1", blink=False, instrument=btc_instrument,
                            touch=lambda symbol, side: TOUCH[symbol, side]))
    async with app.run_test(size=(80, 24)) as pilot:
        ticket = app.ticket
        assert text(ticket, "#ticket-summary") == (
            "notional 24,550,750.00 (500 at 49101.5) over the maximum 10,000,000 of BTC/USD "
            "(a market order is judged at the touch)")  # a buy trades at the ask: 49,101.5
        await pilot.press(*"100")
        assert text(ticket, "#ticket-summary").startswith("Ready: BUY 100 BTC/USD MARKET")


@pytest.mark.anyio
async def test_at_80x24_every_error_shows_its_value_and_the_summary_stays_in_view(tmp_path: Path) -> None:
    app = make_app(tmp_path)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("b")
        await until(pilot, lambda: isinstance(app.screen, TicketScreen))
        await pilot.press("f6")  # VWAP: the tallest ticket
        ticket = app.screen
        typed = {"quantity": "1,5000", "price": "12abcdefghijklmnop", "duration_s": "1e120.1abcdefghijklmn",
                 "max_participation": "0.5x"}
        for name, text_typed in typed.items():
            ticket.query_one(f"#field-{name}", Input).value = text_typed
        await app.engine.halt("operator kill switch")  # and the alert line the ticket then shows
        ticket.refresh_header()
        await pilot.pause()
        box = ticket.query_one("#ticket").content_region
        assert "HALTED" in text(ticket, "#ticket-alert")
        for name, text_typed in typed.items():
            error = ticket.query_one(f"#error-{name}")
            assert repr(text_typed) in text(ticket, f"#error-{name}"), name
            assert box.contains_region(error.region), f"the {name} error is cut at 80x24"
        summary = ticket.query_one("#ticket-summary")
        assert text(ticket, "#ticket-summary") == "Fix the fields marked above to send."
        assert box.contains_region(summary.region), "the summary is cut at 80x24"
        # Each on a line of its own under its field, as wide as the ticket.
        assert text(ticket, "#error-quantity") == "Quantity: use . for decimals: got '1,5000'"
        assert [ticket.query_one(f"#error-{n}").region.height for n in typed] == [1, 1, 1, 1]
        assert ticket.query_one("#error-quantity").region.y == ticket.query_one("#field-quantity").region.y + 1
        await pilot.press("escape")
        await app.shutdown_engine()
