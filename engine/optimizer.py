"""Optimizers: the worker pool in front of the routers.

`ExecutionOptimizer` (sync) and `AsyncExecutionOptimizer` share
`_OptimizerCore`: what happens to an order (plain orders to the smart
router or the order router, parents to the scheduler), its status (one
answer for a plain order, a split order and a parent) and waiting for a
final state. They differ only in who does the work: one daemon thread, or N
worker tasks. Every order's state (queued, held by a worker, split, answered
early, routed) lives in the router's `OrderStore`, not here; so does the
bound on remembered orders.

Rules:

* The hand-off is a deque the workers drain: a submit appends and wakes an
  idle worker only when there is one; a worker takes orders one after the
  other without a loop round trip per order, and yields to the loop once
  every `HANDOFF_BATCH` orders so the rest of the loop (the desk) keeps its
  turns. The async queue is bounded (`max_queue`): a submit waits while it
  is full (back-pressure), and one that gives up leaves no trace.
* An order a worker holds is finished, never abandoned: stopping (with or
  without drain, with or without a timeout) lets the order in hand reach
  its venues and come back. Abandoning it mid-call could leave a piece
  working or filled at a venue while this optimizer says CANCELED.
* What an optimizer answers it also publishes: an order canceled before any
  router saw it is CANCELED in the store and an `OrderCanceled` on the
  store's event stream (`on_event`), never a REJECTED denial.
"""

from __future__ import annotations

import asyncio
import logging
import math
import threading
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any

import anyio

from .scheduling.algos.base import ParentState
from .bus import EventBus
from .clock import Clock, ClockEvent
from .errors import ConfigurationError, ExecdeskError, UnknownOrderError
from .events import OrderCanceled, OrderUpdated
from .loops import set_event
from .models import Order, OrderResult, OrderSide, OrderStatus
from .profiler import LatencyProfiler
from .risk import RiskLimits
from .routing.router import AsyncOrderRouter, OrderRouter
from .routing.smart import SmartOrderRouter
from .store import PARENT, QUEUED, SPLIT, OrderStore, Split

log = logging.getLogger("execdesk.optimizer")

__all__ = ["ExecutionOptimizer", "AsyncExecutionOptimizer", "OptimizerStoppedError"]

# Orders a worker routes before it yields to the event loop once. Routing an order to an
# instant venue never suspends, so without a yield one worker could hold the loop (and the
# desk's screen) for a whole queue; one yield per batch costs a loop turn per 32 orders.
HANDOFF_BATCH = 32
STOPPED_REASON = "optimizer stopped"


class OptimizerStoppedError(ExecdeskError, RuntimeError):
    """Submitting to an optimizer that is not running."""


def _checked_batch(orders: Iterable[Order]) -> list[Order]:
    """A batch of orders, refused whole (nothing queued) when an item is not an Order:
    queued up to a bad item and then raising, the good ones waited unrouted for a wake-up."""
    batch = list(orders)
    for i, order in enumerate(batch):
        if not isinstance(order, Order):
            raise TypeError(
                f"orders[{i}] is a {type(order).__name__}, not an Order: {order!r}; nothing was queued")
    return batch


class _OptimizerCore:
    def __init__(
        self,
        order_router: OrderRouter | AsyncOrderRouter | SmartOrderRouter,
        latency_profiler: LatencyProfiler | None = None,
        *,
        remember_orders: int | None = None,
        bus: EventBus | None = None,
        risk: RiskLimits | None = None,
    ) -> None:
        if isinstance(order_router, SmartOrderRouter):
            self.smart: SmartOrderRouter = order_router
            self.router: OrderRouter | AsyncOrderRouter = order_router.order_router
            self._use_smart = True
        elif isinstance(order_router, (OrderRouter, AsyncOrderRouter)):
            self.router = order_router
            self.smart = SmartOrderRouter(order_router, latency_profiler)
            self._use_smart = False
        else:
            raise ConfigurationError(
                f"order_router must be an OrderRouter, AsyncOrderRouter or SmartOrderRouter, "
                f"got {type(order_router).__name__}"
            )
        # Every order's state is in the router's store; this optimizer keeps none.
        self.store: OrderStore = self.router.store
        if remember_orders is not None and remember_orders != self.store.remember:
            raise ConfigurationError(
                f"remember_orders={remember_orders!r} differs from the order store's bound "
                f"({self.store.remember}): the store remembers for everyone; build the router "
                f"with remember_orders={remember_orders!r}"
            )
        if risk is not None:
            # The limits live in the order router, which every order and child passes.
            self.router.use_risk(risk)
        self.profiler = latency_profiler or self.router.profiler
        self.clock: Clock = self.router.clock
        self.scheduler = self.smart.scheduler
        self.bus = bus
        # The hand-off: (order, venue or None), oldest first. An order canceled while it
        # waits stays here until a worker passes it; the store says it is gone.
        self._work: deque[tuple[Order, str | None]] = deque()
        self._waiters: dict[str, list[Any]] = {}
        # The final result of an order someone waits for, as it became final: the store
        # may forget it before the waiter reads it (a small `remember`).
        self._final_seen: dict[str, OrderResult] = {}
        # Called with the orders of a submission, after their ids were taken and before
        # any is queued (the Engine's journal writes them ahead here). Should it raise,
        # none of them is queued and their ids are free again.
        # It answers the orders it refused ({id: why}), None or {} when none.
        self.write_ahead: Callable[[list[tuple[Order, str | None]]], dict[str, str] | None] | None = None
        self.router.add_order_listener(self._on_router_update)
        self.scheduler.add_listener(self._on_parent_update)

    # -- status ---------------------------------------------------------------------
    def _accept(self, order: Order) -> None:
        """Queue the order in the store; an id already in use is refused."""
        if not isinstance(order, Order):
            raise TypeError(f"expected an Order, got {type(order).__name__}: {order!r}")
        refused = self.store.take(order)
        if refused is not None:
            raise ConfigurationError(refused)

    def _written_ahead(self, items: list[tuple[Order, str | None]], *, batch: bool = False
                       ) -> list[tuple[Order, str | None]]:
        """Hand accepted orders to `write_ahead`; the ones it wrote. An order it refuses
        (its id is an earlier order's in the journal) has its id freed: in a batch it is
        skipped with a log line, alone it raises ConfigurationError. Should the hook fail,
        every id is freed and the error raised."""
        hook = self.write_ahead
        if hook is None or not items:
            return items
        try:
            refused = hook(items)
        except BaseException:
            for order, _ in items:
                self.store.unqueue(order.id)
            raise
        if not refused:
            return items
        for oid in refused:
            self.store.unqueue(oid)
        if not batch:
            raise ConfigurationError(next(iter(refused.values())))
        for oid, why in refused.items():
            log.warning("order %s refused: %s", oid, why)
        return [(order, venue) for order, venue in items if order.id not in refused]

    def _status(self, order_id: str) -> OrderResult:
        found = self.store.lookup(order_id)
        if found is None:
            raise UnknownOrderError(f"order {order_id!r} is unknown or expired from memory")
        kind = found.kind
        if kind == QUEUED:
            order = found.order
            assert order is not None
            return OrderResult(order_id, None, OrderStatus.PENDING_NEW, order.quantity,
                               symbol=order.symbol, side=order.side, price=order.price,
                               reason="queued for routing", timestamp=self.clock.now())
        if kind == PARENT:
            return self._parent_result(found.parent)
        if kind == SPLIT:
            assert found.split is not None
            return found.result or self._aggregate(order_id, found.split, found.pieces or [])
        assert found.result is not None  # RECORD, EARLY
        return found.result

    def _parent_result(self, state: ParentState) -> OrderResult:
        # detail: the parent's TCA (ParentState.tca: arrival, slippage, shortfall,
        # interval VWAP, schedule deviation...), as of now while it works.
        result = state.to_result(None if state.status.is_final else self.clock.now())
        result.children = list(state.children.values())
        result.detail["working_children"] = len(state.working_children)
        result.detail["algorithm"] = self.scheduler.describe(state.order.id)
        return result

    def _aggregate(self, order_id: str, split: Split, pieces: list[OrderResult | None]) -> OrderResult:
        """A split order's result from its pieces' (None: a piece not recorded yet)."""
        children = [c for c in pieces if c is not None]
        symbol = split.symbol
        inst = self.smart.instrument(symbol)
        if inst is not None:
            filled = inst.lots_to_quantity(sum(inst.quantity_to_lots(c.filled_quantity) or 0 for c in children))
        else:
            filled = sum(c.filled_quantity for c in children)
        fills = [f for c in children for f in c.fills]
        qty = sum(f.quantity for f in fills)
        statuses = {c.status for c in children}
        if len(children) < len(split.pieces) or any(not s.is_final for s in statuses):
            status = OrderStatus.PARTIALLY_FILLED if filled else (
                OrderStatus.NEW if any(s.is_working for s in statuses) else OrderStatus.PENDING_NEW)
        elif filled >= split.quantity:
            status = OrderStatus.FILLED
        elif statuses == {OrderStatus.REJECTED}:
            status = OrderStatus.REJECTED
        elif OrderStatus.EXPIRED in statuses:
            status = OrderStatus.EXPIRED
        else:
            status = OrderStatus.CANCELED
        reasons = [c.reason for c in children if c.reason]
        return OrderResult(
            order_id, ",".join(sorted({c.exchange_id for c in children if c.exchange_id})) or None,
            status, split.quantity, filled,
            sum(f.price * f.quantity for f in fills) / qty if qty else None,
            fills, "; ".join(reasons) or None, symbol, OrderSide(split.side), split.price,
            max((c.timestamp for c in children), default=self.clock.now()), children=children,
        )

    def _outcome(self, order: Order, results: list[OrderResult]) -> None:
        """Record how an order was carried out (called by the worker that routed it)."""
        store = self.store
        oid = order.id
        single = results[0] if len(results) == 1 else None
        early = None
        split = store.is_split(oid)  # the smart router records a split before its pieces go out
        if not order.type.is_algorithm and not split and (single is None or single.order_id != oid):
            if single is not None and not store.has_record(single.order_id):
                early = single  # answered under its client order id before any venue
            else:
                # Answered under other ids (a client order id of its own, or pieces): one
                # record of how it went out, before it leaves the queue.
                store.add_split(order, [r.order_id for r in results])
                split = True
        elif (single is not None and single.order_id == oid and single.status is OrderStatus.REJECTED
              and not store.has_record(oid)):
            early = single
        store.routed(oid, early)
        if early is not None:
            self._seen(oid, early)
        if split:
            self._keep_if_done(oid)  # every piece may have finished while it was routed
        self._wake(oid)

    def _cancel_unrouted(self, order: Order, reason: str) -> OrderResult:
        """An order that never reached a router ends CANCELED: in the store, for waiters,
        and as one `OrderCanceled` on the store's event stream."""
        now = self.clock.now()
        cid = order.client_order_id or order.id
        result = OrderResult(cid, None, OrderStatus.CANCELED, order.quantity, reason=reason,
                             symbol=order.symbol, side=order.side, price=order.price, timestamp=now)
        self.store.routed(order.id, result)
        self._seen(order.id, result)
        self.store.publish(
            OrderCanceled(now, now, cid, None, OrderStatus.CANCELED, order.parent_id, 0.0, reason))
        self._wake(order.id)
        return result

    def _cancel_queued(self, order_id: str) -> OrderResult | None:
        """Cancel an order still waiting for a worker (it will never be routed); None when
        it is not waiting (a worker holds it, or it is not queued at all)."""
        order = self.store.unqueue(order_id)
        if order is None:
            return None
        return self._cancel_unrouted(order, "canceled before it was routed")

    def cancel_queued(self, reason: str = "canceled before it was routed") -> list[str]:
        """Cancel every order still waiting for a worker (CANCELED with `reason`, as a
        queued cancel is); returns their ids. An order a worker holds is not among them."""
        canceled = []
        store = self.store
        for oid in store.queued_ids():
            order = store.unqueue(oid)
            if order is not None:
                self._cancel_unrouted(order, reason)
                canceled.append(oid)
        return canceled

    def _cancel_leftovers(self) -> None:
        """After the workers stopped: what this optimizer still has queued never went out
        (CANCELED), and working parents are asked to cancel."""
        store = self.store
        work = self._work
        while work:
            order, _ = work.popleft()
            if store.unqueue(order.id) is not None:
                self._cancel_unrouted(order, STOPPED_REASON)
        for pid in self.scheduler.active:
            self.scheduler.cancel(pid, STOPPED_REASON)

    def _on_router_update(self, result: OrderResult) -> None:
        oid = result.order_id
        if oid in self._waiters:
            self._seen(oid, result)
            self._wake(oid)
        split = self.store.split_of(oid)
        if split is not None:
            if result.status.is_final:
                self._keep_if_done(split)
            if split in self._waiters:
                self._wake(split)

    def _keep_if_done(self, order_id: str) -> None:
        """Keep a split order's final result once all its pieces are final (again after
        a late report changed a piece)."""
        view = self.store.split_view(order_id)
        if view is None:
            return
        split, _, pieces = view
        if pieces is None:  # kept already: read its pieces afresh
            pieces = self.store.piece_results(order_id)
        result = self._aggregate(order_id, split, pieces)
        if result.status.is_final:
            store = self.store
            kept = store.split_result(order_id)
            store.keep_split_result(order_id, result)
            self._seen(order_id, result)
            if store.has_subscribers and (kept is None or kept.status is not result.status
                                          or kept.filled_quantity != result.filled_quantity) \
                    and split.pieces != (store.split_client_id(order_id),):
                # The split's own ending on the one stream (its pieces have theirs): the
                # journal and the desk's row learn how the whole order ended. Not for an
                # order sent whole under a client order id of its own: its one piece's
                # events are its own.
                now = self.clock.now()
                store.publish(OrderUpdated(
                    result.timestamp, now, order_id, None, result.status, None,
                    result.filled_quantity, result.quantity, result.average_price,
                    f"split across {result.exchange_id}" if result.exchange_id else "", None))

    def settle_split(self, order_id: str) -> None:
        """Keep a split order's result, and say how it ended, once all its pieces are
        final (a restart's recovery calls it after settling the pieces)."""
        self._keep_if_done(order_id)

    def _on_parent_update(self, state: ParentState) -> None:
        if state.order.id in self._waiters:
            self._wake(state.order.id)

    def _seen(self, order_id: str, result: OrderResult) -> None:
        if result.status.is_final and order_id in self._waiters:
            self._final_seen[order_id] = result

    def _waited(self, order_id: str) -> OrderResult:
        """A waiter's answer: the order's status, or (forgotten meanwhile) the final
        result it had when it became final."""
        try:
            return self._status(order_id)
        except UnknownOrderError:
            seen = self._final_seen.get(order_id)
            if seen is None:
                raise
            return seen

    def _wake(self, order_id: str) -> None:
        for event in self._waiters.get(order_id, ()):
            self._set_event(event)

    def _set_event(self, event: Any) -> None:
        event.set()

    def _is_final(self, order_id: str) -> bool:
        """Known from what the store holds, nothing built back; an order it no longer
        knows is final (it was forgotten, which only finished orders are)."""
        final = self.store.is_final(order_id)
        return True if final is None else final

    def _route_plan(self, order: Order) -> str:
        """How this optimizer carries out an order: 'parent', 'smart' or 'direct'."""
        if order.type.is_algorithm:
            return "parent"
        return "smart" if self._use_smart or len(self.router.exchanges) != 1 else "direct"

    @property
    def working(self) -> list[str]:
        """Ids of orders this optimizer took that are not final yet."""
        store = self.store
        return [oid for oid in store.queued_ids() + store.taken_ids() if not self._is_final(oid)]


class ExecutionOptimizer(_OptimizerCore):
    """The sync optimizer: `submit_order` returns the id at once, one daemon thread works.

    `ExecutionOptimizer(order_router=smart_router, latency_profiler=profiler)`
    is the component document's form; `wait(order_id, timeout)` blocks until
    the order is final; `stop(drain, timeout)` ends the worker as the async
    optimizer's `stop` does, and `start()` takes orders again after it.
    """

    def __init__(self, order_router: Any, latency_profiler: LatencyProfiler | None = None, **kwargs: Any) -> None:
        super().__init__(order_router, latency_profiler, **kwargs)
        self._ready: ClockEvent = self.clock.event()
        self._thread: threading.Thread | None = None
        self._exited: ClockEvent = self.clock.event()  # set by the worker thread as it ends
        self._lock = threading.Lock()
        self._closed = False  # after stop(): submissions refused until start()
        self._taking_work = True  # False: the worker takes nothing new, finishes what it holds

    @property
    def running(self) -> bool:
        """True while submissions are taken (the worker thread starts on the first one)."""
        return not self._closed

    def start(self) -> None:
        """Take orders again after `stop()` (a new optimizer takes them from the start)."""
        with self._lock:
            self._closed = False
            self._taking_work = True

    def submit_order(self, order: Order, exchange_id: str | None = None) -> str:
        with self._lock:
            self._check_open()
            self._accept(order)
            self._written_ahead([(order, exchange_id)])
            self._work.append((order, exchange_id))
            self._ensure_thread()
        self._ready.set()
        return order.id

    def submit_orders(self, orders: Iterable[Order]) -> list[str]:
        """Queue many orders at once; an id already in use is skipped with a log line. A
        batch holding anything but Orders is refused whole (TypeError), nothing queued."""
        orders = _checked_batch(orders)
        with self._lock:
            self._check_open()
            take = self.store.take
            accepted = []
            for order in orders:
                refused = take(order)
                if refused is not None:
                    log.warning("order %s refused: %s", order.id, refused)
                    continue
                accepted.append((order, None))
            accepted = self._written_ahead(accepted, batch=True)
            self._work.extend(accepted)
            ids = [order.id for order, _ in accepted]
            self._ensure_thread()
        self._ready.set()
        return ids

    def _check_open(self) -> None:
        if self._closed:
            raise OptimizerStoppedError("the optimizer is stopped: call start() to take orders again")

    def _ensure_thread(self) -> None:
        """With the lock held: the worker thread, started on first use (again after a stop)."""
        if self._thread is not None and self._thread.is_alive():
            return
        self._exited = exited = self.clock.event()
        self.clock.expect_participant()
        # A daemon: an optimizer nobody stopped never keeps the process alive at exit,
        # even with a venue call in hand.
        self._thread = threading.Thread(target=self._run, args=(exited,), name="execdesk-optimizer", daemon=True)
        self._thread.start()

    def _run(self, exited: ClockEvent) -> None:
        work = self._work
        claim = self.store.claim
        try:
            with self.clock.participate():
                while True:
                    while work and self._taking_work:
                        order, exchange_id = work.popleft()
                        if claim(order.id) is None:
                            continue  # canceled while it waited in the queue
                        self._process(order, exchange_id)
                    if self._closed and (not work or not self._taking_work):
                        return
                    self._ready.clear()
                    # Checked after the clear: a submit or a stop that set it just before is seen.
                    if not work and not self._closed:
                        self.clock.wait_event(self._ready, None)
        finally:
            exited.set()

    def stop(self, drain: bool = True, timeout: float | None = None) -> None:
        """Stop the worker: finish queued orders first (drain) or cancel them.

        Orders still queued when the worker stops (not draining, or the
        timeout, in the clock's seconds, passed) end CANCELED with reason
        "optimizer stopped"; parent orders still working are canceled the same
        way. The order the worker holds is always finished (see the module
        rules), so `stop` may return after `timeout` by that order's routing.
        Submissions are refused from the call on, until `start()`.
        """
        with self._lock:
            self._closed = True
            if not drain:
                self._taking_work = False
            thread, exited = self._thread, self._exited
        if thread is not None and thread is not threading.current_thread() and thread.is_alive():
            self._ready.set()
            deadline = None if timeout is None else self.clock.now() + timeout
            if not self.clock.wait_event(exited, deadline):
                self._taking_work = False
                self._ready.set()
                self.clock.wait_event(exited, None)
            thread.join()
        self._cancel_leftovers()

    def _process(self, order: Order, exchange_id: str | None = None) -> None:
        try:
            plan = self._route_plan(order)
            if exchange_id is not None and plan != "parent":
                results = self.smart.place(order, exchange_id)
            elif plan == "direct":
                assert isinstance(self.router, OrderRouter)
                results = [self.router.submit_order(order)]
            else:
                results = self.smart.route_order(order)
        except Exception as exc:  # a bug below costs this order, not the worker
            log.exception("order %s failed", order.id)
            results = [self.router.refuse(order, None, f"internal error: {exc!r}")]
        self._outcome(order, results)

    def get_order_status(self, order_id: str) -> OrderResult:
        return self._status(order_id)

    def wait(self, order_id: str, timeout: float | None = None) -> OrderResult:
        """Block until the order is final (or the timeout passes); returns its status."""
        deadline = None if timeout is None else self.clock.now() + timeout
        event = self.clock.event()
        self._waiters.setdefault(order_id, []).append(event)
        try:
            while not self._is_final(order_id):
                event.clear()
                if self._is_final(order_id):
                    break
                if not self.clock.wait_event(event, deadline) and not self._is_final(order_id):
                    break
        finally:
            waiters = self._waiters.get(order_id, [])
            if event in waiters:
                waiters.remove(event)
            if not waiters:
                self._waiters.pop(order_id, None)
        try:
            return self._waited(order_id)
        finally:
            if order_id not in self._waiters:
                self._final_seen.pop(order_id, None)

    def cancel_order(self, order_id: str) -> OrderResult:
        canceled = self._cancel_queued(order_id)
        if canceled is not None:
            return canceled
        if self.scheduler.cancel(order_id):
            return self._status(order_id)
        pieces = self.store.split_pieces(order_id)
        if pieces is not None:
            for cid in pieces:
                self.smart.cancel(cid)
            return self._status(order_id)
        return self.smart.cancel(order_id)


class AsyncExecutionOptimizer(_OptimizerCore):
    """The async optimizer: N worker tasks draining a bounded queue.

    `await start(num_workers=10)`, `await submit_order_async(order)`,
    `await get_order_status_async(order_id)`, `await stop()`. `start` and
    `stop` may be called from different tasks: one runner task owns the
    workers and `stop` signals it.
    """

    def __init__(
        self, order_router: Any, latency_profiler: LatencyProfiler | None = None, *,
        max_queue: int = 10_000, **kwargs: Any,
    ) -> None:
        if isinstance(max_queue, bool) or not isinstance(max_queue, int) or max_queue < 1:
            raise ConfigurationError(f"max_queue must be a whole number >= 1, got {max_queue!r}")
        super().__init__(order_router, latency_profiler, **kwargs)
        self.max_queue = max_queue
        self._runner: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        # Idle workers, each waiting on its own future: a queued order wakes one of them,
        # not all (an Event would wake 1,000 idle workers for every order).
        self._sleepers: deque[asyncio.Future[None]] = deque()
        # The loop's events, made by start(): room in the queue, and no worker holding an
        # order (once stop() told them to take nothing new).
        self._room = asyncio.Event()
        self._hands_free = asyncio.Event()
        self._held_back = 0  # submitters waiting for room
        self._busy = 0  # workers holding an order
        self._closing = False  # stop() called: no submission is taken
        self._taking_work = False  # False after stop(drain=False) or its timeout

    @property
    def running(self) -> bool:
        return self._runner is not None and not self._runner.done() and not self._closing

    async def start(self, num_workers: int = 10) -> None:
        if isinstance(num_workers, bool) or not isinstance(num_workers, int) or num_workers < 1:
            raise ConfigurationError(f"num_workers must be a whole number >= 1, got {num_workers!r}")
        if self.running:
            raise ConfigurationError("the optimizer is already running")
        if self._runner is not None:
            raise ConfigurationError("the optimizer is stopping: await stop() before start()")
        self._loop = loop = asyncio.get_running_loop()
        self._room, self._hands_free = asyncio.Event(), asyncio.Event()
        self._sleepers.clear()  # a stop canceled the last run's idle workers
        self._closing = False
        self._taking_work = True
        started = asyncio.Event()
        self._runner = loop.create_task(self._run(num_workers, started), name="execdesk-optimizer")
        await started.wait()

    async def _run(self, num_workers: int, started: asyncio.Event) -> None:
        async with anyio.create_task_group() as tg:
            for i in range(num_workers):
                tg.start_soon(self._worker, name=f"execdesk-worker-{i}")
            started.set()

    async def _worker(self) -> None:
        work = self._work
        bus = self.bus
        claim = self.store.claim
        taken = 0
        while self._taking_work:
            if not work:
                if self._closing:
                    return  # drained
                await self._wait_for_work()
                continue
            if bus is not None and not bus.has_capacity():
                # Before taking an order: a worker waiting here holds nothing, so a stop
                # may cancel it.
                await bus.wait_for_capacity()
                continue
            order, exchange_id = work.popleft()
            if self._held_back:
                self._room.set()
            if claim(order.id) is None:
                continue  # canceled while it waited in the queue
            self._busy += 1
            try:
                await self._process(order, exchange_id)
            finally:
                self._busy -= 1
                if not self._busy and not self._taking_work:
                    self._hands_free.set()
            taken += 1
            if taken == HANDOFF_BATCH:
                taken = 0
                await asyncio.sleep(0)

    async def _wait_for_work(self) -> None:
        assert self._loop is not None
        waiter = self._loop.create_future()
        self._sleepers.append(waiter)
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self._wake_one()  # woken and canceled at once: the next sleeper takes the order
            raise

    def _wake_one(self) -> None:
        """On the loop's thread: wake one idle worker, if any."""
        sleepers = self._sleepers
        while sleepers:
            waiter = sleepers.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    def _wake_worker(self) -> None:
        """A worker for an order just queued, from whichever thread queued it."""
        loop = self._loop
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            if self._sleepers:
                self._wake_one()
        elif loop is not None and not loop.is_closed():
            # From elsewhere, always: a worker may be about to sleep without seeing the order.
            loop.call_soon_threadsafe(self._wake_one)

    async def _process(self, order: Order, exchange_id: str | None = None) -> None:
        try:
            plan = self._route_plan(order)
            if exchange_id is not None and plan != "parent":
                results = await self.smart.place_async(order, exchange_id)
            elif plan == "direct":
                router = self.router
                if isinstance(router, AsyncOrderRouter):
                    results = [await router.submit_order_async(order)]
                else:
                    results = [router.submit_order(order)]  # type: ignore[attr-defined]
            else:
                results = await self.smart.route_order_async(order)
        except Exception as exc:  # a worker's exception never kills the pool
            log.exception("order %s failed", order.id)
            results = [self.router.refuse(order, None, f"internal error: {exc!r}")]
        self._outcome(order, results)

    async def submit_order_async(self, order: Order, exchange_id: str | None = None) -> str:
        """Queue an order and return its id; waits (back-pressure) while the queue is full.

        `exchange_id` sends a plain order to that venue instead of smart routing.
        """
        if not self.running:
            raise OptimizerStoppedError(self._not_running())
        self._accept(order)
        self._written_ahead([(order, exchange_id)])
        work = self._work
        if len(work) >= self.max_queue:
            await self._wait_for_room(order)
        work.append((order, exchange_id))
        self._wake_worker()
        return order.id

    async def submit_orders_async(self, orders: Iterable[Order]) -> list[str]:
        """Queue many orders in one pass and return the ids queued, in order. An id already
        in use is skipped with a log line (as `ExecutionOptimizer.submit_orders`); while the
        queue is full the batch waits for room. Should the optimizer stop meanwhile, the
        orders already queued keep their course and OptimizerStoppedError is raised."""
        if not self.running:
            raise OptimizerStoppedError(self._not_running())
        orders = _checked_batch(orders)
        ids = []
        work = self._work
        take = self.store.take
        accepted = []
        for order in orders:
            refused = take(order)
            if refused is not None:
                log.warning("order %s refused: %s", order.id, refused)
                continue
            accepted.append((order, None))
        accepted = self._written_ahead(accepted, batch=True)
        for order, _ in accepted:
            if len(work) >= self.max_queue:
                await self._wait_for_room(order)
            work.append((order, None))
            ids.append(order.id)
            self._wake_worker()
        return ids

    def _not_running(self) -> str:
        if self._runner is None:
            return "the optimizer is not running: await start() first"
        return "the optimizer is not running: it is stopping"

    async def _wait_for_room(self, order: Order) -> None:
        """Wait until the queue has room for `order` (already accepted). If the optimizer
        stops or the caller gives up meanwhile, the order was never queued: its id is free."""
        self._held_back += 1
        try:
            while True:
                if self._closing:
                    raise OptimizerStoppedError("the optimizer is stopping: order not accepted")
                if len(self._work) < self.max_queue:
                    return
                room = self._room
                room.clear()
                if len(self._work) < self.max_queue:
                    continue
                await room.wait()
        except BaseException:
            self.store.unqueue(order.id)
            raise
        finally:
            self._held_back -= 1

    async def get_order_status_async(self, order_id: str) -> OrderResult:
        return self._status(order_id)

    def get_order_status(self, order_id: str) -> OrderResult:
        return self._status(order_id)

    def _set_event(self, event: Any) -> None:
        if self._loop is None:
            event.set()
        else:
            set_event(self._loop, event)

    async def wait_async(self, order_id: str, timeout: float | None = None) -> OrderResult:
        """Wait until the order is final (or the timeout passes); returns its status."""
        event = asyncio.Event()
        self._waiters.setdefault(order_id, []).append(event)
        try:
            with anyio.move_on_after(math.inf if timeout is None else timeout):
                while not self._is_final(order_id):
                    event.clear()
                    if self._is_final(order_id):
                        break
                    await event.wait()
        finally:
            waiters = self._waiters.get(order_id, [])
            if event in waiters:
                waiters.remove(event)
            if not waiters:
                self._waiters.pop(order_id, None)
        try:
            return self._waited(order_id)
        finally:
            if order_id not in self._waiters:
                self._final_seen.pop(order_id, None)

    async def cancel_order_async(self, order_id: str) -> OrderResult:
        canceled = self._cancel_queued(order_id)
        if canceled is not None:
            return canceled
        if self.scheduler.cancel(order_id):
            return self._status(order_id)
        pieces = self.store.split_pieces(order_id)
        if pieces is not None:
            for cid in pieces:
                await self.smart.cancel_async(cid)
            return self._status(order_id)
        return await self.smart.cancel_async(order_id)

    async def stop(self, drain: bool = True, timeout: float | None = None) -> None:
        """Stop the workers: finish queued orders first (drain) or cancel them.

        Orders still queued when the workers stop (not draining, or the
        timeout passed) end CANCELED with reason "optimizer stopped"; parent
        orders still working are canceled the same way. An order a worker
        holds is always finished (see the module rules), so `stop` may return
        after `timeout` by that order's routing. Submitters waiting for room
        are refused with OptimizerStoppedError.
        """
        runner = self._runner
        if runner is None:
            return
        self._closing = True
        if not drain:
            self._taking_work = False
        self._wake_all()
        if drain:
            await asyncio.wait({runner}, timeout=timeout)
        if not runner.done():
            # Take nothing new; the orders in hand reach their venues and come back.
            self._taking_work = False
            self._wake_all()
            hands_free = self._hands_free
            while self._busy:
                hands_free.clear()
                if self._busy:
                    await hands_free.wait()
            # What is left holds nothing: idle, or waiting for a lossless subscriber.
            runner.cancel()
            await asyncio.wait({runner})
        if not runner.cancelled() and runner.exception() is not None:
            log.error("optimizer workers failed", exc_info=runner.exception())
        self._runner = None
        self._cancel_leftovers()

    def _wake_all(self) -> None:
        """Idle workers and held-back submitters look again (at a stop)."""
        sleepers = self._sleepers
        while sleepers:
            self._wake_one()
        set_event(self._loop, self._room)
