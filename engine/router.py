"""Per-venue order routing: the checks no order or child may skip.

`OrderRouter` (sync) and `AsyncOrderRouter` (anyio) share one core,
`_RouterCore`: registration, pre-trade checks (halt, venue enabled, circuit
breaker, latency gate, risk limits and hooks), bookkeeping after each venue answer
(breaker, profiler, fill ratio, events) and the retry/reconciliation decision
loop. The fronts differ only in how they perform a venue call: the decision
loop is a generator that yields the venue request it wants made
(`_Call`) and receives the answer or the exception, h11-style, so the sync
and async drivers are a few lines each and the logic exists once.

Rules:

* The client order id is the idempotency key. A retry after a transient
  error resends the same id; after an unknown outcome (timeout) nothing is
  resent until a status query says the venue does not have the order.
* Resubmitting an order the router already knows, with the same fields,
  returns that order's current state instead of a second order; the same id
  with different fields is refused.
* Risk limits (`engine.risk`), when given, are the last pre-trade check:
  every order and child is admitted by the `RiskChecker` before its venue
  call, an amend is judged as the order it would make, and every new state
  of an admitted order is reported back to the checker.
* Venue trouble comes back as an `OrderResult` with status and reason, never
  as an exception; it is logged with the order id at WARNING, and nothing is
  logged per order on the success path.
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import dataclasses
import itertools
import logging
import math
import random
import threading
import weakref
from collections import OrderedDict
from collections.abc import Callable, Coroutine, Generator, Iterable
from dataclasses import dataclass, field
from typing import Any

import anyio
from anyio.from_thread import BlockingPortal

from .breaker import BreakerConfig, BreakerState, BreakerTransition, CircuitBreaker
from .clock import Clock, RealClock
from .errors import (
    ConfigurationError,
    ExecdeskError,
    PermanentVenueError,
    UnknownOrderError,
    UnknownVenueError,
    VenueError,
)
from .events import (
    BreakerStateChanged,
    Event,
    OrderAccepted,
    OrderCanceled,
    OrderDenied,
    OrderExpired,
    OrderFilled,
    OrderRejected,
    OrderSubmitted,
    VenueDisabled,
    VenueEnabled,
)
from .history import History
from .models import (
    Order,
    OrderResult,
    OrderStatus,
    compact_order,
    compact_result,
    order_from_compact,
    result_from_compact,
)
from .profiler import LatencyProfiler
from .retry import RetryPolicy, RetryState
from .risk import RiskChecker, RiskLimits
from .venue import BookSnapshot, ExecutionReport

log = logging.getLogger("execdesk.router")

__all__ = ["OrderRouter", "AsyncOrderRouter", "PreTradeCheck", "VenueStats"]

# A pre-trade check returns None to pass or a one-line reason to refuse.
PreTradeCheck = Callable[[Order, str], "str | None"]
OrderListener = Callable[[OrderResult], None]

# Finished orders kept as live objects before they move to compact history.
LIVE_FINISHED_ORDERS = 1_000
_EWMA = 0.05  # weight of the newest order in the fill-ratio and error-rate averages


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


@dataclass(slots=True)
class _Tracked:
    order: Order
    venue: str
    result: OrderResult


def _pack_tracked(tracked: _Tracked) -> tuple[Any, ...]:
    return compact_order(tracked.order), tracked.venue, compact_result(tracked.result)


def _unpack_tracked(values: tuple[Any, ...]) -> _Tracked:
    order, venue, result = values
    return _Tracked(order_from_compact(order), venue, result_from_compact(result))


@dataclass(frozen=True, slots=True)
class _Call:
    """A venue request the decision loop wants made (or a wait)."""

    op: str  # "submit", "status", "sleep"
    arg: Any = None


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
        self._slots: dict[str, _Slot] = {}
        # Working orders and the newest finished ones, as live objects; older finished
        # ones move to `_history`, compactly (see engine/history.py). Together they keep
        # `remember_orders` finished orders.
        self._orders: OrderedDict[str, _Tracked] = OrderedDict()
        self._remember = remember_orders
        self._live_limit = min(LIVE_FINISHED_ORDERS, remember_orders)
        self._history: History[_Tracked] = History(
            max(remember_orders - self._live_limit, 0), pack=_pack_tracked, unpack=_unpack_tracked
        )
        self._checks: list[PreTradeCheck] = []
        self._listeners: list[OrderListener] = []
        self._unreconciled: dict[str, str] = {}  # client order id -> venue
        self.halted_reason: str | None = None
        self.on_event = on_event
        self._lock = threading.Lock()
        self.risk: RiskChecker | None = None
        if risk is not None:
            self.use_risk(risk)

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
        add = getattr(client, "add_report_listener", None)
        if add is not None:
            add(on_report)
        self._slots[exchange_id] = slot

    def _check_client(self, client: Any) -> None:
        if not callable(getattr(client, "submit", None)):
            raise ConfigurationError(
                f"{type(client).__name__} has no submit(); register an ExchangeClient or a Venue"
            )

    def unregister_exchange(self, exchange_id: str) -> None:
        slot = self._slot(exchange_id)
        remove = getattr(slot.client, "remove_report_listener", None)
        if remove is not None and slot.listener is not None:
            remove(slot.listener)
        del self._slots[exchange_id]

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
        try:
            return self._slots[exchange_id]
        except KeyError:
            known = ", ".join(self._slots) or "none registered"
            raise UnknownVenueError(f"unknown exchange {exchange_id!r} (known: {known})") from None

    # -- pre-trade checks ---------------------------------------------------------
    def add_pre_trade_check(self, check: PreTradeCheck) -> None:
        """A check run for every order and child before it reaches a venue."""
        self._checks.append(check)

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
        if exchange_id is None:
            if len(self._slots) == 1:
                return next(iter(self._slots.values()))
            if not self._slots:
                return "no exchange is registered"
            return (
                f"exchange_id is required when several exchanges are registered "
                f"(known: {', '.join(self._slots)})"
            )
        slot = self._slots.get(exchange_id)
        if slot is None:
            return f"unknown exchange {exchange_id!r} (known: {', '.join(self._slots) or 'none'})"
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
    def _known(self, order: Order) -> OrderResult | None:
        """The idempotency check: a client order id this router already sent."""
        tracked = self._lookup(order.client_order_id)  # type: ignore[arg-type]
        if tracked is None:
            return None
        if tracked.order == order:
            return tracked.result
        return self._denied(
            order,
            tracked.venue,
            f"client order id {order.client_order_id!r} was already used for a different order",
            track=False,
        )

    def _track(self, order: Order, venue: str, result: OrderResult) -> None:
        orders = self._orders
        orders[order.client_order_id] = _Tracked(order, venue, result)  # type: ignore[index]
        if self.risk is not None:
            self.risk.update(result)
        if len(orders) > self._live_limit:
            # The oldest finished orders move to history (which forgets its oldest past
            # its bound); working ones stay live until they finish. Only the excess at
            # the old end is looked at: copying every key here made each order cost
            # O(remember_orders) once the bound was reached.
            oldest = itertools.islice(orders.items(), len(orders) - self._live_limit)
            history = self._history
            for cid, tracked in [(cid, t) for cid, t in oldest if t.result.status.is_final]:
                history.put(cid, tracked)
                del orders[cid]

    def _lookup(self, cid: str, *, revive: bool = False) -> _Tracked | None:
        """The order this router tracks under `cid`. One in history comes back as a copy
        (reading changes nothing: a status sweep must not undo the compaction, and other
        threads may be iterating); with `revive` it is made live again, for a caller that
        will change it (a late report on a canceled order)."""
        tracked = self._orders.get(cid)
        if tracked is not None or cid not in self._history:
            return tracked
        if not revive:
            return self._history.get(cid)
        with self._lock:
            tracked = self._orders.get(cid)
            if tracked is None:
                tracked = self._history.get(cid)
                if tracked is not None:
                    # Live first, then out of history: never in neither, for another thread.
                    self._orders[cid] = tracked
                    self._history.pop(cid)
        return tracked

    def _archived(self, cid: str) -> bool:
        """Finished and moved to history (cheap: nothing is unpickled)."""
        return cid not in self._orders and cid in self._history

    def _denied(self, order: Order, venue: str | None, reason: str, *, track: bool = True) -> OrderResult:
        result = OrderResult(
            order_id=order.client_order_id,  # type: ignore[arg-type]
            exchange_id=venue,
            status=OrderStatus.REJECTED,
            quantity=order.quantity,
            reason=reason,
            symbol=order.symbol,
            side=order.side,
            price=order.price,
            timestamp=self.clock.now(),
        )
        if track and venue is not None:
            tracked = self._lookup(order.client_order_id)  # type: ignore[arg-type]
            if tracked is None:
                self._track(order, venue, result)
            elif tracked.order == order and not tracked.result.status.is_final:
                # An order left PENDING_NEW by a timeout, now known never to have arrived.
                tracked.result = result
                if self.risk is not None:
                    self.risk.update(result)
        if self.on_event is not None:
            now = self.clock.now()
            self.on_event(OrderDenied(now, now, result.order_id, venue, result.status, order.parent_id, reason))
        self._notify(result)
        return result

    def _on_success(
        self, slot: _Slot, order: Order, result: OrderResult, elapsed_ns: int | None, engine_ns: int = 0
    ) -> OrderResult:
        """Bookkeeping after a venue answered. `elapsed_ns` is the venue round trip
        (acknowledgment), `engine_ns` the router's own time before the call
        (submission). `elapsed_ns` None: an answer learned by a status query,
        which measured no send and used no breaker admission."""
        profiler = self.profiler
        if result.exchange_id != slot.id:
            _restamp(result, slot.id)
        if elapsed_ns is not None:
            slot.breaker.record_success(elapsed_ns / 1e9)
            profiler.record("submission", engine_ns, slot.id)
            profiler.record("acknowledgment", elapsed_ns, slot.id)
            result.latency_ns = engine_ns + elapsed_ns
            result.ack_latency_ns = elapsed_ns
        stats = slot.stats
        stats.requests += 1
        stats.orders += 1
        stats.error_rate -= _EWMA * stats.error_rate
        if result.fills:
            stats.fills += len(result.fills)
            if elapsed_ns is not None:
                profiler.record("execution", elapsed_ns, slot.id)
        status = result.status
        if status is OrderStatus.REJECTED:
            stats.rejects += 1
        elif status.is_final:
            stats.fill_ratio += _EWMA * (result.filled_quantity / order.quantity - stats.fill_ratio)
        self._track(order, slot.id, result)
        if self.on_event is not None:
            self._emit_result(order, result)
        self._notify(result)
        return result

    def _on_failure(self, slot: _Slot, exc: VenueError, elapsed_ns: int) -> None:
        stats = slot.stats
        stats.requests += 1
        stats.errors += 1
        stats.error_rate += _EWMA * (1.0 - stats.error_rate)
        if isinstance(exc, PermanentVenueError):
            slot.breaker.release()  # the venue answered: its health is not in question
        else:
            slot.breaker.record_failure(elapsed_ns / 1e9)

    def _emit_result(self, order: Order, result: OrderResult) -> None:
        emit = self.on_event
        assert emit is not None
        now = self.clock.now()
        cid, venue, status, parent = result.order_id, result.exchange_id, result.status, order.parent_id
        emit(OrderSubmitted(now, now, cid, venue, OrderStatus.PENDING_NEW, parent, order.symbol,
                            order.side, order.type, order.quantity, order.price))
        if status is OrderStatus.REJECTED:
            emit(OrderRejected(result.timestamp, now, cid, venue, status, parent, result.reason or ""))
            return
        emit(OrderAccepted(result.timestamp, now, cid, venue, OrderStatus.NEW, parent))
        filled = 0.0
        for fill in result.fills:
            filled += fill.quantity
            left = max(order.quantity - filled, 0.0)
            st = OrderStatus.FILLED if fill is result.fills[-1] and status is OrderStatus.FILLED else OrderStatus.PARTIALLY_FILLED
            emit(OrderFilled(fill.timestamp, now, cid, venue, st, parent, fill, filled, left))
        if status is OrderStatus.EXPIRED:
            emit(OrderExpired(result.timestamp, now, cid, venue, status, parent,
                              result.filled_quantity, result.reason or ""))
        elif status is OrderStatus.CANCELED:
            emit(OrderCanceled(result.timestamp, now, cid, venue, status, parent,
                               result.filled_quantity, result.reason or ""))

    def _emit_factory(self, make: Callable[[float], Event]) -> None:
        if self.on_event is not None:
            self.on_event(make(self.clock.now()))

    def _on_breaker(self, t: BreakerTransition) -> None:
        level = logging.WARNING if t.new is BreakerState.OPEN else logging.INFO
        log.log(level, "breaker %s: %s -> %s (%s)", t.name, t.old.value, t.new.value, t.reason)
        if self.on_event is not None:
            now = self.clock.now()
            self.on_event(BreakerStateChanged(t.ts, now, t.name, t.old.value, t.new.value, t.reason))

    def add_order_listener(self, listener: OrderListener) -> None:
        """Called with every new state of an order this router handles (results and reports)."""
        self._listeners.append(listener)

    def remove_order_listener(self, listener: OrderListener) -> None:
        self._listeners.remove(listener)

    def _notify(self, result: OrderResult) -> None:
        for listener in self._listeners:
            try:
                listener(result)
            except Exception:  # a listener's bug must not stop routing
                log.exception("order listener failed for %s", result.order_id)

    def _on_report(self, venue: str, report: ExecutionReport) -> None:
        """A venue pushed news of a resting order: update our copy and tell listeners."""
        tracked = self._lookup(report.client_order_id, revive=True)
        if tracked is None:
            return
        result = tracked.result
        if result.status.is_final and result.status is not OrderStatus.CANCELED:
            return
        updated = OrderResult(
            order_id=result.order_id,
            exchange_id=venue,
            status=report.status,
            quantity=result.quantity,
            filled_quantity=report.filled_quantity,
            average_price=result.average_price,
            fills=list(result.fills),
            reason=report.reason or result.reason,
            symbol=result.symbol,
            side=result.side,
            price=result.price,
            timestamp=report.ts_event,
            latency_ns=result.latency_ns,
        )
        if report.fill is not None:
            fill = report.fill
            if fill.exchange_id != venue:
                fill = dataclasses.replace(fill, exchange_id=venue)
            updated.fills.append(fill)
            notional = sum(f.price * f.quantity for f in updated.fills)
            qty = sum(f.quantity for f in updated.fills)
            updated.average_price = notional / qty if qty else None
            slot = self._slots.get(venue)
            if slot is not None:
                slot.stats.fills += 1
        if report.status.is_final:
            slot = self._slots.get(venue)
            if slot is not None and result.quantity:
                stats = slot.stats
                stats.fill_ratio += _EWMA * (report.filled_quantity / result.quantity - stats.fill_ratio)
        tracked.result = updated
        if self.risk is not None:
            self.risk.update(updated)
        if self.on_event is not None:
            now = self.clock.now()
            parent = tracked.order.parent_id
            if report.fill is not None:
                self.on_event(OrderFilled(report.ts_event, now, result.order_id, venue, report.status,
                                          parent, report.fill, report.filled_quantity,
                                          report.leaves_quantity))
            elif report.status is OrderStatus.EXPIRED:
                self.on_event(OrderExpired(report.ts_event, now, result.order_id, venue, report.status,
                                           parent, report.filled_quantity, report.reason or ""))
            elif report.status is OrderStatus.CANCELED:
                self.on_event(OrderCanceled(report.ts_event, now, result.order_id, venue, report.status,
                                            parent, report.filled_quantity, report.reason or ""))
        self._notify(updated)

    # -- the shared decision loop ------------------------------------------------
    def _retry_loop(
        self, slot: _Slot, order: Order, first_error: VenueError, elapsed_ns: int
    ) -> Generator[_Call, Any, OrderResult]:
        """After a failed first attempt: retry, reconcile or give up (see module rules).

        Yields `_Call`s; the driver performs each and sends back the answer, or
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
                return self._denied(order, slot.id, f"{slot.id}: {action.reason}")
            yield _Call("sleep", action.after_s)
            if action.kind == "reconcile":
                slot.stats.reconciled += 1
                found = yield from self._reconcile(slot, order, state)
                if isinstance(found, OrderResult):
                    return self._on_success(slot, order, found, None)
                if found == "unknown":
                    # Still no answer: keep the order PENDING_NEW; reconcile_pending() finishes it.
                    self._unreconciled[order.client_order_id] = slot.id  # type: ignore[index]
                    result = OrderResult(
                        order_id=order.client_order_id,  # type: ignore[arg-type]
                        exchange_id=slot.id,
                        status=OrderStatus.PENDING_NEW,
                        quantity=order.quantity,
                        reason=f"{slot.id} timed out; outcome unknown until the venue answers a status query",
                        symbol=order.symbol,
                        side=order.side,
                        price=order.price,
                        timestamp=self.clock.now(),
                    )
                    self._track(order, slot.id, result)
                    self._notify(result)
                    return result
                # "absent": the venue never saw it; resending is safe (and counts as a retry).
                action = state.not_found()
                if action.kind == "give_up":
                    return self._denied(order, slot.id, f"{slot.id}: {action.reason}")
                slot.stats.retried += 1
            else:
                slot.stats.retried += 1
            if self.halted_reason is not None:
                return self._denied(order, slot.id, f"trading halted: {self.halted_reason}")
            if not slot.breaker.allow_request():
                return self._denied(
                    order, slot.id, f"{slot.id} circuit breaker opened while retrying: {error}"
                )
            t0 = self.clock.now_ns()
            try:
                result = yield _Call("submit", order)
            except VenueError as exc:
                error, elapsed_ns = exc, self.clock.now_ns() - t0
                continue
            return self._on_success(slot, order, result, self.clock.now_ns() - t0)

    def _reconcile(
        self, slot: _Slot, order: Order, state: RetryState
    ) -> Generator[_Call, Any, OrderResult | str]:
        """Ask the venue for the order by client order id until it answers.

        Returns the venue's result, "absent" (safe to resend) or "unknown".
        """
        for delay in state.reconcile_delays():
            try:
                return (yield _Call("status", order.client_order_id))
            except UnknownOrderError:
                return "absent"
            except VenueError:
                yield _Call("sleep", delay)
        return "unknown"

    def _reconcile_only(self, slot: _Slot, order: Order) -> Generator[_Call, Any, OrderResult | None]:
        state = RetryState(self.retry_policy, self._rng)
        found = yield from self._reconcile(slot, order, state)
        if isinstance(found, OrderResult):
            del self._unreconciled[order.client_order_id]  # type: ignore[arg-type]
            return self._on_success(slot, order, found, None)
        if found == "absent":
            del self._unreconciled[order.client_order_id]  # type: ignore[arg-type]
            return self._denied(
                order, slot.id, f"{slot.id} never received the order (confirmed by status query)"
            )
        return None

    def _to_reconcile(self) -> list[tuple[_Slot, Order]]:
        """Orders whose outcome is still unknown, with their venue (forgetting the orphans)."""
        pending = []
        for cid, venue in list(self._unreconciled.items()):
            slot, tracked = self._slots.get(venue), self._lookup(cid)
            if slot is None or tracked is None:
                self._unreconciled.pop(cid, None)
            else:
                pending.append((slot, tracked.order))
        return pending

    @property
    def unreconciled(self) -> list[str]:
        return list(self._unreconciled)

    def _cancel_result(self, tracked: _Tracked | None, cid: str, reason: str) -> OrderResult:
        return OrderResult(
            order_id=cid,
            exchange_id=tracked.venue if tracked else None,
            status=OrderStatus.REJECTED,
            quantity=tracked.order.quantity if tracked else 0.0,
            filled_quantity=tracked.result.filled_quantity if tracked else 0.0,
            reason=reason,
            timestamp=self.clock.now(),
        )

    def _tracked_for(self, order_id: str) -> _Tracked | None:
        return self._lookup(order_id)

    def _after_request(self, tracked: _Tracked, result: OrderResult) -> OrderResult:
        """A cancel/amend/status answer replaces our copy of the order."""
        if result.status is not OrderStatus.REJECTED or tracked.result.status is OrderStatus.PENDING_NEW:
            if result.fills == [] and tracked.result.fills and result.filled_quantity:
                result.fills = list(tracked.result.fills)
            tracked.result = result
            if self.risk is not None:
                self.risk.update(result)
        if self.on_event is not None and result.status is OrderStatus.CANCELED:
            now = self.clock.now()
            self.on_event(OrderCanceled(result.timestamp, now, result.order_id, tracked.venue,
                                        result.status, tracked.order.parent_id,
                                        result.filled_quantity, result.reason or "canceled"))
        self._notify(result)
        return result

    def get_order_status(self, order_id: str) -> OrderResult:
        """The router's latest knowledge of an order (results and pushed reports)."""
        tracked = self._tracked_for(order_id)
        if tracked is None:
            return self._cancel_result(None, order_id, f"unknown order {order_id!r} (or expired from memory)")
        return tracked.result

    def _admit(self, order: Order, exchange_id: str | None) -> _Slot | OrderResult:
        """Everything decided before a venue call: the slot to use, or the answer already known."""
        slot = self._resolve(order, exchange_id)
        if isinstance(slot, str):
            return self._denied(order, None, slot)
        known = self._known(order)
        if known is not None:
            return known
        refusal = self._pre_trade(order, slot)
        if refusal is not None:
            return self._denied(order, slot.id, refusal)
        return slot

    def _target(self, order_id: str, action: str) -> tuple[_Tracked, _Slot] | OrderResult:
        """The order and venue a cancel or amend goes to, or why it cannot go."""
        tracked = self._tracked_for(order_id)
        if tracked is None:
            return self._cancel_result(None, order_id, f"unknown order {order_id!r}")
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

    def _amend_refusal(self, tracked: _Tracked, slot: _Slot, quantity: float | None,
                       price: float | None) -> OrderResult | None:
        """The risk limits' verdict on the order an amend would make (None: it may go)."""
        risk = self.risk
        if risk is None:
            return None
        changes = {}
        for name, value in (("quantity", quantity), ("price", price)):
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                return None  # not a size at all: the venue refuses it with its own reason
            changes[name] = float(value)
        if not changes:
            return None
        order = tracked.order.model_copy(update=changes)
        reason = risk.check_replace(order, lambda depth: self.read_book(slot.id, order.symbol, depth))
        if reason is None:
            return None
        cid = order.client_order_id or order.id
        return self._cancel_result(tracked, cid, f"amend refused: {reason}; the order is unchanged")

    def _amended(self, tracked: _Tracked, result: OrderResult, quantity: float | None,
                 price: float | None) -> OrderResult:
        if result.status is not OrderStatus.REJECTED:
            tracked.order = tracked.order.model_copy(
                update={k: v for k, v in (("quantity", quantity), ("price", price)) if v is not None}
            )
        return self._after_request(tracked, result)

    def working_orders(self) -> list[OrderResult]:
        return [t.result for t in self._orders.values() if not t.result.status.is_final]


class OrderRouter(_RouterCore):
    """Routes orders to registered venues, synchronously, with retries.

    `OrderRouter(latency_profiler=profiler)` is the component document's form;
    `max_retries` and `retry_delay` (or a full `retry_policy`) tune retries.
    """

    def submit_order(self, order: Order, exchange_id: str | None = None) -> OrderResult:
        t_in = self.clock.now_ns()
        slot = self._admit(order, exchange_id)
        if isinstance(slot, OrderResult):
            return slot
        clock = self.clock
        t0 = clock.now_ns()
        try:
            result = slot.client.submit(order)
        except VenueError as exc:
            return self._drive(slot, self._retry_loop(slot, order, exc, clock.now_ns() - t0))
        except BaseException:
            # Not the venue's answer (a bug below): hand back the breaker's admission,
            # or a HALF_OPEN breaker would wait for this trial forever.
            self._give_back(slot, order)
            raise
        return self._on_success(slot, order, result, clock.now_ns() - t0, t0 - t_in)

    def submit_orders(self, orders: Iterable[Order], exchange_id: str | None = None) -> list[OrderResult]:
        """A result per order, in order; one bad order never sinks the rest."""
        results = []
        for order in orders:
            try:
                results.append(self.submit_order(order, exchange_id))
            except Exception as exc:  # a bug below must cost one order, not the batch
                log.exception("order %s failed in batch", getattr(order, "id", "?"))
                results.append(self._denied(order, exchange_id, f"internal error: {exc}"))
        return results

    def _drive(self, slot: _Slot, loop: Generator[_Call, Any, Any]) -> Any:
        reply: Any = None
        error: VenueError | UnknownOrderError | None = None
        while True:
            try:
                call = loop.send(reply) if error is None else loop.throw(error)
            except StopIteration as stop:
                return stop.value
            reply, error = None, None
            try:
                if call.op == "sleep":
                    self.clock.sleep(call.arg)
                elif call.op == "submit":
                    reply = slot.client.submit(call.arg)
                else:
                    reply = slot.client.status(call.arg)
            except (VenueError, UnknownOrderError) as exc:
                # A status query's "not found" is an answer the loop needs, not a failure.
                error = exc
            except BaseException:
                if call.op == "submit":
                    self._give_back(slot, call.arg)  # see submit_order
                raise

    def reconcile_pending(self) -> list[OrderResult]:
        """Ask again about orders whose outcome is still unknown; returns those resolved."""
        done = []
        for slot, order in self._to_reconcile():
            result = self._drive(slot, self._reconcile_only(slot, order))
            if result is not None:
                done.append(result)
        return done

    def cancel_order(self, order_id: str) -> OrderResult:
        target = self._target(order_id, "cancel")
        if isinstance(target, OrderResult):
            return target
        tracked, slot = target
        try:
            result = slot.client.cancel(order_id)
        except VenueError as exc:
            return self._cancel_result(tracked, order_id, f"cancel failed at {slot.id}: {exc}")
        return self._after_request(tracked, result)

    def amend_order(self, order_id: str, quantity: float | None = None, price: float | None = None) -> OrderResult:
        target = self._target(order_id, "amend")
        if isinstance(target, OrderResult):
            return target
        tracked, slot = target
        refused = self._amend_refusal(tracked, slot, quantity, price)
        if refused is not None:
            return refused
        try:
            result = slot.client.amend(order_id, quantity=quantity, price=price)
        except VenueError as exc:
            return self._cancel_result(tracked, order_id, f"amend failed at {slot.id}: {exc}")
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
        slot = self._admit(order, exchange_id)
        if isinstance(slot, OrderResult):
            return slot
        clock = self.clock
        t0 = clock.now_ns()
        try:
            result = await self._call(slot, "submit", order)
        except VenueError as exc:
            return await self._drive(slot, self._retry_loop(slot, order, exc, clock.now_ns() - t0))
        except BaseException:
            # Not the venue's answer (a bug below, or cancellation): hand back the
            # breaker's admission, or a HALF_OPEN breaker would wait for it forever.
            self._give_back(slot, order)
            raise
        return self._on_success(slot, order, result, clock.now_ns() - t0, t0 - t_in)

    async def _drive(self, slot: _Slot, loop: Generator[_Call, Any, Any]) -> Any:
        reply: Any = None
        error: VenueError | UnknownOrderError | None = None
        while True:
            try:
                call = loop.send(reply) if error is None else loop.throw(error)
            except StopIteration as stop:
                return stop.value
            reply, error = None, None
            try:
                if call.op == "sleep":
                    await self.clock.sleep_async(call.arg)
                else:
                    reply = await self._call(slot, call.op, call.arg)
            except (VenueError, UnknownOrderError) as exc:
                # A status query's "not found" is an answer the loop needs, not a failure.
                error = exc
            except BaseException:
                if call.op == "submit":
                    self._give_back(slot, call.arg)  # see submit_order
                raise

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
                results[i] = self._denied(order, exchange_id, f"internal error: {exc}")

        async with anyio.create_task_group() as tg:
            for i, order in enumerate(orders):
                tg.start_soon(one, i, order)
        return results  # type: ignore[return-value]

    async def reconcile_pending_async(self) -> list[OrderResult]:
        done = []
        for slot, order in self._to_reconcile():
            result = await self._drive(slot, self._reconcile_only(slot, order))
            if result is not None:
                done.append(result)
        return done

    async def cancel_order_async(self, order_id: str) -> OrderResult:
        target = self._target(order_id, "cancel")
        if isinstance(target, OrderResult):
            return target
        tracked, slot = target
        try:
            result = await self._call(slot, "cancel", order_id)
        except VenueError as exc:
            return self._cancel_result(tracked, order_id, f"cancel failed at {slot.id}: {exc}")
        return self._after_request(tracked, result)

    async def amend_order_async(
        self, order_id: str, quantity: float | None = None, price: float | None = None
    ) -> OrderResult:
        target = self._target(order_id, "amend")
        if isinstance(target, OrderResult):
            return target
        tracked, slot = target
        refused = self._amend_refusal(tracked, slot, quantity, price)
        if refused is not None:
            return refused
        try:
            result = await self._call(slot, "amend", order_id, quantity=quantity, price=price)
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
