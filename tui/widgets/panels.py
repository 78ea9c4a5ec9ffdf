"""The desk's panels. Each one redraws from the engine when the app's frame
timer asks (`refresh_from`), updating cells by row key and never rebuilding
a table; hidden panels are skipped by the app.

Colour never carries meaning alone: breaker states are words, sides are
words, and the colour only repeats them.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Iterable
from typing import Any

from rich.text import Text
from textual.binding import Binding
from textual.widgets import DataTable, RichLog, Static

from .live_table import Column, LiveTable

from engine import Engine, OrderResult, OrderStatus

BAR_WIDTH = 10


def progress_bar(filled: float, total: float, width: int = BAR_WIDTH) -> str:
    frac = 0.0 if total <= 0 else min(max(filled / total, 0.0), 1.0)
    full = int(round(frac * width))
    return "█" * full + "░" * (width - full) + f" {frac:4.0%}"


def fmt_qty(value: float | None) -> str:
    return "" if value is None else f"{value:,.6g}"


def fmt_price(value: float | None) -> str:
    if value is None:
        return "—"
    return f"{value:,.3f}" if value < 1000 else f"{value:,.2f}"


STATUS_COLOUR = {
    OrderStatus.FILLED: "success",
    OrderStatus.REJECTED: "error",
    OrderStatus.CANCELED: "secondary",
    OrderStatus.EXPIRED: "secondary",
    OrderStatus.PENDING_NEW: "warning",
    OrderStatus.PENDING_CANCEL: "warning",
}


class KeyedTable(DataTable):
    """A DataTable updated by row key: only changed cells are touched.

    DataTable renders cells with Rich, which knows nothing of the theme's
    $variables, so `paint` resolves a theme colour to a concrete one; when
    the theme changes the app calls `forget()` and every row is drawn anew.
    """

    def __init__(self, columns: Iterable[tuple[str, str]], **kwargs: Any) -> None:
        super().__init__(cursor_type="row", zebra_stripes=False, **kwargs)
        self._columns = list(columns)
        self._cells: dict[str, tuple[Any, ...]] = {}

    def on_mount(self) -> None:
        for key, label in self._columns:
            self.add_column(label, key=key)

    def upsert(self, key: str, cells: tuple[Any, ...], *, top: bool = False) -> bool:
        old = self._cells.get(key)
        if old == cells:
            return False
        if old == ():  # forgotten: redraw every cell
            old = (None,) * len(cells)
        if old is None:
            self.add_row(*cells, key=key)
        else:
            for (col, _), new, before in zip(self._columns, cells, old):
                if new != before:
                    self.update_cell(key, col, new)
        self._cells[key] = cells
        return True

    def paint(self, text: str, colour: str | None, bold: bool = False) -> Text:
        value = self.app.theme_variables.get(colour, "") if colour else ""
        return Text(text, style=f"{'bold ' if bold else ''}{value}".strip())

    def side(self, side: Any) -> Text:
        name = getattr(side, "value", str(side or ""))
        return self.paint(name, "buy" if name == "BUY" else "sell", bold=True)

    def forget(self) -> None:
        """Drop the cell cache so the next refresh redraws every row (new theme)."""
        self._cells = {key: () for key in self._cells}

    def drop(self, key: str) -> None:
        if key in self._cells:
            del self._cells[key]
            self.remove_row(key)

    @property
    def keys(self) -> list[str]:
        return list(self._cells)

    def selected_key(self) -> str | None:
        if self.row_count == 0:
            return None
        try:
            row_key, _ = self.coordinate_to_cell_key(self.cursor_coordinate)
        except Exception:  # the cursor may point past a removed row
            return None
        return row_key.value


class VenuesPanel(KeyedTable):
    BORDER_TITLE = "Venues"
    BINDINGS = [
        Binding("v", "app.toggle_venue", "Toggle venue", id="venue.toggle",
                tooltip="Enable or disable routing to the selected venue"),
        Binding("d", "app.drill", "Fault drill", id="venue.drill",
                tooltip="Inject an outage, latency spike or error burst on the selected venue"),
    ]

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(
            [("venue", "Venue"), ("on", "Route"), ("breaker", "Breaker"), ("p50", "p50 ms"),
             ("p99", "p99 ms"), ("fill", "Fill %"), ("err", "Err %"), ("fees", "Fee m/t bps")],
            **kwargs,
        )

    def refresh_from(self, engine: Engine) -> None:
        router = engine.router
        for name in router.exchanges:
            breaker = router.breaker(name)
            state = breaker.state.value
            colour = {"CLOSED": "breaker-closed", "OPEN": "breaker-open", "HALF_OPEN": "breaker-half-open"}[state]
            label = state.replace("_", "-")
            if breaker.forced:
                label += " (forced)"
            stats = engine.profiler.window_stats("acknowledgment", name, seconds=60)
            vstats = router.venue_stats(name)
            fees = router.client(name).fees
            enabled = router.is_enabled(name)
            self.upsert(name, (
                Text(name, style="bold"),
                self.paint("ON", "success") if enabled else self.paint("OFF", "error", bold=True),
                self.paint(label, colour, bold=state != "CLOSED"),
                f"{stats.median / 1e6:6.2f}" if stats.count else "—",
                f"{stats.p99 / 1e6:6.2f}" if stats.count else "—",
                f"{vstats.fill_ratio:5.0%}",
                f"{vstats.error_rate:5.1%}",
                f"{fees.maker_bps:g}/{fees.taker_bps:g}",
            ))


class MarketPanel(KeyedTable):
    BORDER_TITLE = "Market"

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(
            [("venue", "Venue"), ("bsz", "Bid size"), ("bid", "Bid"), ("ask", "Ask"),
             ("asz", "Ask size"), ("spr", "Spread bps")],
            **kwargs,
        )
        self.symbol = "BTC/USD"

    def refresh_from(self, engine: Engine) -> None:
        self.border_title = f"Market · {self.symbol}"
        for name, venue in engine.venues.items():
            try:
                book = venue.book(self.symbol, depth=1)
            except Exception as exc:  # an outage: say so in the row
                self.upsert(name, (name, "", self.paint("unavailable", "error"), str(exc)[:30], "", ""))
                continue
            bid = book.bids[0] if book.bids else None
            ask = book.asks[0] if book.asks else None
            spread = f"{book.spread / book.mid * 1e4:5.2f}" if book.mid else "—"
            self.upsert(name, (
                name,
                fmt_qty(bid.quantity if bid else None),
                self.paint(fmt_price(bid.price if bid else None), "buy"),
                self.paint(fmt_price(ask.price if ask else None), "sell"),
                fmt_qty(ask.quantity if ask else None),
                spread,
            ))


class Blotter(LiveTable):
    """Parents and plain orders, newest on top; finished rows are bounded."""

    BORDER_TITLE = "Orders"
    BINDINGS = [
        Binding("c", "app.cancel_selected", "Cancel", id="order.cancel", tooltip="Cancel the selected order"),
        Binding("a", "app.amend_selected", "Amend", id="order.amend",
                tooltip="Change the selected order's price or quantity (cancel/replace)"),
    ]

    def __init__(self, max_finished: int = 200, **kwargs: Any) -> None:
        super().__init__(
            [Column("id", "Order", 18), Column("side", "Side", 5), Column("sym", "Symbol", 8),
             Column("type", "Type", 8), Column("qty", "Qty", 9, right=True), Column("prog", "Filled", 16),
             Column("avg", "Avg px", 11, right=True), Column("slip", "Slip bps", 9, right=True),
             Column("status", "Status", 17), Column("venue", "Venue", 14), Column("why", "Routing / reason", 10)],
            **kwargs,
        )
        self.max_finished = max_finished
        self._finished: OrderedDict[str, None] = OrderedDict()

    def show(self, result: OrderResult, order_type: str, reason: str) -> None:
        status = result.status
        slip = result.detail.get("slippage_bps") if result.detail else None
        cells = (
            result.order_id,
            self.side(result.side),
            result.symbol,
            order_type,
            fmt_qty(result.quantity),
            progress_bar(result.filled_quantity, result.quantity),
            fmt_price(result.average_price),
            "" if slip is None else f"{slip:+.2f}",
            self.paint(status.value, STATUS_COLOUR.get(status)),
            result.exchange_id or "",
            reason,
        )
        self.upsert(result.order_id, cells)
        if status.is_final:
            self._finished[result.order_id] = None
            while len(self._finished) > self.max_finished:
                old, _ = self._finished.popitem(last=False)
                self.drop(old)


class FillsTape(LiveTable):
    """Newest fill on top; bounded (older fills stay in the engine's history)."""

    BORDER_TITLE = "Fills"

    def __init__(self, max_rows: int = 200, **kwargs: Any) -> None:
        super().__init__(
            [Column("seq", "Fill", 7, right=True), Column("t", "Time", 13), Column("id", "Order", 22),
             Column("side", "Side", 5), Column("sym", "Symbol", 8), Column("qty", "Qty", 9, right=True),
             Column("px", "Price", 11, right=True), Column("venue", "Venue", 7), Column("liq", "Liq", 4),
             Column("fee", "Fee", 8)],
            **kwargs,
        )
        self.max_rows = max_rows
        self._order_keys: deque[str] = deque()
        self._fills: dict[str, tuple[int, Any]] = {}
        self._seq = 0

    def add_fills(self, fills: list[Any], clock_fmt: Any) -> None:
        """Add fills on top (newest first), dropping the oldest beyond `max_rows`."""
        for fill in fills:
            self._seq += 1
            key = f"f{self._seq}"
            self._fills[key] = (self._seq, fill)
            self._draw(key, self._fills[key], clock_fmt)
            self._order_keys.append(key)
            while len(self._order_keys) > self.max_rows:
                old = self._order_keys.popleft()
                self._fills.pop(old, None)
                self.drop(old)

    def _draw(self, key: str, entry: tuple[int, Any], clock_fmt: Any) -> None:
        seq, fill = entry
        self.upsert(key, (
            seq, clock_fmt(fill.timestamp), fill.order_id, self.side(fill.side), fill.symbol,
            fmt_qty(fill.quantity), fmt_price(fill.price), fill.exchange_id,
            fill.liquidity.value[0], f"{fill.fee:,.4f}",
        ))

    def redraw(self, clock_fmt: Any) -> None:
        self.forget()
        for key, entry in self._fills.items():
            self._draw(key, entry, clock_fmt)


class PositionsPanel(KeyedTable):
    BORDER_TITLE = "Positions"

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(
            [("sym", "Symbol"), ("venue", "Venue"), ("net", "Net"), ("avg", "Avg entry"),
             ("rpl", "Realized"), ("upl", "Unrealized"), ("fees", "Fees")],
            **kwargs,
        )
        self.by_venue = False

    def refresh_from(self, engine: Engine) -> None:
        positions = getattr(engine, "positions", None)
        if positions is None:
            return
        rows = positions(by_venue=self.by_venue) if callable(positions) else []
        seen = set()
        for row in rows:
            key = f"{row.symbol}|{row.venue or '*'}"
            seen.add(key)
            self.upsert(key, (
                row.symbol, row.venue or "all", fmt_qty(row.net_quantity), fmt_price(row.average_entry),
                f"{row.realized_pnl:,.2f}", f"{row.unrealized_pnl:,.2f}", f"{row.fees:,.2f}",
            ))
        for key in self.keys:
            if key not in seen:
                self.drop(key)


class EventLog(RichLog):
    BORDER_TITLE = "Events"

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(max_lines=500, wrap=True, markup=False, highlight=False, **kwargs)


class StatusBar(Static):
    pass
