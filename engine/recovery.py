"""Recovery: what a restarted engine does with the orders its journal says were open.

`recover(engine)` runs once, in `Engine.start()`, when the engine keeps a journal.

Rules:

* The kill switch holds: a journal whose last halt was not followed by a resume
  halts the engine again before anything else.
* Positions are rebuilt from every fill in the journal, so they are right before any
  venue answers.
* Every open plain order and child is asked of its venue by client order id (a status
  query; FIX venues answer from their own state):
  - filled or ended while we were down: its fills are recorded (a venue that only
    totals them gives one fill for the difference, at the price that makes its
    average the venue's), positions follow;
  - unknown to the venue: REJECTED, "never received (confirmed by status query)"
    (the journal wrote it ahead, the send never reached the venue);
  - still working: tracked again (reports, cancel and amend reach it);
  - the venue cannot answer now: PENDING_NEW and asked again by `housekeeping`
    until it does (never marked never-sent while unknown).
  An order whose venue is an in-process simulator ended with the process that ran it:
  CANCELED, saying so. An order with no venue recorded (queued, perhaps routed just
  before the end) is asked of every network venue.
* Algorithm parents (ICEBERG, TWAP, VWAP, SMART) do not survive their process: their
  working children are canceled and the parent ends with what its children filled
  (`on_restart="stop"`, the default), or (`"resume"`) a new parent `<id>-r<N>` takes
  what is left over what is left of its window (not while a child its cancel did not
  reach still works: it stops, saying so), and the old one ends saying so (on
  disk before the new one is written: a kill between them never leaves both open). A
  resumed parent resumed again is `<id>-r<N+1>`: the chain is named from its first id.
  A plain order the smart router split is whole again when its pieces are settled: it
  ends with them (its `OrderUpdated`) or is followed until they end.
* What was done is a `RecoveryReport` (engine.recovery) and, when anything was open or
  halted, one `Recovered` event, which the desk shows.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .errors import ExecdeskError
from .events import Halted, OrderUpdated, Recovered
from .journal import JournaledOrder
from .models import Order, OrderResult, OrderStatus

if TYPE_CHECKING:
    from .engine import Engine

log = logging.getLogger("execdesk.recovery")

__all__ = ["RecoveryReport", "recover", "RESTART_POLICIES"]

RESTART_POLICIES = ("stop", "resume")


@dataclass
class RecoveryReport:
    """What a restart did with the orders the journal said were open (ids in each list)."""

    tracked: list[str] = field(default_factory=list)  # still working at their venue
    finished: list[str] = field(default_factory=list)  # ended while we were down (or just now)
    never_sent: list[str] = field(default_factory=list)  # unknown to their venue
    ended_with_process: list[str] = field(default_factory=list)  # at an in-process venue
    unresolved: list[str] = field(default_factory=list)  # the venue could not answer yet
    left_open: dict[str, str] = field(default_factory=dict)  # id -> why nothing could be done
    parents_stopped: list[str] = field(default_factory=list)
    parents_resumed: dict[str, str] = field(default_factory=dict)  # old id -> new id
    splits: list[str] = field(default_factory=list)
    fills_replayed: int = 0
    halted: str | None = None
    # The orders an operator placed (not children) this recovery dealt with, id -> type
    # ("LIMIT", "TWAP"...), resumed parents' new ids included: what a desk shows again.
    top_level: dict[str, str] = field(default_factory=dict)

    @property
    def orders(self) -> int:
        return (len(self.tracked) + len(self.finished) + len(self.never_sent) + len(self.ended_with_process)
                + len(self.unresolved) + len(self.left_open))

    def summary(self) -> str:
        if not (self.orders or self.parents_stopped or self.parents_resumed or self.halted):
            return f"nothing was open; positions from {self.fills_replayed} journaled fills"
        if self.orders:
            parts = [f"{self.orders} open order{'' if self.orders == 1 else 's'} from the journal: "
                     f"{len(self.tracked)} still working, {len(self.finished)} ended while down, "
                     f"{len(self.never_sent)} never reached their venue"]
        else:
            parts = ["no order was left open"]
        if self.ended_with_process:
            parts.append(f"{len(self.ended_with_process)} ended with the in-process venues")
        if self.unresolved:
            parts.append(f"{len(self.unresolved)} not answered yet (asked again)")
        if self.left_open:
            parts.append(f"{len(self.left_open)} left open ({next(iter(self.left_open.values()))})")
        if self.parents_stopped:
            parts.append(f"{len(self.parents_stopped)} algorithm parents stopped")
        if self.parents_resumed:
            parts.append(f"{len(self.parents_resumed)} resumed ("
                         + ", ".join(f"{a} as {b}" for a, b in list(self.parents_resumed.items())[:3]) + ")")
        if self.halted:
            parts.append(f"still HALTED ({self.halted}): r resumes")
        return "; ".join(parts)


def _outlives_us(venue: Any) -> bool:
    """A venue whose orders outlive our process: any but one that says it is in-process
    (the simulator). Asking a venue that knows nothing is safe; declaring a real
    exchange's orders ended is not."""
    return not getattr(venue, "in_process", False)


async def recover(engine: Engine, *, on_restart: str = "stop") -> RecoveryReport:
    if on_restart not in RESTART_POLICIES:
        raise ValueError(f"on_restart must be one of {RESTART_POLICIES}, got {on_restart!r}")
    journal = engine.journal
    report = RecoveryReport()
    if journal is None:
        return report
    store, router, clock = engine.store, engine.router, engine.clock

    halted = journal.halted()
    if halted is not None:
        report.halted = halted
        router.halt(halted)
        now = clock.now()
        store.publish(Halted(now, now, halted))  # as it was: the next restart reads it again

    fills = journal.fills()
    report.fills_replayed = engine.position_book.apply_all(fills)

    open_orders = journal.open_orders()
    by_cid = {j.client_order_id: j for j in open_orders}
    parents = [j for j in open_orders if j.order is not None and j.order.type.is_algorithm]
    children_of: dict[str, list[JournaledOrder]] = {}
    for j in open_orders:
        if j.order is not None and j.order.parent_id is not None:
            children_of.setdefault(j.order.parent_id, []).append(j)
    splits = [j for j in open_orders if j.order is not None and not j.order.type.is_algorithm
              and j.order.parent_id is None and (j.client_order_id in children_of or _has_pieces(journal, j))]
    split_ids = {j.client_order_id for j in splits}
    plain = [j for j in open_orders if j.order is not None and not j.order.type.is_algorithm
             and j.client_order_id not in split_ids]
    for j in open_orders:
        if j.order is None:
            report.left_open[j.order_id] = "the journal does not hold its terms"
        elif j.order.parent_id is None:
            report.top_level[j.order_id] = j.order.type.value

    # Each split is whole again in the store before its pieces are settled.
    for s in splits:
        _rebuild_split(engine, journal, s)
        report.splits.append(s.order_id)

    adopted: list[str] = []
    for j in plain:
        await _settle_or_adopt(engine, j, report, adopted)
    if adopted:
        await router.reconcile_pending_async()
    pending = set(router.unreconciled)
    for cid in adopted:
        result = store.result(cid)
        oid = by_cid[cid].order_id
        if cid in pending or result is None:
            report.unresolved.append(oid)
        elif result.status is OrderStatus.REJECTED:
            report.never_sent.append(oid)
        elif result.status.is_final:
            report.finished.append(oid)
        else:
            report.tracked.append(oid)

    for s in splits:
        engine.optimizer.settle_split(s.order_id)

    for p in parents:
        await _end_parent(engine, p, children_of.get(p.client_order_id, []), on_restart, report)

    summary = report.summary()
    if report.orders or report.parents_stopped or report.parents_resumed or report.halted:
        # Said when there was something to recover: a desk's first run says nothing.
        now = clock.now()
        store.publish(Recovered(now, now, summary, len(report.tracked), len(report.finished),
                                len(report.never_sent), len(report.unresolved)))
    log.info("recovery: %s", summary)
    await engine.journal_caught_up()  # status() of what recovery ended reads the journal
    return report


def _has_pieces(journal: Any, j: JournaledOrder) -> bool:
    return j.status is OrderStatus.PENDING_NEW and bool(journal.children(j.client_order_id))


def _known(engine: Engine, j: JournaledOrder) -> OrderResult:
    """What the journal knows of an order, as the router's record of it."""
    order = j.order
    assert order is not None
    journaled = engine.journal.status(j.client_order_id) if engine.journal is not None else None
    fills = list(journaled.fills) if journaled is not None else []
    filled = math.fsum(f.quantity for f in fills)
    average = math.fsum(f.price * f.quantity for f in fills) / filled if filled > 0 else None
    status = j.status if not j.status.is_final else OrderStatus.PENDING_NEW
    return OrderResult(j.client_order_id, j.venue, status, order.quantity, filled, average, fills,
                       None, order.symbol, order.side, order.price, engine.clock.now())


async def _settle_or_adopt(engine: Engine, j: JournaledOrder, report: RecoveryReport, adopted: list[str]) -> None:
    order = j.order
    assert order is not None
    router = engine.router
    venues = engine.venues
    cid = j.client_order_id
    if j.venue is not None and j.venue not in venues:
        report.left_open[j.order_id] = f"its venue {j.venue!r} is not configured now"
        return
    known = _known(engine, j)
    venue = j.venue
    if venue is None:
        # Queued, perhaps routed just before the end: asked of every network venue.
        venue = await _find_venue(engine, cid)
        if venue is None:
            if any(_outlives_us(v) for v in venues.values()):
                reason = "never sent: no venue knows it after the restart (confirmed by status query)"
                report.never_sent.append(j.order_id)
            else:
                reason = "ended with the previous process before it reached a venue"
                report.ended_with_process.append(j.order_id)
            router.refuse(order, None, reason)
            return
    if not _outlives_us(venues[venue]):
        if router.adopt(order, venue, known):
            engine.note_fills_applied(cid, len(known.fills))
            router.settle(order, venue, dataclasses.replace(
                known, status=OrderStatus.CANCELED,
                reason=f"ended with the previous process: {venue} is an in-process simulator"))
        report.ended_with_process.append(j.order_id)
        return
    if router.adopt(order, venue, known):
        engine.note_fills_applied(cid, len(known.fills))
        adopted.append(cid)


async def _find_venue(engine: Engine, cid: str) -> str | None:
    for name, venue in engine.venues.items():
        if not _outlives_us(venue):
            continue
        try:
            ask = getattr(venue, "status_async", None)
            await ask(cid) if ask is not None else venue.status(cid)
        except ExecdeskError:
            continue
        return name
    return None


def _rebuild_split(engine: Engine, journal: Any, j: JournaledOrder) -> None:
    """The split is recorded again with all its pieces; the final ones' results from the
    journal (the open ones are settled as plain orders)."""
    order = j.order
    assert order is not None
    pieces = journal.children(j.client_order_id)
    store = engine.store
    if store.take(order) is None:  # its id stays taken, as a routed order's
        store.routed(order.id)
    store.add_split(order, [p.client_order_id for p in pieces])
    for p in pieces:
        if p.status.is_final:
            result = journal.status(p.client_order_id)
            if result is not None:
                store.piece_answered(p.client_order_id, dataclasses.replace(result, order_id=p.client_order_id))


async def _end_parent(engine: Engine, parent: JournaledOrder, open_children: list[JournaledOrder],
                      on_restart: str, report: RecoveryReport) -> None:
    order = parent.order
    assert order is not None
    router, journal = engine.router, engine.journal
    assert journal is not None
    for child in open_children:
        result = engine.store.result(child.client_order_id)
        if result is not None and not result.status.is_final:
            await router.cancel_order_async(child.client_order_id)
    await engine.journal_caught_up()
    fills = journal.fills(parent.client_order_id)
    filled = math.fsum(f.quantity for f in fills)
    average = math.fsum(f.price * f.quantity for f in fills) / filled if filled > 0 else None
    left = order.quantity - filled
    inst = engine.smart.instrument(order.symbol)
    if inst is not None:  # whole lots (the float difference is not)
        left = inst.lots_to_quantity(inst.lots_at_most(left + 1e-12))
    done = left <= 1e-12
    resumed: Order | None = None
    why = ""
    # A child the cancel did not reach still works: a successor would trade its quantity
    # again when it fills.
    working = [c for c in open_children if (r := engine.store.result(c.client_order_id)) is not None
               and not r.status.is_final]
    if not done and on_restart == "resume" and working:
        why = (f"not resumed: its child {working[0].order_id!r} still works at {working[0].venue}, its cancel "
               "did not go through")
    elif not done and on_restart == "resume":
        resumed, why = _resumption(engine, order, left, parent.recorded_at)
    if done:
        status, detail = OrderStatus.FILLED, "filled before the restart"
    elif resumed is not None:
        status, detail = OrderStatus.CANCELED, f"resumed after a restart as {resumed.id} ({left:g} left)"
    else:
        status = OrderStatus.CANCELED
        detail = f"stopped at a restart: {filled:g} of {order.quantity:g} filled" + (f" ({why})" if why else "")
    now = engine.clock.now()
    engine.store.publish(OrderUpdated(now, now, parent.client_order_id, None, status, None, filled, order.quantity,
                                      average, detail))
    if resumed is not None and not await engine.journal_caught_up():
        # The old parent's end must be on disk before its successor is written ahead: a
        # kill between the two left both open, and the next restart resumed each.
        log.warning("resuming %s: the journal did not take its end in time; not resumed", parent.order_id)
        resumed = None
    if resumed is not None:
        try:
            await engine.submit(resumed)
            report.parents_resumed[parent.order_id] = resumed.id
            report.top_level[resumed.id] = resumed.type.value
            return
        except Exception as exc:  # refused (halted, id in use): it stays stopped, and says why
            log.warning("resuming %s as %s failed: %s", parent.order_id, resumed.id, exc)
    report.parents_stopped.append(parent.order_id)


def _first_of(engine: Engine, parent_id: str) -> tuple[str, int]:
    """The id a chain of resumptions is named from, and the next number to try: `X-rN`
    of a chain from `X` (the journal says `X` was resumed as an `X-r...`) is followed by
    `X-r(N+1)`, not `X-rN-r1`; an id that only looks like one is its own first."""
    match = re.fullmatch(r"(.+)-r(\d+)", parent_id)
    if match is not None:
        first = engine.order_status_or_none(match[1])
        if first is not None and (first.reason or "").startswith(f"resumed after a restart as {match[1]}-r"):
            return match[1], int(match[2]) + 1
    return parent_id, 1


def _resumption(engine: Engine, order: Order, left: float, recorded_at: float | None) -> tuple[Order | None, str]:
    """The order that takes over what is left of `order`, or None and why not."""
    meta = dict(order.metadata)
    now = engine.clock.now()
    duration = meta.get("duration_s")
    if duration is not None and recorded_at is not None:
        remaining = float(duration) - (now - recorded_at)
        if remaining <= 1.0:
            return None, "its window has passed"
        meta["duration_s"] = remaining
        if "slices" in meta:  # as many of them as the rest of the window held
            meta["slices"] = max(1, round(int(meta["slices"]) * remaining / float(duration)))
    end = meta.get("end_time")
    if end is not None and float(end) <= now:
        return None, "its window has passed"
    base, n = _first_of(engine, order.id)
    while engine.order_status_or_none(f"{base}-r{n}") is not None:
        n += 1
    fields = order.model_dump() if hasattr(order, "model_dump") else {}
    fields.update(id=f"{base}-r{n}", quantity=left, metadata=meta, client_order_id=None)
    try:
        return Order(**fields), ""
    except ValueError as exc:
        return None, f"what is left cannot be an order: {exc}"
