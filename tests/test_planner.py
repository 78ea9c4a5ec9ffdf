"""The venue planner, pure: the touch-first plan is the full merge's plan whenever
the best touch covers the order, and says "read the books" otherwise; a merged
book's best levels need only each venue's best levels.
"""

from __future__ import annotations

from decimal import Decimal

from hypothesis import event, given
from hypothesis import strategies as st

from engine import BookLevel, BookSnapshot, FeeSchedule, Instrument, Order, OrderSide
from engine.routing.planner import (
    MERGE_DEPTH,
    Allocation,
    VenueView,
    merge_books,
    plan_split,
    plan_touch,
    rank_venues,
)

SYMBOL = "BTC/USD"
TICK = Decimal("0.01")
# Lots differ across venues, and some minimums are several lots, so the minimum-size
# fold and mixed lots both come up.
INSTRUMENTS = (
    Instrument(SYMBOL, TICK, Decimal("0.001"), Decimal("0.001")),
    Instrument(SYMBOL, TICK, Decimal("0.01"), Decimal("0.05")),
    Instrument(SYMBOL, TICK, Decimal("0.001"), Decimal("0.5")),
)
INST = INSTRUMENTS[0]


def book(name: str, asks: list[tuple[float, float]], bids: list[tuple[float, float]] = ()) -> BookSnapshot:
    return BookSnapshot(name, SYMBOL, tuple(BookLevel(p, q) for p, q in bids),
                        tuple(BookLevel(p, q) for p, q in asks), 0.0)


def view(name: str, asks: list[tuple[float, float]], taker_bps: float = 0.0, *,
         bids: list[tuple[float, float]] = (), inst: Instrument = INST, p95_ms: float = 0.0,
         fill_ratio: float = 1.0) -> VenueView:
    return VenueView(name, book(name, asks, bids), FeeSchedule(0.0, taker_bps), inst, p95_ms, fill_ratio)


def touch_only(v: VenueView) -> VenueView:
    """The view a depth-1 read gives: each side's best level only."""
    b = v.book
    return VenueView(v.venue, BookSnapshot(b.venue, b.symbol, b.bids[:1], b.asks[:1], b.ts_event),
                     v.fees, v.instrument, v.latency_p95_ms, v.fill_ratio)


def decision(allocations: list[Allocation]) -> list[tuple[object, ...]]:
    """Everything an allocation decides and says, but the book it was read from."""
    return [(a.venue, a.lots, a.quantity, a.note, a.rank, a.effective, a.of_quantity, a.shown,
             a.beyond, a.view.venue if a.view is not None else None, a.reason) for a in allocations]


def order(side: str, qty: float, price: float | None = None) -> Order:
    return Order(id="p", symbol=SYMBOL, side=side, type="LIMIT" if price else "MARKET",
                 quantity=qty, price=price)


# -- examples ------------------------------------------------------------------------------------


def test_a_touch_that_covers_the_order_is_the_plan_with_the_full_merges_reason() -> None:
    # a: 5 bps fee + 0.6 for 12 ms of p95 + 1.0 for half its orders unfilled = 100.066.
    a = view("a", [(100.00, 1.0), (100.01, 5.0)], taker_bps=5.0, p95_ms=12.0, fill_ratio=0.5)
    b = view("b", [(100.10, 2.0)])
    small = order("BUY", 0.4)
    [alloc] = plan_touch(small, [touch_only(a), touch_only(b)])
    assert alloc.reason == (
        "a #1: 0.4 of 0.4, fee-adjusted 100.066 (taker 5 bps), shows 1, p95 12.0 ms, fill ratio 50%"
    )
    assert decision([alloc]) == decision(plan_split(small, [a, b]))


def test_an_order_larger_than_the_best_touch_needs_the_books() -> None:
    a = view("a", [(100.00, 1.0), (100.01, 5.0)])
    b = view("b", [(100.02, 2.0)])
    touches = [touch_only(a), touch_only(b)]
    assert plan_touch(order("BUY", 1.5), touches) is None
    # The touch's size exactly is covered; one lot more is not.
    assert [x.quantity for x in plan_touch(order("BUY", 1.0), touches)] == [1.0]
    assert plan_touch(order("BUY", 1.001), touches) is None
    # A bigger touch elsewhere does not help: the sweep starts at the best-ranked one.
    assert plan_touch(order("BUY", 1.5), [touch_only(a), touch_only(view("c", [(100.05, 9.0)]))]) is None


def test_a_best_touch_beyond_the_limit_needs_the_books_where_a_worse_ranked_venue_fills() -> None:
    # a quotes 100.00 but costs 100.10 with its fee; b quotes 100.05 at no fee and ranks
    # first, yet a limit of 100.02 excludes b's touch: the sweep fills at a, ranked second.
    a = view("a", [(100.00, 5.0)], taker_bps=10.0)
    b = view("b", [(100.05, 5.0)])
    limited = order("BUY", 1.0, price=100.02)
    assert plan_touch(limited, [touch_only(a), touch_only(b)]) is None
    [alloc] = plan_split(limited, [a, b])
    assert (alloc.venue, alloc.rank, alloc.quantity) == ("a", 2, 1.0)


def test_on_a_tie_the_venue_given_first_wins_as_in_the_sweep() -> None:
    first = view("first", [(100.00, 1.0)], taker_bps=2.0)
    second = view("second", [(100.00, 1.0)], taker_bps=2.0)
    for views in ([first, second], [second, first]):
        [alloc] = plan_touch(order("BUY", 0.5), [touch_only(v) for v in views])
        assert alloc.venue == views[0].venue
        assert decision([alloc]) == decision(plan_split(order("BUY", 0.5), views))


def test_the_sell_side_ranks_bids_and_a_limit_at_the_touch_is_within_it() -> None:
    a = view("a", [], bids=[(100.00, 1.0)], taker_bps=10.0)  # yields 99.90
    b = view("b", [], bids=[(99.95, 1.0)])                   # yields 99.95
    sell = order("SELL", 1.0, price=99.95)
    [alloc] = plan_touch(sell, [touch_only(a), touch_only(b)])
    assert (alloc.venue, alloc.rank, alloc.quantity) == ("b", 1, 1.0)


def test_what_needs_no_book_is_decided_as_the_full_merge_decides_it() -> None:
    assert plan_touch(order("BUY", 1.0), []) == []
    off_lot = plan_touch(order("BUY", 0.0005), [view("a", [(100.0, 1.0)])])
    assert [a.reason for a in off_lot] == ["sent as is: quantity is not on the lot"]
    empty = plan_touch(order("SELL", 1.0), [view("a", [(100.0, 1.0)]), view("b", [(100.1, 1.0)])])
    assert [a.reason for a in empty] == ["a: no venue shows liquidity; sent to the first eligible"]


# -- the property ------------------------------------------------------------------------------


@st.composite
def venue_views(draw: st.DrawFn) -> list[VenueView]:
    views = []
    for i in range(draw(st.integers(1, 4))):
        inst = draw(st.sampled_from(INSTRUMENTS))

        def side(start: int, step: int) -> list[tuple[float, float]]:
            levels, ticks = [], start
            for _ in range(draw(st.integers(0, 5))):
                # Quantities in thousandths: off a 0.01 lot now and then, which shows no lots.
                levels.append((round(ticks * 0.01, 2), draw(st.integers(1, 3_000)) / 1_000))
                ticks += step * draw(st.integers(1, 3))
            return levels

        asks = side(draw(st.integers(10_000, 10_012)), 1)
        bids = side(draw(st.integers(9_988, 10_000)), -1)
        views.append(VenueView(
            f"v{i}", book(f"v{i}", asks, bids),
            FeeSchedule(0.0, draw(st.sampled_from([-1.0, 0.0, 1.0, 2.5, 5.0, 30.0]))), inst,
            draw(st.one_of(st.sampled_from([0.0, 10.0, 50.0]), st.floats(0.0, 2_000.0))),
            draw(st.one_of(st.sampled_from([1.0, 0.5, 0.0]), st.floats(0.0, 1.0))),
        ))
    return views


@st.composite
def orders(draw: st.DrawFn, views: list[VenueView]) -> Order:
    """Small orders (mostly covered by a touch), large ones (mostly not), and orders at the
    edges of the rule: one lot either side of the best touch's size, one tick either side
    of its price."""
    side = draw(st.sampled_from(["BUY", "SELL"]))
    ranked = rank_venues(OrderSide(side), views)
    touch = None
    if ranked:
        best = ranked[0][1]
        touch = (best.book.asks if side == "BUY" else best.book.bids)[0]
    lot = float(views[0].instrument.lot_size)  # the lot the planner counts the order in
    edges = touch is not None and draw(st.booleans())
    if edges:
        qty = max(touch.quantity + draw(st.sampled_from([-lot, 0.0, lot])), lot)
    elif draw(st.integers(0, 3)):
        qty = draw(st.one_of(st.integers(1, 40), st.integers(1, 4_000))) * lot
    else:
        qty = draw(st.integers(1, 8_000)) / 1_000  # now and then off that lot
    if edges and draw(st.booleans()):
        price = touch.price + draw(st.sampled_from([-0.01, 0.0, 0.01]))
    else:
        price = draw(st.one_of(st.none(), st.integers(9_985, 10_020).map(lambda t: t * 0.01)))
    return order(side, round(qty, 3), round(price, 2) if price is not None else None)


def touch_covers(o: Order, views: list[VenueView]) -> bool:
    """The rule: the best-ranked venue's touch is within the limit and shows the whole order."""
    eff, best = rank_venues(o.side, views)[0]
    level = (best.book.asks if o.side is OrderSide.BUY else best.book.bids)[0]
    within = o.price is None or o.side.sign * (level.price - o.price) <= 0
    total = views[0].instrument.quantity_to_lots(o.quantity)
    return within and (best.instrument.quantity_to_lots(level.quantity) or 0) >= total


@given(st.data(), venue_views(), st.booleans())
def test_touch_first_is_the_full_plan_whenever_the_touch_covers(
    data: st.DataObject, views: list[VenueView], split: bool
) -> None:
    o = data.draw(orders(views))
    full = plan_split(o, views, split=split)
    first = plan_touch(o, [touch_only(v) for v in views], split=split)
    total = views[0].instrument.quantity_to_lots(o.quantity)
    needs_no_book = total is None or total <= 0 or not rank_venues(o.side, views)
    if needs_no_book or touch_covers(o, views):
        event("decided by the touch" if not needs_no_book else "decided without a book")
        assert first is not None
        assert decision(first) == decision(full)
    else:
        event("left to the full merge")
        assert first is None


@given(venue_views(), st.integers(1, MERGE_DEPTH))
def test_a_merged_books_best_levels_need_only_each_venues_best_levels(
    views: list[VenueView], depth: int
) -> None:
    books = [v.book for v in views]
    shallow = [BookSnapshot(b.venue, b.symbol, b.bids[:depth], b.asks[:depth], b.ts_event) for b in books]
    assert merge_books(SYMBOL, shallow, depth, 1.0) == merge_books(SYMBOL, books, depth, 1.0)
