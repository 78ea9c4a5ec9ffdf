"""Positions and P&L per symbol and venue, from fills and mids (pure: no clock, no venue).

Rules:

* Average cost. A fill that adds to a position (or opens one) moves the
  average entry price; a fill against it realizes (exit - entry) x closed
  quantity for a long, (entry - exit) x closed for a short; a fill larger
  than the position closes it and opens the rest the other way at the fill
  price.
* Realized P&L is before fees; fees paid are kept apart (a rebate is a
  negative fee); net P&L = realized + unrealized - fees.
* Unrealized P&L is marked to a mid the caller passes (the engine passes
  the merged book's mid), net quantity x (mid - average entry). Without a
  mid it is 0 and `mark` is None.
* Two views: per (symbol, venue), each venue's fills a book of their own,
  and per symbol across venues. They differ on purpose: a buy at one venue
  and a sell at another is a long and a short per venue but realized P&L
  for the symbol.
* A fill is counted once. The same fill may be reported twice (a submit's
  answer and a later status or cancel answer carry it again); it is known
  by (venue, order id, trade id), and the last `remember` keys are kept.
* Quantities are summed as Decimals of the fills' own floats, so a
  position that is closed is exactly 0, not 1e-17.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal

from .models import Fill, OrderSide

__all__ = ["Position", "PositionBook"]

_ZERO = Decimal(0)


@dataclass(frozen=True, slots=True)
class Position:
    """A position as the desk shows it. `venue` None: all venues of the symbol."""

    symbol: str
    venue: str | None
    net_quantity: float  # signed: > 0 long, < 0 short
    average_entry: float | None  # None when flat
    realized_pnl: float
    unrealized_pnl: float
    fees: float
    mark: float | None
    bought: float
    sold: float
    fills: int

    @property
    def net_pnl(self) -> float:
        return self.realized_pnl + self.unrealized_pnl - self.fees


class _Book:
    """One running position (average cost)."""

    __slots__ = ("qty", "avg", "realized", "fees", "bought", "sold", "fills")

    def __init__(self) -> None:
        self.qty = _ZERO
        self.avg = 0.0
        self.realized = 0.0
        self.fees = 0.0
        self.bought = _ZERO
        self.sold = _ZERO
        self.fills = 0

    def apply(self, side: OrderSide, quantity: Decimal, price: float, fee: float) -> None:
        self.fills += 1
        self.fees += fee
        signed = quantity if side is OrderSide.BUY else -quantity
        if side is OrderSide.BUY:
            self.bought += quantity
        else:
            self.sold += quantity
        q = self.qty
        if q == 0 or (q > 0) == (signed > 0):
            total = abs(q) + quantity
            self.avg = (float(abs(q)) * self.avg + float(quantity) * price) / float(total)
            self.qty = q + signed
            return
        closed = min(abs(q), quantity)
        direction = 1.0 if q > 0 else -1.0
        self.realized += direction * (price - self.avg) * float(closed)
        self.qty = q + signed
        if self.qty == 0:
            self.avg = 0.0
        elif (self.qty > 0) != (q > 0):
            self.avg = price  # flipped: the rest opened at this fill's price

    def snapshot(self, symbol: str, venue: str | None, mark: float | None) -> Position:
        qty = float(self.qty)
        flat = self.qty == 0
        unrealized = qty * (mark - self.avg) if mark is not None and not flat else 0.0
        return Position(
            symbol, venue, qty, None if flat else self.avg, self.realized, unrealized, self.fees,
            mark, float(self.bought), float(self.sold), self.fills,
        )


class PositionBook:
    """Positions fed with `Fill`s; read with mids. Not thread-safe: feed it from one place."""

    def __init__(self, remember: int = 200_000) -> None:
        self._books: dict[tuple[str, str | None], _Book] = {}
        self._seen: OrderedDict[tuple[str, str, str], None] = OrderedDict()
        self._remember = remember

    @staticmethod
    def _key(fill: Fill) -> tuple[str, str, str]:
        trade = fill.trade_id or f"{fill.timestamp!r}/{fill.price!r}/{fill.quantity!r}"
        return (fill.exchange_id, fill.order_id, trade)

    def apply(self, fill: Fill) -> bool:
        """Count one fill; False when it was already counted."""
        key = self._key(fill)
        seen = self._seen
        if key in seen:
            return False
        seen[key] = None
        if len(seen) > self._remember:
            seen.popitem(last=False)
        qty = Decimal(repr(fill.quantity))
        for k in ((fill.symbol, fill.exchange_id), (fill.symbol, None)):
            book = self._books.get(k)
            if book is None:
                book = self._books[k] = _Book()
            book.apply(fill.side, qty, fill.price, fill.fee)
        return True

    def apply_all(self, fills: Iterable[Fill]) -> int:
        return sum(self.apply(f) for f in fills)

    @property
    def symbols(self) -> list[str]:
        return sorted({s for s, v in self._books if v is None})

    def position(self, symbol: str, venue: str | None = None, mark: float | None = None) -> Position:
        book = self._books.get((symbol, venue)) or _Book()
        return book.snapshot(symbol, venue, mark)

    def positions(
        self,
        marks: Mapping[str, float | None] | Callable[[str], float | None] | None = None,
        *,
        by_venue: bool = False,
    ) -> list[Position]:
        """Every position, per symbol (or per symbol and venue), marked with `marks[symbol]`."""
        if marks is None:
            mark_of: Callable[[str], float | None] = lambda s: None
        elif callable(marks):
            mark_of = marks
        else:
            mark_of = marks.get
        cache: dict[str, float | None] = {}
        out = []
        for (symbol, venue), book in sorted(self._books.items(), key=lambda kv: (kv[0][0], kv[0][1] or "")):
            if (venue is None) == by_venue:
                continue
            if symbol not in cache:
                cache[symbol] = mark_of(symbol)
            out.append(book.snapshot(symbol, venue, cache[symbol]))
        return out
