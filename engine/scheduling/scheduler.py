"""The Scheduler: runs parent orders (ICEBERG, TWAP, VWAP, SMART) to the end.

One scheduler per engine, working through one smart router. A parent's state
(`ParentState`) lives in the order store of that router (`store.parent`);
the scheduler keeps only what its driver needs to run each working parent:
the algorithm, the cancel flags, the results of the first step.

Its work is one sans-IO decision (`engine.sansio`), `_run`: it asks
algorithms what to do (at start, on child news, at their wake-up times),
yields a `Request` for each child placement ("place") or cancel ("cancel"),
a "turn" after each decision and a "wait" (until news or the next wake-up,
its argument) when nothing is due; it never performs I/O or waits itself.
An error a request raises is thrown back into it, and it decides what that
means (a placement that raised placed nothing). Two drivers perform it:

* sync (`drive`): one daemon thread, started on first use, that waits on the
  clock between wake-ups (so virtual time moves only when it is idle, and it
  never keeps a process alive at exit);
* async (`drive_async`): one task in the running event loop, which gives
  the loop a turn between decisions once it has held it a while.

Child news reaches the scheduler through the order router's listener (a
child's own submit result and the venue's pushed execution reports), lands
in an inbox and wakes the driver; only the driver runs algorithm code and
changes a parent's state, so an algorithm never needs a lock. A parent
submitted through `submit` or `submit_async` returns the child results of
its first step, then keeps working until FILLED, CANCELED or REJECTED.
"""

from __future__ import annotations

import asyncio
import logging
import math
import threading
import time
from collections import deque
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import anyio
import anyio.lowlevel

from .algos.base import Action, Algorithm, CancelChild, ParentState
from .algos.registry import ALGORITHMS, make_algorithm
from ..clock import Clock, ClockEvent, RealClock
from ..errors import ConfigurationError
from ..loops import set_event
from ..models import Instrument, Order, OrderResult, OrderStatus, OrderType
from ..sansio import Request, drive, drive_async

if TYPE_CHECKING:
    from ..routing.smart import SmartOrderRouter
    from ..store import OrderStore

log = logging.getLogger("execdesk.scheduler")

ParentListener = Callable[[ParentState], None]

CANCEL_RETRY_S = 1.0  # how soon a failed child cancel is tried again

Work = Generator[Request, Any, None]


@dataclass(slots=True)
class _Parent:
    """The driver's handle on one working parent. `state` is the store's ParentState
    (the same object, not a copy): only the driver changes it."""

    state: ParentState
    algo: Algorithm
    canceling: bool = False
    cancel_reason: str = ""
    first_results: list[OrderResult] | None = None
    collected: list[OrderResult] = field(default_factory=list)
    first_event: Any = None  # ClockEvent (sync) or anyio.Event (async)
    retry_cancel_at: float | None = None


class _Context:
    """The AlgoContext the scheduler hands to algorithms."""

    __slots__ = ("_smart",)

    def __init__(self, smart: SmartOrderRouter) -> None:
        self._smart = smart

    def now(self) -> float:
        return self._smart.clock.now()

    def book(self, symbol: str) -> Any:
        return self._smart.merged_book(symbol)

    def instrument(self, symbol: str) -> Any:
        return self._smart.instrument(symbol)

    def trades(self, symbol: str, since: float) -> Any:
        return self._smart.trades(symbol, since)


# Performed between two decisions: an async driver gives the loop a turn there, once it
# has held it this long (a turn after every fill report would cost throughput).
_TURN = Request("turn")
TURN_AFTER_S = 0.005


def _cancel(order_id: str) -> Generator[Request, Any, OrderResult | None]:
    """Cancel a child: its result, or None when the cancel raised (a bug below: the
    routers answer with results). The child still works then, and its parent tries
    again later."""
    try:
        return (yield Request("cancel", order_id))
    except Exception:
        log.exception("canceling child %s failed", order_id)
        return None


class Scheduler:
    """Works parent orders through a smart router (see the module docstring).

    `Scheduler(smart_router)` is ready at once. The Engine builds its scheduler
    first, `Scheduler(clock=..., seed=...)`, hands it to the smart router it
    builds, then `attach`es it to that router: parents can be submitted from then.
    """

    def __init__(
        self,
        smart_router: SmartOrderRouter | None = None,
        *,
        clock: Clock | None = None,
        seed: int = 0,
    ) -> None:
        self._clock_given = clock is not None
        if clock is None:
            clock = smart_router.clock if smart_router is not None else RealClock()
        self.clock: Clock = clock
        self.seed = seed
        self.smart: SmartOrderRouter | None = None
        # The parents' state, once attached: the store of the smart router's order router.
        self.store: OrderStore | None = None
        self._ctx: _Context | None = None
        # The driver's handles on working parents (added and removed by the driver only).
        self._runs: dict[str, _Parent] = {}
        # Parent ids being accepted (between the in-use check and the store taking them).
        self._claims: set[str] = set()
        self._claims_lock = threading.Lock()
        self._child_parent: dict[str, str] = {}
        self._inbox: deque[tuple[str, Any]] = deque()
        self._listeners: list[ParentListener] = []
        # sync driver
        self._wakeup: ClockEvent = self.clock.event()
        self._thread: threading.Thread | None = None
        self._stopping = False
        # async driver
        self._task: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._async_wakeup: anyio.Event | None = None
        if smart_router is not None:
            self.attach(smart_router)

    @classmethod
    def for_router(cls, smart_router: SmartOrderRouter, seed: int = 0) -> Scheduler:
        """The default scheduler of a smart router made without one."""
        return cls(smart_router, seed=seed)

    def attach(self, smart_router: SmartOrderRouter) -> None:
        """Work through `smart_router` from now on: its children go through it, the
        parents' state lives in its order router's store. Once per scheduler."""
        if self.smart is smart_router:
            return
        if self.smart is not None:
            raise ConfigurationError("this scheduler already works through another smart router")
        router = smart_router.order_router
        if not self._clock_given and smart_router.clock is not self.clock:
            self.clock = smart_router.clock
            self._wakeup = self.clock.event()
        self.store = router.store
        self._ctx = _Context(smart_router)
        self.smart = smart_router
        router.add_order_listener(self._on_child_update)

    def _attached(self) -> SmartOrderRouter:
        smart = self.smart
        if smart is None:
            raise ConfigurationError(
                "this scheduler works through no smart router yet: attach(smart_router) first"
            )
        return smart

    def supports(self, order_type: OrderType) -> bool:
        return order_type in ALGORITHMS

    # -- what others read ---------------------------------------------------------
    def add_listener(self, listener: ParentListener) -> None:
        """Called (on the driver) with a parent's state after each change."""
        self._listeners.append(listener)

    def parent(self, order_id: str) -> ParentState | None:
        store = self.store
        return store.parent(order_id) if store is not None else None

    def is_finished(self, order_id: str) -> bool:
        """A parent that finished (known without building it back from history)."""
        store = self.store
        return store is not None and store.parent_finished(order_id)

    def status(self, order_id: str) -> OrderResult | None:
        state = self.parent(order_id)
        return state.to_result() if state is not None else None

    def describe(self, order_id: str) -> str:
        run = self._runs.get(order_id)
        return run.algo.describe() if run is not None else ""

    @property
    def active(self) -> list[str]:
        """Ids of the working parents."""
        store = self.store
        return store.active_parents() if store is not None else []

    def owns_child(self, order_id: str) -> str | None:
        return self._child_parent.get(order_id)

    # -- submitting and canceling -------------------------------------------------------
    def _new_parent(self, smart: SmartOrderRouter, order: Order) -> _Parent | OrderResult:
        router = smart.order_router
        store = self.store
        assert store is not None  # attached
        oid = order.id
        with self._claims_lock:
            taken = oid in self._claims or store.has_parent(oid)
            if not taken:
                self._claims.add(oid)
        if taken:
            return router.refuse(order, None, f"parent order id {oid!r} is already in use", track=False,
                                 publish=False)  # the id is another parent's: not its story
        try:
            return self._accept(smart, order, store)
        finally:
            with self._claims_lock:
                self._claims.discard(oid)

    def _accept(self, smart: SmartOrderRouter, order: Order, store: OrderStore) -> _Parent | OrderResult:
        """Judge a parent whose id this scheduler has claimed; accepted, the store has it."""
        router = smart.order_router
        state = ParentState(order, smart.instrument(order.symbol), created_at=self.clock.now())
        if state.instrument is None:
            return router.refuse(order, None, f"no registered venue lists {order.symbol}", track=False)
        # Judged once as a whole: a TWAP for 1e6 BTC is refused here, not child by child.
        # Accepted, it reserves its quantity against the position limit until it ends.
        risk = router.risk
        if risk is not None:
            symbol = order.symbol
            refusal = risk.accept_parent(order, lambda depth: smart.merged_book(symbol, depth))
            if refusal is not None:
                return router.refuse(order, None, refusal, track=False)
        try:
            algo = make_algorithm(state, self.seed, listings=self._listings(smart, order.symbol),
                                  price=order.price if order.price is not None else self._mid(smart, order.symbol))
        except ValueError as exc:
            if risk is not None:
                risk.end_parent(order.id)
            return router.refuse(order, None, str(exc), track=False)
        if not store.add_parent(order.id, state):
            # Only another scheduler on the same store could have taken the id since
            # the claim: one store has one scheduler.
            if risk is not None:
                risk.end_parent(order.id)
            return router.refuse(order, None, f"parent order id {order.id!r} is already in use", track=False,
                                 publish=False)  # the id is another parent's: not its story
        return _Parent(state, algo)

    @staticmethod
    def _listings(smart: SmartOrderRouter, symbol: str) -> dict[str, Instrument]:
        """Each registered venue's instrument for `symbol` (the filters a parent must suit)."""
        router = smart.order_router
        out = {}
        for venue in router.exchanges:
            inst = router.client(venue).instruments().get(symbol)
            if inst is not None:
                out[venue] = inst
        return out

    @staticmethod
    def _mid(smart: SmartOrderRouter, symbol: str) -> float | None:
        book = smart.merged_book(symbol, depth=1)
        return book.mid if book is not None else None

    def submit(self, order: Order) -> list[OrderResult]:
        """Start a parent from sync code; returns the children of its first step."""
        parent = self._new_parent(self._attached(), order)
        if isinstance(parent, OrderResult):
            return [parent]
        parent.first_event = self.clock.event()
        self._inbox.append(("start", parent))
        self._ensure_thread()
        self.wake()
        self.clock.wait_event(parent.first_event, None)
        return parent.first_results or []

    async def submit_async(self, order: Order) -> list[OrderResult]:
        parent = self._new_parent(self._attached(), order)
        if isinstance(parent, OrderResult):
            return [parent]
        parent.first_event = anyio.Event()
        self._inbox.append(("start", parent))
        self._ensure_task()
        self.wake()
        await parent.first_event.wait()
        return parent.first_results or []

    def cancel(self, order_id: str, reason: str = "canceled by operator") -> bool:
        """Ask a working parent to stop: its children are canceled, then it ends CANCELED."""
        store = self.store
        if store is None or not store.parent_working(order_id):
            return False
        self._inbox.append(("cancel", (order_id, reason)))
        self._revive_driver()
        self.wake()
        return True

    def _revive_driver(self) -> None:
        """A cancel for a working parent after the async driver was closed (a stop whose
        timeout passed mid-cancel): the driver runs again on the caller's loop, so the
        parent can still be canceled and its children taken off the venues."""
        if self._loop is None or self._stopping:
            return  # the sync driver, or never started async
        task = self._task
        if task is not None and not task.done():
            return
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return  # not on a loop: the next async call starts it
        self._ensure_task()

    def _on_child_update(self, result: OrderResult) -> None:
        if result.order_id in self._child_parent:
            self._inbox.append(("child", result))
            self.wake()

    # -- the decision (no I/O) -----------------------------------------------------------
    def _run(self) -> Work:
        """The scheduler's whole work, until it is closed: what is due, then a wait for
        news or the next wake-up."""
        while not self._stopping:
            yield from self._work()
            yield Request("wait", self._next_deadline())

    def _work(self) -> Work:
        """Drain the inbox and due wake-ups; yield each placement and cancel, and a turn
        after each decision."""
        ctx = self._ctx
        assert ctx is not None  # attached
        runs = self._runs
        inbox = self._inbox
        while True:
            while inbox:
                kind, payload = inbox.popleft()
                if kind == "child":
                    pid = self._child_parent.get(payload.order_id)
                    parent = runs.get(pid) if pid else None
                    if parent is None or not self._apply(parent, payload):
                        continue
                    yield from self._guarded(parent, lambda p=parent, r=payload: p.algo.on_child(ctx, r))
                elif kind == "start":
                    parent = payload
                    state = parent.state
                    runs[state.order.id] = parent
                    book = ctx.book(state.order.symbol)
                    state.arrival_price = book.mid if book is not None else None
                    yield from self._guarded(parent, lambda p=parent: p.algo.start(ctx))
                    parent.first_results = parent.collected
                    parent.collected = []
                    self._signal_first(parent)
                elif kind == "cancel":
                    pid, reason = payload
                    parent = runs.get(pid)
                    if parent is None or parent.canceling:
                        continue
                    parent.canceling, parent.cancel_reason = True, reason
                    yield from self._cancel_children(parent, reason)
                    self._settle(parent)
                yield _TURN
            now = self.clock.now()
            due = [p for p in runs.values() if (w := self._wake_time(p)) is not None and w <= now]
            if not due:
                return
            for parent in due:
                if parent.retry_cancel_at is not None:
                    parent.retry_cancel_at = None
                    yield from self._cancel_children(parent, parent.cancel_reason or "parent finished")
                    self._settle(parent)
                else:
                    yield from self._guarded(parent, lambda p=parent: p.algo.on_timer(ctx))
                yield _TURN
                if inbox:
                    break  # news (a cancel, a fill) first; then the parents still due

    def _guarded(self, parent: _Parent, decide: Callable[[], list[Action]]) -> Work:
        """Run one algorithm decision and its consequences; a bug ends that parent, not the loop."""
        state = parent.state
        try:
            yield from self._perform(parent, decide())
        except Exception as exc:
            log.exception("parent %s failed", state.order.id)
            state.status = OrderStatus.CANCELED if state.filled_lots else OrderStatus.REJECTED
            state.reason = f"internal error in {state.order.type.value} algorithm: {exc!r}"
        if state.status.is_final and state.working_children:
            # The algorithm decided to stop: take its children off the venues first.
            yield from self._cancel_children(parent, state.reason or "parent finished")
        self._settle(parent)

    def _perform(self, parent: _Parent, actions: list[Action]) -> Work:
        queue = deque(actions)
        state = parent.state
        smart = self.smart
        assert smart is not None  # attached
        while queue:
            action = queue.popleft()
            if isinstance(action, CancelChild):
                yield from _cancel(action.order_id)
                continue
            if parent.canceling or state.status.is_final:
                continue  # a stopping parent places nothing new
            child = action.order
            cid = child.client_order_id or child.id
            self._child_parent[cid] = state.order.id
            state.children[cid] = OrderResult(
                order_id=cid, exchange_id=action.venue, status=OrderStatus.PENDING_NEW,
                quantity=child.quantity, symbol=child.symbol, side=child.side, price=child.price,
                timestamp=self.clock.now(),
            )
            state.child_reasons[cid] = action.reason
            state.last_reason = action.reason
            risk = smart.order_router.risk
            if risk is not None:
                # The pieces of a split child name the child, not the parent: tie them to it.
                risk.placing_child(state.order.id, cid)
            try:
                results: list[OrderResult] = yield Request("place", action)
            except Exception as exc:
                # The routers answer refusals and outages with results and never raise
                # for an order that went out: this is a bug below, and the child was not
                # placed. Left PENDING_NEW it would work forever (and be canceled in
                # vain); REJECTED, its algorithm hears of it and the parent goes on.
                log.exception("placing child %s of parent %s failed", cid, state.order.id)
                results = [OrderResult(
                    order_id=cid, exchange_id=action.venue, status=OrderStatus.REJECTED,
                    quantity=child.quantity, reason=f"internal error placing it: {exc!r}",
                    symbol=child.symbol, side=child.side, price=child.price, timestamp=self.clock.now(),
                )]
            finally:
                if risk is not None:
                    risk.placed_child(cid)
            for result in results:
                if result.order_id not in state.children:  # a split piece of this child
                    self._child_parent[result.order_id] = state.order.id
                    state.child_reasons[result.order_id] = action.reason
                if result.order_id == cid and len(results) > 1:
                    continue
                parent.collected.append(result)
                if self._apply(parent, result):
                    queue.extend(parent.algo.on_child(self._ctx, result))
            if len(results) > 1 or (results and results[0].order_id != cid):
                # The child was split: the placeholder stands for nothing at a venue.
                state.children.pop(cid, None)

    def _apply(self, parent: _Parent, result: OrderResult) -> bool:
        """Record a child's new state; False when it is not news (a repeat or stale)."""
        children = parent.state.children
        old = children.get(result.order_id)
        if old is result:
            return False
        if old is not None and old.status.is_final and old.status is not OrderStatus.PENDING_NEW:
            if result.filled_quantity <= old.filled_quantity:
                return False
        if old is not None and result.filled_quantity < old.filled_quantity:
            return False
        children[result.order_id] = result
        return True

    def _cancel_children(self, parent: _Parent, reason: str) -> Work:
        for cid in parent.state.working_children:
            result = yield from _cancel(cid)
            if isinstance(result, OrderResult) and result.status is not OrderStatus.REJECTED:
                self._apply(parent, result)

    def _settle(self, parent: _Parent) -> None:
        """Derive the parent's status from its children; finish it when nothing works."""
        state = parent.state
        working = state.working_children
        if state.status.is_final or parent.canceling:
            if working:
                # Children still work (a cancel failed or is in flight): try again shortly.
                parent.retry_cancel_at = self.clock.now() + CANCEL_RETRY_S
                self._notify(state)
                return
            if not state.status.is_final:
                if state.quantity_lots and state.filled_lots >= state.quantity_lots:
                    state.status, state.reason = OrderStatus.FILLED, None
                else:
                    state.status, state.reason = OrderStatus.CANCELED, parent.cancel_reason
        elif state.quantity_lots and state.filled_lots >= state.quantity_lots:
            state.status, state.reason = OrderStatus.FILLED, None
        elif state.filled_lots:
            state.status = OrderStatus.PARTIALLY_FILLED
        elif state.status is OrderStatus.PENDING_NEW:
            # The scheduler is a parent's venue: a started parent is acknowledged and
            # working, even while its algorithm waits to send a first child (a VWAP
            # under a participation cap waits for others' volume, for many seconds).
            # Shown PENDING_NEW that long, an operator would think it stuck.
            state.status = OrderStatus.NEW
        if state.status.is_final:
            parent.retry_cancel_at = None
            state.done_at = self.clock.now()
            pid = state.order.id
            smart, store = self.smart, self.store
            assert smart is not None and store is not None  # attached
            risk = smart.order_router.risk
            if risk is not None:
                risk.end_parent(pid)
            store.finish_parent(pid)
            del self._runs[pid]
            for cid in state.children:
                self._child_parent.pop(cid, None)
            self._signal_first(parent)
        self._notify(state)

    def _notify(self, state: ParentState) -> None:
        for listener in self._listeners:
            try:
                listener(state)
            except Exception:
                log.exception("parent listener failed for %s", state.order.id)

    def _signal_first(self, parent: _Parent) -> None:
        if parent.first_results is None:
            parent.first_results = parent.collected
        event = parent.first_event
        if event is not None:
            event.set()

    @staticmethod
    def _wake_time(parent: _Parent) -> float | None:
        if parent.retry_cancel_at is not None:
            return parent.retry_cancel_at
        if parent.canceling or parent.state.status.is_final:
            return None
        return parent.algo.next_wake()

    def _next_deadline(self) -> float | None:
        wakes = [w for p in self._runs.values() if (w := self._wake_time(p)) is not None]
        return min(wakes) if wakes else None

    # -- the drivers -----------------------------------------------------------------------
    def wake(self) -> None:
        """Look at the inbox and the clock again now. News wakes the driver by itself; call
        this after moving a clock by hand that the driver does not wait on (a
        `VirtualClock` advanced outside its own event loop), so parents due by then run."""
        if self._thread is not None:
            self._wakeup.set()
        set_event(self._loop, self._async_wakeup)


    def _ensure_thread(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            return
        self.clock.expect_participant()
        self._thread = threading.Thread(target=self._run_thread, name="execdesk-scheduler", daemon=True)
        self._thread.start()

    def _run_thread(self) -> None:
        smart = self._attached()
        clock, wakeup, inbox = self.clock, self._wakeup, self._inbox

        def perform(request: Request) -> Any:
            op = request.op
            if op == "place":
                action = request.arg
                return smart.place(action.order, action.venue, split=action.split)
            if op == "cancel":
                return smart.cancel(request.arg)
            if op == "wait":
                # Cleared before the inbox is looked at: news posted after the look sets it.
                wakeup.clear()
                if not inbox:
                    clock.wait_event(wakeup, request.arg)
            return None  # "turn": this thread holds no loop

        with clock.participate():
            drive(self._run(), perform, answers=(Exception,))

    def _ensure_task(self) -> None:
        loop = asyncio.get_running_loop()
        if self._task is not None and not self._task.done() and self._loop is loop:
            return
        self._loop = loop
        self._async_wakeup = anyio.Event()
        self._task = loop.create_task(self._run_async(), name="execdesk-scheduler")

    async def _run_async(self) -> None:
        smart = self._attached()
        clock, inbox = self.clock, self._inbox
        held_since = time.perf_counter()  # real time: how long the loop has been ours

        async def perform(request: Request) -> Any:
            nonlocal held_since
            op = request.op
            if op == "place":
                action = request.arg
                return await smart.place_async(action.order, action.venue, split=action.split)
            if op == "cancel":
                return await smart.cancel_async(request.arg)
            if op == "turn":
                # A decision is done: if this step has held the loop a while, let it run
                # what waits (an operator's key, the screen) before the next. Several
                # parents due at once, each reading thousands of trades, held it 50-140 ms.
                if time.perf_counter() - held_since >= TURN_AFTER_S:
                    await anyio.lowlevel.checkpoint()
                    held_since = time.perf_counter()
                return None
            if op == "wait":
                # A new event before the inbox is looked at: news posted after the look sets it.
                wakeup = self._async_wakeup = anyio.Event()
                if not inbox:
                    deadline = request.arg
                    delay = math.inf if deadline is None else max(deadline - clock.now(), 0.0)
                    with anyio.move_on_after(delay):
                        await wakeup.wait()
                    held_since = time.perf_counter()
            return None

        await drive_async(self._run(), perform, answers=(Exception,))

    async def aclose(self) -> None:
        task = self._task
        if task is not None and not task.done():
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                pass
        self._task = None

    def close(self) -> None:
        self._stopping = True
        self.wake()
