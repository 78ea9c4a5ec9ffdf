"""A CcxtVenue under the Engine (canned binance replies): a LIMIT and a MARKET order go
through the optimizer, the router and the venue; their states, fills and the positions
come back as with a simulated venue."""

from __future__ import annotations

import pytest

from engine import Engine, Order, OrderStatus
from engine.models import OrderSide, OrderType
from tests.ccxt_support import offline_venue

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def test_engine_trades_binance_through_ccxt() -> None:
    venue, http = offline_venue("binance")
    await venue.connect_async()
    http.on("GET", "/api/v3/depth", "depth")
    await venue.book_async("BTC/USDT")  # the mid the risk limits' price band needs
    engine = Engine(venues={"binance": venue})
    await engine.start(num_workers=2)
    try:
        http.on("POST", "/api/v3/order", "create_limit_new", "create_market_filled")
        lid = await engine.submit(Order(id="L1", symbol="BTC/USDT", side=OrderSide.BUY, type=OrderType.LIMIT,
                                        quantity=0.01, price=60000), venue="binance")
        resting = await engine.wait(lid, timeout=10)
        assert resting.status is OrderStatus.NEW and resting.exchange_id == "binance"
        mid = await engine.submit(Order(id="M1", symbol="BTC/USDT", side=OrderSide.BUY, type=OrderType.MARKET,
                                        quantity=0.01), venue="binance")
        filled = await engine.wait(mid, timeout=10)
        assert filled.status is OrderStatus.FILLED
        assert filled.filled_quantity == pytest.approx(0.01) and filled.average_price == pytest.approx(60015.0)
        assert [f.trade_id for f in filled.fills] == ["3001", "3002"]
        sent = http.to("POST", "/api/v3/order")
        assert [(s.params["newClientOrderId"], s.params["type"]) for s in sent] == [("L1", "LIMIT"), ("M1", "MARKET")]
        (position,) = engine.positions()
        assert position.symbol == "BTC/USDT" and position.net_quantity == pytest.approx(0.01)
        assert position.average_entry == pytest.approx(60015.0)
        assert position.fees == pytest.approx(0.36006 + 0.24009)
        assert position.fills == 2
    finally:
        await engine.stop(drain=False)
        venue.close()


async def test_a_restarted_engine_follows_a_resting_binance_order_by_client_id(tmp_path) -> None:
    """The first desk's limit order rests at binance (0.005 filled) when it stops; the next
    desk (a new CcxtVenue, nothing in memory) finds it by client id, counts what filled
    meanwhile once, hears the later fills from the poller and can cancel it."""
    journal = tmp_path / "j.sqlite"
    venue, http = offline_venue("binance")
    await venue.connect_async()
    http.on("GET", "/api/v3/depth", "depth")
    await venue.book_async("BTC/USDT")
    engine = Engine(venues={"binance": venue}, journal=journal)
    await engine.start(num_workers=1)
    try:
        http.on("POST", "/api/v3/order", "create_limit_partial")
        await engine.submit(Order(id="P1", symbol="BTC/USDT", side=OrderSide.BUY, type=OrderType.LIMIT,
                                  quantity=0.02, price=60000), venue="binance")
        first = await engine.wait("P1", timeout=10)
        assert first.status is OrderStatus.PARTIALLY_FILLED and first.filled_quantity == pytest.approx(0.005)
    finally:
        await engine.stop(drain=True)
        venue.close()

    venue, http = offline_venue("binance")
    await venue.connect_async()
    http.on("GET", "/api/v3/depth", "depth", "depth", "depth")
    await venue.book_async("BTC/USDT")
    http.on("GET", "/api/v3/openOrders", "open_p1")  # recovery's status query: 0.012 filled by now
    engine = Engine(venues={"binance": venue}, journal=journal)
    await engine.start(num_workers=1)
    try:
        status = engine.status("P1")
        assert status.status is OrderStatus.PARTIALLY_FILLED and status.filled_quantity == pytest.approx(0.012)
        (position,) = engine.positions()
        assert position.net_quantity == pytest.approx(0.012)
        http.on("GET", "/api/v3/order", "query_more")  # 0.015 by the next poll
        await venue.poll_once()
        await engine.journal_caught_up()
        assert engine.status("P1").filled_quantity == pytest.approx(0.015)
        (position,) = engine.positions()
        assert position.net_quantity == pytest.approx(0.015)
        http.on("DELETE", "/api/v3/order", "cancel_partial")
        canceled = await engine.cancel("P1")
        assert canceled.status is OrderStatus.CANCELED
        assert http.to("DELETE", "/api/v3/order")[0].params["origClientOrderId"] == "P1"
    finally:
        await engine.stop(drain=False)
        venue.close()
