"""CcxtVenue against adversarial replies and races (canned binance/bybit replies through
CCXT's own parsing, tests/ccxt_support.py): missing and absurd fields, fills seen twice or
out of order, a fill's trades disagreeing with its total, timeouts on every door, a close
with requests in flight, keys planted in error texts, and a restart with no memory."""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import threading

import pytest

import ccxt

from engine.errors import UnknownOutcomeError
from engine.market_data import ExecutionReport
from engine.models import Order, OrderSide, OrderStatus, OrderType, TimeInForce
from tests.ccxt_support import API_KEY, API_SECRET, offline_venue

pytestmark = pytest.mark.anyio

_names = itertools.count()


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def limit(cid: str, qty: float = 0.02, price: float = 60000.0, tif: TimeInForce = TimeInForce.GTC) -> Order:
    return Order(id=cid, symbol="BTC/USDT", side=OrderSide.BUY, type=OrderType.LIMIT, quantity=qty, price=price,
                 time_in_force=tif)


def canned(http, body: dict, status: int = 200) -> str:
    """A reply of our own making, queued by name."""
    name = f"adv{next(_names)}"
    http.canned[name] = {"status": status, "body": body}
    return name


def bn_order(cid: str, status: str, executed: str, quote: str, *, qty: str = "0.02000000", fills=None,
             order_id: int = 9780331500, tif: str = "GTC", type_: str = "LIMIT") -> dict:
    """A binance spot order (create FULL reply when `fills` is a list, else a query reply)."""
    body = {"symbol": "BTCUSDT", "orderId": order_id, "orderListId": -1, "clientOrderId": cid,
            "price": "60000.00000000", "origQty": qty, "executedQty": executed, "cummulativeQuoteQty": quote,
            "status": status, "timeInForce": tif, "type": type_, "side": "BUY", "time": 1737635559000,
            "updateTime": 1737635560000, "transactTime": 1737635559000}
    if fills is not None:
        body["fills"] = fills
    return body


async def opened(exchange: str = "binance", **kwargs):
    venue, http = offline_venue(exchange, **kwargs)
    await venue.connect_async()
    return venue, http


# -- probes ---------------------------------------------------------------------------------

async def test_trades_listing_part_of_filled_still_account_for_all_of_it() -> None:
    venue, http = await opened()
    try:
        # executedQty 0.01 at 600.2 quote; the fills list shows only 0.004 of it
        http.on("POST", "/api/v3/order", canned(http, bn_order(
            "TP", "PARTIALLY_FILLED", "0.01000000", "600.20000000",
            fills=[{"price": "60000.00000000", "qty": "0.00400000", "commission": "0", "commissionAsset": "USDT",
                    "tradeId": "7001"}])))
        result = await venue.submit_async(limit("TP"))
        assert result.filled_quantity == pytest.approx(0.01)
        assert sum(f.quantity for f in result.fills) == pytest.approx(0.01)
        assert result.average_price == pytest.approx(60020.0)
    finally:
        venue.close()


async def test_bad_response_on_create_is_an_unknown_outcome() -> None:
    venue, http = await opened()
    try:
        http.on("POST", "/api/v3/order", ccxt.BadResponse("binance garbled reply"))
        with pytest.raises(UnknownOutcomeError):
            await venue.submit_async(limit("BR"))
    finally:
        venue.close()


async def test_binance_execution_status_unknown_is_settled_by_status_never_resent() -> None:
    from engine import AsyncOrderRouter, RetryPolicy

    venue, http = await opened()
    router = AsyncOrderRouter(retry_policy=RetryPolicy(retry_delay=0.001, max_delay=0.01))
    router.register_exchange("binance", venue)
    try:
        # -1006: "An unexpected response was received from the message bus. Execution status unknown."
        http.on("POST", "/api/v3/order", canned(http, {"code": -1006, "msg": "An unexpected response was "
                                                       "received from the message bus. Execution status unknown."},
                                                400), "create_limit_new")
        http.on("GET", "/api/v3/order", "query_timeout_order")
        result = await router.submit_order_async(limit("T1", qty=0.01))
        assert result.status is OrderStatus.NEW
        assert len(http.to("POST", "/api/v3/order")) == 1  # it was placed: a resend would double it
    finally:
        router.close()
        venue.close()


async def test_rejected_status_has_a_reason() -> None:
    venue, http = await opened()
    try:
        http.on("POST", "/api/v3/order", canned(http, bn_order("RJ", "REJECTED", "0", "0", fills=[])))
        result = await venue.submit_async(limit("RJ"))
        assert result.status is OrderStatus.REJECTED
        assert result.reason == "binance rejected the order (no reason given)"
    finally:
        venue.close()


async def test_filled_going_down_never_unfills_or_regresses() -> None:
    venue, http = await opened()
    reports: list[ExecutionReport] = []
    venue.add_report_listener(reports.append)
    try:
        http.on("POST", "/api/v3/order", "create_limit_partial")  # 0.005 filled
        await venue.submit_async(limit("P1"))
        http.on("GET", "/api/v3/order", canned(http, bn_order("P1", "PARTIALLY_FILLED", "0.01200000",
                                                              "720.00000000", order_id=9780331419)),
                "query_partial", canned(http, bn_order("P1", "NEW", "0.00000000", "0", order_id=9780331419)),
                "query_partial")
        http.on("GET", "/api/v3/depth", *["depth"] * 8)
        for _ in range(4):
            await venue.poll_once()
        fills = [r.fill for r in reports if r.fill is not None]
        assert [round(f.quantity, 6) for f in fills] == [0.007]
        assert all(r.status is OrderStatus.PARTIALLY_FILLED for r in reports)
        status = await _status_with(http, venue, "P1", "query_partial")
        assert status.status is OrderStatus.PARTIALLY_FILLED and status.filled_quantity == pytest.approx(0.012)
    finally:
        venue.close()


async def _status_with(http, venue, cid, reply):
    http.on("GET", "/api/v3/order", reply)
    return await venue.status_async(cid)


async def test_a_poisonous_reply_does_not_starve_the_other_orders() -> None:
    venue, http = await opened()
    reports: list[ExecutionReport] = []
    venue.add_report_listener(reports.append)
    try:
        http.on("POST", "/api/v3/order", "create_limit_new", "create_limit_partial")
        await venue.submit_async(limit("L1", qty=0.01))
        await venue.submit_async(limit("P1"))
        # L1's reply is one CCXT's parser chokes on (a ValueError, not a ccxt error)
        http.on("GET", "/api/v3/order", canned(http, bn_order("L1", "NEW", "NaN", "NaN", order_id=9780331417)),
                "query_partial")
        http.on("GET", "/api/v3/depth", "depth", "depth")
        await venue.poll_once()
        assert [r.client_order_id for r in reports if r.fill is not None] == ["P1"]
    finally:
        venue.close()


async def test_keys_planted_in_replies_never_reach_reasons_or_logs(caplog) -> None:
    caplog.set_level(logging.DEBUG)
    venue, http = await opened()
    try:
        http.on("POST", "/api/v3/order", canned(http, {"code": -2015, "msg": f"Invalid API-key {API_KEY}, "
                                                                             f"secret {API_SECRET}"}, 401))
        from engine import AsyncOrderRouter, RetryPolicy
        router = AsyncOrderRouter(retry_policy=RetryPolicy(retry_delay=0.001, max_delay=0.01))
        router.register_exchange("binance", venue)
        try:
            result = await router.submit_order_async(limit("K1"))
            http.on("POST", "/api/v3/order", ccxt.RequestTimeout(f"binance POST https://x/?apiKey={API_KEY}"))
            http.on("GET", "/api/v3/order", *[canned(http, {"code": -1021, "msg": f"ts {API_SECRET}"}, 400)] * 100)
            second = await router.submit_order_async(limit("K2"))
        finally:
            router.close()
        texts = [result.reason or "", second.reason or "", caplog.text]
        for text in texts:
            assert API_KEY not in text and API_SECRET not in text
        assert result.status is OrderStatus.REJECTED
    finally:
        venue.close()


async def test_a_restarted_venue_finds_follows_and_cancels_an_order_by_client_id() -> None:
    venue, http = await opened()
    reports: list[ExecutionReport] = []
    venue.add_report_listener(reports.append)
    try:
        # a new CcxtVenue object: nothing in memory about P1, which rests at binance (on
        # ETH/USDT, the second symbol listed)
        resting = bn_order("P1", "PARTIALLY_FILLED", "0.00500000", "300.00000000", order_id=9780331419)
        resting["symbol"] = "ETHUSDT"
        http.on("GET", "/api/v3/openOrders", canned(http, [resting]))
        found = await venue.status_async("P1")
        assert found.status is OrderStatus.PARTIALLY_FILLED and found.filled_quantity == pytest.approx(0.005)
        assert found.symbol == "ETH/USDT"
        assert len(http.sent) == 1  # one request for every symbol's open orders, not one per symbol
        assert "symbol" not in http.sent[0].params
        later = bn_order("P1", "PARTIALLY_FILLED", "0.01200000", "720.00000000", order_id=9780331419)
        later["symbol"] = "ETHUSDT"
        http.on("GET", "/api/v3/order", canned(http, later))
        http.on("GET", "/api/v3/depth", "depth")
        await venue.poll_once()  # fills made after the restart reach the engine
        assert http.to("GET", "/api/v3/order")[0].params["symbol"] == "ETHUSDT"
        assert [round(r.fill.quantity, 6) for r in reports if r.fill is not None] == [0.007]
        gone = dict(later, status="CANCELED", clientOrderId="x", origClientOrderId="P1")
        http.on("DELETE", "/api/v3/order", canned(http, gone))
        canceled = await venue.cancel_async("P1")
        assert http.to("DELETE", "/api/v3/order")[0].params["symbol"] == "ETHUSDT"
        assert canceled.status is OrderStatus.CANCELED and canceled.filled_quantity == pytest.approx(0.012)
    finally:
        venue.close()


async def test_a_restarted_venue_finds_an_order_that_ended_meanwhile_in_its_symbol() -> None:
    venue, http = await opened()
    try:
        http.on("GET", "/api/v3/openOrders", canned(http, []))
        http.on("GET", "/api/v3/order", canned(http, {"code": -2013, "msg": "Order does not exist."}, 400),
                canned(http, dict(bn_order("F1", "FILLED", "0.02000000", "1200.00000000"), symbol="ETHUSDT")))
        found = await venue.status_async("F1")
        assert found.status is OrderStatus.FILLED and found.symbol == "ETH/USDT"
        assert [s.params["symbol"] for s in http.to("GET", "/api/v3/order")] == ["BTCUSDT", "ETHUSDT"]
    finally:
        venue.close()


async def test_close_with_a_create_in_flight_answers_the_caller() -> None:
    venue, http = await opened()
    gate = threading.Event()
    real = http.fetch

    async def stuck(url, method="GET", headers=None, body=None):
        if method == "POST":
            gate.set()
            await asyncio.sleep(3600)  # the exchange never answers
        return await real(url, method, headers, body)

    venue.exchange.fetch = stuck
    task = asyncio.ensure_future(venue.submit_async(limit("C1")))
    await asyncio.get_running_loop().run_in_executor(None, gate.wait, 10)
    await venue.close_async()
    with pytest.raises(UnknownOutcomeError, match="closed"):
        await asyncio.wait_for(task, 10)


def test_a_sync_call_from_a_report_listener_is_refused_not_deadlocked() -> None:
    venue, http = offline_venue("binance")
    venue.connect()
    seen: list[BaseException] = []

    def listener(report: ExecutionReport) -> None:
        try:
            venue.status("P1")  # on the venue's own loop thread
        except BaseException as exc:
            seen.append(exc)

    venue.add_report_listener(listener)
    try:
        http.on("POST", "/api/v3/order", "create_limit_partial")
        venue.submit(limit("P1"))
        http.on("GET", "/api/v3/order", "query_partial")
        http.on("GET", "/api/v3/depth", "depth", "depth")
        venue._submit_coro(venue._poll).result(timeout=10)
        assert seen and "loop" in str(seen[0])
    finally:
        venue.close()


def test_trades_already_counted_under_a_derived_id_are_not_counted_again() -> None:
    from engine.venues.ccxtio.convert import new_fills

    order = {"id": "9", "filled": 0.012, "average": 60000.0, "trades": [
        {"id": "1", "amount": 0.005, "price": 60000.0}, {"id": "2", "amount": 0.007, "price": 60000.0}]}
    fills = new_fills(order, cid="P1", venue="v", symbol="BTC/USDT", side=OrderSide.BUY, known_qty=0.005,
                      known_notional=300.0, known_fee=0.0, known_trades={"9:0.005"}, market=None, maker=True,
                      now=0.0)
    assert [(round(f.quantity, 6), f.price, f.trade_id) for f in fills] == [(0.007, 60000.0, "9:0.012")]


async def test_create_and_every_status_query_time_out_the_order_is_never_resent() -> None:
    from engine import AsyncOrderRouter, RetryPolicy

    venue, http = await opened()
    reports: list[ExecutionReport] = []
    router = AsyncOrderRouter(retry_policy=RetryPolicy(retry_delay=0.001, max_delay=0.01))
    router.register_exchange("binance", venue)
    try:
        http.on("POST", "/api/v3/order", ccxt.RequestTimeout("binance POST /api/v3/order"))
        http.on("GET", "/api/v3/order", *[ccxt.RequestTimeout("binance GET /api/v3/order")] * 100)
        result = await router.submit_order_async(limit("T1", qty=0.01))
        assert result.status is OrderStatus.PENDING_NEW and "outcome unknown" in result.reason
        assert router.unreconciled == ["T1"]
        http._queues[("GET", "/api/v3/order")].clear()
        # the poller leaves it to the router (it never polls an unsettled create)
        http.on("GET", "/api/v3/depth", "depth", "depth")
        await venue.poll_once()
        assert http.to("GET", "/api/v3/order")[-1:] and len(http.to("POST", "/api/v3/order")) == 1
        http.on("GET", "/api/v3/order", "query_timeout_order")
        (settled,) = await router.reconcile_pending_async()
        assert settled.status is OrderStatus.NEW and router.unreconciled == []
        assert len(http.to("POST", "/api/v3/order")) == 1  # never sent twice
        venue.add_report_listener(reports.append)
        http.on("GET", "/api/v3/order", canned(http, bn_order("T1", "FILLED", "0.01000000", "600.00000000",
                                                              qty="0.01000000", order_id=9780331420)))
        http.on("GET", "/api/v3/depth", "depth", "depth")
        await venue.poll_once()  # settled, it is followed like any other
        assert [r.status for r in reports] == [OrderStatus.FILLED]
        assert router.get_order_status("T1").status is OrderStatus.FILLED
    finally:
        router.close()
        venue.close()


async def test_a_burst_of_429s_gives_up_with_the_exchange_words_and_counts_against_the_breaker() -> None:
    from engine import AsyncOrderRouter, RetryPolicy

    venue, http = await opened()
    router = AsyncOrderRouter(retry_policy=RetryPolicy(retry_delay=0.001, max_delay=0.01))
    router.register_exchange("binance", venue)
    try:
        http.on("POST", "/api/v3/order", *["rate_limited"] * 200)
        results = [await router.submit_order_async(limit(f"R{i}", qty=0.01)) for i in range(6)]
        assert all(r.status is OrderStatus.REJECTED for r in results)
        assert "Too much request weight used; current limit is 6000 request weight per 1 MINUTE" \
            in results[0].reason
        assert "(code -1003)" in results[0].reason  # the exchange's own words, not its JSON
        assert "circuit breaker is OPEN" in results[-1].reason
        assert router.breaker("binance").state.name == "OPEN"
        assert len(http.to("POST", "/api/v3/order")) < 6 * 4  # the open breaker sent no more
    finally:
        router.close()
        venue.close()


async def test_a_reply_filling_more_than_the_order_never_fills_past_its_quantity(caplog) -> None:
    venue, http = await opened()
    reports: list[ExecutionReport] = []
    venue.add_report_listener(reports.append)
    try:
        http.on("POST", "/api/v3/order", "create_limit_partial")  # 0.005 of 0.02
        await venue.submit_async(limit("P1"))
        http.on("GET", "/api/v3/order", canned(http, bn_order("P1", "FILLED", "5.00000000", "300000.00000000",
                                                              order_id=9780331419)))
        http.on("GET", "/api/v3/depth", "depth", "depth")
        await venue.poll_once()
        fills = [r.fill for r in reports if r.fill is not None]
        assert sum(f.quantity for f in fills) == pytest.approx(0.015)  # what was left of 0.02
        assert reports[-1].status is OrderStatus.FILLED and reports[-1].filled_quantity == pytest.approx(0.02)
        assert "more than the order's quantity" in caplog.text
    finally:
        venue.close()


async def test_nan_and_missing_figures_add_no_fill_and_keep_the_state() -> None:
    venue, http = await opened()
    reports: list[ExecutionReport] = []
    venue.add_report_listener(reports.append)
    try:
        http.on("POST", "/api/v3/order", "create_limit_partial")  # 0.005 of 0.02
        await venue.submit_async(limit("P1"))
        nan = bn_order("P1", "PARTIALLY_FILLED", "NaN", "NaN", order_id=9780331419)
        missing = bn_order("P1", "PARTIALLY_FILLED", "0", "0", order_id=9780331419)
        del missing["executedQty"], missing["cummulativeQuoteQty"]
        http.on("GET", "/api/v3/order", canned(http, nan), canned(http, missing))
        http.on("GET", "/api/v3/depth", *["depth"] * 4)
        await venue.poll_once()
        await venue.poll_once()
        assert reports == []
        http.on("GET", "/api/v3/order", "query_partial")
        status = await venue.status_async("P1")
        assert status.status is OrderStatus.PARTIALLY_FILLED and status.filled_quantity == pytest.approx(0.012)
    finally:
        venue.close()


async def test_cancel_of_an_order_that_filled_meanwhile_tells_the_fill_and_refuses() -> None:
    venue, http = await opened()
    reports: list[ExecutionReport] = []
    venue.add_report_listener(reports.append)
    try:
        http.on("POST", "/api/v3/order", "create_limit_partial")  # 0.005 of 0.02
        await venue.submit_async(limit("P1"))
        http.on("DELETE", "/api/v3/order", canned(http, {"code": -2011, "msg": "Unknown order sent."}, 400))
        http.on("GET", "/api/v3/order", canned(http, bn_order("P1", "FILLED", "0.02000000", "1200.00000000",
                                                              order_id=9780331419)))
        result = await venue.cancel_async("P1")
        assert result.status is OrderStatus.REJECTED and "Unknown order sent." in result.reason
        assert [(r.status, round(r.fill.quantity, 6)) for r in reports] == [(OrderStatus.FILLED, 0.015)]
        again = await venue.cancel_async("P1")
        assert "too late to cancel: the order is FILLED" in again.reason
    finally:
        venue.close()


async def test_a_create_reply_ccxt_cannot_read_is_an_unknown_outcome_settled_by_status() -> None:
    from engine import AsyncOrderRouter, RetryPolicy

    venue, http = await opened()
    router = AsyncOrderRouter(retry_policy=RetryPolicy(retry_delay=0.001, max_delay=0.01))
    router.register_exchange("binance", venue)
    try:
        http.on("POST", "/api/v3/order", canned(http, bn_order("T1", "NEW", "NaN", "0", fills=[])))
        http.on("GET", "/api/v3/order", "query_timeout_order")
        result = await router.submit_order_async(limit("T1", qty=0.01))
        assert result.status is OrderStatus.NEW
        assert len(http.to("POST", "/api/v3/order")) == 1
    finally:
        router.close()
        venue.close()


async def test_without_a_symbol_list_the_poller_fetches_only_the_books_asked_for() -> None:
    venue, http = await opened(symbols=None)  # every spot market of the fixture is listed
    try:
        listed = list(venue.instruments())
        assert listed == ["BTC/USDT", "ETH/USDT"]  # (binance lists over a thousand)
        http.on("GET", "/api/v3/depth", "depth")
        await venue.poll_once()  # nothing asked for yet: no book request at all
        assert http.to("GET", "/api/v3/depth") == []
        assert venue.book("BTC/USDT").bids == ()  # asks for it: fetched from the next round on
        await venue.poll_once()
        assert [s.params["symbol"] for s in http.to("GET", "/api/v3/depth")] == ["BTCUSDT"]
        assert venue.book("BTC/USDT").best_bid == 59990.0
    finally:
        venue.close()


def test_many_threads_submitting_and_asking_at_once_each_get_their_answer() -> None:
    from concurrent.futures import ThreadPoolExecutor

    venue, http = offline_venue("binance")
    venue.connect()
    try:
        n = 40
        http.on("POST", "/api/v3/order", *["create_limit_new"] * n)
        http.on("GET", "/api/v3/order", *["query_timeout_order"] * n)
        with ThreadPoolExecutor(8) as pool:
            results = list(pool.map(lambda i: venue.submit(limit(f"C{i}", qty=0.01)), range(n)))
            asked = list(pool.map(lambda i: venue.status(f"C{i}"), range(n)))
        assert [r.order_id for r in results] == [f"C{i}" for i in range(n)]
        assert all(r.status is OrderStatus.NEW for r in results + asked)
        assert sorted(s.params["newClientOrderId"] for s in http.to("POST", "/api/v3/order")) == \
            sorted(f"C{i}" for i in range(n))
        assert sorted(s.params["origClientOrderId"] for s in http.to("GET", "/api/v3/order")) == \
            sorted(f"C{i}" for i in range(n))
    finally:
        venue.close()


def test_a_key_is_scrubbed_in_its_url_encoded_form_too() -> None:
    from engine.secrets import Secret
    from engine.venues.ccxtio import CcxtVenue, venue_error

    secret = "Ab+cD/eF=="
    venue = CcxtVenue("binance", api_key=Secret("key-1"), secret=Secret(secret), poll_interval=None)
    try:
        error = venue_error(ccxt.RequestTimeout("binance GET https://x/?s=Ab%2BcD%2FeF%3D%3D&k=key-1"), "binance",
                            "create", venue._scrub)
        assert "Ab%2BcD%2FeF%3D%3D" not in str(error) and "key-1" not in str(error)
    finally:
        venue.close()


async def test_a_cancel_racing_the_poller_that_sees_the_fill_counts_it_once() -> None:
    venue, http = await opened()
    reports: list[ExecutionReport] = []
    venue.add_report_listener(reports.append)
    try:
        http.on("POST", "/api/v3/order", "create_limit_partial")  # 0.005 of 0.02
        await venue.submit_async(limit("P1"))
        real = http.fetch
        cancel_sent = asyncio.Event()
        polled = asyncio.Event()

        async def racing(url, method="GET", headers=None, body=None):
            if method == "DELETE":
                cancel_sent.set()
                await polled.wait()  # the poll's answer lands while the cancel is on its way
            return await real(url, method, headers, body)

        venue.exchange.fetch = racing
        filled = canned(http, bn_order("P1", "FILLED", "0.02000000", "1200.00000000", order_id=9780331419))
        http.on("GET", "/api/v3/order", filled, filled)
        http.on("DELETE", "/api/v3/order", canned(http, {"code": -2011, "msg": "Unknown order sent."}, 400))
        http.on("GET", "/api/v3/depth", "depth", "depth")

        async def poll_when_cancel_is_out():
            await venue._on_loop(_wait_event_on_loop, cancel_sent)
            await venue.poll_once()
            await venue._on_loop(_set_event_on_loop, polled)

        async def _wait_event_on_loop(event):
            await event.wait()

        async def _set_event_on_loop(event):
            event.set()

        poller = asyncio.ensure_future(poll_when_cancel_is_out())
        result = await venue.cancel_async("P1")
        await poller
        assert result.status is OrderStatus.REJECTED and result.filled_quantity == pytest.approx(0.02)
        fills = [r.fill for r in reports if r.fill is not None]
        assert [round(f.quantity, 6) for f in fills] == [0.015]
        assert [r.status for r in reports] == [OrderStatus.FILLED]
    finally:
        venue.close()


async def test_an_ioc_remainder_the_exchange_expired_comes_back_expired_with_its_fills() -> None:
    venue, http = await opened()
    try:
        http.on("POST", "/api/v3/order", canned(http, bn_order(
            "I1", "EXPIRED", "0.00500000", "300.00000000", tif="IOC",
            fills=[{"price": "60000.00000000", "qty": "0.00500000", "commission": "0.3", "commissionAsset": "USDT",
                    "tradeId": "8001"}])))
        result = await venue.submit_async(limit("I1", tif=TimeInForce.IOC))
        assert http.to("POST", "/api/v3/order")[0].params["timeInForce"] == "IOC"
        assert result.status is OrderStatus.EXPIRED and result.filled_quantity == pytest.approx(0.005)
        assert [f.trade_id for f in result.fills] == ["8001"]
        again = await venue.cancel_async("I1")
        assert "too late to cancel: the order is EXPIRED" in again.reason
    finally:
        venue.close()


async def test_a_resting_order_the_exchange_expired_by_itself_is_reported_ended() -> None:
    venue, http = await opened()
    reports: list[ExecutionReport] = []
    venue.add_report_listener(reports.append)
    try:
        http.on("POST", "/api/v3/order", "create_limit_partial")  # 0.005 of 0.02
        await venue.submit_async(limit("P1"))
        # self-trade prevention ended it, after a little more filled
        http.on("GET", "/api/v3/order", canned(http, bn_order("P1", "EXPIRED_IN_MATCH", "0.00800000",
                                                              "480.00000000", order_id=9780331419)))
        http.on("GET", "/api/v3/depth", *["depth"] * 4)
        await venue.poll_once()
        assert [(r.status, r.fill.quantity if r.fill else None) for r in reports] == [
            (OrderStatus.EXPIRED, pytest.approx(0.003)), (OrderStatus.EXPIRED, None)]
        assert reports[-1].reason == "expired at binance"
        await venue.poll_once()  # ended: not asked again
        assert len(http.to("GET", "/api/v3/order")) == 1
    finally:
        venue.close()


async def test_a_429_with_retry_after_stops_every_request_until_it_has_passed() -> None:
    from engine import AsyncOrderRouter, RetryPolicy

    now = [1000.0]
    venue, http = await opened(clock=lambda: now[0])
    router = AsyncOrderRouter(retry_policy=RetryPolicy(retry_delay=0.001, max_delay=0.01))
    router.register_exchange("binance", venue)
    try:
        name = canned(http, http.canned["rate_limited"]["body"], 429)
        http.canned[name]["headers"] = {"Retry-After": "30"}  # binance sends one with its 429 and 418
        http.on("POST", "/api/v3/order", name)
        result = await router.submit_order_async(limit("R1", qty=0.01))
        assert result.status is OrderStatus.REJECTED and "pause (Retry-After)" in result.reason
        assert len(http.sent) == 1  # the router's retries did not reach binance
        await venue.poll_once()  # nor does the poller
        assert len(http.sent) == 1
        now[0] += 31
        http.on("POST", "/api/v3/order", "create_limit_new")
        assert (await venue.submit_async(limit("L1", qty=0.01))).status is OrderStatus.NEW
    finally:
        router.close()
        venue.close()


async def test_a_recovered_order_on_a_symbol_no_longer_listed_is_still_found_and_followed() -> None:
    venue, http = await opened(symbols=["BTC/USDT"])  # the previous run listed ETH/USDT too
    try:
        resting = dict(bn_order("E1", "NEW", "0.00000000", "0.00000000"), symbol="ETHUSDT")
        http.on("GET", "/api/v3/openOrders", canned(http, [resting]))
        found = await venue.status_async("E1")
        assert found.status is OrderStatus.NEW and found.symbol == "ETH/USDT"
        http.on("DELETE", "/api/v3/order", canned(http, dict(resting, status="CANCELED")))
        assert (await venue.cancel_async("E1")).status is OrderStatus.CANCELED
    finally:
        venue.close()


def test_close_from_a_report_listener_does_not_hang_or_raise() -> None:
    venue, http = offline_venue("binance")
    venue.connect()
    seen: list[BaseException] = []

    def listener(report: ExecutionReport) -> None:
        try:
            venue.close()  # on the venue's own loop thread
        except BaseException as exc:
            seen.append(exc)

    venue.add_report_listener(listener)
    try:
        http.on("POST", "/api/v3/order", "create_limit_partial")
        venue.submit(limit("P1"))
        http.on("GET", "/api/v3/order", "query_partial")
        http.on("GET", "/api/v3/depth", "depth", "depth")
        venue._submit_coro(venue._poll).result(timeout=10)
    except BaseException as exc:
        seen.append(exc)
    finally:
        venue.close()
    assert venue._thread is not None
    venue._thread.join(timeout=10)
    assert not venue._thread.is_alive()
    assert seen == [] or all("closed" in str(e) for e in seen), seen


async def test_bybit_order_rejected_after_its_ack_carries_bybit_reject_reason() -> None:
    venue, http = await opened("bybit")
    try:
        for method, path, reply in (("GET", "/v5/user/query-api", "query_api"), ("GET", "/v5/account/info",
                                                                                "account_info")):
            http.on(method, path, reply)
        body = json.loads(json.dumps(http.canned["open_b1_new"]["body"]))
        body["result"]["list"][0].update(orderStatus="Rejected", rejectReason="EC_PostOnlyWillTakeLiquidity")
        http.on("POST", "/v5/order/create", "create_ack_b1")
        http.on("GET", "/v5/order/realtime", canned(http, body))
        result = await venue.submit_async(limit("B1", qty=0.01))
        assert result.status is OrderStatus.REJECTED
        assert result.reason == "bybit rejected the order: EC_PostOnlyWillTakeLiquidity"
    finally:
        venue.close()
