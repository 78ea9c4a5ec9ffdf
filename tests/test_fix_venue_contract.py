"""FixVenue against a scripted FIX acceptor that answers per the wire contract, for what the
venue server may not answer yet: SecurityList (instruments, filters, fees), market data
(snapshot, incremental changes, public trades), cancel/replace, Commission/liquidity/TradeID
on fills, and reconciliation by mass status after a drop (a fill learned by status, a parked
report delivered by resend, each counted once)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest

from engine.market_data import ExecutionReport, PublicTrade
from engine.models import FeeSchedule, Liquidity, Order, OrderStatus
from engine.venues.fix import Tag
from engine.venues.fixio.venue import FixVenue
from tests.fix_venue_helpers import WAIT, NetLoop, ScriptedVenue, wait_for


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"



@pytest.fixture
def scripted(net: NetLoop) -> Iterator[ScriptedVenue]:
    venue = ScriptedVenue()
    net.run(venue.start())
    try:
        yield venue
    finally:
        net.run(venue.stop())


@pytest.fixture
def venue(scripted: ScriptedVenue) -> Iterator[FixVenue]:
    fv = FixVenue("127.0.0.1", scripted.port, request_timeout=WAIT, connect_timeout=WAIT)
    fv.connect()
    try:
        yield fv
    finally:
        fv.close()



def test_instruments_filters_and_fees_come_from_the_security_list(venue: FixVenue) -> None:
    btc = venue.instruments()["BTC/USD"]
    assert (btc.tick_size, btc.lot_size, btc.min_quantity, btc.max_quantity, btc.min_notional) == (
        Decimal("0.5"), Decimal("0.001"), Decimal("0.002"), Decimal("5"), Decimal("10"))
    assert btc.max_notional is None
    assert set(venue.instruments()) == {"BTC/USD", "ETH/USD"}
    assert venue.fees == FeeSchedule(maker_bps=1.5, taker_bps=4.0)
    assert venue.name == "fix-%d" % venue.port


def test_books_follow_the_snapshot_then_incremental_changes(venue: FixVenue, scripted: ScriptedVenue, net) -> None:
    book = venue.book("BTC/USD")
    assert [(lv.price, lv.quantity, lv.orders) for lv in book.bids] == [(99.0, 2.0, 3), (98.5, 4.0, 1)]
    assert [(lv.price, lv.quantity) for lv in book.asks] == [(101.0, 1.5)]
    assert venue.book("BTC/USD", depth=1).bids == book.bids[:1]
    trades: list[PublicTrade] = []
    venue.add_trade_listener(trades.append)

    def update() -> None:
        scripted.send("X", [
            (262, scripted.md_req_id), (268, "4"),
            (279, "2"), (269, "0"), (55, "BTC/USD"), (270, "99"),
            (279, "1"), (269, "1"), (55, "BTC/USD"), (270, "101"), (271, "0.5"), (346, "1"),
            (279, "0"), (269, "1"), (55, "BTC/USD"), (270, "100.5"), (271, "0.25"), (346, "1"),
            (279, "0"), (269, "2"), (55, "BTC/USD"), (270, "100.5"), (271, "0.1"), (2446, "2"),
        ])

    net.call(update)
    wait_for(lambda: trades, "the public trade")
    book = venue.book("BTC/USD")
    assert [(lv.price, lv.quantity) for lv in book.bids] == [(98.5, 4.0)]
    assert [(lv.price, lv.quantity) for lv in book.asks] == [(100.5, 0.25), (101.0, 0.5)]
    [trade] = trades
    assert (trade.symbol, trade.price, trade.quantity, trade.aggressor.value) == ("BTC/USD", 100.5, 0.1, "SELL")
    assert venue.trades("BTC/USD") == [trade] and venue.trades("BTC/USD", since=trade.ts_event) == []
    with pytest.raises(KeyError, match="unknown symbol 'XRP/USD'"):
        venue.book("XRP/USD")


def test_a_fill_carries_the_venues_commission_liquidity_and_trade_id(venue: FixVenue) -> None:
    result = venue.submit(Order(id="f1", symbol="BTC/USD", side="BUY", type="LIMIT", quantity=0.01, price=100.0))
    assert result.status is OrderStatus.FILLED
    [fill] = result.fills
    assert (fill.price, fill.quantity, fill.fee, fill.liquidity, fill.trade_id) == (
        100.0, 0.01, 0.25, Liquidity.TAKER, "T-f1")


@pytest.mark.anyio
async def test_amend_by_cancel_replace_keeps_the_engines_id(venue: FixVenue, scripted: ScriptedVenue) -> None:
    rested = await venue.submit_async(Order(id="a1", symbol="BTC/USD", side="BUY", type="LIMIT",
                                            quantity=0.01, price=95.0))
    assert rested.status is OrderStatus.NEW
    amended = await venue.amend_async("a1", quantity=0.03, price=96.0)
    assert (amended.order_id, amended.status, amended.quantity, amended.price) == ("a1", OrderStatus.NEW, 0.03, 96.0)
    [g] = [m for m in scripted.received if m.msg_type == "G"]
    assert g.get(Tag.OrigClOrdID) == "a1" and g.get(Tag.ClOrdID) != "a1"
    # The venue now knows it by the replace's ClOrdID; the engine still says a1.
    status = await venue.status_async("a1")
    assert (status.order_id, status.quantity, status.price) == ("a1", 0.03, 96.0)
    nothing = await venue.amend_async("a1")
    assert nothing.status is OrderStatus.REJECTED and "give a new quantity or a new price" in nothing.reason


def test_after_a_drop_what_changed_is_reported_once_each(venue: FixVenue, scripted: ScriptedVenue, net) -> None:
    reports: list[ExecutionReport] = []
    venue.add_report_listener(reports.append)
    for cid in ("r1", "r2", "r3", "r4"):
        order = Order(id=cid, symbol="BTC/USD", side="BUY", type="LIMIT", quantity=0.02, price=95.0)
        assert venue.submit(order).status is OrderStatus.NEW
    logons = scripted.logons
    net.call(scripted.drop)
    wait_for(lambda: venue.session_info().state != "logged on", "the drop to be seen")

    def while_down() -> None:
        now = time.time()
        # r1 filled while down: the venue parked its report (delivered by resend) and
        # the mass status will not list it (it is no longer working).
        scripted.orders["r1"].update(cum=0.02, avg=95.0, status="2")
        scripted.park(scripted.er("r1", "F", last=("95", "0.02")), now)
        # r2 half filled: its report parked and its status in the mass status, both.
        scripted.orders["r2"].update(cum=0.01, avg=95.0, status="1")
        scripted.park(scripted.er("r2", "F", last=("95", "0.01")), now)
        # r3 canceled by the venue: its status says so.
        scripted.orders["r3"].update(status="4")
        # r4 half filled: no report parked, only its status says so.
        scripted.orders["r4"].update(cum=0.01, avg=94.5, status="1")

    net.call(while_down)
    wait_for(lambda: scripted.logons > logons and len(reports) >= 4, "the reports after the re-Logon")
    time.sleep(0.2)  # anything counted twice would have arrived by now
    by_order = {cid: [r for r in reports if r.client_order_id == cid] for cid in ("r1", "r2", "r3", "r4")}
    [r1] = by_order["r1"]
    assert (r1.status, r1.filled_quantity, r1.fill.quantity, r1.fill.price) == (OrderStatus.FILLED, 0.02, 0.02, 95.0)
    [r2] = by_order["r2"]
    assert (r2.status, r2.filled_quantity, r2.fill.quantity, r2.fill.price) == (
        OrderStatus.PARTIALLY_FILLED, 0.01, 0.01, 95.0)
    [r4] = by_order["r4"]
    assert (r4.status, r4.filled_quantity, r4.fill.quantity, r4.fill.price) == (
        OrderStatus.PARTIALLY_FILLED, 0.01, 0.01, 94.5)
    [r3] = by_order["r3"]
    assert (r3.status, r3.fill) == (OrderStatus.CANCELED, None)
    assert [m.msg_type for m in scripted.received].count("AF") == 1
    info = venue.session_info()
    assert info.state == "logged on" and info.reconnects == 1
    assert info.next_outgoing == scripted.store.next_incoming  # one sequence across connections
    assert {m.msg_type for m in scripted.received} >= {"x", "V", "D", "AF", "H"}


def resting(venue: FixVenue, cid: str, qty: float = 0.01) -> None:
    result = venue.submit(Order(id=cid, symbol="BTC/USD", side="BUY", type="LIMIT", quantity=qty, price=99.0))
    assert result.status is OrderStatus.NEW


@pytest.mark.parametrize(("change", "why"), [
    (lambda body: [f for f in body if f[0] != Tag.CumQty], "CumQty(14) missing"),
    (lambda body: [(t, "nan" if t == Tag.CumQty else v) for t, v in body], "CumQty(14) 'nan' is not a quantity"),
    (lambda body: [(t, "1000000000" if t == Tag.CumQty else v) for t, v in body],
     "CumQty(14) 1000000000 is above the order's quantity 0.01"),
    (lambda body: [(t, "Z" if t == Tag.ExecType else v) for t, v in body], "ExecType(150) 'Z' is not one FIX 4.4 defines"),
    (lambda body: [(t, "Q" if t == Tag.OrdStatus else v) for t, v in body], "OrdStatus(39) 'Q' is not one FIX 4.4 defines"),
])
def test_a_report_that_cannot_be_read_is_logged_and_believed_in_nothing(venue, scripted, net, caplog, change, why) -> None:
    reports: list[ExecutionReport] = []
    venue.add_report_listener(reports.append)
    resting(venue, "odd-1")
    order = scripted.orders["odd-1"]
    order.update(cum=0.01, avg=99.0, status="2")
    net.call(scripted.send, "8", change(scripted.er("odd-1", "F", last=("99", "0.01"))))
    wait_for(lambda: why in caplog.text, "the warning")
    assert reports == []
    assert f"execution report for odd-1 ignored: {why}" in caplog.text
    net.call(scripted.send, "8", scripted.er("odd-1", "F", last=("99", "0.01")))  # the good one counts, once
    wait_for(lambda: reports, "the fill")
    assert [(r.status, r.fill.quantity) for r in reports] == [(OrderStatus.FILLED, 0.01)]


def test_a_fill_reported_under_a_pending_cancels_id_counts_and_the_cancel_still_waits(venue, scripted, net) -> None:
    import threading

    reports: list[ExecutionReport] = []
    venue.add_report_listener(reports.append)
    resting(venue, "race-1", qty=0.02)
    scripted.hold_cancels = True
    answer: list[Any] = []
    worker = threading.Thread(target=lambda: answer.append(venue.cancel("race-1")))
    worker.start()
    wait_for(lambda: scripted.held, "the cancel at the venue")
    cancel_id = scripted.held[0].get(Tag.ClOrdID)
    order = scripted.orders["race-1"]
    order.update(cum=0.01, avg=99.0, status="1")
    net.call(scripted.send, "8", scripted.er("race-1", "F", wire=cancel_id, last=("99", "0.01"),
                                              extra=[(Tag.OrigClOrdID, "race-1")]))
    wait_for(lambda: reports, "the fill")
    assert [(r.status, r.fill.quantity) for r in reports] == [(OrderStatus.PARTIALLY_FILLED, 0.01)]
    assert worker.is_alive()  # the cancel is still waiting for its own answer
    order.update(status="4")
    net.call(scripted.send, "8", scripted.er("race-1", "4", wire=cancel_id, extra=[(Tag.OrigClOrdID, "race-1")]))
    worker.join(WAIT)
    [result] = answer
    assert (result.status, result.filled_quantity) == (OrderStatus.CANCELED, 0.01)


def test_a_working_order_the_venue_forgot_across_a_drop_ends_canceled_saying_why(venue, scripted, net) -> None:
    reports: list[ExecutionReport] = []
    venue.add_report_listener(reports.append)
    resting(venue, "lost-1")
    logons = scripted.logons
    scripted.orders.clear()  # the venue comes back without its state
    net.call(scripted.drop)
    wait_for(lambda: scripted.logons > logons and reports, "the reconnect and the report")
    [report] = reports
    assert (report.client_order_id, report.status) == ("lost-1", OrderStatus.CANCELED)
    assert "no longer knows the order after the reconnect" in (report.reason or "")


def test_a_venue_closed_and_connected_again_keeps_its_numbers(scripted, tmp_path) -> None:
    fv = FixVenue("127.0.0.1", scripted.port, request_timeout=WAIT, connect_timeout=WAIT, state_dir=tmp_path)
    fv.connect()
    fv.close()
    before = fv.session_info().next_outgoing
    fv.connect()
    try:
        info = fv.session_info()
        assert info.state == "logged on" and info.next_outgoing > before and info.last_error is None
    finally:
        fv.close()
