"""A FIX venue's market as its market data says it: instruments and fees from the
SecurityList (y), books from snapshots (W) and incremental refreshes (X), public trades
(MDEntryType 2). Used by `FixVenue`; no I/O.

Rules:

- Written on the venue's loop, read from any thread: reads take a lock, and a book's
  snapshot is built once per change and shared until the next.
- Entries for another venue of a server that hosts several (SecurityExchange 207 not the
  one this venue trades on) are left out.
- A SecurityList entry that cannot be read is skipped and said (`problems`); the rest
  count. Fees come from the first entry that carries them (user-defined 20003/20004).
- Public trades keep the newest `TRADES_KEPT` per symbol; each goes to the trade
  listeners as it arrives (a listener's failure is logged, never raised).
"""

from __future__ import annotations

import calendar
import logging
import math
import threading
from collections import deque
from collections.abc import Callable, Mapping
from decimal import Decimal, InvalidOperation
from types import MappingProxyType
from typing import Any

from engine.market_data import BookLevel, BookSnapshot, PublicTrade, TradeListener
from engine.models import FeeSchedule, Instrument, OrderSide
from engine.venues.fix.codec import Message
from engine.venues.fix.tags import Tag
from engine.venues.sim.config import UnknownSymbolError

log = logging.getLogger(__name__)

TRADES_KEPT = 1000


class _Book:
    __slots__ = ("bids", "asks", "snapshot")

    def __init__(self) -> None:
        self.bids: dict[float, tuple[float, int]] = {}
        self.asks: dict[float, tuple[float, int]] = {}
        self.snapshot: BookSnapshot | None = None


def as_float(text: str | None, default: float = 0.0) -> float:
    if text is None:
        return default
    try:
        value = float(text)
    except ValueError:
        return default
    return value if math.isfinite(value) else default


_TS_CACHE: list[Any] = [None, 0]


def parse_utc(text: str | None) -> float | None:
    """A UTCTimestamp (YYYYMMDD-HH:MM:SS[.sss]) as epoch seconds; None when unreadable."""
    if not text or len(text) < 17:
        return None
    head = text[:17]
    try:
        if _TS_CACHE[0] != head:
            base = calendar.timegm((int(head[0:4]), int(head[4:6]), int(head[6:8]), int(head[9:11]),
                                    int(head[12:14]), int(head[15:17]), 0, 0, 0))
            _TS_CACHE[0], _TS_CACHE[1] = head, base
        frac = text[18:]
        return _TS_CACHE[1] + (int(frac) / 10 ** len(frac) if frac.isdigit() else 0.0)
    except ValueError:
        return None


def groups(msg: Message, count_tag: int, first_tag: int) -> list[dict[int, str]]:
    """The entries of the repeating group counted by `count_tag`, each starting at `first_tag`."""
    entries: list[dict[int, str]] = []
    inside = False
    current: dict[int, str] = {}
    for tag, value in msg.pairs:
        if tag == count_tag:
            inside = True
            continue
        if not inside:
            continue
        if tag == first_tag:
            current = {}
            entries.append(current)
        if entries:
            current.setdefault(tag, value.decode("latin-1"))
    return entries


class MarketView:
    """The instruments, books and public trades of the venue `name` (see the module rules)."""

    def __init__(self, name: str, clock: Callable[[], float]) -> None:
        self.name = name
        self._clock = clock
        #: The venue this one trades on at the counterparty (None: all it sends).
        self.venue_name: str | None = None
        self._lock = threading.Lock()
        self._books: dict[str, _Book] = {}
        self._trades: dict[str, deque[PublicTrade]] = {}
        self._instruments: dict[str, Instrument] = {}
        self._instruments_view: Mapping[str, Instrument] = MappingProxyType(self._instruments)
        self._trade_listeners: tuple[TradeListener, ...] = ()

    # -- reads (any thread) -------------------------------------------------------------------

    def instruments(self) -> Mapping[str, Instrument]:
        return self._instruments_view

    def book(self, symbol: str, depth: int = 10) -> BookSnapshot:
        with self._lock:
            book = self._books.get(symbol)
            if book is None:
                if symbol not in self._instruments:
                    raise UnknownSymbolError(
                        f"unknown symbol {symbol!r} at {self.name} (symbols: {', '.join(self._instruments) or 'none'})"
                    )
                return BookSnapshot(self.name, symbol, (), (), self._clock())
            snap = book.snapshot
            if snap is None:
                bids = tuple(BookLevel(p, q, n) for p, (q, n) in sorted(book.bids.items(), reverse=True))
                asks = tuple(BookLevel(p, q, n) for p, (q, n) in sorted(book.asks.items()))
                snap = book.snapshot = BookSnapshot(self.name, symbol, bids, asks, self._clock())
        if len(snap.bids) > depth or len(snap.asks) > depth:
            return BookSnapshot(self.name, symbol, snap.bids[:depth], snap.asks[:depth], snap.ts_event)
        return snap

    def trades(self, symbol: str, since: float | None = None) -> list[PublicTrade]:
        with self._lock:
            kept = list(self._trades.get(symbol, ()))
        if since is None:
            return kept
        return [t for t in kept if t.ts_event > since]

    def add_trade_listener(self, listener: TradeListener) -> None:
        self._trade_listeners = (*self._trade_listeners, listener)

    def remove_trade_listener(self, listener: TradeListener) -> None:
        self._trade_listeners = tuple(x for x in self._trade_listeners if x != listener)

    # -- what the market data says (the venue's loop) ---------------------------------------------

    def apply_security_list(self, msg: Message, destination: str | None) -> tuple[str | None, FeeSchedule | None,
                                                                                   list[str]]:
        """Take the instruments of `destination` (None: the first venue listed); returns that
        venue's name, the fees the list carries (if any) and what could not be read."""
        venue = destination
        found: dict[str, Instrument] = {}
        fees: FeeSchedule | None = None
        problems: list[str] = []
        for entry in groups(msg, Tag.NoRelatedSym, Tag.Symbol):
            where = entry.get(Tag.SecurityExchange)
            if venue is None and where:
                venue = where  # the venue's first (its default destination)
            if where and venue and where != venue:
                continue
            symbol = entry.get(Tag.Symbol, "")
            try:
                tick = Decimal(entry[Tag.MinPriceIncrement])
                lot = Decimal(entry[Tag.RoundLot] if Tag.RoundLot in entry else entry[Tag.MinTradeVol])
                found[symbol] = Instrument(
                    symbol, tick, lot, Decimal(entry.get(Tag.MinTradeVol) or str(lot)),
                    Decimal(entry[Tag.MaxTradeVol]) if Tag.MaxTradeVol in entry else None,
                    Decimal(entry[Tag.MinNotional]) if Tag.MinNotional in entry else None,
                    Decimal(entry[Tag.MaxNotional]) if Tag.MaxNotional in entry else None,
                )
            except (KeyError, InvalidOperation, ValueError) as exc:
                problems.append(f"security list entry {symbol!r} unreadable: {exc!r}")
                continue
            if fees is None and (Tag.MakerFeeBps in entry or Tag.TakerFeeBps in entry):
                fees = FeeSchedule(as_float(entry.get(Tag.MakerFeeBps)), as_float(entry.get(Tag.TakerFeeBps)))
        with self._lock:
            self._instruments.update(found)
        return venue, fees, problems

    def apply_snapshot(self, msg: Message) -> str | None:
        """A W: the symbol's book as it says (None: not a book of ours)."""
        symbol = msg.get(Tag.Symbol)
        if symbol is None or not self._ours(msg.get(Tag.SecurityExchange)):
            return None
        book = _Book()
        for entry in groups(msg, Tag.NoMDEntries, Tag.MDEntryType):
            kind = entry.get(Tag.MDEntryType)
            if kind in ("0", "1"):
                side = book.bids if kind == "0" else book.asks
                side[as_float(entry.get(Tag.MDEntryPx))] = (as_float(entry.get(Tag.MDEntrySize)),
                                                      int(as_float(entry.get(Tag.NumberOfOrders), 1)))
            elif kind == "2":
                self._public_trade(symbol, entry)
        with self._lock:
            self._books[symbol] = book
        return symbol

    def apply_incremental(self, msg: Message) -> None:
        """An X: each level new, changed or deleted; each trade entry a public trade."""
        entries = groups(msg, Tag.NoMDEntries, Tag.MDUpdateAction)
        with self._lock:
            for entry in entries:
                symbol = entry.get(Tag.Symbol)
                if symbol is None or not self._ours(entry.get(Tag.SecurityExchange)):
                    continue
                kind = entry.get(Tag.MDEntryType)
                side_of = {"0": "bids", "1": "asks"}.get(kind or "")
                if side_of is None:
                    continue
                book = self._books.get(symbol)
                if book is None:
                    book = self._books[symbol] = _Book()
                side = getattr(book, side_of)
                price = as_float(entry.get(Tag.MDEntryPx))
                if entry.get(Tag.MDUpdateAction) == "2":
                    side.pop(price, None)
                else:
                    side[price] = (as_float(entry.get(Tag.MDEntrySize)), int(as_float(entry.get(Tag.NumberOfOrders), 1)))
                book.snapshot = None
        for entry in entries:  # trades, outside the lock (listeners run here)
            if entry.get(Tag.MDEntryType) == "2" and entry.get(Tag.Symbol) and self._ours(entry.get(Tag.SecurityExchange)):
                self._public_trade(entry[Tag.Symbol], entry)

    def _ours(self, where: str | None) -> bool:
        return not (where and self.venue_name and where != self.venue_name)

    def _public_trade(self, symbol: str, entry: dict[int, str]) -> None:
        ts = None
        if Tag.MDEntryDate in entry and Tag.MDEntryTime in entry:
            ts = parse_utc(f"{entry[Tag.MDEntryDate]}-{entry[Tag.MDEntryTime]}")
        trade = PublicTrade(self.name, symbol, as_float(entry.get(Tag.MDEntryPx)), as_float(entry.get(Tag.MDEntrySize)),
                            OrderSide.SELL if entry.get(Tag.AggressorSide) == "2" else OrderSide.BUY,
                            ts if ts is not None else self._clock())
        with self._lock:
            kept = self._trades.get(symbol)
            if kept is None:
                kept = self._trades[symbol] = deque(maxlen=TRADES_KEPT)
            kept.append(trade)
        for listener in self._trade_listeners:
            try:
                listener(trade)
            except Exception:
                log.exception("FIX venue %s: trade listener failed", self.name)


__all__ = ["MarketView", "as_float", "groups", "parse_utc"]
