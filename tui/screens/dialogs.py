"""Small modal dialogs: help, confirm, amend, fault drill.

Rule for every screen here: its own attributes never reuse a name Textual's
classes already use (`_bindings`, `_nodes`, `_task`, ...). Textual reads those
on every key: a list in `_bindings` makes the next key press crash the app.
"""

from __future__ import annotations

import re

from rich.text import Text
from textual import events, on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Grid, Vertical
from textual.keys import format_key
from textual.screen import ModalScreen
from textual.widgets import DataTable, Input, Label, Static

from engine import OrderSide

from ..ticket_model import AmendPlan, exact, plain, plan_amend


_KEY_NAMES = {
    "escape": "Esc", "enter": "Enter", "tab": "Tab", "space": "Space", "backspace": "Backspace",
    "delete": "Del", "insert": "Ins", "home": "Home", "end": "End", "pageup": "PgUp", "pagedown": "PgDn",
}
_MODIFIERS = {"ctrl": "Ctrl", "alt": "Alt", "shift": "Shift", "super": "Super", "meta": "Meta"}


def key_label(keys: str) -> str:
    """Keys as an operator reads them: "plus,equals_sign" is "+ / =", "ctrl+t" is "Ctrl+T",
    "escape" is "Esc". A binding's own `key_display` ("F2", "]") passes through."""
    if " " in keys:
        return keys  # already written for people
    return " / ".join(_one_key(key) for key in keys.split(",") if key)


def _one_key(key: str) -> str:
    if len(key) == 1:
        return key
    *modifiers, name = key.split("+")
    if re.fullmatch(r"f[0-9]{1,2}", name, re.IGNORECASE):
        name = name.upper()
    else:
        name = _KEY_NAMES.get(name) or format_key(name)
    if modifiers and len(name) == 1:
        name = name.upper()  # Ctrl+T, as printed on the key
    return "+".join([*(_MODIFIERS.get(m, m.title()) for m in modifiers), name])


class KeyTable(DataTable[str]):
    """The key list: its descriptions wrap within the width there is (at 80 columns too)."""

    KEY_WIDTH, ACTION_WIDTH, MIN_TEXT_WIDTH = 12, 14, 20

    def __init__(self, rows: list[tuple[str, str, str]], **kwargs) -> None:
        super().__init__(cursor_type="row", zebra_stripes=True, **kwargs)
        self.key_rows = [(key_label(key), action, tip) for key, action, tip in rows]
        self.shown_width = 0

    def on_resize(self, event: events.Resize) -> None:
        self.show_rows(event.size.width)

    def show_rows(self, width: int) -> None:
        """Lay the rows out for `width` columns: keys and actions as wide as the longest (up to
        a cap), the description in the rest, wrapped to as many lines as it takes."""
        if width == self.shown_width or width <= 0:
            return
        self.shown_width = width
        key_width = min(max((len(k) for k, _, _ in self.key_rows), default=3), self.KEY_WIDTH)
        action_width = min(max((len(a) for _, a, _ in self.key_rows), default=6), self.ACTION_WIDTH)
        # Each column pads a cell by one on both sides; the vertical scrollbar takes two.
        text_width = max(width - key_width - action_width - 3 * 2 - 2, self.MIN_TEXT_WIDTH)
        row = self.cursor_row
        self.clear(columns=True)
        self.add_column("Key", width=key_width)
        self.add_column("Action", width=action_width)
        self.add_column("What it does", width=text_width)
        for key, action, tip in self.key_rows:
            self.add_row(key, action, tip, height=None)
        self.move_cursor(row=row)


class HelpScreen(ModalScreen[None]):
    """Every key the desk knows, from the bindings themselves (never a stale list)."""

    DEFAULT_CSS = """
    HelpScreen #help {
        max-width: 100%;
    }
    """

    BINDINGS = [
        Binding("escape,question_mark,q", "dismiss", "Close", id="help.close", tooltip="Close help"),
    ]

    def __init__(self, rows: list[tuple[str, str, str]]) -> None:
        super().__init__()
        self.rows = rows  # (key, action, what it does)

    def compose(self) -> ComposeResult:
        with Vertical(id="help"):
            yield Static("[b]execdesk keys[/]   (Esc closes; Ctrl+P finds any action by name)", id="help-title")
            yield KeyTable(self.rows, id="help-table")

    def on_mount(self) -> None:
        self.query_one(KeyTable).focus()


class ConfirmScreen(ModalScreen[bool]):
    BINDINGS = [
        Binding("y,enter", "answer(True)", "Yes", id="confirm.yes", tooltip="Confirm"),
        Binding("n,escape", "answer(False)", "No", id="confirm.no", tooltip="Cancel"),
    ]

    def __init__(self, question: str) -> None:
        super().__init__()
        self.question = question

    def compose(self) -> ComposeResult:
        with Vertical(id="confirm"):
            yield Static(self.question, id="confirm-question")
            yield Static("[b]y[/] / Enter: yes    [b]n[/] / Esc: no", id="confirm-keys")

    def action_answer(self, yes: bool) -> None:
        self.dismiss(yes)


class AmendScreen(ModalScreen[tuple[float | None, float | None] | None]):
    """New quantity and/or price for a working order (None = unchanged); Esc gives None.

    The cursor starts in the first field shown (quantity), each field names its unit and
    shows the current value beside it, and the line above the keys says exactly what
    Enter sends. A change that looks like the two fields swapped, or a price far from
    the current one, goes only on Ctrl+S: a second Enter can be a bounce or a repeat.
    """

    DEFAULT_CSS = """
    AmendScreen #amend-grid {
        grid-size: 3;
        grid-columns: 22 16 1fr;
        grid-rows: 3;
        grid-gutter: 0 1;
        height: auto;
    }
    AmendScreen .amend-label, AmendScreen .amend-now {
        padding: 1 0 0 0;
    }
    AmendScreen .amend-now {
        color: $text-muted;
    }
    AmendScreen #amend-error {
        color: $error;
    }
    AmendScreen #amend-summary.-warning {
        color: $warning;
    }
    AmendScreen #amend-keys {
        color: $secondary;
    }
    """

    BINDINGS = [
        Binding("escape", "close", "Close", id="amend.close", tooltip="Close without amending"),
        Binding("enter", "send", "Amend", id="amend.send", tooltip="Send the amendment", priority=True),
        Binding("ctrl+s", "send(True)", "Amend anyway", id="amend.send_checked", priority=True,
                tooltip="Send an amendment the dialog asks you to check; Enter does not"),
    ]

    def __init__(self, order_id: str, quantity: float, price: float | None, *, symbol: str = "",
                 side: OrderSide | str | None = None) -> None:
        super().__init__()
        self.order_id, self.quantity, self.price = order_id, quantity, price
        self.symbol = symbol
        self.side = side.value if isinstance(side, OrderSide) else (side or "")

    def compose(self) -> ComposeResult:
        base, _, quote = self.symbol.partition("/")
        order = " ".join(p for p in (self.side, exact(self.quantity), self.symbol) if p)
        if self.price is not None:
            order += f" @ {exact(self.price)}"
        with Vertical(id="amend"):
            yield Static(f"[b]Amend {self.order_id}[/]  {order}", id="amend-title")
            yield Static("[dim]cancel/replace at the venue; a blank field keeps its value[/]")
            with Grid(id="amend-grid"):
                yield Label(f"New quantity{f' ({base})' if base else ''}", classes="amend-label")
                yield Input(plain(self.quantity), id="amend-quantity", select_on_focus=True)
                yield Static(f"now {exact(self.quantity)}", classes="amend-now", id="amend-now-quantity")
                yield Label(f"New limit price{f' ({quote})' if quote else ''}", classes="amend-label")
                yield Input("" if self.price is None else plain(self.price), id="amend-price",
                            select_on_focus=True, disabled=self.price is None)
                yield Static(f"now {'none' if self.price is None else exact(self.price)}", classes="amend-now",
                             id="amend-now-price")
            yield Static("", id="amend-error")
            yield Static("", id="amend-summary")
            yield Static("[b]Enter[/] amend   [b]Tab[/] next field   [b]Esc[/] close", id="amend-keys")

    def on_mount(self) -> None:
        self.query_one("#amend-quantity", Input).focus()
        self._show(self._plan())

    def _texts(self) -> tuple[str, str]:
        return self.query_one("#amend-quantity", Input).value, self.query_one("#amend-price", Input).value

    def _plan(self) -> AmendPlan:
        qty_text, price_text = self._texts()
        return plan_amend(qty_text, price_text, quantity=self.quantity, price=self.price, symbol=self.symbol)

    def _show(self, plan: AmendPlan) -> None:
        self.query_one("#amend-error", Static).update(Text("; ".join(plan.errors.values())))
        summary = self.query_one("#amend-summary", Static)
        if plan.errors:
            summary.update("")
        elif plan.warnings:
            summary.update(Text.assemble(
                ("Check: ", "bold"), "; ".join(plan.warnings) + ".\n",
                ("Ctrl+S sends ", "bold"), plan.summary, ("; Enter does not, Esc closes.", "bold"),
            ))
        else:
            summary.update(Text.assemble(("Sends: ", "bold"), plan.summary))
        summary.set_class(bool(plan.warnings), "-warning")

    @on(Input.Changed)
    def _edited(self) -> None:
        self._show(self._plan())

    def action_send(self, checked: bool = False) -> None:
        """Enter amends; an amendment with warnings only on Ctrl+S (`checked`)."""
        plan = self._plan()
        if not plan.ok or (plan.warnings and not checked):
            self._show(plan)
            self.app.bell()
            return
        self.dismiss((plan.quantity, plan.price))

    def action_close(self) -> None:
        self.dismiss(None)


class DrillScreen(ModalScreen[tuple[str, float] | None]):
    """Choose a fault drill for the selected venue: outage, latency spike or error burst."""

    BINDINGS = [
        Binding("o", "pick('outage')", "Outage", id="drill.outage", tooltip="Venue down for N seconds"),
        Binding("l", "pick('latency')", "Latency spike", id="drill.latency", tooltip="+250 ms for N seconds"),
        Binding("e", "pick('errors')", "Error burst", id="drill.errors", tooltip="60% errors for N seconds"),
        Binding("plus,equals_sign", "seconds(10)", "+10 s", id="drill.longer", tooltip="Longer drill"),
        Binding("minus", "seconds(-10)", "-10 s", id="drill.shorter", tooltip="Shorter drill"),
        Binding("escape", "close", "Close", id="drill.close", tooltip="No drill"),
    ]

    def __init__(self, venue: str, seconds: float = 20.0) -> None:
        super().__init__()
        self.venue = venue
        self.seconds = seconds

    def compose(self) -> ComposeResult:
        with Vertical(id="drill"):
            yield Static(f"[b]Fault drill on {self.venue}[/]")
            yield Static(id="drill-seconds")
            yield Static("[b]o[/] outage   [b]l[/] latency spike   [b]e[/] error burst   "
                         "[b]+/-[/] duration   [b]Esc[/] cancel")

    def on_mount(self) -> None:
        self._show()

    def _show(self) -> None:
        self.query_one("#drill-seconds", Static).update(f"Duration: [b]{self.seconds:g} s[/]")

    def action_seconds(self, delta: float) -> None:
        self.seconds = min(max(self.seconds + delta, 10.0), 600.0)
        self._show()

    def action_pick(self, kind: str) -> None:
        self.dismiss((kind, self.seconds))

    def action_close(self) -> None:
        self.dismiss(None)
