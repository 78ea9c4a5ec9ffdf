"""TCA figures and positions/P&L against values computed by hand, on a scripted market.

The venue (tests.algo_support.ScriptedVenue) has one symbol, TEST/USD (tick and
lot 0.01), a fixed book 99 bid / 101 ask with 10 on each side, a taker fee
of 10 bps and no maker fee. Nothing trades unless the test says so.
"""

from __future__ import annotations

import anyio
import pytest

from engine import Order, OrderSide, OrderStatus, VirtualClock
from engine.events import OrderUpdated
from engine.models import Fill, Liquidity
from engine.positions import PositionBook
from engine.tca import implementation_shortfall, schedule_target, slippage_bps
from tests.algo_support import ScriptedVenue, one_venue_engine
from tests.conftest import virtual_anyio_backend

SYM = ScriptedVenue.SYMBOL


@pytest.fixture
def anyio_backend(virtual_clock: VirtualClock) -> tuple[str, dict]:
    return virtual_anyio_backend(virtual_clock)


@pytest.mark.anyio
async def test_twap_tca_and_positions_by_hand(virtual_clock: VirtualClock) -> None:
    venue = ScriptedVenue(virtual_clock)
    engine = one_venue_engine(virtual_clock, venue)
    events = engine.subscribe(lossless=True, name="test")
    await engine.start()
    t0 = virtual_clock.now()
    oid = await engine.submit(Order(id="tca-twap", symbol=SYM, side="buy", type="TWAP", quantity=2.0,
                                    metadata={"duration_s": 20, "slices": 2}))
    await anyio.sleep(5)
    venue.print_trade(100.0, 3.0, OrderSide.SELL)  # someone else trades 3 at 100
    result = await engine.wait(oid, timeout=600)

    # Two slices of 1 at t0 and t0+10, each an IOC that takes the 101 ask.
    assert result.status is OrderStatus.FILLED
    assert [(f.timestamp - t0, f.price, f.quantity) for f in result.fills] == [(0, 101.0, 1.0), (10, 101.0, 1.0)]
    d = result.detail
    assert d["arrival_price"] == 100.0  # mid of 99/101 when accepted
    assert d["average_price"] == 101.0
    assert d["slippage_bps"] == pytest.approx(100.0)  # (101 - 100) / 100
    assert d["fees"] == pytest.approx(0.202)  # 2 x 101 x 10 bps
    assert d["execution_cost"] == pytest.approx(2.0)  # (101 - 100) x 2
    assert d["opportunity_cost"] == 0
    assert d["implementation_shortfall"] == pytest.approx(2.202)
    assert d["implementation_shortfall_bps"] == pytest.approx(110.1)  # 2.202 / (100 x 2)
    # The market over the parent's life: our 2 at 101 and their 3 at 100.
    assert d["market_volume"] == pytest.approx(5.0)
    assert d["market_vwap"] == pytest.approx(100.4)
    assert d["vwap_slippage_bps"] == pytest.approx((101 - 100.4) / 100.4 * 1e4)
    assert d["schedule_target"] == pytest.approx(2.0) and d["schedule_deviation"] == pytest.approx(0.0)
    assert d["window_start"] == t0 and d["window_end"] == t0 + 20
    assert d["children_done"] == 2 and d["children_working"] == 0

    # Positions: long 2 at 101, then sell 0.5 and 2.0 at the 99 bid.
    pos = engine.positions()
    assert [(p.symbol, p.venue, p.net_quantity, p.average_entry) for p in pos] == [(SYM, None, 2.0, 101.0)]
    assert pos[0].unrealized_pnl == pytest.approx(-2.0)  # 2 x (100 - 101)
    for i, qty in enumerate((0.5, 2.0)):
        sid = await engine.submit(Order(id=f"sell-{i}", symbol=SYM, side="sell", type="MARKET", quantity=qty))
        assert (await engine.wait(sid, timeout=60)).status is OrderStatus.FILLED
        if i == 0:
            p = engine.positions()[0]
            assert p.net_quantity == 1.5 and p.average_entry == 101.0
            assert p.realized_pnl == pytest.approx(-1.0)  # 0.5 x (99 - 101)
            assert p.unrealized_pnl == pytest.approx(-1.5)  # 1.5 x (100 - 101)
            assert p.fees == pytest.approx(0.202 + 0.0495)
    p = engine.positions()[0]
    # Sold 2.0 more: closed 1.5 (another -3.0) and opened a short of 0.5 at 99.
    assert p.net_quantity == -0.5 and p.average_entry == 99.0
    assert p.realized_pnl == pytest.approx(-4.0)
    assert p.unrealized_pnl == pytest.approx(-0.5)  # -0.5 x (100 - 99)
    assert p.fees == pytest.approx(0.202 + 0.0495 + 0.198)
    assert p.net_pnl == pytest.approx(-4.0 - 0.5 - 0.4495)
    assert (p.bought, p.sold, p.fills) == (2.0, 2.5, 4)
    by_venue = engine.positions(by_venue=True)
    assert [(v.venue, v.net_quantity, v.realized_pnl) for v in by_venue] == [("script", -0.5, pytest.approx(-4.0))]
    venue.set_book([(104.0, 10.0)], [(106.0, 10.0)])  # the market moves: marked to the new mid
    assert engine.positions()[0].unrealized_pnl == pytest.approx(-3.0)  # -0.5 x (105 - 99)

    # The parent's progress reached the event stream with its TCA.
    updates = [e for e in events.drain() if isinstance(e, OrderUpdated) and e.order_id == oid]
    await engine.stop()
    assert updates and updates[-1].status is OrderStatus.FILLED
    assert updates[-1].tca["implementation_shortfall"] == pytest.approx(2.202)
    assert updates[-1].tca["market_vwap"] == pytest.approx(100.4)


@pytest.mark.anyio
async def test_unfilled_rest_counts_as_opportunity_cost(virtual_clock: VirtualClock) -> None:
    venue = ScriptedVenue(virtual_clock)
    engine = one_venue_engine(virtual_clock, venue)
    await engine.start()
    oid = await engine.submit(Order(id="tca-smart", symbol=SYM, side="buy", type="SMART", quantity=1.0,
                                    price=98.0, metadata={"urgency": "low", "duration_s": 10}))
    await anyio.sleep(2)
    [resting] = venue.open_orders()
    assert resting.price == 98.0  # low urgency would join the 99 bid; the limit says 98
    venue.fill_resting(resting.order_id, 0.4)  # a seller hits it: 0.4 at 98, no maker fee
    await anyio.sleep(3)
    venue.set_book([(101.0, 10.0)], [(103.0, 10.0)])  # the market runs away: mid 102
    result = await engine.wait(oid, timeout=600)
    await engine.stop()

    assert result.status is OrderStatus.EXPIRED
    assert result.reason == "deadline passed with 0.6 of 1 unfilled at the limit 98"
    assert venue.open_orders() == []
    d = result.detail
    assert d["filled"] == 0.4 and d["remaining"] == 0.6
    assert d["slippage_bps"] == pytest.approx(-200.0)  # bought 2 under the arrival mid
    assert d["execution_cost"] == pytest.approx(-0.8)  # (98 - 100) x 0.4
    assert d["fees"] == 0
    assert d["last_mid"] == 102.0
    assert d["opportunity_cost"] == pytest.approx(1.2)  # (102 - 100) x 0.6 not bought
    assert d["implementation_shortfall"] == pytest.approx(0.4)
    assert d["implementation_shortfall_bps"] == pytest.approx(40.0)  # 0.4 / (100 x 1)
    state = engine.scheduler.parent(oid)
    assert state.child_reasons and all(state.child_reasons.values())


def fill(side: str, qty: float, price: float, venue: str = "a", fee: float = 0.0, trade: str = "",
         order: str = "o") -> Fill:
    return Fill(order, venue, "X", OrderSide(side), price, qty, fee, Liquidity.TAKER, 0.0,
                trade or f"{venue}-{side}-{qty}-{price}")


def test_position_book_average_cost_and_flip() -> None:
    book = PositionBook()
    book.apply(fill("buy", 1.0, 100.0, fee=0.1))
    book.apply(fill("buy", 3.0, 104.0, fee=0.3))
    p = book.position("X", mark=110.0)
    assert (p.net_quantity, p.average_entry) == (4.0, 103.0)  # (100 + 3 x 104) / 4
    assert p.unrealized_pnl == pytest.approx(28.0)
    book.apply(fill("sell", 5.0, 101.0, fee=0.5))
    p = book.position("X", mark=100.0)
    assert p.realized_pnl == pytest.approx(-8.0)  # 4 x (101 - 103)
    assert (p.net_quantity, p.average_entry) == (-1.0, 101.0)
    assert p.unrealized_pnl == pytest.approx(1.0)  # short 1 from 101, mark 100
    assert p.fees == pytest.approx(0.9)
    assert p.net_pnl == pytest.approx(-8.0 + 1.0 - 0.9)


def test_position_book_counts_a_fill_once_and_closes_exactly() -> None:
    book = PositionBook()
    f = fill("buy", 0.1, 10.0, trade="t1")
    assert book.apply(f) is True
    assert book.apply(f) is False  # the same fill reported again
    book.apply(fill("buy", 0.2, 10.0, trade="t2"))
    book.apply(fill("sell", 0.3, 11.0, trade="t3"))
    p = book.position("X", mark=12.0)
    assert p.net_quantity == 0.0 and p.average_entry is None and p.unrealized_pnl == 0.0
    assert p.realized_pnl == pytest.approx(0.3)
    assert p.fills == 3


def test_per_venue_and_per_symbol_views_differ_on_purpose() -> None:
    book = PositionBook()
    book.apply(fill("buy", 1.0, 100.0, venue="a"))
    book.apply(fill("sell", 1.0, 102.0, venue="b"))
    total = book.positions({"X": 101.0})
    assert [(p.net_quantity, p.realized_pnl) for p in total] == [(0.0, 2.0)]
    per_venue = {p.venue: p for p in book.positions({"X": 101.0}, by_venue=True)}
    assert per_venue["a"].net_quantity == 1.0 and per_venue["a"].unrealized_pnl == pytest.approx(1.0)
    assert per_venue["b"].net_quantity == -1.0 and per_venue["b"].unrealized_pnl == pytest.approx(1.0)
    assert per_venue["a"].realized_pnl == per_venue["b"].realized_pnl == 0.0


def test_tca_functions_by_hand() -> None:
    assert slippage_bps(OrderSide.SELL, 99.0, 100.0) == pytest.approx(100.0)  # sold under: a cost
    assert slippage_bps(OrderSide.BUY, 99.0, 100.0) == pytest.approx(-100.0)
    fills = [fill("sell", 2.0, 99.0, fee=0.2)]
    s = implementation_shortfall(OrderSide.SELL, 100.0, fills, 3.0, last_price=97.0)
    assert (s.execution_cost, s.fees, s.opportunity_cost) == (pytest.approx(2.0), 0.2, pytest.approx(3.0))
    assert s.total == pytest.approx(5.2) and s.bps == pytest.approx(5.2 / 300 * 1e4)
    schedule = [(10.0, 1.0), (20.0, 2.0)]
    assert [schedule_target(schedule, t) for t in (5, 10, 15, 20, 99)] == [0.0, 1.0, 1.0, 2.0, 2.0]
