"""The one order store: every order's and parent's state, working and finished.

One `OrderStore` per engine. The routers, the smart router, the scheduler, the
optimizers and the `Engine` read and write order state here, through the
methods below, and keep no second copy. Every change of state leaves as an
event on the store's one stream (`subscribe`), the stream the desk's view
model and the journal read.

What it holds, by who writes it:

* **Records** (the routers): an order sent to a venue, with its venue and its
  latest result. Working records and finished ones are kept apart, so nothing
  per order walks the working ones (an order's cost never depends on how many
  rest). The newest `live` finished records stay as objects; older ones move
  to a compact `History` (pickled), which forgets its oldest past `remember`.
* **Splits** (the smart router, or an optimizer for an order answered under
  another id): an order sent as several pieces, with its pieces' ids and the
  terms its aggregate needs, so a resubmission is answered, not planned again,
  and a status is one look-up; each piece's result as the piece finishes (its
  record may be forgotten before the split is); and its final result, kept when
  its last piece finished. A split is final when all its pieces are.
* **Queued orders, taken ids and early answers** (the optimizers): orders
  waiting for a worker (or held by one), every id an optimizer took, and the
  answer of an order that never reached a router (refused, or canceled while
  queued).
* **Parents** (the scheduler): each parent order's `ParentState`.
* **Routing claims** (the smart router): the order ids being planned and sent
  now, each held by one caller from its duplicate check to its last piece out,
  so the same order routed twice at once goes out once (see `claim_routing`).

`lookup` answers "what is this id?" in one look-up, and `is_final` says whether
an order is final from what is known without building anything back.

Rules:

* One re-entrant lock, `lock`, guards all of it. A writer that must change
  several things at once (a router settling a venue's answer and the order's
  flight) holds it across them; it is held for bookkeeping only, never across
  a venue call, a wait or a subscriber.
* Events and order listener calls are posted under the lock, in the order the
  changes were made (`post_locked`), and delivered outside it, by one thread
  at a time (`deliver`): a subscriber never sees an order's states out of
  order. A subscriber's exception is logged, never handed to whoever changed
  the order.
* The merge rule (`merge_result`) is the only way a record's result changes:
  a final state never changes; a fill counts once; filled quantity only grows;
  a report of an earlier stage is stale.
* Memory is bounded by `remember`: finished records, finished splits, early
  answers and taken ids each forget their oldest past it. Working records,
  working splits (a piece not final yet) and queued orders are never forgotten.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict, deque
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Generic, NamedTuple, TypeVar

from .history import History
from .models import (
    Fill,
    Order,
    OrderResult,
    OrderStatus,
    compact_order,
    compact_result,
    order_from_compact,
    result_from_compact,
)

log = logging.getLogger("execdesk.store")

__all__ = ["Found", "OrderRecord", "OrderStore", "RoutingClaim", "Split", "merge_result", "LIVE_FINISHED_ORDERS"]

# Finished orders kept as live objects before they move to compact history.
LIVE_FINISHED_ORDERS = 1_000
# Finished parents kept as objects (read again soon after they finish); older ones pickled.
LIVE_FINISHED_PARENTS = 100

_PENDING_NEW = OrderStatus.PENDING_NEW
_PARTIAL = OrderStatus.PARTIALLY_FILLED
# How far a working order has come; a report of an earlier stage is stale.
_STAGE = {_PENDING_NEW: 0, OrderStatus.NEW: 1, OrderStatus.PENDING_CANCEL: 1, _PARTIAL: 2}

EventListener = Callable[[Any], None]
OrderListener = Callable[[OrderResult], None]
K = TypeVar("K")


class OrderRecord:
    """An order a router sent: the order as it stands (amends change it), its venue and
    its latest result. Changed only under the store's lock."""

    __slots__ = ("order", "venue", "result")

    def __init__(self, order: Order, venue: str, result: OrderResult) -> None:
        self.order = order
        self.venue = venue
        self.result = result


def _pack_record(record: OrderRecord) -> tuple[Any, ...]:
    # The result last: `OrderStore.result` builds it alone from history.
    return compact_order(record.order), record.venue, compact_result(record.result)


def _unpack_record(values: tuple[Any, ...]) -> OrderRecord:
    order, venue, result = values
    return OrderRecord(order_from_compact(order), venue, result_from_compact(result))


class Split(NamedTuple):
    """A split order: its pieces' ids and what its aggregate needs of the order. Plain
    strings and numbers: thousands are remembered, and the cycle collector leaves
    tuples of them alone."""

    pieces: tuple[str, ...]
    quantity: float
    symbol: str
    side: str  # OrderSide's value
    price: float | None


# What `OrderStore.lookup` finds under an order id.
QUEUED = "queued"  # waiting for a worker, or held by one: `order`
PARENT = "parent"  # a parent order: `parent`, its state
SPLIT = "split"  # a split order: `split`, and `result` (kept final) or `pieces` (their results)
RECORD = "record"  # an order a router recorded: `result`
EARLY = "early"  # answered before any router recorded it: `result`


class Found(NamedTuple):
    """What the store holds under an order id; `kind` says which fields are set."""

    kind: str
    order: Order | None = None
    parent: Any = None
    split: Split | None = None
    result: OrderResult | None = None
    # A split without a kept result: each piece's result, None for one not recorded.
    pieces: list[OrderResult | None] | None = None


def fill_key(fill: Fill) -> tuple[Any, ...]:
    """What makes a fill itself: the venue's trade id, else its time, price and size."""
    if fill.trade_id:
        return (fill.trade_id,)
    return (fill.timestamp, fill.price, fill.quantity)


def merge_result(
    cur: OrderResult,
    status: OrderStatus,
    filled: float,
    fills: Sequence[Fill],
    reason: str | None,
    ts: float,
    quantity: float | None = None,
    price: float | None = None,
) -> tuple[OrderResult, list[Fill]] | None:
    """`cur` with news applied by the store's merge rule: the new result and the fills it
    did not have, or None when the news changes nothing."""
    new_fills: list[Fill] = []
    if fills:
        seen = {fill_key(f) for f in cur.fills}
        for fill in fills:
            key = fill_key(fill)
            if key not in seen:
                seen.add(key)
                new_fills.append(fill)
    old = cur.status
    if old.is_final:
        new = old
    elif status.is_final:
        new = status
    elif filled < cur.filled_quantity or _STAGE.get(status, 1) < _STAGE.get(old, 1):
        new = old  # stale: an earlier stage than the store already knows
    else:
        new = status
    total = cur.filled_quantity if cur.filled_quantity >= filled else filled
    qty = cur.quantity if quantity is None or not quantity > 0 else quantity
    px = cur.price if price is None else price
    if not new_fills and new is old and total == cur.filled_quantity and (qty, px) == (cur.quantity, cur.price):
        return None
    all_fills = cur.fills + new_fills if new_fills else list(cur.fills)
    average = cur.average_price
    if new_fills:
        done = sum(f.quantity for f in all_fills)
        average = sum(f.price * f.quantity for f in all_fills) / done if done else None
    return OrderResult(
        order_id=cur.order_id,
        exchange_id=cur.exchange_id,
        status=new,
        quantity=qty,
        filled_quantity=total,
        average_price=average,
        fills=all_fills,
        reason=(reason or cur.reason) if new is not old else cur.reason,
        symbol=cur.symbol,
        side=cur.side,
        price=px,
        timestamp=ts if ts > cur.timestamp else cur.timestamp,
        latency_ns=cur.latency_ns,
        ack_latency_ns=cur.ack_latency_ns,
    ), new_fills


def _resolve_none(future: Any) -> None:
    if not future.done():
        future.set_result(None)


class _Bounded(Generic[K]):
    """Insertion-ordered keys -> values that forget their oldest past `limit`."""

    __slots__ = ("items", "limit")

    def __init__(self, limit: int) -> None:
        self.items: OrderedDict[str, Any] = OrderedDict()
        self.limit = limit

    def put(self, key: str, value: Any) -> None:
        items = self.items
        items[key] = value
        while len(items) > self.limit:
            items.popitem(last=False)


class RoutingClaim:
    """An order id a smart router holds while it plans and sends the order: who holds it
    (`thread`, so a resend from that same thread is not told to wait for itself) and who
    waits for it to be released (clock events, or (loop, future) pairs)."""

    __slots__ = ("thread", "waiters", "released")

    def __init__(self, thread: int) -> None:
        self.thread = thread
        self.waiters: list[Any] = []
        self.released = False


class OrderStore:
    """The single owner of every order's and parent's state (see the module docstring).

    `remember`: finished orders (and finished parents, splits, early answers) kept
    for status queries and duplicate checks; `live`: how many of the newest
    finished records stay as objects before they are kept compactly.
    """

    def __init__(self, remember: int = 100_000, *, live: int | None = None) -> None:
        if isinstance(remember, bool) or not isinstance(remember, int) or remember < 0:
            raise ValueError(f"remember must be a whole number >= 0, got {remember!r}")
        self.remember = remember
        self.lock = threading.RLock()
        # Records (routers).
        self._live = min(LIVE_FINISHED_ORDERS if live is None else live, remember)
        self._working: dict[str, OrderRecord] = {}
        self._finished: OrderedDict[str, OrderRecord] = OrderedDict()
        self._history: History[OrderRecord] = History(
            max(remember - self._live, 0), pack=_pack_record, unpack=_unpack_record
        )
        # Splits: order id -> Split (oldest first; forgetting one forgets all of it);
        # the orders themselves, compactly (read only when a split order is resubmitted);
        # piece id -> order id; final results of split orders.
        self._splits: OrderedDict[str, Split] = OrderedDict()
        self._split_orders: History[Order] = History(remember, pack=compact_order, unpack=order_from_compact)
        self._piece_of: dict[str, str] = {}
        self._split_done: History[OrderResult] = History(
            remember, pack=compact_result, unpack=result_from_compact
        )
        # Split id -> its finished pieces' results (compact), kept with the split; and the
        # finished splits, oldest first: only they are forgotten past `remember`.
        self._pieces_done: dict[str, dict[str, tuple[Any, ...]]] = {}
        self._splits_final: OrderedDict[str, None] = OrderedDict()
        # Optimizers: orders waiting for a worker, and those a worker holds; every id
        # taken; answers of orders no router recorded (refused before routing, canceled
        # while queued).
        self._queued: dict[str, Order] = {}
        self._claimed: set[str] = set()
        self._taken = _Bounded[None](max(remember, 1))
        self._early: History[OrderResult] = History(
            remember, live=self._live, pack=compact_result, unpack=result_from_compact
        )
        # Routing claims (smart router): order id -> the claim of the caller routing it.
        self._routing: dict[str, RoutingClaim] = {}
        # Parents (scheduler).
        self._parents: dict[str, Any] = {}
        self._parents_done: History[Any] = History(max(remember, 1), live=LIVE_FINISHED_PARENTS)
        # The one stream: (deliver, item) in the order of the changes.
        self._outbox: deque[tuple[Callable[[Any], None], Any]] = deque()
        self._delivering = threading.Lock()
        self._subscribers: tuple[EventListener, ...] = ()
        self._order_listeners: tuple[OrderListener, ...] = ()

    # -- records (routers) ---------------------------------------------------------------
    def record(self, cid: str) -> OrderRecord | None:
        """The record of a client order id: the live one, or a copy from history (reading
        changes nothing; to change a copy, `revive` it)."""
        with self.lock:
            record = self._working.get(cid)
            if record is None:
                record = self._finished.get(cid)
                if record is None and cid in self._history:
                    record = self._history.get(cid)
            return record

    def result(self, cid: str) -> OrderResult | None:
        """The latest result of a client order id. From history only the result is built
        back, not the order (half the cost of a status read of a finished order)."""
        with self.lock:
            record = self._working.get(cid) or self._finished.get(cid)
            if record is not None:
                return record.result
            history = self._history
            if cid not in history:
                return None
            packed = history.packed(cid)
            if packed is not None:
                return result_from_compact(packed[2])
            record = history.get(cid)  # kept as an object: it could not be pickled
            return record.result if record is not None else None

    def live_record(self, cid: str) -> OrderRecord | None:
        """The record as an object the caller may change (under the lock), None when it
        is only in history or unknown."""
        record = self._working.get(cid)
        return record if record is not None else self._finished.get(cid)

    def in_history(self, cid: str) -> bool:
        return cid in self._history

    def archived(self, cid: str) -> bool:
        """Finished and kept compactly (cheap: nothing is read back)."""
        with self.lock:
            return cid in self._history and cid not in self._finished and cid not in self._working

    def has_record(self, cid: str) -> bool:
        return cid in self._working or cid in self._finished or cid in self._history

    def add_record(self, cid: str, record: OrderRecord) -> None:
        """A new record (caller holds the lock)."""
        if not record.result.status.is_final:
            self._working[cid] = record
            return
        if cid in self._piece_of:
            self._piece_done(cid, record.result)
        finished = self._finished
        finished[cid] = record
        if len(finished) > self._live:
            self._evict()

    def record_changed(self, cid: str, record: OrderRecord, was_final: bool) -> None:
        """`record.result` was replaced (caller holds the lock): one that has just finished
        moves to the finished records."""
        if record.result.status.is_final:
            if cid in self._piece_of:
                self._piece_done(cid, record.result)  # again for a late fill
            if not was_final:
                self._working.pop(cid, None)
                self._finish(cid, record)

    def revive(self, cid: str, record: OrderRecord) -> None:
        """A copy read from history changed (a late fill): it is the record again."""
        self._history.pop(cid)
        if cid in self._piece_of and record.result.status.is_final:
            self._piece_done(cid, record.result)
        self._finish(cid, record)

    def _finish(self, cid: str, record: OrderRecord) -> None:
        finished = self._finished
        finished.pop(cid, None)  # a revived record becomes the newest
        finished[cid] = record
        if len(finished) > self._live:
            self._evict()

    def _evict(self) -> None:
        finished, history = self._finished, self._history
        while len(finished) > self._live:
            old, record = finished.popitem(last=False)
            history.put(old, record)

    def working_results(self) -> list[OrderResult]:
        with self.lock:
            return [r.result for r in self._working.values()]

    def working_records(self) -> list[OrderRecord]:
        with self.lock:
            return list(self._working.values())

    def record_count(self) -> int:
        """Records kept as objects (working and the newest finished)."""
        return len(self._working) + len(self._finished)

    def record_ids(self) -> Iterator[str]:
        with self.lock:
            return iter([*self._working, *self._finished])

    # -- splits (smart router, optimizers) -------------------------------------------------
    def add_split(self, order: Order, pieces: Sequence[str]) -> None:
        """`order` goes out as these pieces (recorded before any piece is sent, so a status
        read finds the order queued or split, never neither)."""
        split = Split(tuple(pieces), order.quantity, order.symbol, order.side.value, order.price)
        with self.lock:
            oid = order.id
            if oid in self._splits:
                self._forget_split(oid)
            self._splits[oid] = split
            self._split_orders.put(oid, order)
            self._pieces_done[oid] = {}
            piece_of = self._piece_of
            for cid in split.pieces:
                piece_of[cid] = oid
            for cid in split.pieces:  # pieces that finished before the split was recorded
                result = self.result(cid)
                if result is not None and result.status.is_final:
                    self._piece_done(cid, result)

    def piece_answered(self, cid: str, result: OrderResult) -> None:
        """A piece's answer as its sender got it: kept when final, for a piece no record
        holds (refused before any venue; a recorded piece is kept as its record finishes)."""
        if not result.status.is_final:
            return
        with self.lock:
            if cid in self._piece_of and not self.has_record(cid):
                self._piece_done(cid, result)

    def _piece_done(self, cid: str, result: OrderResult) -> None:
        """With the lock held: a piece's final result, kept in its split; the split is
        final once all its pieces are, and only then can it be forgotten."""
        oid = self._piece_of[cid]
        done = self._pieces_done.get(oid)
        split = self._splits.get(oid)
        if done is None or split is None:
            return
        done[cid] = compact_result(result)
        if len(done) == len(split.pieces) and oid not in self._splits_final:
            final = self._splits_final
            final[oid] = None
            while len(final) > self.remember:
                self._forget_split(next(iter(final)))

    def split(self, order_id: str) -> tuple[Order, tuple[str, ...]] | None:
        """A split order and its pieces' ids (builds the order back: for a resubmission)."""
        if order_id not in self._splits:
            return None  # most orders: no lock taken to say so
        with self.lock:
            split = self._splits.get(order_id)
            if split is None:
                return None
            order = self._split_orders.get(order_id)
            return (order, split.pieces) if order is not None else None

    def split_client_id(self, order_id: str) -> str | None:
        """The client order id a split order was given, when it differs from its id."""
        order = self._split_orders.get(order_id)
        if order is None or order.client_order_id == order.id:
            return None
        return order.client_order_id

    def split_pieces(self, order_id: str) -> tuple[str, ...] | None:
        split = self._splits.get(order_id)
        return split.pieces if split is not None else None

    def is_split(self, order_id: str) -> bool:
        return order_id in self._splits

    def split_of(self, cid: str) -> str | None:
        """The split order a piece belongs to."""
        return self._piece_of.get(cid)

    def split_view(self, order_id: str) -> tuple[Split, OrderResult | None, list[OrderResult | None] | None] | None:
        """A split order as its aggregate needs it, read at once: the split, its kept final
        result, or (none kept) each piece's result (None for a piece not recorded)."""
        with self.lock:
            split = self._splits.get(order_id)
            if split is None:
                return None
            done = self._split_done.get(order_id)
            if done is not None:
                return split, done, None
            return split, None, self.piece_results(order_id)

    def piece_results(self, order_id: str) -> list[OrderResult | None]:
        """Each piece's latest result: its record's, else the one kept when it finished
        (its record forgotten since); None for a piece with neither."""
        with self.lock:
            split = self._splits.get(order_id)
            if split is None:
                return []
            kept = self._pieces_done.get(order_id, {})
            out: list[OrderResult | None] = []
            for cid in split.pieces:
                result = self.result(cid)
                if result is None and cid in kept:
                    result = result_from_compact(kept[cid])
                out.append(result)
            return out

    def keep_split_result(self, order_id: str, result: OrderResult) -> None:
        """A split order's final answer, kept when its last piece finished (its pieces'
        records are forgotten before it is)."""
        with self.lock:
            if order_id in self._splits:
                self._split_done.put(order_id, result)

    def split_result(self, order_id: str) -> OrderResult | None:
        with self.lock:
            return self._split_done.get(order_id)

    def split_done(self, order_id: str) -> bool:
        return order_id in self._split_done

    def _forget_split(self, order_id: str) -> None:
        split = self._splits.pop(order_id, None)
        if split is not None:
            piece_of = self._piece_of
            for cid in split.pieces:
                if piece_of.get(cid) == order_id:
                    del piece_of[cid]
        self._split_orders.pop(order_id)
        self._split_done.pop(order_id)
        self._pieces_done.pop(order_id, None)
        self._splits_final.pop(order_id, None)

    # -- routing claims (smart router) -------------------------------------------------------
    def claim_routing(self, order_id: str, thread: int, waiter: Any = None) -> RoutingClaim | None:
        """Hold `order_id` for routing. None: the caller holds it now and must
        `release_routing` it, whatever happens. Otherwise another caller holds it: its
        claim is returned, with `waiter` (a clock event, or a (loop, future) pair) added
        to be woken at its release."""
        with self.lock:
            held = self._routing.get(order_id)
            if held is None:
                self._routing[order_id] = RoutingClaim(thread)
                return None
            if waiter is not None:
                held.waiters.append(waiter)
            return held

    def release_routing(self, order_id: str) -> None:
        """The order is out (or refused, or failed): whoever waits looks again."""
        with self.lock:
            claim = self._routing.pop(order_id, None)
            if claim is None:
                return
            claim.released = True
            waiters = claim.waiters
        for waiter in waiters:
            if type(waiter) is tuple:
                loop, future = waiter
                try:
                    loop.call_soon_threadsafe(_resolve_none, future)
                except RuntimeError:  # that loop is closed: nobody is left to wait
                    pass
            else:
                waiter.set()

    # -- optimizers ------------------------------------------------------------------------
    def take(self, order: Order) -> str | None:
        """Queue an order for a worker; the reason it cannot be (its id is in use), or None."""
        with self.lock:
            oid = order.id
            if oid in self._queued or oid in self._taken.items:
                return f"order id {oid!r} is already in use"
            if self.has_record(oid) or self.has_parent(oid) or oid in self._splits:
                # Another order's (a parent's child, one sent straight to a router): its
                # state must not answer for this one.
                return f"order id {oid!r} is already in use by another order"
            self._queued[oid] = order
            return None

    def queued(self, order_id: str) -> Order | None:
        return self._queued.get(order_id)

    def claim(self, order_id: str) -> Order | None:
        """A worker takes a queued order to route it: too late to cancel it as queued from
        now on. None when it is no longer queued (canceled meanwhile) or already held."""
        with self.lock:
            if order_id in self._claimed:
                return None
            order = self._queued.get(order_id)
            if order is not None:
                self._claimed.add(order_id)
            return order

    def unqueue(self, order_id: str) -> Order | None:
        """Take a queued order no worker holds off the queue (it is canceled, or was never
        handed over): its id is free again unless the caller then calls `routed`."""
        with self.lock:
            if order_id in self._claimed:
                return None
            return self._queued.pop(order_id, None)

    def queued_ids(self) -> list[str]:
        with self.lock:
            return list(self._queued)

    def routed(self, order_id: str, early: OrderResult | None = None) -> None:
        """An order left the queue for good (routed, or answered without a router, with
        that `early` answer); its id stays taken."""
        with self.lock:
            if early is not None:
                self._early.put(order_id, early)
            self._queued.pop(order_id, None)
            self._claimed.discard(order_id)
            self._taken.put(order_id, None)

    def taken_ids(self) -> list[str]:
        with self.lock:
            return list(self._taken.items)

    def early(self, order_id: str) -> OrderResult | None:
        """The answer of an order no router recorded (refused before routing, canceled
        while queued)."""
        with self.lock:
            return self._early.get(order_id)

    # -- status: one look-up -----------------------------------------------------------------
    def lookup(self, order_id: str) -> Found | None:
        """What the store holds under an order id, first match of: queued, parent, split,
        record, early answer. None when it is unknown (or forgotten)."""
        with self.lock:
            order = self._queued.get(order_id)
            if order is not None:
                return Found(QUEUED, order=order)
            if self.has_parent(order_id):
                return Found(PARENT, parent=self.parent(order_id))
            if order_id in self._splits:
                split, done, pieces = self.split_view(order_id)  # type: ignore[misc]
                return Found(SPLIT, split=split, result=done, pieces=pieces)
            result = self.result(order_id)
            if result is not None:
                return Found(RECORD, result=result)
            early = self._early.get(order_id)
            if early is not None:
                return Found(EARLY, result=early)
            return None

    def is_final(self, order_id: str) -> bool | None:
        """Whether the order `lookup` would find is final, known without building anything
        back from history (records are kept apart by it; a parent's live state says it;
        a split is final when all its pieces are). None when the id is unknown."""
        with self.lock:
            if order_id in self._splits:
                # Before the queue: a worker still holds an order while its pieces go out,
                # and the last piece may finish before the worker lets go of it.
                return order_id in self._splits_final
            if order_id in self._queued:
                return False
            if self.parent_finished(order_id):
                return True
            if self.has_parent(order_id):
                return bool(self.parent(order_id).status.is_final)
            final = self._record_final(order_id)
            if final or order_id in self._working:
                return final
            return True if order_id in self._early else None

    def _record_final(self, cid: str) -> bool:
        return cid not in self._working and (cid in self._finished or cid in self._history)

    # -- parents (scheduler) ---------------------------------------------------------------
    # A parent's state (a `ParentState`) is added once, when the scheduler accepts the
    # parent, changed in place by the scheduler's driver alone, and finished once; from
    # then on it is history (the newest as objects, older ones pickled).
    def add_parent(self, order_id: str, state: Any) -> bool:
        """A new working parent; False (and nothing added) when the id is already a
        parent's, working or finished."""
        with self.lock:
            if order_id in self._parents or order_id in self._parents_done:
                return False
            self._parents[order_id] = state
            return True

    def parent(self, order_id: str) -> Any:
        """A parent's state: the live one while it works, a copy once it finished."""
        with self.lock:
            state = self._parents.get(order_id)
            return state if state is not None else self._parents_done.get(order_id)

    def has_parent(self, order_id: str) -> bool:
        """A parent's id, working or finished."""
        with self.lock:
            return order_id in self._parents or order_id in self._parents_done

    def parent_working(self, order_id: str) -> bool:
        return order_id in self._parents

    def parent_finished(self, order_id: str) -> bool:
        """Finished (known without building its state back from history)."""
        with self.lock:
            return order_id in self._parents_done

    def finish_parent(self, order_id: str) -> None:
        """A parent ended: it is history from now on."""
        with self.lock:
            state = self._parents.get(order_id)
            if state is not None:
                # Into history before out of the working ones: `parent_working` reads
                # without the lock, and a parent is always in one or the other.
                self._parents_done.put(order_id, state)
                del self._parents[order_id]

    def active_parents(self) -> list[str]:
        """Ids of the working parents, oldest first."""
        with self.lock:
            return list(self._parents)

    # -- the one event stream ----------------------------------------------------------------
    def subscribe(self, listener: EventListener) -> None:
        """Called with every event, in order, outside the lock."""
        with self.lock:
            self._subscribers = (*self._subscribers, listener)

    def unsubscribe(self, listener: EventListener) -> None:
        with self.lock:
            subscribers = list(self._subscribers)
            subscribers.remove(listener)
            self._subscribers = tuple(subscribers)

    @property
    def has_subscribers(self) -> bool:
        return bool(self._subscribers)

    def add_order_listener(self, listener: OrderListener) -> None:
        """Called with every new result of a recorded order (answers and reports)."""
        with self.lock:
            self._order_listeners = (*self._order_listeners, listener)

    def remove_order_listener(self, listener: OrderListener) -> None:
        with self.lock:
            listeners = list(self._order_listeners)
            listeners.remove(listener)
            self._order_listeners = tuple(listeners)

    @property
    def has_order_listeners(self) -> bool:
        return bool(self._order_listeners)

    def post_locked(self, events: Sequence[Any] | None, result: OrderResult | None = None) -> None:
        """With the lock held: queue events, then a listener call for `result`, in the
        order of the change they report."""
        outbox = self._outbox
        if events and self._subscribers:
            emit = self._emit_one
            for event in events:
                outbox.append((emit, event))
        if result is not None and self._order_listeners:
            outbox.append((self._notify_one, result))

    def publish(self, event: Any) -> None:
        """Post one event and deliver it (and whatever was waiting before it)."""
        if self._subscribers:
            with self.lock:
                self._outbox.append((self._emit_one, event))
            self.deliver()

    @property
    def pending(self) -> bool:
        return bool(self._outbox)

    def deliver(self) -> None:
        """Empty the outbox, one thread at a time; a thread that finds another delivering
        leaves its items to it (that thread looks again before it stops)."""
        outbox = self._outbox
        while outbox:
            if not self._delivering.acquire(blocking=False):
                return
            try:
                while True:
                    try:
                        deliver, item = outbox.popleft()
                    except IndexError:
                        break
                    deliver(item)
            finally:
                self._delivering.release()

    def _emit_one(self, event: Any) -> None:
        for subscriber in self._subscribers:
            try:
                subscriber(event)
            except Exception:  # a consumer's bug must not reach the caller of an order that went out
                log.exception("event subscriber failed on %r", event)

    def _notify_one(self, result: OrderResult) -> None:
        for listener in self._order_listeners:
            try:
                listener(result)
            except Exception:  # a listener's bug must not stop routing
                log.exception("order listener failed for %s", result.order_id)
