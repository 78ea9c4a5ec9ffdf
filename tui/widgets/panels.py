"""The desk's panels. Each one redraws from the engine when the app's frame
timer asks (`refresh_from`), updating cells by row key and never rebuilding
a table; hidden panels are skipped by the app.

Colour never carries meaning alone: breaker states are words, sides are
words, and the colour only repeats them.
"""

from __future__ import annotations

import math
from collections import deque
from typing import Any

from rich.text import Text
from textual.binding import Binding
from textual.widgets import Footer, RichLog, Static

from engine import Engine, OrderStatus

from ..view_model import OrderRow, fmt_price, fmt_qty
from .live_table import Column, LiveTable

BAR_WIDTH = 10


def progress_bar(filled: float, total: float, width: int = BAR_WIDTH) -> str:
    """"45% ████░░░░░░": the share first, so a narrow column cut short still says it."""
    frac = 0.0 if total <= 0 else min(max(filled / total, 0.0), 1.0)
    full = int(round(frac * width))
    return f"{frac:4.0%} " + "█" * full + "░" * (width - full)


STATUS_COLOUR = {
    OrderStatus.FILLED: "success",
    OrderStatus.REJECTED: "error",
    OrderStatus.CANCELED: "secondary",
    OrderStatus.EXPIRED: "secondary",
    OrderStatus.PENDING_NEW: "warning",
    OrderStatus.PENDING_CANCEL: "warning",
}


class KeyedTable(LiveTable):
    """A small table of rows in a fixed order (venues, books, positions), kept by key.

    The same Line-API table as the blotter, with rows in the order first seen rather
    than newest on top: only the lines on screen are drawn, and only rows that changed.
    """

    def __init__(self, columns: list[Column], **kwargs: Any) -> None:
        super().__init__(columns, newest_first=False, **kwargs)


class VenuesPanel(KeyedTable):
    BORDER_TITLE = "Venues"
    BINDINGS = [
        Binding("v", "app.toggle_venue", "Toggle venue", id="venue.toggle",
                tooltip="Enable or disable routing to the selected venue"),
        Binding("d", "app.drill", "Fault drill", id="venue.drill",
                tooltip="Inject an outage, latency spike or error burst on the selected venue"),
    ]

    def __init__(self, *, links: bool = False, **kwargs: Any) -> None:
        """`links`: a Link column (how each venue is reached, its FIX session's state and
        numbers), for a desk with network venues; the simulators alone need none."""
        columns = [Column("venue", "Venue", 8), Column("on", "Route", 6), Column("breaker", "Breaker", 19),
                   Column("p50", "p50 ms", 8, right=True), Column("p99", "p99 ms", 8, right=True),
                   Column("fill", "Fill %", 7, right=True), Column("err", "Err %", 7, right=True),
                   Column("fees", "Fee m/t bps", 14)]
        if links:
            columns.insert(2, Column("link", "Link", 22))
        super().__init__(columns, **kwargs)
        self.links = links

    def refresh_from(self, engine: Engine) -> None:
        router = engine.router
        now = engine.clock.now()
        venues = engine.venues
        for name in router.exchanges:
            breaker = router.breaker(name)
            state = breaker.state.value
            colour = {"CLOSED": "breaker-closed", "OPEN": "breaker-open", "HALF_OPEN": "breaker-half-open"}[state]
            label = breaker_label(breaker, now)
            stats = engine.profiler.window_stats("acknowledgment", name, seconds=60)
            vstats = router.venue_stats(name)
            fees = router.client(name).fees
            enabled = router.is_enabled(name)
            link = (link_label(self, venues.get(name)),) if self.links else ()
            self.upsert(name, (
                self.paint(name, None, bold=True),
                self.paint("ON", "success") if enabled else self.paint("OFF", "error", bold=True),
                *link,
                self.paint(label, colour, bold=state != "CLOSED"),
                f"{stats.median / 1e6:6.2f}" if stats.count else "—",
                f"{stats.p99 / 1e6:6.2f}" if stats.count else "—",
                f"{vstats.fill_ratio:5.0%}",
                f"{vstats.error_rate:5.1%}",
                f"{fees.maker_bps:g}/{fees.taker_bps:g}",
            ))


def link_label(table: KeyedTable, venue: Any) -> Any:
    """How the desk reaches a venue: "in-process" for a simulator, else its session's
    state and sequence numbers (out/in), coloured by whether orders can go."""
    session_info = getattr(venue, "session_info", None)
    if session_info is None:
        return "in-process"
    info = session_info()
    up = info.state == "logged on"
    text = f"FIX {info.state} {info.next_outgoing}/{info.next_incoming}" if up else f"FIX {info.state}"
    return table.paint(text, "success" if up else "error", bold=not up)


def breaker_label(breaker: Any, now: float) -> str:
    """A breaker's state as the operator reads it; an OPEN one says when it tries again
    (it half-opens at the first order after that time, so "due" once it has passed)."""
    label = breaker.state.value.replace("_", "-")
    if breaker.forced:
        return f"{label} (forced)"
    retry_at = breaker.retry_at
    if retry_at is not None:
        left = retry_at - now
        label += f" · retry {math.ceil(left)}s" if left > 0 else " · retry due"
    return label


class MarketPanel(KeyedTable):
    BORDER_TITLE = "Market"

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(
            [Column("venue", "Venue", 8), Column("bsz", "Bid size", 10, right=True),
             Column("bid", "Bid", 11, right=True), Column("ask", "Ask", 11, right=True),
             Column("asz", "Ask size", 10, right=True), Column("spr", "Spread bps", 11, right=True),
             Column("note", "", 10)],
            **kwargs,
        )
        self.symbol = "BTC/USD"

    def refresh_from(self, engine: Engine) -> None:
        self.border_title = f"Market · {self.symbol}"
        for name, venue in engine.venues.items():
            try:
                book = venue.book(self.symbol, depth=1)
            except Exception as exc:  # an outage: say so in the row
                self.upsert(name, (name, "", self.paint("unavailable", "error"), "", "", "", str(exc)))
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
                "",
            ))


class Blotter(LiveTable):
    """Parents and plain orders, newest on top, in the order they were sent (each row's
    rank); at most `max_rows` rows.

    Finished rows leave, oldest first, to make room; a working order never does, nor
    the selected row. So under load the row count stays put: a new order's row and
    the finished row it replaces land in one batch, and the table's size does not
    change. (With the bound on finished rows alone, the count followed the working
    orders, up and down every frame, and each change re-laid out the whole screen:
    ~2 a second under --demo, 20-35 ms each, often just as a key arrived.)
    """

    BORDER_TITLE = "Orders"
    BINDINGS = [
        Binding("c", "app.cancel_selected", "Cancel", id="order.cancel", tooltip="Cancel the selected order"),
        Binding("a", "app.amend_selected", "Amend", id="order.amend",
                tooltip="Change the selected order's price or quantity (cancel/replace)"),
        Binding("enter", "app.order_detail", "Detail", id="order.detail", show=False,
                tooltip="Everything about the selected order: full id, children, fills, reasons"),
    ]
    BORDER_SUBTITLE = "Enter: detail"

    def __init__(self, max_rows: int = 200, **kwargs: Any) -> None:
        # Status comes before the prices, so a narrow table (80 columns) still shows it;
        # slippage and venue, in the detail view, are the first to go.
        super().__init__(
            [Column("id", "Order", 18, keep_end=True, narrow=11), Column("side", "Side", 5),
             Column("sym", "Symbol", 8), Column("type", "Type", 8),
             Column("qty", "Qty", 9, right=True, narrow=8), Column("status", "Status", 17, narrow=11),
             Column("prog", "Filled", 16, narrow=5, crop=True),
             Column("limit", "Limit", 11, right=True, narrow=10), Column("avg", "Avg px", 11, right=True, narrow=10),
             Column("slip", "Slip bps", 9, right=True, narrow=0), Column("venue", "Venue", 14, narrow=0),
             Column("why", "Routing / reason", 10)],
            **kwargs,
        )
        self.max_rows = max_rows
        self._finished: set[str] = set()

    def clear(self) -> None:
        self._finished.clear()
        super().clear()

    def show(self, row: OrderRow) -> None:
        """Draw an order's row from the view model; the --demo flow's ids (not `mine`) are
        dimmed. Its rank (its place in time) lands a row first drawn late in order."""
        status = row.status
        slip = row.slippage_bps
        order_id = row.order_id
        cells = (
            Text(order_id, style="bold") if row.mine else Text(order_id, style="dim"),
            self.side(row.side),
            row.symbol,
            row.order_type,
            fmt_qty(row.quantity),
            self.paint(status.value, STATUS_COLOUR.get(status)),
            progress_bar(row.filled, row.quantity),
            fmt_price(row.price) if row.price is not None else "",
            fmt_price(row.average_price),
            "" if slip is None else f"{slip:+.2f}",
            row.venues or "",
            row.why,
        )
        self.upsert(order_id, cells, rank=row.rank)
        if status.is_final:
            self._finished.add(order_id)
        else:
            self._finished.discard(order_id)
        over = self.row_count - self.max_rows
        if over <= 0:
            return
        selected = self.selected_key()  # never dropped here, so it stays the same
        # The oldest finished rows leave (the rows are in time order: from the far end),
        # unless the operator has one selected.
        rows = self.keys
        oldest_first = rows if not self.newest_first else reversed(rows)
        for key in oldest_first:
            if over <= 0:
                break
            if key in self._finished and key != selected:
                self._finished.discard(key)
                self.drop(key)
                over -= 1


class FillsTape(LiveTable):
    """Newest fill on top; bounded (older fills stay in the engine's history)."""

    BORDER_TITLE = "Fills"

    def __init__(self, max_rows: int = 200, **kwargs: Any) -> None:
        super().__init__(
            # The order id goes last: at half the screen's width it is the one cut short,
            # from the left, since ids differ at their end.
            [Column("t", "Time", 13), Column("side", "Side", 5),
             Column("sym", "Symbol", 8), Column("qty", "Qty", 9, right=True), Column("px", "Price", 11, right=True),
             Column("venue", "Venue", 7), Column("liq", "Liq", 4), Column("fee", "Fee", 7, right=True),
             Column("id", "Order", 22, keep_end=True)],
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
        _, fill = entry
        self.upsert(key, (
            clock_fmt(fill.timestamp), self.side(fill.side), fill.symbol,
            fmt_qty(fill.quantity), fmt_price(fill.price), fill.exchange_id,
            fill.liquidity.value[0], f"{fill.fee:,.4f}", fill.order_id,
        ))

    def redraw(self, clock_fmt: Any) -> None:
        self.forget()
        for key, entry in self._fills.items():
            self._draw(key, entry, clock_fmt)


class PositionsPanel(KeyedTable):
    BORDER_TITLE = "Positions"

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(
            [Column("sym", "Symbol", 9), Column("venue", "Venue", 7), Column("net", "Net", 10, right=True),
             Column("avg", "Avg entry", 11, right=True), Column("rpl", "Realized", 11, right=True),
             Column("upl", "Unrealized", 11, right=True), Column("fees", "Fees", 10, right=True)],
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

    def write(self, content: Any, width: int | None = None, expand: bool = False, shrink: bool = True,
              scroll_end: bool | None = None, animate: bool = False) -> EventLog:
        # RichLog measures a line against the console's width (80 in a headless or
        # unmeasured console), so a wide desk wrapped its log at 80 columns: wrap at the
        # log's own width once it is known.
        if width is None and self.scrollable_content_region.width > 0:
            width = self.scrollable_content_region.width
        super().write(content, width, expand, shrink, scroll_end, animate)
        return self


class StatusBar(Static):
    pass


class DeskFooter(Footer):
    """Textual's Footer (8.2), without its leak. Each recompose (every focus or screen
    change) data-binds its new keys to the footer's `compact`, and the old keys'
    watchers stay on the footer, holding the removed widgets, until `compact`
    changes, which on this desk it never does: ~16 widgets (3,000 objects) kept per
    ticket opened, found by a soak of the desk. Dropping the watchers of detached keys
    after each recompose keeps it at one set."""

    async def recompose(self) -> None:
        await super().recompose()
        watchers = getattr(self, "__watchers", {}).get("compact")
        if watchers:
            watchers[:] = [(node, callback) for node, callback in watchers if node.is_attached]
