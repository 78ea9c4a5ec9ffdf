"""Smart order routing: which venues get an order, and how much each.

The decision is a pure function of the books, fees and venue health, in
`planner.py`: the best venue's touch when it covers the order (`plan_touch`),
else a sweep of the merged book by fee-adjusted price (`plan_split`). Each
order reads every eligible venue's touch; only an order no touch covers
reads the full books.

`SmartOrderRouter` gathers the inputs from an `OrderRouter` (or
`AsyncOrderRouter`) and sends the children through it, so every child passes
the per-venue checks. Parent types go to the `Scheduler`. An order it
splits is first judged as a whole by the order router's risk limits (the
pieces alone could each pass a per-order limit the order breaks), against
the merged book; so is a parent, when the scheduler accepts it.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections import deque
from collections.abc import Callable, Iterable
from operator import attrgetter
from typing import Any, Protocol

from ..clock import Clock
from ..errors import ConfigurationError, ExecdeskError, VenueError
from ..models import (
    child_id,
    Instrument,
    Order,
    OrderResult,
    OrderStatus,
    OrderType,
)
from ..profiler import LatencyProfiler
from ..risk import RiskLimits, RiskPreview
from .planner import MERGE_DEPTH, Allocation, VenueView, merge_books, plan_split, plan_touch, rank_venues
from .router import AsyncOrderRouter, OrderRouter, VenueStats
from ..market_data import BookSnapshot, PublicTrade

log = logging.getLogger("execdesk.smart")

__all__ = ["SmartOrderRouter", "VenueView", "Allocation", "plan_split", "rank_venues"]

REMEMBER_REASONS = 10_000  # routing reasons kept, newest first
LAZY_REASONS = 1_000  # of those, kept unformatted (cheap to keep, costly to hold many)
_TS_EVENT = attrgetter("ts_event")


class ParentHandler(Protocol):
    """What the smart router hands parent orders (ICEBERG, TWAP, VWAP, SMART) to: the
    Scheduler. Routing defines it and never imports scheduling; the Engine wires one
    in, and `engine/__init__.py` registers the Scheduler as the default for the bare
    `SmartOrderRouter(router)` of the component document."""

    def supports(self, order_type: OrderType) -> bool: ...

    def submit(self, order: Order) -> list[OrderResult]: ...

    async def submit_async(self, order: Order) -> list[OrderResult]: ...

    def status(self, order_id: str) -> OrderResult | None: ...


# Builds the default ParentHandler for a smart router made without one: (router, seed).
_default_parents: Callable[[SmartOrderRouter, int], ParentHandler] | None = None


def set_default_parents(factory: Callable[[SmartOrderRouter, int], ParentHandler] | None) -> None:
    """Who works parent orders for a SmartOrderRouter made without a scheduler."""
    global _default_parents
    _default_parents = factory


class SmartOrderRouter:
    """Ranks venues, splits orders, hands parent orders to the scheduler.

    `SmartOrderRouter(order_router=router, latency_profiler=profiler)` is the
    component document's form. Over an `AsyncOrderRouter`, use
    `route_order_async`.
    """

    def __init__(
        self,
        order_router: OrderRouter | AsyncOrderRouter,
        latency_profiler: LatencyProfiler | None = None,
        *,
        scheduler: Any = None,
        clock: Clock | None = None,
        seed: int = 0,
        risk: RiskLimits | None = None,
    ) -> None:
        self.order_router = order_router
        # The order store of the order router: where a split order is recorded, once, for
        # this router's idempotency and the optimizer's status alike.
        self.store = order_router.store
        if risk is not None:
            # The limits live in the order router, which every order and child passes.
            order_router.use_risk(risk)
        self.profiler = latency_profiler or order_router.profiler
        self.clock = clock or order_router.clock
        self.seed = seed
        # order id -> routing reason, or the Allocation that can say it (bounded)
        self.last_reasons: dict[str, str | Allocation] = {}
        self._lazy_reasons: deque[str] = deque()
        if scheduler is None:
            if _default_parents is None:
                raise ConfigurationError(
                    "no scheduler for parent orders: pass scheduler=..., or import the engine "
                    "package (it registers its Scheduler)"
                )
            scheduler = _default_parents(self, seed)
        self.scheduler = scheduler

    # -- what the routers know about venues -------------------------------------
    @property
    def is_async(self) -> bool:
        return isinstance(self.order_router, AsyncOrderRouter)

    def instrument(self, symbol: str) -> Instrument | None:
        router = self.order_router
        for venue in router.exchanges:
            inst = router.client(venue).instruments().get(symbol)
            if inst is not None:
                return inst
        return None

    def venue_views(
        self, symbol: str, exclude: Iterable[str] = (), *, depth: int = MERGE_DEPTH
    ) -> tuple[list[VenueView], list[str]]:
        """Eligible venues with their best `depth` levels, and why the others were skipped."""
        router = self.order_router
        views: list[VenueView] = []
        skipped: list[str] = []
        excluded = set(exclude)
        for venue in router.exchanges:
            if venue in excluded:
                continue
            why = router.unavailable_reason(venue)
            if why:
                skipped.append(why)
                continue
            client = router.client(venue)
            inst = client.instruments().get(symbol)
            if inst is None:
                skipped.append(f"{venue} does not list {symbol}")
                continue
            try:
                book = client.book(symbol, depth)
            except VenueError as exc:
                skipped.append(f"{venue} book unavailable: {exc}")
                continue
            stats: VenueStats = router.venue_stats(venue)
            views.append(VenueView(venue, book, client.fees, inst, router.latency_p95_ms(venue), stats.fill_ratio))
        return views, skipped

    def merged_book(self, symbol: str, depth: int = 10) -> BookSnapshot | None:
        """All eligible venues' levels merged by price (quantities summed), best `depth`
        per side; each venue contributes at most its best MERGE_DEPTH levels."""
        # The merged best `depth` need only each venue's best `depth` (see planner).
        views, _ = self.venue_views(symbol, depth=min(depth, MERGE_DEPTH))
        if not views:
            return None
        return merge_books(symbol, [view.book for view in views], depth, self.clock.now())

    def trades(self, symbol: str, since: float) -> list[PublicTrade]:
        """Public trades of every venue after `since`, oldest first. A venue that cannot
        answer (an outage, a symbol it does not list) is left out, as `merged_book` does:
        an algorithm reading the tape must not fail because one venue is down."""
        out: list[PublicTrade] = []
        for venue in self.order_router.exchanges:
            try:
                out.extend(self.order_router.client(venue).trades(symbol, since))
            except ExecdeskError:
                continue
        out.sort(key=_TS_EVENT)  # each venue's list is in order: a merge of runs
        return out

    # -- risk ----------------------------------------------------------------------
    def _merged_reader(self, symbol: str) -> Any:
        return lambda depth: self.merged_book(symbol, depth)

    def check_risk(self, order: Order) -> RiskPreview:
        """What the risk limits would say of `order` (the ticket's preview): the same
        judgement the routers make, against the merged book; nothing is counted."""
        risk = self.order_router.risk
        if risk is None:
            book = self.merged_book(order.symbol, depth=1)
            price = order.price if order.price is not None else (book.mid if book is not None else None)
            return RiskPreview(None, order.quantity * price if price is not None else None, 0.0, None)
        return risk.preview(order, self._merged_reader(order.symbol), self.clock.now())

    def risk_refusal(self, order: Order) -> str | None:
        """An algorithm parent or an order about to be split, judged once as a whole
        (counted in the limits' refusals); None when it passes or no limits are set."""
        risk = self.order_router.risk
        if risk is None:
            return None
        return risk.check_whole(order, self._merged_reader(order.symbol))

    # -- planning ----------------------------------------------------------------
    def plan(
        self, order: Order, *, split: bool = True, venue: str | None = None
    ) -> list[tuple[Order, str, str | Allocation]]:
        """(child order, venue, reason or the Allocation that says it) per piece; empty when no venue fits."""
        if venue is not None:
            return [(order, venue, f"{venue}: chosen by the caller")]
        views, _ = self.venue_views(order.symbol, depth=1)
        allocations = plan_touch(order, views, split=split)
        if allocations is None:
            # No touch covers the order: the full books, and the merge across them.
            views, _ = self.venue_views(order.symbol)
            allocations = plan_split(order, views, split=split)
        if not allocations:
            return []
        if len(allocations) == 1:
            a = allocations[0]
            return [(order, a.venue, a)]
        pieces = []
        for seq, a in enumerate(allocations, 1):
            child = order.model_copy(
                update={"id": child_id(order.id, seq), "client_order_id": None, "quantity": a.quantity,
                        "parent_id": order.id}
            )
            # model_copy skips validation: derive client_order_id as Order would.
            child.__dict__["client_order_id"] = child.id
            pieces.append((child, a.venue, a))
        return pieces

    def _no_venue(self, order: Order) -> OrderResult:
        _, skipped = self.venue_views(order.symbol)
        why = "; ".join(skipped) if skipped else "no exchange is registered"
        return self.order_router.refuse(order, None, f"no venue can take {order.symbol} now: {why}")

    def _remember(self, order_id: str, reason: str | Allocation) -> None:
        reasons = self.last_reasons
        reasons[order_id] = reason
        if len(reasons) > REMEMBER_REASONS:
            del reasons[next(iter(reasons))]
        if isinstance(reason, Allocation):
            # The newest reasons stay unformatted (most are never read); older ones become
            # text, so the books and views they point at are freed, not kept for 10,000 orders.
            lazy = self._lazy_reasons
            lazy.append(order_id)
            if len(lazy) > LAZY_REASONS:
                old = lazy.popleft()
                kept = reasons.get(old)
                if isinstance(kept, Allocation):
                    reasons[old] = kept.reason

    def _unsupported(self, order: Order) -> OrderResult | None:
        halted = self.order_router.halted_reason
        if halted is not None and order.type.is_algorithm:
            # The order router refuses each child while halted, but the parent
            # would keep retrying them and start trading at resume(): refuse it now.
            return self.order_router.refuse(order, None, f"trading halted: {halted}")
        if order.type in (OrderType.MARKET, OrderType.LIMIT) or self.scheduler.supports(order.type):
            return None
        return self.order_router.refuse(
            order, None, f"{order.type.value} orders are not supported yet (supported: MARKET, LIMIT, ICEBERG)"
        )

    # -- sync ------------------------------------------------------------------------
    def route_order(self, order: Order) -> list[OrderResult]:
        """Route an order; a parent type returns the children sent before it must wait."""
        refused = self._unsupported(order)
        if refused is not None:
            return [refused]
        if order.type.is_algorithm:
            return self.scheduler.submit(order)
        return self.place(order, None, split=True)

    def _already_routed(self, order: Order) -> list[OrderResult] | None:
        """The idempotency check one level up from the order router's: an order this
        router already placed, whole or split, is answered from memory. Planning it
        again could split it differently (the first pass moved the books) and send
        a second order under new child ids."""
        router = self.order_router
        known = router.known(order)
        if known is not None:
            return [known]
        split = self.store.split(order.id)
        if split is None:
            return None
        first, child_ids = split
        if first != order:
            return [router.refuse(
                order, None,
                f"client order id {order.client_order_id!r} was already used for a different order",
                track=False,
            )]
        return [router.get_order_status(cid) for cid in child_ids]

    def _record_split(self, order: Order, pieces: list[tuple[Order, str, Any]]) -> bool:
        """Remember a split order's pieces before any goes out; True when it is split."""
        if len(pieces) > 1 or pieces[0][0] is not order:
            self.store.add_split(order, [child.id for child, _, _ in pieces])
            return True
        return False

    def place(self, order: Order, venue: str | None, *, split: bool = False) -> list[OrderResult]:
        router = self.order_router
        assert isinstance(router, OrderRouter), "use route_order_async over an AsyncOrderRouter"
        thread = threading.get_ident()
        while True:
            event = self.clock.event()
            held = self.store.claim_routing(order.id, thread, event)
            if held is None:
                break
            if held.thread == thread:
                return [self._routing_here(order)]
            self.clock.wait_event(event)
        try:
            return self._place_claimed(order, venue, split)
        finally:
            self.store.release_routing(order.id)

    def _routing_here(self, order: Order) -> OrderResult:
        """A resend from the thread routing the order (a listener): it cannot wait for
        itself, and sending it again would send it twice; no answer yet."""
        return OrderResult(order.client_order_id, None, OrderStatus.PENDING_NEW,  # type: ignore[arg-type]
                           order.quantity, reason="already being routed by this thread; no answer yet",
                           symbol=order.symbol, side=order.side, price=order.price, timestamp=self.clock.now())

    def _place_claimed(self, order: Order, venue: str | None, split: bool) -> list[OrderResult]:
        """`place` with the order's id claimed in the store: from the duplicate check to
        the last piece out, no other caller routes the same order."""
        router = self.order_router
        assert isinstance(router, OrderRouter)
        prepared = self._prepare(order, venue, split)
        if not isinstance(prepared, tuple):
            return prepared
        pieces, split = prepared
        results: list[OrderResult] = []
        for child, where, reason in pieces:
            self._remember(child.id, reason)
            try:
                results.append(router.submit_order(child, where))
            except Exception as exc:
                if not split:
                    raise  # a whole order: its caller answers for it
                results.append(self._piece_failed(order, child, where, exc))
            if split:
                self.store.piece_answered(child.id, results[-1])
        return results

    def _prepare(self, order: Order, venue: str | None, split: bool
                 ) -> list[OrderResult] | tuple[list[tuple[Order, str, Any]], bool]:
        """Everything before the first piece goes out (the id claimed): the answer already
        known, or a refusal; else the pieces, recorded, and whether the order is split."""
        known = self._already_routed(order)
        if known is not None:
            return known
        pieces = self.plan(order, split=split, venue=venue)
        if not pieces:
            return [self._no_venue(order)]
        refused = self._split_refusal(order, pieces)
        if refused is not None:
            return [refused]
        return pieces, self._record_split(order, pieces)

    def _piece_failed(self, order: Order, child: Order, venue: str, exc: Exception) -> OrderResult:
        """A piece of a split order failed inside the engine (a bug below, not a venue's
        answer). That piece alone is REJECTED, under its own id: the pieces already sent
        stay in the order's answer, which then says what its venues did, and the pieces
        after it still go out."""
        log.exception("piece %s of order %s failed at %s", child.id, order.id, venue)
        return self.order_router.refuse(child, venue, f"internal error: {exc!r}")

    def _split_refusal(self, order: Order, pieces: list[tuple[Order, str, Any]]) -> OrderResult | None:
        if len(pieces) == 1 and pieces[0][0] is order:
            return None  # sent whole: the order router judges it
        reason = self.risk_refusal(order)
        return self.order_router.refuse(order, None, reason) if reason is not None else None

    def cancel(self, order_id: str) -> OrderResult:
        return self.order_router.cancel_order(order_id)  # type: ignore[return-value]

    # -- async -------------------------------------------------------------------------
    async def route_order_async(self, order: Order) -> list[OrderResult]:
        refused = self._unsupported(order)
        if refused is not None:
            return [refused]
        if order.type.is_algorithm:
            return await self.scheduler.submit_async(order)
        return await self.place_async(order, None, split=True)

    async def place_async(self, order: Order, venue: str | None, *, split: bool = False) -> list[OrderResult]:
        thread = threading.get_ident()
        while True:
            loop = asyncio.get_running_loop()
            future: asyncio.Future[None] = loop.create_future()
            held = self.store.claim_routing(order.id, thread, (loop, future))
            if held is None:
                break
            # Held by a task (this loop's or another's) or another thread: it goes on while
            # this one awaits. (A sync caller on this thread holding it cannot call this.)
            await future
        try:
            return await self._place_claimed_async(order, venue, split)
        finally:
            self.store.release_routing(order.id)

    async def _place_claimed_async(self, order: Order, venue: str | None, split: bool) -> list[OrderResult]:
        router = self.order_router
        prepared = self._prepare(order, venue, split)
        if not isinstance(prepared, tuple):
            return prepared
        pieces, split = prepared
        results: list[OrderResult] = []
        for child, where, reason in pieces:
            self._remember(child.id, reason)
            try:
                if isinstance(router, AsyncOrderRouter):
                    results.append(await router.submit_order_async(child, where))
                else:
                    results.append(router.submit_order(child, where))
            except Exception as exc:
                if not split:
                    raise  # a whole order: its caller answers for it
                results.append(self._piece_failed(order, child, where, exc))
            if split:
                self.store.piece_answered(child.id, results[-1])
        return results

    async def cancel_async(self, order_id: str) -> OrderResult:
        router = self.order_router
        if isinstance(router, AsyncOrderRouter):
            return await router.cancel_order_async(order_id)
        return router.cancel_order(order_id)

    # -- the document's router-like surface -------------------------------------------
    def submit_order(self, order: Order, exchange_id: str | None = None) -> OrderResult:
        """One result for one order: the order's own, or its first child's for a split."""
        if exchange_id is not None:
            return self.place(order, exchange_id)[0]
        return self.route_order(order)[0]

    def get_order_status(self, order_id: str) -> OrderResult:
        parent = self.scheduler.status(order_id)
        if parent is not None:
            return parent
        return self.order_router.get_order_status(order_id)  # type: ignore[return-value]

    def routing_reason(self, order_id: str) -> str | None:
        reason = self.last_reasons.get(order_id)
        return reason.reason if isinstance(reason, Allocation) else reason
