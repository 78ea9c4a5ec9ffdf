"""Per-venue order routing: the checks no order or child may skip.

`OrderRouter` (sync) and `AsyncOrderRouter` (anyio) share one core,
`_RouterCore`: registration, pre-trade checks (halt, venue enabled, circuit
breaker, latency gate, risk limits and hooks), bookkeeping after each venue answer
(breaker, profiler, fill ratio, events) and the retry/reconciliation decision
loop. The fronts differ only in how they perform a venue call: the decision
loop is a generator that yields the venue request it wants made
(`engine.sansio.Request`) and receives the answer or the exception, h11-style, so the sync
and async drivers are a few lines each and the logic exists once.

Rules:

* The client order id is the idempotency key. A retry after a transient
  error resends the same id; after an unknown outcome (timeout) nothing is
  resent until a status query says the venue does not have the order.
* Resubmitting an order the router already knows, with the same fields,
  returns that order's current state instead of a second order; the same id
  with different fields is refused. A resubmission while the first send is
  still in flight waits for that send's outcome and returns it (from another
  thread or loop too): it never makes a second order, and never turns the
  venue's "duplicate id" refusal into the order's state.
* Risk limits (`engine.risk`), when given, are the last pre-trade check:
  every order and child is admitted by the `RiskChecker` before its venue
  call, an amend is judged as the order it would make, and every new state
  of an admitted order is reported back to the checker.
* Venue trouble comes back as an `OrderResult` with status and reason, never
  as an exception; it is logged with the order id at WARNING, and nothing is
  logged per order on the success path.

Threads and loops. Every router may be called from any thread and any event
loop at once. One lock per router guards its bookkeeping (orders, orders in
flight, the unreconciled set, venue statistics); it is held for bookkeeping
only, never across a venue call, a wait or a listener. Registered venues,
listeners and checks are replaced whole, never changed in place, so the hot
path reads them without the lock. Events and listener calls leave through one
outbox in the order the changes were made under the lock, delivered by one
thread at a time: a listener never sees an order's states out of order, and a
listener's exception is logged, never handed to the caller of an order that
went out.

An order's state (h11 `_state.py` style). Answers (submit, cancel, amend,
status) and pushed execution reports are merged by one rule:

* A final state (FILLED, CANCELED, REJECTED, EXPIRED) never changes.
* A fill counts once, known by its trade id (its time, price and size when
  the venue gives none); a fill that truly happened counts even when its
  report arrives after the order ended, and the state stays final.
* Filled quantity only grows: a report older than what the router knows
  (lower cumulative quantity, or an earlier state: PENDING_NEW < NEW <
  PARTIALLY_FILLED) adds its fill if new and changes nothing else.
* Reports that arrive while the first send is in flight are kept and applied,
  in order, right after its answer.

Timing. The breaker and the profiler are fed the venue's time, not the
caller's: a venue that measures its own round trip says so in its answer's
`ack_latency_ns` and the router takes it; otherwise the router times the venue
call alone (its own bookkeeping, locks and listeners are outside the timed
span; events raised by reports a sync venue pushes during the call are
delivered after it).
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import dataclasses
import logging
import math
import random
import threading
import weakref
from collections.abc import Callable, Coroutine, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import anyio
from anyio.from_thread import BlockingPortal

from ..resilience.breaker import BreakerConfig, BreakerState, BreakerTransition, CircuitBreaker
from ..clock import Clock, ClockEvent, RealClock
from ..errors import (
    ConfigurationError,
    ExecdeskError,
    PermanentVenueError,
    UnknownOrderError,
    UnknownOutcomeError,
    UnknownVenueError,
    VenueError,
)
from ..events import (
    BreakerStateChanged,
    Event,
    OrderAccepted,
    OrderAmended,
    OrderCanceled,
    OrderCancelRejected,
    OrderDenied,
    OrderExpired,
    OrderFilled,
    OrderPendingCancel,
    OrderRejected,
    OrderSubmitted,
    VenueDisabled,
    VenueEnabled,
)
from ..models import FeeSchedule, Fill, Liquidity, Order, OrderResult, OrderStatus, OrderType, quote
from ..profiler import LatencyProfiler
from ..resilience.retry import RetryPolicy, RetryState
from ..risk import RiskChecker, RiskLimits
from ..sansio import Decision, Request, drive, drive_async
from ..store import OrderRecord, OrderStore, fill_key, merge_result
from ..market_data import BookSnapshot, ExecutionReport

log = logging.getLogger("execdesk.router")

# What a venue raises that the retry decision reads as an answer (a status query's
# "not found" included), not as a failure of the engine.
_ANSWERS = (VenueError, UnknownOrderError)

__all__ = ["OrderRouter", "AsyncOrderRouter", "PreTradeCheck", "VenueStats"]

# A pre-trade check returns None to pass or a one-line reason to refuse.
PreTradeCheck = Callable[[Order, str], "str | None"]
OrderListener = Callable[[OrderResult], None]

_EWMA = 0.05  # weight of the newest order in the fill-ratio and error-rate averages

_PENDING_NEW = OrderStatus.PENDING_NEW
_REJECTED = OrderStatus.REJECTED
_CANCELED = OrderStatus.CANCELED
_EXPIRED = OrderStatus.EXPIRED
_FILLED = OrderStatus.FILLED
_PARTIAL = OrderStatus.PARTIALLY_FILLED
_PENDING_CANCEL = OrderStatus.PENDING_CANCEL


@dataclass(slots=True)
class VenueStats:
    """What the smart router and the desk read about a venue's recent behaviour."""

    requests: int = 0
    orders: int = 0
    fills: int = 0
    errors: int = 0
    rejects: int = 0
    fill_ratio: float = 1.0  # EWMA of filled / quantity of orders that finished
    error_rate: float = 0.0  # EWMA of failed requests
    retried: int = 0
    reconciled: int = 0


@dataclass(slots=True)
class _Slot:
    id: str
    client: Any
    breaker: CircuitBreaker
    enabled: bool = True
    disabled_reason: str = ""
    stats: VenueStats = field(default_factory=VenueStats)
    gate_checked_at: float = float("-inf")
    gate_reason: str | None = None
    p95_ms: float = 0.0
    listener: Callable[[ExecutionReport], None] | None = None


class _Flight:
    """An order between its admission and the first answer about it (guarded by the
    router's lock). Resends of the same order wait on it; reports that arrive before
    the answer wait in `reports`."""

    __slots__ = ("order", "venue", "thread", "reports", "waiters", "result")

    def __init__(self, order: Order, venue: str, thread: int) -> None:
        self.order = order
        self.venue = venue
        self.thread = thread  # a sync resend on this thread would wait for itself
        self.reports: list[ExecutionReport] | None = None
        self.waiters: list[Any] | None = None  # clock events, (loop, future) pairs
        self.result: OrderResult | None = None


def _wake(waiters: Sequence[Any], result: OrderResult) -> None:
    for waiter in waiters:
        if type(waiter) is tuple:
            loop, future = waiter
            try:
                loop.call_soon_threadsafe(_resolve, future, result)
            except RuntimeError:  # that loop is closed: nobody is left to wait
                pass
        else:
            waiter.set()


def _resolve(future: asyncio.Future[OrderResult], result: OrderResult) -> None:
    if not future.done():
        future.set_result(result)


class _RouterCore:
    """State and decisions shared by the sync and async routers (no I/O here)."""

    def __init__(
        self,
        latency_profiler: LatencyProfiler | None = None,
        *,
        clock: Clock | None = None,
        max_retries: int | None = None,
        retry_delay: float | None = None,
        retry_policy: RetryPolicy | None = None,
        breaker_config: BreakerConfig | None = None,
        max_latency_s: float | None = 0.5,
        latency_window_s: float = 60.0,
        remember_orders: int = 100_000,
        seed: int | None = 0,
        on_event: Callable[[Event], None] | None = None,
        risk: RiskLimits | None = None,
        store: OrderStore | None = None,
    ) -> None:
        self.clock: Clock = clock or (latency_profiler.clock if latency_profiler else RealClock())
        self.profiler = latency_profiler if latency_profiler is not None else LatencyProfiler(clock=self.clock)
        self.retry_policy = RetryPolicy.from_kwargs(
            max_retries=max_retries, retry_delay=retry_delay, retry_policy=retry_policy
        )
        self.breaker_config = breaker_config or BreakerConfig()
        if max_latency_s is not None and not max_latency_s > 0:
            raise ConfigurationError(f"max_latency_s must be > 0 or None, got {max_latency_s!r}")
        self.max_latency_s = max_latency_s
        self.latency_window_s = latency_window_s
        self._rng = random.Random(seed)
        # Replaced whole on every change (copy on write): read without the lock.
        self._slots: dict[str, _Slot] = {}
        self._checks: tuple[PreTradeCheck, ...] = ()
        # Every order's state lives in the store (shared with the smart router, the
        # scheduler and the optimizer when the Engine wires them); the router's lock is
        # the store's, so its flights and the records change together.
        self.store = store if store is not None else OrderStore(remember_orders)
        self._lock = self.store.lock
        if on_event is not None:
            self.store.subscribe(on_event)
        self._inflight: dict[str, _Flight] = {}
        self._unreconciled: dict[str, str] = {}  # client order id -> venue
        # Threads inside a sync venue call: what reports make them raise is delivered
        # after the call, so the venue's time never includes the listeners'.
        self._calling: set[int] = set()
        self.halted_reason: str | None = None
        self.risk: RiskChecker | None = None
        if risk is not None:
            self.use_risk(risk)
        # Called with a child order (one with a parent_id: an algorithm's or a split's
        # piece) and its venue once it passed every check, before the venue sees it: the
        # Engine's journal writes it ahead here (top-level orders were written when they
        # were submitted). Should it raise, the order is refused and never sent.
        self.write_ahead: Callable[[Order, str], None] | None = None

    # -- venues ---------------------------------------------------------------
    def register_exchange(self, exchange_id: str, client: Any) -> None:
        """Register a venue client under an id (ExchangeClient, AsyncExchangeClient or a Venue)."""
        if not isinstance(exchange_id, str) or not exchange_id:
            raise ConfigurationError(f"exchange_id must be a non-empty string, got {exchange_id!r}")
        if exchange_id in self._slots:
            raise ConfigurationError(f"exchange {exchange_id!r} is already registered")
        self._check_client(client)
        breaker = CircuitBreaker(
            exchange_id, self.clock, self.breaker_config, on_state_change=self._on_breaker
        )
        slot = _Slot(exchange_id, client, breaker)
        ref = weakref.ref(self)

        def on_report(report: ExecutionReport, _ref: Any = ref, _id: str = exchange_id) -> None:
            router = _ref()
            if router is not None:
                router._on_report(_id, report)

        slot.listener = on_report
        with self._lock:
            if exchange_id in self._slots:  # registered meanwhile, by another thread
                raise ConfigurationError(f"exchange {exchange_id!r} is already registered")
            self._slots = {**self._slots, exchange_id: slot}
        add = getattr(client, "add_report_listener", None)
        if add is not None:
            add(on_report)

    def _check_client(self, client: Any) -> None:
        if not callable(getattr(client, "submit", None)):
            raise ConfigurationError(
                f"{type(client).__name__} has no submit(); register an ExchangeClient or a Venue"
            )

    def unregister_exchange(self, exchange_id: str) -> None:
        with self._lock:
            slot = self._slot(exchange_id)
            self._slots = {k: v for k, v in self._slots.items() if k != exchange_id}
        remove = getattr(slot.client, "remove_report_listener", None)
        if remove is not None and slot.listener is not None:
            remove(slot.listener)

    def enable_exchange(self, exchange_id: str) -> None:
        slot = self._slot(exchange_id)
        slot.enabled, slot.disabled_reason = True, ""
        self._emit_factory(lambda now: VenueEnabled(now, now, exchange_id))

    def disable_exchange(self, exchange_id: str, reason: str = "disabled by operator") -> None:
        slot = self._slot(exchange_id)
        slot.enabled, slot.disabled_reason = False, reason
        self._emit_factory(lambda now: VenueDisabled(now, now, exchange_id, reason))

    @property
    def exchanges(self) -> list[str]:
        return list(self._slots)

    def is_enabled(self, exchange_id: str) -> bool:
        return self._slot(exchange_id).enabled

    def client(self, exchange_id: str) -> Any:
        return self._slot(exchange_id).client

    def breaker(self, exchange_id: str) -> CircuitBreaker:
        return self._slot(exchange_id).breaker

    def venue_stats(self, exchange_id: str) -> VenueStats:
        return self._slot(exchange_id).stats

    def _slot(self, exchange_id: str) -> _Slot:
        slots = self._slots
        try:
            return slots[exchange_id]
        except KeyError:
            known = ", ".join(slots) or "none registered"
            raise UnknownVenueError(f"unknown exchange {exchange_id!r} (known: {known})") from None

    # -- pre-trade checks ---------------------------------------------------------
    def add_pre_trade_check(self, check: PreTradeCheck) -> None:
        """A check run for every order and child before it reaches a venue."""
        with self._lock:
            self._checks = (*self._checks, check)

    def use_risk(self, limits: RiskLimits | None) -> None:
        """Check every order against `limits` from now on (None: no risk limits). New
        limits keep what the checker counted; orders sent before it had one are not counted."""
        if limits is None:
            self.risk = None
        elif self.risk is not None:
            self.risk.set_limits(limits)
        else:
            self.risk = RiskChecker(limits)

    def read_book(self, exchange_id: str, symbol: str, depth: int = 1) -> BookSnapshot | None:
        """The venue's book as the risk check sees it: None when it cannot be read now
        (an outage, an unlisted symbol, a venue without a sync book)."""
        read = getattr(self._slot(exchange_id).client, "book", None)
        if read is None:
            return None
        try:
            return read(symbol, depth)
        except ExecdeskError:
            return None

    def halt(self, reason: str) -> None:
        self.halted_reason = reason or "trading halted"

    def resume(self) -> None:
        self.halted_reason = None

    def latency_gate(self, exchange_id: str) -> str | None:
        """A reason when the venue's rolling p95 latency is over the limit, else None.

        Recomputed at most once a second: reading a rolling window merges
        histograms, too much work for every order.
        """
        slot = self._slot(exchange_id)
        return self._gate(slot)

    def _gate(self, slot: _Slot) -> str | None:
        self._refresh_latency(slot)
        return slot.gate_reason

    def _refresh_latency(self, slot: _Slot) -> None:
        """Re-read the venue's rolling p95 at most once a second of the clock."""
        now = self.clock.now()
        if now - slot.gate_checked_at < 1.0:
            return
        slot.gate_checked_at = now
        stats = self.profiler.window_stats("acknowledgment", slot.id, seconds=self.latency_window_s)
        slot.p95_ms = stats.p95 / 1e6 if stats.count else 0.0
        limit = self.max_latency_s
        if limit is not None and stats.count >= 5 and stats.p95 > limit * 1e9:
            slot.gate_reason = (
                f"{slot.id} latency p95 {slot.p95_ms:.1f} ms over the limit "
                f"{limit * 1e3:.0f} ms (last {self.latency_window_s:.0f} s)"
            )
        else:
            slot.gate_reason = None

    def latency_p95_ms(self, exchange_id: str) -> float:
        """The venue's rolling acknowledgment p95 in ms (refreshed at most once a second)."""
        slot = self._slot(exchange_id)
        self._refresh_latency(slot)
        return slot.p95_ms

    def unavailable_reason(self, exchange_id: str) -> str | None:
        """Why a venue would refuse an order right now (disabled, breaker, latency), or None."""
        slot = self._slot(exchange_id)
        if not slot.enabled:
            return f"{slot.id} is disabled ({slot.disabled_reason})"
        breaker = slot.breaker
        if breaker.state is BreakerState.OPEN and (
            breaker.retry_at is None or self.clock.now() < breaker.retry_at
        ):
            return f"{slot.id} circuit breaker is OPEN"
        return self._gate(slot)

    def _resolve(self, order: Order, exchange_id: str | None) -> _Slot | str:
        slots = self._slots
        if exchange_id is None:
            if len(slots) == 1:
                return next(iter(slots.values()))
            if not slots:
                return "no exchange is registered"
            return (
                f"exchange_id is required when several exchanges are registered "
                f"(known: {', '.join(slots)})"
            )
        if not isinstance(exchange_id, str):
            return f"exchange_id must be a venue's name (a string), got {type(exchange_id).__name__} {exchange_id!r}"
        slot = slots.get(exchange_id)
        if slot is None:
            return f"unknown exchange {exchange_id!r} (known: {', '.join(slots) or 'none'})"
        return slot

    def _pre_trade(self, order: Order, slot: _Slot) -> str | None:
        """Every check that must pass before a venue sees the order. None = go."""
        if self.halted_reason is not None:
            return f"trading halted: {self.halted_reason}"
        if order.type.is_algorithm:
            return (
                f"{order.type.value} orders are worked by the SmartOrderRouter or an optimizer, "
                "not sent to a venue as they are"
            )
        if not slot.enabled:
            return f"{slot.id} is disabled ({slot.disabled_reason})"
        for check in self._checks:
            reason = check(order, slot.id)
            if reason:
                return reason
        gate = self._gate(slot)
        if gate:
            return gate
        if not slot.breaker.allow_request():
            return f"{slot.id} circuit breaker is {slot.breaker.state.value}: not accepting orders"
        risk = self.risk
        if risk is not None:
            # Last: once admitted the order counts as sent and working.
            reason = risk.admit(order, lambda depth: self.read_book(slot.id, order.symbol, depth),
                                self.clock.now())
            if reason is not None:
                slot.breaker.release()  # the venue never saw it: hand back a half-open trial
                return reason
        return None

    def _give_back(self, slot: _Slot, order: Order) -> None:
        """An admitted order whose venue call failed below us (a bug, a cancellation)."""
        slot.breaker.release()
        if self.risk is not None:
            self.risk.release(order.client_order_id)  # type: ignore[arg-type]

    # -- bookkeeping ------------------------------------------------------------
    def known(self, order: Order) -> OrderResult | None:
        """The idempotency check: a client order id this router already sent."""
        with self._lock:
            tracked = self.store.record(order.client_order_id)  # type: ignore[arg-type]
        if tracked is None:
            return None
        if tracked.order == order:
            return tracked.result
        return self._reused(order, tracked.venue)

    def _reused(self, order: Order, venue: str | None) -> OrderResult:
        return self.refuse(
            order,
            venue,
            f"client order id {order.client_order_id!r} was already used for a different order",
            track=False,
            publish=False,  # the id is another order's: its row and listeners must not hear this
        )

    def _admit(
        self, order: Order, exchange_id: str | None, thread: int | None = None
    ) -> _Slot | OrderResult | _Flight:
        """Everything decided before a venue call: the slot to use (the order is now in
        flight), the answer already known, or the flight of the same order to wait for.
        `thread`: the caller's thread id, when it has it at hand."""
        if order.__class__ is not Order and not isinstance(order, Order):
            raise TypeError(f"expected an Order, got {type(order).__name__}: {quote(order)}")
        slot = self._resolve(order, exchange_id)
        if isinstance(slot, str):
            return self.refuse(order, None, slot)
        cid: str = order.client_order_id  # type: ignore[assignment]
        with self._lock:
            tracked = self.store.record(cid)
            if tracked is None:
                flight = self._inflight.get(cid)
                if flight is None:
                    self._inflight[cid] = _Flight(order, slot.id, thread or threading.get_ident())
                elif flight.order == order:
                    return flight
        if tracked is not None:
            if tracked.order == order:
                return tracked.result
            return self._reused(order, tracked.venue)
        if flight is not None:  # another order under this id is being sent
            return self._reused(order, flight.venue)
        try:
            refusal = self._pre_trade(order, slot)
        except BaseException as exc:  # a check's bug: the order never went out
            self._abandon(order, exc)
            raise
        if refusal is not None:
            return self.refuse(order, slot.id, refusal)
        if order.parent_id is not None and self.write_ahead is not None:
            try:
                self.write_ahead(order, slot.id)
            except Exception as exc:
                self._give_back(slot, order)
                return self.refuse(order, slot.id, f"not sent: it could not be written ahead ({exc})")
        return slot

    def _answer(self, order: Order, venue: str | None, status: OrderStatus, reason: str) -> OrderResult:
        """The engine's own answer about `order` (nothing filled)."""
        return OrderResult(
            order_id=order.client_order_id,  # type: ignore[arg-type]
            exchange_id=venue,
            status=status,
            quantity=order.quantity,
            reason=reason,
            symbol=order.symbol,
            side=order.side,
            price=order.price,
            timestamp=self.clock.now(),
        )

    def _pending_result(self, order: Order, venue: str, reason: str) -> OrderResult:
        return self._answer(order, venue, _PENDING_NEW, reason)

    def _wait(self, flight: _Flight) -> OrderResult:
        """A resend from sync code: block (in the clock, so virtual time still moves)
        until the first send of the order has its answer, and return that."""
        if flight.thread == threading.get_ident():
            # This thread is the one sending it (a listener resending): it cannot wait.
            return self._pending_result(
                flight.order, flight.venue, "already being sent by this thread; no answer yet"
            )
        event: ClockEvent = self.clock.event()
        with self._lock:
            result = flight.result
            if result is None:
                if flight.waiters is None:
                    flight.waiters = [event]
                else:
                    flight.waiters.append(event)
        if result is None:
            self.clock.wait_event(event)
            result = flight.result
        assert result is not None
        return result

    async def _wait_async(self, flight: _Flight) -> OrderResult:
        """A resend in an event loop: await the first send's answer (any thread or loop)."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[OrderResult] = loop.create_future()
        with self._lock:
            result = flight.result
            if result is None:
                if flight.waiters is None:
                    flight.waiters = [(loop, future)]
                else:
                    flight.waiters.append((loop, future))
        if result is not None:
            return result
        return await future

    def _abandon(self, order: Order, exc: BaseException) -> None:
        """The send of `order` ended without an answer (a bug below, a cancellation):
        end its flight, so resends stop waiting (they are told so, and may send again)."""
        cid = order.client_order_id
        with self._lock:
            flight = self._inflight.get(cid)  # type: ignore[arg-type]
            if flight is None or flight.order is not order:
                return
            del self._inflight[cid]  # type: ignore[arg-type]
            flight.result = result = self._answer(
                order, flight.venue, _REJECTED,
                f"the first send of this order ended without an answer ({type(exc).__name__}: {exc})")
            waiters = flight.waiters
        if waiters:
            _wake(waiters, result)
        if self.store.pending:
            self.store.deliver()

    def _outcome_unknown(self, order: Order, slot: _Slot, why: str) -> None:
        """The send of `order` ended without an answer though it may have reached the
        venue: PENDING_NEW until `reconcile_pending` asks the venue."""
        result = self._pending_result(order, slot.id, f"{why}; outcome unknown until the venue answers a status query")
        submitted = self._submission_events(order, result) if self.store.has_subscribers else None
        cid: str = order.client_order_id  # type: ignore[assignment]
        with self._lock:
            flight = self._inflight.get(cid)
            if flight is None or flight.order is not order:
                return
            self._unreconciled[cid] = slot.id
            answer, waiters = self._settle_locked(order, slot.id, result, submitted)
        self._settled(answer, waiters)

    def _settle_locked(
        self, order: Order, venue: str, result: OrderResult, events: list[Event] | None
    ) -> tuple[OrderResult, list[Any] | None]:
        """With the lock held: record the answer about `order` (a new record, or news for
        one whose outcome was unknown), end its flight and apply the reports that came
        first. Returns what the sender and any waiting resend are told, and the waiters."""
        cid: str = result.order_id
        store = self.store
        inflight = self._inflight
        flight = inflight.get(cid)
        if flight is not None and flight.order is order:
            # The first answer about an order in flight: nothing has a record of it yet.
            del inflight[cid]
            tracked = OrderRecord(order, venue, result)
            store.add_record(cid, tracked)
            if self.risk is not None:
                self.risk.update(result)
            if events is not None or self.store.has_order_listeners:
                self.store.post_locked(events, result)
            if flight.reports:
                for report in flight.reports:
                    self._apply_report_locked(tracked, cid, venue, report)
            flight.result = answer = tracked.result
            return answer, flight.waiters
        # News about an order already recorded (its outcome was unknown), or a refusal.
        tracked = store.live_record(cid)
        answer = result
        post: list[Event] | None = None
        changed = False
        if tracked is None:
            if not store.in_history(cid):
                tracked = OrderRecord(order, venue, result)
                store.add_record(cid, tracked)
                if self.risk is not None:
                    self.risk.update(result)
                post, changed = events, True
            # else: an old, finished order's id: nothing is recorded, nothing said
        elif tracked.order == order and not tracked.result.status.is_final:
            cur = tracked.result
            news = merge_result(cur, result.status, result.filled_quantity, result.fills,
                                result.reason, result.timestamp)
            if news is not None:
                tracked.result = answer = news[0]
                store.record_changed(cid, tracked, False)
                if self.risk is not None:
                    self.risk.update(answer)
                changed = True
                if events and type(events[0]) is OrderDenied:
                    post = events  # the engine refused it: said as such
                elif store.has_subscribers:
                    # What the answer adds to what was known (a reconciled timeout):
                    # never the whole story again.
                    post = self._change_events(tracked, cur, answer, news[1], result.timestamp)
            else:
                answer = tracked.result
        else:
            # Final already, or another order under this id: the record stays as it is,
            # and nothing is said under its id.
            answer = tracked.result if tracked.order == order else result
        if changed:
            store.post_locked(post, answer)
        return answer, None

    def _change_events(self, record: OrderRecord, cur: OrderResult, updated: OrderResult,
                       new_fills: list[Fill], ts: float, amended: bool = False) -> list[Event]:
        """The events that say how `cur` became `updated` (with the lock held): a fill each
        (or one saying FILLED), an amend's new terms, the ending, or a working state."""
        now = self.clock.now()
        cid, venue, parent = updated.order_id, record.venue, record.order.parent_id
        status = updated.status
        ended = status.is_final and not cur.status.is_final
        filled = updated.filled_quantity
        events: list[Event] = []
        if new_fills or (ended and status is _FILLED):
            leaves = 0.0 if status.is_final else max(updated.quantity - filled, 0.0)
            # A fill's event carries the state that fill left: an order that then ended
            # canceled or expired says so in its own event, after its fills.
            fill_status = _PARTIAL if ended and status is not _FILLED else status
            events = [OrderFilled(f.timestamp, now, cid, venue, fill_status, parent, f, filled, leaves)
                      for f in new_fills] or [OrderFilled(ts, now, cid, venue, status, parent, None, filled, leaves)]
        if amended and not status.is_final:
            events.append(OrderAmended(ts, now, cid, venue, status, parent, updated.quantity, updated.price))
        if ended and status is _EXPIRED:
            events.append(OrderExpired(ts, now, cid, venue, status, parent, filled, updated.reason or ""))
        elif ended and status is _CANCELED:
            events.append(OrderCanceled(ts, now, cid, venue, status, parent, filled, updated.reason or "canceled"))
        elif ended and status is _REJECTED:
            events.append(OrderRejected(ts, now, cid, venue, status, parent, updated.reason or ""))
        elif not events and status is not cur.status and status is OrderStatus.NEW:
            events.append(OrderAccepted(ts, now, cid, venue, status, parent))
        return events

    def _not_an_order(self, position: int, item: object) -> OrderResult:
        """A batch item that is not an Order: REJECTED in its place, nothing sent."""
        return OrderResult(
            order_id=str(getattr(item, "id", "") or f"batch item {position}"), exchange_id=None,
            status=_REJECTED, reason=f"batch item {position} is not an Order: got {type(item).__name__}",
            timestamp=self.clock.now(),
        )

    def _settled(self, answer: OrderResult, waiters: list[Any] | None) -> OrderResult:
        """After `_settle_locked`, without the lock: wake resends, deliver what happened."""
        if waiters:
            _wake(waiters, answer)
        if self.store.pending:
            self.store.deliver()
        return answer

    def refuse(self, order: Order, venue: str | None, reason: str, *, track: bool = True,
               publish: bool = True) -> OrderResult:
        """A REJECTED answer from the engine itself. `track`: record it as the order's state
        (at `venue`); `publish`: say it on the stream (one `OrderDenied`) and to order
        listeners; not when the id is another order's, whose story it is not."""
        result = self._answer(order, venue, _REJECTED, reason)
        if not publish:
            return result
        events: list[Event] | None = None
        if self.store.has_subscribers:
            now = result.timestamp
            events = [OrderDenied(now, now, result.order_id, venue, _REJECTED, order.parent_id, reason)]
        with self._lock:
            if track and venue is not None:
                answer, waiters = self._settle_locked(order, venue, result, events)
            else:
                self.store.post_locked(events, result)
                answer, waiters = result, None
        self._settled(answer, waiters)
        return result

    def _on_success(
        self, slot: _Slot, order: Order, result: OrderResult, elapsed_ns: int | None, engine_ns: int = 0,
        *, deliver: bool = True,
    ) -> OrderResult:
        """Bookkeeping after a venue answered. `elapsed_ns` is the venue round trip as
        the router timed it (acknowledgment), `engine_ns` the router's own time before
        the call (submission). `elapsed_ns` None: an answer learned by a status query,
        which measured no send and used no breaker admission."""
        if result.exchange_id != slot.id:
            _restamp(result, slot.id)
        fills = result.fills
        if elapsed_ns is not None:
            stamped = result.ack_latency_ns
            # The venue's own measure, when it gives one, leaves out what the caller waited
            # for (the GIL, locks, a busy loop): that is not the venue being slow.
            venue_ns = int(stamped) if stamped is not None and stamped >= 0 else elapsed_ns
            slot.breaker.record_success(venue_ns / 1e9)
            profiler = self.profiler
            profiler.record("submission", engine_ns, slot.id)
            profiler.record("acknowledgment", venue_ns, slot.id)
            if fills:
                profiler.record("execution", venue_ns, slot.id)
            result.latency_ns = engine_ns + venue_ns
            result.ack_latency_ns = venue_ns
        events = self._submission_events(order, result) if self.store.has_subscribers else None
        status = result.status
        with self._lock:
            stats = slot.stats
            stats.requests += 1
            stats.orders += 1
            stats.error_rate -= _EWMA * stats.error_rate
            if fills:
                stats.fills += len(fills)
            if status is _REJECTED:
                stats.rejects += 1
            elif status.is_final:
                stats.fill_ratio += _EWMA * (result.filled_quantity / order.quantity - stats.fill_ratio)
            answer, waiters = self._settle_locked(order, slot.id, result, events)
        if waiters:
            _wake(waiters, answer)
        if deliver and self.store.pending:
            self.store.deliver()
        return answer

    def _on_failure(self, slot: _Slot, exc: VenueError, elapsed_ns: int) -> None:
        with self._lock:
            stats = slot.stats
            stats.requests += 1
            stats.errors += 1
            stats.error_rate += _EWMA * (1.0 - stats.error_rate)
        if isinstance(exc, PermanentVenueError):
            slot.breaker.release()  # the venue answered: its health is not in question
        else:
            slot.breaker.record_failure(elapsed_ns / 1e9)

    def _submission_events(self, order: Order, result: OrderResult) -> list[Event]:
        now = self.clock.now()
        cid, venue, status, parent = result.order_id, result.exchange_id, result.status, order.parent_id
        events: list[Event] = [
            OrderSubmitted(now, now, cid, venue, _PENDING_NEW, parent, order.symbol,
                           order.side, order.type, order.quantity, order.price)
        ]
        if status is _REJECTED:
            events.append(
                OrderRejected(result.timestamp, now, cid, venue, status, parent, result.reason or "")
            )
            return events
        if status is _PENDING_NEW:
            return events
        events.append(OrderAccepted(result.timestamp, now, cid, venue, OrderStatus.NEW, parent))
        filled = 0.0
        last = result.fills[-1] if result.fills else None
        for fill in result.fills:
            filled += fill.quantity
            left = max(order.quantity - filled, 0.0)
            st = _FILLED if fill is last and status is _FILLED else _PARTIAL
            events.append(OrderFilled(fill.timestamp, now, cid, venue, st, parent, fill, filled, left))
        if status is _EXPIRED:
            events.append(OrderExpired(result.timestamp, now, cid, venue, status, parent,
                                       result.filled_quantity, result.reason or ""))
        elif status is _CANCELED:
            events.append(OrderCanceled(result.timestamp, now, cid, venue, status, parent,
                                        result.filled_quantity, result.reason or ""))
        return events

    def _emit_factory(self, make: Callable[[float], Event]) -> None:
        if self.store.has_subscribers:
            self.store.publish(make(self.clock.now()))

    def _on_breaker(self, t: BreakerTransition) -> None:
        level = logging.WARNING if t.new is BreakerState.OPEN else logging.INFO
        log.log(level, "breaker %s: %s -> %s (%s)", t.name, t.old.value, t.new.value, t.reason)
        if self.store.has_subscribers:
            now = self.clock.now()
            self.store.publish(BreakerStateChanged(t.ts, now, t.name, t.old.value, t.new.value, t.reason))

    def add_order_listener(self, listener: OrderListener) -> None:
        """Called with every new state of an order this router handles (results and reports)."""
        self.store.add_order_listener(listener)

    def remove_order_listener(self, listener: OrderListener) -> None:
        self.store.remove_order_listener(listener)

    def _on_report(self, venue: str, report: ExecutionReport) -> None:
        """A venue pushed news of an order: merge it into the router's record (see the
        module rules) and tell listeners."""
        cid = report.client_order_id
        with self._lock:
            store = self.store
            tracked = store.live_record(cid)
            if tracked is None:
                flight = self._inflight.get(cid)
                if flight is not None:
                    if flight.venue == venue:  # applied after the send's answer
                        if flight.reports is None:
                            flight.reports = [report]
                        else:
                            flight.reports.append(report)
                    return
                if not store.in_history(cid):
                    return
                tracked = store.record(cid)
                if tracked is None or tracked.venue != venue:
                    return
                if self._apply_report_locked(tracked, cid, venue, report):
                    store.revive(cid, tracked)
            elif tracked.venue != venue or not self._apply_report_locked(tracked, cid, venue, report):
                return
        if threading.get_ident() not in self._calling:
            self.store.deliver()

    def _apply_report_locked(self, tracked: OrderRecord, cid: str, venue: str, report: ExecutionReport) -> bool:
        cur = tracked.result
        fill = report.fill
        if fill is not None and fill.exchange_id != venue:
            fill = dataclasses.replace(fill, exchange_id=venue)
        news = merge_result(cur, report.status, report.filled_quantity, (fill,) if fill is not None else (),
                       report.reason, report.ts_event)
        if news is None:
            return False
        updated, new_fills = news
        was_final = cur.status.is_final
        tracked.result = updated
        self.store.record_changed(cid, tracked, was_final)
        status = updated.status
        ended = status.is_final and not was_final
        slot = self._slots.get(venue)
        if slot is not None:
            stats = slot.stats
            stats.fills += len(new_fills)
            if ended and updated.quantity:
                stats.fill_ratio += _EWMA * (updated.filled_quantity / updated.quantity - stats.fill_ratio)
        if self.risk is not None:
            self.risk.update(updated)
        events = (self._change_events(tracked, cur, updated, new_fills, report.ts_event)
                  if self.store.has_subscribers else None)
        self.store.post_locked(events, updated)
        return True

    # -- the shared decision loop ------------------------------------------------
    def _retry_loop(
        self, slot: _Slot, order: Order, first_error: VenueError, elapsed_ns: int
    ) -> Decision[OrderResult]:
        """After a failed first attempt: retry, reconcile or give up (see module rules).

        Yields `Request`s; the driver performs each and sends back the answer, or
        throws the VenueError it raised into the generator.
        """
        state = RetryState(self.retry_policy, self._rng)
        error: VenueError = first_error
        while True:
            self._on_failure(slot, error, elapsed_ns)
            log.warning("order %s at %s: %s: %s", order.client_order_id, slot.id,
                        type(error).__name__, error)
            action = state.next_action(error)
            if action.kind == "give_up":
                return self.refuse(order, slot.id, f"{slot.id}: {action.reason}")
            yield Request("sleep", action.after_s)
            if action.kind == "reconcile":
                with self._lock:
                    slot.stats.reconciled += 1
                found = yield from self._reconcile(order, state, slot)
                if isinstance(found, OrderResult):
                    return self._on_success(slot, order, found, None)
                if found == "unknown":
                    # Still no answer: keep the order PENDING_NEW; reconcile_pending() finishes it.
                    result = self._pending_result(
                        order, slot.id,
                        f"{slot.id} timed out; outcome unknown until the venue answers a status query",
                    )
                    submitted = self._submission_events(order, result) if self.store.has_subscribers else None
                    with self._lock:
                        self._unreconciled[order.client_order_id] = slot.id  # type: ignore[index]
                        answer, waiters = self._settle_locked(order, slot.id, result, submitted)
                    return self._settled(answer, waiters)
                # "absent": the venue never saw it; resending is safe (and counts as a retry).
                action = state.not_found()
                if action.kind == "give_up":
                    return self.refuse(order, slot.id, f"{slot.id}: {action.reason}")
            with self._lock:
                slot.stats.retried += 1
            if self.halted_reason is not None:
                return self.refuse(order, slot.id, f"trading halted: {self.halted_reason}")
            if not slot.breaker.allow_request():
                return self.refuse(
                    order, slot.id, f"{slot.id} circuit breaker opened while retrying: {error}"
                )
            t0 = self.clock.now_ns()
            try:
                result = yield Request("submit", order)
            except VenueError as exc:
                error, elapsed_ns = exc, self.clock.now_ns() - t0
                continue
            return self._on_success(slot, order, result, self.clock.now_ns() - t0)

    def _reconcile(self, order: Order, state: RetryState, slot: _Slot | None = None) -> Decision[OrderResult | str]:
        """Ask the venue for the order by client order id until it answers.

        Returns the venue's result, "absent" (safe to resend) or "unknown".
        """
        absent = 0
        for delay in state.reconcile_delays():
            try:
                return (yield Request("status", order.client_order_id))
            except UnknownOrderError:
                # An exchange may not show an order it has just taken (binance answers
                # -2013 for a moment): "not found" is believed when the venue says it
                # twice, a backoff apart, or at once from a venue whose answers are
                # immediate (`status_is_immediate`, the simulator and FIX venues).
                absent += 1
                if absent >= 2 or slot is None or getattr(slot.client, "status_is_immediate", False):
                    return "absent"
                yield Request("sleep", delay)
            except VenueError:
                yield Request("sleep", delay)
        return "unknown"

    def _reconcile_only(self, slot: _Slot, order: Order) -> Decision[OrderResult | None]:
        state = RetryState(self.retry_policy, self._rng)
        found = yield from self._reconcile(order, state, slot)
        if found == "unknown":
            return None
        with self._lock:
            self._unreconciled.pop(order.client_order_id, None)  # type: ignore[arg-type]
        if isinstance(found, OrderResult):
            return self._on_success(slot, order, self._with_unseen_fill(slot, order, found), None)
        return self.refuse(
            order, slot.id, f"{slot.id} never received the order (confirmed by status query)"
        )

    def _with_unseen_fill(self, slot: _Slot, order: Order, found: OrderResult) -> OrderResult:
        """A status answer whose filled quantity is more than the fills it and the record
        carry (a venue that answers status with totals only, fills made while nobody
        listened): `found` with one more fill for the difference, at the price that makes
        the order's average the venue's, so fills, positions and the journal add up."""
        tracked = self.store.record(order.client_order_id)  # type: ignore[arg-type]
        have = list(tracked.result.fills) if tracked is not None else []
        keys = {fill_key(f) for f in have}
        have += [f for f in found.fills if fill_key(f) not in keys]
        done = math.fsum(f.quantity for f in have)
        missing = found.filled_quantity - done
        average = found.average_price
        if not missing > 1e-9 * max(found.filled_quantity, 1.0) or average is None or not average > 0:
            return found
        price = (average * found.filled_quantity - math.fsum(f.price * f.quantity for f in have)) / missing
        if not (math.isfinite(price) and price > 0):
            price = average
        liquidity = Liquidity.TAKER if order.type is OrderType.MARKET else Liquidity.MAKER
        fees = getattr(slot.client, "fees", None)
        fee = fees.fee(price * missing, liquidity) if isinstance(fees, FeeSchedule) else 0.0
        unseen = Fill(found.order_id, slot.id, order.symbol, order.side, price, missing, fee, liquidity,
                      found.timestamp or self.clock.now(),
                      f"{found.order_id}/by-status-{found.filled_quantity:.12g}")
        return dataclasses.replace(found, fills=[*found.fills, unseen])

    def settle(self, order: Order, venue: str, result: OrderResult) -> OrderResult:
        """Record what became of an order this router holds (an adopted one ended without
        a venue call: its in-process venue went with the previous process)."""
        return self._on_success(self._slot(venue), order, result, None)

    def adopt(self, order: Order, venue: str, known: OrderResult) -> bool:
        """Track again an order a previous process sent to `venue` (a restart's recovery):
        recorded as `known` (what the journal says of it), its outcome unknown until
        `reconcile_pending` asks the venue. False when the id already has a record here."""
        cid: str = order.client_order_id  # type: ignore[assignment]
        if venue not in self._slots:
            raise UnknownVenueError(f"unknown exchange {venue!r}")
        with self._lock:
            if self.store.has_record(cid) or cid in self._inflight:
                return False
            self.store.add_record(cid, OrderRecord(order, venue, known))
            self._unreconciled[cid] = venue
        return True

    def _to_reconcile(self) -> list[tuple[_Slot, Order]]:
        """Orders whose outcome is still unknown, with their venue (forgetting the orphans)."""
        pending = []
        slots = self._slots
        with self._lock:
            for cid, venue in list(self._unreconciled.items()):
                slot, tracked = slots.get(venue), self.store.record(cid)
                if slot is None or tracked is None:
                    del self._unreconciled[cid]
                else:
                    pending.append((slot, tracked.order))
        return pending

    @property
    def unreconciled(self) -> list[str]:
        with self._lock:
            return list(self._unreconciled)

    def _cancel_result(self, tracked: OrderRecord | None, cid: str, reason: str) -> OrderResult:
        return OrderResult(
            order_id=cid,
            exchange_id=tracked.venue if tracked else None,
            status=_REJECTED,
            quantity=tracked.order.quantity if tracked else 0.0,
            filled_quantity=tracked.result.filled_quantity if tracked else 0.0,
            reason=reason,
            timestamp=self.clock.now(),
        )

    def _after_request(
        self, tracked: OrderRecord, result: OrderResult, changes: dict[str, float] | None = None
    ) -> OrderResult:
        """A cancel/amend answer: merged into the order's record (see the module rules).
        `changes`: an amend's new quantity and price, which the order takes on when the
        venue accepted them. A refusal leaves the order as it was (and is only returned),
        unless the router had no answer about the order yet."""
        if result.status is _REJECTED and tracked.result.status is not _PENDING_NEW:
            return result
        cid = tracked.result.order_id
        with self._lock:
            store = self.store
            record = store.live_record(cid)
            revived = False
            if record is None and store.in_history(cid):
                record, revived = store.record(cid), True
            if record is None:
                return result  # forgotten meanwhile: nothing left to update
            if changes:
                record.order = record.order.model_copy(update=changes)
            cur = record.result
            if result.status is _REJECTED:  # no answer about it before: the refusal is its state
                news: tuple[OrderResult, list[Fill]] | None = (result, [])
            else:
                news = merge_result(cur, result.status, result.filled_quantity, result.fills, result.reason,
                               result.timestamp, quantity=result.quantity, price=result.price)
            if news is None:
                return cur
            updated, new_fills = news
            if changes and cur.status is _PENDING_CANCEL and updated.status.is_working:
                # An amend's answer while a cancel is out: the cancel is still pending.
                updated = dataclasses.replace(updated, status=_PENDING_CANCEL)
            was_final = cur.status.is_final
            record.result = updated
            if revived:
                store.revive(cid, record)
            else:
                store.record_changed(cid, record, was_final)
            if self.risk is not None:
                self.risk.update(updated)
            events = (self._change_events(record, cur, updated, new_fills, result.timestamp, amended=bool(changes))
                      if store.has_subscribers else None)
            self.store.post_locked(events, updated)
        self.store.deliver()
        return updated

    def _cancel_sent(self, tracked: OrderRecord) -> OrderStatus | None:
        """A cancel is on its way: the order is PENDING_CANCEL (one `OrderPendingCancel`)
        until the venue answers. Returns the status to go back to if the venue refuses,
        None when nothing changed (the order is final, or a cancel is already pending)."""
        cid = tracked.result.order_id
        with self._lock:
            store = self.store
            record = store.live_record(cid)
            if record is None:
                return None
            cur = record.result
            before = cur.status
            if before.is_final or before is _PENDING_CANCEL:
                return None
            record.result = updated = dataclasses.replace(cur, status=_PENDING_CANCEL)
            events: list[Event] | None = None
            if store.has_subscribers:
                now = self.clock.now()
                events = [OrderPendingCancel(now, now, cid, record.venue, _PENDING_CANCEL, record.order.parent_id)]
            store.post_locked(events, updated)
        self.store.deliver()
        return before

    def _cancel_refused(self, tracked: OrderRecord, before: OrderStatus | None, reason: str) -> OrderResult:
        """The cancel failed or was refused: an order still PENDING_CANCEL goes back to the
        state it had (one `OrderCancelRejected`); the answer says why."""
        cid = tracked.result.order_id
        if before is not None:
            with self._lock:
                store = self.store
                record = store.live_record(cid)
                if record is not None and record.result.status is _PENDING_CANCEL:
                    restored = _PARTIAL if record.result.filled_quantity > 0 else before
                    if restored is _PENDING_NEW:
                        restored = OrderStatus.NEW  # it had an answer: the venue holds it
                    record.result = updated = dataclasses.replace(record.result, status=restored)
                    events: list[Event] | None = None
                    if store.has_subscribers:
                        now = self.clock.now()
                        events = [OrderCancelRejected(now, now, cid, record.venue, restored,
                                                      record.order.parent_id, reason)]
                    store.post_locked(events, updated)
            self.store.deliver()
        return self._cancel_result(self.store.record(cid) or tracked, cid, reason)

    def _after_cancel(self, tracked: OrderRecord, before: OrderStatus | None, result: OrderResult) -> OrderResult:
        if result.status is _REJECTED and before is not None:
            self._cancel_refused(tracked, before, result.reason or "cancel refused by the venue")
            return result
        return self._after_request(tracked, result)

    def _ask_venue(self, order: Order) -> Decision[OrderResult | str]:
        """After a cancel or amend whose outcome is unknown (a timeout): what the venue
        says of the order now, by status query ("absent"/"unknown" when it cannot say)."""
        return self._reconcile(order, RetryState(self.retry_policy, self._rng))

    def _cancel_settled_by_status(self, tracked: OrderRecord, before: OrderStatus | None, slot: _Slot,
                                  found: OrderResult | str, exc: VenueError) -> OrderResult:
        """A cancel timed out: the venue's own word on the order decides. Ended there
        (canceled, filled): that is its state. Still working: the cancel did not take
        effect (the order goes back, `OrderCancelRejected`). No word: as a failed cancel."""
        if not isinstance(found, OrderResult):
            return self._cancel_refused(
                tracked, before, f"cancel failed at {slot.id}: {exc}; a status query could not settle it")
        if found.exchange_id != slot.id:
            _restamp(found, slot.id)
        if found.status.is_final:
            return self._after_request(tracked, found)
        refusal = self._cancel_refused(
            tracked, before, f"cancel at {slot.id} timed out and did not take effect: the order still works there")
        self._after_request(tracked, found)  # fills the answer may carry
        return refusal

    def _amend_settled_by_status(self, tracked: OrderRecord, slot: _Slot, found: OrderResult | str,
                                 exc: VenueError, quantity: float | None, price: float | None) -> OrderResult:
        """An amend timed out: it took effect when the venue's order has the new terms."""
        cid = tracked.result.order_id
        if not isinstance(found, OrderResult):
            return self._cancel_result(
                tracked, cid, f"amend failed at {slot.id}: {exc}; a status query could not settle it")
        if found.exchange_id != slot.id:
            _restamp(found, slot.id)
        landed = (quantity is None or found.quantity == quantity) and (price is None or found.price == price)
        if landed:
            return self._amended(tracked, found, quantity, price)
        self._after_request(tracked, found)
        return self._cancel_result(
            tracked, cid, f"amend at {slot.id} timed out and did not take effect; the order is unchanged")

    def get_order_status(self, order_id: str) -> OrderResult:
        """The router's latest knowledge of an order (results and pushed reports); an
        order still being sent is PENDING_NEW."""
        if not isinstance(order_id, str):
            return self._cancel_result(None, repr(order_id), _not_an_id(order_id))
        with self._lock:
            result = self.store.result(order_id)  # from history: the result alone is built back
            flight = self._inflight.get(order_id) if result is None else None
        if result is not None:
            return result
        if flight is not None:
            return self._pending_result(flight.order, flight.venue, f"sent to {flight.venue}; no answer yet")
        return self._cancel_result(None, order_id, f"unknown order {quote(order_id)} (or expired from memory)")

    def _target(
        self, order_id: str, action: str, *, waited: bool = False
    ) -> tuple[OrderRecord, _Slot] | OrderResult | _Flight:
        """The order and venue a cancel or amend goes to, why it cannot go, or the flight
        of an order still being sent (the caller waits for its answer, then asks again
        with `waited`: a cancel, a cancel-all or a halt must not miss it)."""
        if not isinstance(order_id, str):
            return self._cancel_result(None, repr(order_id), _not_an_id(order_id))
        with self._lock:
            tracked = self.store.record(order_id)
            flight = self._inflight.get(order_id) if tracked is None else None
        if flight is not None:
            if not waited:
                return flight
            return self._cancel_result(
                None, order_id, f"order {order_id!r} is still being sent to {flight.venue}; no answer yet"
            )
        if tracked is None:
            return self._cancel_result(None, order_id, f"unknown order {quote(order_id)}")
        if action == "cancel" and tracked.result.status.is_final:
            return self._cancel_result(
                tracked, order_id, f"order {order_id} is already {tracked.result.status.value}"
            )
        if action == "amend" and self.halted_reason is not None:
            return self._cancel_result(tracked, order_id, f"trading halted: {self.halted_reason}")
        slot = self._slots.get(tracked.venue)
        if slot is None:
            return self._cancel_result(tracked, order_id, f"exchange {tracked.venue!r} is no longer registered")
        return tracked, slot

    def _reach(self, order_id: str, action: str) -> tuple[OrderRecord, _Slot] | OrderResult:
        """`_target`, waiting (sync) for the answer of an order still being sent."""
        target = self._target(order_id, action)
        if isinstance(target, _Flight):
            self._wait(target)
            target = self._target(order_id, action, waited=True)
        return target  # type: ignore[return-value]  # waited: never a flight

    async def _reach_async(self, order_id: str, action: str) -> tuple[OrderRecord, _Slot] | OrderResult:
        """`_target`, awaiting the answer of an order still being sent."""
        target = self._target(order_id, action)
        if isinstance(target, _Flight):
            await self._wait_async(target)
            target = self._target(order_id, action, waited=True)
        return target  # type: ignore[return-value]  # waited: never a flight

    def _amend_changes(self, quantity: float | None, price: float | None) -> dict[str, float] | None:
        """An amend's changes as the order's new fields; None when one is not a size at
        all (the venue refuses it with its own reason) or nothing changes."""
        changes = {}
        for name, value in (("quantity", quantity), ("price", price)):
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                return None
            changes[name] = float(value)
        return changes or None

    def _amend_refusal(self, tracked: OrderRecord, slot: _Slot, quantity: float | None,
                       price: float | None) -> OrderResult | None:
        """The risk limits' verdict on the order an amend would make (None: it may go)."""
        risk = self.risk
        if risk is None:
            return None
        changes = self._amend_changes(quantity, price)
        if changes is None:
            return None
        order = tracked.order.model_copy(update=changes)
        reason = risk.check_replace(order, lambda depth: self.read_book(slot.id, order.symbol, depth))
        if reason is None:
            return None
        cid = order.client_order_id or order.id
        return self._cancel_result(tracked, cid, f"amend refused: {reason}; the order is unchanged")

    def _amended(self, tracked: OrderRecord, result: OrderResult, quantity: float | None,
                 price: float | None) -> OrderResult:
        changes = {k: v for k, v in (("quantity", quantity), ("price", price)) if v is not None}
        return self._after_request(tracked, result, changes if result.status is not _REJECTED else None)

    def working_orders(self) -> list[OrderResult]:
        """Orders not final, those still being sent (PENDING_NEW) included."""
        with self._lock:
            working = self.store.working_results()
            flights = list(self._inflight.values())
        working.extend(self._pending_result(f.order, f.venue, f"sent to {f.venue}; no answer yet")
                       for f in flights)
        return working


class OrderRouter(_RouterCore):
    """Routes orders to registered venues, synchronously, with retries.

    `OrderRouter(latency_profiler=profiler)` is the component document's form;
    `max_retries` and `retry_delay` (or a full `retry_policy`) tune retries.
    """

    def submit_order(self, order: Order, exchange_id: str | None = None) -> OrderResult:
        clock = self.clock
        t_in = clock.now_ns()
        me = threading.get_ident()
        slot = self._admit(order, exchange_id, me)
        if not isinstance(slot, _Slot):
            return slot if isinstance(slot, OrderResult) else self._wait(slot)
        calling = self._calling
        try:
            calling.add(me)
            t0 = clock.now_ns()
            try:
                result = slot.client.submit(order)
                elapsed = clock.now_ns() - t0
            except VenueError as exc:
                elapsed = clock.now_ns() - t0
                calling.discard(me)
                return self._drive(slot, self._retry_loop(slot, order, exc, elapsed))
            except BaseException:
                # Not the venue's answer (a bug below): hand back the breaker's admission,
                # or a HALF_OPEN breaker would wait for this trial forever.
                calling.discard(me)
                self._give_back(slot, order)
                raise
            calling.discard(me)
            return self._on_success(slot, order, result, elapsed, t0 - t_in)
        except BaseException as exc:
            self._abandon(order, exc)  # resends of it must not wait for ever
            raise

    def submit_orders(self, orders: Iterable[Order], exchange_id: str | None = None) -> list[OrderResult]:
        """A result per order, in order; one bad order never sinks the rest.

        One admission pass over the batch, then one venue request per venue for the
        orders it admitted (`submit_many` where the venue takes batches), then each
        answer's bookkeeping; what the orders' changes publish is delivered once, at
        the end. An order whose id appears twice in the batch is sent once; the second
        gets the first's answer, as a resend would."""
        orders = list(orders)
        results: list[OrderResult | None] = [None] * len(orders)
        me = threading.get_ident()
        batches: dict[str, tuple[_Slot, list[int]]] = {}
        repeats: list[tuple[int, _Flight]] = []
        for i, order in enumerate(orders):
            if not isinstance(order, Order):
                results[i] = self._not_an_order(i, order)
                continue
            try:
                admitted = self._admit(order, exchange_id, me)
            except Exception as exc:  # a check's bug costs this order, not the batch
                log.exception("order %s failed in batch", getattr(order, "id", "?"))
                results[i] = self.refuse(order, exchange_id, f"internal error: {exc}")
                continue
            if isinstance(admitted, _Slot):
                batch = batches.get(admitted.id)
                if batch is None:
                    batches[admitted.id] = (admitted, [i])
                else:
                    batch[1].append(i)
            elif isinstance(admitted, OrderResult):
                results[i] = admitted
            else:
                repeats.append((i, admitted))
        for slot, indexes in batches.values():
            self._send_batch(slot, [orders[i] for i in indexes], indexes, results)
        for i, flight in repeats:
            results[i] = self._wait(flight) if flight.result is None else flight.result
        if self.store.pending:
            self.store.deliver()
        return results  # type: ignore[return-value]

    def _send_batch(self, slot: _Slot, batch: list[Order], indexes: list[int],
                    results: list[OrderResult | None]) -> None:
        """The admitted orders of one venue, in one request; each answer's bookkeeping."""
        clock = self.clock
        calling, me = self._calling, threading.get_ident()
        calling.add(me)  # reports the call raises are delivered after it
        t0 = clock.now_ns()
        try:
            many = getattr(slot.client, "submit_many", None) if len(batch) > 1 else None
            answers = many(batch) if many is not None else [self._one(slot, order) for order in batch]
        except Exception as exc:  # not a venue's answer: none of these went out
            calling.discard(me)
            log.exception("batch of %d orders failed at %s", len(batch), slot.id)
            for i, order in zip(indexes, batch):
                self._give_back(slot, order)
                self._abandon(order, exc)
                results[i] = self.refuse(order, slot.id, f"internal error: {exc}")
            return
        calling.discard(me)
        # The venue's time for each order: its own stamp when it gives one, else a share
        # of the batch's round trip.
        each = (clock.now_ns() - t0) // len(batch)
        for i, order, answer in zip(indexes, batch, answers):
            try:
                if isinstance(answer, VenueError):
                    results[i] = self._drive(slot, self._retry_loop(slot, order, answer, each))
                else:
                    results[i] = self._on_success(slot, order, answer, each, 0, deliver=False)
            except Exception as exc:  # a bug below costs this order, not the batch
                log.exception("order %s failed in batch", order.id)
                self._abandon(order, exc)
                results[i] = self.refuse(order, slot.id, f"internal error: {exc}")

    @staticmethod
    def _one(slot: _Slot, order: Order) -> OrderResult | VenueError:
        try:
            return slot.client.submit(order)  # type: ignore[no-any-return]
        except VenueError as exc:
            return exc

    def _drive(self, slot: _Slot, loop: Decision[Any]) -> Any:
        calling, me, store = self._calling, threading.get_ident(), self.store

        def perform(request: Request) -> Any:
            if store.pending:
                store.deliver()  # what reports raised during the last venue call
            op = request.op
            if op == "sleep":
                return self.clock.sleep(request.arg)
            calling.add(me)
            try:
                if op == "submit":
                    return slot.client.submit(request.arg)
                return slot.client.status(request.arg)
            except (VenueError, UnknownOrderError):
                raise  # an answer the decision needs (a status query's "not found" too)
            except BaseException:
                if op == "submit":
                    self._give_back(slot, request.arg)  # see submit_order
                raise
            finally:
                calling.discard(me)

        result = drive(loop, perform, _ANSWERS)
        if store.pending:
            store.deliver()
        return result

    def reconcile_pending(self) -> list[OrderResult]:
        """Ask again about orders whose outcome is still unknown; returns those resolved."""
        done = []
        for slot, order in self._to_reconcile():
            result = self._drive(slot, self._reconcile_only(slot, order))
            if result is not None:
                done.append(result)
        return done

    def cancel_order(self, order_id: str) -> OrderResult:
        target = self._reach(order_id, "cancel")
        if not isinstance(target, tuple):
            return target
        tracked, slot = target
        before = self._cancel_sent(tracked)
        calling, me = self._calling, threading.get_ident()
        calling.add(me)
        try:
            result = slot.client.cancel(order_id)
        except UnknownOutcomeError as exc:
            calling.discard(me)
            found = self._drive(slot, self._ask_venue(tracked.order))
            return self._cancel_settled_by_status(tracked, before, slot, found, exc)
        except VenueError as exc:
            return self._cancel_refused(tracked, before, f"cancel failed at {slot.id}: {exc}")
        except BaseException:
            self._cancel_refused(tracked, before, "the cancel did not reach the venue")
            raise
        finally:
            calling.discard(me)
            if self.store.pending:
                self.store.deliver()  # what reports raised during the call
        return self._after_cancel(tracked, before, result)

    def amend_order(self, order_id: str, quantity: float | None = None, price: float | None = None) -> OrderResult:
        target = self._reach(order_id, "amend")
        if not isinstance(target, tuple):
            return target
        tracked, slot = target
        refused = self._amend_refusal(tracked, slot, quantity, price)
        if refused is not None:
            return refused
        calling, me = self._calling, threading.get_ident()
        calling.add(me)
        try:
            result = slot.client.amend(order_id, quantity=quantity, price=price)
        except UnknownOutcomeError as exc:
            calling.discard(me)
            found = self._drive(slot, self._ask_venue(tracked.order))
            return self._amend_settled_by_status(tracked, slot, found, exc, quantity, price)
        except VenueError as exc:
            return self._cancel_result(tracked, order_id, f"amend failed at {slot.id}: {exc}")
        finally:
            calling.discard(me)
            if self.store.pending:
                self.store.deliver()  # what reports raised during the call
        return self._amended(tracked, result, quantity, price)


class AsyncOrderRouter(_RouterCore):
    """The async router: the same operations as coroutines, on anyio.

    `submit_order(order)` is context-aware: inside a running event loop it
    returns an already scheduled task (the order goes out even if nobody
    awaits it); from synchronous code it returns a
    `concurrent.futures.Future` whose coroutine runs on a loop this router
    owns in a daemon thread, started on first use and closed by `close()` or
    at exit. Nothing loop-bound is created at construction, so the router
    also works from any later loop.
    """

    def __init__(self, latency_profiler: LatencyProfiler | None = None, **kwargs: Any) -> None:
        super().__init__(latency_profiler, **kwargs)
        self._portal: BlockingPortal | None = None
        self._portal_thread: threading.Thread | None = None
        self._portal_lock = threading.Lock()
        self._tasks: set[asyncio.Task[Any]] = set()

    def _check_client(self, client: Any) -> None:
        if not (callable(getattr(client, "submit_async", None)) or callable(getattr(client, "submit", None))):
            raise ConfigurationError(
                f"{type(client).__name__} has neither submit_async() nor submit(); "
                "register an AsyncExchangeClient or a Venue"
            )

    async def _call(self, slot: _Slot, op: str, *args: Any, **kwargs: Any) -> Any:
        client = slot.client
        method = getattr(client, f"{op}_async", None)
        if method is not None:
            return await method(*args, **kwargs)
        return await anyio.to_thread.run_sync(lambda: getattr(client, op)(*args, **kwargs))

    async def submit_order_async(self, order: Order, exchange_id: str | None = None) -> OrderResult:
        t_in = self.clock.now_ns()
        admitted = self._admit(order, exchange_id)
        if not isinstance(admitted, _Slot):
            return admitted if isinstance(admitted, OrderResult) else await self._wait_async(admitted)
        try:
            return await self._send(admitted, order, t_in)
        except asyncio.CancelledError:
            # The caller gave up while the order was on its way: it may have reached the
            # venue. Its outcome is unknown until a status query settles it
            # (reconcile_pending), never a refusal that would let a resend double it.
            self._outcome_unknown(order, admitted, "its sender was cancelled while it was on its way")
            raise
        except BaseException as exc:
            self._abandon(order, exc)
            raise

    async def _send(self, slot: _Slot, order: Order, t_in: int) -> OrderResult:
        clock = self.clock
        t0 = clock.now_ns()
        try:
            result = await self._call(slot, "submit", order)
            elapsed = clock.now_ns() - t0
        except VenueError as exc:
            return await self._drive(slot, self._retry_loop(slot, order, exc, clock.now_ns() - t0))
        except BaseException:
            # Not the venue's answer (a bug below, or cancellation): hand back the
            # breaker's admission, or a HALF_OPEN breaker would wait for it forever.
            self._give_back(slot, order)
            raise
        return self._on_success(slot, order, result, elapsed, t0 - t_in)

    async def _drive(self, slot: _Slot, loop: Decision[Any]) -> Any:
        async def perform(request: Request) -> Any:
            op = request.op
            if op == "sleep":
                return await self.clock.sleep_async(request.arg)
            try:
                return await self._call(slot, op, request.arg)
            except (VenueError, UnknownOrderError):
                raise  # an answer the decision needs (a status query's "not found" too)
            except BaseException:
                if op == "submit":
                    self._give_back(slot, request.arg)  # see submit_order
                raise

        return await drive_async(loop, perform, _ANSWERS)

    async def submit_orders_async(
        self, orders: Iterable[Order], exchange_id: str | None = None
    ) -> list[OrderResult]:
        """A result per order, in order; sent concurrently; one bad order never sinks the rest."""
        orders = list(orders)
        results: list[OrderResult | None] = [None] * len(orders)

        async def one(i: int, order: Order) -> None:
            try:
                results[i] = await self.submit_order_async(order, exchange_id)
            except Exception as exc:
                log.exception("order %s failed in batch", getattr(order, "id", "?"))
                results[i] = self.refuse(order, exchange_id, f"internal error: {exc}")

        async with anyio.create_task_group() as tg:
            for i, order in enumerate(orders):
                if isinstance(order, Order):
                    tg.start_soon(one, i, order)
                else:
                    results[i] = self._not_an_order(i, order)
        return results  # type: ignore[return-value]

    async def reconcile_pending_async(self) -> list[OrderResult]:
        done = []
        for slot, order in self._to_reconcile():
            result = await self._drive(slot, self._reconcile_only(slot, order))
            if result is not None:
                done.append(result)
        return done

    async def cancel_order_async(self, order_id: str) -> OrderResult:
        target = await self._reach_async(order_id, "cancel")
        if not isinstance(target, tuple):
            return target
        tracked, slot = target
        before = self._cancel_sent(tracked)
        try:
            result = await self._call(slot, "cancel", order_id)
        except UnknownOutcomeError as exc:
            found = await self._drive(slot, self._ask_venue(tracked.order))
            return self._cancel_settled_by_status(tracked, before, slot, found, exc)
        except VenueError as exc:
            return self._cancel_refused(tracked, before, f"cancel failed at {slot.id}: {exc}")
        except BaseException:
            self._cancel_refused(tracked, before, "the cancel did not reach the venue")
            raise
        return self._after_cancel(tracked, before, result)

    async def amend_order_async(
        self, order_id: str, quantity: float | None = None, price: float | None = None
    ) -> OrderResult:
        target = await self._reach_async(order_id, "amend")
        if not isinstance(target, tuple):
            return target
        tracked, slot = target
        refused = self._amend_refusal(tracked, slot, quantity, price)
        if refused is not None:
            return refused
        try:
            result = await self._call(slot, "amend", order_id, quantity=quantity, price=price)
        except UnknownOutcomeError as exc:
            found = await self._drive(slot, self._ask_venue(tracked.order))
            return self._amend_settled_by_status(tracked, slot, found, exc, quantity, price)
        except VenueError as exc:
            return self._cancel_result(tracked, order_id, f"amend failed at {slot.id}: {exc}")
        return self._amended(tracked, result, quantity, price)

    async def get_order_status_async(self, order_id: str) -> OrderResult:
        return self.get_order_status(order_id)

    # -- the context-aware wrappers ------------------------------------------------
    def submit_order(self, order: Order, exchange_id: str | None = None) -> Any:
        """From sync code: a concurrent.futures.Future; in a running loop: a scheduled task."""
        return self._run_sync_or_task(self.submit_order_async, order, exchange_id)

    def cancel_order(self, order_id: str) -> Any:
        return self._run_sync_or_task(self.cancel_order_async, order_id)

    def amend_order(self, order_id: str, quantity: float | None = None, price: float | None = None) -> Any:
        return self._run_sync_or_task(self.amend_order_async, order_id, quantity, price)

    def _run_sync_or_task(self, fn: Callable[..., Coroutine[Any, Any, Any]], *args: Any) -> Any:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return self._ensure_portal().start_task_soon(fn, *args)
        task = loop.create_task(fn(*args))
        # Keep a strong reference: an unawaited task must still run to the end.
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    @property
    def has_loop_thread(self) -> bool:
        """Whether this router runs its own loop thread (started by a call from sync code,
        ended by `close()`)."""
        return self._portal is not None

    def _ensure_portal(self) -> BlockingPortal:
        with self._portal_lock:
            if self._portal is not None:
                return self._portal
            ready: concurrent.futures.Future[BlockingPortal] = concurrent.futures.Future()
            options = self.clock.backend_options()

            def run() -> None:
                async def main() -> None:
                    async with BlockingPortal() as portal:
                        ready.set_result(portal)
                        await portal.sleep_until_stopped()

                try:
                    anyio.run(main, backend_options=options)
                except BaseException as exc:  # surface start-up failure to the caller
                    if not ready.done():
                        ready.set_exception(exc)

            # A daemon thread: the router's loop never keeps a process alive at exit.
            thread = threading.Thread(target=run, name="execdesk-router-loop", daemon=True)
            thread.start()
            self._portal = ready.result()
            self._portal_thread = thread
            _OPEN_ROUTERS.add(self)
            return self._portal

    def close(self) -> None:
        """Stop the router's own loop thread, if it was started (pending calls are canceled)."""
        with self._portal_lock:
            portal, thread = self._portal, self._portal_thread
            self._portal = self._portal_thread = None
        if portal is not None:
            try:
                portal.call(portal.stop, True)
            except RuntimeError:
                pass  # the loop already ended
            if thread is not None and thread is not threading.current_thread():
                thread.join(timeout=2.0)
        _OPEN_ROUTERS.discard(self)


def _not_an_id(order_id: object) -> str:
    return f"an order id is a string, got {type(order_id).__name__} {order_id!r}"


def _restamp(result: OrderResult, venue: str) -> None:
    """Name the venue as the router registered it (a venue's own name may differ)."""
    result.exchange_id = venue
    if result.fills:
        result.fills = [dataclasses.replace(f, exchange_id=venue) for f in result.fills]


_OPEN_ROUTERS: weakref.WeakSet[AsyncOrderRouter] = weakref.WeakSet()


@atexit.register
def _close_routers() -> None:
    for router in list(_OPEN_ROUTERS):
        router.close()
