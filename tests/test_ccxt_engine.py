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
