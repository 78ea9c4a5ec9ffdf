"""The Scheduler: runs parent orders (ICEBERG, TWAP, VWAP, SMART) to the end.

One scheduler per engine. Its work is one decision loop, `_work`, a
generator that asks algorithms what to do (at start, on child news, at their
wake-up times) and yields each child placement or cancel for a driver to
perform; it never performs I/O itself. Two drivers run it:

* sync: one daemon thread, started on first use, that waits on the clock
  between wake-ups (so virtual time moves only when it is idle, and it never
  keeps a process alive at exit);
* async: one task in the running event loop.

Child news reaches the scheduler through the order router's listener (a
child's own submit result and the venue's pushed execution reports), lands
in an inbox and wakes the driver; only the driver runs algorithm code, so
an algorithm never needs a lock. A parent submitted through `submit` or
`submit_async` returns the child results of its first step, then keeps
working until FILLED, CANCELED or REJECTED.
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
from ..clock import Clock, ClockEvent
from ..history import History
from ..loops import set_event
from ..models import Instrument, Order, OrderResult, OrderStatus, OrderType

if TYPE_CHECKING:
    from ..routing.smart import SmartOrderRouter

log = logging.getLogger("execdesk.scheduler")

ParentListener = Callable[[ParentState], None]

CANCEL_RETRY_S = 1.0  # how soon a failed child cancel is tried again


@dataclass(slots=True)
class _Parent:
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


# Finished parents kept as objects (read again soon after they finish); older ones pickled.
LIVE_FINISHED_PARENTS = 100
# Yielded by the work between two decisions: an async driver gives the loop a turn there,
# once it has held it this long (a turn after every fill report would cost throughput).
_TURN: tuple[str, Any] = ("turn", None)
TURN_AFTER_S = 0.005


class Scheduler:
    def __init__(
        self,
        smart_router: SmartOrderRouter,
        *,
        clock: Clock | None = None,
        seed: int = 0,
        remember: int = 100_000,
    ) -> None:
        self.smart = smart_router
        self.clock: Clock = clock or smart_router.clock
        self.seed = seed
        self._ctx = _Context(smart_router)
        self._active: dict[str, _Parent] = {}
        # Finished parents, compactly (children, fills, decisions: kilobytes each as live
        # objects, and the desk's demo finishes one every two seconds, for hours).
        self._finished: History[ParentState] = History(remember, live=LIVE_FINISHED_PARENTS)
        self._remember = remember
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
        smart_router.order_router.add_order_listener(self._on_child_update)

    @classmethod
    def for_router(cls, smart_router: SmartOrderRouter, seed: int = 0) -> Scheduler:
        """The default scheduler of a smart router made without one: finished parents are
        remembered as long as finished orders are."""
        return cls(smart_router, clock=smart_router.clock, seed=seed,
                   remember=max(smart_router.order_router.store.remember, 1))

    def supports(self, order_type: OrderType) -> bool:
        return order_type in ALGORITHMS

    # -- what others read ---------------------------------------------------------
    def add_listener(self, listener: ParentListener) -> None:
        """Called (on the driver) with a parent's state after each change."""
        self._listeners.append(listener)

    def parent(self, order_id: str) -> ParentState | None:
        p = self._active.get(order_id)
        return p.state if p is not None else self._finished.get(order_id)

    def is_finished(self, order_id: str) -> bool:
        """A parent that finished (known without building it back from history)."""
        return order_id in self._finished

    def status(self, order_id: str) -> OrderResult | None:
        state = self.parent(order_id)
        return state.to_result() if state is not None else None

    def describe(self, order_id: str) -> str:
        p = self._active.get(order_id)
        return p.algo.describe() if p is not None else ""

    @property
    def active(self) -> list[str]:
        return list(self._active)

    def owns_child(self, order_id: str) -> str | None:
        return self._child_parent.get(order_id)

    # -- submitting and canceling -------------------------------------------------------
    def _new_parent(self, order: Order) -> _Parent | OrderResult:
        if order.id in self._active or order.id in self._finished:
            return self.smart.order_router.refuse(
                order, None, f"parent order id {order.id!r} is already in use", track=False
            )
        state = ParentState(order, self.smart.instrument(order.symbol), created_at=self.clock.now())
        if state.instrument is None:
            return self.smart.order_router.refuse(
                order, None, f"no registered venue lists {order.symbol}", track=False
            )
        # Judged once as a whole: a TWAP for 1e6 BTC is refused here, not child by child.
        # Accepted, it reserves its quantity against the position limit until it ends.
        risk = self.smart.order_router.risk
        if risk is not None:
            symbol = order.symbol
            refusal = risk.accept_parent(order, lambda depth: self.smart.merged_book(symbol, depth))
            if refusal is not None:
                return self.smart.order_router.refuse(order, None, refusal, track=False)
        try:
            algo = make_algorithm(state, self.seed, listings=self._listings(order.symbol),
                                  price=order.price if order.price is not None else self._mid(order.symbol))
        except ValueError as exc:
            if risk is not None:
                risk.end_parent(order.id)
            return self.smart.order_router.refuse(order, None, str(exc), track=False)
        parent = _Parent(state, algo)
        self._active[order.id] = parent
        return parent

    def _listings(self, symbol: str) -> dict[str, Instrument]:
        """Each registered venue's instrument for `symbol` (the filters a parent must suit)."""
        router = self.smart.order_router
        out = {}
        for venue in router.exchanges:
            inst = router.client(venue).instruments().get(symbol)
            if inst is not None:
                out[venue] = inst
        return out

    def _mid(self, symbol: str) -> float | None:
        book = self.smart.merged_book(symbol, depth=1)
        return book.mid if book is not None else None

    def submit(self, order: Order) -> list[OrderResult]:
        """Start a parent from sync code; returns the children of its first step."""
        parent = self._new_parent(order)
        if isinstance(parent, OrderResult):
            return [parent]
        parent.first_event = self.clock.event()
        self._inbox.append(("start", order.id))
        self._ensure_thread()
        self._wake()
        self.clock.wait_event(parent.first_event, None)
        return parent.first_results or []

    async def submit_async(self, order: Order) -> list[OrderResult]:
        parent = self._new_parent(order)
        if isinstance(parent, OrderResult):
            return [parent]
        parent.first_event = anyio.Event()
        self._inbox.append(("start", order.id))
        self._ensure_task()
        self._wake()
        await parent.first_event.wait()
        return parent.first_results or []

    def cancel(self, order_id: str, reason: str = "canceled by operator") -> bool:
        """Ask a working parent to stop: its children are canceled, then it ends CANCELED."""
        if order_id not in self._active:
            return False
        self._inbox.append(("cancel", (order_id, reason)))
        self._wake()
        return True

    def _on_child_update(self, result: OrderResult) -> None:
        if result.order_id in self._child_parent:
            self._inbox.append(("child", result))
            self._wake()

    # -- the decision loop (no I/O) -----------------------------------------------------
    def _work(self) -> Generator[tuple[str, Any], Any, None]:
        """Drain the inbox and due wake-ups; yield ("place", PlaceChild) / ("cancel", id),
        and ("turn", None) after each decision."""
        ctx = self._ctx
        while True:
            while self._inbox:
                kind, payload = self._inbox.popleft()
                if kind == "child":
                    pid = self._child_parent.get(payload.order_id)
                    parent = self._active.get(pid) if pid else None
                    if parent is None or not self._apply(parent, payload):
                        continue
                    yield from self._guarded(parent, lambda p=parent, r=payload: p.algo.on_child(ctx, r))
                elif kind == "start":
                    parent = self._active.get(payload)
                    if parent is None:
                        continue
                    state = parent.state
                    book = ctx.book(state.order.symbol)
                    state.arrival_price = book.mid if book is not None else None
                    yield from self._guarded(parent, lambda p=parent: p.algo.start(ctx))
                    parent.first_results = parent.collected
                    parent.collected = []
                    self._signal_first(parent)
                elif kind == "cancel":
                    pid, reason = payload
                    parent = self._active.get(pid)
                    if parent is None or parent.canceling:
                        continue
                    parent.canceling, parent.cancel_reason = True, reason
                    yield from self._cancel_children(parent, reason)
                    self._settle(parent)
                yield _TURN
            now = self.clock.now()
            due = [p for p in self._active.values() if (w := self._wake_time(p)) is not None and w <= now]
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
                if self._inbox:
                    break  # news (a cancel, a fill) first; then the parents still due

    def _guarded(
        self, parent: _Parent, decide: Callable[[], list[Action]]
    ) -> Generator[tuple[str, Any], Any, None]:
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

    def _perform(self, parent: _Parent, actions: list[Action]) -> Generator[tuple[str, Any], Any, None]:
        queue = deque(actions)
        state = parent.state
        while queue:
            action = queue.popleft()
            if isinstance(action, CancelChild):
                yield ("cancel", action.order_id)
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
            risk = self.smart.order_router.risk
            if risk is not None:
                # The pieces of a split child name the child, not the parent: tie them to it.
                risk.placing_child(state.order.id, cid)
            try:
                results: list[OrderResult] = yield ("place", action)
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

    def _cancel_children(self, parent: _Parent, reason: str) -> Generator[tuple[str, Any], Any, None]:
        for cid in parent.state.working_children:
            result = yield ("cancel", cid)
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
            risk = self.smart.order_router.risk
            if risk is not None:
                risk.end_parent(state.order.id)
            # Into history before out of the active set: a reader on another thread
            # finds the parent in one or the other, never in neither.
            self._finished.put(state.order.id, state)
            del self._active[state.order.id]
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
        wakes = [w for p in self._active.values() if (w := self._wake_time(p)) is not None]
        return min(wakes) if wakes else None

    # -- the sync driver -----------------------------------------------------------------
    def _wake(self) -> None:
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
        with self.clock.participate():
            while not self._stopping:
                self._drive_sync(self._work())
                self._wakeup.clear()
                if self._inbox:
                    continue
                self.clock.wait_event(self._wakeup, self._next_deadline())

    def _drive_sync(self, work: Generator[tuple[str, Any], Any, None]) -> None:
        reply: Any = None
        while True:
            try:
                op, arg = work.send(reply)
            except StopIteration:
                return
            if op == "turn":
                reply = None
                continue
            try:
                if op == "place":
                    reply = self.smart.place(arg.order, arg.venue, split=arg.split)
                else:
                    reply = self.smart.cancel(arg)
            except Exception:  # routers answer with results; this is a bug below
                log.exception("scheduler %s failed", op)
                reply = [] if op == "place" else None

    # -- the async driver ----------------------------------------------------------------
    def _ensure_task(self) -> None:
        loop = asyncio.get_running_loop()
        if self._task is not None and not self._task.done() and self._loop is loop:
            return
        self._loop = loop
        self._async_wakeup = anyio.Event()
        self._task = loop.create_task(self._run_async(), name="execdesk-scheduler")

    async def _run_async(self) -> None:
        while not self._stopping:
            await self._drive_async(self._work())
            self._async_wakeup = anyio.Event()
            if self._inbox:
                continue
            deadline = self._next_deadline()
            delay = math.inf if deadline is None else max(deadline - self.clock.now(), 0.0)
            with anyio.move_on_after(delay):
                await self._async_wakeup.wait()

    async def _drive_async(self, work: Generator[tuple[str, Any], Any, None]) -> None:
        reply: Any = None
        held_since = time.perf_counter()  # real time: how long the loop has been ours
        while True:
            try:
                op, arg = work.send(reply)
            except StopIteration:
                return
            if op == "turn":
                # A decision is done: if this step has held the loop a while, let it run
                # what waits (an operator's key, the screen) before the next. Several
                # parents due at once, each reading thousands of trades, held it 50-140 ms.
                reply = None
                if time.perf_counter() - held_since >= TURN_AFTER_S:
                    await anyio.lowlevel.checkpoint()
                    held_since = time.perf_counter()
                continue
            try:
                if op == "place":
                    reply = await self.smart.place_async(arg.order, arg.venue, split=arg.split)
                else:
                    reply = await self.smart.cancel_async(arg)
            except Exception:
                log.exception("scheduler %s failed", op)
                reply = [] if op == "place" else None

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
        self._wake()
