"""The venue server's order messages beyond D/F/H basics: cancel/replace (G) with the order
known by every ClOrdID it had, the fee and liquidity tags on fills, ExDestination on every
ER, mass status (AF) per counterparty, and one live connection per CompID. Over real TCP
on 127.0.0.1 against simulators whose market is frozen (a VirtualClock nobody advances)."""

from __future__ import annotations

import pytest

from engine.models import Order, OrderSide, OrderType
from engine.venues.fix import MsgType, SessionStatus, Tag
from engine.venues.fix.store import SessionStore
from engine.venues.fixio.driver import open_fix_connection
from engine.venues.fixio.server import fix_number
from tests import test_fix_server as base
from tests.test_fix_server import WAIT, Client, book

# The fixtures of the basic tests (frozen simulators, a server, a logged-on client).
anyio_backend, venues, server, client = base.anyio_backend, base.venues, base.server, base.client

import anyio


def cancel_replace(client: Client, orig: str, cid: str, qty: str, price: str, *, side="1", symbol="BTC/USD"):
    client.send(MsgType.ORDER_CANCEL_REPLACE_REQUEST, (Tag.OrigClOrdID, orig), (Tag.ClOrdID, cid),
                (Tag.Symbol, symbol), (Tag.Side, side), (Tag.OrderQty, qty), (Tag.OrdType, "2"), (Tag.Price, price))


def status_request(client: Client, cid: str) -> None:
    client.send(MsgType.ORDER_STATUS_REQUEST, (Tag.ClOrdID, cid), (Tag.Symbol, "BTC/USD"), (Tag.Side, "1"))


@pytest.mark.anyio
async def test_a_replace_changes_quantity_and_price_and_the_order_answers_to_both_ids(client, venues):
    venue = venues["swift"]
    bid, _ = book(venue)
    low, lower = round(bid * 0.9, 2), round(bid * 0.8, 2)
    client.order("r-1", "1", "0.01", fix_number(low))
    assert (await client.next()).get(Tag.OrdStatus) == "0"
    cancel_replace(client, "r-1", "r-2", "0.03", fix_number(lower))
    replaced = await client.next()
    assert (replaced.msg_type, replaced.get(Tag.ExecType), replaced.get(Tag.OrdStatus)) == ("8", "5", "0")
    assert (replaced.get(Tag.ClOrdID), replaced.get(Tag.OrigClOrdID)) == ("r-2", "r-1")
    assert (replaced.get(Tag.OrderQty), float(replaced.get(Tag.Price))) == ("0.03", lower)
    assert (replaced.get(Tag.LeavesQty), replaced.get(Tag.OrderID), replaced.get(100)) == ("0.03", "swift:r-1", "swift")
    [resting] = venue.open_orders()
    assert (resting.order_id, resting.quantity, resting.price) == ("r-1", 0.03, lower)
    for asked in ("r-1", "r-2"):
        status_request(client, asked)
        status = await client.next()
        assert (status.get(Tag.ExecType), status.get(Tag.OrdStatus), status.get(Tag.ClOrdID)) == ("I", "0", asked)
        assert (status.get(Tag.OrderQty), float(status.get(Tag.Price))) == ("0.03", lower)
    # A second replace may name either id; the third id cancels it.
    cancel_replace(client, "r-1", "r-3", "0.02", fix_number(lower))
    assert (await client.next()).get(Tag.ExecType) == "5"
    client.send(MsgType.ORDER_CANCEL_REQUEST, (Tag.OrigClOrdID, "r-2"), (Tag.ClOrdID, "r-4"))
    canceled = await client.next()
    assert (canceled.get(Tag.ExecType), canceled.get(Tag.ClOrdID), canceled.get(Tag.OrigClOrdID)) == ("4", "r-4", "r-2")
    assert canceled.get(Tag.OrderQty) == "0.02" and venue.open_orders() == []
    # Every id it had is taken: a new order with one of them is refused.
    client.order("r-3", "1", "0.01", fix_number(low))
    duplicate = await client.next()
    assert (duplicate.get(Tag.OrdStatus), duplicate.get(103)) == ("8", "6")


@pytest.mark.anyio
async def test_a_replace_to_a_crossing_price_trades_with_fee_and_liquidity_tags(client, venues):
    venue = venues["swift"]
    bid, ask = book(venue)
    client.order("x-1", "1", "0.01", fix_number(round(bid * 0.9, 2)))
    await client.next()
    cancel_replace(client, "x-1", "x-2", "0.01", fix_number(ask))
    replaced, trade = await client.next(), await client.next()
    assert (replaced.get(Tag.ExecType), replaced.get(Tag.OrdStatus)) == ("5", "0")
    assert (trade.get(Tag.ExecType), trade.get(Tag.OrdStatus), trade.get(Tag.ClOrdID)) == ("F", "2", "x-2")
    [fill] = venue.status("x-1").fills
    assert (float(trade.get(Tag.LastPx)), trade.get(Tag.LastQty)) == (ask, "0.01")
    assert (trade.get(12), trade.get(13), trade.get(851)) == (fix_number(fill.fee), "3", "2")
    assert fill.fee == pytest.approx(ask * 0.01 * 5 / 10_000)  # the taker fee, 5 bps
    assert trade.get(1003) == fill.trade_id and trade.get(100) == "swift"
    # Finished: a cancel or a replace now is too late, with its status.
    client.send(MsgType.ORDER_CANCEL_REQUEST, (Tag.OrigClOrdID, "x-2"), (Tag.ClOrdID, "x-3"))
    late = await client.next()
    assert (late.msg_type, late.get(Tag.CxlRejReason), late.get(Tag.OrdStatus)) == ("9", "0", "2")
    cancel_replace(client, "x-1", "x-4", "0.02", fix_number(ask))
    late = await client.next()
    assert (late.get(Tag.CxlRejResponseTo), late.get(Tag.CxlRejReason), late.get(Tag.OrdStatus)) == ("2", "0", "2")
    assert late.get(Tag.Text) == "order 'x-1' is already FILLED"


@pytest.mark.anyio
async def test_replace_refusals_name_what_was_wrong_and_leave_the_order_as_it_was(client, venues):
    venue = venues["swift"]
    bid, _ = book(venue)
    price = fix_number(round(bid * 0.9, 2))
    client.order("g-1", "1", "0.01", price)
    client.order("g-other", "1", "0.01", price)
    await client.next(), await client.next()
    cases = [
        (("nobody", "g-2", "0.02", price), "1", "order 'nobody' is not known"),
        (("g-1", "g-other", "0.02", price), "6", "duplicate ClOrdID 'g-other': it was used before"),
        (("g-1", "g-3", "0.02", "100.001"), "99", "not a multiple of the tick 0.01"),
        (("g-1", "g-4", "0.00001", price), "99", "under the minimum 0.0001"),
    ]
    for args, reason, text in cases:
        cancel_replace(client, *args)
        refused = await client.next()
        assert (refused.msg_type, refused.get(Tag.CxlRejResponseTo), refused.get(Tag.CxlRejReason)) == ("9", "2", reason)
        assert text in refused.get(Tag.Text)
    cancel_replace(client, "g-1", "g-5", "0.02", price, side="2")
    refused = await client.next()
    assert refused.get(Tag.Text) == "Side(54) cannot change in a replace: the order's is '1', the request's '2'"
    assert [(o.order_id, o.quantity) for o in venue.open_orders()] == [("g-1", 0.01), ("g-other", 0.01)]
    status_request(client, "g-5")  # a refused replace's ClOrdID names nothing
    assert (await client.next()).get(Tag.Text) == "order 'g-5' is not known"


@pytest.mark.anyio
async def test_a_maker_fill_carries_the_maker_fee_and_liquidity(client, venues):
    venue = venues["swift"]
    bid, ask = book(venue)
    inside = round(ask - 0.01, 2)
    client.order("m-1", "2", "0.02", fix_number(inside))
    new = await client.next()
    assert new.get(100) == "swift" and new.get(Tag.TimeInForce) == "1"
    venue.submit(Order(id="o", client_order_id="o", symbol="BTC/USD", side=OrderSide.BUY, type=OrderType.LIMIT,
                       quantity=0.02, price=inside))
    fill = await client.next()
    assert (fill.get(Tag.ExecType), fill.get(Tag.OrdStatus), fill.get(851), fill.get(13)) == ("F", "2", "1", "3")
    assert float(fill.get(12)) == pytest.approx(inside * 0.02 * 2 / 10_000)  # the maker fee, 2 bps
    assert fill.get(1003) == venue.status("m-1").fills[0].trade_id


@pytest.mark.anyio
async def test_mass_status_lists_only_this_counterpartys_working_orders(client, server, venues):
    bid, ask = book(venues["swift"])
    low = fix_number(round(bid * 0.9, 2))
    client.order("w-1", "1", "0.01", low)
    eth_bid = venues["swift"].book("ETH/USD").best_bid
    client.order("w-2", "1", "0.02", fix_number(round(eth_bid * 0.9, 2)), symbol="ETH/USD")
    client.order("w-3", "1", "0.01", low, extra=[(100, "deep")])
    client.order("done-1", "1", "0.01", fix_number(ask))
    for _ in range(4):  # three New, and done-1's one Trade (filled at once)
        await client.next()
    other = Client("OTHER")
    await other.connect(server.port)
    try:
        other.order("theirs-1", "1", "0.01", low)
        await other.next()
        client.send(MsgType.ORDER_MASS_STATUS_REQUEST, (584, "ms-1"), (585, "7"))
        reports = [await client.next() for _ in range(3)]
        assert [r.get(Tag.ClOrdID) for r in reports] == ["w-1", "w-2", "w-3"]
        assert {(r.get(Tag.ExecType), r.get(584), r.get(911)) for r in reports} == {("I", "ms-1", "3")}
        assert [r.get(912) for r in reports] == ["N", "N", "Y"]
        assert [r.get(100) for r in reports] == ["swift", "swift", "deep"]
        assert reports[1].get(Tag.LeavesQty) == "0.02"
        client.send(MsgType.ORDER_MASS_STATUS_REQUEST, (584, "ms-2"), (585, "1"), (55, "ETH/USD"))
        only = await client.next()
        assert (only.get(Tag.ClOrdID), only.get(911), only.get(912)) == ("w-2", "1", "Y")
        other.send(MsgType.ORDER_MASS_STATUS_REQUEST, (584, "ms-3"), (585, "7"))
        theirs = await other.next()
        assert (theirs.get(Tag.ClOrdID), theirs.get(911), theirs.get(912)) == ("theirs-1", "1", "Y")
        # Another counterparty's order is not this one's to ask about or cancel.
        other.send(MsgType.ORDER_CANCEL_REQUEST, (Tag.OrigClOrdID, "w-1"), (Tag.ClOrdID, "steal-1"))
        assert (await other.next()).get(Tag.CxlRejReason) == "1"
    finally:
        await other.close()
    client.send(MsgType.ORDER_MASS_STATUS_REQUEST, (584, "ms-4"), (585, "3"))
    reject = await client.next()
    assert (reject.msg_type, reject.get(Tag.BusinessRejectReason)) == ("j", "0")
    assert reject.get(Tag.Text) == "MassStatusReqType(585) '3' is not supported (7 all orders, 1 by Symbol)"


@pytest.mark.anyio
async def test_mass_status_with_nothing_working_is_one_none_report(client):
    client.send(MsgType.ORDER_MASS_STATUS_REQUEST, (584, "ms-0"), (585, "7"))
    none = await client.next()
    assert (none.get(Tag.OrderID), none.get(Tag.ClOrdID), none.get(Tag.OrdStatus)) == ("NONE", "NONE", "8")
    assert (none.get(584), none.get(911), none.get(912)) == ("ms-0", "0", "Y")


@pytest.mark.anyio
async def test_a_second_logon_with_a_comp_id_already_logged_on_is_logged_out(client, server):
    twin = Client("DESK")
    twin.connection, twin.task = await open_fix_connection(
        "127.0.0.1", server.port, twin.session, on_message=twin.inbox.put_nowait, on_event=twin.events.append)
    with anyio.fail_after(WAIT):
        await twin.task  # refused at its Logon: a Logout saying why, and the connection ends
    assert twin.session.status is SessionStatus.CLOSED and not twin.connection.logged_on.is_set()
    assert [e.text for e in twin.events if e.kind == "logged_out"] == ["SenderCompID DESK is already logged on"]
    client.send(MsgType.ORDER_MASS_STATUS_REQUEST, (584, "still"), (585, "7"))  # the first one still works
    assert (await client.next()).get(584) == "still"


@pytest.mark.anyio
async def test_a_fill_made_while_the_owner_is_away_is_delivered_by_resend_on_its_next_logon(server, venues):
    venue = venues["swift"]
    bid, ask = book(venue)
    inside = round(ask - 0.01, 2)
    store = SessionStore()
    first = Client("AWAY", store)
    await first.connect(server.port)
    first.order("away-1", "2", "0.02", fix_number(inside))
    assert (await first.next()).get(Tag.OrdStatus) == "0"
    await first.close()
    sent_before = store.next_incoming
    # Filled with nobody connected: the ER is parked in AWAY's session store.
    venue.submit(Order(id="o2", client_order_id="o2", symbol="BTC/USD", side=OrderSide.BUY, type=OrderType.LIMIT,
                       quantity=0.02, price=inside))
    assert server.parked == 1
    again = Client("AWAY", store)
    await again.connect(server.port)
    try:
        fill = await again.next()  # the Logon showed a gap; the ResendRequest brought it
        assert (fill.get(Tag.ClOrdID), fill.get(Tag.ExecType), fill.get(Tag.OrdStatus)) == ("away-1", "F", "2")
        assert fill.poss_dup and fill.get(122) is not None  # PossDupFlag=Y, OrigSendingTime
        assert fill.seq_num == sent_before  # the number it took when it was parked, right after the Logout
        assert any(e.kind == "gap" for e in again.events)
    finally:
        await again.close()


@pytest.mark.anyio
async def test_behind_an_order_its_venue_answers_late_the_next_messages_wait_their_turn():
    """A venue with latency is awaited (the connection's worker): a status request and a
    second order sent right after the first are answered after it, in arrival order."""
    from engine.venues.sim.config import LatencyModel
    from engine.venues.sim.exchange import SimulatedExchange

    slow = SimulatedExchange("slow", seed=7, latency=LatencyModel(median_s=0.02))
    srv = base.FixVenueServer(slow, comp_id="VENUE", tick_interval=None)
    await srv.start()
    client = Client()
    try:
        await client.connect(srv.port)
        client.order("late-1", "1", "0.01", None, tif="3")
        status_request(client, "late-1")
        client.order("late-2", "2", "0.01", None, tif="3")
        answers = [await client.next() for _ in range(3)]
        assert [(m.get(Tag.ClOrdID), m.get(Tag.ExecType)) for m in answers] == [
            ("late-1", "F"), ("late-1", "I"), ("late-2", "F")]
        assert answers[1].get(Tag.OrdStatus) == "2"  # the status saw the first order's fill
        await client.close()
    finally:
        with anyio.fail_after(WAIT):
            await srv.stop()
