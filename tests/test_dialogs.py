"""The desk's small dialogs (help, amend) driven by keys, and a guard on Textual's own names."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from textual.app import App
from textual.screen import ModalScreen
from textual.widgets import Input

from tests.desk_support import make_app, until
from tui.screens.dialogs import AmendScreen, ConfirmScreen, DrillScreen, HelpScreen, key_label
from tui.screens.ticket import TicketScreen
from tui.ticket_model import plan_amend


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"




SCREENS: list[Callable[[], ModalScreen]] = [
    lambda: HelpScreen([("b", "Buy", "Open a buy ticket")]),
    lambda: ConfirmScreen("Quit?"),
    lambda: AmendScreen("T-1", 0.5, 49_100.0),
    lambda: DrillScreen("swift"),
    lambda: TicketScreen({}, ["BTC/USD"], ["swift"], "T-1"),
]


@pytest.mark.parametrize("make", SCREENS, ids=["help", "confirm", "amend", "drill", "ticket"])
def test_no_screen_reuses_a_name_textual_keeps_for_itself(make: Callable[[], ModalScreen]) -> None:
    # A screen that stores its own data in `_bindings` (Textual's key map) crashes on the next key.
    screen, plain = make(), ModalScreen()
    clobbered = {
        name: type(getattr(screen, name)).__name__
        for name, value in vars(plain).items()
        if type(getattr(screen, name)) is not type(value)
    }
    assert clobbered == {}, f"{type(screen).__name__} replaced Textual's attributes: {clobbered}"
    textual_names = set(dir(ModalScreen))
    own_private = {  # methods and properties of our own (Textual adds class attributes to each subclass)
        n for n, v in vars(type(screen)).items()
        if n.startswith("_") and not n.startswith("__") and (callable(v) or isinstance(v, property))
    }
    assert own_private & textual_names == set()


@pytest.mark.anyio
async def test_every_key_on_the_help_screen_leaves_the_desk_running(tmp_path: Path) -> None:
    app = make_app(tmp_path)
    async with app.run_test(size=(160, 48)) as pilot:
        await pilot.press("question_mark")
        await until(pilot, lambda: isinstance(app.screen, HelpScreen))
        # The keys the help screen, its table and Textual's screen define (not the desk's own keys:
        # tests/test_keys.py presses those everywhere).
        keys = sorted(
            key for key, active in app.screen.active_bindings.items()
            if active.node is not app
        )
        assert {"escape", "question_mark", "q", "down", "up", "tab"} <= set(keys), keys
        closers = {k for b in HelpScreen.BINDINGS for k in b.key.split(",")}
        for key in keys:
            if not isinstance(app.screen, HelpScreen):
                await pilot.press("question_mark")
                await until(pilot, lambda: isinstance(app.screen, HelpScreen))
            await pilot.press(key)
            await pilot.pause()
            assert app.is_running, f"the desk died on {key!r} in help"
            assert isinstance(app.screen, HelpScreen) is (key not in closers), key
        # ...and still answers the next key.
        if isinstance(app.screen, HelpScreen):
            await pilot.press("escape")
        await until(pilot, lambda: not isinstance(app.screen, HelpScreen))
        await pilot.press("question_mark")
        await until(pilot, lambda: isinstance(app.screen, HelpScreen))
        assert app.screen.query_one("#help-table").row_count == len(app.key_map())
        await app.shutdown_engine()


class Host(App[None]):
    """The smallest app that shows one dialog and keeps what it returned."""

    def __init__(self, screen: ModalScreen) -> None:
        super().__init__()
        self.dialog = screen
        self.results: list[object] = []

    def on_mount(self) -> None:
        self.push_screen(self.dialog, self.results.append)


def amend() -> AmendScreen:
    return AmendScreen("T-1", 0.5, 49_100.0, symbol="BTC/USD", side="BUY")


def text(screen: ModalScreen, selector: str) -> str:
    return str(screen.query_one(selector).render())


@pytest.mark.anyio
async def test_amend_starts_in_quantity_names_units_and_says_what_it_sends() -> None:
    app = Host(amend())
    async with app.run_test(size=(80, 24)) as pilot:
        dialog = app.dialog
        assert app.focused is dialog.query_one("#amend-quantity")
        labels = [str(label.render()) for label in dialog.query(".amend-label")]
        assert labels == ["New quantity (BTC)", "New limit price (USD)"]
        assert text(dialog, "#amend-now-quantity") == "now 0.5"
        assert text(dialog, "#amend-now-price") == "now 49,100"
        # The keys: 0.2 Tab 49000 is a quantity of 0.2 and a price of 49,000.
        await pilot.press(*"0.2")
        assert text(dialog, "#amend-summary") == "Sends: quantity 0.5 -> 0.2, price unchanged 49,100"
        await pilot.press("tab", *"49000")
        assert text(dialog, "#amend-summary") == "Sends: quantity 0.5 -> 0.2, price 49,100 -> 49,000"
        await pilot.press("enter")
        await pilot.pause()
        assert app.results == [(0.2, 49_000.0)]


@pytest.mark.anyio
async def test_amend_that_looks_like_a_swap_goes_only_on_ctrl_s() -> None:
    app = Host(amend())
    async with app.run_test(size=(80, 24)) as pilot:
        dialog = app.dialog
        await pilot.press(*"49100", "tab", *"0.2", "enter", "enter", "enter")
        await pilot.pause()
        assert app.results == [], "repeated Enters are no confirmation"
        summary = text(dialog, "#amend-summary")
        assert "the new quantity 49,100 is nearer the current price 49,100 than the current quantity 0.5" in summary
        assert "the new price 0.2 is nearer the current quantity 0.5 than the current price 49,100" in summary
        assert "Ctrl+S sends quantity 0.5 -> 49,100, price 49,100 -> 0.2; Enter does not, Esc closes." in summary
        # Ctrl+S sends what the dialog shows now.
        await pilot.press("backspace", "3")
        assert "Ctrl+S sends quantity 0.5 -> 49,100, price 49,100 -> 0.3" in text(dialog, "#amend-summary")
        await pilot.press("ctrl+s")
        await pilot.pause()
        assert app.results == [(49_100.0, 0.3)]


@pytest.mark.anyio
async def test_amend_to_a_far_price_goes_only_on_ctrl_s() -> None:
    app = Host(amend())
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("tab", *"60000", "enter", "enter")
        await pilot.pause()
        assert app.results == []
        assert "the new price 60,000 is 22% from the current 49,100 (more than 10%)" in text(
            app.dialog, "#amend-summary")
        await pilot.press("ctrl+s")
        await pilot.pause()
        assert app.results == [(None, 60_000.0)]


@pytest.mark.anyio
async def test_ctrl_s_sends_no_amend_with_an_error() -> None:
    app = Host(amend())
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press(*"abc", "ctrl+s")
        await pilot.pause()
        assert app.results == [] and app.screen is app.dialog
        assert text(app.dialog, "#amend-error") == "Quantity must be a number, got 'abc'"


@pytest.mark.parametrize(("quantity", "price", "error"), [
    ("abc", "", "Quantity must be a number, got 'abc'"),
    ("", "4g100", "Limit price must be a number, got '4g100'"),
    ("-1", "", "Quantity must be > 0, got -1"),
    ("0", "", "Quantity must be > 0, got 0"),
    ("inf", "", "Quantity must be a finite number, got inf"),
    ("nan", "", "Quantity must be a finite number, got nan"),
    ("", "0", "Limit price must be > 0, got 0"),
    ("0.5", "49100", "nothing changed: type a new quantity or price"),
    ("", "", "nothing changed: type a new quantity or price"),
    ("1,5", "", "Quantity: use . for decimals: got '1,5'"),
    ("", "49100,5", "Limit price: use . for decimals: got '49100,5'"),
    ("\u0661", "", "Quantity takes the digits 0-9 only, got '\u0661'"),
])
@pytest.mark.anyio
async def test_amend_refuses_what_the_ticket_refuses_in_our_words(quantity: str, price: str, error: str) -> None:
    app = Host(amend())
    async with app.run_test(size=(80, 24)) as pilot:
        dialog = app.dialog
        dialog.query_one("#amend-quantity", Input).value = quantity
        dialog.query_one("#amend-price", Input).value = price
        await pilot.press("enter")
        await pilot.pause()
        assert app.results == [] and app.screen is dialog
        assert text(dialog, "#amend-error") == error
        assert "convert" not in text(dialog, "#amend-error")
        await pilot.press("escape")
        await pilot.pause()
        assert app.results == [None]


def test_amend_plan_keeps_a_blank_field_and_every_digit() -> None:
    plan = plan_amend("", "49100.55", quantity=0.5, price=49_100.0)
    assert (plan.quantity, plan.price, plan.errors, plan.warnings) == (None, 49_100.55, {}, [])
    assert plan.summary == "quantity unchanged 0.5, price 49,100 -> 49,100.55"


def test_amend_reads_commas_as_thousands_groups_only() -> None:
    plan = plan_amend("", "49,100.5", quantity=0.5, price=49_100.0)
    assert (plan.quantity, plan.price, plan.errors) == (None, 49_100.5, {})


@pytest.mark.parametrize(("quantity", "price", "error"), [
    ("1e300", "", "Quantity must be at most 1,000,000,000,000,000 (MAX_QUANTITY), got 1e+300"),
    ("", "1e-300", "Limit price must be in [1e-12, 1,000,000,000,000] (MIN_PRICE, MAX_PRICE), got 1e-300"),
])
def test_amend_is_bounded_as_the_ticket_is(quantity: str, price: str, error: str) -> None:
    plan = plan_amend(quantity, price, quantity=0.5, price=49_100.0, symbol="BTC/USD")
    assert not plan.ok and list(plan.errors.values()) == [error]


@pytest.mark.parametrize(("keys", "shown"), [
    ("plus,equals_sign", "+ / ="),
    ("ctrl+t", "Ctrl+T"),
    ("question_mark", "?"),
    ("escape,question_mark,q", "Esc / ? / q"),
    ("enter", "Enter"),
    ("shift+tab", "Shift+Tab"),
    ("alt+m", "Alt+M"),
    ("f2,alt+m", "F2 / Alt+M"),
    ("F2", "F2"),  # a binding's key_display, already for people
    ("right_square_bracket", "]"),
    ("minus", "-"),
    ("ctrl+p", "Ctrl+P"),
])
def test_keys_are_shown_as_an_operator_reads_them(keys: str, shown: str) -> None:
    assert key_label(keys) == shown


def table_text(table) -> str:
    """What the key table draws, as one line of words (wrapped descriptions joined)."""
    lines = table.render_lines(table.size.region)
    return " ".join(" ".join(strip.text.split()) for strip in lines)


@pytest.mark.anyio
async def test_the_help_screen_is_readable_at_80x24(tmp_path: Path) -> None:
    app = make_app(tmp_path)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("question_mark")
        await until(pilot, lambda: isinstance(app.screen, HelpScreen))
        await pilot.pause()
        table = app.screen.query_one("#help-table")
        assert app.screen.query_one("#help").region.right <= 80
        drawn = table_text(table)
        rows = [table.get_row_at(i) for i in range(table.row_count)]
        # The rows on the first screenful, each whole: key, action and every word of what it does.
        on_screen = [row for row in rows if f"{row[0]} {row[1]}" in drawn]
        assert len(on_screen) >= 8, drawn
        for key, action, tip in on_screen:
            assert f"{key} {action} {tip}" in drawn, tip
        assert any("Kill switch: refuse new orders and cancel everything" in tip for *_, tip in on_screen)
        # No raw key names anywhere in the list.
        keys = [key for key, *_ in rows]
        assert "+ / =" in keys and "Ctrl+T" in keys and "Esc" in keys
        assert not [key for key in keys if "_" in key or key.islower() and len(key) > 1], keys
        await pilot.press("escape")
        await app.shutdown_engine()
