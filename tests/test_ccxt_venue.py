"""CcxtVenue against canned binance and bybit replies (tests/ccxt_support.py; fixtures say
where each reply came from): what goes out on the wire, and what the replies become."""

from __future__ import annotations

import pytest

import ccxt

from engine import AsyncOrderRouter, RetryPolicy
from engine.errors import ConfigurationError, RateLimitedError, UnknownOrderError, UnknownOutcomeError
from engine.market_data import ExecutionReport
from engine.models import Liquidity, Order, OrderSide, OrderStatus, OrderType, TimeInForce
from engine.secrets import Secret
from engine.venues.ccxtio import CcxtVenue, credentials_from_env, venue_error
from tests.ccxt_support import API_KEY, API_SECRET, offline_venue

pytestmark = pytest.mark.anyio

BYBIT_ACCOUNT = (("GET", "/v5/user/query-api", "query_api"), ("GET", "/v5/account/info", "account_info"))


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # the venue's calls hop to its loop with asyncio.wrap_future


def limit(cid: str, qty: float = 0.01, price: float = 60000.0, side: OrderSide = OrderSide.BUY,
          tif: TimeInForce = TimeInForce.GTC) -> Order:
    return Order(id=cid, symbol="BTC/USDT", side=side, type=OrderType.LIMIT, quantity=qty, price=price,
                 time_in_force=tif)


def market(cid: str, qty: float = 0.01, side: OrderSide = OrderSide.BUY) -> Order:
    return Order(id=cid, symbol="BTC/USDT", side=side, type=OrderType.MARKET, quantity=qty)


async def opened(exchange: str, **kwargs):
    venue, http = offline_venue(exchange, **kwargs)
    await venue.connect_async()
    if exchange == "bybit":
        for method, path, reply in BYBIT_ACCOUNT:  # CCXT asks once whether the account is unified
            http.on(method, path, reply)
    return venue, http


# -- set-up: defaults, sandbox, keys --------------------------------------------------------

def test_rate_limiter_is_on_by_default_and_sandbox_is_default() -> None:
    venue = CcxtVenue("binance", poll_interval=None)
    try:
        assert venue.exchange.enableRateLimit is True
        assert venue.sandbox and not venue.live
        assert venue.exchange.urls["api"]["private"].startswith("https://testnet.binance.vision")
    finally:
        venue.close()
    bybit = CcxtVenue("bybit", poll_interval=None)
    try:
        assert bybit.exchange.enableRateLimit is True
        assert "testnet" in bybit.exchange.urls["api"]["private"]
    finally:
        bybit.close()


def test_an_exchange_without_sandbox_needs_live() -> None:
    with pytest.raises(ConfigurationError, match="kraken has no sandbox in CCXT.*--live"):
        CcxtVenue("kraken")
    venue = CcxtVenue("kraken", live=True, poll_interval=None)
    try:
        assert venue.live and not venue.sandbox
        assert "LIVE" in repr(venue)
    finally:
        venue.close()


def test_unknown_exchange_is_named_with_near_ids() -> None:
    with pytest.raises(ConfigurationError, match="no exchange 'binanze'.*binance"):
        CcxtVenue("binanze")


def test_keys_come_from_the_environment_as_secrets() -> None:
    env = {"EXECDESK_BINANCE_API_KEY": API_KEY, "EXECDESK_BINANCE_SECRET": API_SECRET}
    creds = credentials_from_env("binance", env)
    assert set(creds) == {"api_key", "secret"} and all(isinstance(v, Secret) for v in creds.values())
    assert API_KEY not in repr(creds)
    with pytest.raises(ConfigurationError, match="EXECDESK_BYBIT_API_KEY is set but EXECDESK_BYBIT_SECRET is not"):
        credentials_from_env("bybit", {"EXECDESK_BYBIT_API_KEY": "k"})
    assert credentials_from_env("bybit", {}) == {}


# -- markets ------------------------------------------------------------------------------------

@pytest.mark.parametrize("exchange, tick, lot, min_qty, max_qty", [
    ("binance", "0.01", "0.00001", "0.00001", "9000"),
    ("bybit", "0.1", "0.000001", "0.000011", "83"),
])
async def test_instruments_come_from_the_markets(exchange, tick, lot, min_qty, max_qty) -> None:
    venue, _ = await opened(exchange)
    try:
        inst = venue.instruments()["BTC/USDT"]
        assert (str(inst.tick_size), str(inst.lot_size)) == (tick, lot)
        assert float(inst.min_quantity) == float(min_qty) and float(inst.max_quantity) == float(max_qty)
        assert float(inst.min_notional) == 5.0
        assert venue.fees.taker_bps == pytest.approx(10.0)  # 0.1% from the market
    finally:
        venue.close()


@pytest.mark.parametrize("exchange", ["binance", "bybit"])
async def test_orders_breaking_the_filters_never_leave(exchange) -> None:
    venue, http = await opened(exchange)
    try:
        tiny = await venue.submit_async(limit("F1", qty=0.00005, price=60000))  # notional 3 < 5
        assert tiny.status is OrderStatus.REJECTED and "under the minimum 5" in tiny.reason
        off_tick = await venue.submit_async(limit("F2", price=60000.005))
        assert off_tick.status is OrderStatus.REJECTED and "not on the tick" in off_tick.reason
        unknown = await venue.submit_async(Order(id="F3", symbol="DOGE/USDT", side=OrderSide.BUY,
                                                 type=OrderType.LIMIT, quantity=10, price=0.1))
        assert unknown.status is OrderStatus.REJECTED and "unknown symbol 'DOGE/USDT'" in unknown.reason
        day = await venue.submit_async(limit("F4", tif=TimeInForce.DAY))
        assert day.status is OrderStatus.REJECTED and "GTC, IOC, FOK" in day.reason
        assert http.sent == []
    finally:
        venue.close()


# -- binance ------------------------------------------------------------------------------------

async def test_binance_limit_goes_out_with_our_id_and_rests() -> None:
    venue, http = await opened("binance")
    try:
        http.on("POST", "/api/v3/order", "create_limit_new")
        result = await venue.submit_async(limit("L1"))
        sent = http.to("POST", "/api/v3/order")
        assert len(sent) == 1
        p = sent[0].params
        assert (p["symbol"], p["side"], p["type"], p["quantity"], p["price"], p["timeInForce"]) == \
            ("BTCUSDT", "BUY", "LIMIT", "0.01", "60000", "GTC")
        assert p["newClientOrderId"] == "L1"  # binance's own parameter for our client order id
        assert "signature" in p and API_SECRET not in sent[0].url
        assert sent[0].url.startswith("https://testnet.binance.vision/")
        assert result.status is OrderStatus.NEW and result.filled_quantity == 0 and result.fills == []
        assert result.detail["exchange_order_id"] == "9780331417"
    finally:
        venue.close()


async def test_binance_market_fills_from_the_reply_fills() -> None:
    venue, http = await opened("binance")
    try:
        http.on("POST", "/api/v3/order", "create_market_filled")
        result = await venue.submit_async(market("M1"))
        p = http.to("POST", "/api/v3/order")[0].params
        assert (p["type"], p["quantity"], p["newClientOrderId"]) == ("MARKET", "0.01", "M1")
        assert "price" not in p
        assert result.status is OrderStatus.FILLED and result.filled_quantity == pytest.approx(0.01)
        assert [(f.price, f.quantity, f.trade_id) for f in result.fills] == [
            (60010.0, pytest.approx(0.006), "3001"), (60022.5, pytest.approx(0.004), "3002")]
        assert result.average_price == pytest.approx(60015.0)
        # commission 0.000006 BTC at 60010 is 0.36006 USDT
        assert result.fills[0].fee == pytest.approx(0.36006)
        assert all(f.liquidity is Liquidity.TAKER for f in result.fills)
    finally:
        venue.close()


async def test_binance_partial_fill_then_more_by_status_then_cancel() -> None:
    venue, http = await opened("binance")
    reports: list[ExecutionReport] = []
    venue.add_report_listener(reports.append)
    try:
        http.on("POST", "/api/v3/order", "create_limit_partial")
        first = await venue.submit_async(limit("P1", qty=0.02))
        assert first.status is OrderStatus.PARTIALLY_FILLED
        assert first.filled_quantity == pytest.approx(0.005) and first.fills[0].fee == pytest.approx(0.3)

        http.on("GET", "/api/v3/order", "query_partial")
        http.on("GET", "/api/v3/depth", "depth", "depth")  # the poll refreshes both books too
        await venue.poll_once()  # the poller asks; more filled meanwhile (0.012 at 60000)
        asked = http.to("GET", "/api/v3/order")[0].params
        assert asked["origClientOrderId"] == "P1" and asked["symbol"] == "BTCUSDT"
        assert len(reports) == 1 and reports[0].fill is not None
        assert reports[0].fill.quantity == pytest.approx(0.007) and reports[0].fill.price == pytest.approx(60000)
        assert reports[0].status is OrderStatus.PARTIALLY_FILLED
        assert reports[0].filled_quantity == pytest.approx(0.012)

        http.on("DELETE", "/api/v3/order", "cancel_partial")
        canceled = await venue.cancel_async("P1")
        p = http.to("DELETE", "/api/v3/order")[0].params
        assert (p["origClientOrderId"], p["symbol"]) == ("P1", "BTCUSDT")
        assert canceled.status is OrderStatus.CANCELED and canceled.filled_quantity == pytest.approx(0.012)
        assert canceled.fills == []  # nothing new filled with the cancel
        again = await venue.cancel_async("P1")
        assert again.status is OrderStatus.REJECTED and "too late to cancel: the order is CANCELED" in again.reason
    finally:
        venue.close()


@pytest.mark.parametrize("reply, cls, words", [
    ("insufficient_balance", "InsufficientFunds", "InsufficientFunds: Account has insufficient balance for requested action."),
    ("invalid_order", "InvalidOrder", ": Order would immediately match and take."),
])
async def test_binance_refusals_are_rejected_with_the_exchange_message(reply, cls, words) -> None:
    venue, http = await opened("binance")
    try:
        http.on("POST", "/api/v3/order", reply)
        result = await venue.submit_async(limit("R1"))
        assert result.status is OrderStatus.REJECTED
        assert words in result.reason and "binance refused the order" in result.reason
        assert cls in result.reason or "OrderImmediatelyFillable" in result.reason
        assert API_KEY not in result.reason and API_SECRET not in result.reason
    finally:
        venue.close()


async def test_binance_429_is_rate_limited_and_the_router_retries() -> None:
    venue, http = await opened("binance")
    router = AsyncOrderRouter(retry_policy=RetryPolicy(retry_delay=0.001, max_delay=0.01))
    router.register_exchange("binance", venue)
    try:
        http.on("POST", "/api/v3/order", "rate_limited")
        with pytest.raises(RateLimitedError, match="binance: create: .*Too much request weight"):
            await venue.submit_async(limit("X0"))
        http.on("POST", "/api/v3/order", "rate_limited", "create_limit_new")
        result = await router.submit_order_async(limit("L1"))
        assert result.status is OrderStatus.NEW
        assert [s.params["newClientOrderId"] for s in http.to("POST", "/api/v3/order")] == ["X0", "L1", "L1"]
    finally:
        router.close()
        venue.close()


async def test_binance_timeout_on_create_is_settled_by_client_id_without_a_second_order() -> None:
    venue, http = await opened("binance")
    router = AsyncOrderRouter(retry_policy=RetryPolicy(retry_delay=0.001, max_delay=0.01))
    router.register_exchange("binance", venue)
    try:
        http.on("POST", "/api/v3/order", ccxt.RequestTimeout("binance POST https://testnet.binance.vision/api/v3/order"))
        http.on("GET", "/api/v3/order", "query_timeout_order")
        result = await router.submit_order_async(limit("T1"))
        assert result.status is OrderStatus.NEW
        assert len(http.to("POST", "/api/v3/order")) == 1  # never sent twice
        assert http.to("GET", "/api/v3/order")[0].params["origClientOrderId"] == "T1"
        assert router.get_order_status("T1").status is OrderStatus.NEW
    finally:
        router.close()
        venue.close()


async def test_binance_timeout_then_not_found_is_sent_again() -> None:
    venue, http = await opened("binance")
    router = AsyncOrderRouter(retry_policy=RetryPolicy(retry_delay=0.001, max_delay=0.01))
    router.register_exchange("binance", venue)
    try:
        http.on("POST", "/api/v3/order", ccxt.RequestTimeout("timed out"), "create_limit_new")
        http.on("GET", "/api/v3/order", "query_not_found", "query_not_found")
        result = await router.submit_order_async(limit("L1"))
        assert result.status is OrderStatus.NEW
        # Safe: the status query said twice, a backoff apart, that it was never placed.
        assert len(http.to("GET", "/api/v3/order")) == 2
        assert len(http.to("POST", "/api/v3/order")) == 2
    finally:
        router.close()
        venue.close()


async def test_binance_not_found_at_first_then_found_is_not_sent_again() -> None:
    # Binance may answer -2013 for an order it has just taken: one "not found" is not believed.
    venue, http = await opened("binance")
    router = AsyncOrderRouter(retry_policy=RetryPolicy(retry_delay=0.001, max_delay=0.01))
    router.register_exchange("binance", venue)
    try:
        http.on("POST", "/api/v3/order", ccxt.RequestTimeout("timed out"))
        http.on("GET", "/api/v3/order", "query_not_found", "query_timeout_order")
        result = await router.submit_order_async(limit("T1"))
        assert result.status is OrderStatus.NEW
        assert len(http.to("POST", "/api/v3/order")) == 1  # never sent twice
        assert len(http.to("GET", "/api/v3/order")) == 2
    finally:
        router.close()
        venue.close()


async def test_binance_book_is_fetched_and_cached_for_sync_reads() -> None:
    venue, http = await opened("binance")
    try:
        assert venue.book("BTC/USDT").bids == ()  # nothing fetched yet: empty, no request
        http.on("GET", "/api/v3/depth", "depth")
        snap = await venue.book_async("BTC/USDT", 10)
        assert http.to("GET", "/api/v3/depth")[0].params == {"symbol": "BTCUSDT", "limit": "10"}
        assert (snap.best_bid, snap.best_ask) == (59990.0, 60010.0)
        assert venue.book("BTC/USDT", 1).asks[0].quantity == 0.4  # the cached snapshot
        assert len(http.sent) == 1
    finally:
        venue.close()


# -- bybit --------------------------------------------------------------------------------------

async def test_bybit_limit_goes_out_with_order_link_id_and_is_settled_by_status() -> None:
    venue, http = await opened("bybit")
    try:
        http.on("POST", "/v5/order/create", "create_ack_b1")
        http.on("GET", "/v5/order/realtime", "open_b1_new")
        result = await venue.submit_async(limit("B1"))
        p = http.to("POST", "/v5/order/create")[0].params
        assert (p["symbol"], p["side"], p["orderType"], p["qty"], p["price"], p["timeInForce"], p["category"]) == \
            ("BTCUSDT", "Buy", "Limit", "0.01", "60000", "GTC", "spot")
        assert p["orderLinkId"] == "B1"  # bybit's own parameter for our client order id
        assert http.to("POST", "/v5/order/create")[0].url.startswith("https://api-testnet.bybit.com/")
        # bybit answers a create with the ids only: the status comes from its open orders
        assert http.to("GET", "/v5/order/realtime")[0].params["orderLinkId"] == "B1"
        assert result.status is OrderStatus.NEW and result.detail["exchange_order_id"] == "2088690093937486080"
    finally:
        venue.close()


async def test_bybit_partial_fill_by_poll_then_cancel() -> None:
    venue, http = await opened("bybit")
    reports: list[ExecutionReport] = []
    venue.add_report_listener(reports.append)
    try:
        http.on("POST", "/v5/order/create", "create_ack_b1")
        http.on("GET", "/v5/order/realtime", "open_b1_new", "open_b1_partial", "open_empty")
        http.on("GET", "/v5/market/orderbook", "orderbook", "orderbook")
        await venue.submit_async(limit("B1"))
        await venue.poll_once()
        assert len(reports) == 1 and reports[0].status is OrderStatus.PARTIALLY_FILLED
        fill = reports[0].fill
        assert fill is not None and fill.quantity == pytest.approx(0.004) and fill.price == pytest.approx(60000)
        assert venue.book("BTC/USDT").best_bid == 59990.1  # the poll refreshed the book too

        http.on("POST", "/v5/order/cancel", "cancel_ack_b1")
        http.on("GET", "/v5/order/history", "history_b1_canceled")
        canceled = await venue.cancel_async("B1")
        p = http.to("POST", "/v5/order/cancel")[0].params
        assert (p["orderLinkId"], p["symbol"], p["category"]) == ("B1", "BTCUSDT", "spot")
        assert canceled.status is OrderStatus.CANCELED and canceled.filled_quantity == pytest.approx(0.004)
    finally:
        venue.close()


async def test_bybit_market_sell_fills() -> None:
    venue, http = await opened("bybit")
    try:
        http.on("POST", "/v5/order/create", "create_ack_bm")
        http.on("GET", "/v5/order/realtime", "open_empty")
        http.on("GET", "/v5/order/history", "history_bm_filled")
        result = await venue.submit_async(market("BM", side=OrderSide.SELL))
        p = http.to("POST", "/v5/order/create")[0].params
        assert (p["side"], p["orderType"], p["qty"], p["orderLinkId"]) == ("Sell", "Market", "0.01", "BM")
        assert "price" not in p
        assert result.status is OrderStatus.FILLED
        assert result.filled_quantity == pytest.approx(0.01) and result.average_price == pytest.approx(59990.1)
        assert result.fills[0].fee == pytest.approx(0.599901)
    finally:
        venue.close()


@pytest.mark.parametrize("reply, words", [
    ("insufficient_balance", "InsufficientFunds: Insufficient balance. (code 170131)"),
    ("invalid_order", "InvalidOrder: Order quantity exceeded lower limit. (code 170136)"),
])
async def test_bybit_refusals_are_rejected_with_the_exchange_message(reply, words) -> None:
    venue, http = await opened("bybit")
    try:
        http.on("POST", "/v5/order/create", reply)
        result = await venue.submit_async(limit("R1"))
        assert result.status is OrderStatus.REJECTED and words in result.reason
    finally:
        venue.close()


async def test_bybit_too_many_visits_is_rate_limited_and_retried() -> None:
    venue, http = await opened("bybit")
    router = AsyncOrderRouter(retry_policy=RetryPolicy(retry_delay=0.001, max_delay=0.01))
    router.register_exchange("bybit", venue)
    try:
        http.on("POST", "/v5/order/create", "rate_limited", "create_ack_b1")
        http.on("GET", "/v5/order/realtime", "open_b1_new")
        result = await router.submit_order_async(limit("B1"))
        assert result.status is OrderStatus.NEW
        assert len(http.to("POST", "/v5/order/create")) == 2
    finally:
        router.close()
        venue.close()


async def test_bybit_timeout_on_create_is_settled_by_order_link_id() -> None:
    venue, http = await opened("bybit")
    router = AsyncOrderRouter(retry_policy=RetryPolicy(retry_delay=0.001, max_delay=0.01))
    router.register_exchange("bybit", venue)
    try:
        http.on("POST", "/v5/order/create", ccxt.RequestTimeout("bybit POST /v5/order/create"))
        http.on("GET", "/v5/order/realtime", "open_b1_partial")
        result = await router.submit_order_async(limit("B1"))
        assert result.status is OrderStatus.PARTIALLY_FILLED and result.filled_quantity == pytest.approx(0.004)
        assert len(http.to("POST", "/v5/order/create")) == 1
    finally:
        router.close()
        venue.close()


async def test_status_of_an_order_nobody_placed_is_unknown() -> None:
    venue, http = await opened("bybit")
    try:
        http.on("GET", "/v5/order/realtime", "open_empty", "open_empty", "open_empty")
        http.on("GET", "/v5/order/history", "open_empty", "open_empty")
        with pytest.raises(UnknownOrderError, match="bybit does not know order 'ZZ'"):
            await venue.status_async("ZZ")
        every, btc, eth = http.to("GET", "/v5/order/realtime")
        assert "symbol" not in every.params and every.params["category"] == "spot"
        assert every.params["orderLinkId"] == "ZZ"
        assert (btc.params["symbol"], eth.params["symbol"]) == ("BTCUSDT", "ETHUSDT")
    finally:
        venue.close()


# -- the error map itself -----------------------------------------------------------------------

@pytest.mark.parametrize("exc, op, kind", [
    (ccxt.NetworkError("x"), "status", "VenueUnavailableError"),
    (ccxt.NetworkError("x"), "create", "UnknownOutcomeError"),
    (ccxt.RequestTimeout("x"), "create", "UnknownOutcomeError"),
    (ccxt.RequestTimeout("x"), "cancel", "UnknownOutcomeError"),
    (ccxt.DDoSProtection("x"), "create", "RateLimitedError"),
    (ccxt.RateLimitExceeded("x"), "create", "RateLimitedError"),
    (ccxt.InvalidOrder("x"), "cancel", "PermanentVenueError"),
    (ccxt.InsufficientFunds("x"), "create", "PermanentVenueError"),
    (ccxt.AuthenticationError("x"), "create", "PermanentVenueError"),
    (ccxt.OrderNotFound("x"), "status", "UnknownOrderError"),
])
def test_ccxt_errors_map_to_our_kinds(exc, op, kind) -> None:
    assert type(venue_error(exc, "binance", op)).__name__ == kind


def test_errors_are_scrubbed_of_the_keys() -> None:
    venue = CcxtVenue("binance", api_key=Secret(API_KEY), secret=Secret(API_SECRET), poll_interval=None)
    try:
        error = venue_error(ccxt.ExchangeError(f"binance bad key {API_KEY}"), "binance", "create", venue._scrub)
        assert API_KEY not in str(error) and "***" in str(error)
    finally:
        venue.close()


def test_unknown_outcome_error_class_is_ours() -> None:
    assert isinstance(venue_error(ccxt.RequestTimeout("t"), "v", "create"), UnknownOutcomeError)
