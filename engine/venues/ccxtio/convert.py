"""CCXT's unified structures to ours and back: plain functions on dicts, no I/O, no ccxt import.

Rules:

- A market gives an `Instrument`: tick from `precision.price`, lot from `precision.amount`
  (CCXT's TICK_SIZE mode, the mode of every exchange this adapter is used with; a market
  in another mode is refused by name), minimum quantity from `limits.amount.min` (else one
  lot), the maximum quantity and the notional bounds from `limits.amount.max` and
  `limits.cost`. A market without a price or amount precision is left out.
- A CCXT order status maps to ours: open -> NEW (PARTIALLY_FILLED once something filled),
  closed -> FILLED (short of the quantity: CANCELED for a resting order, else EXPIRED), canceled -> CANCELED, expired -> EXPIRED, rejected -> REJECTED,
  canceling -> PENDING_CANCEL; none (an exchange that answers a create with the ids only,
  as bybit does) -> NEW, to be settled by a status query.
- Fills: the order's own `trades` when the exchange gives them (binance's FULL create
  reply), and one fill for each increase of `filled` they do not show, priced so that the
  order's average stays what the exchange says, with the increase of the order's fee.
  `filled` is the total: trades that would take the count past it (already counted under
  a derived id) are not counted again, and a `filled` that goes down adds nothing. A fill's trade id
  is the exchange's, or `<order id>:<cumulative quantity>` for a derived one, so the
  router counts each once however often it is seen.
- Fees are in the quote currency, as our positions count them: a fee charged in the base
  currency is converted at the fill's price; a fee in a third currency (BNB) cannot be,
  and counts 0 here (the exchange's statement has it).
"""

from __future__ import annotations

import math
from decimal import Decimal
from typing import Any

from engine.market_data import BookLevel, BookSnapshot
from engine.models import Fill, Instrument, Liquidity, OrderSide, OrderStatus

__all__ = ["book_snapshot", "fee_in_quote", "instrument_of", "new_fills", "number", "status_of"]

_STATUS = {
    "open": OrderStatus.NEW,
    "closed": OrderStatus.FILLED,
    "canceled": OrderStatus.CANCELED,
    "cancelled": OrderStatus.CANCELED,
    "expired": OrderStatus.EXPIRED,
    "rejected": OrderStatus.REJECTED,
    "canceling": OrderStatus.PENDING_CANCEL,
}


def number(value: Any) -> float | None:
    """A finite float from what CCXT gives (float, int, numeric str), else None."""
    if value is None or isinstance(value, bool):
        return None
    try:
        out = float(value)
    except (TypeError, ValueError):
        return None
    return out if math.isfinite(out) else None


def _positive_decimal(value: Any) -> Decimal | None:
    out = number(value)
    return Decimal(str(out)) if out is not None and out > 0 else None


def instrument_of(market: dict[str, Any]) -> Instrument | None:
    """Our instrument for a CCXT market (None when it lacks a tick or a lot)."""
    precision = market.get("precision") or {}
    tick = _positive_decimal(precision.get("price"))
    lot = _positive_decimal(precision.get("amount"))
    if tick is None or lot is None:
        return None
    limits = market.get("limits") or {}
    amount = limits.get("amount") or {}
    cost = limits.get("cost") or {}
    min_quantity = _positive_decimal(amount.get("min")) or lot
    max_quantity = _positive_decimal(amount.get("max"))
    if max_quantity is not None and max_quantity < min_quantity:
        max_quantity = None
    min_notional = _positive_decimal(cost.get("min"))
    max_notional = _positive_decimal(cost.get("max"))
    if min_notional is not None and max_notional is not None and max_notional < min_notional:
        max_notional = None
    return Instrument(str(market["symbol"]), tick, lot, min_quantity, max_quantity, min_notional, max_notional)


def status_of(order: dict[str, Any], quantity: float, *, resting: bool = False) -> OrderStatus:
    """Our status for a CCXT order of our `quantity`. "closed" short of the quantity is
    CANCELED for a `resting` order (GTC limit: canceled after a partial fill, which bybit
    reports as closed), else EXPIRED (an IOC or market remainder)."""
    raw = order.get("status")
    status = _STATUS.get(raw, OrderStatus.NEW) if raw is not None else OrderStatus.NEW
    filled = number(order.get("filled")) or 0.0
    if status is OrderStatus.NEW and filled > 0:
        status = OrderStatus.PARTIALLY_FILLED
    if status is OrderStatus.FILLED and quantity and filled < quantity * (1 - 1e-9):
        status = OrderStatus.CANCELED if resting else OrderStatus.EXPIRED
    return status


def fee_in_quote(fee: Any, market: dict[str, Any] | None, price: float) -> float:
    if not isinstance(fee, dict):
        return 0.0
    cost = number(fee.get("cost")) or 0.0
    currency = fee.get("currency")
    if market is None or currency in (None, market.get("quote")):
        return cost
    if currency == market.get("base"):
        return cost * price
    return 0.0


def new_fills(
    order: dict[str, Any], *, cid: str, venue: str, symbol: str, side: OrderSide, known_qty: float,
    known_notional: float, known_fee: float, known_trades: set[str], market: dict[str, Any] | None,
    maker: bool, now: float,
) -> list[Fill]:
    """The fills in `order` (a CCXT order) not yet counted: its trades not in `known_trades`,
    else what `filled` grew by since `known_qty` (see the module rules)."""
    trades = [t for t in order.get("trades") or [] if isinstance(t, dict)]
    filled = number(order.get("filled"))
    fills: list[Fill] = []
    for trade in trades:
        qty, price = number(trade.get("amount")), number(trade.get("price"))
        if not qty or not price or qty <= 0 or price <= 0:
            continue
        tid = str(trade.get("id") or f"{order.get('id')}:{trade.get('timestamp')}:{price}:{qty}")
        if tid in known_trades:
            continue
        role = trade.get("takerOrMaker")
        liquidity = Liquidity.MAKER if role == "maker" or (role is None and maker) else Liquidity.TAKER
        ts = number(trade.get("timestamp"))
        fills.append(Fill(cid, venue, symbol, side, price, qty, fee_in_quote(trade.get("fee"), market, price),
                          liquidity, ts / 1000 if ts else now, tid))
    if filled is None:
        return fills  # no total to check the trades against
    listed = math.fsum(f.quantity for f in fills)
    eps = 1e-9 * max(filled, 1.0)
    if listed > filled - known_qty + eps:
        fills = []  # trades already counted under a derived id (or beyond the total): the total rules
    rest = filled - known_qty - math.fsum(f.quantity for f in fills)
    if rest <= eps:
        return fills
    # The part of `filled` no listed trade shows: one fill, priced so the order's average holds.
    counted_notional = known_notional + math.fsum(f.quantity * f.price for f in fills)
    average = number(order.get("average"))
    if average is None:
        cost = number(order.get("cost"))
        average = cost / filled if cost else number(order.get("price"))
    if not average or average <= 0:
        return fills
    price = (average * filled - counted_notional) / rest
    if not math.isfinite(price) or price <= 0:
        price = average
    fee_total = fee_in_quote(order.get("fee"), market, average)
    fee = max(fee_total - known_fee - math.fsum(f.fee for f in fills), 0.0)
    ts = number(order.get("lastTradeTimestamp")) or number(order.get("lastUpdateTimestamp"))
    tid = f"{order.get('id')}:{filled:.12g}"
    liquidity = Liquidity.MAKER if maker else Liquidity.TAKER
    fills.append(Fill(cid, venue, symbol, side, price, rest, fee, liquidity, ts / 1000 if ts else now, tid))
    return fills


def book_snapshot(venue: str, symbol: str, book: dict[str, Any], depth: int, now: float) -> BookSnapshot:
    """Our snapshot of a CCXT order book (levels with a price and size > 0, best first)."""

    def side(levels: Any) -> tuple[BookLevel, ...]:
        out = []
        for level in levels or []:
            if not isinstance(level, (list, tuple)) or len(level) < 2:
                continue
            price, size = number(level[0]), number(level[1])
            if price and size and price > 0 and size > 0:
                out.append(BookLevel(price, size))
            if len(out) >= depth:
                break
        return tuple(out)

    ts = number(book.get("timestamp"))
    return BookSnapshot(venue, symbol, side(book.get("bids")), side(book.get("asks")), ts / 1000 if ts else now)
