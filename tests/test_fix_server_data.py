"""The venue server's reference and market data: SecurityList (x -> y) with filters and
fees, MarketDataRequest (V) snapshots (W), incremental refreshes (X) of book levels and
public trades, rejects (Y), unsubscribe, and the ticker that moves the market by itself."""

from __future__ import annotations

import anyio
import pytest

from engine.clock import VirtualClock
from engine.models import Order, OrderSide, OrderType
from engine.venues.fix import Message, MsgType, Tag
from engine.venues.fixio.server import FixVenueServer, fix_number
from engine.venues.sim.config import MarketConfig
from engine.venues.sim.exchange import SimulatedExchange
from tests import test_fix_server as base
from tests.test_fix_server import WAIT, Client, book

# The fixtures of the basic tests (frozen simulators, a server, a logged-on client).
anyio_backend, venues, server, client = base.anyio_backend, base.venues, base.server, base.client


def entries(msg: Message, first: int) -> list[dict[int, str]]:
    """A repeating group's entries: each starts at tag `first`."""
    out: list[dict[int, str]] = []
    for tag, value in msg.pairs:
        if tag == first:
            out.append({})
        if out:
            out[-1].setdefault(tag, value.decode())
    return out


def md_request(client: Client, req_id: str, kind: str, symbols, *, depth="0", types=("0", "1")) -> None:
    fields = [(262, req_id), (263, kind), (264, depth), (265, "1"), (267, str(len(types)))]
    fields += [(269, t) for t in types]
    fields.append((146, str(len(symbols))))
    for symbol, venue in symbols:
        fields.append((55, symbol))
        if venue:
            fields.append((207, venue))
    client.send(MsgType.MARKET_DATA_REQUEST, *fields)


@pytest.mark.anyio
async def test_the_security_list_carries_every_instrument_with_filters_and_fees(client, venues):
    client.send(MsgType.SECURITY_LIST_REQUEST, (320, "sec-1"), (559, "4"))
    listing = await client.next()
    assert (listing.msg_type, listing.get(320), listing.get(560), listing.get(893)) == ("y", "sec-1", "0", "Y")
    rows = entries(listing, 55)
    assert listing.get(146) == listing.get(393) == str(len(rows)) == "6"  # 3 symbols at 2 venues
    assert [(r[55], r[207]) for r in rows[:3]] == [("BTC/USD", "swift"), ("ETH/USD", "swift"), ("SOL/USD", "swift")]
    btc = rows[0]
    inst = venues["swift"].instruments()["BTC/USD"]
    assert (btc[969], btc[561], btc[562], btc[1140]) == ("0.01", "0.0001", "0.0001", "1000")
    assert (btc[20001], btc[20002], btc[20003], btc[20004]) == ("1", "10000000", "2", "5")
    assert float(btc[969]) == float(inst.tick_size) and float(btc[20004]) == venues["swift"].fees.taker_bps
    client.send(MsgType.SECURITY_LIST_REQUEST, (320, "sec-2"), (559, "0"), (55, "SOL/USD"))
    one = await client.next()
    assert [(r[55], r[207], r[969]) for r in entries(one, 55)] == [("SOL/USD", "swift", "0.001"), ("SOL/USD", "deep", "0.001")]
    client.send(MsgType.SECURITY_LIST_REQUEST, (320, "sec-3"), (559, "2"))
    refused = await client.next()
    assert (refused.get(560), refused.get(Tag.Text)) == ("1", "SecurityListRequestType(559) '2' is not supported (4 all, 0 by Symbol)")


@pytest.mark.anyio
async def test_a_snapshot_is_the_venues_book_best_first(client, venues):
    md_request(client, "snap-1", "0", [("BTC/USD", "deep")], depth="3")
    snap = await client.next()
    assert (snap.msg_type, snap.get(262), snap.get(55), snap.get(207)) == ("W", "snap-1", "BTC/USD", "deep")
    rows = entries(snap, 269)
    expected = venues["deep"].book("BTC/USD", 3)
    assert snap.get(268) == "6"
    assert [(r[269], float(r[270]), float(r[271]), int(r[346])) for r in rows] == (
        [("0", lv.price, lv.quantity, lv.orders) for lv in expected.bids]
        + [("1", lv.price, lv.quantity, lv.orders) for lv in expected.asks])
    md_request(client, "snap-2", "0", [("ETH/USD", None)], depth="1", types=("1",))  # no venue: every venue
    first, second = await client.next(), await client.next()
    assert [(m.get(207), [r[269] for r in entries(m, 269)]) for m in (first, second)] == [("swift", ["1"]), ("deep", ["1"])]


@pytest.mark.anyio
async def test_a_subscriber_gets_each_book_change_as_an_incremental_refresh(client, venues):
    venue = venues["swift"]
    bid, ask = book(venue)
    md_request(client, "sub-1", "1", [("BTC/USD", "swift")], types=("0", "1", "2"))
    assert (await client.next()).msg_type == "W"
    inside = round(bid + 0.01, 2)
    client.order("md-1", "1", "0.05", fix_number(inside))
    new, refresh = await client.next(), await client.next()
    assert new.get(Tag.ExecType) == "0"
    assert refresh.msg_type == "X" and refresh.get(262) == "sub-1" and refresh.get(268) == "2"
    deleted, added = entries(refresh, 279)
    assert (added[279], added[269], added[55], added[207], float(added[270]), added[271], added[346]) == (
        "0", "0", "BTC/USD", "swift", inside, "0.05", "1")
    # The new best bid pushed the tenth level out of the top ten.
    assert (deleted[279], deleted[269], float(deleted[270])) == ("2", "0", venue.book("BTC/USD", 11).bids[10].price)
    # Someone sells 0.02 into our bid: the level changes and a public trade prints.
    venue.submit(Order(id="o1", client_order_id="o1", symbol="BTC/USD", side=OrderSide.SELL, type=OrderType.LIMIT,
                       quantity=0.02, price=inside))
    fill, refresh = await client.next(), await client.next()
    assert fill.get(Tag.ExecType) == "F"
    # Other venue activity (not through the server) reaches subscribers on the next batch too.
    rows = entries(refresh, 279)
    assert [(r[279], r[269], float(r[270]), r[271]) for r in rows if r[269] == "0"] == [("1", "0", inside, "0.03")]
    [trade] = [r for r in rows if r[269] == "2"]
    assert (trade[279], float(trade[270]), trade[271], trade[2446]) == ("0", inside, "0.02", "2")
    assert len(trade[272]) == 8 and trade[273].count(":") == 2
    client.send(MsgType.ORDER_CANCEL_REQUEST, (Tag.OrigClOrdID, "md-1"), (Tag.ClOrdID, "md-1c"))
    canceled, refresh = await client.next(), await client.next()
    assert canceled.get(Tag.ExecType) == "4"
    gone, back = entries(refresh, 279)
    assert (gone[279], gone[269], float(gone[270])) == ("2", "0", inside)
    assert (back[279], float(back[270])) == ("0", venue.book("BTC/USD").bids[9].price)  # the tenth is back
    # Unsubscribed: the next change sends nothing (the status answer comes next).
    md_request(client, "sub-1", "2", [("BTC/USD", "swift")])
    client.order("md-2", "1", "0.05", fix_number(inside))
    assert (await client.next()).get(Tag.ExecType) == "0"
    client.send(MsgType.ORDER_STATUS_REQUEST, (Tag.ClOrdID, "md-2"))
    assert (await client.next()).get(Tag.ExecType) == "I"


@pytest.mark.anyio
async def test_market_data_requests_that_cannot_be_served_get_a_reject(client, server):
    md_request(client, "bad-1", "1", [("DOGE/USD", None)])
    reject = await client.next()
    assert (reject.msg_type, reject.get(262), reject.get(281)) == ("Y", "bad-1", "0")
    assert reject.get(Tag.Text) == "unknown symbol 'DOGE/USD' (symbols: BTC/USD, ETH/USD, SOL/USD)"
    md_request(client, "bad-2", "1", [("BTC/USD", "nowhere")])
    assert (await client.next()).get(Tag.Text) == "unknown venue 'nowhere' (venues: swift, deep)"
    md_request(client, "ok-1", "1", [("BTC/USD", "swift")])
    assert (await client.next()).msg_type == "W"
    md_request(client, "ok-1", "1", [("BTC/USD", "swift")])
    duplicate = await client.next()
    assert (duplicate.get(281), duplicate.get(Tag.Text)) == ("1", "MDReqID 'ok-1' is already subscribed")
    md_request(client, "bad-3", "1", [("BTC/USD", "swift")], types=("4",))
    assert (await client.next()).get(281) == "8"
    md_request(client, "never", "2", [("BTC/USD", "swift")])
    assert (await client.next()).get(Tag.Text) == "MDReqID 'never' is not subscribed: nothing to end"
    assert server.subscriptions == 1
    await client.close()  # a dropped connection drops its subscriptions
    with anyio.fail_after(WAIT):
        while server.subscriptions:
            await anyio.sleep(0.01)


@pytest.mark.anyio
async def test_the_ticker_moves_the_market_and_subscribers_see_it_without_any_order():
    # A real clock and a busy market: the ticker's steps alone must produce refreshes and trades.
    lively = MarketConfig(step_s=0.02, volatility_bps=20.0, taker_rate_per_s=200.0)
    venue = SimulatedExchange("swift", seed=3, market=lively)
    srv = FixVenueServer(venue, tick_interval=0.02)
    await srv.start()
    c = Client()
    try:
        await c.connect(srv.port)
        md_request(c, "live", "1", [("BTC/USD", "swift")], types=("0", "1", "2"))
        assert (await c.next()).msg_type == "W"
        kinds: set[str] = set()
        with anyio.fail_after(WAIT):
            while not {"0", "1", "2"} <= kinds:
                refresh = await c.next()
                assert refresh.msg_type == "X"
                kinds.update(r[269] for r in entries(refresh, 279))
        await c.close()
    finally:
        with anyio.fail_after(WAIT):
            await srv.stop()


def test_a_tick_interval_must_be_positive():
    venue = SimulatedExchange("swift", clock=VirtualClock())
    with pytest.raises(Exception, match="tick_interval must be > 0 seconds or None, got 0"):
        FixVenueServer(venue, tick_interval=0)
