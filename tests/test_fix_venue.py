"""FixVenue against the real FIX venue server (frozen simulators: every price is the
simulator's, known in advance), through a proxy that loses answers and cuts the line, and
inside the Engine. Everything listens on 127.0.0.1, port 0, and stops by itself."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import anyio
import pytest

from engine import Engine
from engine.clock import VirtualClock
from engine.errors import UnknownOrderError, UnknownOutcomeError, VenueUnavailableError
from engine.events import BreakerStateChanged, OrderFilled, VenueSessionChanged
from engine.market_data import ExecutionReport
from engine.models import Liquidity, Order, OrderStatus
from engine.venues.fixio.server import FixVenueServer
from engine.venues.fixio.venue import FixVenue
from engine.venues.sim.exchange import SimulatedExchange
from tests.fix_venue_helpers import WAIT, NetLoop, Proxy, wait_for

SYMBOL = "BTC/USD"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"



@pytest.fixture
def sims() -> dict[str, SimulatedExchange]:
    clock = VirtualClock()  # nobody advances it: the market stays where it is
    return {name: SimulatedExchange(name, clock=clock, seed=7) for name in ("swift", "deep")}


@pytest.fixture
def server(net: NetLoop, sims: dict[str, SimulatedExchange]) -> Iterator[FixVenueServer]:
    srv = FixVenueServer(sims, comp_id="VENUE")
    net.run(srv.start())
    try:
        yield srv
    finally:
        net.run(srv.stop())


@pytest.fixture
def venue(server: FixVenueServer) -> Iterator[FixVenue]:
    fv = FixVenue("127.0.0.1", server.port, destination="swift", request_timeout=WAIT, connect_timeout=WAIT)
    fv.connect()
    try:
        yield fv
    finally:
        fv.close()


def touch(sim: SimulatedExchange) -> tuple[float, float]:
    snap = sim.book(SYMBOL)
    assert snap.best_bid is not None and snap.best_ask is not None
    return snap.best_bid, snap.best_ask


def limit(oid: str, side: str, qty: float, price: float, tif: str = "GTC") -> Order:
    return Order(id=oid, symbol=SYMBOL, side=side, type="LIMIT", quantity=qty, price=price, time_in_force=tif)


def market(oid: str, side: str = "BUY", qty: float = 0.01) -> Order:
    return Order(id=oid, symbol=SYMBOL, side=side, type="MARKET", quantity=qty)



# -- orders -------------------------------------------------------------------------------------


def test_a_market_order_fills_at_the_simulators_ask(venue: FixVenue, sims) -> None:
    _, ask = touch(sims["swift"])
    result = venue.submit(market("m1"))
    at_venue = sims["swift"].status("m1")
    assert (result.status, result.order_id, result.exchange_id) == (OrderStatus.FILLED, "m1", "swift")
    assert result.filled_quantity == 0.01 and result.average_price == ask == at_venue.average_price
    [fill] = result.fills
    assert (fill.price, fill.quantity, fill.liquidity, fill.order_id) == (ask, 0.01, Liquidity.TAKER, "m1")
    assert fill.trade_id
    assert sims["deep"].open_orders() == [] and sims["deep"].counters.submitted == 0  # ExDestination


def test_a_limit_order_rests_then_its_fill_arrives_as_a_report(venue: FixVenue, sims) -> None:
    reports: list[ExecutionReport] = []
    venue.add_report_listener(reports.append)
    bid, ask = touch(sims["swift"])
    inside = round(ask - 0.01, 2)
    result = venue.submit(limit("s1", "SELL", 0.01, inside))
    assert (result.status, result.filled_quantity, result.fills) == (OrderStatus.NEW, 0.0, [])
    assert [r.order_id for r in sims["swift"].open_orders()] == ["s1"]
    # Someone else's market buy takes our offer, the best on the book.
    taker = sims["swift"].submit(market("other", "BUY", 0.01))
    assert taker.average_price == inside
    wait_for(lambda: reports, "the fill report")
    [report] = reports
    assert (report.client_order_id, report.status, report.filled_quantity, report.leaves_quantity) == (
        "s1", OrderStatus.FILLED, 0.01, 0.0)
    assert report.fill is not None
    assert (report.fill.price, report.fill.quantity, report.fill.liquidity) == (inside, 0.01, Liquidity.MAKER)
    assert venue.status("s1").status is OrderStatus.FILLED


def test_an_ioc_remainder_expires_with_the_reason(venue: FixVenue, sims) -> None:
    _, ask = touch(sims["swift"])
    level = sims["swift"].book(SYMBOL).asks[0].quantity
    result = venue.submit(limit("ioc1", "BUY", round(level + 0.5, 3), ask, tif="IOC"))
    assert result.status is OrderStatus.EXPIRED
    assert result.filled_quantity == pytest.approx(level) and len(result.fills) >= 1
    assert all(f.price == ask for f in result.fills)
    assert result.reason and "IOC" in result.reason


def test_a_duplicate_client_order_id_is_rejected_with_the_reason_and_no_second_order(venue, sims) -> None:
    assert venue.submit(market("d1")).status is OrderStatus.FILLED
    again = venue.submit(market("d1"))
    assert again.status is OrderStatus.REJECTED
    assert "duplicate ClOrdID 'd1'" in again.reason
    bid, _ = touch(sims["swift"])
    assert venue.submit(limit("d2", "BUY", 0.01, round(bid - 100, 2))).status is OrderStatus.NEW
    working = venue.submit(limit("d2", "BUY", 0.01, round(bid - 100, 2)))
    assert working.status is OrderStatus.REJECTED and "duplicate ClOrdID 'd2'" in working.reason
    assert sims["swift"].counters.submitted == 2


def test_cancel_then_cancel_again_and_cancel_of_unknown(venue: FixVenue, sims) -> None:
    bid, _ = touch(sims["swift"])
    assert venue.submit(limit("c1", "BUY", 0.01, round(bid - 100, 2))).status is OrderStatus.NEW
    canceled = venue.cancel("c1")
    assert (canceled.status, canceled.order_id, canceled.filled_quantity) == (OrderStatus.CANCELED, "c1", 0.0)
    assert sims["swift"].open_orders() == []
    # As the simulator answers: REJECTED with the reason, never an exception.
    direct = sims["swift"].cancel("c1")
    again = venue.cancel("c1")
    assert again.status is OrderStatus.REJECTED and again.reason == direct.reason
    unknown = venue.cancel("nope")
    assert unknown.status is OrderStatus.REJECTED and unknown.order_id == "nope"
    assert unknown.reason.startswith("cancel refused: order 'nope' is not known")


def test_status_of_an_unknown_order_raises_unknown_order_error(venue: FixVenue) -> None:
    with pytest.raises(UnknownOrderError, match="'ghost' is not known"):
        venue.status("ghost")


def test_sync_calls_from_several_threads_at_once(venue: FixVenue, sims) -> None:
    results: dict[str, Any] = {}

    def trade(t: int) -> None:
        for i in range(15):
            cid = f"t{t}-{i}"
            results[cid] = venue.submit(market(cid, "BUY" if i % 2 else "SELL", 0.001))

    threads = [threading.Thread(target=trade, args=(t,)) for t in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(WAIT * 3)
    assert len(results) == 90
    assert all(r.status is OrderStatus.FILLED and r.order_id == cid for cid, r in results.items())
    assert sims["swift"].counters.submitted == 90


# -- connecting -----------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_venue_that_is_not_there_fails_connect_with_a_clear_error() -> None:
    port = _free_port()
    venue = FixVenue("127.0.0.1", port, connect_timeout=2.0)
    with pytest.raises(VenueUnavailableError, match=f"127.0.0.1:{port} cannot be reached"):
        venue.connect()
    assert venue.session_info().state == "closed"
    with pytest.raises(VenueUnavailableError, match="not connected"):
        venue.submit(market("x"))


def test_a_refused_logon_fails_connect_naming_the_refusal(net: NetLoop, sims) -> None:
    srv = FixVenueServer(sims, comp_id="VENUE", allowed_counterparties=frozenset({"SOMEONE"}))
    net.run(srv.start())
    try:
        venue = FixVenue("127.0.0.1", srv.port, connect_timeout=2.0)
        with pytest.raises(VenueUnavailableError, match="refused the Logon"):
            venue.connect()
    finally:
        net.run(srv.stop())


def test_an_answer_cut_across_reads_by_the_read_size_is_still_answered_whole(net, server, sims, monkeypatch):
    """A limit buy through the best ask for more than it shows: ER New then ER Trade
    (partially filled, resting), written together. Read 128 bytes at a time, they arrive
    over many reads; the submit's answer still carries the fill, not a bare New."""
    import engine.venues.fixio.venue as venue_module

    monkeypatch.setattr(venue_module, "_READ_SIZE", 128)
    venue = FixVenue("127.0.0.1", server.port, destination="swift", request_timeout=WAIT, connect_timeout=WAIT)
    venue.connect()
    try:
        level = sims["swift"].book(SYMBOL).asks[0]
        qty = round(level.quantity + 0.01, 8)
        result = venue.submit(limit("cut-1", "BUY", qty, level.price))
        assert result.status is OrderStatus.PARTIALLY_FILLED
        assert [(f.price, f.quantity) for f in result.fills] == [(level.price, level.quantity)]
        assert result.filled_quantity == pytest.approx(level.quantity)
    finally:
        venue.close()


# -- answers that never come ----------------------------------------------------------------------


def test_requests_whose_answers_are_lost_fail_after_request_timeout_and_answered_ones_never_do(net, server, sims):
    proxy = Proxy(server.port)
    net.run(proxy.start())
    venue = FixVenue("127.0.0.1", proxy.port, destination="swift", request_timeout=0.3, connect_timeout=WAIT)
    venue.connect()
    try:
        answered = venue.submit(market("kept"))
        assert answered.status is OrderStatus.FILLED
        proxy.blackhole = True  # from now on the venue's answers are lost
        with pytest.raises(UnknownOutcomeError, match=r"no answer to the order 'gone-1' within 0.3 s"):
            venue.submit(market("gone-1"))
        with pytest.raises(UnknownOutcomeError, match=r"no answer to the status of 'kept' within 0.3 s"):
            venue.status("kept")
        with pytest.raises(UnknownOutcomeError, match=r"no answer to the order 'gone-2' within 0.3 s"):
            venue.submit(market("gone-2"))  # the one timer serves the requests that come after
        assert sims["swift"].counters.submitted == 3  # they reached the venue; only the answers were lost
        proxy.blackhole = False
        time.sleep(0.5)  # past the deadline of an answered request: nothing expires twice
        assert venue.submit(market("after")).status is OrderStatus.FILLED
    finally:
        venue.close()
        net.run(proxy.stop())


# -- a drop with an order in flight ---------------------------------------------------------------


def test_an_order_whose_answer_was_lost_in_a_drop_gets_its_true_result_after_reconnect(net, server, sims) -> None:
    proxy = Proxy(server.port)
    net.run(proxy.start())
    venue = FixVenue("127.0.0.1", proxy.port, destination="swift", request_timeout=WAIT, connect_timeout=WAIT)
    venue.connect()
    try:
        _, ask = touch(sims["swift"])
        proxy.blackhole = True  # the venue fills it; the answer never arrives
        box: dict[str, Any] = {}
        sender = threading.Thread(target=lambda: box.setdefault("r", venue.submit(market("lost1"))))
        sender.start()
        wait_for(lambda: sims["swift"].counters.submitted == 1, "the order at the venue")
        assert sims["swift"].status("lost1").status is OrderStatus.FILLED
        proxy.blackhole = False
        net.call(proxy.drop)
        sender.join(WAIT * 2)
        result = box["r"]
        assert (result.status, result.filled_quantity, result.average_price) == (OrderStatus.FILLED, 0.01, ask)
        assert sims["swift"].counters.submitted == 1  # never sent twice
        info = venue.session_info()
        assert info.state == "logged on" and info.reconnects >= 1 and proxy.connections >= 2
        assert venue.submit(market("after")).status is OrderStatus.FILLED
    finally:
        venue.close()
        net.run(proxy.stop())


# -- inside the Engine ------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_the_engine_trades_through_a_fix_venue_and_survives_a_drop(net, server, sims) -> None:
    proxy = Proxy(server.port)
    net.run(proxy.start())
    venue = FixVenue("127.0.0.1", proxy.port, name="fix", destination="swift", request_timeout=WAIT,
                     connect_timeout=WAIT)
    await anyio.to_thread.run_sync(venue.connect)
    engine = Engine(venues={"fix": venue}, risk=None)
    await engine.start(num_workers=2)
    sub = engine.subscribe(name="test")
    try:
        bid, ask = touch(sims["swift"])
        buy = await engine.wait(await engine.submit(market("e-buy", "BUY", 0.02), venue="fix"), timeout=WAIT)
        assert (buy.status, buy.filled_quantity, buy.average_price) == (OrderStatus.FILLED, 0.02, ask)

        inside = round(ask - 0.01, 2)
        await engine.submit(limit("e-sell", "SELL", 0.01, inside), venue="fix")
        with anyio.fail_after(WAIT):
            while engine.status("e-sell").status is not OrderStatus.NEW:
                await anyio.sleep(0.01)
        sims["swift"].submit(market("someone", "BUY", 0.01))  # takes our offer
        with anyio.fail_after(WAIT):
            while engine.status("e-sell").status is not OrderStatus.FILLED:
                await anyio.sleep(0.01)

        # An order in flight when the line drops: filled at the venue, its answer lost.
        proxy.blackhole = True
        lost = await engine.submit(market("e-lost", "SELL", 0.01), venue="fix")
        with anyio.fail_after(WAIT):
            while sims["swift"].counters.submitted < 4:  # e-buy, e-sell, someone's, e-lost
                await anyio.sleep(0.01)
        proxy.blackhole = False
        net.call(proxy.drop)
        result = await engine.wait(lost, timeout=WAIT * 2)
        assert (result.status, result.filled_quantity) == (OrderStatus.FILLED, 0.01)
        assert sims["swift"].status("e-lost").status is OrderStatus.FILLED
        assert sims["swift"].counters.submitted == 4  # nothing twice

        events = sub.drain()
        fills = [e for e in events if isinstance(e, OrderFilled)]
        assert {e.order_id for e in fills} == {"e-buy", "e-sell", "e-lost"}
        # The drop and the new Logon are in the one event stream, for the desk's log.
        sessions = [(e.venue, e.state) for e in events if isinstance(e, VenueSessionChanged)]
        assert sessions == [("fix", "reconnecting"), ("fix", "logged on")]
        # The breaker was held open while the session was down, and let go at the Logon.
        moves = [(e.new_state, e.reason) for e in events if isinstance(e, BreakerStateChanged)]
        assert [m[0] for m in moves] == ["OPEN", "CLOSED"]
        assert moves[0][1].startswith("forced open by FIX session: reconnecting")
        assert engine.router.breaker("fix").forced is None
        [btc] = [p for p in engine.positions() if p.symbol == SYMBOL]
        assert btc.net_quantity == pytest.approx(0.0) and btc.bought == pytest.approx(0.02)
        assert btc.sold == pytest.approx(0.02) and btc.fills == len(fills)
    finally:
        await engine.stop(drain=False)
        await anyio.to_thread.run_sync(venue.close)
        net.run(proxy.stop())


@pytest.mark.anyio
async def test_on_the_callers_own_loop_orders_go_with_no_thread_and_sync_callers_still_reach_it(server, sims) -> None:
    _, ask = touch(sims["swift"])
    fv = await FixVenue("127.0.0.1", server.port, destination="swift", request_timeout=WAIT,
                        connect_timeout=WAIT).connect_async()
    try:
        assert fv.session_info().state == "logged on"
        results = await asyncio.gather(*(fv.submit_async(market(f"own-{i}")) for i in range(20)))
        assert {r.status for r in results} == {OrderStatus.FILLED}
        assert all(r.average_price == ask for r in results[:1])
        # A sync caller on another thread (the sync router, the desk) goes through the queue.
        other = await anyio.to_thread.run_sync(fv.status, "own-0")
        assert (other.status, other.filled_quantity) == (OrderStatus.FILLED, 0.01)
        with pytest.raises(RuntimeError, match="would block it; await close_async"):
            fv.close()
    finally:
        await fv.close_async()
    assert fv.session_info().state == "closed"
    with pytest.raises(VenueUnavailableError, match="not connected"):
        await fv.submit_async(market("after"))
