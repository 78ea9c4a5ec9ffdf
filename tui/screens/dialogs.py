"""Small modal dialogs: help, confirm, amend, fault drill.

Rule for every screen here: its own attributes never reuse a name Textual's
classes already use (`_bindings`, `_nodes`, `_task`, ...). Textual reads those
on every key: a list in `_bindings` makes the next key press crash the app.
"""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import DataTable, Input, Static


class HelpScreen(ModalScreen[None]):
    """Every key the desk knows, from the bindings themselves (never a stale list)."""

    BINDINGS = [
        Binding("escape,question_mark,q", "dismiss", "Close", id="help.close", tooltip="Close help"),
    ]

    def __init__(self, rows: list[tuple[str, str, str]]) -> None:
        super().__init__()
        self.rows = rows  # (key, action, what it does)

    def compose(self) -> ComposeResult:
        with Vertical(id="help"):
            yield Static("[b]execdesk keys[/]   (Esc closes; Ctrl+P finds any action by name)", id="help-title")
            table: DataTable[str] = DataTable(id="help-table", cursor_type="row", zebra_stripes=True)
            yield table

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        table.add_columns("Key", "Action", "What it does")
        for key, desc, tip in self.rows:
            table.add_row(key, desc, tip)
        table.focus()


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
    """New price and/or quantity for a working order; blank keeps the current value."""

    BINDINGS = [
        Binding("escape", "close", "Close", id="amend.close", tooltip="Close without amending"),
        Binding("enter", "send", "Amend", id="amend.send", tooltip="Send the amendment", priority=True),
    ]

    def __init__(self, order_id: str, quantity: float, price: float | None) -> None:
        super().__init__()
        self.order_id, self.quantity, self.price = order_id, quantity, price

    def compose(self) -> ComposeResult:
        with Vertical(id="amend"):
            yield Static(f"[b]Amend {self.order_id}[/]  (cancel/replace at the venue)")
            yield Static("New quantity")
            yield Input(f"{self.quantity:g}", id="amend-quantity", select_on_focus=True)
            yield Static("New price")
            yield Input("" if self.price is None else f"{self.price:g}", id="amend-price", select_on_focus=True)
            yield Static("", id="amend-error", classes="ticket-error")

    def on_mount(self) -> None:
        self.query_one("#amend-price", Input).focus()

    def _number(self, widget_id: str, label: str) -> float | None:
        text = self.query_one(widget_id, Input).value.strip().replace(",", "")
        if not text:
            return None
        value = float(text)  # ValueError handled by the caller
        if not value > 0 or value == float("inf"):
            raise ValueError(f"{label} must be a finite number > 0, got {text}")
        return value

    def action_send(self) -> None:
        error = self.query_one("#amend-error", Static)
        try:
            qty = self._number("#amend-quantity", "quantity")
            price = self._number("#amend-price", "price")
        except ValueError as exc:
            msg = str(exc)
            error.update(msg if "must be" in msg else f"not a number: {msg}")
            return
        if qty == self.quantity:
            qty = None
        if price == self.price:
            price = None
        if qty is None and price is None:
            error.update("nothing changed: enter a new quantity or price")
            return
        self.dismiss((qty, price))

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
