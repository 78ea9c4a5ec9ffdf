"""The order book: price-time priority, conservation, never crossed.

Random order streams are run against the book and against a deliberately
naive reference (a list sorted on every match), and must agree fill for
fill; invariants are checked after every step.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.venues.book import BookError, OrderBook, Remainder
from engine.models import OrderSide

BUY, SELL = OrderSide.BUY, OrderSide.SELL
REST, EXPIRE, AON = Remainder.REST, Remainder.EXPIRE, Remainder.ALL_OR_NONE


# -- a naive reference book ----------------------------------------------------------
@dataclass
class _RefOrder:
    oid: int
    side: OrderSide
    price: int
    quantity: int
    filled: int
    leaves: int
    seq: int


class RefBook:
    """Price-time priority the slow, obvious way."""

    def __init__(self) -> None:
        self.orders: dict[int, _RefOrder] = {}
        self.seq = 0

    def _queue(self, side: OrderSide, price: int | None) -> list[_RefOrder]:
        opp = [o for o in self.orders.values() if o.side is not side]
        if side is BUY:
            opp = [o for o in opp if price is None or o.price <= price]
            return sorted(opp, key=lambda o: (o.price, o.seq))
        opp = [o for o in opp if price is None or o.price >= price]
        return sorted(opp, key=lambda o: (-o.price, o.seq))

    def _match(self, side: OrderSide, lots: int, price: int | None) -> tuple[list, int]:
        fills = []
        for o in self._queue(side, price):
            if not lots:
                break
            take = min(lots, o.leaves)
            o.leaves -= take
            o.filled += take
            lots -= take
            fills.append((o.oid, o.price, take))
            if not o.leaves:
                del self.orders[o.oid]
        return fills, lots

    def _rest(self, oid: int, side: OrderSide, price: int, quantity: int, filled: int) -> None:
        self.seq += 1
        self.orders[oid] = _RefOrder(oid, side, price, quantity, filled, quantity - filled, self.seq)

    def submit(self, oid, side, lots, price, remainder):
        if remainder is AON and sum(o.leaves for o in self._queue(side, price)) < lots:
            return [], 0, False, lots
        fills, left = self._match(side, lots, price)
        if left and price is not None and remainder is REST:
            self._rest(oid, side, price, lots, lots - left)
            return fills, lots - left, True, 0
        return fills, lots - left, False, left

    def cancel(self, oid: int) -> int:
        o = self.orders.pop(oid, None)
        return o.leaves if o else 0

    def amend(self, oid, quantity, price):
        o = self.orders.get(oid)
        if o is None:
            raise BookError("not resting")
        qty = o.quantity if quantity is None else quantity
        px = o.price if price is None else price
        if qty <= o.filled:
            raise BookError("not above filled")
        if px == o.price and qty <= o.quantity:
            o.leaves -= o.quantity - qty
            o.quantity = qty
            return [], 0, True
        del self.orders[oid]
        fills, left = self._match(o.side, qty - o.filled, px)
        if left:
            self._rest(oid, o.side, px, qty, qty - left)
        return fills, qty - o.filled - left, bool(left)

    def depth(self, side: OrderSide) -> list[tuple[int, int, int]]:
        levels: dict[int, list[int]] = {}
        for o in self.orders.values():
            if o.side is side:
                lv = levels.setdefault(o.price, [0, 0])
                lv[0] += o.leaves
                lv[1] += 1
        prices = sorted(levels, reverse=side is BUY)
        return [(p, levels[p][0], levels[p][1]) for p in prices]


# -- random streams ----------------------------------------------------------------------
sides = st.sampled_from([BUY, SELL])
prices = st.integers(95, 105)
sizes = st.integers(1, 12)
ops = st.one_of(
    st.tuples(st.just("limit"), sides, sizes, prices, st.sampled_from([REST, REST, REST, EXPIRE, AON])),
    st.tuples(st.just("market"), sides, sizes, st.sampled_from([EXPIRE, AON])),
    st.tuples(st.just("cancel"), st.integers(0, 10_000)),
    st.tuples(
        st.just("amend"),
        st.integers(0, 10_000),
        st.one_of(st.none(), st.integers(1, 16)),
        st.one_of(st.none(), prices),
    ),
)


class Ledger:
    """Per order: lots asked for, filled, canceled (incl. amended away), expired."""

    def __init__(self) -> None:
        self.asked: dict[int, int] = {}
        self.filled: dict[int, int] = {}
        self.canceled: dict[int, int] = {}
        self.expired: dict[int, int] = {}
        self.arrival: dict[int, int] = {}  # time priority of each resting order
        self.clock = 0

    def arrive(self, oid: int) -> None:
        self.clock += 1
        self.arrival[oid] = self.clock

    def add(self, table: dict[int, int], oid: int, lots: int) -> None:
        table[oid] = table.get(oid, 0) + lots


def _check_priority(ledger: Ledger, side: OrderSide, fills) -> None:
    """Better price first; at one price, earlier arrival first."""
    for (a_id, a_px, _), (b_id, b_px, _) in zip(fills, fills[1:]):
        if side is BUY:
            assert a_px <= b_px, f"bought {a_px} before the cheaper {b_px}"
        else:
            assert a_px >= b_px, f"sold {a_px} before the dearer {b_px}"
        if a_px == b_px:
            assert ledger.arrival[a_id] < ledger.arrival[b_id], "a later order filled first"


def _check_conservation(book: OrderBook, ledger: Ledger) -> None:
    for oid, asked in ledger.asked.items():
        o = book.get(oid)
        leaves = o.leaves if o is not None else 0
        filled = ledger.filled.get(oid, 0)
        assert filled <= asked - ledger.canceled.get(oid, 0), f"order {oid} filled past its size"
        assert filled + leaves + ledger.canceled.get(oid, 0) + ledger.expired.get(oid, 0) == asked, (
            f"order {oid}: quantity not conserved"
        )
        if o is not None:
            assert o.filled == filled and o.filled + o.leaves == o.quantity
    total = sum(ledger.asked.values())
    accounted = (
        sum(ledger.filled.values())
        + sum(o.leaves for o in book.orders())
        + sum(ledger.canceled.values())
        + sum(ledger.expired.values())
    )
    assert total == accounted


@settings(max_examples=150, deadline=None)
@given(st.lists(ops, min_size=1, max_size=80))
def test_random_streams_match_the_reference_and_keep_every_invariant(stream) -> None:
    book, ref, ledger = OrderBook("T"), RefBook(), Ledger()
    ids: list[int] = []
    for op in stream:
        kind = op[0]
        seen = {side: (book.version(side), book.depth(side, 100)) for side in (BUY, SELL)}
        if kind in ("limit", "market"):
            if kind == "limit":
                _, side, lots, price, remainder = op
            else:
                _, side, lots, remainder = op
                price = None
            oid = len(ids) + 1
            ids.append(oid)
            ledger.asked[oid] = lots
            ex = book.submit(oid, side, lots, price, remainder)
            want = ref.submit(oid, side, lots, price, remainder)
            got = ([(o.order_id, p, n) for o, p, n in ex.fills], ex.filled, ex.resting is not None, ex.expired)
            assert got == want
            _check_priority(ledger, side, got[0])
            assert ex.filled == sum(n for _, _, n in ex.fills)
            assert lots == ex.filled + ex.expired + (ex.resting.leaves if ex.resting else 0)
            if remainder is AON:
                assert ex.filled in (0, lots), "FOK filled partly"
            if remainder is EXPIRE or price is None:
                assert ex.resting is None
            if ex.resting is not None:
                ledger.arrive(oid)
            ledger.add(ledger.filled, oid, ex.filled)
            ledger.add(ledger.expired, oid, ex.expired)
            for maker, _, n in ex.fills:
                ledger.add(ledger.filled, maker.order_id, n)
        elif kind == "cancel" and ids:
            oid = ids[op[1] % len(ids)]
            got_lots = book.cancel(oid)
            assert got_lots == ref.cancel(oid)
            ledger.add(ledger.canceled, oid, got_lots)
            assert oid not in book
        elif kind == "amend" and ids:
            _, pick, qty, price = op
            oid = ids[pick % len(ids)]
            before = book.get(oid)
            try:
                want = ref.amend(oid, qty, price)
            except BookError:
                with pytest.raises(BookError):
                    book.amend(oid, qty, price)
                continue
            old_qty, old_price, side = before.quantity, before.price, before.side
            ex = book.amend(oid, qty, price)
            assert ([(o.order_id, p, n) for o, p, n in ex.fills], ex.filled, ex.resting is not None) == want
            _check_priority(ledger, side, [(o.order_id, p, n) for o, p, n in ex.fills])
            new_qty = old_qty if qty is None else qty
            if new_qty > old_qty:
                ledger.add(ledger.asked, oid, new_qty - old_qty)
            else:
                ledger.add(ledger.canceled, oid, old_qty - new_qty)
            keeps = (price is None or price == old_price) and new_qty <= old_qty
            assert (ex.resting is before) == keeps, "priority kept/lost wrongly"
            if ex.resting is not None and not keeps:
                ledger.arrive(oid)
            ledger.add(ledger.filled, oid, ex.filled)
            for maker, _, n in ex.fills:
                ledger.add(ledger.filled, maker.order_id, n)
        book.check()  # sorted levels, totals, counts and: never crossed
        for side, (version, depth) in seen.items():
            if book.depth(side, 100) != depth:
                assert book.version(side) != version, "a side changed without a new version"
        bid, ask = book.best_bid(), book.best_ask()
        assert bid is None or ask is None or bid < ask
        assert book.depth(BUY, 100) == ref.depth(BUY)
        assert book.depth(SELL, 100) == ref.depth(SELL)
        _check_conservation(book, ledger)


# -- the rules, one by one ---------------------------------------------------------------------
def _stocked() -> OrderBook:
    b = OrderBook("T")
    b.submit("a1", SELL, 5, 100)
    b.submit("a2", SELL, 3, 100)
    b.submit("a3", SELL, 4, 101)
    b.submit("a4", SELL, 10, 103)
    b.submit("b1", BUY, 6, 98)
    b.submit("b2", BUY, 6, 97)
    return b


def _fills(ex) -> list[tuple[str, int, int]]:
    return [(o.order_id, p, n) for o, p, n in ex.fills]


def test_market_order_walks_the_levels_with_partial_fills() -> None:
    b = _stocked()
    ex = b.submit(None, BUY, 10, None, EXPIRE)
    assert _fills(ex) == [("a1", 100, 5), ("a2", 100, 3), ("a3", 101, 2)]
    assert (ex.filled, ex.expired, ex.resting) == (10, 0, None)
    assert b.get("a3").leaves == 2 and b.best_ask() == 101
    assert "a1" not in b and "a2" not in b
    b.check()


def test_market_order_reports_what_it_could_not_fill_when_the_book_runs_dry() -> None:
    b = _stocked()
    ex = b.submit(None, BUY, 30, None, EXPIRE)
    assert ex.filled == 22 and ex.expired == 8 and ex.resting is None
    assert b.best_ask() is None and b.depth(SELL) == []
    ex = b.submit(None, BUY, 1, None, EXPIRE)
    assert (ex.filled, ex.expired) == (0, 1)


def test_crossing_limit_fills_at_resting_prices_and_rests_the_rest_uncrossed() -> None:
    b = _stocked()
    ex = b.submit("x", BUY, 15, 101, REST)
    assert _fills(ex) == [("a1", 100, 5), ("a2", 100, 3), ("a3", 101, 4)]
    assert ex.resting is not None and ex.resting.leaves == 3 and ex.resting.filled == 12
    assert b.best_bid() == 101 and b.best_ask() == 103
    b.check()


def test_ioc_remainder_expires_instead_of_resting() -> None:
    b = _stocked()
    ex = b.submit("x", BUY, 15, 100, EXPIRE)
    assert ex.filled == 8 and ex.expired == 7 and ex.resting is None
    assert "x" not in b and b.best_bid() == 98


def test_fok_fills_completely_or_leaves_the_book_untouched() -> None:
    b = _stocked()
    before = (b.depth(BUY), b.depth(SELL))
    ex = b.submit("x", BUY, 13, 101, AON)  # only 12 at 101 or better
    assert (ex.filled, ex.expired, ex.fills, ex.resting) == (0, 13, [], None)
    assert (b.depth(BUY), b.depth(SELL)) == before
    ex = b.submit("y", BUY, 12, 101, AON)
    assert ex.filled == 12 and ex.expired == 0
    ex = b.submit(None, SELL, 13, None, AON)  # market FOK: 12 on the bids
    assert ex.filled == 0 and ex.expired == 13


def test_cancel_takes_the_order_off_and_reports_its_open_lots() -> None:
    b = _stocked()
    b.submit(None, BUY, 2, None, EXPIRE)  # a1 has 3 left
    assert b.cancel("a1") == 3
    assert b.cancel("a1") == 0 and b.cancel("nope") == 0
    ex = b.submit(None, BUY, 1, None, EXPIRE)
    assert _fills(ex) == [("a2", 100, 1)]
    b.check()


def test_a_level_with_many_canceled_orders_compacts_itself() -> None:
    b = OrderBook()
    for i in range(200):
        b.submit(i, SELL, 1, 100)
    for i in range(150):
        b.cancel(i)
    b.check()
    assert b.entries_at(SELL, 100) < 100  # dead entries were dropped
    assert _fills(b.submit(None, BUY, 2, None, EXPIRE)) == [(150, 100, 1), (151, 100, 1)]


def test_amend_keeps_priority_only_when_shrinking_at_the_same_price() -> None:
    b = OrderBook()
    b.submit("first", SELL, 5, 100)
    b.submit("second", SELL, 5, 100)
    ex = b.amend("first", 4)  # shrink: keeps its place
    assert ex.resting is b.get("first")
    assert _fills(b.submit(None, BUY, 1, None, EXPIRE)) == [("first", 100, 1)]

    ex = b.amend("first", 6)  # grow: to the back
    assert _fills(b.submit(None, BUY, 1, None, EXPIRE)) == [("second", 100, 1)]

    b.amend("second", price=101)  # new price: new arrival there
    b.amend("second", price=100)  # and back: behind "first" now
    assert _fills(b.submit(None, BUY, 10, None, EXPIRE)) == [("first", 100, 5), ("second", 100, 4)]
    b.check()


def test_amend_to_a_crossing_price_matches_like_a_new_order() -> None:
    b = _stocked()
    ex = b.amend("b1", price=100)  # bid 6 at 98 -> 100 crosses 8 at 100
    assert _fills(ex) == [("a1", 100, 5), ("a2", 100, 1)]
    assert ex.resting is None and "b1" not in b
    ex = b.amend("b2", quantity=9, price=101)
    assert _fills(ex) == [("a2", 100, 2), ("a3", 101, 4)]
    assert ex.resting.leaves == 3 and ex.resting.filled == 6 and b.best_bid() == 101
    b.check()


def test_amend_refuses_a_quantity_not_above_what_filled() -> None:
    b = _stocked()
    b.submit(None, SELL, 4, None, EXPIRE)  # b1: 4 of 6 filled
    with pytest.raises(BookError, match="quantity 4 lots is not above the 4 lots already filled"):
        b.amend("b1", 4)
    assert b.get("b1").leaves == 2  # unchanged
    with pytest.raises(BookError, match="not resting"):
        b.amend("nope", 3)


def test_bad_requests_are_refused_with_the_value() -> None:
    b = _stocked()
    with pytest.raises(BookError, match="lots must be a whole number > 0, got 0"):
        b.submit("x", BUY, 0, 99)
    with pytest.raises(BookError, match="price must be a whole number of ticks > 0, got -1"):
        b.submit("x", BUY, 1, -1)
    with pytest.raises(BookError, match="already resting"):
        b.submit("b1", BUY, 1, 90)
    b.check()


def test_reading_the_book_best_first() -> None:
    b = _stocked()
    assert b.depth(BUY) == [(98, 6, 1), (97, 6, 1)]
    assert b.depth(SELL, 2) == [(100, 8, 2), (101, 4, 1)]
    assert b.volume(SELL) == 22 and len(b) == 6
    assert [o.order_id for o in b.orders(SELL)] == ["a1", "a2", "a3", "a4"]
    assert b.available(BUY, 100) == 8 and b.available(BUY) == 22


# -- prices of any size ------------------------------------------------------------------
@pytest.mark.parametrize("ticks", [2**62 + 1, 2**63, 10**20])
def test_market_orders_reach_asks_at_prices_past_64_bits(ticks: int) -> None:
    # 1e12 (the model's maximum price) at a 1e-8 tick is 1e20 ticks: still a price.
    book = OrderBook("X")
    book.submit("ask", SELL, 5, ticks, REST)
    ex = book.submit(None, BUY, 3, None, EXPIRE)
    assert ex.filled == 3
    assert [(price, lots) for _, price, lots in ex.fills] == [(ticks, 3)]
    assert book.available(BUY) == 2
    book.check()
