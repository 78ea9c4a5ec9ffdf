"""The order ticket: every order type by keyboard, validated as the operator types.

Opened with `b` / `s` on the selected symbol, its fields remembered from the
last ticket; Enter sends (an order above the risk limits' confirmation share only
goes on Ctrl+S), Escape closes. Only the fields of the chosen type
are shown. Ctrl+T cycles the type, Ctrl+Y the symbol, Ctrl+R the route,
Ctrl+F flips the side (both move the price to the new touch), so the common
orders need no mouse and few keys.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.content import Content
from textual.screen import ModalScreen
from textual.widgets import Input, Label, Select, Static

from engine import Instrument, Order, OrderType, RiskPreview

from ..ticket_model import (
    CHOICES,
    FIELD_HELP,
    FIELDS_BY_TYPE,
    HINTS,
    LABELS,
    OPTIONAL_PRICE,
    SMART_ROUTE,
    TicketResult,
    build_order,
    clean_values,
    describe,
    field_hints,
    plain,
)

TYPES = tuple(t.value for t in OrderType)
SELECT_FIELDS = ("tif", "profile", "urgency", "venue")
QUOTE_S = 0.5  # the ticket's best bid / ask refresh
ALL_FIELDS = ("quantity", "price", "venue", "tif", "display_size", "display_variance",
              "duration_s", "slices", "max_participation", "profile", "urgency")


class TicketAlert(NamedTuple):
    """What the desk hidden behind the ticket shows loudly, and whether it stops sending."""

    text: str
    refuses: bool = False  # trading is halted: Enter would only be refused


# A key per order type: F-keys reach the ticket in any terminal and never type into a
# field; Alt+letter is the mnemonic where the terminal sends Alt (macOS: Option as Meta).
TYPE_KEYS = (
    ("f2", "alt+m", OrderType.MARKET),
    ("f3", "alt+l", OrderType.LIMIT),
    ("f4", "alt+i", OrderType.ICEBERG),
    ("f5", "alt+t", OrderType.TWAP),
    ("f6", "alt+v", OrderType.VWAP),
    ("f7", "alt+s", OrderType.SMART),
)


class TicketScreen(ModalScreen[tuple[Any, str | None] | None]):
    """Returns (Order, venue or None for smart routing) on Enter, None on Escape.

    One line per field (compact inputs), so every order type, its help lines and the
    summary fit a 24-line terminal.
    """

    DEFAULT_CSS = """
    TicketScreen #ticket-form {
        height: auto;
        margin: 1 0 0 0;
    }
    TicketScreen .tk-row {
        height: auto;
    }
    TicketScreen .tk-label {
        width: 18;
        margin: 0 1 0 0;
    }
    TicketScreen .tk-field {
        width: 24;
        height: 1;  /* a Select's auto height counts its closed list of options */
        margin: 0 1 0 0;
        background-tint: $foreground 4%;
    }
    TicketScreen .tk-field:focus, TicketScreen .tk-field:focus-within {
        background-tint: $foreground 12%;
    }
    TicketScreen .tk-field.-tk-invalid {
        background-tint: $error 35%;
    }
    TicketScreen .tk-error {
        /* Under its field across the whole form: at 80 columns a column beside the field
           was 28 wide and an error with its value took three lines. */
        padding: 0 0 0 2;
        color: $error;
    }
    TicketScreen .tk-help {
        padding: 0 0 0 19;
        color: $text-muted;
    }
    TicketScreen #ticket-types {
        color: $secondary;
    }
    TicketScreen #ticket-risk {
        color: $text-muted;
    }
    TicketScreen #ticket-risk.-large {
        color: $warning;
    }
    TicketScreen #ticket-risk.-refused {
        color: $error;
        text-style: bold;
    }
    """

    BINDINGS = [
        Binding("escape", "close", "Close", id="ticket.close", tooltip="Close the ticket without sending"),
        Binding("ctrl+t", "cycle('type')", "Type", id="ticket.type", tooltip="Next order type"),
        *(
            Binding(f"{fkey},{alt}", f"order_type('{t.value}')", t.value, id=f"ticket.{t.value.lower()}",
                    key_display=fkey.upper(), tooltip=f"{t.value} order ({alt.title()} too)")
            for fkey, alt, t in TYPE_KEYS
        ),
        Binding("ctrl+y", "cycle('symbol')", "Symbol", id="ticket.symbol", tooltip="Next symbol"),
        Binding("ctrl+r", "cycle('venue')", "Route", id="ticket.route", tooltip="Next route (smart or a venue)"),
        Binding("ctrl+f", "flip_side", "Flip side", id="ticket.side", tooltip="Switch BUY and SELL"),
        Binding("enter", "send", "Send", id="ticket.send", tooltip="Send the order", priority=True),
        # A large order goes out on this key only: a second Enter can be a bounce or an
        # auto-repeat (150 ms apart), and no number field takes a Ctrl key.
        Binding("ctrl+s", "send(True)", "Send large", id="ticket.send_large", priority=True,
                tooltip="Send a large order (above the confirmation share of a limit); Enter does not"),
    ]

    def __init__(
        self, values: Mapping[str, Any], symbols: list[str], venues: list[str], order_id: str, *, blink: bool = True,
        quote: Callable[[str], str | None] | None = None, alert: Callable[[], TicketAlert | None] | None = None,
        touch: Callable[[str, str], float | None] | None = None,
        risk: Callable[[Order], RiskPreview] | None = None,
        instrument: Callable[[str], Instrument | None] | None = None,
    ) -> None:
        super().__init__()
        # The symbol's instrument (tick, lot, minimum quantity, notional filters): what a
        # venue would refuse for certain is refused here, in its words, as the operator types.
        self.instrument = instrument
        # The engine's pre-trade check as the operator types (Engine.check_risk): the
        # notional, a refusal with its reason, or a large order that only Ctrl+S sends.
        self.risk = risk
        self.preview: RiskPreview | None = None
        self.blink = blink
        # (symbol, side) -> the price a new symbol or side starts at (the desk gives the touch:
        # the best bid for a buy, the best ask for a sell), or None when there is no market.
        # Without it a new symbol or side clears the price, so the operator must type one.
        self.touch = touch
        # The symbol's best bid / ask, on the title line: the ticket hides the desk
        # (drawing it dimmed behind cost each frame) and the desk waits until it closes.
        self.quote = quote
        self._quote_text: str | None = None
        # What the hidden desk would show loudly (a halt, venues out of routing), or None.
        self.alert = alert
        self._alert: TicketAlert | None = None
        self.values = clean_values(values)
        self.symbols = symbols
        self.routes = [SMART_ROUTE, *venues]
        self.order_id = order_id
        self.result: TicketResult | None = None
        # The price text the ticket (or the desk opening it) put in the field: a price the
        # operator did not type. Where the price is optional it never goes out on its own.
        self.auto_price = ""
        if self.values["symbol"] not in symbols and symbols:
            self.values["symbol"] = symbols[0]
        if self.values["venue"] not in self.routes:
            self.values["venue"] = SMART_ROUTE
        self._opening_price()

    def compose(self) -> ComposeResult:
        with Vertical(id="ticket"):
            yield Static(id="ticket-title")
            yield Static(id="ticket-alert")
            yield Static(
                "[b]Ctrl+F[/] side  [b]Ctrl+Y[/] symbol  [b]Ctrl+R[/] route  [b]Enter[/] send  [b]Esc[/] close",
                id="ticket-keys",
            )
            yield Static(
                "  ".join(f"[b]{fkey.upper()}[/] {t.value}" for fkey, _, t in TYPE_KEYS) + "  [b]Ctrl+T[/] next",
                id="ticket-types",
            )
            with Vertical(id="ticket-form"):
                for name in ALL_FIELDS:
                    with Horizontal(id=f"row-{name}", classes="tk-row"):
                        yield Label(LABELS[name], id=f"label-{name}", classes="tk-label")
                        if name in SELECT_FIELDS:
                            options = self.routes if name == "venue" else CHOICES[name]
                            yield Select([(o, o) for o in options], value=self.values[name], allow_blank=False,
                                         id=f"field-{name}", classes="tk-field", compact=True)
                        else:
                            field = Input(self.values.get(name, ""), placeholder=HINTS.get(name, ""),
                                          id=f"field-{name}", classes="tk-field", select_on_focus=True, compact=True)
                            field.cursor_blink = self.blink
                            yield field
                    yield Static("", id=f"error-{name}", classes="tk-error")
                    if name in FIELD_HELP:
                        yield Static(FIELD_HELP[name], id=f"help-{name}", classes="tk-help")
            yield Static(id="ticket-summary")
            yield Static(id="ticket-risk")

    def on_mount(self) -> None:
        self._layout()
        self._validate()
        self._start_in_quantity()
        if self.quote is not None or self.alert is not None or self.risk is not None:
            self.set_interval(QUOTE_S, self.refresh_header, name="header")

    def prepare(self, values: Mapping[str, Any], order_id: str) -> None:
        """Reuse this ticket for the next order: composing a new one cost ~100 ms under load."""
        self.values = clean_values(values)
        if self.values["symbol"] not in self.symbols and self.symbols:
            self.values["symbol"] = self.symbols[0]
        if self.values["venue"] not in self.routes:
            self.values["venue"] = SMART_ROUTE
        self.order_id = order_id
        self._opening_price()
        for name in ALL_FIELDS:
            field = self.query_one(f"#field-{name}")
            value = self.values.get(name, "")
            if isinstance(field, Select):
                field.value = value
            else:
                field.value = value  # type: ignore[union-attr]
        self._layout()
        self._validate()
        self._start_in_quantity()

    def _opening_price(self) -> None:
        """The price a ticket opens with is the desk's (the touch, or the last one sent), not
        typed in this ticket: a type whose price is optional opens without a limit."""
        if OrderType(self.values["type"]) in OPTIONAL_PRICE:
            self.values["price"] = ""
        self.auto_price = self.values["price"]

    @property
    def price_typed(self) -> bool:
        """The operator typed the price in this ticket (it is not the one the ticket put there)."""
        text = self.values.get("price", "")
        return bool(text.strip()) and text != self.auto_price

    def _put_price(self, text: str) -> None:
        """A price the ticket chose: shown selected, so typing replaces it."""
        self.values["price"] = self.auto_price = text
        field = self.query_one("#field-price", Input)
        field.value = text
        field.select_all()

    def _select_for_typing(self) -> None:
        """After a change of type, typing replaces a field's text, as after Ctrl+F or Ctrl+Y
        (a quantity of 2, F5, 3 is 3, not 23); a focused field the new type hides gives the
        focus to the quantity."""
        for field in self.query(".tk-field").results(Input):
            field.select_all()
        focused = self.focused
        if focused is None or not focused.display:
            self.query_one("#field-quantity", Input).focus()

    def _start_in_quantity(self) -> None:
        """Focus quantity with every field's text selected, so typing replaces, never appends.

        Selecting on focus is not enough: a reused ticket gets its focus back when the
        screen returns, and Textual does not select on a focus it restores.
        """
        for field in self.query(".tk-field").results(Input):
            field.select_all()
        self.query_one("#field-quantity", Input).focus()

    # -- what is shown -----------------------------------------------------------------
    def _layout(self) -> None:
        order_type = OrderType(self.values["type"])
        shown = FIELDS_BY_TYPE[order_type]
        for name in ALL_FIELDS:
            visible = name in shown
            for prefix in ("row", "label", "field", "error", "help"):
                for widget in self.query(f"#{prefix}-{name}"):
                    widget.display = visible
        hints = field_hints(self.instrument(self.values["symbol"]) if self.instrument is not None else None)
        self.query_one("#field-quantity", Input).placeholder = hints["quantity"]
        self.query_one("#field-price", Input).placeholder = (
            "blank: no limit" if order_type in OPTIONAL_PRICE else hints["price"])
        side = self.values["side"]
        self._quote_text = self.quote(self.values["symbol"]) if self.quote is not None else None
        self._show_title()
        self._show_alert(self.alert() if self.alert is not None else None)
        self.query_one("#ticket").set_class(side == "SELL", "sell")

    def _show_title(self) -> None:
        side = self.values["side"]
        colour = "$buy" if side == "BUY" else "$sell"
        quote = f"   [dim]{self._quote_text}[/]" if self._quote_text else ""
        self.query_one("#ticket-title", Static).update(
            f"[b {colour}]{side}[/]  [b]{self.values['symbol']}[/]  {self.values['type']}{quote}"
        )

    def _show_alert(self, alert: TicketAlert | None) -> None:
        if alert == self._alert:
            return
        refuses = self._refuses
        self._alert = alert
        widget = self.query_one("#ticket-alert", Static)
        widget.display = alert is not None
        widget.update(Text(alert.text if alert else ""))  # a halt's reason is the operator's words, not markup
        if self._refuses != refuses and self.result is not None:
            self._validate()

    @property
    def _refuses(self) -> bool:
        return self._alert is not None and self._alert.refuses

    def refresh_header(self) -> None:
        """The quote on the title line, the alert under it and the risk preview: every `QUOTE_S`,
        or at once when the desk knows the market or its state changed."""
        if not self.is_current:
            return
        if self.quote is not None:
            text = self.quote(self.values["symbol"])
            if text != self._quote_text:
                self._quote_text = text
                self._show_title()
        if self.alert is not None:
            self._show_alert(self.alert())
        result = self.result
        if self.risk is not None and result is not None and result.order is not None:
            preview = self.risk(result.order)  # the mid moves: the band and a market order's notional with it
            if preview != self.preview:
                self.preview = preview
                self._show_risk()
                self._show_summary()

    _refresh_header = refresh_header  # the name tests/test_desk.py calls

    def _validate(self) -> TicketResult:
        symbol, side = self.values["symbol"], self.values["side"]
        instrument = self.instrument(symbol) if self.instrument is not None else None
        market_price = None  # a market order's notional is judged where it would trade: the far touch
        if instrument is not None and self.values["type"] == OrderType.MARKET.value and self.touch is not None:
            market_price = self.touch(symbol, "SELL" if side == "BUY" else "BUY")
        result = build_order(self.values, self.order_id, instrument=instrument, market_price=market_price)
        self.result = result
        shown = FIELDS_BY_TYPE[OrderType(self.values["type"])]
        for name in ALL_FIELDS:
            # Errors quote what was typed: plain text, never read as markup.
            error = self.query_one(f"#error-{name}", Static)
            error.update(Text(result.errors.get(name, "")))
            error.display = name in shown and name in result.errors
            field = self.query_one(f"#field-{name}")
            field.set_class(name in result.errors, "-tk-invalid")
            # A field in error shows its error instead of its help line: at 80x24 the tallest
            # ticket with every field wrong must still show the summary line.
            for help_line in self.query(f"#help-{name}"):
                help_line.display = name in shown and name not in result.errors
        self.preview = self.risk(result.order) if self.risk is not None and result.order is not None else None
        self._show_risk()
        self._show_summary()
        return result

    def _show_risk(self) -> None:
        """The notional as the operator types, and the limit it comes nearest."""
        line = self.query_one("#ticket-risk", Static)
        preview, result = self.preview, self.result
        line.display = preview is not None
        if preview is None or result is None or result.order is None:
            return
        quote = result.order.symbol.partition("/")[2] or "USD"
        notional = "Notional unknown (no price)" if preview.notional is None else (
            f"Notional {preview.notional:,.2f} {quote}")
        note = preview.note if preview.reason is None else None  # a refusal's reason is on the summary line
        if note and preview.limit == "notional" and " is " in note:
            note = note.split(" is ", 1)[1]  # "notional 5,000 is 0% of max ...": the notional is already said
        line.update(Text(notional + (f" · {note}" if note else "")))
        line.set_class(preview.reason is not None, "-refused")
        line.set_class(preview.reason is None and preview.needs_confirmation, "-large")

    def _show_summary(self) -> None:
        result, preview = self.result, self.preview
        assert result is not None
        summary = self.query_one("#ticket-summary", Static)
        if result.order is None:
            shown = FIELDS_BY_TYPE[OrderType(self.values["type"])]
            other = {k: v for k, v in result.errors.items() if k not in shown}
            text = "; ".join(other.values()) if other else "Fix the fields marked above to send."
            summary.update(Content.from_markup("[b $error]$text[/]", text=text))
            return
        # Orders and reasons go in as $variables: written as they are, never read as markup.
        order = describe(result.order, result.venue)
        if self._refuses:
            line = Content.from_markup("[b $error]Not sendable while trading is halted:[/] $order", order=order)
        elif preview is not None and preview.reason is not None:
            line = Content.from_markup("[b $error]Refused by the risk limits:[/] $reason", reason=preview.reason)
        elif preview is not None and preview.needs_confirmation:
            line = Content.from_markup(
                "[b $warning]Large order: Ctrl+S sends[/] $order  [dim](Enter does not)[/]", order=order)
        else:
            line = Content.from_markup("[b $success]Ready:[/] $order  [dim](Enter)[/]", order=order)
        summary.update(line)


    # -- input ---------------------------------------------------------------------------
    @on(Input.Changed, ".tk-field")
    def _input_changed(self, event: Input.Changed) -> None:
        name = (event.input.id or "").removeprefix("field-")
        self.values[name] = event.value
        self._validate()

    @on(Select.Changed, ".tk-field")
    def _select_changed(self, event: Select.Changed) -> None:
        name = (event.select.id or "").removeprefix("field-")
        if event.value is not Select.BLANK:
            self.values[name] = str(event.value)
            self._validate()

    def action_cycle(self, name: str) -> None:
        options = {"type": TYPES, "symbol": tuple(self.symbols), "venue": tuple(self.routes)}[name]
        if not options:
            return
        current = self.values[name]
        self.values[name] = options[(options.index(current) + 1) % len(options)] if current in options else options[0]
        if name == "venue":
            self.query_one("#field-venue", Select).value = self.values["venue"]
        if name == "symbol":
            self._follow_market()
        if name == "type":
            self._price_for_type()
        self._layout()
        self._validate()
        if name == "type":
            self._select_for_typing()

    def action_order_type(self, order_type: str) -> None:
        self.values["type"] = OrderType(order_type).value
        self._price_for_type()
        self._layout()
        self._validate()
        self._select_for_typing()

    def _price_for_type(self) -> None:
        """A price the operator typed stays through a change of type. One the ticket chose
        does not: a type whose price is optional gets no limit (the touch would be a limit
        nobody set), one that needs a price starts at the touch as it is now."""
        if self.price_typed:
            return
        order_type = OrderType(self.values["type"])
        if order_type in OPTIONAL_PRICE:
            self._put_price("")
        elif "price" in FIELDS_BY_TYPE[order_type] and self.touch is not None:
            touch = self.touch(self.values["symbol"], self.values["side"])
            self._put_price(plain(touch) if touch is not None and math.isfinite(touch) and touch > 0 else "")

    def action_flip_side(self) -> None:
        self.values["side"] = "SELL" if self.values["side"] == "BUY" else "BUY"
        self._follow_market()
        self._layout()
        self._validate()

    def _follow_market(self) -> None:
        """A new symbol or side starts at its own touch: a price typed for ETH (3,004) must never
        go out on a SOL ticket (~150), and a buy's bid is a sell's crossing price.

        Where the price is optional, a new symbol or side has no limit until one is typed.
        """
        if OrderType(self.values["type"]) in OPTIONAL_PRICE:
            self._put_price("")
            return
        touch = self.touch(self.values["symbol"], self.values["side"]) if self.touch is not None else None
        self._put_price(plain(touch) if touch is not None and math.isfinite(touch) and touch > 0 else "")

    def action_send(self, large: bool = False) -> None:
        """Enter sends an order; a large one (`RiskPreview.needs_confirmation`) only on Ctrl+S."""
        result = self._validate()  # the market moves: judge the order as it stands now
        if result.ok and self._refuses:
            self.app.bell()
            return
        if not result.ok:
            self.app.bell()
            first = next(iter(result.errors), None)
            if first and first in ALL_FIELDS:
                self.query_one(f"#field-{first}").focus()
            return
        preview = self.preview
        if preview is not None and preview.reason is not None:
            self.app.bell()
            return
        if preview is not None and preview.needs_confirmation and not large:
            self.app.bell()  # the summary line says which key sends it
            return
        self.dismiss((result.order, result.venue))

    def action_close(self) -> None:
        self.dismiss(None)
