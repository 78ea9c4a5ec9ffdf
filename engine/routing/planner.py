"""Venue planning: which venues get an order, and how much each. Pure: no I/O.

Rules:

* A venue's price is fee- and health-adjusted: its taker fee plus a small
  penalty for measured latency (p95) and a poor fill ratio, in basis points
  of the quoted price (`_effective`). Venues rank by that price at their
  touch, best first; a venue whose far side is empty ranks last (not at all).
  Ties keep the order the venues were given in.
* `plan_split` sweeps the merged book across the ranked venues in order of
  effective price, taking displayed liquidity up to the limit price until
  the order is covered, so a large order splits. What the books cannot
  cover within the limit goes to the best-ranked venue (the allocation says
  how much is "beyond displayed liquidity"). A piece under its venue's
  minimum is folded into the biggest piece. Every allocation carries a
  one-line reason for the desk.
* `plan_touch` reads only each venue's best level. When the best-ranked
  venue's touch is within the limit and shows the whole order, the sweep
  would take its first item from that touch and stop there, so the plan is
  that one allocation: the same decision `plan_split` makes, from one level
  per venue instead of a merged book. Otherwise it says None and the caller
  reads the full books for `plan_split`. Most orders are smaller than a
  touch, so most never pay for the merge.
* `merge_books` sums the venues' levels by price. Its best `depth` levels
  need only each venue's best `depth` levels: a price among the merged best
  `depth` has fewer than `depth` better merged prices, so fewer than `depth`
  better prices at any one venue.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from ..market_data import BookLevel, BookSnapshot
from ..models import FeeSchedule, Instrument, Order, OrderSide

__all__ = [
    "Allocation",
    "MERGE_DEPTH",
    "VenueView",
    "merge_books",
    "plan_split",
    "plan_touch",
    "rank_venues",
]

LATENCY_PENALTY_BPS_PER_MS = 0.05  # 10 ms of p95 costs as much as half a basis point
FILL_RATIO_PENALTY_BPS = 2.0  # a venue that fills nothing costs 2 bps more
MERGE_DEPTH = 10  # levels per venue the full merge reads (the Venue interface's default)

_BUY = OrderSide.BUY


# Neither class is frozen: one of each is built per venue and per order on the hot
# path, where a frozen slots dataclass builds three to four times slower; nobody
# changes one once the planner has made it.
@dataclass(slots=True)
class VenueView:
    """What the planner knows of one eligible venue."""

    venue: str
    book: BookSnapshot
    fees: FeeSchedule
    instrument: Instrument
    latency_p95_ms: float = 0.0
    fill_ratio: float = 1.0

    def penalty_bps(self) -> float:
        return (
            self.latency_p95_ms * LATENCY_PENALTY_BPS_PER_MS
            + (1.0 - self.fill_ratio) * FILL_RATIO_PENALTY_BPS
        )


@dataclass(slots=True)
class Allocation:
    """One venue's share of an order. The reason is formatted only when read:
    building the sentence for every order cost more than choosing the venue."""

    venue: str
    lots: int
    quantity: float
    note: str = ""  # a fixed reason, when there is nothing to compute
    rank: int = 0
    effective: float = 0.0
    of_quantity: float = 0.0
    view: VenueView | None = None
    shown: float = 0.0
    beyond: float = 0.0

    @property
    def reason(self) -> str:
        view = self.view
        if view is None:
            return self.note
        text = (
            f"{self.venue} #{self.rank}: {self.quantity:g} of {self.of_quantity:g}, "
            f"fee-adjusted {self.effective:,.6g} (taker {view.fees.taker_bps:g} bps), "
            f"shows {self.shown:g}, p95 {view.latency_p95_ms:.1f} ms, fill ratio {view.fill_ratio:.0%}"
        )
        if self.beyond:
            text += f"; {self.beyond:g} beyond displayed liquidity"
        return text


def _effective(price: float, side: OrderSide, view: VenueView) -> float:
    """Fee- and health-adjusted price: what a unit really costs (buy) or yields (sell)."""
    bps = view.fees.taker_bps + view.penalty_bps()
    return price * (1 + side.sign * bps / 10_000)


def rank_venues(side: OrderSide, views: Iterable[VenueView]) -> list[tuple[float, VenueView]]:
    """Venues best first by fee-adjusted touch price; venues with an empty far side last."""
    ranked = []
    for view in views:
        levels = view.book.asks if side is OrderSide.BUY else view.book.bids
        if levels:
            ranked.append((_effective(levels[0].price, side, view), view))
    ranked.sort(key=lambda item: side.sign * item[0])
    return ranked


def _first(item: tuple[float, BookLevel, VenueView]) -> float:
    return item[0]


def _off_lot(order: Order, views: list[VenueView]) -> list[Allocation]:
    # Off the lot: let the venue say so with its own reason.
    return [Allocation(views[0].venue, 0, order.quantity, note="sent as is: quantity is not on the lot")]


def _no_liquidity(order: Order, views: list[VenueView], total: int) -> list[Allocation]:
    best = views[0]
    return [Allocation(best.venue, total, order.quantity,
                       note=f"{best.venue}: no venue shows liquidity; sent to the first eligible")]


def plan_touch(order: Order, views: list[VenueView], *, split: bool = True) -> list[Allocation] | None:
    """`plan_split`'s plan read from each venue's best level alone, or None when the
    best-ranked touch does not cover the order within its limit (see module docstring).
    Only the first level of each book is read; `split` cannot change a plan the touch
    covers, and is taken so the two planners are called alike."""
    if not views:
        return []
    total = views[0].instrument.quantity_to_lots(order.quantity)
    if total is None or total <= 0:
        return _off_lot(order, views)
    side = order.side
    buying = side is _BUY
    sign = 1 if buying else -1
    best: VenueView | None = None
    best_key = best_eff = 0.0
    touch: BookLevel | None = None
    for view in views:
        levels = view.book.asks if buying else view.book.bids
        if not levels:
            continue
        eff = _effective(levels[0].price, side, view)
        key = sign * eff
        # Strictly better only: on a tie the venue given first ranks first, as the
        # stable sort in `rank_venues` and the merge's tie order both have it.
        if best is None or key < best_key:
            best, best_key, best_eff, touch = view, key, eff, levels[0]
    if best is None or touch is None:
        return _no_liquidity(order, views, total)
    limit = order.price
    if limit is not None and sign * (touch.price - limit) > 0:
        return None  # the best touch is beyond the limit: the sweep may look elsewhere
    inst = best.instrument
    shown = inst.quantity_to_lots(touch.quantity) or 0
    if shown < total:
        return None
    return [Allocation(
        best.venue, total, inst.lots_to_quantity(total), rank=1, effective=best_eff,
        of_quantity=order.quantity, view=best, shown=inst.lots_to_quantity(shown),
    )]


def plan_split(order: Order, views: list[VenueView], *, split: bool = True) -> list[Allocation]:
    """Allocate the order across venues by sweeping the merged book (see module docstring)."""
    if not views:
        return []
    side = order.side
    inst = views[0].instrument
    total = inst.quantity_to_lots(order.quantity)
    if total is None or total <= 0:
        return _off_lot(order, views)
    ranked = rank_venues(side, views)
    if not ranked:
        return _no_liquidity(order, views, total)
    limit = order.price
    sign = side.sign
    buying = side is OrderSide.BUY

    def priced(view: VenueView) -> Iterator[tuple[float, BookLevel, VenueView]]:
        # A venue's levels are best first and its fee factor is constant, so its
        # effective prices come out already sorted: merge the venues lazily and
        # stop as soon as the order is covered (most orders need one level).
        factor = 1 + sign * (view.fees.taker_bps + view.penalty_bps()) / 10_000
        for level in view.book.asks if buying else view.book.bids:
            if limit is not None and sign * (level.price - limit) > 0:
                return
            yield sign * level.price * factor, level, view

    streams = [priced(view) for _, view in (ranked if split else ranked[:1])]
    taken: dict[str, int] = {}
    shown: dict[str, int] = {}
    left = total
    for _, level, view in heapq.merge(*streams, key=_first):
        lots = view.instrument.quantity_to_lots(level.quantity) or 0
        take = min(lots, left)
        if take > 0:
            taken[view.venue] = taken.get(view.venue, 0) + take
            left -= take
        shown[view.venue] = shown.get(view.venue, 0) + lots
        if left <= 0:
            break
    best_view = ranked[0][1]
    if left > 0:
        taken[best_view.venue] = taken.get(best_view.venue, 0) + left
    # A child under the venue's minimum would be refused: fold it into the biggest.
    by_venue = {v.venue: v for _, v in ranked}
    for venue in list(taken):
        if len(taken) > 1 and taken[venue] < by_venue[venue].instrument.min_lots:
            lots = taken.pop(venue)
            biggest = max(taken, key=taken.__getitem__)
            taken[biggest] += lots
    allocations = []
    touch_rank = {v.venue: (i + 1, eff) for i, (eff, v) in enumerate(ranked)}
    for venue, lots in sorted(taken.items(), key=lambda kv: touch_rank[kv[0]][0]):
        view = by_venue[venue]
        rank, eff = touch_rank[venue]
        inst = view.instrument
        beyond = inst.lots_to_quantity(left) if venue == best_view.venue and left > 0 else 0.0
        allocations.append(Allocation(
            venue, lots, inst.lots_to_quantity(lots), rank=rank, effective=eff,
            of_quantity=order.quantity, view=view, shown=inst.lots_to_quantity(shown.get(venue, 0)),
            beyond=beyond,
        ))
    return allocations


def merge_books(symbol: str, books: Iterable[BookSnapshot], depth: int, ts_event: float) -> BookSnapshot:
    """The books' levels summed by price, best `depth` per side, as venue "merged"."""
    bids: dict[float, float] = {}
    asks: dict[float, float] = {}
    for book in books:
        for level in book.bids:
            bids[level.price] = bids.get(level.price, 0.0) + level.quantity
        for level in book.asks:
            asks[level.price] = asks.get(level.price, 0.0) + level.quantity
    return BookSnapshot(
        "merged",
        symbol,
        tuple(BookLevel(p, q) for p, q in sorted(bids.items(), reverse=True)[:depth]),
        tuple(BookLevel(p, q) for p, q in sorted(asks.items())[:depth]),
        ts_event,
    )
