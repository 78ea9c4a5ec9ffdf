"""The simulated exchange, and the clients that wrap any venue.

`SimulatedExchange` is a venue in-process: per symbol a real order book
(`engine.venues.book`, price-time priority) that matches, surrounded by a seeded
simulated market. It implements both `engine.venues.base.Venue` (sync) and
`AsyncVenue` (the `_async` methods).

Rules of this module:

* Sans-IO core, thin edges. `_begin` decides faults, rate limit and latency
  for a request from the seeded RNGs and may raise; `_do_submit`,
  `_do_cancel`, ... apply a request. `_flow` strings them together as a
  decision in the engine's one sans-IO shape (`engine.sansio`) that yields
  its waits; `drive` sleeps them with `clock.sleep`, `drive_async` with
  `await clock.sleep_async`. The edges are the only code that sleeps, and
  nothing is written twice. A quiet venue (no latency, no faults) skips the
  decision altogether. `submit_many` takes a batch in one request.
* The market lives in the clock's time, without a thread: on every call the
  venue first catches up to `clock.now()` in steps of `MarketConfig.step_s`
  (the random-walk mid moves, simulated takers trade against whatever rests
  - the operator's orders included -, simulated makers re-quote and top up
  the levels that flow depleted). When nothing is due this costs one
  comparison. After a long gap only the last `max_catchup_steps` steps are
  simulated (the mid takes the skipped steps' drift in one draw). `tick()`
  does just the catch-up.
* Deterministic: same seed, same instruments, same calls at the same
  virtual times -> the same fills, prices and trade ids. Faults, latency and
  the market draw from separate RNG streams, so turning faults on does not
  change the market's path.
* Exact: the book works in integer ticks and lots; floats are made from them
  through the `Instrument`, and a fully filled order reports
  `filled_quantity == order.quantity` exactly.
* A refusal that concerns one order (unknown symbol, off tick or lot, under
  the minimum, parent order type, duplicate client order id, cancel of a
  finished order) is an `OrderResult` with status REJECTED and a reason,
  never an exception. Exceptions are the venue's failures (`engine.errors`).
* Each instrument's filters (maximum quantity, minimum and maximum notional
  per order, as real spot exchanges have) are checked before anything
  matches, on submit and amend: a market order's notional is judged at the
  far touch (the mid when that side is empty). A breach is REJECTED with a
  reason naming the filter and both values, and the book is left alone.
* A client order id the venue still remembers never makes a second order:
  working orders always, finished ones among the last `remember_ids`.
* Listeners are called after the venue's lock is released, in the order the
  events happened, on the thread of a call into the venue (possibly another
  caller's). A listener may call back into the venue. A listener that
  raises is logged and the others still run.
* Thread-safe: one lock guards the venue's state; sleeps happen outside it.
"""

from __future__ import annotations

import dataclasses
import logging
import heapq
import math
import random
import threading
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from itertools import islice
from types import MappingProxyType
from typing import Any


from ..book import BookOrder, Remainder
from ...clock import Clock, RealClock
from ...sansio import Decision, Request, drive, drive_async
from ...errors import (
    ConfigurationError,
    PermanentVenueError,
    RateLimitedError,
    TransientVenueError,
    UnknownOrderError,
    UnknownOutcomeError,
    VenueError,
    VenueUnavailableError,
)
from ...models import (
    FeeSchedule,
    Fill,
    Instrument,
    Liquidity,
    Order,
    OrderResult,
    OrderSide,
    OrderStatus,
    OrderType,
    TimeInForce,
)
from ...market_data import (
    BookLevel,
    BookSnapshot,
    ExecutionReport,
    PublicTrade,
    ReportListener,
    TradeListener,
)
from .config import (
    DEFAULT_FEES,
    DEFAULT_INSTRUMENTS,
    DEFAULT_START_PRICES,
    VENUE_PRESETS,
    FaultConfig,
    LatencyModel,
    MarketConfig,
    UnknownSymbolError,
    VenueCounters,
    positive,
    utc_text,
    whole,
)
from .market import ReferenceMarket, SymbolMarket

__all__ = ["SimulatedExchange"]

log = logging.getLogger(__name__)

_BUY, _SELL = OrderSide.BUY, OrderSide.SELL
_MARKET, _LIMIT = OrderType.MARKET, OrderType.LIMIT
_MAKER, _TAKER = Liquidity.MAKER, Liquidity.TAKER
_NEW = OrderStatus.NEW
_PARTIAL = OrderStatus.PARTIALLY_FILLED
_FILLED = OrderStatus.FILLED
_CANCELED = OrderStatus.CANCELED
_REJECTED = OrderStatus.REJECTED
_EXPIRED = OrderStatus.EXPIRED
_IOC, _FOK, _DAY, _GTD = TimeInForce.IOC, TimeInForce.FOK, TimeInForce.DAY, TimeInForce.GTD
_REST, _EXPIRE, _ALL_OR_NONE = Remainder.REST, Remainder.EXPIRE, Remainder.ALL_OR_NONE

_DAY_S = 86_400.0
# Finished orders keep their fills (for status()) among this many most recent;
# older ones keep only their summary, so memory per remembered id stays small.
_FILLS_KEPT = 10_000
# With a shared reference price, a venue's own offset keeps this much of itself
# per step, and its spread settles at _OFFSET_SHARE times one step's volatility
# (about half a basis point with the defaults): venues disagree a little, never for long.
_OFFSET_REVERSION = 0.9
_OFFSET_SHARE = 1.0
_MISS = object()
# Operations that get every fault; the rest (status, open orders) only errors and outages.
_ORDER_OPS = frozenset({"submit", "cancel", "amend"})




class _Working:
    """A user order the venue is working (resting on the book)."""

    __slots__ = (
        "cid", "market", "side", "quantity", "lots", "price", "expire_at", "tif",
        "filled", "notional", "fills",
    )

    def __init__(
        self,
        cid: str,
        market: SymbolMarket,
        side: OrderSide,
        quantity: float,
        lots: int,
        price: float | None,
        tif: TimeInForce,
        expire_at: float | None,
        filled: int,
        notional: int,
        fills: list[Fill],
    ) -> None:
        self.cid = cid
        self.market = market
        self.side = side
        self.quantity = quantity
        self.lots = lots
        self.price = price
        self.tif = tif
        self.expire_at = expire_at
        self.filled = filled
        self.notional = notional
        self.fills = fills

    def filled_quantity(self) -> float:
        # Exact when complete: the caller's own float, not a conversion of it.
        if self.filled == self.lots:
            return self.quantity
        return self.market.instrument.lots_to_quantity(self.filled)

    def leaves_quantity(self) -> float:
        return self.market.instrument.lots_to_quantity(self.lots - self.filled)


class _Plan:
    """What `_begin` decided for one request: sleep `delay`, and whether it times out."""

    __slots__ = ("delay", "timeout_s", "reached")

    def __init__(self, delay: float, timeout_s: float | None = None, reached: bool = False) -> None:
        self.delay = delay
        self.timeout_s = timeout_s
        self.reached = reached


# A finished order's summary: (status, symbol, side, quantity, price,
# filled_quantity, average_price, reason, ts), or (status,) once it is old. Status
# and side are kept by value (strings): a tuple of only strings and numbers is one
# the cycle collector stops walking, and a venue remembers 100,000 of them.
_Done = tuple
_SUMMARIES_KEPT = 100_000
_STATUS_ONLY = {status.value: (status.value,) for status in OrderStatus}


class SimulatedExchange:
    """An in-process venue with a matching order book and a seeded market.

    See the module docstring for its rules. `instruments` may be a mapping
    symbol -> Instrument or an iterable of them; `start_prices` gives the
    first mid per symbol (defaults exist for the default instruments).
    """

    # Its orders live and die with this process: a restart finds none of them (recovery
    # ends them rather than asking; see engine.recovery).
    in_process = True
    # A status query sees every order the venue took, at once: "not found" is believed.
    status_is_immediate = True

    def __init__(
        self,
        name: str = "sim",
        *,
        clock: Clock | None = None,
        seed: int = 0,
        instruments: Mapping[str, Instrument] | Iterable[Instrument] | None = None,
        fees: FeeSchedule = DEFAULT_FEES,
        latency: LatencyModel = LatencyModel(),
        faults: FaultConfig = FaultConfig(),
        market: MarketConfig = MarketConfig(),
        remember_ids: int = 1_000_000,
        remember_details: int = _SUMMARIES_KEPT,
        start_prices: Mapping[str, float] | None = None,
        reference: ReferenceMarket | None = None,
    ) -> None:
        if not isinstance(name, str) or not name.strip():
            raise ConfigurationError(f"name must be a non-empty string, got {name!r}")
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise ConfigurationError(f"seed must be a whole number, got {seed!r}")
        whole("remember_ids", remember_ids)
        whole("remember_details", remember_details)
        if not isinstance(fees, FeeSchedule):
            raise ConfigurationError(f"fees must be a FeeSchedule, got {fees!r}")
        if not isinstance(market, MarketConfig):
            raise ConfigurationError(f"market must be a MarketConfig, got {market!r}")
        self.name = name
        self.fees = fees
        self.counters = VenueCounters()
        self._clock: Clock = clock if clock is not None else RealClock()
        self._seed = seed
        self._cfg = market
        self._reference = reference
        self._remember_max = remember_ids
        self._lock = threading.Lock()

        if instruments is None:
            insts = dict(DEFAULT_INSTRUMENTS)
        elif isinstance(instruments, Mapping):
            insts = dict(instruments)
        else:
            insts = {i.symbol: i for i in instruments}
        if not insts:
            raise ConfigurationError("instruments must list at least one Instrument")
        prices = dict(DEFAULT_START_PRICES)
        prices.update(start_prices or {})
        self._instruments = MappingProxyType(insts)
        self._symbols = ", ".join(insts)

        # Separate streams so one kind of randomness never shifts another.
        self._market_rng = random.Random(f"{seed}/market")
        self._fault_rng = random.Random(f"{seed}/faults")
        self._latency_rng = random.Random(f"{seed}/latency")

        self._markets: dict[str, SymbolMarket] = {}
        for symbol, inst in insts.items():
            if symbol != inst.symbol:
                raise ConfigurationError(
                    f"instrument listed under {symbol!r} is for {inst.symbol!r}"
                )
            start = prices.get(symbol)
            if start is None:
                raise ConfigurationError(
                    f"no start price for {symbol}: pass start_prices={{{symbol!r}: ...}}"
                )
            positive(f"start price of {symbol}", start)
            self._markets[symbol] = SymbolMarket(inst, float(start), market, self._market_rng)
        self._market_list = list(self._markets.values())

        self._live: dict[str, _Working] = {}
        self._done: dict[str, _Done] = {}
        self._done_ids: deque[str] = deque()
        self._done_fills: dict[str, list[Fill]] = {}
        self._summaries: deque[str] = deque()  # ids whose full summary is still kept
        # Finished orders keep their full summary among the newest `remember_details`;
        # older ones keep only their status (all the duplicate-id check needs).
        self._summaries_kept = min(remember_details, remember_ids)
        self._fills_ids: deque[str] = deque()
        self._fills_kept = min(_FILLS_KEPT, remember_ids)
        self._expiries: list[tuple[float, int, _Working]] = []
        self._seq = 0  # expiry tie-breaker
        self._trade_seq = 0
        self._maker_seq = 0

        self._outbox: deque[ExecutionReport | PublicTrade] = deque()
        self._dispatching = threading.Lock()
        self._report_listeners: tuple[ReportListener, ...] = ()
        self._trade_listeners: tuple[TradeListener, ...] = ()

        self._requests: deque[float] = deque()  # accepted order requests, trailing second
        self._outage_end = -math.inf
        self._spike_end = -math.inf
        self._spike_extra = 0.0
        self._faults = FaultConfig()
        self._latency = LatencyModel()
        self._quiet = True
        self.faults = faults
        self.latency = latency

        self._t0 = self._clock.now()
        self._k = 1  # index of the next market step, due at t0 + k * step_s
        for m in self._market_list:
            self._requote(m, self._t0)  # the book starts stocked
        self._next_due = self._t0 + market.step_s

    @classmethod
    def from_preset(
        cls, name: str, *, clock: Clock | None = None, seed: int = 0, **overrides: Any
    ) -> SimulatedExchange:
        """A venue configured by one of `VENUE_PRESETS` (keyword arguments override it)."""
        preset = VENUE_PRESETS.get(name)
        if preset is None:
            raise ConfigurationError(
                f"unknown venue preset {name!r} (presets: {', '.join(VENUE_PRESETS)})"
            )
        kwargs = {**preset, **overrides}
        return cls(name, clock=clock, seed=seed, **kwargs)

    def __repr__(self) -> str:
        return f"SimulatedExchange({self.name!r}, symbols=[{self._symbols}])"

    # -- configuration -------------------------------------------------------------
    @property
    def answers_at_once(self) -> bool:
        """True while a request is answered without waiting (no simulated latency, no
        faults, no outage or spike): its sync calls give the async ones' answers."""
        return self._quiet

    @property
    def clock(self) -> Clock:
        return self._clock

    @property
    def seed(self) -> int:
        return self._seed

    @property
    def market(self) -> MarketConfig:
        return self._cfg

    @property
    def faults(self) -> FaultConfig:
        return self._faults

    @faults.setter
    def faults(self, value: FaultConfig) -> None:
        if not isinstance(value, FaultConfig):
            raise ConfigurationError(f"faults must be a FaultConfig, got {value!r}")
        with self._lock:
            self._faults = value
            self._requests.clear()
            self._update_quiet(self._clock.now())

    @property
    def latency(self) -> LatencyModel:
        return self._latency

    @latency.setter
    def latency(self, value: LatencyModel) -> None:
        if not isinstance(value, LatencyModel):
            raise ConfigurationError(f"latency must be a LatencyModel, got {value!r}")
        with self._lock:
            self._latency = value
            self._update_quiet(self._clock.now())

    def set_faults(self, **changes: Any) -> None:
        """Change some fault settings, keeping the others: `set_faults(error_rate=0.1)`."""
        known = [f.name for f in dataclasses.fields(FaultConfig)]
        unknown = sorted(set(changes) - set(known))
        if unknown:
            raise ConfigurationError(
                f"unknown fault setting {unknown[0]!r} (settings: {', '.join(known)})"
            )
        self.faults = dataclasses.replace(self._faults, **changes)

    def start_outage(self, duration_s: float) -> None:
        """Every request (and book/trades) raises VenueUnavailableError for `duration_s`."""
        positive("duration_s", duration_s)
        with self._lock:
            self._outage_end = self._clock.now() + duration_s
            self._quiet = False

    def end_outage(self) -> None:
        with self._lock:
            self._outage_end = -math.inf
            self._update_quiet(self._clock.now())

    def start_latency_spike(self, extra_s: float, duration_s: float) -> None:
        """Add `extra_s` to every request's latency for `duration_s`."""
        positive("extra_s", extra_s)
        positive("duration_s", duration_s)
        with self._lock:
            self._spike_end = self._clock.now() + duration_s
            self._spike_extra = float(extra_s)
            self._quiet = False

    def _update_quiet(self, now: float) -> None:
        self._quiet = (
            not self._faults.active
            and not self._latency.median_s
            and now >= self._outage_end
            and now >= self._spike_end
        )

    # -- listeners -------------------------------------------------------------------
    def add_report_listener(self, listener: ReportListener) -> None:
        with self._lock:
            self._report_listeners = (*self._report_listeners, listener)

    def remove_report_listener(self, listener: ReportListener) -> None:
        with self._lock:
            items = list(self._report_listeners)
            if listener in items:
                items.remove(listener)
            self._report_listeners = tuple(items)

    def add_trade_listener(self, listener: TradeListener) -> None:
        with self._lock:
            self._trade_listeners = (*self._trade_listeners, listener)

    def remove_trade_listener(self, listener: TradeListener) -> None:
        with self._lock:
            items = list(self._trade_listeners)
            if listener in items:
                items.remove(listener)
            self._trade_listeners = tuple(items)

    def _dispatch(self) -> None:
        """Deliver queued events, one deliverer at a time, in order, outside the state lock."""
        outbox = self._outbox
        while outbox:
            if not self._dispatching.acquire(blocking=False):
                return  # the thread delivering now picks ours up too (it re-checks)
            try:
                while outbox:
                    try:
                        event = outbox.popleft()
                    except IndexError:
                        break
                    listeners: tuple[Callable[[Any], None], ...] = (
                        self._report_listeners
                        if type(event) is ExecutionReport
                        else self._trade_listeners
                    )
                    for listener in listeners:
                        try:
                            listener(event)
                        except Exception:  # a broken consumer must not break the venue
                            log.exception("%s: listener %r failed on %r", self.name, listener, event)
            finally:
                self._dispatching.release()

    # -- the edges: the only code that sleeps ----------------------------------------------
    def _run(self, flow: Decision[Any]) -> Any:
        try:
            return drive(flow, self._sleep)
        finally:
            if self._outbox:
                self._dispatch()

    async def _run_async(self, flow: Decision[Any]) -> Any:
        try:
            return await drive_async(flow, self._sleep_async)
        finally:
            if self._outbox:
                self._dispatch()

    def _sleep(self, request: Request) -> None:
        self._clock.sleep(request.arg)  # the flow's only request: a wait

    async def _sleep_async(self, request: Request) -> None:
        await self._clock.sleep_async(request.arg)

    def submit(self, order: Order) -> OrderResult:
        """NEW, PARTIALLY_FILLED (the rest rests), FILLED, EXPIRED (IOC/FOK/market
        remainder, with the reason) or REJECTED (venue rules, with the reason)."""
        if self._quiet:
            result = self._do_submit(order)
            if self._outbox:
                self._dispatch()
            return result
        return self._run(self._flow("submit", order.client_order_id, self._do_submit, order))

    def submit_many(self, orders: Sequence[Order]) -> list[OrderResult | VenueError]:
        """Each order as `submit` would take it, in order, in one request: per order its
        answer, or the error its request raised (a fault hits one order, not the batch)."""
        answers: list[OrderResult | VenueError] = []
        if self._quiet:
            do_submit = self._do_submit
            answers = [do_submit(order) for order in orders]
            if self._outbox:
                self._dispatch()
            return answers
        for order in orders:
            try:
                answers.append(self.submit(order))
            except VenueError as exc:
                answers.append(exc)
        return answers

    async def submit_async(self, order: Order) -> OrderResult:
        if self._quiet:
            result = self._do_submit(order)
            if self._outbox:
                self._dispatch()
            return result
        return await self._run_async(
            self._flow("submit", order.client_order_id, self._do_submit, order)
        )

    def cancel(self, client_order_id: str) -> OrderResult:
        """CANCELED with what filled so far; REJECTED (the order unchanged, the reason
        saying why) when the order is finished or unknown."""
        return self._run(self._flow("cancel", client_order_id, self._do_cancel, client_order_id))

    async def cancel_async(self, client_order_id: str) -> OrderResult:
        return await self._run_async(
            self._flow("cancel", client_order_id, self._do_cancel, client_order_id)
        )

    def amend(
        self, client_order_id: str, quantity: float | None = None, price: float | None = None
    ) -> OrderResult:
        """Cancel/replace to a new total `quantity` and/or `price` (venue rules apply).

        The order keeps its queue place only when it shrinks at the same price. A
        new price that crosses trades at once (taker fills in the result). REJECTED
        (the order unchanged) for a finished or unknown order, a quantity not above
        what filled, or a price or quantity off the tick or lot.
        """
        return self._run(
            self._flow("amend", client_order_id, self._do_amend, client_order_id, quantity, price)
        )

    async def amend_async(
        self, client_order_id: str, quantity: float | None = None, price: float | None = None
    ) -> OrderResult:
        return await self._run_async(
            self._flow("amend", client_order_id, self._do_amend, client_order_id, quantity, price)
        )

    def status(self, client_order_id: str) -> OrderResult:
        """The order's state with all its fills (a finished order's fills only among
        the last 10,000 finished). Raises UnknownOrderError for an id not remembered."""
        return self._run(self._flow("status", client_order_id, self._do_status, client_order_id))

    async def status_async(self, client_order_id: str) -> OrderResult:
        return await self._run_async(
            self._flow("status", client_order_id, self._do_status, client_order_id)
        )

    def open_orders(self, symbol: str | None = None) -> list[OrderResult]:
        """Working orders, oldest first."""
        return self._run(self._flow("open_orders", symbol or "", self._do_open_orders, symbol))

    async def open_orders_async(self, symbol: str | None = None) -> list[OrderResult]:
        return await self._run_async(
            self._flow("open_orders", symbol or "", self._do_open_orders, symbol)
        )

    def book(self, symbol: str, depth: int = 10) -> BookSnapshot:
        """Aggregated levels, best first. Available except during an outage."""
        result = self._do_book(symbol, depth)
        if self._outbox:
            self._dispatch()
        return result

    async def book_async(self, symbol: str, depth: int = 10) -> BookSnapshot:
        return self.book(symbol, depth)

    def trades(self, symbol: str, since: float | None = None) -> list[PublicTrade]:
        """Public trades after `since` (all kept ones when None), oldest first."""
        result = self._do_trades(symbol, since)
        if self._outbox:
            self._dispatch()
        return result

    def instruments(self) -> Mapping[str, Instrument]:
        """Always available: reference data a client keeps (even during an outage)."""
        return self._instruments

    def check_books(self) -> None:
        """Assert every symbol's book keeps its invariants (sorted, totals right, nothing
        crossed, the id index exact); for tests and soak runs."""
        with self._lock:
            for m in self._markets.values():
                m.book.check()

    def tick(self) -> None:
        """Catch the market up to the clock (the desk calls it on a timer)."""
        with self._lock:
            now = self._clock.now()
            if now >= self._next_due:
                self._advance(now)
        if self._outbox:
            self._dispatch()

    # -- the core: faults and latency ----------------------------------------------------
    def _flow(self, op: str, subject: str, apply: Callable[..., Any], *args: Any) -> Decision[Any]:
        """One request as a sans-IO decision (engine.sansio): yields the waits, returns the answer."""
        plan = self._begin(op, subject)
        timeout = plan.timeout_s
        if timeout is None:
            if plan.delay <= 0:
                return apply(*args)
            yield Request("sleep", plan.delay)
            answer = apply(*args)
            if isinstance(answer, OrderResult):
                # The simulated round trip, stamped on the answer: the router's breaker and
                # profiler take it instead of their own timer, which also counts what the
                # caller waited for (the GIL, a busy loop) as the venue being slow.
                answer.ack_latency_ns = round(plan.delay * 1e9)
            return answer
        # The request may reach the book before the answer is lost.
        first = min(plan.delay, timeout)
        if first > 0:
            yield Request("sleep", first)
        if plan.reached:
            apply(*args)
        if timeout - first > 0:
            yield Request("sleep", timeout - first)
        raise UnknownOutcomeError(
            f"{op} of {subject!r} at {self.name} timed out after {timeout:g} s: it may or may "
            f"not have reached the book; ask status({subject!r}) before resending",
            venue=self.name,
        )

    def _fail(self, kind: type[Exception], message: str) -> Exception:
        errors = self.counters.errors
        errors[kind.__name__] = errors.get(kind.__name__, 0) + 1
        return kind(message, venue=self.name)  # type: ignore[call-arg]

    def _begin(self, op: str, subject: str) -> _Plan:
        """Decide this request's fate: raise a fault, or say how long it takes."""
        with self._lock:
            now = self._clock.now()
            if now < self._outage_end:
                raise self._fail(
                    VenueUnavailableError,
                    f"{self.name} is unavailable (outage until {utc_text(self._outage_end)}, "
                    f"{self._outage_end - now:.3f} s left): {op} of {subject!r} was not done",
                )
            f = self._faults
            order_op = op in _ORDER_OPS
            if order_op and f.rate_limit_per_s is not None:
                window = self._requests
                cutoff = now - 1.0
                while window and window[0] <= cutoff:
                    window.popleft()
                if len(window) >= f.rate_limit_per_s:
                    raise self._fail(
                        RateLimitedError,
                        f"{self.name} allows {f.rate_limit_per_s} order requests per second: "
                        f"{op} of {subject!r} was refused, retry later",
                    )
                window.append(now)
            timeout_s: float | None = None
            reached = False
            if f.error_rate or (order_op and (f.reject_rate or f.timeout_rate)):
                u = self._fault_rng.random()
                if u < f.error_rate:
                    raise self._fail(
                        TransientVenueError,
                        f"{self.name} failed {op} of {subject!r} (injected error, "
                        f"rate {f.error_rate:g}); nothing was done, safe to retry",
                    )
                if order_op:
                    u -= f.error_rate
                    if u < f.reject_rate:
                        raise self._fail(
                            PermanentVenueError,
                            f"{self.name} refused {op} of {subject!r} for good (injected "
                            f"reject, rate {f.reject_rate:g}); nothing was done",
                        )
                    if u - f.reject_rate < f.timeout_rate:
                        timeout_s = f.timeout_s
                        reached = self._fault_rng.random() < 0.5
                        errors = self.counters.errors
                        errors["UnknownOutcomeError"] = errors.get("UnknownOutcomeError", 0) + 1
            delay = self._latency.sample(self._latency_rng) if self._latency.median_s else 0.0
            if now < self._spike_end:
                delay += self._spike_extra
            self._update_quiet(now)
            return _Plan(delay, timeout_s, reached)

    # -- the core: requests ---------------------------------------------------------------
    def _do_submit(self, order: Order) -> OrderResult:
        with self._lock:
            now = self._clock.now()
            if now >= self._next_due:
                self._advance(now)
            self.counters.submitted += 1
            cid = order.client_order_id
            if cid in self._live or cid in self._done:
                self.counters.rejected += 1
                rec = self._live.get(cid)
                if rec is not None:
                    status = _PARTIAL if rec.filled else _NEW
                else:
                    status = OrderStatus(self._done[cid][0])
                return OrderResult(
                    cid, self.name, _REJECTED, order.quantity, 0.0, None, [],
                    f"duplicate client order id {cid!r}: {self.name} still remembers it "
                    f"({status.value}); no new order was made",
                    order.symbol, order.side, order.price, now,
                )  # fmt: skip
            m = self._markets.get(order.symbol)
            if m is None:
                return self._refuse(
                    order,
                    f"unknown symbol {order.symbol!r} at {self.name} (symbols: {self._symbols})",
                    now,
                )
            inst = m.instrument
            otype = order.type
            if otype is _MARKET:
                price = None
            elif otype is _LIMIT:
                price = m.ticks(order.price)  # type: ignore[arg-type]
                if price is None:
                    return self._refuse(
                        order,
                        f"price {order.price!r} is not a multiple of the tick "
                        f"{inst.tick_size} for {m.symbol}",
                        now,
                    )
            else:
                return self._refuse(
                    order,
                    f"the venue accepts MARKET and LIMIT orders; {otype.value} is worked by "
                    "the engine",
                    now,
                )
            lots = m.lot_cache.get(order.quantity, _MISS)
            if lots is _MISS:
                lots = m.lots(order.quantity)
            if lots is None or lots < m.min_lots:
                return self._refuse(order, self._size_problem(m, order.quantity, lots), now)
            if m.filtered:
                problem = m.filter_refusal(order.side, order.quantity, order.price)
                if problem is not None:
                    return self._refuse(order, problem, now)
            tif = order.time_in_force
            expire_at = None
            if tif is _FOK:
                remainder = _ALL_OR_NONE
            elif price is None or tif is _IOC:
                remainder = _EXPIRE
            else:
                remainder = _REST
                if tif is _DAY:
                    expire_at = (math.floor(now / _DAY_S) + 1) * _DAY_S
                elif tif is _GTD:
                    expire_at = order.expire_at
                    if expire_at <= now:  # type: ignore[operator]
                        return self._refuse(
                            order,
                            f"expire_at {expire_at!r} ({utc_text(expire_at)}) is not after the "  # type: ignore[arg-type]
                            f"venue's time {now!r}",
                            now,
                        )
            side = order.side
            ex = m.book.submit(cid, side, lots, price, remainder)
            filled = ex.filled
            if filled:
                fills, notional = self._trade(m, ex.fills, side, now, cid, order.quantity, lots)
            else:
                fills, notional = [], 0
            resting = ex.resting
            if resting is not None:
                rec = _Working(
                    cid, m, side, order.quantity, lots, order.price, tif, expire_at,
                    filled, notional, fills,
                )  # fmt: skip
                resting.owner = rec
                self._live[cid] = rec
                if expire_at is not None:
                    self._schedule_expiry(rec)
                return OrderResult(
                    cid, self.name, _PARTIAL if filled else _NEW, order.quantity,
                    rec.filled_quantity(), m.average(notional, filled), list(fills), None,
                    m.symbol, side, order.price, now,
                )  # fmt: skip
            if filled == lots:
                status, reason, filled_q = _FILLED, None, order.quantity
                self.counters.filled += 1
            else:
                status = _EXPIRED
                filled_q = inst.lots_to_quantity(filled)
                reason = self._expiry_reason(m, order, tif, price, lots, filled_q)
                self.counters.expired += 1
            # One fill (the common case): its price is the average, no division needed.
            avg = fills[0].price if len(fills) == 1 else m.average(notional, filled)
            self._remember(
                cid, status, m.symbol, side, order.quantity, order.price, filled_q, avg, reason, now, fills
            )
            return OrderResult(
                cid, self.name, status, order.quantity, filled_q, avg, fills, reason,
                m.symbol, side, order.price, now,
            )  # fmt: skip

    def _size_problem(self, m: SymbolMarket, quantity: float, lots: int | None) -> str:
        inst = m.instrument
        if (lots is not None and lots < m.min_lots) or quantity < float(inst.min_quantity):
            return f"quantity {quantity!r} is under the minimum {inst.min_quantity} for {m.symbol}"
        return f"quantity {quantity!r} is not a multiple of the lot {inst.lot_size} for {m.symbol}"

    def _expiry_reason(
        self,
        m: SymbolMarket,
        order: Order,
        tif: TimeInForce,
        price: int | None,
        lots: int,
        filled_q: float,
    ) -> str:
        at = "at any price" if price is None else f"at {order.price!r} or better"
        if tif is _FOK:
            avail = m.book.available(order.side, price, lots)
            return (
                f"FOK: only {m.instrument.lots_to_quantity(avail)!r} of {order.quantity!r} "
                f"available {at}; nothing filled"
            )
        if price is None:
            return f"no liquidity left on the book: filled {filled_q!r} of {order.quantity!r}"
        return f"IOC: filled {filled_q!r} of {order.quantity!r}; nothing more {at}"

    def _refuse(self, order: Order, reason: str, now: float) -> OrderResult:
        """A venue-rule rejection: remembered under its id, like any finished order."""
        self.counters.rejected += 1
        cid = order.client_order_id
        self._remember(
            cid, _REJECTED, order.symbol, order.side, order.quantity, order.price, 0.0, None, reason, now, []
        )
        return OrderResult(
            cid, self.name, _REJECTED, order.quantity, 0.0, None, [], reason, order.symbol,
            order.side, order.price, now,
        )  # fmt: skip

    def _do_cancel(self, cid: str) -> OrderResult:
        with self._lock:
            now = self._clock.now()
            if now >= self._next_due:
                self._advance(now)
            rec = self._live.get(cid)
            if rec is None:
                return self._not_working(cid, "cancel", now)
            rec.market.book.cancel(cid)
            reason = "canceled by request"
            result = self._live_result(rec, _CANCELED, reason, list(rec.fills), now)
            self._finish(rec, _CANCELED, reason, now)
            self.counters.canceled += 1
            return result

    def _do_amend(self, cid: str, quantity: float | None, price: float | None) -> OrderResult:
        with self._lock:
            now = self._clock.now()
            if now >= self._next_due:
                self._advance(now)
            rec = self._live.get(cid)
            if rec is None:
                return self._not_working(cid, "amend", now)
            m = rec.market
            inst = m.instrument

            def refuse(why: str) -> OrderResult:
                return self._live_result(
                    rec, _REJECTED, f"amend of {cid!r} refused: {why}; the order is unchanged",
                    [], now,
                )  # fmt: skip

            if quantity is None and price is None:
                return refuse("give a new quantity or a new price")
            new_lots = new_ticks = None
            if price is not None:
                if (
                    isinstance(price, bool)
                    or not isinstance(price, (int, float))
                    or not math.isfinite(price)
                    or price <= 0
                ):
                    return refuse(f"price must be finite and > 0, got {price!r}")
                new_ticks = m.ticks(price)
                if new_ticks is None:
                    return refuse(
                        f"price {price!r} is not a multiple of the tick {inst.tick_size} "
                        f"for {m.symbol}"
                    )
            if quantity is not None:
                if (
                    isinstance(quantity, bool)
                    or not isinstance(quantity, (int, float))
                    or not math.isfinite(quantity)
                    or quantity <= 0
                ):
                    return refuse(f"quantity must be finite and > 0, got {quantity!r}")
                new_lots = m.lots(quantity)
                if new_lots is None or new_lots < m.min_lots:
                    return refuse(self._size_problem(m, quantity, new_lots))
                if new_lots <= rec.filled:
                    return refuse(
                        f"quantity {quantity!r} is not above the {rec.filled_quantity()!r} "
                        "already filled; cancel it instead"
                    )
            if m.filtered:
                problem = m.filter_refusal(
                    rec.side,
                    rec.quantity if quantity is None else quantity,
                    rec.price if price is None else price,
                )
                if problem is not None:
                    return refuse(problem)
            ex = m.book.amend(cid, new_lots, new_ticks)
            if quantity is not None:
                rec.quantity, rec.lots = float(quantity), new_lots  # type: ignore[assignment]
            if price is not None:
                rec.price = float(price)
            self.counters.amended += 1
            fills: list[Fill] = []
            if ex.filled:
                fills, notional = self._trade(
                    m, ex.fills, rec.side, now, cid, rec.quantity, rec.lots
                )
                rec.filled += ex.filled
                rec.notional += notional
                rec.fills.extend(fills)
            if ex.resting is None:  # the new price crossed and filled all of it
                result = self._live_result(rec, _FILLED, None, fills, now)
                self._finish(rec, _FILLED, None, now)
                self.counters.filled += 1
                return result
            ex.resting.owner = rec
            return self._live_result(rec, _PARTIAL if rec.filled else _NEW, None, fills, now)

    def _do_status(self, cid: str) -> OrderResult:
        with self._lock:
            now = self._clock.now()
            if now >= self._next_due:
                self._advance(now)
            rec = self._live.get(cid)
            if rec is not None:
                return self._live_result(
                    rec, _PARTIAL if rec.filled else _NEW, None, list(rec.fills), now
                )
            done = self._done.get(cid)
            if done is None:
                raise UnknownOrderError(
                    f"order {cid!r} is not known at {self.name}: it never arrived, or it is "
                    f"older than the last {self._remember_max} finished orders remembered"
                )
            return self._done_result(cid, done)

    def _do_open_orders(self, symbol: str | None) -> list[OrderResult]:
        with self._lock:
            now = self._clock.now()
            if now >= self._next_due:
                self._advance(now)
            return [
                self._live_result(rec, _PARTIAL if rec.filled else _NEW, None, list(rec.fills), now)
                for rec in self._live.values()
                if symbol is None or rec.market.symbol == symbol
            ]

    def _check_up(self) -> float:
        """For book/trades: refuse during an outage; catch up. Returns now (lock held)."""
        now = self._clock.now()
        if now < self._outage_end:
            raise self._fail(
                VenueUnavailableError,
                f"{self.name} is unavailable (outage until {utc_text(self._outage_end)}, "
                f"{self._outage_end - now:.3f} s left)",
            )
        if now >= self._next_due:
            self._advance(now)
        return now

    def _market_of(self, symbol: str) -> SymbolMarket:
        m = self._markets.get(symbol)
        if m is None:
            raise UnknownSymbolError(
                f"unknown symbol {symbol!r} at {self.name} (symbols: {self._symbols})"
            )
        return m

    def _do_book(self, symbol: str, depth: int) -> BookSnapshot:
        with self._lock:
            now = self._check_up()
            m = self._market_of(symbol)
            cached = m.snapshots.get(depth)
            if cached is None:
                whole("depth", depth, 0)
                if len(m.snapshots) >= 8:
                    m.snapshots.clear()  # bounded: readers use a few depths
                cached = m.snapshots[depth] = [-1, (), {}, -1, (), {}]
            book = m.book
            # Rebuild only a side that changed since this depth was last read.
            for i, side in ((0, _BUY), (3, _SELL)):
                version = book.version(side)
                if cached[i] != version:
                    cached[i + 1], cached[i + 2] = self._levels(m, side, depth, cached[i + 2])
                    cached[i] = version
            return BookSnapshot(self.name, symbol, cached[1], cached[4], now)

    @staticmethod
    def _levels(
        m: SymbolMarket, side: OrderSide, depth: int, shown: dict[int, tuple[int, int, BookLevel]]
    ) -> tuple[tuple[BookLevel, ...], dict[int, tuple[int, int, BookLevel]]]:
        """The side's levels; a level unchanged since `shown` keeps its BookLevel."""
        inst = m.instrument
        fresh: dict[int, tuple[int, int, BookLevel]] = {}
        out = []
        for p, lots, n in m.book.depth(side, depth):
            seen = shown.get(p)
            if seen is None or seen[0] != lots or seen[1] != n:
                seen = (lots, n, BookLevel(inst.ticks_to_price(p), inst.lots_to_quantity(lots), n))
            fresh[p] = seen
            out.append(seen[2])
        return tuple(out), fresh

    def _do_trades(self, symbol: str, since: float | None) -> list[PublicTrade]:
        with self._lock:
            self._check_up()
            m = self._market_of(symbol)
            fresh = min(m.traded - m.printed, len(m.tape))
            if fresh:
                price, qty, name = m.instrument.ticks_to_price, m.instrument.lots_to_quantity, self.name
                m.prints.extend(
                    PublicTrade(name, symbol, price(p), qty(l), side, ts)
                    for ts, p, l, side in islice(m.tape, len(m.tape) - fresh, None)
                )
                m.printed = m.traded
            if since is None:
                return list(m.prints)
            picked = []
            for trade in reversed(m.prints):  # newest first: stop at `since`
                if trade.ts_event <= since:
                    break
                picked.append(trade)
        picked.reverse()
        return picked

    # -- results and memory -----------------------------------------------------------------
    def _live_result(
        self,
        rec: _Working,
        status: OrderStatus,
        reason: str | None,
        fills: list[Fill],
        now: float,
    ) -> OrderResult:
        m = rec.market
        return OrderResult(
            rec.cid, self.name, status, rec.quantity, rec.filled_quantity(),
            m.average(rec.notional, rec.filled), fills, reason, m.symbol, rec.side, rec.price, now,
        )  # fmt: skip

    def _done_result(self, cid: str, done: _Done) -> OrderResult:
        if len(done) == 1:  # only its status is kept any more (see _remember)
            return OrderResult(
                cid, self.name, OrderStatus(done[0]),
                reason=f"finished long ago: only its status is kept (last {self._summaries_kept} "
                "orders keep their details)",
            )
        status, symbol, side, quantity, price, filled_q, avg, reason, ts = done
        fills = list(self._done_fills.get(cid, ()))
        return OrderResult(
            cid, self.name, OrderStatus(status), quantity, filled_q, avg, fills, reason, symbol,
            OrderSide(side), price, ts,
        )

    def _not_working(self, cid: str, op: str, now: float) -> OrderResult:
        """The answer to cancel/amend of an order that is not working: REJECTED, with why."""
        done = self._done.get(cid)
        if done is None:
            return OrderResult(
                cid, self.name, _REJECTED,
                reason=f"{op} refused: order {cid!r} is not known at {self.name}",
                timestamp=now,
            )  # fmt: skip
        result = self._done_result(cid, done)
        result.reason = f"{op} refused: order {cid!r} is already {done[0]}"
        result.status = _REJECTED
        result.timestamp = now
        return result

    def _finish(self, rec: _Working, status: OrderStatus, reason: str | None, ts: float) -> None:
        del self._live[rec.cid]
        m = rec.market
        self._remember(
            rec.cid, status, m.symbol, rec.side, rec.quantity, rec.price, rec.filled_quantity(),
            m.average(rec.notional, rec.filled), reason, ts, rec.fills,
        )  # fmt: skip

    def _remember(
        self, cid: str, status: OrderStatus, symbol: str, side: OrderSide, quantity: float,
        price: float | None, filled: float, average: float | None, reason: str | None, ts: float,
        fills: list[Fill],
    ) -> None:
        """Keep a finished order's summary among the last `remember_ids`, its fills
        among the last few thousand: memory stays bounded however long the run."""
        # One tuple, status and side by value: see _Done.
        self._done[cid] = (status.value, symbol, side.value, quantity, price, filled, average, reason, ts)
        ids = self._done_ids
        ids.append(cid)
        if len(ids) > self._remember_max:
            old = ids.popleft()
            del self._done[old]
            self._done_fills.pop(old, None)
        # Only the newest orders keep their details; older ones keep just a shared
        # (status,) tuple, which is all the duplicate-id check needs: a million
        # remembered ids cost their keys, not a million summaries.
        full = self._summaries
        full.append(cid)
        if len(full) > self._summaries_kept:
            old = full.popleft()
            summary = self._done.get(old)
            if summary is not None and len(summary) > 1:
                self._done[old] = _STATUS_ONLY[summary[0]]
        if fills:
            self._done_fills[cid] = fills
            kept = self._fills_ids
            kept.append(cid)
            if len(kept) > self._fills_kept:
                self._done_fills.pop(kept.popleft(), None)

    # -- fills -------------------------------------------------------------------------------
    def _trade(
        self,
        m: SymbolMarket,
        matches: list[tuple[BookOrder, int, int]],
        aggressor: OrderSide,
        ts: float,
        cid: str | None = None,
        quantity: float = 0.0,
        lots: int = 0,
    ) -> tuple[list[Fill], int]:
        """Settle the matches of one incoming order: the tape, the public trades,
        the resting user orders' fills and, for a user's order (`cid`), its own
        taker fills. Returns those fills and the traded sum of ticks * lots."""
        seq = self._trade_seq
        self._trade_seq = seq + len(matches)
        tape, listeners, inst, name = m.tape, self._trade_listeners, m.instrument, self.name
        fills: list[Fill] = []
        notional = 0
        for maker, p, l in matches:
            seq += 1
            notional += p * l
            tape.append((ts, p, l, aggressor))
            m.traded += 1
            if listeners:
                self._outbox.append(
                    PublicTrade(
                        name, m.symbol, inst.ticks_to_price(p), inst.lots_to_quantity(l),
                        aggressor, ts,
                    )
                )  # fmt: skip
            trade_id = None
            if maker.owner is not None:
                trade_id = f"{name}-{seq}"
                self._maker_fill(maker.owner, p, l, trade_id, ts)
            if cid is not None:
                price = inst.ticks_to_price(p)
                # One fill for the whole order: report the caller's own float, exactly.
                qty = quantity if l == lots else inst.lots_to_quantity(l)
                fills.append(
                    Fill(cid, name, m.symbol, aggressor, price, qty,
                         self.fees.fee(price * qty, _TAKER), _TAKER, ts,
                         trade_id or f"{name}-{seq}")
                )  # fmt: skip
        if fills:
            self.counters.fills += len(fills)
        return fills, notional

    def _maker_fill(self, rec: _Working, p: int, lots: int, trade_id: str, ts: float) -> None:
        """A resting user order traded: update it and report it to the listeners."""
        m = rec.market
        inst = m.instrument
        rec.filled += lots
        rec.notional += p * lots
        price = inst.ticks_to_price(p)
        qty = inst.lots_to_quantity(lots)
        fill = Fill(
            rec.cid, self.name, m.symbol, rec.side, price, qty, self.fees.fee(price * qty, _MAKER),
            _MAKER, ts, trade_id,
        )  # fmt: skip
        rec.fills.append(fill)
        self.counters.fills += 1
        if rec.filled >= rec.lots:
            status = _FILLED
            self._finish(rec, _FILLED, None, ts)
            self.counters.filled += 1
        else:
            status = _PARTIAL
        if self._report_listeners:
            self._outbox.append(
                ExecutionReport(
                    self.name, rec.cid, m.symbol, status, rec.filled_quantity(),
                    rec.leaves_quantity(), ts, fill,
                )
            )  # fmt: skip

    # -- time: expiries and the simulated market ----------------------------------------------
    def _schedule_expiry(self, rec: _Working) -> None:
        heap = self._expiries
        if len(heap) > 2 * len(self._live) + 1024:
            # Orders that finished early leave entries behind: drop them now and then.
            heap[:] = [e for e in heap if self._live.get(e[2].cid) is e[2]]
            heapq.heapify(heap)
        self._seq += 1
        heapq.heappush(heap, (rec.expire_at, self._seq, rec))  # type: ignore[arg-type]
        if rec.expire_at < self._next_due:  # type: ignore[operator]
            self._next_due = rec.expire_at  # type: ignore[assignment]

    def _expire(self, rec: _Working, t: float) -> None:
        if self._live.get(rec.cid) is not rec:
            return  # finished before its time
        rec.market.book.cancel(rec.cid)
        if rec.tif is _DAY:
            reason = f"DAY order expired at the end of the UTC day ({utc_text(t)})"
        else:
            reason = f"GTD order expired at its expire_at {t!r} ({utc_text(t)})"
        self._finish(rec, _EXPIRED, reason, t)
        self.counters.expired += 1
        if self._report_listeners:
            self._outbox.append(
                ExecutionReport(
                    self.name, rec.cid, rec.market.symbol, _EXPIRED, rec.filled_quantity(), 0.0,
                    t, None, reason,
                )
            )  # fmt: skip

    def _advance(self, now: float) -> None:
        """Run expiries and market steps due up to `now`, in time order (lock held)."""
        step = self._cfg.step_s
        t0 = self._t0
        k = self._k
        due = int((now - t0) / step) - k + 1
        cap = self._cfg.max_catchup_steps
        if due > cap:
            # A long gap: simulate only the last `cap` steps; the mid takes the
            # skipped steps' drift in one draw, so its distribution stays right.
            skipped = due - cap
            t_skip = t0 + (k + skipped - 1) * step
            for m in self._market_list:
                self._walk(m, t_skip, skipped)
            k += skipped
        heap = self._expiries
        while True:
            t_step = t0 + k * step
            if heap and heap[0][0] < t_step:
                t_exp = heap[0][0]
                if t_exp > now:
                    break
                self._expire(heapq.heappop(heap)[2], t_exp)
            else:
                if t_step > now:
                    break
                for m in self._market_list:
                    self._step(m, t_step)
                self.counters.market_steps += 1
                k += 1
        self._k = k
        t_step = t0 + k * step
        self._next_due = min(t_step, heap[0][0]) if heap else t_step

    def _walk(self, m: SymbolMarket, t: float, steps: int = 1) -> None:
        reference = self._reference
        if reference is None:
            move = self._market_rng.gauss(0.0, m.mid * m.sigma * math.sqrt(steps))
            m.mid = max(m.mid + move, m.floor)
            return
        # Follow the shared price with a small offset of our own that reverts to zero.
        keep = _OFFSET_REVERSION**steps
        m.offset = m.offset * keep + self._market_rng.gauss(0.0, m.sigma * _OFFSET_SHARE) * math.sqrt(1 - keep * keep)
        ref_ticks = reference.mid(m.symbol, t) * m.tick_den / m.tick_num
        m.mid = max(ref_ticks * (1.0 + m.offset), m.floor)

    def _step(self, m: SymbolMarket, t: float) -> None:
        """One step of market time: the mid moves, makers re-quote, takers trade."""
        self._walk(m, t)
        self._requote(m, t)
        rng = self._market_rng
        # Poisson number of taker orders this step (Knuth; the rate is small).
        lam = self._cfg.taker_rate_per_s * self._cfg.step_s
        limit, p, n = math.exp(-lam), rng.random(), 0
        while p > limit:
            n += 1
            p *= rng.random()
        book = m.book
        for _ in range(n):
            side = _BUY if rng.random() < 0.5 else _SELL
            lots = max(m.min_lots, int(rng.expovariate(1.0) * m.taker_lots))
            ex = book.submit(None, side, lots, None, _EXPIRE)
            if ex.fills:
                self._trade(m, ex.fills, side, t)

    def _requote(self, m: SymbolMarket, t: float) -> None:
        """Makers pull quotes that left their grid around the mid and top up the rest.

        The grid is aligned to multiples of the level spacing, so a small move
        of the mid leaves most quotes (and everyone's queue places) alone. A
        maker quote that crosses a stale resting order fills it at that
        order's price: that is how the market moving through a passive order
        fills it.
        """
        sp, levels = m.spacing, self._cfg.levels
        b0 = math.floor((m.mid - m.half) / sp) * sp
        a0 = math.ceil((m.mid + m.half) / sp) * sp
        if a0 <= b0:
            a0 = b0 + sp
        bid_lo, ask_hi = b0 - levels * sp, a0 + levels * sp
        book = m.book
        for quotes, lo, hi in ((m.bid_quotes, bid_lo, b0), (m.ask_quotes, a0 - 1, ask_hi - 1)):
            for price in [p for p in quotes if not lo < p <= hi]:
                for o in quotes.pop(price):
                    if o.leaves:
                        book.cancel(o.order_id)
        refill = self._cfg.refill_fraction
        for k in range(levels):
            bid = b0 - k * sp
            if bid > 0:
                self._top_up(m, m.bid_quotes, _BUY, bid, m.bid_lots[k], refill, t)
            self._top_up(m, m.ask_quotes, _SELL, a0 + k * sp, m.ask_lots[k], refill, t)

    def _top_up(
        self,
        m: SymbolMarket,
        quotes: dict[int, list[BookOrder]],
        side: OrderSide,
        price: int,
        target: int,
        refill: float,
        t: float,
    ) -> None:
        orders = quotes.get(price)
        have = 0
        if orders:
            if not all(o.leaves for o in orders):
                orders[:] = [o for o in orders if o.leaves]
            for o in orders:
                have += o.leaves
        missing = target - have
        if missing <= 0 or (have and missing < target * refill):
            return
        self._maker_seq += 1
        ex = m.book.submit(self._maker_seq, side, missing, price, _REST)
        if ex.fills:
            self._trade(m, ex.fills, side, t)
        if ex.resting is not None:
            if orders is None:
                quotes[price] = [ex.resting]
            else:
                orders.append(ex.resting)

