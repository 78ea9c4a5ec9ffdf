"""The FIX venue server over real TCP on 127.0.0.1 (a free port): a client built on our own
session and driver, and one written with simplefix over a plain socket, trade with
simulated exchanges whose market is frozen (a VirtualClock nobody advances), so every
price and quantity is the simulator's and known in advance."""

from __future__ import annotations

import asyncio

import anyio
import pytest
import simplefix

from engine.clock import VirtualClock
from engine.errors import ConfigurationError
from engine.models import Order, OrderSide, OrderStatus, OrderType
from engine.venues.fix import FixSession, Message, MsgType, Role, SessionConfig, SessionStatus, Tag
from engine.venues.fix.store import SessionStore
from engine.venues.fixio.driver import open_fix_connection
from engine.venues.fixio.server import FixVenueServer, fix_number
from engine.venues.sim.exchange import SimulatedExchange

WAIT = 10.0  # seconds any single answer may take on a loaded machine before the test fails


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def venues() -> dict[str, SimulatedExchange]:
    clock = VirtualClock()
    return {name: SimulatedExchange(name, clock=clock, seed=7) for name in ("swift", "deep")}


@pytest.fixture
async def server(venues):
    srv = FixVenueServer(venues, comp_id="VENUE")
    await srv.start()
    try:
        yield srv
    finally:
        with anyio.fail_after(WAIT):
            await srv.stop()


class Client:
    """An initiator on our own session and driver; every application message it receives
    lands in `inbox`."""

    def __init__(self, comp_id: str = "DESK", store: SessionStore | None = None) -> None:
        self.inbox: asyncio.Queue[Message] = asyncio.Queue()
        self.events: list = []
        # Reconnecting as the same counterparty: pass the last connection's store (its numbers).
        self.session = FixSession(SessionConfig(comp_id, "VENUE", heart_bt_int=30), Role.INITIATOR, store)

    async def connect(self, port: int) -> None:
        self.connection, self.task = await open_fix_connection(
            "127.0.0.1", port, self.session, on_message=self.inbox.put_nowait, on_event=self.events.append)
        with anyio.fail_after(WAIT):
            await self.connection.logged_on.wait()

    def send(self, msg_type: str, *fields) -> None:
        self.connection.send(msg_type, list(fields))

    async def next(self) -> Message:
        with anyio.fail_after(WAIT):
            return await self.inbox.get()

    def order(self, cid: str, side: str, qty: str, price: str | None, *, symbol="BTC/USD", tif="1", extra=()):
        body = [(Tag.ClOrdID, cid), (Tag.Symbol, symbol), (Tag.Side, side), (Tag.OrderQty, qty),
                (Tag.OrdType, "2" if price else "1"), (Tag.TimeInForce, tif), *extra]
        if price:
            body.append((Tag.Price, price))
        self.connection.send(MsgType.NEW_ORDER_SINGLE, body)

    async def close(self) -> None:
        self.connection.logout()
        with anyio.fail_after(WAIT):
            await self.task
        assert self.session.status is SessionStatus.CLOSED


@pytest.fixture
async def client(server):
    c = Client()
    await c.connect(server.port)
    try:
        yield c
    finally:
        if not c.connection.closed.is_set():
            await c.close()


def book(venue: SimulatedExchange):
    snap = venue.book("BTC/USD")
    return snap.best_bid, snap.best_ask


@pytest.mark.anyio
async def test_a_crossing_order_filled_at_once_gets_one_trade_report_at_the_simulators_price(client, venues):
    venue = venues["swift"]
    _, ask = book(venue)
    client.order("buy-1", "1", "0.01", fix_number(ask))
    trade = await client.next()  # filled in full at once: the Trade ER is the acknowledgment
    result = venue.status("buy-1")
    assert result.status is OrderStatus.FILLED and len(result.fills) == 1
    assert (trade.msg_type, trade.get(Tag.ExecType), trade.get(Tag.OrdStatus)) == ("8", "F", "2")
    assert float(trade.get(Tag.LastPx)) == result.fills[0].price == ask
    assert float(trade.get(Tag.LastQty)) == result.fills[0].quantity == 0.01
    assert float(trade.get(Tag.AvgPx)) == result.average_price
    assert (trade.get(Tag.CumQty), trade.get(Tag.LeavesQty)) == ("0.01", "0")
    assert trade.get(Tag.OrderID) == "swift:buy-1"
    # More than the touch holds, at the touch's price: New first, then the partial fill.
    size = venue.book("BTC/USD").asks[0].quantity
    client.order("buy-2", "1", fix_number(round(size + 0.01, 4)), fix_number(ask))
    new, part = await client.next(), await client.next()
    assert (new.get(Tag.ExecType), new.get(Tag.OrdStatus), new.get(Tag.CumQty)) == ("0", "0", "0")
    assert (part.get(Tag.ExecType), part.get(Tag.OrdStatus)) == ("F", "1")
    assert part.get(Tag.ExecID) != new.get(Tag.ExecID)


@pytest.mark.anyio
async def test_a_resting_order_is_canceled_and_a_second_cancel_is_refused(client, venues):
    venue = venues["swift"]
    bid, _ = book(venue)
    low = fix_number(round(bid * 0.9, 2))
    client.order("rest-1", "1", "0.01", low)
    new = await client.next()
    assert new.get(Tag.OrdStatus) == "0" and [o.order_id for o in venue.open_orders()] == ["rest-1"]
    client.connection.send(MsgType.ORDER_CANCEL_REQUEST, [(Tag.OrigClOrdID, "rest-1"), (Tag.ClOrdID, "cxl-1"),
                                                         (Tag.Symbol, "BTC/USD"), (Tag.Side, "1")])
    canceled = await client.next()
    assert (canceled.get(Tag.ExecType), canceled.get(Tag.OrdStatus)) == ("4", "4")
    assert (canceled.get(Tag.ClOrdID), canceled.get(Tag.OrigClOrdID)) == ("cxl-1", "rest-1")
    assert canceled.get(Tag.LeavesQty) == "0" and venue.open_orders() == []
    client.connection.send(MsgType.ORDER_CANCEL_REQUEST, [(Tag.OrigClOrdID, "rest-1"), (Tag.ClOrdID, "cxl-2")])
    refused = await client.next()
    assert refused.msg_type == "9"
    assert (refused.get(Tag.CxlRejReason), refused.get(Tag.OrdStatus), refused.get(Tag.CxlRejResponseTo)) == ("0", "4", "1")
    assert "already CANCELED" in refused.get(Tag.Text)
    client.connection.send(MsgType.ORDER_CANCEL_REQUEST, [(Tag.OrigClOrdID, "never"), (Tag.ClOrdID, "cxl-3")])
    unknown = await client.next()
    assert (unknown.msg_type, unknown.get(Tag.CxlRejReason)) == ("9", "1")
    assert unknown.get(Tag.Text) == "order 'never' is not known"


@pytest.mark.anyio
async def test_status_request_answers_with_exec_type_status(client, venues):
    bid, _ = book(venues["swift"])
    client.order("rest-2", "1", "0.02", fix_number(round(bid * 0.9, 2)))
    await client.next()
    client.connection.send(MsgType.ORDER_STATUS_REQUEST, [(Tag.ClOrdID, "rest-2"), (Tag.Symbol, "BTC/USD"),
                                                         (Tag.Side, "1"), (790, "q1")])
    status = await client.next()
    assert (status.get(Tag.ExecType), status.get(Tag.OrdStatus)) == ("I", "0")
    assert (status.get(Tag.LeavesQty), status.get(Tag.CumQty), status.get(790)) == ("0.02", "0", "q1")
    client.connection.send(MsgType.ORDER_STATUS_REQUEST, [(Tag.ClOrdID, "nobody"), (Tag.Symbol, "BTC/USD"),
                                                         (Tag.Side, "1")])
    unknown = await client.next()
    assert (unknown.get(Tag.ExecType), unknown.get(Tag.OrdStatus)) == ("I", "8")
    assert unknown.get(Tag.Text) == "order 'nobody' is not known"


@pytest.mark.anyio
async def test_a_duplicate_cl_ord_id_is_rejected_and_makes_no_second_order(client, venues):
    venue = venues["swift"]
    bid, _ = book(venue)
    price = fix_number(round(bid * 0.9, 2))
    client.order("dup-1", "1", "0.01", price)
    await client.next()
    submitted = venue.counters.submitted
    client.order("dup-1", "1", "0.05", price)
    rejected = await client.next()
    assert (rejected.get(Tag.ExecType), rejected.get(Tag.OrdStatus), rejected.get(103)) == ("8", "8", "6")
    assert "duplicate ClOrdID 'dup-1'" in rejected.get(Tag.Text)
    assert [(o.order_id, o.quantity) for o in venue.open_orders()] == [("dup-1", 0.01)]
    assert venue.counters.submitted == submitted  # it never reached the venue


@pytest.mark.anyio
async def test_a_venue_refusal_is_an_er_rejected_with_the_venues_reason(client, venues):
    client.order("bad-tick", "1", "0.01", "100.001")
    rejected = await client.next()
    assert (rejected.get(Tag.ExecType), rejected.get(Tag.OrdStatus)) == ("8", "8")
    assert "not a multiple of the tick 0.01" in rejected.get(Tag.Text)
    client.order("bad-qty", "1", "-1", "100")
    invalid = await client.next()
    assert invalid.get(Tag.OrdStatus) == "8" and invalid.get(Tag.Text).startswith("invalid order:")


@pytest.mark.anyio
async def test_ex_destination_picks_the_venue_and_an_unknown_one_is_refused(client, venues):
    _, ask = book(venues["deep"])
    client.order("deep-1", "1", "0.01", fix_number(ask), extra=[(100, "deep")])
    assert (await client.next()).get(Tag.OrderID) == "deep:deep-1"
    assert venues["deep"].status("deep-1").status is OrderStatus.FILLED
    client.order("nowhere-1", "1", "0.01", "100", extra=[(207, "nowhere")])
    refused = await client.next()
    assert refused.get(Tag.OrdStatus) == "8"
    assert refused.get(Tag.Text) == "unknown venue 'nowhere' (venues: swift, deep)"


@pytest.mark.anyio
async def test_a_fill_of_a_resting_order_arrives_unsolicited(client, venues):
    venue = venues["swift"]
    bid, ask = book(venue)
    assert ask - bid > 0.02, "the frozen book needs room inside the spread"
    inside = round(ask - 0.01, 2)
    client.order("maker-1", "2", "0.03", fix_number(inside))
    assert (await client.next()).get(Tag.OrdStatus) == "0"
    # Someone else buys 0.01 at our price: our sell is the best offer, so it trades first.
    venue.submit(Order(id="other", client_order_id="other", symbol="BTC/USD", side=OrderSide.BUY,
                       type=OrderType.LIMIT, quantity=0.01, price=inside))
    fill = await client.next()
    assert (fill.get(Tag.ClOrdID), fill.get(Tag.ExecType), fill.get(Tag.OrdStatus)) == ("maker-1", "F", "1")
    assert (float(fill.get(Tag.LastPx)), fill.get(Tag.LastQty)) == (inside, "0.01")
    assert (fill.get(Tag.CumQty), fill.get(Tag.LeavesQty), float(fill.get(Tag.AvgPx))) == ("0.01", "0.02", inside)


@pytest.mark.anyio
async def test_unsupported_and_incomplete_messages_get_a_business_reject(client):
    client.connection.send("R", [(131, "quote-1"), (146, "1"), (55, "BTC/USD")])  # QuoteRequest: not spoken
    reject = await client.next()
    assert reject.msg_type == "j"
    assert (reject.get(Tag.RefMsgType), reject.get(Tag.BusinessRejectReason)) == ("R", "3")
    assert reject.get(Tag.Text) == "MsgType R is not supported"
    assert reject.get(Tag.RefSeqNum) == str(client.session.state.next_outgoing - 1)
    client.connection.send(MsgType.NEW_ORDER_SINGLE, [(Tag.ClOrdID, "half"), (Tag.Symbol, "BTC/USD")])
    missing = await client.next()
    assert (missing.msg_type, missing.get(Tag.BusinessRejectReason)) == ("j", "5")
    assert missing.get(Tag.Text) == "required field(s) missing: 54, 38, 40"


@pytest.mark.anyio
async def test_logout_ends_the_session_on_both_sides(server):
    c = Client()
    await c.connect(server.port)
    await c.close()
    assert c.connection.closed.is_set()


class SimplefixClient:
    """A FIX client written with simplefix over a plain asyncio stream: an independent
    reference for what we write and parse."""

    def __init__(self) -> None:
        self.parser = simplefix.FixParser()
        self.seq = 0

    async def connect(self, port: int) -> None:
        self.reader, self.writer = await asyncio.open_connection("127.0.0.1", port)

    def send(self, msg_type: str, *fields: tuple[int, str]) -> None:
        self.seq += 1
        m = simplefix.FixMessage()
        m.append_pair(8, "FIX.4.4")
        m.append_pair(35, msg_type)
        m.append_pair(49, "SF")
        m.append_pair(56, "VENUE")
        m.append_pair(34, self.seq)
        m.append_utc_timestamp(52, precision=3)
        for tag, value in fields:
            m.append_pair(tag, value)
        self.writer.write(m.encode())

    async def answer(self, wait: float = WAIT) -> simplefix.FixMessage:
        with anyio.fail_after(wait):
            while True:
                got = self.parser.get_message()
                if got is not None:
                    return got
                data = await self.reader.read(4096)
                assert data, "the venue closed the connection"
                self.parser.append_buffer(data)

    async def close(self) -> None:
        self.writer.close()
        await self.writer.wait_closed()


@pytest.mark.anyio
async def test_bytes_written_by_simplefix_are_accepted(server, venues):
    _, ask = book(venues["swift"])
    sf = SimplefixClient()
    await sf.connect(server.port)
    try:
        sf.send("A", (98, "0"), (108, "30"))
        logon = await sf.answer()
        assert (logon.get(35), logon.get(56), logon.get(108)) == (b"A", b"SF", b"30")
        sf.send("D", (11, "sf-1"), (55, "BTC/USD"), (54, "1"), (38, "0.01"), (40, "2"),
                (44, fix_number(ask)), (59, "3"))
        trade = await sf.answer()
        assert (trade.get(35), trade.get(150), trade.get(39), float(trade.get(31)), trade.get(32)) == (b"8", b"F", b"2", ask, b"0.01")
        sf.send("5")
        logout = await sf.answer()
        assert logout.get(35) == b"5"
    finally:
        await sf.close()


@pytest.mark.anyio
async def test_the_driver_runs_the_sessions_timer_heartbeats_with_nothing_arriving(server):
    # HeartBtInt 1: the venue's driver must tick by itself, with nothing arriving.
    sf = SimplefixClient()
    await sf.connect(server.port)
    try:
        sf.send("A", (98, "0"), (108, "1"))
        assert (await sf.answer()).get(35) == b"A"
        first, second = await sf.answer(wait=5.0), await sf.answer(wait=5.0)
        # A Heartbeat after 1 s of sending nothing; a TestRequest after 1 s + a fifth of
        # hearing nothing (this client never heartbeats).
        assert [(m.get(35), m.get(34)) for m in (first, second)] == [(b"0", b"2"), (b"1", b"3")]
    finally:
        await sf.close()


def test_a_non_loopback_host_is_refused_unless_allowed(venues):
    with pytest.raises(ConfigurationError, match="not a loopback address.*allow_remote=True"):
        FixVenueServer(venues, host="0.0.0.0")
    FixVenueServer(venues, host="0.0.0.0", allow_remote=True)  # no error: meant
    FixVenueServer(venues["swift"], host="::1")


def test_fix_numbers_have_no_exponent():
    assert [fix_number(x) for x in (0.01, 1e-05, 50000.0, 1234.5)] == ["0.01", "0.00001", "50000", "1234.5"]
