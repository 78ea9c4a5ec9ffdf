"""The detail view of one order (Enter on the Orders panel): everything the row cuts short.

Its full id, whose it is, type, side, size, limit, status and why; average price,
arrival and slippage for a parent; every child with its own status and venue; the
algorithm's last decisions and their reasons; every fill. It reads the order's state
once on opening and twice a second while open (one look-up), never per event.
"""

from __future__ import annotations

import time
from typing import Any

from rich.console import Group
from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

from engine import OrderResult

from .view_model import fmt_price, fmt_qty

REFRESH_S = 0.5
MAX_LISTED = 200  # children and fills listed (the newest); the counts say how many there are


def _clock(ts: float) -> str:
    return time.strftime("%H:%M:%S", time.gmtime(ts)) + f".{int(ts * 1000) % 1000:03d}"


def order_view(order_id: str, result: OrderResult | None, *, mine: bool, order_type: str) -> Group:
    """The detail of one order as Rich renderables (no Textual: testable on its own)."""
    if result is None:
        return Group(Text(f"{order_id}: unknown to the engine, or finished long enough ago to be forgotten."))
    whose = "yours" if mine else "the --demo flow's"
    side = result.side.value if result.side is not None else ""
    head = Text.assemble((order_id, "bold"), f"  ({whose})\n")
    head.append(f"{order_type or 'order'} {side} {fmt_qty(result.quantity)} {result.symbol}")
    head.append(f" limit {fmt_price(result.price)}" if result.price is not None else " no limit")
    if result.exchange_id:
        head.append(f"  at {result.exchange_id}")
    head.append("\n")
    head.append(result.status.value, style="bold")
    head.append(f"  filled {fmt_qty(result.filled_quantity)} of {fmt_qty(result.quantity)}")
    if result.average_price:
        head.append(f"  avg {fmt_price(result.average_price)}")
    detail = result.detail or {}
    if detail.get("arrival_price"):
        head.append(f"  arrival {fmt_price(detail['arrival_price'])}")
        if detail.get("slippage_bps") is not None:
            head.append(f"  slippage {detail['slippage_bps']:+.2f} bps")
    if result.reason:
        head.append("\nReason: ", style="bold")
        head.append(result.reason)
    parts: list[Any] = [head]
    decisions = detail.get("recent_decisions") or []
    if decisions:
        table = Table(title=f"Last decisions ({detail.get('decisions', len(decisions))} in all)", title_justify="left",
                      expand=True, box=None, show_edge=False)
        for name in ("Time", "Action", "Child", "Why"):
            table.add_column(name, overflow="fold")
        for ts, action, child, why in decisions:
            table.add_row(_clock(ts), str(action), str(child or ""), str(why or ""))
        parts += [Text(""), table]
    children = result.children or []
    if children:
        table = Table(title=f"Children ({len(children)})", title_justify="left", expand=True, box=None,
                      show_edge=False)
        for name in ("Child", "Status", "Filled", "Limit", "Venue", "Reason"):
            table.add_column(name, overflow="fold")
        for child in children[-MAX_LISTED:]:
            table.add_row(child.order_id, child.status.value,
                          f"{fmt_qty(child.filled_quantity)}/{fmt_qty(child.quantity)}",
                          fmt_price(child.price), child.exchange_id or "", child.reason or "")
        parts += [Text(""), table]
    fills = result.fills or []
    table = Table(title=f"Fills ({len(fills)})", title_justify="left", expand=True, box=None, show_edge=False)
    for name in ("Time", "Order", "Qty", "Price", "Venue", "Liq", "Fee"):
        table.add_column(name, overflow="fold")
    for fill in fills[-MAX_LISTED:]:
        table.add_row(_clock(fill.timestamp), fill.order_id, fmt_qty(fill.quantity), fmt_price(fill.price),
                      fill.exchange_id, fill.liquidity.value, f"{fill.fee:,.4f}")
    parts += [Text(""), table if fills else Text("Fills: none yet")]
    return Group(*parts)


class OrderScreen(ModalScreen[None]):
    """One order, whole: opened with Enter on the Orders panel, closed with Esc or Enter."""

    BINDINGS = [
        Binding("escape,enter", "close", "Close", id="detail.close", tooltip="Back to the desk"),
    ]

    def __init__(self, order_id: str, engine: Any, *, mine: bool = True, order_type: str = "") -> None:
        super().__init__()
        self.order_id = order_id
        self.engine = engine
        self.mine = mine
        self.order_type = order_type

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="order-detail"):
            yield Static(id="order-detail-body")

    def on_mount(self) -> None:
        self.query_one("#order-detail").border_title = "Order detail (Esc closes)"
        self._refresh_view()
        self.set_interval(REFRESH_S, self._refresh_view, name="order-detail")

    def _refresh_view(self) -> None:
        result = self.engine.order_status_or_none(self.order_id)
        self.query_one("#order-detail-body", Static).update(
            order_view(self.order_id, result, mine=self.mine, order_type=self.order_type))

    def action_close(self) -> None:
        self.dismiss(None)
