"""The Engine: the one object the desk holds, and the easiest door for library users.

It wires venues, clock, profiler, risk limits, routers, scheduler, optimizer
and the event bus, and offers what an operator does: submit, cancel, amend,
cancel all, halt and resume, status, a risk preview for the ticket, and a
subscription to events. Risk limits are on by default (`risk=None` turns
them off). It is async
first (the desk runs it in Textual's event loop); the sync pieces
(`OrderRouter`, `ExecutionOptimizer`) remain available for scripts.
"""

from __future__ import annotations

import logging
import sqlite3
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread

from .scheduling.algos.base import ParentState
from .resilience.breaker import BreakerConfig
from .bus import EventBus, Subscription
from .clock import Clock, RealClock
from .errors import ConfigurationError, JournalError, UnknownOrderError
from .journal import Journal
from .recovery import RESTART_POLICIES, RecoveryReport, recover
from .events import EngineError, Halted, OrderUpdated, Resumed, VenueSessionChanged
from .venues.sim.config import FaultConfig, LatencyModel, MarketConfig
from .venues.sim.market import ReferenceMarket
from .venues.sim.exchange import SimulatedExchange
from .models import FeeSchedule, Order, OrderResult, OrderStatus
from .optimizer import AsyncExecutionOptimizer
from .positions import Position, PositionBook
from .profiler import LatencyProfiler
from .resilience.retry import RetryPolicy
from .risk import DEFAULT_RISK_LIMITS, RiskChecker, RiskLimits, RiskPreview
from .routing.router import AsyncOrderRouter
from .routing.smart import SmartOrderRouter
from .scheduling.scheduler import Scheduler
from .store import OrderStore

log = logging.getLogger("execdesk.engine")

__all__ = ["Engine", "HaltReport", "VenueSpec", "DEFAULT_VENUES", "simulated_venues"]


@dataclass(frozen=True, slots=True)
class VenueSpec:
    """How to build one simulated venue."""

    name: str
    fees: FeeSchedule
    latency: LatencyModel = LatencyModel()
    market: MarketConfig = MarketConfig()
    faults: FaultConfig = FaultConfig()
    description: str = ""


# Three characters an operator can tell apart on the venues panel.
DEFAULT_VENUES: tuple[VenueSpec, ...] = (
    VenueSpec(
        "swift",
        FeeSchedule(maker_bps=1.0, taker_bps=6.0),
        LatencyModel(median_s=0.0008, p99_s=0.004),
        MarketConfig(level_notional=20_000.0, half_spread_bps=0.6),
        description="fast and thin: quick acks, small size at each level, dearer taker fee",
    ),
    VenueSpec(
        "deep",
        FeeSchedule(maker_bps=1.0, taker_bps=4.0),
        LatencyModel(median_s=0.008, p99_s=0.040),
        MarketConfig(level_notional=200_000.0, level_spacing_bps=0.6),
        description="deep and slow: large size near the touch, slower acks",
    ),
    VenueSpec(
        "thrift",
        FeeSchedule(maker_bps=0.0, taker_bps=2.0),
        LatencyModel(median_s=0.003, p99_s=0.060),
        MarketConfig(level_notional=40_000.0, half_spread_bps=1.0),
        FaultConfig(error_rate=0.02),
        description="cheap and flaky: lowest fees, 2% transient errors, a long latency tail",
    ),
)


@dataclass
class HaltReport:
    """What a halt did: ids canceled, ids asked to cancel (queued orders, algorithm parents,
    whose children their scheduler cancels) and ids it could not cancel, with why."""

    reason: str
    canceled: list[str] = field(default_factory=list)
    asked: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)

    @property
    def count(self) -> int:
        return len(self.canceled) + len(self.asked)

    def summary(self) -> str:
        def orders(n: int) -> str:
            return f"{n} order{'' if n == 1 else 's'}"

        parts = [f"{orders(len(self.canceled))} canceled"] if self.canceled else []
        if self.asked:
            parts.append(f"{orders(len(self.asked))} {'also ' if parts else ''}asked to cancel (queued, algorithms)")
        if self.failed:
            oid, why = next(iter(self.failed.items()))
            parts.append(f"{len(self.failed)} could not be canceled yet (retrying), e.g. {oid}: {why}")
        return "; ".join(parts) or "nothing was working"


# How often a halted engine tries again to cancel what is still working.
HALT_RETRY_S = 2.0


@dataclass(slots=True)
class _EngineStats:
    submitted: int = 0
    errors: int = 0


# How the layers below begin an amend's refusal; the Engine says it once, its own way.
_AMEND_PREFIXES = ("amend refused: ",)

# Who holds a venue's breaker open while its network session is down (force_open's `by`).
_SESSION_HOLD = "FIX session"

# Client order ids each built-in venue remembers (to refuse a duplicate). A real venue
# forgets them after a session; at the desk demo's ~600 orders a second a million per
# venue kept memory growing for most of an hour, 200,000 is still hours of a busy desk.
DEFAULT_VENUE_REMEMBER_IDS = 200_000

# Finished orders whose applied fill count is kept, for late fills after their end.
FILL_COUNTS_KEPT = 100_000


def simulated_venues(
    seed: int = 0,
    *,
    clock: Clock | None = None,
    specs: tuple[VenueSpec, ...] = DEFAULT_VENUES,
    remember_ids: int | None = None,
) -> dict[str, SimulatedExchange]:
    """The simulated venues of `specs` (the built-in three by default), following one
    reference market, each seeded from `seed` by its place in `specs`: what
    `Engine.default`, `--venues sim:NAME` and `execdesk venue` all run."""
    clock = clock or RealClock()
    reference = ReferenceMarket(seed)  # one fair price the venues all follow
    return {
        spec.name: SimulatedExchange(
            spec.name, clock=clock, seed=seed * 1000 + i, fees=spec.fees,
            latency=spec.latency, market=spec.market, faults=spec.faults, reference=reference,
            remember_ids=DEFAULT_VENUE_REMEMBER_IDS if remember_ids is None else remember_ids,
        )
        for i, spec in enumerate(specs)
    }


class Engine:
    """Everything the desk needs, wired once. `Engine.default(seed=...)` gives three
    simulated venues; `Engine(venues={...})` takes any venues."""

    def __init__(
        self,
        venues: Mapping[str, Any],
        *,
        clock: Clock | None = None,
        seed: int = 0,
        profiler: LatencyProfiler | None = None,
        max_retries: int | None = None,
        retry_delay: float | None = None,
        retry_policy: RetryPolicy | None = None,
        breaker_config: BreakerConfig | None = None,
        max_latency_s: float | None = 0.5,
        remember_orders: int = 100_000,
        max_queue: int = 10_000,
        risk: RiskLimits | None = DEFAULT_RISK_LIMITS,
        journal: Journal | str | Path | None = None,
        on_restart: str = "stop",
    ) -> None:
        """`journal`: a `Journal` (or the path of one) that records every order before it
        is queued and every event after (see engine.journal); None keeps none. At `start`
        the orders it holds open are recovered (engine.recovery); `on_restart` says what
        becomes of algorithm parents a previous process left working: "stop" or "resume"."""
        if on_restart not in RESTART_POLICIES:
            raise ConfigurationError(f"on_restart must be one of {', '.join(RESTART_POLICIES)}, got {on_restart!r}")
        self.on_restart = on_restart
        self.recovery: RecoveryReport | None = None
        self.halt_report: HaltReport | None = None
        self._halt_retry_at = 0.0
        if not venues:
            raise ConfigurationError("an Engine needs at least one venue")
        if isinstance(remember_orders, int) and not isinstance(remember_orders, bool) and remember_orders < 1:
            # At 0 a finished order is forgotten as it finishes: a split order forgotten so
            # soon is recorded again from its answers and never ends, a status read right
            # after a wait finds nothing.
            raise ConfigurationError(
                f"remember_orders must be at least 1, got {remember_orders!r}: the engine keeps each "
                "finished order at least until its status is read"
            )
        self.clock: Clock = clock or RealClock()
        self.seed = seed
        self.bus = EventBus()
        self.profiler = profiler or LatencyProfiler(clock=self.clock)
        # One store holds every order's and parent's state; each layer below reads and
        # writes it through the router it works with.
        self.store = OrderStore(remember_orders)
        # The one event stream: every change of state, and the Engine's own news (halts,
        # parents' progress, errors), leave through the store to the bus's subscribers.
        self.store.subscribe(self.bus.publish)
        self.router = AsyncOrderRouter(
            self.profiler,
            clock=self.clock,
            max_retries=max_retries,
            retry_delay=retry_delay,
            retry_policy=retry_policy,
            breaker_config=breaker_config,
            max_latency_s=max_latency_s,
            seed=seed,
            risk=risk,
            store=self.store,
        )
        self.venues: dict[str, Any] = dict(venues)
        for name, venue in self.venues.items():
            self.router.register_exchange(name, venue)
            # A network venue tells its session's ups and downs; they join the one stream.
            add_session_listener = getattr(venue, "add_session_listener", None)
            if add_session_listener is not None:
                add_session_listener(partial(self._on_session, name))
        # The Engine wires the scheduler and the routers: the smart router hands parents
        # to the scheduler, which sends their children through the smart router.
        self.scheduler = Scheduler(clock=self.clock, seed=seed)
        self.smart = SmartOrderRouter(self.router, self.profiler, seed=seed, scheduler=self.scheduler)
        self.scheduler.attach(self.smart)
        self.optimizer = AsyncExecutionOptimizer(
            self.smart, self.profiler, bus=self.bus, remember_orders=remember_orders, max_queue=max_queue
        )
        self.scheduler.add_listener(self._on_parent)
        self.stats = _EngineStats()
        # Every fill of every order and child passes the router: results and pushed reports.
        self.position_book = PositionBook()
        # Fills applied per order: working orders', and the newest finished orders' (a
        # late fill after a cancel); see _on_order_result.
        self._fills_applied: dict[str, int] = {}
        self._fills_applied_final: OrderedDict[str, int] = OrderedDict()
        self.router.add_order_listener(self._on_order_result)
        # The journal hears every event through a lossless subscription (its own thread).
        self._owns_journal = journal is not None and not isinstance(journal, Journal)
        self.journal: Journal | None = Journal(journal) if self._owns_journal else journal  # type: ignore[arg-type]
        # Events published before the journal listened (none today): what it will never receive.
        self._journal_from = self.bus.published
        self._journal_feed = (self.bus.subscribe(lossless=True, name="journal", callback=self.journal.subscriber,
                                                 on_idle=self.journal.idle)
                              if self.journal is not None else None)
        if self.journal is not None:
            # Write-ahead: an order is on disk before it can be sent. Submitted orders when
            # they are queued (a batch in one commit), children before their venue call.
            self.optimizer.write_ahead = self._write_ahead
            self.router.write_ahead = self._write_ahead_child

    @classmethod
    def default(
        cls,
        seed: int = 0,
        *,
        clock: Clock | None = None,
        specs: tuple[VenueSpec, ...] = DEFAULT_VENUES,
        remember_ids: int = DEFAULT_VENUE_REMEMBER_IDS,
        **kwargs: Any,
    ) -> Engine:
        """Three simulated venues of different characters (see DEFAULT_VENUES); each
        remembers the last `remember_ids` finished client order ids."""
        clock = clock or RealClock()
        venues = simulated_venues(seed, clock=clock, specs=specs, remember_ids=remember_ids)
        return cls(venues, clock=clock, seed=seed, **kwargs)

    # -- risk ---------------------------------------------------------------------------
    @property
    def risk(self) -> RiskChecker | None:
        """The pre-trade risk checker (its `refusals` per limit, `limits`), None when off."""
        return self.router.risk

    def set_risk_limits(self, limits: RiskLimits | None) -> None:
        """Check orders against `limits` from now on (None: no limits)."""
        self.router.use_risk(limits)

    def check_risk(self, order: Order) -> RiskPreview:
        """What the risk limits would say of `order` if it were submitted now: the
        reason it would be refused (or None), its notional, the share of its limits it
        uses and whether the ticket should ask for a confirmation. Counts nothing."""
        return self.smart.check_risk(order)

    # -- lifecycle ----------------------------------------------------------------------
    async def start(self, num_workers: int = 10) -> None:
        """Start the workers; with a journal, first recover what a previous process left
        open (see engine.recovery; the report is `self.recovery`)."""
        await self.optimizer.start(num_workers=num_workers)
        if self.journal is not None and self.recovery is None:
            try:
                self.recovery = await recover(self, on_restart=self.on_restart)
            except Exception as exc:  # a bug, or a venue answering nonsense: trade on nothing unsure
                self.report_error("recovery", exc)
                self.recovery = RecoveryReport(halted=f"recovery failed ({type(exc).__name__}: {exc})")
                self.router.halt(f"recovery from the journal failed ({exc}); check the open orders, then resume")
                now = self.clock.now()
                self.store.publish(Halted(now, now, self.router.halted_reason or "recovery failed"))
            if self.halted_reason is not None:  # halted before the restart: nothing works
                self.halt_report = await self._cancel_everything(f"halted: {self.halted_reason}")
                self._halt_retry_at = self.clock.now() + HALT_RETRY_S

    async def stop(self, drain: bool = True, timeout: float | None = 5.0) -> None:
        """Stop the workers, cancel working parents and save the profiler if it autosaves.

        A parent whose cancel did not complete within `timeout` stays working (its
        children may still rest at their venues): `cancel` or `cancel_all` it afterwards,
        which runs the scheduler again for it."""
        await self.optimizer.stop(drain=drain, timeout=timeout)
        # optimizer.stop asked every working parent to cancel; the scheduler takes
        # their children off the venues before it stops (closing it at once left
        # them working there, the parents stuck NEW).
        with anyio.move_on_after(5.0 if timeout is None else timeout):
            for pid in self.scheduler.active:
                await self.optimizer.wait_async(pid)
        await self.scheduler.aclose()
        path = self.profiler.autosave_path
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            self.profiler.save(path)
        await self._flush_journal()

    async def journal_caught_up(self, timeout: float = 5.0) -> bool:
        """Wait until the journal holds every event published so far, committed; False when
        it did not catch up within `timeout`, could not be written (logged; its rows stay
        queued for the next commit), or there is none."""
        feed, journal = self._journal_feed, self.journal
        if feed is None or journal is None:
            return False
        # Counted, not read off the queue: the dispatcher may hold an event it took from
        # the queue and has not handed over yet.
        events = self.bus.published - self._journal_from
        try:
            return await anyio.to_thread.run_sync(journal.wait_committed, events, timeout)
        except sqlite3.Error as exc:  # kept queued; what waits on this (a halt) goes on
            log.error("the order journal %s could not be written: %s", journal.path, exc)
            return False

    async def _flush_journal(self, timeout: float = 5.0) -> None:
        """Let the journal's subscription catch up, then commit what it holds (and close a
        journal the engine opened itself)."""
        feed, journal = self._journal_feed, self.journal
        if feed is None or journal is None:
            return
        await self.journal_caught_up(timeout)
        if self._owns_journal:
            feed.close()
            journal.close()
            self._journal_feed = self.journal = None

    @property
    def running(self) -> bool:
        return self.optimizer.running

    # -- orders -----------------------------------------------------------------------------
    async def submit(self, order: Order, venue: str | None = None) -> str:
        """Queue an order (smart-routed, or to `venue`); returns its id at once."""
        if venue is not None and venue not in self.venues:
            raise ConfigurationError(f"unknown venue {venue!r} (venues: {', '.join(self.venues)})")
        self.stats.submitted += 1
        return await self.optimizer.submit_order_async(order, venue)

    async def submit_many(self, orders: Iterable[Order]) -> list[str]:
        """Queue many orders (smart-routed) in one pass; returns the ids queued, in order.
        An id already in use is skipped (logged); with a journal the batch is written in
        one commit before any of it is queued."""
        orders = list(orders)
        ids = await self.optimizer.submit_orders_async(orders)
        self.stats.submitted += len(ids)
        return ids

    def _write_ahead(self, items: list[tuple[Order, str | None]]) -> dict[str, str] | None:
        """Write submitted orders to the journal, one commit; refuse an id an earlier order
        has in the journal (memory forgets, the journal does not: its row would be lost)."""
        journal = self.journal
        if journal is None:
            return None
        ids = [x for order, _ in items for x in {order.id, order.client_order_id or order.id}]
        taken = journal.known_ids(ids)
        refused: dict[str, str] = {}
        for order, venue in items:
            if order.id in taken or order.client_order_id in taken:
                used = order.id if order.id in taken else order.client_order_id
                refused[order.id] = (f"order id {used!r} is already in the journal ({journal.path.name}): an "
                                     "earlier order's; ids are never reused")
                continue
            journal.record_order(order, venue)
        try:
            journal.commit()
        except sqlite3.Error as exc:  # not sent: their rows go (the events queued stay for the next commit)
            journal.unrecord([order.client_order_id or order.id for order, _ in items])
            what = f"order {items[0][0].id!r}" if len(items) == 1 else f"{len(items)} orders"
            raise JournalError(f"{what} not queued: the order journal {str(journal.path)!r} could not be "
                               f"written ({exc})") from None
        return refused

    def _write_ahead_child(self, order: Order, venue: str) -> None:
        journal = self.journal
        if journal is not None:
            journal.record_order(order, venue)
            journal.commit()

    def supported_types(self) -> set[str]:
        """Order types this engine can work (plain ones and the registered algorithms)."""
        from .scheduling.algos.registry import ALGORITHMS

        return {"MARKET", "LIMIT", *(t.value for t in ALGORITHMS)}

    def status(self, order_id: str) -> OrderResult:
        """An order's state; once memory has forgotten a finished order, the journal's."""
        try:
            return self.optimizer.get_order_status(order_id)
        except UnknownOrderError:
            journaled = self.journal.status(order_id) if self.journal is not None else None
            if journaled is None:
                raise
            return journaled

    async def wait(self, order_id: str, timeout: float | None = None) -> OrderResult:
        return await self.optimizer.wait_async(order_id, timeout)

    async def cancel(self, order_id: str) -> OrderResult:
        return await self.optimizer.cancel_order_async(order_id)

    async def amend(self, order_id: str, quantity: float | None = None, price: float | None = None) -> OrderResult:
        """Cancel/replace a working plain order at its venue (parents cannot be amended).

        A refusal, whoever refused (the risk limits, a halt, the venue), has one shape:
        status REJECTED, the order's current quantity, price, symbol, side and venue (it
        is unchanged), and a reason "amend of '<id>' refused: <why>"."""
        parent = self.scheduler.parent(order_id)
        if parent is not None:
            return self._amend_refused(
                order_id, f"it is an algorithm parent ({parent.order.type.value}), whose algorithm sends and "
                          "prices the child orders; cancel it and send a new one")
        result = await self.router.amend_order_async(self._venue_order_id(order_id), quantity=quantity, price=price)
        if result.status is not OrderStatus.REJECTED:
            return result
        why = result.reason or "no reason given"
        for prefix in (f"amend of {order_id!r} refused: ", *_AMEND_PREFIXES):
            if why.startswith(prefix):
                why = why[len(prefix):]
                break
        return self._amend_refused(order_id, why)

    def _venue_order_id(self, order_id: str) -> str:
        """The id the venue knows an order by. An order with a client order id of its own
        is held by the optimizer as a split of one piece under that id (as cancel finds
        it): amended there. An order split across venues is left to the router to refuse."""
        if isinstance(order_id, str) and self.store.record(order_id) is None:
            pieces = self.store.split_pieces(order_id)
            if pieces is not None and len(pieces) == 1:
                return next(iter(pieces))
        return order_id

    def _amend_refused(self, order_id: str, why: str) -> OrderResult:
        current = self.order_status_or_none(order_id)
        reason = f"amend of {order_id!r} refused: {why}"
        now = self.clock.now()
        if current is None:
            return OrderResult(order_id, None, OrderStatus.REJECTED, reason=reason, timestamp=now)
        return OrderResult(
            order_id, current.exchange_id, OrderStatus.REJECTED, quantity=current.quantity,
            filled_quantity=current.filled_quantity, average_price=current.average_price, reason=reason,
            symbol=current.symbol, side=current.side, price=current.price, timestamp=now,
        )

    def working(self) -> list[str]:
        """Ids of orders (parents and plain orders) not final yet."""
        return self.optimizer.working

    async def cancel_all(self, reason: str = "cancel all") -> int:
        """Cancel every order still queued for a worker, every working parent and plain
        order; returns how many were canceled or asked."""
        return (await self._cancel_everything(reason)).count

    async def _cancel_everything(self, reason: str) -> HaltReport:
        """Cancel what is queued, every working parent and plain order: what was canceled,
        asked, and what could not be."""
        report = HaltReport(reason)
        # Queued first: a worker would otherwise send them after this call.
        report.asked += self.optimizer.cancel_queued(reason)
        for pid in self.scheduler.active:
            if self.scheduler.cancel(pid, reason):
                report.asked.append(pid)  # the scheduler cancels its children
        for result in self.router.working_orders():
            oid = result.order_id
            if self.scheduler.owns_child(oid):
                continue  # its parent cancels it
            try:
                answer = await self.router.cancel_order_async(oid)
            except Exception as exc:  # a venue's bug: said, and tried again
                report.failed[oid] = f"{type(exc).__name__}: {exc}"
                continue
            if answer.status.is_final and answer.status is not OrderStatus.REJECTED:
                report.canceled.append(oid)
                continue
            now = self.order_status_or_none(oid)
            if now is not None and now.status.is_final:
                report.canceled.append(oid)  # ended meanwhile (filled, or the cancel landed)
            else:
                report.failed[oid] = answer.reason or f"the cancel left it {answer.status.value}"
        return report

    async def halt(self, reason: str = "kill switch") -> HaltReport:
        """Refuse every new order and cancel everything working (on every venue), until
        resume(). The report says what was canceled or asked and what could not be;
        `housekeeping` keeps trying those while the halt lasts. The halt is journaled
        (committed before the cancels start): an engine with a journal comes back
        halted after a restart, however soon after this call it dies."""
        self.router.halt(reason)
        now = self.clock.now()
        self.store.publish(Halted(now, now, reason))
        # On disk before anything else: the subscriber commits in batches, and a kill
        # after the desk said HALTED came back trading.
        await self.journal_caught_up()
        self.halt_report = report = await self._cancel_everything(f"halted: {reason}")
        self._halt_retry_at = self.clock.now() + HALT_RETRY_S
        if report.failed:
            log.warning("halt: %s", report.summary())
        return report

    async def _retry_halt(self) -> None:
        """While halted, cancel again what is still working (what a cancel could not reach,
        what a restart found working), at most every HALT_RETRY_S."""
        if self.halted_reason is None or self.clock.now() < self._halt_retry_at:
            return
        self._halt_retry_at = self.clock.now() + HALT_RETRY_S
        report = self.halt_report or HaltReport(self.halted_reason)
        self.halt_report = report
        for oid in list(report.failed):  # ended meanwhile (a venue's own cancel, a fill)
            now = self.order_status_or_none(oid)
            if now is None or now.status.is_final:
                del report.failed[oid]
                report.canceled.append(oid)
        if not any(not self.scheduler.owns_child(r.order_id) for r in self.router.working_orders()):
            return
        retry = await self._cancel_everything(f"halted: {self.halted_reason}")
        report.canceled += retry.canceled
        report.asked += retry.asked
        report.failed = retry.failed

    def resume(self) -> None:
        self.router.resume()
        self.halt_report = None
        now = self.clock.now()
        self.store.publish(Resumed(now, now))

    @property
    def halted_reason(self) -> str | None:
        return self.router.halted_reason

    # -- venues ---------------------------------------------------------------------------
    def enable_venue(self, name: str) -> None:
        self.router.enable_exchange(name)

    def disable_venue(self, name: str, reason: str = "disabled by operator") -> None:
        self.router.disable_exchange(name, reason)

    def toggle_venue(self, name: str) -> bool:
        """Enable a disabled venue or disable an enabled one; returns the new state."""
        if self.router.is_enabled(name):
            self.disable_venue(name)
            return False
        self.enable_venue(name)
        return True

    def tick(self) -> None:
        """Let the simulated markets catch up to now (the desk calls this on a timer)."""
        for venue in self.venues.values():
            tick = getattr(venue, "tick", None)
            if tick is not None:
                tick()
        self.profiler.maybe_autosave()

    async def housekeeping(self) -> None:
        """Periodic work at the edge: markets, unresolved timeouts, profiler autosave."""
        self.tick()
        if self.router.unreconciled:
            await self.router.reconcile_pending_async()
        if self.halted_reason is not None:
            await self._retry_halt()

    # -- events ---------------------------------------------------------------------------
    def subscribe(self, *, maxsize: int = 10_000, lossless: bool = False, name: str = "",
                  callback: Any = None) -> Subscription:
        """A bounded queue of engine events (see engine.bus for lossy vs lossless)."""
        return self.bus.subscribe(maxsize=maxsize, lossless=lossless, name=name, callback=callback)

    def report_error(self, where: str, exc: BaseException) -> None:
        """Something failed at an edge: log it, count it, and tell the event stream."""
        log.exception("%s failed", where, exc_info=exc)
        self.stats.errors += 1
        now = self.clock.now()
        self.store.publish(EngineError(now, now, where, f"{type(exc).__name__}: {exc}"))

    def _on_session(self, venue: str, state: str, detail: str = "") -> None:
        """A venue's session changed (any thread): published as VenueSessionChanged, and
        the venue's breaker told. While the session is down the breaker is held open (no
        order is offered to a venue that cannot take it, the smart router looks
        elsewhere); the Logon that ends the drop releases it, unless the operator forced
        it since."""
        now = self.clock.now()
        self.store.publish(VenueSessionChanged(now, now, venue, state, detail))
        breaker = self.router.breaker(venue)
        if state in ("reconnecting", "closed"):
            if breaker.forced is None:
                breaker.force_open(f"{state}: {detail}" if detail else state, by=_SESSION_HOLD)
        elif state == "logged on":
            breaker.release_force("logged on again", by=_SESSION_HOLD, only_if_held_by=_SESSION_HOLD)

    def _on_parent(self, state: ParentState) -> None:
        if not self.bus.active:
            return
        now = self.clock.now()
        self.store.publish(
            OrderUpdated(
                now, now, state.order.id, None, state.status, None,
                state.filled_quantity, state.order.quantity, state.average_price,
                self.scheduler.describe(state.order.id) or state.last_reason,
                state.tca(None if state.status.is_final else now),
            )
        )

    # -- positions ------------------------------------------------------------------------
    def _on_order_result(self, result: OrderResult) -> None:
        """Apply the fills new to the order. An order's fills only grow, appended in
        order (the store's merge rule), and its results arrive in order: the fills past
        the count already applied are the new ones. Re-applying all of them relied on the
        position book remembering every fill key, which it forgets past its bound."""
        fills = result.fills
        oid = result.order_id
        working, finished = self._fills_applied, self._fills_applied_final
        applied = working.get(oid)
        if applied is None:
            applied = finished.get(oid, 0)
        if len(fills) > applied:
            self.position_book.apply_all(fills[applied:])
            applied = len(fills)
        if result.status.is_final:
            working.pop(oid, None)
            if applied:
                finished[oid] = applied
                finished.move_to_end(oid)
                if len(finished) > FILL_COUNTS_KEPT:
                    finished.popitem(last=False)
        elif applied:
            working[oid] = applied

    def note_fills_applied(self, order_id: str, count: int) -> None:
        """The first `count` fills of `order_id` are in the positions already (replayed from
        the journal at a restart): only later ones are applied."""
        if count:
            self._fills_applied[order_id] = count

    def positions(self, *, by_venue: bool = False) -> list[Position]:
        """Net quantity, average entry, realized P&L, unrealized P&L marked to the merged
        book's mid, and fees: per symbol, or per symbol and venue (see engine.positions)."""
        def mark(symbol: str) -> float | None:
            book = self.smart.merged_book(symbol, depth=1)
            return book.mid if book is not None else None

        return self.position_book.positions(mark, by_venue=by_venue)

    def order_status_or_none(self, order_id: str) -> OrderResult | None:
        try:
            return self.status(order_id)
        except UnknownOrderError:
            return None
