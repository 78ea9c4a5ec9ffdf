"""SmartOrderRouter: fee-adjusted ranking, splitting across venues, skipping
venues that cannot trade, and a routing reason for every decision.

`plan_split` is pure, so most of its rules are tested on hand-made books;
the rest runs against real simulated venues in virtual time.
"""

from __future__ import annotations

from collections import Counter
from decimal import Decimal
from typing import Any

import pytest

from engine import (
    BookLevel,
    BookSnapshot,
    BreakerConfig,
    BreakerState,
    ExecutionOptimizer,
    FeeSchedule,
    Instrument,
    MarketConfig,
    Order,
    OrderRouter,
    OrderStatus,
    SimulatedExchange,
    SmartOrderRouter,
    VirtualClock,
)
from engine.routing.smart import VenueView, plan_split, rank_venues

SYMBOL = "BTC/USD"
INST = Instrument(SYMBOL, Decimal("0.01"), Decimal("0.001"), Decimal("0.001"))


def view(name: str, asks: list[tuple[float, float]], taker_bps: float = 0.0, *,
         bids: list[tuple[float, float]] = (), inst: Instrument = INST, p95_ms: float = 0.0,
         fill_ratio: float = 1.0) -> VenueView:
    book = BookSnapshot(name, SYMBOL, tuple(BookLevel(p, q) for p, q in bids),
                        tuple(BookLevel(p, q) for p, q in asks), 0.0)
    return VenueView(name, book, FeeSchedule(0.0, taker_bps), inst, p95_ms, fill_ratio)


def buy(qty: float, price: float | None = None) -> Order:
    return Order(id="p", symbol=SYMBOL, side="BUY", type="LIMIT" if price else "MARKET",
                 quantity=qty, price=price)


def alloc(allocations) -> dict[str, float]:
    return {a.venue: a.quantity for a in allocations}


# -- plan_split, pure ----------------------------------------------------------------------


def test_fees_decide_the_rank_not_the_quoted_price() -> None:
    # 100.00 with 10 bps costs 100.10; 100.05 with no fee costs 100.05.
    dear = view("dear", [(100.00, 1.0)], taker_bps=10.0)
    cheap = view("cheap", [(100.05, 1.0)], taker_bps=0.0)
    assert [v.venue for _, v in rank_venues(buy(1).side, [dear, cheap])] == ["cheap", "dear"]
    assert alloc(plan_split(buy(0.5), [dear, cheap])) == {"cheap": 0.5}


def test_a_large_order_sweeps_the_merged_book_by_effective_price() -> None:
    a = view("a", [(100.00, 1.0), (100.20, 5.0)], taker_bps=5.0)    # eff 100.05, 100.25
    b = view("b", [(100.08, 2.0), (100.12, 2.0)], taker_bps=0.0)    # eff 100.08, 100.12
    plan = plan_split(buy(4.5), [a, b])
    # a's 1.0 at 100.05, b's 2.0 at 100.08, b's 1.5 of 2.0 at 100.12; a's 100.25 untouched.
    assert alloc(plan) == {"a": 1.0, "b": 3.5}
    assert all(p.reason for p in plan)
    # The best touch comes first, and the reason says where it ranks and why.
    assert plan[0].venue == "a" and plan[0].reason.startswith("a #1: 1 of 4.5")
    assert "taker 5 bps" in plan[0].reason


def test_sell_side_ranks_bids_net_of_fees() -> None:
    a = view("a", [], bids=[(100.00, 1.0)], taker_bps=10.0)  # yields 99.90
    b = view("b", [], bids=[(99.95, 1.0)], taker_bps=0.0)    # yields 99.95
    sell = Order(id="s", symbol=SYMBOL, side="SELL", type="MARKET", quantity=1.5)
    assert alloc(plan_split(sell, [a, b])) == {"b": 1.0, "a": 0.5}


def test_a_limit_price_is_respected_and_the_rest_goes_to_the_best_venue() -> None:
    a = view("a", [(100.00, 1.0), (100.10, 5.0)])
    b = view("b", [(100.02, 1.0), (100.03, 5.0)], taker_bps=1.0)
    plan = plan_split(buy(4.0, price=100.02), [a, b])
    # Levels above 100.02 are not counted; a (the best) rests the remainder at the limit.
    assert alloc(plan) == {"a": 3.0, "b": 1.0}
    [best] = [p for p in plan if p.venue == "a"]
    assert "2 beyond displayed liquidity" in best.reason


def test_a_market_order_beyond_all_displayed_liquidity_sends_the_rest_to_the_best() -> None:
    a = view("a", [(100.0, 1.0)])
    b = view("b", [(100.5, 1.0)])
    plan = plan_split(buy(5.0), [b, a])
    assert alloc(plan) == {"a": 4.0, "b": 1.0}


def test_a_piece_under_the_venue_minimum_is_folded_into_the_biggest() -> None:
    big_min = Instrument(SYMBOL, Decimal("0.01"), Decimal("0.001"), Decimal("0.5"))
    a = view("a", [(100.00, 2.0)], inst=big_min)
    b = view("b", [(100.01, 0.2), (100.02, 10.0)], inst=big_min)
    # a takes 2.0, b would get 0.3 (under its 0.5 minimum): folded into a.
    plan = plan_split(buy(2.3), [a, b])
    assert alloc(plan) == {"a": 2.3}


def test_latency_and_fill_ratio_cost_a_little() -> None:
    fast = view("fast", [(100.00, 1.0)])
    slow = view("slow", [(100.00, 1.0)], p95_ms=100.0)       # 5 bps
    flaky = view("flaky", [(100.00, 1.0)], fill_ratio=0.0)   # 2 bps
    assert [v.venue for _, v in rank_venues(buy(1).side, [slow, flaky, fast])] == ["fast", "flaky", "slow"]


def test_no_split_keeps_the_order_whole_at_the_best_venue() -> None:
    a = view("a", [(100.00, 1.0)])
    b = view("b", [(100.01, 5.0)])
    assert alloc(plan_split(buy(3.0), [a, b], split=False)) == {"a": 3.0}


# -- against simulated venues ------------------------------------------------------------------


def _venues(clock: VirtualClock) -> tuple[OrderRouter, SmartOrderRouter, dict[str, SimulatedExchange]]:
    # Same market seed: same prices. "thin" is cheap and shallow, "deep" dearer and deep.
    venues = {
        "thin": SimulatedExchange("thin", clock=clock, seed=1, fees=FeeSchedule(0.0, 1.0),
                                  market=MarketConfig(level_notional=20_000.0)),
        "deep": SimulatedExchange("deep", clock=clock, seed=1, fees=FeeSchedule(0.0, 3.0),
                                  market=MarketConfig(level_notional=200_000.0)),
        "other": SimulatedExchange("other", clock=clock, seed=1, fees=FeeSchedule(0.0, 50.0)),
    }
    router = OrderRouter(clock=clock, breaker_config=BreakerConfig(minimum_calls=5))
    for name, venue in venues.items():
        router.register_exchange(name, venue)
    return router, SmartOrderRouter(order_router=router), venues


def _eff(price: float, venue: SimulatedExchange) -> float:
    return price * (1 + venue.fees.taker_bps / 10_000)


def test_a_large_market_order_splits_by_fee_adjusted_price(virtual_clock: VirtualClock) -> None:
    router, smart, venues = _venues(virtual_clock)
    before = {name: v.book(SYMBOL) for name, v in venues.items()}
    order = Order(id="big", symbol=SYMBOL, side="BUY", type="MARKET", quantity=3.0)
    results = smart.route_order(order)

    assert {r.exchange_id for r in results} == {"thin", "deep"}
    assert all(r.status is OrderStatus.FILLED for r in results)
    assert sum(r.filled_quantity for r in results) == pytest.approx(3.0)
    by_venue = {r.exchange_id: r for r in results}
    # thin's levels at (fee-adjusted) or below deep's touch, then deep for the rest.
    deep_touch = _eff(before["deep"].asks[0].price, venues["deep"])
    thin_share = sum(lv.quantity for lv in before["thin"].asks
                     if _eff(lv.price, venues["thin"]) <= deep_touch)
    assert 0 < thin_share < 3.0
    assert by_venue["thin"].quantity == pytest.approx(thin_share)
    assert by_venue["deep"].quantity == pytest.approx(3.0 - thin_share)
    # Every unit bought cost no more, fees included, than any unit left on any book.
    paid = max(_eff(f.price, venues[r.exchange_id]) for r in results for f in r.fills)
    left = min(_eff(v.book(SYMBOL).asks[0].price, v) for v in venues.values())
    assert paid <= left + 1e-9
    for r in results:
        assert r.order_id.startswith("big.") and r.order_id != "big"
        reason = smart.routing_reason(r.order_id)
        assert reason.startswith(f"{r.exchange_id} #")
        assert "fee-adjusted" in reason
        for fill in r.fills:
            assert fill.fee == pytest.approx(fill.notional * venues[r.exchange_id].fees.taker_bps / 1e4)


def test_a_small_order_goes_whole_to_the_best_venue_with_its_reason(virtual_clock: VirtualClock) -> None:
    _, smart, venues = _venues(virtual_clock)
    [result] = smart.route_order(Order(id="small", symbol=SYMBOL, side="BUY", type="MARKET",
                                       quantity=0.1))
    assert result.order_id == "small" and result.exchange_id == "thin"
    assert result.status is OrderStatus.FILLED
    assert smart.routing_reason("small").startswith("thin #1: 0.1 of 0.1")


class _CountsBookReads:
    """A simulated venue that counts its book reads by depth."""

    def __init__(self, inner: SimulatedExchange) -> None:
        self.inner, self.name, self.fees = inner, inner.name, inner.fees
        self.reads: Counter[int] = Counter()

    def book(self, symbol: str, depth: int = 10) -> BookSnapshot:
        self.reads[depth] += 1
        return self.inner.book(symbol, depth)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def _counted_venues(clock: VirtualClock) -> tuple[SmartOrderRouter, dict[str, _CountsBookReads]]:
    router, _, venues = _venues(clock)
    counted = {name: _CountsBookReads(venue) for name, venue in venues.items()}
    plain = OrderRouter(clock=clock)
    for name, venue in counted.items():
        plain.register_exchange(name, venue)
    return SmartOrderRouter(order_router=plain), counted


def _reads(venues: dict[str, _CountsBookReads]) -> dict[str, dict[int, int]]:
    out = {name: dict(v.reads) for name, v in venues.items()}
    for v in venues.values():
        v.reads.clear()
    return out


def test_an_order_the_best_touch_covers_reads_only_each_venues_touch(virtual_clock: VirtualClock) -> None:
    smart, venues = _counted_venues(virtual_clock)
    order = Order(id="small", symbol=SYMBOL, side="BUY", type="MARKET", quantity=0.1)
    full, _ = smart.venue_views(SYMBOL)
    [expected] = plan_split(order, full)
    _reads(venues)
    [(child, venue, allocation)] = smart.plan(order)
    assert _reads(venues) == {"thin": {1: 1}, "deep": {1: 1}, "other": {1: 1}}
    # The same decision, and the same words, as the sweep of the full books.
    assert (child, venue) == (order, "thin")
    assert allocation.reason == expected.reason
    assert allocation.reason.startswith("thin #1: 0.1 of 0.1, fee-adjusted ")


def test_an_order_no_touch_covers_reads_the_full_books_and_is_swept(virtual_clock: VirtualClock) -> None:
    smart, venues = _counted_venues(virtual_clock)
    order = Order(id="big", symbol=SYMBOL, side="BUY", type="MARKET", quantity=3.0)
    full, _ = smart.venue_views(SYMBOL)
    expected = plan_split(order, full)
    _reads(venues)
    pieces = smart.plan(order)
    assert _reads(venues) == {name: {1: 1, 10: 1} for name in venues}
    assert [(venue, a.quantity, a.reason) for _, venue, a in pieces] == [
        (a.venue, a.quantity, a.reason) for a in expected
    ]
    assert [venue for _, venue, _ in pieces] == ["thin", "deep"]


def test_a_merged_touch_reads_only_the_venues_touches(virtual_clock: VirtualClock) -> None:
    smart, venues = _counted_venues(virtual_clock)
    deep = smart.merged_book(SYMBOL)
    _reads(venues)
    touch = smart.merged_book(SYMBOL, depth=1)
    assert _reads(venues) == {name: {1: 1} for name in venues}
    assert (touch.bids, touch.asks) == (deep.bids[:1], deep.asks[:1])
    # Three venues on one market seed quote the same touch: its sizes are summed.
    assert touch.asks[0].quantity == pytest.approx(
        sum(v.book(SYMBOL, 1).asks[0].quantity for v in venues.values())
    )


def test_disabled_and_open_breaker_venues_are_skipped(virtual_clock: VirtualClock) -> None:
    router, smart, venues = _venues(virtual_clock)
    router.disable_exchange("thin", "maintenance")
    router.breaker("deep").force_open("testing")
    assert router.breaker("deep").state is BreakerState.OPEN
    views, skipped = smart.venue_views(SYMBOL)
    assert [v.venue for v in views] == ["other"]
    assert skipped == ["thin is disabled (maintenance)", "deep circuit breaker is OPEN"]
    results = smart.route_order(Order(id="x", symbol=SYMBOL, side="SELL", type="MARKET", quantity=2.0))
    assert {r.exchange_id for r in results} == {"other"}
    assert venues["thin"].counters.submitted == venues["deep"].counters.submitted == 0
    # Back in service: chosen again.
    router.enable_exchange("thin")
    router.breaker("deep").release_force()
    [again] = smart.route_order(Order(id="y", symbol=SYMBOL, side="SELL", type="MARKET", quantity=0.1))
    assert again.exchange_id == "thin"


def test_a_breaker_that_tripped_on_failures_is_skipped(virtual_clock: VirtualClock) -> None:
    router, smart, venues = _venues(virtual_clock)
    venues["thin"].start_outage(3600.0)
    for i in range(5):
        router.submit_order(Order(id=f"f{i}", symbol=SYMBOL, side="BUY", type="MARKET", quantity=0.01), "thin")
    assert router.breaker("thin").state is BreakerState.OPEN
    venues["thin"].end_outage()  # its book shows again, but the breaker still says no
    [result] = smart.route_order(Order(id="z", symbol=SYMBOL, side="BUY", type="MARKET", quantity=0.1))
    assert result.status is OrderStatus.FILLED and result.exchange_id == "deep"



def test_resubmitting_a_split_order_returns_its_children_without_new_venue_orders(
    virtual_clock: VirtualClock,
) -> None:
    _, smart, venues = _venues(virtual_clock)
    order = Order(id="twice", symbol=SYMBOL, side="BUY", type="MARKET", quantity=3.0)
    first = smart.route_order(order)
    assert len(first) == 2
    submitted = {name: v.counters.submitted for name, v in venues.items()}
    # The first pass moved the books: planned again, it would split differently.
    again = smart.route_order(order)
    assert [(r.order_id, r.exchange_id, r.status, r.filled_quantity) for r in again] == [
        (r.order_id, r.exchange_id, r.status, r.filled_quantity) for r in first
    ]
    assert {name: v.counters.submitted for name, v in venues.items()} == submitted
    [other] = smart.route_order(order.model_copy(update={"quantity": 2.0}))
    assert other.status is OrderStatus.REJECTED
    assert other.reason == "client order id 'twice' was already used for a different order"
    assert {name: v.counters.submitted for name, v in venues.items()} == submitted


def test_resubmitting_a_whole_order_never_splits_it_the_second_time(virtual_clock: VirtualClock) -> None:
    _, smart, venues = _venues(virtual_clock)
    # thin's two best levels beat deep's touch (fees included): the order goes whole to thin.
    size = sum(lv.quantity for lv in venues["thin"].book(SYMBOL).asks[:2])
    order = Order(id="once", symbol=SYMBOL, side="BUY", type="MARKET", quantity=size)
    [first] = smart.route_order(order)
    assert first.order_id == "once" and first.exchange_id == "thin"
    # Those levels are gone now, so a fresh plan would split this size across venues.
    assert len(smart.plan(order)) > 1
    assert smart.route_order(order) == [first]
    assert sum(v.counters.submitted for v in venues.values()) == 1


class _AdapterBug:
    """A venue adapter whose submit raises a plain RuntimeError: a bug, not a venue answer."""

    def __init__(self, inner: SimulatedExchange) -> None:
        self.inner, self.name, self.fees = inner, inner.name, inner.fees

    def submit(self, order: Order) -> Any:
        raise RuntimeError("adapter bug")

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def test_a_piece_that_fails_inside_the_engine_costs_that_piece_not_those_already_sent(
    virtual_clock: VirtualClock,
) -> None:
    thin = SimulatedExchange("thin", clock=virtual_clock, seed=1, fees=FeeSchedule(0.0, 1.0),
                             market=MarketConfig(level_notional=20_000.0))
    deep = SimulatedExchange("deep", clock=virtual_clock, seed=1, fees=FeeSchedule(0.0, 3.0),
                             market=MarketConfig(level_notional=200_000.0))
    router = OrderRouter(clock=virtual_clock)
    router.register_exchange("thin", thin)
    router.register_exchange("deep", _AdapterBug(deep))
    smart = SmartOrderRouter(order_router=router)
    optimizer = ExecutionOptimizer(order_router=smart)
    order = Order(id="half", symbol=SYMBOL, side="BUY", type="MARKET", quantity=3.0)
    assert [venue for _, venue, _ in smart.plan(order)] == ["thin", "deep"]  # thin's piece goes first

    result = optimizer.wait(optimizer.submit_order(order), timeout=30)
    sent, failed = result.children
    assert (sent.exchange_id, sent.status) == ("thin", OrderStatus.FILLED)
    assert thin.status(sent.order_id).status is OrderStatus.FILLED
    assert (failed.exchange_id, failed.status) == ("deep", OrderStatus.REJECTED)
    assert failed.reason == "internal error: RuntimeError('adapter bug')"
    assert deep.counters.submitted == 0
    # The order says what its venues did: thin's piece filled, the rest never went out.
    assert result.filled_quantity == pytest.approx(sent.filled_quantity) and result.filled_quantity > 0
    assert result.status is OrderStatus.CANCELED and "adapter bug" in result.reason
