"""The simulated exchange and the exchange clients.

Everything runs on a VirtualClock advanced by hand (or jumping when the
venue sleeps), so nothing here waits on wall time.
"""

from __future__ import annotations

import math
import random
import threading
from decimal import Decimal
from typing import Any

import pytest

from engine.clock import VirtualClock
from engine.errors import (
    ConfigurationError,
    PermanentVenueError,
    RateLimitedError,
    TransientVenueError,
    UnknownOrderError,
    UnknownOutcomeError,
    VenueUnavailableError,
)
from engine.venues.sim.config import (
    DEFAULT_FEES,
    VENUE_PRESETS,
    FaultConfig,
    LatencyModel,
    MarketConfig,
    UnknownSymbolError,
)
from engine.venues.clients import AsyncExchangeClient, ExchangeClient
from engine.venues.sim.exchange import SimulatedExchange
from engine.models import (
    Instrument,
    Liquidity,
    Order,
    OrderSide,
    OrderStatus,
    OrderType,
    TimeInForce,
)
from engine.venues.base import AsyncVenue, Venue
from engine.market_data import ExecutionReport, PublicTrade

START = 1_700_000_000.0  # 2023-11-14 22:13:20 UTC
BUY, SELL = OrderSide.BUY, OrderSide.SELL
NEW, PARTIAL, FILLED = OrderStatus.NEW, OrderStatus.PARTIALLY_FILLED, OrderStatus.FILLED
CANCELED, REJECTED, EXPIRED = OrderStatus.CANCELED, OrderStatus.REJECTED, OrderStatus.EXPIRED
# A market that only keeps its quotes: no random walk, no simulated takers.
STILL = MarketConfig(taker_rate_per_s=0.0, volatility_bps=0.0)


def market(oid: str, quantity: float, side: OrderSide = BUY, symbol: str = "BTC/USD", **kw: Any) -> Order:
    return Order(id=oid, symbol=symbol, side=side, type=OrderType.MARKET, quantity=quantity, **kw)


def limit(
    oid: str, quantity: float, price: float, side: OrderSide = BUY, symbol: str = "BTC/USD", **kw: Any
) -> Order:
    return Order(
        id=oid, symbol=symbol, side=side, type=OrderType.LIMIT, quantity=quantity, price=price, **kw
    )


def venue(clock: VirtualClock | None = None, **kw: Any) -> SimulatedExchange:
    return SimulatedExchange(clock=clock if clock is not None else VirtualClock(START), **kw)


def binomial_ok(count: int, n: int, p: float, sds: float = 5.0) -> bool:
    return abs(count - n * p) <= sds * math.sqrt(n * p * (1 - p))


@pytest.fixture
def clock() -> VirtualClock:
    return VirtualClock(START)


@pytest.fixture
def anyio_backend(clock: VirtualClock) -> tuple[str, dict[str, Any]]:
    # asyncio on a loop that keeps the VirtualClock's time: awaited latency is virtual
    return ("asyncio", clock.backend_options())


# -- a fresh venue -----------------------------------------------------------------------------
def test_a_fresh_venue_is_stocked_and_a_market_order_fills_at_once_at_book_prices() -> None:
    x = venue()
    assert isinstance(x, Venue) and isinstance(x, AsyncVenue)
    snap = x.book("BTC/USD", depth=10)
    assert len(snap.bids) == 10 and len(snap.asks) == 10
    assert [lv.price for lv in snap.asks] == sorted(lv.price for lv in snap.asks)
    assert [lv.price for lv in snap.bids] == sorted((lv.price for lv in snap.bids), reverse=True)
    assert snap.best_bid < 50_000 < snap.best_ask
    size = snap.asks[0].quantity + snap.asks[1].quantity / 2  # takes two levels

    r = x.submit(market("m1", round(size, 4)))
    assert r.status is FILLED and r.order_id == "m1" and r.exchange_id == "sim"
    assert [f.price for f in r.fills] == [snap.asks[0].price, snap.asks[1].price]
    assert snap.asks[0].price < r.average_price < snap.asks[1].price
    assert r.fills[0].quantity == snap.asks[0].quantity
    for f in r.fills:
        assert f.liquidity is Liquidity.TAKER
        assert f.fee == pytest.approx(f.price * f.quantity * DEFAULT_FEES.taker_bps / 1e4)
    assert len({f.trade_id for f in r.fills}) == 2
    assert r.timestamp == START
    after = x.book("BTC/USD")
    assert after.best_ask == snap.asks[1].price  # the first level is gone
    for symbol in ("ETH/USD", "SOL/USD"):
        assert x.submit(market(f"m-{symbol[:3]}", 1.0, symbol=symbol)).status is FILLED


def test_snapshots_follow_every_change_and_reuse_what_did_not_change(clock: VirtualClock) -> None:
    x = venue(clock)
    book = x._markets["BTC/USD"].book
    inst = x.instruments()["BTC/USD"]

    def fresh(depth: int) -> tuple:
        return tuple(
            tuple((inst.ticks_to_price(p), inst.lots_to_quantity(n), k) for p, n, k in book.depth(side, depth))
            for side in (BUY, SELL)
        )

    def shown(depth: int) -> tuple:
        snap = x.book("BTC/USD", depth)
        return tuple(tuple((lv.price, lv.quantity, lv.orders) for lv in levels) for levels in (snap.bids, snap.asks))

    rng = random.Random(4)
    for i in range(300):
        step = rng.random()
        if step < 0.3:
            x.submit(market(f"m{i}", 0.0001 * rng.randint(1, 20_000), rng.choice([BUY, SELL])))
        elif step < 0.6:
            mid = x.book("BTC/USD").mid
            x.submit(limit(f"l{i}", 0.01, round(mid + rng.randint(-40, 40) * 0.5, 2), rng.choice([BUY, SELL])))
        elif step < 0.7 and x.open_orders():
            x.cancel(rng.choice(x.open_orders()).order_id)
        else:
            clock.advance(rng.random() * 0.5)
        for depth in (1, 5, 10):
            assert shown(depth) == fresh(depth)
    before = x.book("BTC/USD")
    x.submit(market("one-lot", 0.0001, BUY))  # changes the asks only
    after = x.book("BTC/USD")
    assert after.bids is before.bids and after.asks[1] is before.asks[1]


def test_start_prices_and_sizes_make_sense_per_symbol() -> None:
    x = venue()
    for symbol, mid, lot in (("BTC/USD", 50_000, 0.0001), ("ETH/USD", 3_000, 0.001), ("SOL/USD", 150, 0.01)):
        snap = x.book(symbol)
        assert snap.mid == pytest.approx(mid, rel=0.001)
        notional = snap.asks[0].quantity * snap.asks[0].price
        assert 20_000 < notional < 100_000  # about $50k at the best level
        inst = x.instruments()[symbol]
        assert float(inst.lot_size) == lot and float(inst.min_quantity) == lot


def test_fully_filled_quantities_are_exact_whatever_the_levels() -> None:
    x = venue()
    cases = (("BTC/USD", 2.7, 2), ("BTC/USD", 0.3, 1), ("ETH/USD", 41.1, 2), ("SOL/USD", 700.07, 2))
    for i, (symbol, qty, levels) in enumerate(cases):
        r = x.submit(market(f"q{i}", qty, SELL, symbol))
        assert r.status is FILLED and len(r.fills) >= levels
        assert r.filled_quantity == qty  # exact, not approx
        assert sum(f.quantity for f in r.fills) == pytest.approx(qty)
        notional = sum(f.price * f.quantity for f in r.fills)
        assert r.average_price == pytest.approx(notional / qty)


def test_a_market_order_larger_than_the_book_expires_the_rest_with_the_reason() -> None:
    x = venue()
    depth = sum(lv.quantity for lv in x.book("BTC/USD", 100).asks)
    big = round(depth + 10.0, 4)  # more than the book, within the instrument's filters
    r = x.submit(market("big", big))
    assert r.status is EXPIRED
    assert r.filled_quantity == pytest.approx(depth)
    assert r.reason == f"no liquidity left on the book: filled {r.filled_quantity!r} of {big!r}"
    assert x.book("BTC/USD").asks == ()
    assert x.status("big").status is EXPIRED


# -- venue rules ----------------------------------------------------------------------------------
def test_venue_rules_reject_with_a_human_reason_and_never_raise() -> None:
    x = venue()
    cases = [
        (market("r1", 1.0, symbol="XRP/USD"),
         "unknown symbol 'XRP/USD' at sim (symbols: BTC/USD, ETH/USD, SOL/USD)"),
        (limit("r2", 1.0, 50000.001),
         "price 50000.001 is not a multiple of the tick 0.01 for BTC/USD"),
        (market("r3", 0.00015), "quantity 0.00015 is not a multiple of the lot 0.0001 for BTC/USD"),
        (market("r4", 0.00005), "quantity 5e-05 is under the minimum 0.0001 for BTC/USD"),
        (Order(id="r5", symbol="BTC/USD", side=BUY, type=OrderType.ICEBERG, quantity=2.0,
               price=49_000.0, metadata={"display_size": 1.0}),
         "the venue accepts MARKET and LIMIT orders; ICEBERG is worked by the engine"),
        (Order(id="r6", symbol="BTC/USD", side=BUY, type=OrderType.TWAP, quantity=2.0,
               metadata={"duration_s": 60}),
         "the venue accepts MARKET and LIMIT orders; TWAP is worked by the engine"),
        (limit("r7", 1.0, 40_000.0, time_in_force=TimeInForce.GTD, expire_at=START - 1),
         f"expire_at {START - 1!r} (2023-11-14 22:13:19 UTC) is not after the venue's time {START!r}"),
    ]  # fmt: skip
    before = x.book("BTC/USD")
    for order, reason in cases:
        r = x.submit(order)
        assert (r.status, r.reason) == (REJECTED, reason)
        assert r.filled_quantity == 0 and r.fills == []
        # remembered: status answers, and the id cannot be reused
        assert x.status(order.id).reason == reason
    assert x.book("BTC/USD") == before
    assert x.counters.rejected == len(cases)
    assert x.open_orders() == []


def test_the_minimum_quantity_is_its_own_rule() -> None:
    inst = Instrument("X/USD", Decimal("0.01"), Decimal("0.001"), Decimal("0.01"))
    x = venue(instruments=[inst], start_prices={"X/USD": 100.0})
    r = x.submit(market("u1", 0.005, symbol="X/USD"))
    assert r.reason == "quantity 0.005 is under the minimum 0.01 for X/USD"
    assert x.submit(market("u2", 0.011, symbol="X/USD")).status is FILLED


def test_configuration_errors_say_what_is_accepted() -> None:
    with pytest.raises(ConfigurationError, match="no start price for X/USD"):
        venue(instruments=[Instrument("X/USD", Decimal("0.01"), Decimal("0.01"), Decimal("0.01"))])
    with pytest.raises(ConfigurationError, match=r"error_rate must be a fraction in \[0, 1\], got 1.5"):
        FaultConfig(error_rate=1.5)
    with pytest.raises(ConfigurationError, match="must be <= 1"):
        FaultConfig(error_rate=0.6, timeout_rate=0.6)
    with pytest.raises(ConfigurationError, match="p99_s must be >= median_s"):
        LatencyModel(median_s=0.01, p99_s=0.005)
    x = venue()
    with pytest.raises(ConfigurationError, match=r"unknown fault setting 'eror_rate' \(settings: error_rate,"):
        x.set_faults(eror_rate=0.1)
    with pytest.raises(ConfigurationError, match="unknown venue preset 'nope'"):
        SimulatedExchange.from_preset("nope")
    with pytest.raises(UnknownSymbolError, match=r"unknown symbol 'XRP/USD' at sim \(symbols: BTC/USD"):
        x.book("XRP/USD")


def test_presets_build_distinct_venues() -> None:
    clock = VirtualClock(START)
    venues = [SimulatedExchange.from_preset(n, clock=clock, latency=LatencyModel()) for n in VENUE_PRESETS]
    assert [v.name for v in venues] == list(VENUE_PRESETS)
    assert len({v.fees for v in venues}) == 3
    assert all(v.submit(market("p", 0.5)).status is FILLED for v in venues)


# -- client order ids -------------------------------------------------------------------------------
def test_a_duplicate_id_of_a_working_order_never_makes_a_second_order() -> None:
    x = venue(market=STILL)
    bid = x.book("BTC/USD").best_bid
    assert x.submit(limit("dup", 0.5, bid - 100)).status is NEW
    r = x.submit(limit("dup", 0.7, bid - 200))
    assert r.status is REJECTED
    assert r.reason == "duplicate client order id 'dup': sim still remembers it (NEW); no new order was made"
    assert [(o.order_id, o.quantity, o.price) for o in x.open_orders()] == [("dup", 0.5, bid - 100)]
    levels = {lv.price: lv for lv in x.book("BTC/USD", 100).bids}
    assert levels[bid - 100].quantity == 0.5 and bid - 200 not in levels
    assert x.status("dup").status is NEW


def test_a_finished_id_is_refused_inside_the_window_and_forgotten_beyond_it() -> None:
    x = venue(remember_ids=3)
    first = x.submit(market("f1", 0.1))
    assert first.status is FILLED
    ask_volume = sum(lv.quantity for lv in x.book("BTC/USD", 100).asks)
    again = x.submit(market("f1", 0.1))
    assert again.status is REJECTED and "duplicate client order id 'f1'" in again.reason
    assert "(FILLED)" in again.reason and again.fills == []
    assert sum(lv.quantity for lv in x.book("BTC/USD", 100).asks) == ask_volume  # nothing traded
    assert x.status("f1") == first  # still the first order's answer
    for i in range(3):
        x.submit(market(f"other{i}", 0.1))
    with pytest.raises(UnknownOrderError, match="'f1' is not known at sim"):
        x.status("f1")
    assert x.submit(market("f1", 0.1)).status is FILLED  # beyond the window: a new order


def test_status_keeps_fills_of_recent_orders_and_a_summary_of_older_ones(monkeypatch) -> None:
    import engine.venues.sim.exchange as ex

    monkeypatch.setattr(ex, "_FILLS_KEPT", 2)
    x = venue()
    results = [x.submit(market(f"s{i}", 0.1)) for i in range(4)]
    assert x.status("s3").fills == results[3].fills
    old = x.status("s0")
    assert old.fills == [] and old.status is FILLED
    assert old.filled_quantity == 0.1 and old.average_price == results[0].average_price


# -- determinism ---------------------------------------------------------------------------------------
def _script(seed: int) -> list[Any]:
    clock = VirtualClock(START)
    x = SimulatedExchange(clock=clock, seed=seed)
    seen: list[Any] = []
    x.add_report_listener(seen.append)
    for i in range(30):
        clock.advance(0.37)
        seen.append(x.submit(market(f"m{i}", 0.05, BUY if i % 2 else SELL)))
        bid = x.book("BTC/USD").best_bid
        seen.append(x.submit(limit(f"l{i}", 0.02, round(bid + 0.01, 2))))
    clock.advance(30)
    x.tick()
    seen.append(x.open_orders())
    seen.append(x.trades("BTC/USD"))
    seen.append(x.book("BTC/USD", 20))
    return seen


def test_same_seed_and_same_inputs_give_identical_fills_prices_and_trade_ids() -> None:
    a, b = _script(7), _script(7)
    assert a == b
    assert any(isinstance(e, ExecutionReport) for e in a)  # passive fills are in the comparison
    assert a != _script(8)


# -- time in force -----------------------------------------------------------------------------------------
def test_ioc_fills_what_it_can_at_its_price_and_expires_the_rest() -> None:
    x = venue(market=STILL)
    best = x.book("BTC/USD").asks[0]
    r = x.submit(limit("ioc", round(best.quantity + 0.5, 4), best.price, time_in_force=TimeInForce.IOC))
    assert r.status is EXPIRED and r.filled_quantity == best.quantity
    assert {f.price for f in r.fills} == {best.price}
    assert r.reason == f"IOC: filled {best.quantity!r} of {r.quantity!r}; nothing more at {best.price!r} or better"
    assert x.open_orders() == [] and x.book("BTC/USD").best_bid < best.price


def test_fok_fills_all_or_nothing() -> None:
    x = venue(market=STILL)
    asks = x.book("BTC/USD").asks
    before = x.book("BTC/USD", 100)
    too_much = round(asks[0].quantity + asks[1].quantity + 0.1, 4)
    r = x.submit(limit("fok1", too_much, asks[1].price, time_in_force=TimeInForce.FOK))
    assert r.status is EXPIRED and r.filled_quantity == 0 and r.fills == []
    avail = round(asks[0].quantity + asks[1].quantity, 4)
    assert r.reason == f"FOK: only {avail!r} of {too_much!r} available at {asks[1].price!r} or better; nothing filled"
    assert x.book("BTC/USD", 100) == before
    r = x.submit(limit("fok2", avail, asks[1].price, time_in_force=TimeInForce.FOK))
    assert r.status is FILLED and r.filled_quantity == avail
    r = x.submit(market("fok3", 100.0, time_in_force=TimeInForce.FOK))  # more than the book
    assert r.status is EXPIRED and r.fills == [] and "at any price" in r.reason


def test_day_orders_expire_at_the_end_of_the_utc_day_with_a_report(clock: VirtualClock) -> None:
    x = venue(clock)
    reports: list[ExecutionReport] = []
    x.add_report_listener(reports.append)
    bid = x.book("BTC/USD").best_bid
    assert x.submit(limit("day", 0.1, round(bid * 0.8, 2), time_in_force=TimeInForce.DAY)).status is NEW
    clock.advance(6399)  # one second before midnight UTC
    assert x.status("day").status is NEW and reports == []
    clock.advance(3600)
    x.tick()
    midnight = 1_700_006_400.0
    reason = "DAY order expired at the end of the UTC day (2023-11-15 00:00:00 UTC)"
    assert [(r.client_order_id, r.status, r.ts_event, r.reason) for r in reports] == [
        ("day", EXPIRED, midnight, reason)
    ]
    s = x.status("day")
    assert (s.status, s.reason, s.timestamp) == (EXPIRED, reason, midnight)
    assert x.open_orders() == [] and x.counters.expired == 1


def test_gtd_orders_expire_at_their_time_with_a_report(clock: VirtualClock) -> None:
    x = venue(clock)
    reports: list[ExecutionReport] = []
    x.add_report_listener(reports.append)
    ask = x.book("ETH/USD").best_ask
    deadline = START + 30.0
    order = limit("gtd", 1.0, round(ask * 1.2, 2), SELL, "ETH/USD", time_in_force=TimeInForce.GTD, expire_at=deadline)
    assert x.submit(order).status is NEW
    clock.advance(29.9)
    x.tick()
    assert reports == []
    clock.advance(0.2)
    x.tick()
    assert len(reports) == 1
    r = reports[0]
    assert (r.status, r.ts_event, r.leaves_quantity, r.venue) == (EXPIRED, deadline, 0.0, "sim")
    assert r.reason.startswith(f"GTD order expired at its expire_at {deadline!r}")
    assert x.cancel("gtd").reason == "cancel refused: order 'gtd' is already EXPIRED"


# -- cancel and amend ----------------------------------------------------------------------------------------
def test_cancel_gives_what_filled_so_far_and_refuses_finished_or_unknown_orders() -> None:
    x = venue(market=STILL)
    bid = x.book("BTC/USD").best_bid
    price = round(bid + 0.01, 2)
    x.submit(limit("c1", 0.5, price))
    x.submit(market("hit", 0.2, SELL))  # trades against c1 first (best bid)
    r = x.cancel("c1")
    assert (r.status, r.filled_quantity, r.quantity, r.average_price) == (CANCELED, 0.2, 0.5, price)
    assert len(r.fills) == 1 and r.fills[0].liquidity is Liquidity.MAKER
    assert r.reason == "canceled by request"
    assert x.book("BTC/USD").best_bid == bid and x.open_orders() == []
    again = x.cancel("c1")
    assert (again.status, again.reason) == (REJECTED, "cancel refused: order 'c1' is already CANCELED")
    assert x.cancel("hit").reason == "cancel refused: order 'hit' is already FILLED"
    assert x.cancel("ghost").reason == "cancel refused: order 'ghost' is not known at sim"
    assert x.status("c1").status is CANCELED


def test_resting_orders_pay_maker_fees_and_report_their_fills() -> None:
    x = venue(market=STILL)
    reports: list[ExecutionReport] = []
    x.add_report_listener(reports.append)
    price = round(x.book("BTC/USD").best_bid + 0.01, 2)
    x.submit(limit("rest", 0.3, price))
    taker = x.submit(market("agg", 0.1, SELL))
    assert taker.fills[0].price == price and taker.fills[0].liquidity is Liquidity.TAKER
    (rep,) = reports
    f = rep.fill
    assert (rep.client_order_id, rep.status, rep.filled_quantity, rep.leaves_quantity) == ("rest", PARTIAL, 0.1, 0.2)
    assert (f.liquidity, f.price, f.quantity, f.trade_id) == (Liquidity.MAKER, price, 0.1, taker.fills[0].trade_id)
    assert f.fee == pytest.approx(price * 0.1 * DEFAULT_FEES.maker_bps / 1e4)
    x.submit(market("agg2", 0.2, SELL))
    assert reports[-1].status is FILLED and reports[-1].leaves_quantity == 0.0
    assert x.status("rest").filled_quantity == 0.3


def test_amend_keeps_priority_only_when_shrinking_and_refuses_below_filled() -> None:
    x = venue(market=STILL)
    reports: list[ExecutionReport] = []
    x.add_report_listener(reports.append)
    p = round(x.book("BTC/USD").best_bid + 0.01, 2)
    x.submit(limit("A", 0.02, p))
    x.submit(limit("B", 0.02, p))

    r = x.amend("A", quantity=0.01)  # shrink at the same price: stays first
    assert (r.status, r.quantity) == (NEW, 0.01)
    x.submit(market("s1", 0.005, SELL))
    assert reports[-1].client_order_id == "A"

    x.amend("A", quantity=0.03)  # grow: behind B now
    x.submit(market("s2", 0.005, SELL))
    assert reports[-1].client_order_id == "B"

    refused = x.amend("A", quantity=0.005)
    assert refused.status is REJECTED
    assert refused.reason == (
        "amend of 'A' refused: quantity 0.005 is not above the 0.005 already filled; cancel it "
        "instead; the order is unchanged"
    )
    assert x.status("A").quantity == 0.03 and x.status("A").status is PARTIAL

    moved = x.amend("A", price=round(p + 0.01, 2))  # a new price rests at the top
    assert moved.status is PARTIAL and moved.price == round(p + 0.01, 2)
    top = x.book("BTC/USD").bids[0]
    assert (top.price, top.quantity, top.orders) == (round(p + 0.01, 2), 0.025, 1)

    off = x.amend("B", price=p + 0.001)
    assert off.status is REJECTED and "is not a multiple of the tick 0.01" in off.reason
    assert x.amend("B").status is REJECTED  # nothing to change


def test_amend_to_a_crossing_price_trades_as_a_taker() -> None:
    x = venue(market=STILL)
    snap = x.book("BTC/USD")
    x.submit(limit("X", 0.1, snap.best_bid))
    r = x.amend("X", price=snap.best_ask)
    assert r.status is FILLED and r.fills and r.fills[0].liquidity is Liquidity.TAKER
    assert r.fills[0].price == snap.best_ask and r.filled_quantity == 0.1
    assert x.amend("X", quantity=0.2).reason == "amend refused: order 'X' is already FILLED"


# -- the market moves -------------------------------------------------------------------------------------------
def test_a_passive_order_fills_through_simulated_takers_with_a_report(clock: VirtualClock) -> None:
    x = venue(clock, seed=3)
    reports: list[ExecutionReport] = []
    trades: list[PublicTrade] = []
    x.add_report_listener(reports.append)
    x.add_trade_listener(trades.append)
    price = round(x.book("BTC/USD").best_bid + 0.01, 2)
    assert x.submit(limit("passive", 0.01, price)).status is NEW
    for _ in range(3000):
        if reports:
            break
        clock.advance(0.2)
        x.tick()
    assert reports, "the passive order never filled"
    rep = reports[0]
    assert rep.client_order_id == "passive" and rep.fill.liquidity is Liquidity.MAKER
    assert rep.fill.price == price and rep.status in (PARTIAL, FILLED)
    assert any(t.price == price and t.aggressor is SELL for t in trades)
    assert any(t.price == price for t in x.trades("BTC/USD"))
    assert x.status("passive").filled_quantity == rep.filled_quantity


def test_public_trades_are_pushed_and_served_since_a_time(clock: VirtualClock) -> None:
    x = venue(clock, market=STILL)
    pushed: list[PublicTrade] = []
    x.add_trade_listener(pushed.append)
    clock.advance(1.0)
    r = x.submit(market("t1", 1.5))
    t1 = clock.now()
    served = x.trades("BTC/USD")
    assert served == pushed
    assert [(t.price, t.quantity, t.aggressor, t.ts_event) for t in served] == [
        (f.price, f.quantity, BUY, t1) for f in r.fills
    ]
    clock.advance(1.0)
    x.submit(market("t2", 0.1, SELL))
    later = x.trades("BTC/USD", since=t1)
    assert [(t.aggressor, t.quantity) for t in later] == [(SELL, 0.1)]
    assert x.trades("ETH/USD") == []
    x.remove_trade_listener(pushed.append)
    x.submit(market("t3", 0.1))
    assert len(pushed) == len(served) + 1


def test_the_tape_reads_as_printed_however_often_it_is_read(clock: VirtualClock) -> None:
    # Served trades are made once and kept (as many as the tape keeps): reads between
    # prints, after several prints, and past the tape's length all see what was printed.
    x = venue(clock, market=MarketConfig(taker_rate_per_s=0.0, volatility_bps=0.0, trade_history=4))
    pushed: list[PublicTrade] = []
    x.add_trade_listener(pushed.append)
    for i in range(7):
        clock.advance(1.0)
        before = clock.now()
        x.submit(market(f"t{i}", 0.6, SELL if i % 2 else BUY))  # more than one level: several trades
        if i in (1, 2, 6):
            assert x.trades("BTC/USD") == pushed[-4:]
    assert len(pushed) > 7
    first = x.trades("BTC/USD")
    assert all(a is b for a, b in zip(first, x.trades("BTC/USD"), strict=True))
    assert x.trades("BTC/USD", since=before) == [t for t in pushed if t.ts_event > before][-4:]
    assert x.trades("BTC/USD", since=clock.now()) == []


def test_makers_keep_the_book_stocked_under_a_flood_of_market_orders(clock: VirtualClock) -> None:
    # Small levels and short steps: 20,000 one-lot orders at 100,000 a second
    # take about five times the book's depth per side; the makers refill each step.
    x = venue(clock, market=MarketConfig(step_s=0.02, level_notional=500.0))
    depth = sum(lv.quantity for lv in x.book("BTC/USD", 100).asks) / 0.0001
    n = 20_000
    assert n / 2 > 4 * depth
    for i in range(n):
        clock.advance(1e-5)
        assert x.submit(market(f"f{i}", 0.0001, BUY if i % 2 else SELL)).status is FILLED
    snap = x.book("BTC/USD", 100)
    assert len(snap.bids) >= 5 and len(snap.asks) >= 5


def test_catch_up_after_a_long_gap_is_capped(clock: VirtualClock) -> None:
    x = venue(clock)
    clock.advance(10.0)
    x.tick()
    assert x.counters.market_steps == 50
    clock.advance(86_400.0)  # a day: 432,000 steps due
    x.tick()
    assert x.counters.market_steps == 100  # only the last max_catchup_steps ran
    snap = x.book("BTC/USD")
    assert snap.best_bid < snap.best_ask and len(snap.bids) == 10
    assert snap.mid != pytest.approx(50_000, abs=1)  # the mid still drifted over the day
    steps = x.counters.market_steps
    x.tick()  # nothing due: nothing run
    assert x.counters.market_steps == steps


# -- faults --------------------------------------------------------------------------------------------------------
def _storm(x: SimulatedExchange, n: int, kind: type[Exception]) -> tuple[int, list[str]]:
    failed: list[str] = []
    for i in range(n):
        try:
            x.submit(market(f"o{i}", 0.0001, BUY if i % 2 else SELL))
        except kind as exc:
            assert type(exc) is kind
            assert exc.venue == "sim"
            failed.append(f"o{i}")
    return len(failed), failed


def test_error_rate_raises_transient_errors_at_its_rate_and_nothing_happens() -> None:
    x = venue(faults=FaultConfig(error_rate=0.2))
    count, failed = _storm(x, 2000, TransientVenueError)
    assert binomial_ok(count, 2000, 0.2)
    assert x.counters.errors == {"TransientVenueError": count}
    assert x.counters.submitted == 2000 - count
    x.faults = FaultConfig()  # status gets errors too; ask without them
    for cid in failed[:20]:
        with pytest.raises(UnknownOrderError):
            x.status(cid)  # never reached the book


def test_reject_rate_raises_permanent_errors_at_its_rate() -> None:
    x = venue(faults=FaultConfig(reject_rate=0.1))
    count, _ = _storm(x, 2000, PermanentVenueError)
    assert binomial_ok(count, 2000, 0.1)
    assert x.counters.submitted == 2000 - count


def test_timeouts_happen_at_their_rate_with_both_outcomes_and_status_tells_which(
    clock: VirtualClock,
) -> None:
    x = venue(clock, faults=FaultConfig(timeout_rate=0.3, timeout_s=2.5))
    reached = lost = 0
    for i in range(1000):
        t = clock.now()
        try:
            x.submit(market(f"o{i}", 0.0001))
        except UnknownOutcomeError as exc:
            assert clock.now() - t == pytest.approx(2.5)  # slept on the clock
            assert f"status('o{i}')" in str(exc)
            try:
                s = x.status(f"o{i}")
            except UnknownOrderError:
                lost += 1
            else:
                assert s.status is FILLED
                reached += 1
        else:
            assert clock.now() == t
    assert binomial_ok(reached + lost, 1000, 0.3)
    assert binomial_ok(reached, reached + lost, 0.5)
    assert reached > 0 and lost > 0
    assert x.counters.errors["UnknownOutcomeError"] == reached + lost


def test_an_outage_refuses_everything_for_its_time_then_recovers(clock: VirtualClock) -> None:
    x = venue(clock)
    x.submit(limit("w", 0.1, 40_000.0))
    x.start_outage(5.0)
    calls = [
        lambda: x.submit(market("o1", 0.1)),
        lambda: x.cancel("w"),
        lambda: x.amend("w", quantity=0.2),
        lambda: x.status("w"),
        lambda: x.open_orders(),
        lambda: x.book("BTC/USD"),
        lambda: x.trades("BTC/USD"),
    ]
    for call in calls:
        with pytest.raises(VenueUnavailableError, match=r"sim is unavailable \(outage until"):
            call()
    assert "BTC/USD" in x.instruments()  # reference data stays
    clock.advance(4.99)
    with pytest.raises(VenueUnavailableError):
        x.submit(market("o1", 0.1))
    clock.advance(0.01)
    assert x.submit(market("o1", 0.1)).status is FILLED
    assert x.status("w").status is NEW
    assert x.counters.errors["VenueUnavailableError"] == len(calls) + 1


def test_rate_limit_refuses_requests_beyond_n_in_the_trailing_second(clock: VirtualClock) -> None:
    x = venue(clock)
    x.set_faults(rate_limit_per_s=5)
    outcomes = []
    for i in range(8):
        try:
            x.submit(market(f"r{i}", 0.0001))
            outcomes.append("ok")
        except RateLimitedError as exc:
            assert "sim allows 5 order requests per second" in str(exc)
            outcomes.append("limited")
    assert outcomes == ["ok"] * 5 + ["limited"] * 3
    x.status("r0")  # reading is not limited
    clock.advance(0.5)
    with pytest.raises(RateLimitedError):
        x.cancel("r0")
    clock.advance(0.5)
    assert all(x.submit(market(f"s{i}", 0.0001)).status is FILLED for i in range(5))
    with pytest.raises(RateLimitedError):
        x.submit(market("s5", 0.0001))


def test_status_gets_errors_but_not_rejects_or_timeouts() -> None:
    x = venue()
    x.submit(market("a", 0.1))
    x.faults = FaultConfig(reject_rate=0.5, timeout_rate=0.5)
    assert all(x.status("a").status is FILLED for _ in range(50))
    x.faults = FaultConfig(error_rate=1.0)
    with pytest.raises(TransientVenueError):
        x.status("a")
    x.faults = FaultConfig()
    assert x.status("a").status is FILLED


def test_latency_model_samples_have_the_configured_median_and_p99() -> None:
    model = LatencyModel(median_s=0.01, p99_s=0.05)
    rng = random.Random(1)
    xs = sorted(model.sample(rng) for _ in range(20_000))
    assert xs[10_000] == pytest.approx(0.01, rel=0.05)
    assert xs[19_800] == pytest.approx(0.05, rel=0.1)
    assert LatencyModel().sample(rng) == 0.0
    assert LatencyModel(median_s=0.004).sample(rng) == 0.004


def test_requests_sleep_their_sampled_latency_on_the_clock(clock: VirtualClock) -> None:
    x = venue(clock, latency=LatencyModel(median_s=0.01, p99_s=0.05))
    gaps = []
    for i in range(2000):
        t = clock.now()
        r = x.submit(market(f"l{i}", 0.0001))
        gaps.append(clock.now() - t)
        assert r.timestamp == clock.now()  # the order reached the book after the latency
        # ...and says how long it took, so a router times the venue, not its own waits
        assert r.ack_latency_ns == pytest.approx(gaps[-1] * 1e9, abs=1_000)
    gaps.sort()
    assert gaps[1000] == pytest.approx(0.01, rel=0.1)
    assert gaps[1980] == pytest.approx(0.05, rel=0.25)
    assert min(gaps) > 0


def test_a_latency_spike_adds_latency_for_its_time(clock: VirtualClock) -> None:
    x = venue(clock)
    x.start_latency_spike(extra_s=0.5, duration_s=10.0)
    t = clock.now()
    x.submit(market("a", 0.0001))
    assert clock.now() - t == pytest.approx(0.5)
    clock.advance(10.0)
    t = clock.now()
    x.submit(market("b", 0.0001))
    assert clock.now() == t


# -- listeners and threads ------------------------------------------------------------------------------------------
def test_a_listener_may_call_back_into_the_venue_and_a_broken_one_does_not_break_it() -> None:
    x = venue(market=STILL)
    seen: list[OrderStatus] = []

    def broken(report: ExecutionReport) -> None:
        raise RuntimeError("consumer bug")

    x.add_report_listener(broken)
    x.add_report_listener(lambda rep: seen.append(x.status(rep.client_order_id).status))
    price = round(x.book("BTC/USD").best_bid + 0.01, 2)
    x.submit(limit("cb", 0.2, price))
    assert x.submit(market("hit", 0.1, SELL)).status is FILLED
    assert seen == [PARTIAL]
    x.remove_report_listener(broken)


def test_concurrent_callers_are_safe() -> None:
    x = SimulatedExchange()  # real clock, zero latency
    results: list[Any] = []

    def work(t: int) -> None:
        for i in range(300):
            side = BUY if i % 2 else SELL
            results.append(x.submit(market(f"t{t}-{i}", 0.001, side)))
            if i % 50 == 0:
                x.submit(limit(f"t{t}-l{i}", 0.001, 40_000.0))
                x.cancel(f"t{t}-l{i}")

    threads = [threading.Thread(target=work, args=(t,)) for t in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert len(results) == 1200 and all(r.status is FILLED for r in results)
    assert x.counters.submitted == 1200 + 4 * 6 and x.counters.canceled == 24
    x.check_books()


# -- async form ----------------------------------------------------------------------------------------------------------
def _async_script_orders() -> list[Order]:
    return [market(f"a{i}", 0.01, BUY if i % 2 else SELL) for i in range(20)]


@pytest.mark.anyio
async def test_the_async_form_behaves_like_the_sync_form(clock: VirtualClock) -> None:
    latency = LatencyModel(median_s=0.01, p99_s=0.03)
    faults = FaultConfig(error_rate=0.1)
    a = SimulatedExchange(clock=clock, seed=5, latency=latency, faults=faults)
    sync_clock = VirtualClock(START)
    s = SimulatedExchange(clock=sync_clock, seed=5, latency=latency, faults=faults)
    got_async: list[Any] = []
    got_sync: list[Any] = []
    for order in _async_script_orders():
        try:
            got_async.append(await a.submit_async(order))
        except TransientVenueError as exc:
            got_async.append(str(exc))
        try:
            got_sync.append(s.submit(order))
        except TransientVenueError as exc:
            got_sync.append(str(exc))
    assert got_async == got_sync
    assert clock.now() == sync_clock.now() > START  # latency was slept, virtually, on both


@pytest.mark.anyio
async def test_async_requests_sleep_on_the_clock_and_time_out_like_sync_ones(clock: VirtualClock) -> None:
    x = venue(clock, latency=LatencyModel(median_s=0.02), market=STILL)
    t = clock.now()
    r = await x.submit_async(market("a1", 0.1))
    assert r.status is FILLED and clock.now() == pytest.approx(t + 0.02)
    bid = (await x.book_async("BTC/USD")).best_bid
    assert (await x.submit_async(limit("a2", 0.1, bid - 1))).status is NEW
    assert (await x.amend_async("a2", quantity=0.2)).quantity == 0.2
    assert [o.order_id for o in await x.open_orders_async()] == ["a2"]
    assert (await x.status_async("a2")).status is NEW
    assert (await x.cancel_async("a2")).status is CANCELED
    x.set_faults(timeout_rate=1.0, timeout_s=3.0)
    t = clock.now()
    with pytest.raises(UnknownOutcomeError):
        await x.submit_async(market("a3", 0.1))
    assert clock.now() == pytest.approx(t + 3.0)


# -- clients ---------------------------------------------------------------------------------------------------------------
def test_exchange_client_with_no_arguments_fills_a_market_order() -> None:
    client = ExchangeClient()
    assert client.name == "sim" and client.fees == DEFAULT_FEES
    assert set(client.instruments()) == {"BTC/USD", "ETH/USD", "SOL/USD"}
    trades: list[PublicTrade] = []
    client.add_trade_listener(trades.append)
    r = client.submit(market("order_123", 1.0))
    assert r.status is FILLED and r.filled_quantity == 1.0
    assert client.status("order_123") == r
    assert trades and client.trades("BTC/USD") == trades
    assert client.book("BTC/USD").best_bid is not None
    client.tick()
    assert client.cancel("order_123").status is REJECTED
    assert client.open_orders() == []


@pytest.mark.anyio
async def test_async_exchange_client_with_no_arguments_fills_a_market_order() -> None:
    client = AsyncExchangeClient()
    r = await client.submit_async(market("order_123", 1.0))
    assert r.status is FILLED and r.filled_quantity == 1.0
    assert (await client.status_async("order_123")).status is FILLED
    assert client.book("BTC/USD").best_ask is not None and client.name == "sim"
    assert client.trades("BTC/USD")


class _AsyncOnly:
    """A network-like venue: only the async form."""

    def __init__(self, inner: SimulatedExchange) -> None:
        self.inner, self.name, self.fees = inner, inner.name, inner.fees

    def instruments(self) -> Any:
        return self.inner.instruments()

    async def submit_async(self, order: Order) -> Any:
        return await self.inner.submit_async(order)

    async def cancel_async(self, cid: str) -> Any:
        return await self.inner.cancel_async(cid)

    async def amend_async(self, cid: str, quantity: Any = None, price: Any = None) -> Any:
        return await self.inner.amend_async(cid, quantity, price)

    async def status_async(self, cid: str) -> Any:
        return await self.inner.status_async(cid)

    async def open_orders_async(self, symbol: Any = None) -> Any:
        return await self.inner.open_orders_async(symbol)

    async def book_async(self, symbol: str, depth: int = 10) -> Any:
        return await self.inner.book_async(symbol, depth)

    def add_report_listener(self, listener: Any) -> None:
        self.inner.add_report_listener(listener)

    def add_trade_listener(self, listener: Any) -> None:
        self.inner.add_trade_listener(listener)


class _SyncOnly:
    def __init__(self, inner: SimulatedExchange) -> None:
        self.inner, self.name, self.fees = inner, inner.name, inner.fees
        self.threads: set[int] = set()

    def submit(self, order: Order) -> Any:
        self.threads.add(threading.get_ident())
        return self.inner.submit(order)

    def __getattr__(self, name: str) -> Any:
        if name.endswith("_async"):
            raise AttributeError(name)
        return getattr(self.inner, name)


def test_exchange_client_runs_an_async_only_venue_on_its_own_loop_thread() -> None:
    inner = SimulatedExchange()
    with ExchangeClient(_AsyncOnly(inner)) as client:
        assert client.submit(market("x1", 0.5)).status is FILLED
        assert client.status("x1").status is FILLED
        assert client.book("BTC/USD").best_bid is not None
        assert client.open_orders() == []
    assert inner.counters.submitted == 1


@pytest.mark.anyio
async def test_async_exchange_client_runs_a_sync_only_venue_in_worker_threads() -> None:
    venue_ = _SyncOnly(SimulatedExchange())
    client = AsyncExchangeClient(venue_)
    r = await client.submit_async(market("y1", 0.5))
    assert r.status is FILLED
    assert threading.get_ident() not in venue_.threads  # never on the event loop
    assert (await client.book_async("BTC/USD")).best_ask is not None
    assert client.book("BTC/USD").best_ask is not None


def test_a_client_refuses_what_is_not_a_venue() -> None:
    with pytest.raises(ConfigurationError, match="object is not a venue"):
        ExchangeClient(object())
    with pytest.raises(ConfigurationError, match="object is not a venue"):
        AsyncExchangeClient(object())


def test_the_engine_does_not_import_textual() -> None:
    import subprocess
    import sys

    code = "import engine.venues.sim.exchange, engine.venues.book, sys; print('textual' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_venues_sharing_a_reference_price_stay_together_and_apart_ones_drift() -> None:
    """Mids of venues on one ReferenceMarket differ by little over hours; without it they wander apart."""
    from engine.venues.sim.market import ReferenceMarket

    def spread_over_time(reference: ReferenceMarket | None) -> float:
        clock = VirtualClock(start=0.0)
        venues = [SimulatedExchange(f"v{i}", clock=clock, seed=i, reference=reference) for i in range(3)]
        worst = 0.0
        for _ in range(60):
            clock.advance(120.0)
            mids = [v.book("BTC/USD").mid for v in venues]
            worst = max(worst, (max(mids) - min(mids)) / min(mids) * 1e4)
        return worst

    together = spread_over_time(ReferenceMarket(seed=7))
    apart = spread_over_time(None)
    assert together < 5.0, f"venues on one reference differ by {together:.1f} bps"
    assert apart > together * 3, f"independent venues should drift apart ({apart:.1f} vs {together:.1f} bps)"


def test_old_finished_orders_keep_only_their_status_and_still_block_a_duplicate() -> None:
    """Inside the id window, only the newest orders keep details: memory is their keys."""
    x = venue(remember_ids=20, remember_details=3)  # the default keeps 100,000; a small window shows the rule
    first = x.submit(market("old1", 0.1))
    assert first.status is FILLED
    for i in range(5):
        x.submit(market(f"new{i}", 0.1))
    old = x.status("old1")
    assert old.status is FILLED and "only its status is kept" in old.reason
    assert x.status("new4").filled_quantity == 0.1  # recent ones keep their details
    again = x.submit(market("old1", 0.1))
    assert again.status is REJECTED and "duplicate client order id 'old1'" in again.reason
    assert "(FILLED)" in again.reason
