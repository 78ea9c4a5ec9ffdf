"""The market around a simulated venue's books: a shared reference price and each symbol's makers, takers and tape."""

from __future__ import annotations

import math
import random
import threading
from collections import deque
from collections.abc import Mapping
from typing import Any


from ..book import BookOrder, OrderBook
from ...errors import (
    ConfigurationError,
)
from ...models import (
    Instrument,
    OrderSide,
)
from ...market_data import (
    PublicTrade,
)
from .config import DEFAULT_START_PRICES, MarketConfig, non_negative, positive

__all__ = ["ReferenceMarket", "SymbolMarket"]

_BUY = OrderSide.BUY
_CACHE_MAX = 4096  # float -> ticks/lots memo per symbol; cleared when full
_MISS = object()




class ReferenceMarket:
    """One fair price per symbol that several simulated venues follow.

    Independent random walks drift apart (within minutes one venue's ask sits
    under another's bid, which no real market allows for long). A shared
    reference is a seeded walk per symbol in fixed steps, computed lazily
    and only forward, so any venue asking at time t gets the same price
    whoever asked first; each venue adds its own small mean-reverting offset.
    """

    def __init__(
        self,
        seed: int = 0,
        *,
        volatility_bps: float = 1.0,
        step_s: float = 0.2,
        start_prices: Mapping[str, float] | None = None,
    ) -> None:
        non_negative("volatility_bps", volatility_bps)
        positive("step_s", step_s)
        self.seed = seed
        self.step_s = step_s
        self._sigma = volatility_bps / 1e4 * math.sqrt(step_s)
        self._start = dict(DEFAULT_START_PRICES)
        self._start.update(start_prices or {})
        self._t0: float | None = None
        self._walks: dict[str, list[Any]] = {}  # symbol -> [step index, price, rng]
        self._lock = threading.Lock()

    def mid(self, symbol: str, t: float) -> float:
        """The reference price of `symbol` at time `t` (never earlier than the last asked)."""
        with self._lock:
            if self._t0 is None:
                self._t0 = t
            walk = self._walks.get(symbol)
            if walk is None:
                start = self._start.get(symbol)
                if start is None:
                    raise ConfigurationError(f"no reference start price for {symbol}")
                walk = self._walks[symbol] = [0, float(start), random.Random(f"{self.seed}/ref/{symbol}")]
            index = int((t - self._t0) / self.step_s)
            steps = index - walk[0]
            if steps > 0:
                # n steps at once: one draw with sqrt(n) the spread, so gaps cost nothing.
                price = walk[1] * math.exp(walk[2].gauss(0.0, self._sigma * math.sqrt(steps)))
                walk[0], walk[1] = index, price
            return walk[1]


class SymbolMarket:
    """One symbol: its book, the simulated mid and makers, and its tape."""

    __slots__ = (
        "symbol", "instrument", "book", "tick_num", "tick_den", "min_lots", "mid", "floor",
        "spacing", "half", "bid_lots", "ask_lots", "taker_lots", "sigma", "bid_quotes", "ask_quotes",
        "tape", "lot_cache", "tick_cache", "snapshots", "offset", "traded", "prints", "printed",
        "filtered", "notional_filtered",
    )

    def __init__(
        self, inst: Instrument, start: float, cfg: MarketConfig, rng: random.Random
    ) -> None:
        self.symbol = inst.symbol
        self.instrument = inst
        self.book = OrderBook(inst.symbol)
        self.tick_num, self.tick_den = inst.tick_size.as_integer_ratio()
        self.min_lots = inst.min_lots
        self.notional_filtered = inst.min_notional is not None or inst.max_notional is not None
        self.filtered = inst.has_filters
        tick, lot = float(inst.tick_size), float(inst.lot_size)
        self.mid = start / tick  # in ticks, a float: the walk is continuous, quotes round it
        self.offset = 0.0  # relative distance from a shared reference price, if any
        self.spacing = max(1, round(self.mid * cfg.level_spacing_bps / 1e4))
        self.half = self.mid * cfg.half_spread_bps / 1e4
        # Never let the walk take the deepest bid to zero.
        self.floor = float(self.spacing * (cfg.levels + 2))
        base = cfg.level_notional / start / lot
        # Deeper levels hold more; each level's size is jittered once, per side.
        self.bid_lots, self.ask_lots = (
            [
                max(self.min_lots, round(base * (1 + 0.25 * k) * (0.75 + 0.5 * rng.random())))
                for k in range(cfg.levels)
            ]
            for _ in range(2)
        )
        self.taker_lots = max(self.min_lots, round(cfg.taker_mean_notional / start / lot))
        self.sigma = cfg.volatility_bps / 1e4 * math.sqrt(cfg.step_s)  # relative, per step
        self.bid_quotes: dict[int, list[BookOrder]] = {}
        self.ask_quotes: dict[int, list[BookOrder]] = {}
        # (ts, price ticks, lots, aggressor): PublicTrade objects are made only when asked.
        self.tape: deque[tuple[float, int, int, OrderSide]] = deque(maxlen=cfg.trade_history)
        self.traded = 0  # trades ever put on the tape
        # The tape as PublicTrade objects, made once per trade on the first read that
        # needs them (`printed` of the `traded` are made): every running algorithm reads
        # the tape since its last look, and converting the same trades once for each of
        # them cost more than their decisions (~10k trades a look under --demo).
        self.prints: deque[PublicTrade] = deque(maxlen=cfg.trade_history)
        self.printed = 0
        self.lot_cache: dict[float, Any] = {}
        self.tick_cache: dict[float, Any] = {}
        # Snapshots are read for every routing decision: per depth, the levels
        # are reused while the book's version is unchanged, and a level whose
        # size and count did not change keeps its BookLevel object.
        # depth -> [bid version, bids, bids by price, ask version, asks, asks by price]
        self.snapshots: dict[int, list[Any]] = {}

    def lots(self, quantity: float) -> int | None:
        v = self.lot_cache.get(quantity, _MISS)
        if v is _MISS:
            if len(self.lot_cache) >= _CACHE_MAX:
                self.lot_cache.clear()
            v = self.lot_cache[quantity] = self.instrument.quantity_to_lots(quantity)
        return v  # type: ignore[return-value]

    def ticks(self, price: float) -> int | None:
        v = self.tick_cache.get(price, _MISS)
        if v is _MISS:
            if len(self.tick_cache) >= _CACHE_MAX:
                self.tick_cache.clear()
            v = self.tick_cache[price] = self.instrument.price_to_ticks(price)
        return v  # type: ignore[return-value]

    def reference_price(self, side: OrderSide) -> float:
        """Where a market order of `side` would start trading: the far touch, else the mid."""
        book = self.book
        ticks = book.best_ask() if side is _BUY else book.best_bid()
        if ticks is None:
            return self.mid * self.tick_num / self.tick_den
        return ticks * self.tick_num / self.tick_den

    def filter_refusal(self, side: OrderSide, quantity: float, price: float | None) -> str | None:
        """The instrument's filters on one order (`price` None: a market order)."""
        if price is None and self.notional_filtered:
            return self.instrument.filter_refusal(quantity, self.reference_price(side), market=True)
        return self.instrument.filter_refusal(quantity, price)

    def average(self, notional: int, lots: int) -> float | None:
        """Average price from sum(ticks*lots): one correctly rounded division."""
        if not lots:
            return None
        return notional * self.tick_num / (lots * self.tick_den)


