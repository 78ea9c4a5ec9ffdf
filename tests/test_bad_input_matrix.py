"""Bad input through every door: a matrix of doors x kinds of bad input (issue 18).

Every cell of DOORS x KINDS is either a case (a function registered with `@case`) or
has a written reason in NOT_APPLICABLE; `test_every_cell_is_a_case_or_says_why` holds
the two to the whole product. Each case asserts the text of its error or refusal (the
field or thing that was wrong, and the value), that nothing already accepted was lost,
and that an ordinary order still fills afterwards through the same door. A file door
either refuses with a clear message and leaves the file's bytes as they were, or starts
with defaults and says so: each case asserts which one the code does.

Doors:
    api_sync         the seed's sync classes: OrderRouter, ExecutionOptimizer, Order
    api_async        Engine.submit, submit_many, amend, cancel
    ticket           the desk's order ticket, driven with Pilot
    fix_from_venue   what a FIX counterparty sends to FixVenue (a scripted acceptor on 127.0.0.1:0)
    fix_into_server  what a FIX client sends to the `execdesk venue` server (FixVenueServer)
    journal_file     the order journal (engine.journal.Journal, the Engine's `journal=`)
    profiler_file    the saved latency file (LatencyProfiler.load, the desk's history view)
    risk_file        the risk limits TOML (engine.risk.load_or_create, as the desk starts)
    settings_file    the desk's settings.json (tui.settings.Settings.load)
"""

from __future__ import annotations

import itertools
import json
import logging
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from pydantic import ValidationError

from engine import (ExchangeClient, ExecutionOptimizer, LatencyProfiler, Order, OrderRouter,
                    OrderStatus, ProfilerFileError)
from engine.errors import ConfigurationError, UnknownOrderError
from engine.risk import load_or_create as load_risk
from engine.venues.fix import MsgType, Tag, encode, utc_timestamp
from engine.venues.fixio.venue import FixVenue
from tests import test_fix_server as fix_server
from tests.desk_support import make_app, make_engine, until
from tests.fix_venue_helpers import WAIT, NetLoop, ScriptedVenue, wait_for
from tests.test_fix_server_badfix import RawClient
from tui.screens.ticket import TicketScreen
from tui.settings import Settings

DOORS = ("api_sync", "api_async", "ticket", "fix_from_venue", "fix_into_server",
         "journal_file", "profiler_file", "risk_file", "settings_file")
KINDS = (
    "nan_quantity", "inf_quantity", "negative_quantity", "zero_quantity", "huge_quantity",
    "nan_price", "inf_price", "negative_price", "zero_price", "huge_price",
    "off_tick", "off_lot", "unknown_symbol", "unknown_venue", "duplicate_id", "unknown_id",
    "missing_field", "wrong_type", "unicode_string", "overlong_string",
    "garbled_bytes", "wrong_sequence", "truncated_file", "foreign_file", "newer_version",
)
NUMBER_KINDS = KINDS[:10]
FILE_KINDS = ("truncated_file", "foreign_file", "newer_version")

CASES: dict[tuple[str, str], Callable[..., Any]] = {}
NOT_APPLICABLE: dict[tuple[str, str], str] = {}
# Cells whose case shows a bug in a file this branch may not change (the lead's): the
# case runs as xfail(strict) with the cause, and turns green when the bug is fixed.
XFAIL: dict[tuple[str, str], str] = {}


def case(door: str, *kinds: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    def register(fn: Callable[..., Any]) -> Callable[..., Any]:
        for kind in kinds:
            assert (door, kind) not in CASES, (door, kind)
            CASES[door, kind] = fn
        return fn
    return register


def not_applicable(doors: tuple[str, ...] | str, kinds: tuple[str, ...] | str, why: str) -> None:
    for door, kind in itertools.product((doors,) if isinstance(doors, str) else doors,
                                        (kinds,) if isinstance(kinds, str) else kinds):
        assert (door, kind) not in NOT_APPLICABLE, (door, kind)
        NOT_APPLICABLE[door, kind] = why


def params(door: str) -> list[Any]:
    out = []
    for kind in KINDS:
        if (door, kind) not in CASES:
            continue
        marks = [pytest.mark.xfail(strict=True, reason=XFAIL[door, kind])] if (door, kind) in XFAIL else []
        out.append(pytest.param(kind, id=kind, marks=marks))
    return out


# Values for the number kinds: (what is given, how the message writes it).
QUANTITIES = {"nan_quantity": (float("nan"), "nan"), "inf_quantity": (float("inf"), "inf"),
              "negative_quantity": (-5.0, "-5"), "zero_quantity": (0.0, "0"), "huge_quantity": (1e300, "1e+300")}
PRICES = {"nan_price": (float("nan"), "nan"), "inf_price": (float("inf"), "inf"),
          "negative_price": (-5.0, "-5"), "zero_price": (0.0, "0"), "huge_price": (1e300, "1e+300")}
BIDI = "BTC/USD\u202e"  # a right-to-left override: prints as something else than it is
LONG = "X" * 5000
MESSAGE_AT_MOST = 400  # an error quoting an overlong value clips it: the operator reads it


def market(oid: str, qty: float = 0.01, **kw: Any) -> Order:
    return Order(id=oid, symbol="BTC/USD", side="BUY", type="MARKET", quantity=qty, **kw)


def limit(oid: str, price: float, qty: float = 0.01, **kw: Any) -> Order:
    return Order(id=oid, symbol="BTC/USD", side="BUY", type="LIMIT", quantity=qty, price=price, **kw)


# =====================================================================================
# api_sync: OrderRouter / ExecutionOptimizer (the component document's classes)
# =====================================================================================
not_applicable("api_sync", ("garbled_bytes", "wrong_sequence", *FILE_KINDS),
               "the Python API takes Order objects and ids, never bytes, sequence numbers or files")


class SyncDoor:
    def __init__(self) -> None:
        self.exchange = ExchangeClient()
        self.router = OrderRouter(latency_profiler=LatencyProfiler())
        self.router.register_exchange("ex", self.exchange)
        self.optimizer = ExecutionOptimizer(order_router=self.router, latency_profiler=LatencyProfiler())
        self.optimizer.start()
        self.seq = itertools.count(1)
        self.accepted: list[str] = []

    def ordinary_fill(self) -> None:
        oid = f"sync-ok-{next(self.seq)}"
        result = self.router.submit_order(market(oid), exchange_id="ex")
        assert (result.status, result.filled_quantity) == (OrderStatus.FILLED, 0.01), result
        qid = self.optimizer.submit_order(market(f"q-{oid}"))
        assert self.optimizer.wait(qid, WAIT).status is OrderStatus.FILLED
        self.accepted += [oid, qid]
        # Nothing accepted earlier is lost: every order the door took still answers, filled.
        for known in self.accepted:
            assert self.optimizer.get_order_status(known).status is OrderStatus.FILLED or \
                self.router.get_order_status(known).status is OrderStatus.FILLED

    def rejected(self, order: Order, venue: str = "ex") -> str:
        result = self.router.submit_order(order, exchange_id=venue)
        assert result.status is OrderStatus.REJECTED, result
        assert result.filled_quantity == 0
        return result.reason or ""


@pytest.fixture(scope="module")
def sync_door() -> Iterator[SyncDoor]:
    door = SyncDoor()
    door.ordinary_fill()
    try:
        yield door
    finally:
        door.optimizer.stop()


def order_error(**fields: Any) -> str:
    base: dict[str, Any] = dict(id="bad-1", symbol="BTC/USD", side="BUY", type="LIMIT", quantity=0.01, price=100.0)
    base.update(fields)
    with pytest.raises(ValidationError) as info:
        Order(**base)
    return str(info.value)


@case("api_sync", *NUMBER_KINDS)
def sync_numbers(door: SyncDoor, kind: str) -> None:
    field, (value, shown) = (("quantity", QUANTITIES[kind]) if kind in QUANTITIES else ("price", PRICES[kind]))
    text = order_error(**{field: value})
    assert field in text and shown in text.replace("input_value=", "got "), text
    door.ordinary_fill()


@case("api_sync", "off_tick", "off_lot", "unknown_symbol", "unknown_venue")
def sync_venue_refusals(door: SyncDoor, kind: str) -> None:
    if kind == "off_tick":
        assert door.rejected(limit("tick-1", 100.001)) == "price 100.001 is not a multiple of the tick 0.01 for BTC/USD"
    elif kind == "off_lot":
        assert door.rejected(market("lot-1", qty=0.00015)) == \
            "quantity 0.00015 is not a multiple of the lot 0.0001 for BTC/USD"
    elif kind == "unknown_symbol":
        reason = door.rejected(Order(id="sym-1", symbol="NOPE/USD", side="BUY", type="MARKET", quantity=1.0))
        assert reason.startswith("unknown symbol 'NOPE/USD' at sim (symbols: BTC/USD"), reason
    else:
        assert door.rejected(market("ven-1"), venue="nowhere") == "unknown exchange 'nowhere' (known: ex)"
    door.ordinary_fill()


@case("api_sync", "duplicate_id")
def sync_duplicate(door: SyncDoor, kind: str) -> None:
    first = door.router.submit_order(market("dup-1"), exchange_id="ex")
    assert first.status is OrderStatus.FILLED
    # The same id with other fields is refused; the first order keeps its state.
    assert door.rejected(market("dup-1", qty=0.02)) == "client order id 'dup-1' was already used for a different order"
    assert door.router.get_order_status("dup-1").filled_quantity == 0.01
    qid = door.optimizer.submit_order(market("dup-q"))
    with pytest.raises(ConfigurationError, match="order id 'dup-q' is already in use"):
        door.optimizer.submit_order(market("dup-q", qty=0.02))
    assert door.optimizer.wait(qid, WAIT).filled_quantity == 0.01
    door.ordinary_fill()


@case("api_sync", "unknown_id")
def sync_unknown_id(door: SyncDoor, kind: str) -> None:
    with pytest.raises(UnknownOrderError, match="order 'ghost-1' is unknown"):
        door.optimizer.get_order_status("ghost-1")
    result = door.router.cancel_order("ghost-2")
    assert result.status is OrderStatus.REJECTED and "ghost-2" in (result.reason or ""), result
    door.ordinary_fill()


@case("api_sync", "missing_field")
def sync_missing(door: SyncDoor, kind: str) -> None:
    with pytest.raises(ValidationError, match=r"quantity\n  Field required"):
        Order(id="miss-1", symbol="BTC/USD", side="BUY", type="MARKET")
    assert "price is required for LIMIT orders" in order_error(price=None)
    door.ordinary_fill()


@case("api_sync", "wrong_type")
def sync_wrong_type(door: SyncDoor, kind: str) -> None:
    text = order_error(quantity="5")
    assert "quantity" in text and "input_value='5'" in text, text
    with pytest.raises(TypeError, match="expected an Order, got str: 'not an order'"):
        door.optimizer.submit_order("not an order")  # type: ignore[arg-type]
    # The router's door: a dict is not an order, and the error must say so (not an AttributeError).
    with pytest.raises(TypeError, match="expected an Order, got dict"):
        door.router.submit_order({"id": "x"}, exchange_id="ex")  # type: ignore[arg-type]
    door.ordinary_fill()




@case("api_sync", "unicode_string", "overlong_string")
def sync_strings(door: SyncDoor, kind: str) -> None:
    symbol = BIDI if kind == "unicode_string" else LONG
    text = order_error(symbol=symbol)
    assert "symbol must be 1-64 printable characters" in text, text
    if kind == "overlong_string":
        assert "(5,000 characters)" in text and len(text) < 2 * MESSAGE_AT_MOST, text[:600]
        assert "id must be 1-36 characters" in order_error(id="a" * 5000)
        assert len(order_error(id="a" * 5000)) < 2 * MESSAGE_AT_MOST
    else:
        assert "'BTC/USD\\u202e'" in text, text
        # Letters of any script are a symbol's right (exchanges list such tokens).
        assert Order(id="u-1", symbol="币安/USDT", side="BUY", type="MARKET", quantity=1.0).symbol == "币安/USDT"
    door.ordinary_fill()


@pytest.mark.parametrize("kind", params("api_sync"))
def test_api_sync(kind: str, sync_door: SyncDoor) -> None:
    CASES["api_sync", kind](sync_door, kind)


# =====================================================================================
# api_async: Engine.submit / submit_many / amend / cancel
# =====================================================================================
not_applicable("api_async", ("garbled_bytes", "wrong_sequence", *FILE_KINDS),
               "the Engine's API takes Order objects and ids, never bytes, sequence numbers or files "
               "(its journal file is the journal_file door)")


class AsyncDoor:
    def __init__(self) -> None:
        self.engine = make_engine()
        self.seq = itertools.count(1)
        self.accepted: list[str] = []

    async def ordinary_fill(self) -> None:
        oid = await self.engine.submit(market(f"async-ok-{next(self.seq)}"))
        result = await self.engine.wait(oid, WAIT)
        assert (result.status, result.filled_quantity) == (OrderStatus.FILLED, 0.01), result
        self.accepted.append(oid)
        for known in self.accepted:
            assert self.engine.status(known).status is OrderStatus.FILLED

    async def resting(self, oid: str) -> float:
        bid = self.engine.venues["swift"].book("BTC/USD").best_bid
        price = round(bid - 100, 2)
        await self.engine.submit(limit(oid, price), "swift")
        with anyio.fail_after(WAIT):
            while self.engine.order_status_or_none(oid) is None or self.engine.status(oid).status is not OrderStatus.NEW:
                await anyio.sleep(0.005)
        return price


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
async def async_door() -> Any:
    door = AsyncDoor()
    await door.engine.start(2)
    try:
        await door.ordinary_fill()
        yield door
    finally:
        await door.engine.stop(drain=False, timeout=2.0)


@case("api_async", *NUMBER_KINDS)
async def async_numbers(door: AsyncDoor, kind: str) -> None:
    # Amend takes bare numbers: the door where NaN and friends reach the engine unbuilt.
    price = await door.resting("rest-1")
    field, (value, shown) = (("quantity", QUANTITIES[kind]) if kind in QUANTITIES else ("price", PRICES[kind]))
    result = await door.engine.amend("rest-1", **{field: value})
    assert result.status is OrderStatus.REJECTED
    reason = result.reason or ""
    assert reason.startswith("amend of 'rest-1' refused: "), reason
    if kind == "huge_quantity":
        assert "quantity 1e+300 > max 50 (BTC/USD)" in reason, reason
    elif kind == "huge_price":
        # The risk limits see it first, as the notional it makes (0.01 x 1e300).
        assert "notional 1e+298 > max" in reason, reason
    else:
        assert f"{field} must be finite and > 0, got {shown}" in reason, reason
    now = door.engine.status("rest-1")
    assert (now.status, now.quantity, now.price) == (OrderStatus.NEW, 0.01, price)  # unchanged, not lost
    await door.ordinary_fill()


@case("api_async", "off_tick", "off_lot", "unknown_symbol", "unknown_venue", "unicode_string")
async def async_venue_refusals(door: AsyncDoor, kind: str) -> None:
    e = door.engine
    if kind == "unknown_venue":
        with pytest.raises(ConfigurationError, match=r"unknown venue 'nowhere' \(venues: swift, deep, thrift\)"):
            await e.submit(market("v-1"), "nowhere")
    elif kind == "unicode_string":
        with pytest.raises(ValidationError, match="symbol must be 1-64 printable characters"):
            Order(id="u-1", symbol=BIDI, side="BUY", type="MARKET", quantity=0.01)
        # A symbol in another script is a name like any other: refused as unknown, by name.
        oid = await e.submit(Order(id="u-2", symbol="币安/USDT", side="BUY", type="MARKET", quantity=1.0))
        result = await e.wait(oid, WAIT)
        assert result.status is OrderStatus.REJECTED and "swift does not list 币安/USDT" in (result.reason or "")
    else:
        order = {"off_tick": limit("t-1", 50000.123),
                 "off_lot": market("l-1", qty=0.0000123),
                 "unknown_symbol": Order(id="s-1", symbol="NOPE/USD", side="BUY", type="MARKET", quantity=1.0)}[kind]
        oid = await e.submit(order)
        result = await e.wait(oid, WAIT)
        assert result.status is OrderStatus.REJECTED
        expected = {"off_tick": "price 50000.123 is not a multiple of the tick 0.01 for BTC/USD",
                    "off_lot": "quantity 1.23e-05 is under the minimum 0.0001 for BTC/USD",
                    "unknown_symbol": "no venue can take NOPE/USD now: swift does not list NOPE/USD"}[kind]
        assert expected in (result.reason or ""), result.reason
    await door.ordinary_fill()


@case("api_async", "duplicate_id")
async def async_duplicate(door: AsyncDoor, kind: str, caplog: pytest.LogCaptureFixture) -> None:
    e = door.engine
    first = door.accepted[0]
    with pytest.raises(ConfigurationError, match=f"order id '{first}' is already in use"):
        await e.submit(market(first, qty=0.02))
    with caplog.at_level(logging.WARNING):
        ids = await e.submit_many([market("many-1"), market("many-1"), market(first)])
    assert ids == ["many-1"]
    assert "order many-1 refused: order id 'many-1' is already in use" in caplog.text
    assert (await e.wait("many-1", WAIT)).filled_quantity == 0.01
    assert e.status(first).filled_quantity == 0.01  # the first keeps its own state
    await door.ordinary_fill()


@case("api_async", "unknown_id")
async def async_unknown_id(door: AsyncDoor, kind: str) -> None:
    canceled = await door.engine.cancel("ghost-1")
    assert (canceled.status, canceled.reason) == (OrderStatus.REJECTED, "unknown order 'ghost-1'")
    amended = await door.engine.amend("ghost-2", quantity=1.0)
    assert (amended.status, amended.reason) == (OrderStatus.REJECTED, "amend of 'ghost-2' refused: unknown order 'ghost-2'")
    await door.ordinary_fill()


@case("api_async", "missing_field")
async def async_missing(door: AsyncDoor, kind: str) -> None:
    await door.resting("rest-2")
    result = await door.engine.amend("rest-2")
    assert result.reason == "amend of 'rest-2' refused: give a new quantity or a new price; the order is unchanged"
    await door.ordinary_fill()


@case("api_async", "wrong_type")
async def async_wrong_type(door: AsyncDoor, kind: str) -> None:
    canceled = await door.engine.cancel(5)  # type: ignore[arg-type]
    assert canceled.reason == "an order id is a string, got int 5"
    await door.resting("rest-3")
    amended = await door.engine.amend("rest-3", quantity="abc")  # type: ignore[arg-type]
    assert amended.reason == "amend of 'rest-3' refused: quantity must be finite and > 0, got 'abc'; the order is unchanged"
    with pytest.raises(TypeError, match="expected an Order, got str: 'not an order'"):
        await door.engine.submit("not an order")  # type: ignore[arg-type]
    await door.ordinary_fill()


@case("api_async", "overlong_string")
async def async_overlong(door: AsyncDoor, kind: str) -> None:
    canceled = await door.engine.cancel("z" * 5000)
    assert canceled.status is OrderStatus.REJECTED
    assert "unknown order 'zzzz" in (canceled.reason or "") and len(canceled.reason or "") < MESSAGE_AT_MOST, \
        len(canceled.reason or "")
    await door.ordinary_fill()




@pytest.mark.anyio
@pytest.mark.parametrize("kind", params("api_async"))
async def test_api_async(kind: str, async_door: AsyncDoor, caplog: pytest.LogCaptureFixture) -> None:
    fn = CASES["api_async", kind]
    if "caplog" in fn.__code__.co_varnames[:fn.__code__.co_argcount]:
        await fn(async_door, kind, caplog)
    else:
        await fn(async_door, kind)


# =====================================================================================
# ticket: the desk's order ticket, typed into with Pilot
# =====================================================================================
not_applicable("ticket", ("unknown_symbol", "unknown_venue"),
               "the ticket's symbol and route are chosen from the venues' own lists (Ctrl+Y, Ctrl+R), never typed; "
               "a settings file naming an unknown one is the settings_file door")
not_applicable("ticket", "unknown_id", "the ticket makes new orders under ids the desk assigns; it names no existing order")
not_applicable("ticket", ("garbled_bytes", "wrong_sequence", *FILE_KINDS),
               "the ticket takes keys typed into fields, never bytes, sequence numbers or files")

TICKET_TEXT = {
    "nan_quantity": ("quantity", "nan", "Quantity must be a finite number, got nan"),
    "inf_quantity": ("quantity", "inf", "Quantity must be a finite number, got inf"),
    "negative_quantity": ("quantity", "-5", "Quantity must be > 0, got -5"),
    "zero_quantity": ("quantity", "0", "Quantity must be > 0, got 0"),
    "huge_quantity": ("quantity", "1e300", "Quantity must be at most 1,000,000,000,000,000 (MAX_QUANTITY), got 1e+300"),
    "nan_price": ("price", "nan", "Limit price must be a finite number, got nan"),
    "inf_price": ("price", "inf", "Limit price must be a finite number, got inf"),
    "negative_price": ("price", "-5", "Limit price must be > 0, got -5"),
    "zero_price": ("price", "0", "Limit price must be > 0, got 0"),
    "huge_price": ("price", "1e300", "Limit price must be in [1e-12, 1,000,000,000,000] (MIN_PRICE, MAX_PRICE), got 1e+300"),
    "off_tick": ("price", "50000.001", "price 50000.001 is not a multiple of the tick 0.01 for BTC/USD"),
    "off_lot": ("quantity", "0.00015", "quantity 0.00015 is not a multiple of the lot 0.0001 for BTC/USD"),
    "missing_field": ("quantity", "", "Quantity is required (a multiple of 0.0001)"),
    "wrong_type": ("quantity", "abc", "Quantity must be a number, got 'abc'"),
    "unicode_string": ("quantity", "١٢", "Quantity takes the digits 0-9 only, got '١٢'"),
    "overlong_string": ("price", "x" * 5000, "Limit price must be a number, got 'xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx... (5,000 characters)"),
}


async def ticket_fill(app: Any, pilot: Any, oid: str) -> None:
    """An ordinary order through the ticket: a buy at the ask, sent with Enter, filled."""
    await pilot.press("b")
    await until(pilot, lambda: isinstance(app.screen, TicketScreen))
    screen = app.screen
    screen.query_one("#field-quantity").value = "0.01"
    screen.query_one("#field-price").value = f"{app._touch('BTC/USD', 'SELL'):.2f}"
    await pilot.pause()
    await pilot.press("enter")
    await until(pilot, lambda: not isinstance(app.screen, TicketScreen))
    with anyio.fail_after(WAIT):
        while (r := app.engine.order_status_or_none(oid)) is None or r.status is not OrderStatus.FILLED:
            await pilot.pause(0.01)


@case("ticket", *TICKET_TEXT)
async def ticket_fields(app: Any, pilot: Any, kind: str) -> None:
    field, typed, expected = TICKET_TEXT[kind]
    await pilot.press("b")
    await until(pilot, lambda: isinstance(app.screen, TicketScreen))
    screen = app.screen
    screen.query_one(f"#field-{field}").value = typed
    await pilot.pause()
    shown = str(screen.query_one(f"#error-{field}").render())
    assert shown == expected, shown[:300]
    assert screen.query_one(f"#error-{field}").display
    await pilot.press("enter")  # refused: nothing is sent, the ticket stays open
    await pilot.pause()
    assert isinstance(app.screen, TicketScreen) and app.engine.stats.submitted == 0
    await pilot.press("escape")
    await until(pilot, lambda: not isinstance(app.screen, TicketScreen))
    await ticket_fill(app, pilot, "T-1")


@case("ticket", "duplicate_id")
async def ticket_duplicate(app: Any, pilot: Any, kind: str) -> None:
    # A library user took the id the ticket would give next: the desk says so, sends nothing
    # under it, and the next ticket takes the next id.
    taken = await app.engine.submit(market("T-1"))
    assert (await app.engine.wait(taken, WAIT)).status is OrderStatus.FILLED
    await pilot.press("b")
    await until(pilot, lambda: isinstance(app.screen, TicketScreen))
    await pilot.press("enter")
    await until(pilot, lambda: any("T-1 not sent: order id 'T-1' is already in use" in n.message
                                   for n in app._notifications))
    assert app.engine.status("T-1").filled_quantity == 0.01  # the library's order is untouched
    await ticket_fill(app, pilot, "T-2")


@pytest.mark.anyio
@pytest.mark.parametrize("kind", params("ticket"))
async def test_ticket(kind: str, tmp_path: Path) -> None:
    app = make_app(tmp_path)
    async with app.run_test(size=(160, 48)) as pilot:
        try:
            await CASES["ticket", kind](app, pilot, kind)
        finally:
            await app.shutdown_engine()


# =====================================================================================
# fix_from_venue: what a FIX counterparty sends to FixVenue
# =====================================================================================
not_applicable("fix_from_venue", ("off_tick", "off_lot"),
               "ticks and lots are rules for what we send; a venue's fill at its own price and size is what "
               "happened, and FixVenue records it (a quantity past the order's is the huge_quantity case)")
not_applicable("fix_from_venue", ("unknown_symbol", "unknown_venue"),
               "FixVenue matches every report to an order by ClOrdID, never by symbol or venue "
               "(a report for no order of ours is the unknown_id case); a FixVenue is one venue")
not_applicable("fix_from_venue", FILE_KINDS, "a FIX session carries messages, not files (its state file is "
               "engine/venues/fix/store.py's, tested in tests/test_fix_venue_state.py)")

SCRIPTED_BAD = {  # kind: (how the report is broken, what the log says)
    "nan_quantity": ((Tag.CumQty, "nan"), "CumQty(14) 'nan' is not a quantity"),
    "inf_quantity": ((Tag.CumQty, "inf"), "CumQty(14) 'inf' is not a quantity"),
    "negative_quantity": ((Tag.CumQty, "-5"), "CumQty(14) '-5' is not a quantity"),
    "huge_quantity": ((Tag.CumQty, "1000000000"), "CumQty(14) 1000000000 is above the order's quantity 0.01"),
    "nan_price": ((Tag.LastPx, "nan"), "LastPx(31) 'nan' is not a price"),
    "inf_price": ((Tag.LastPx, "inf"), "LastPx(31) 'inf' is not a price"),
    "negative_price": ((Tag.LastPx, "-5"), "LastPx(31) '-5' is not a price"),
    "zero_price": ((Tag.LastPx, "0"), "LastPx(31) '0' is not a price"),
    "huge_price": ((Tag.LastPx, "1e300"), "LastPx(31) '1e300' is not a price"),
    "zero_quantity": ((Tag.LastQty, "0"), "LastQty(32) '0' is not a quantity"),
    "missing_field": ((Tag.CumQty, None), "CumQty(14) missing"),
    "wrong_type": ((Tag.OrdStatus, "Q"), "OrdStatus(39) 'Q' is not one FIX 4.4 defines"),
}


class VenueSide:
    def __init__(self, net: NetLoop, scripted: ScriptedVenue, venue: FixVenue) -> None:
        self.net, self.scripted, self.venue = net, scripted, venue
        self.reports: list[Any] = []
        venue.add_report_listener(self.reports.append)
        self.seq = itertools.count(1)

    def resting(self, cid: str) -> None:
        result = self.venue.submit(limit(cid, 99.0))
        assert result.status is OrderStatus.NEW, result

    def ordinary_fill(self, *resting: str) -> None:
        wait_for(lambda: self.venue.session_info().state == "logged on", "the session")
        cid = f"fv-ok-{next(self.seq)}"
        result = self.venue.submit(limit(cid, 100.0))  # the scripted venue fills at or above 100
        assert (result.status, result.filled_quantity) == (OrderStatus.FILLED, 0.01), result
        for rid in resting:  # nothing accepted is lost
            assert self.venue.status(rid).status is OrderStatus.NEW


@pytest.fixture(scope="module")
def venue_side() -> Iterator[VenueSide]:
    net = NetLoop()
    scripted = ScriptedVenue()
    net.run(scripted.start())
    fv = FixVenue("127.0.0.1", scripted.port, request_timeout=WAIT, connect_timeout=WAIT)
    try:
        fv.connect()
        yield VenueSide(net, scripted, fv)
    finally:
        fv.close()
        net.run(scripted.stop())
        net.close()


@case("fix_from_venue", *SCRIPTED_BAD)
def venue_bad_report(side: VenueSide, kind: str, caplog: pytest.LogCaptureFixture) -> None:
    (tag, value), why = SCRIPTED_BAD[kind]
    cid = f"odd-{kind}"[:36]
    side.resting(cid)
    side.reports.clear()
    side.scripted.orders[cid].update(cum=0.01, avg=99.0, status="2")
    body = side.scripted.er(cid, "F", last=("99", "0.01"))
    body = [(t, v) for t, v in body if t != tag] if value is None else [(t, value if t == tag else v) for t, v in body]
    side.net.call(side.scripted.send, "8", body)
    wait_for(lambda: "ignored" in caplog.text or side.reports, "the warning or a report")
    assert f"execution report for {cid} ignored: {why}" in caplog.text
    assert side.reports == []  # believed in nothing: no fill, no state
    side.ordinary_fill()


not_applicable("fix_from_venue", "unicode_string",
               "our FIX codec writes ASCII only, so the scripted acceptor cannot send it; non-ASCII bytes in a "
               "ClOrdID from a real venue match no order of ours (the unknown_id case); into the server it is a case")


@case("fix_from_venue", "unknown_id", "overlong_string")
def venue_unknown_id(side: VenueSide, kind: str, caplog: pytest.LogCaptureFixture) -> None:
    ghost = {"unknown_id": "ghost-1", "overlong_string": "g" * 5000}[kind]
    side.resting("known-1") if kind == "unknown_id" else None
    side.scripted.orders[ghost] = {"symbol": "BTC/USD", "side": "1", "qty": 0.01, "price": 99.0, "cum": 0.01,
                                   "avg": 99.0, "status": "2"}
    side.reports.clear()
    side.net.call(side.scripted.send, "8", side.scripted.er(ghost, "F", last=("99", "0.01")))
    wait_for(lambda: "ER for an order not sent from here" in caplog.text, "the log line")
    assert f"ER for an order not sent from here: {ghost[:40]}" in caplog.text
    assert side.reports == []
    side.ordinary_fill(*(["known-1"] if kind == "unknown_id" else []))


@case("fix_from_venue", "duplicate_id")
def venue_duplicate_fill(side: VenueSide, kind: str, caplog: pytest.LogCaptureFixture) -> None:
    # The same fill (ExecID, TradeID) told twice counts once.
    side.resting("twice-1")
    side.reports.clear()
    side.scripted.orders["twice-1"].update(cum=0.01, avg=99.0, status="2")
    body = side.scripted.er("twice-1", "F", last=("99", "0.01"))
    side.net.call(side.scripted.send, "8", body)
    side.net.call(side.scripted.send, "8", body)
    wait_for(lambda: side.reports, "the fill")
    side.ordinary_fill()  # after both were read
    assert [(r.status, r.fill.quantity) for r in side.reports] == [(OrderStatus.FILLED, 0.01)]
    assert side.venue.status("twice-1").filled_quantity == 0.01


@case("fix_from_venue", "garbled_bytes", "wrong_sequence")
def venue_session_faults(side: VenueSide, kind: str, caplog: pytest.LogCaptureFixture) -> None:
    side.resting(f"keep-{kind}"[:36])
    conn = side.scripted.connection
    assert conn is not None
    if kind == "garbled_bytes":
        # A frame whose CheckSum is wrong: dropped, its number not consumed (asked for again).
        good = encode("8", "VENUE", "DESK", side.scripted.store.next_outgoing, utc_timestamp(0),
                      side.scripted.er(f"keep-{kind}", "0"))
        bad = good[:-4] + b"%03d\x01" % ((int(good[-4:-1]) + 1) % 256)
        side.net.call(conn._transport.write, b"\x00\xffnot FIX at all\x01" + bad)
        wait_for(lambda: "garbled" in caplog.text, "the garbled note")
        assert "CheckSum" in caplog.text or "checksum" in caplog.text, caplog.text[-500:]
    else:
        frame = encode("8", "VENUE", "DESK", 1, utc_timestamp(0), side.scripted.er(f"keep-{kind}"[:36], "0"))
        logons = side.scripted.logons
        side.net.call(conn._transport.write, frame)
        wait_for(lambda: "MsgSeqNum too low, expecting" in caplog.text and "but received 1" in caplog.text,
                 "the logout")
        wait_for(lambda: side.scripted.logons > logons, "the reconnect")
    side.ordinary_fill(f"keep-{kind}"[:36])


@pytest.mark.parametrize("kind", params("fix_from_venue"))
def test_fix_from_venue(kind: str, venue_side: VenueSide, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    CASES["fix_from_venue", kind](venue_side, kind, caplog)


# =====================================================================================
# fix_into_server: what a FIX client sends to the `execdesk venue` server
# =====================================================================================
not_applicable("fix_into_server", FILE_KINDS, "a FIX session carries messages, not files (the server's state "
               "file is tested in tests/test_fix_venue_state.py)")
venues, server = fix_server.venues, fix_server.server  # the real FixVenueServer over frozen simulators

INTO_SERVER = {  # kind: (ClOrdID, OrderQty, Price, Symbol, extra fields)
    "nan_quantity": ("nan-q", "nan", "100", "BTC/USD", ()),
    "inf_quantity": ("inf-q", "inf", "100", "BTC/USD", ()),
    "negative_quantity": ("neg-q", "-5", "100", "BTC/USD", ()),
    "zero_quantity": ("zero-q", "0", "100", "BTC/USD", ()),
    "huge_quantity": ("huge-q", "1e300", "100", "BTC/USD", ()),
    "nan_price": ("nan-p", "0.01", "nan", "BTC/USD", ()),
    "inf_price": ("inf-p", "0.01", "inf", "BTC/USD", ()),
    "negative_price": ("neg-p", "0.01", "-5", "BTC/USD", ()),
    "zero_price": ("zero-p", "0.01", "0", "BTC/USD", ()),
    "huge_price": ("huge-p", "0.01", "1e300", "BTC/USD", ()),
    "off_tick": ("tick-p", "0.01", "100.001", "BTC/USD", ()),
    "off_lot": ("lot-q", "0.00015", "100", "BTC/USD", ()),
    "unknown_symbol": ("sym-1", "0.01", "100", "NOPE/USD", ()),
    "unknown_venue": ("ven-1", "0.01", "100", "BTC/USD", ((100, "nowhere"),)),
    "overlong_string": ("c" * 5000, "0.01", "100", "BTC/USD", ()),
}
INTO_SERVER_SAYS = {  # what the ER's Text(58) must hold (the field and the value)
    "nan_quantity": "nan", "inf_quantity": "inf", "negative_quantity": "-5", "zero_quantity": "0",
    "huge_quantity": "OrderQty(38) '1e300' is not a FIX decimal number", "nan_price": "nan", "inf_price": "inf", "negative_price": "-5", "zero_price": "0",
    "huge_price": "Price(44) '1e300' is not a FIX decimal number", "off_tick": "price 100.001 is not a multiple of the tick 0.01 for BTC/USD",
    "off_lot": "quantity 0.00015 is not a multiple of the lot 0.0001 for BTC/USD",
    "unknown_symbol": "NOPE/USD", "unknown_venue": "nowhere",
    "overlong_string": "id must be 1-36 characters of A-Z a-z 0-9 . _ : -, got 'ccccccc",
}


async def server_fill(client: Any, venues: Any, cid: str) -> None:
    """An ordinary order into the server: a buy at the ask, filled at once."""
    _, ask = fix_server.book(venues["swift"])
    client.order(cid, "1", "0.01", fix_server.fix_number(ask))
    with anyio.fail_after(WAIT):
        while True:
            answer = await client.next()
            if answer.get(Tag.ClOrdID) == cid and answer.get(Tag.OrdStatus) == "2":
                return


@case("fix_into_server", *INTO_SERVER)
async def server_bad_order(client: Any, raw: Any, venues: Any, kind: str) -> None:
    cid, qty, price, symbol, extra = INTO_SERVER[kind]
    client.order(cid, "1", qty, price, symbol=symbol, extra=extra)
    answer = await client.next()
    text = answer.get(Tag.Text) or ""
    assert answer.get(Tag.OrdStatus) == "8" or answer.get(35) in ("j", "3"), (answer.msg_type, text)
    assert INTO_SERVER_SAYS[kind] in text, text[:300]
    assert len(text) < MESSAGE_AT_MOST, len(text)
    await server_fill(client, venues, f"ok-{kind}"[:36])


@case("fix_into_server", "duplicate_id", "unknown_id", "missing_field", "wrong_type", "unicode_string",
      "garbled_bytes", "wrong_sequence")
async def server_session_faults(client: Any, raw: Any, venues: Any, kind: str) -> None:
    bid, _ = fix_server.book(venues["swift"])
    low = fix_server.fix_number(round(bid * 0.9, 2))
    if kind == "duplicate_id":
        client.order("dup-1", "1", "0.01", low)
        assert (await client.next()).get(Tag.OrdStatus) == "0"
        client.order("dup-1", "1", "0.02", low)
        refused = await client.next()
        assert refused.get(Tag.OrdStatus) == "8" and "dup-1" in (refused.get(Tag.Text) or ""), refused.get(Tag.Text)
        client.send(MsgType.ORDER_STATUS_REQUEST, (Tag.ClOrdID, "dup-1"), (55, "BTC/USD"), (54, "1"))
        status = await client.next()
        assert (status.get(Tag.OrdStatus), status.get(Tag.OrderQty)) == ("0", "0.01")  # the first one stands
    elif kind == "unknown_id":
        raw.write(raw.frame("H", [(11, "ghost"), (55, "BTC/USD"), (54, "1")]))
        assert (await raw.answer()).get(58) == b"order 'ghost' is not known"
    elif kind == "missing_field":
        raw.write(raw.frame("G", [(41, "a"), (11, "b")]))
        assert (await raw.answer()).get(58) == b"required field(s) missing: 55, 54, 38, 40"
    elif kind == "wrong_type":
        client.order("side-1", "7", "0.01", low)
        answer = await client.next()
        text = answer.get(Tag.Text) or ""
        assert "54" in text or "Side" in text, (answer.msg_type, text)
    elif kind == "unicode_string":
        body = [(11, "uni-1"), (55, "BTC/USD"), (54, "1"), (38, "0.01"), (40, "2"), (59, "1"), (44, low)]
        frame = raw.frame("D", body)
        # Swap the symbol for its UTF-8 look-alike with a right-to-left override, keeping
        # BodyLength and CheckSum right, so the bytes are a well-formed frame.
        weird = "BTC/USD\u202e".encode()
        text = frame[:frame.rindex(b"10=")].replace(b"55=BTC/USD\x01", b"55=" + weird + b"\x01")
        head, _, rest = text.partition(b"\x019=")
        _, _, rest = rest.partition(b"\x01")
        text = head + b"\x019=%d\x01" % len(rest) + rest
        raw.write(text + b"10=%03d\x01" % (sum(text) % 256))
        answer = await raw.answer()
        said = (answer.get(58) or b"").decode("utf-8", "replace")
        assert answer.get(39) == b"8" or answer.get(35) in (b"3", b"j"), said
        assert "55" in said or "symbol" in said.lower(), said
    elif kind == "garbled_bytes":
        raw.write(b"\x00\xffthis is not FIX at all\x01\x01")
        raw.write(raw.frame("H", [(11, "g-1"), (55, "BTC/USD"), (54, "1")]))
        assert (await raw.answer()).get(58) == b"order 'g-1' is not known"
    else:
        raw.write(raw.frame("H", [(11, "s-1"), (55, "BTC/USD"), (54, "1")]))
        await raw.answer()
        raw.write(raw.frame("H", [(11, "s-2"), (55, "BTC/USD"), (54, "1")], seq=1))
        logout = await raw.answer()
        assert (logout.get(35), logout.get(58)) == (b"5", b"MsgSeqNum too low, expecting 3 but received 1")
    await server_fill(client, venues, f"ok-{kind}"[:36])


@pytest.mark.anyio
@pytest.mark.parametrize("kind", params("fix_into_server"))
async def test_fix_into_server(kind: str, server: Any, venues: Any) -> None:
    client = fix_server.Client()
    await client.connect(server.port)
    raw = RawClient()
    await raw.connect(server.port)
    try:
        await CASES["fix_into_server", kind](client, raw, venues, kind)
    finally:
        raw.writer.close()
        if not client.connection.closed.is_set():
            await client.close()


# =====================================================================================
# file doors: journal, profiler, risk limits, settings
# =====================================================================================
not_applicable(("journal_file", "profiler_file", "risk_file", "settings_file"),
               ("off_tick", "off_lot", "unknown_id", "wrong_sequence"),
               "a file of limits, settings, statistics or journal rows holds no order to price on a tick or lot, "
               "names no order to find, and has no message sequence")
not_applicable("journal_file", (*NUMBER_KINDS, "unknown_symbol", "unknown_venue", "duplicate_id", "missing_field",
                                "wrong_type", "unicode_string", "overlong_string"),
               "the journal is SQLite the engine alone writes; what a file door can get wrong is the file itself "
               "(foreign, garbled, truncated, newer), refused at open by application id, schema version and "
               "quick_check; rows inside are the lead's rewrite of engine/journal.py")
not_applicable(("profiler_file", "settings_file"), ("unknown_symbol", "unknown_venue", "duplicate_id"),
               "the latency file and the settings hold no symbol or venue the desk trades by (the settings' "
               "ticket symbol and route fall back to the listed ones when the ticket opens) and no ids")
not_applicable(("risk_file",), ("unknown_venue",), "risk limits are per symbol and engine-wide, never per venue")
not_applicable(("risk_file", "settings_file"), "missing_field",
               "every key is optional: one left out keeps its default, as each file's docs say")
not_applicable("profiler_file", tuple(PRICES), "the latency file holds durations and counts, no prices "
               "(its numbers are the quantity cases)")
not_applicable("settings_file", tuple(PRICES),
               "the settings' ticket price is never read back: a new run opens at the touch (tui/settings.py)")

FILES: dict[tuple[str, str], bytes] = {}


def _sqlite_bytes(tmp: Path, app_id: int, version: int) -> bytes:
    path = tmp / f"db-{app_id}-{version}.sqlite3"
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE people (name TEXT)")
    db.execute(f"PRAGMA application_id={app_id}")
    db.execute(f"PRAGMA user_version={version}")
    db.commit()
    db.close()
    return path.read_bytes()


@case("journal_file", "truncated_file", "foreign_file", "newer_version", "garbled_bytes")
async def journal_bad(tmp_path: Path, kind: str) -> None:
    path = tmp_path / "journal.sqlite3"
    if kind == "truncated_file":
        good = tmp_path / "good.sqlite3"
        engine = make_engine_with(journal=good)
        await engine.start(2)
        await engine.wait(await engine.submit(market("j-1")), WAIT)
        await engine.stop()
        data = good.read_bytes()
        data = data[: len(data) // 2 + 100]
        says = "is corrupt, truncated or not a database"
    elif kind == "foreign_file":
        data, says = _sqlite_bytes(tmp_path, 0, 0), "is not an execdesk order journal (application id 0x0, tables ['people'])"
    elif kind == "newer_version":
        data, says = _sqlite_bytes(tmp_path, 0x45584A4E, 99), "was written by a newer execdesk (schema 99"
    else:
        data, says = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 20, "is corrupt, truncated or not a database"
    path.write_bytes(data)
    with pytest.raises(ConfigurationError) as info:
        make_engine_with(journal=path)
    assert str(path) in str(info.value) and says in str(info.value), str(info.value)
    assert "left untouched" in str(info.value)
    assert path.read_bytes() == data  # never overwritten
    engine = make_engine_with(journal=tmp_path / "fresh.sqlite3")
    await engine.start(2)
    try:
        assert (await engine.wait(await engine.submit(market("j-ok")), WAIT)).status is OrderStatus.FILLED
    finally:
        await engine.stop()


def make_engine_with(**kwargs: Any) -> Any:
    from engine import Engine, VirtualClock
    from tests.desk_support import START, instant_specs
    return Engine.default(seed=1, clock=VirtualClock(start=START), specs=instant_specs(), **kwargs)


PROFILER_BAD = {
    "nan_quantity": (lambda d: d["series"][0].update(count=float("nan")), "count"),
    "inf_quantity": (lambda d: d["series"][0].update(sum=float("inf")), "sum"),
    "negative_quantity": (lambda d: d["series"][0].update(counts=[-1]), "counts"),
    "zero_quantity": (lambda d: d["series"][0].update(count=0), "count"),
    "huge_quantity": (lambda d: d["series"][0].update(count=10**30), "count"),
    "missing_field": (lambda d: d["series"][0].pop("buckets"), "buckets"),
    "wrong_type": (lambda d: d["series"][0].update(count="many"), "count"),
    "unicode_string": (lambda d: d["series"][0].update(category="sub\u202emission"), "category"),
    "newer_version": (lambda d: d.update(version=99), "version"),
}


@case("profiler_file", *PROFILER_BAD, "truncated_file", "foreign_file", "garbled_bytes", "overlong_string")
def profiler_bad(tmp_path: Path, kind: str) -> None:
    profiler = LatencyProfiler()
    profiler.record("submission", 1000, venue="ex")
    path = tmp_path / "latency.json"
    profiler.save(path)
    good = path.read_bytes()
    if kind in PROFILER_BAD:
        doc = json.loads(good)
        change, field = PROFILER_BAD[kind]
        change(doc)
        data = json.dumps(doc).encode()
    elif kind == "truncated_file":
        data, field = good[: len(good) // 2], "truncated or corrupt"
    elif kind == "foreign_file":
        data, field = json.dumps({"name": "package.json", "version": "1.0"}).encode(), "not an execdesk latency file"
    elif kind == "garbled_bytes":
        data, field = b"\x89PNG\r\n\x1a\n\xff\xfe", "not UTF-8"
    else:
        data, field = b" " * (20 << 20), "invalid JSON at line 1 column 20971521"
    path.write_bytes(data)
    with pytest.raises(ProfilerFileError) as info:
        LatencyProfiler.load(path)
    assert str(path) in str(info.value) and field in str(info.value), str(info.value)[:400]
    assert len(str(info.value)) < MESSAGE_AT_MOST
    assert path.read_bytes() == data
    door = SyncDoor()  # an ordinary order still fills, timed by a fresh profiler
    try:
        door.ordinary_fill()
    finally:
        door.optimizer.stop()


RISK_BAD = {
    "nan_quantity": ('[symbols."BTC/USD"]\nmax_quantity = nan\n', 'symbols."BTC/USD".max_quantity must be a finite number > 0, got nan'),
    "inf_quantity": ('[symbols."BTC/USD"]\nmax_quantity = inf\n', 'symbols."BTC/USD".max_quantity must be a finite number > 0, got inf'),
    "negative_quantity": ('[symbols."BTC/USD"]\nmax_quantity = -5\n', 'symbols."BTC/USD".max_quantity must be a finite number > 0, got -5'),
    "zero_quantity": ('[symbols."BTC/USD"]\nmax_quantity = 0\n', 'symbols."BTC/USD".max_quantity must be a finite number > 0, got 0'),
    "huge_quantity": ("max_open_orders = 1e300\n", "max_open_orders must be a whole number >= 1, got 1e+300"),
    "nan_price": ("price_band_pct = nan\n", "price_band_pct must be a finite number > 0, got nan"),
    "inf_price": ("price_band_pct = inf\n", "price_band_pct must be a finite number > 0, got inf"),
    "negative_price": ("price_band_pct = -5\n", "price_band_pct must be a finite number > 0, got -5"),
    "zero_price": ("price_band_pct = 0\n", "price_band_pct must be a finite number > 0, got 0"),
    "huge_price": ("price_band_pct = 1e300\n", "price_band_pct must be > 0 and <= 100, got 1e+300"),
    "duplicate_id": ("price_band_pct = 5\nprice_band_pct = 6\n", "is not valid TOML: Cannot overwrite a value"),
    "wrong_type": ('max_open_orders = "ten"\n', "max_open_orders must be a whole number >= 1, got 'ten'"),
    "unknown_symbol": ('[symbols."BTC/UDS"]\nmax_quantity = 1\n',
                       "symbols.'BTC/UDS' names a symbol no venue lists (they list BTC/USD, ETH/USD, SOL/USD)"),
    "unicode_string": ('[symbols."BTC/USD\u202e"]\nmax_quantity = 1\n', "symbol must be 1-64 printable characters"),
    "overlong_string": ("# " + "x" * (2 << 20) + "\n", "over the 1,048,576 (1 MiB) a limits file may be"),
    "truncated_file": ('[symbols."BTC/USD"\n', "is not valid TOML"),
    "foreign_file": ('{"max_open_orders": 5}\n', "is not valid TOML"),
    "garbled_bytes": (b"\xff\xfe\x00\x01", "is not UTF-8 text"),
    "newer_version": ("max_daily_loss = 5\n", "unknown key 'max_daily_loss' (accepted: confirm_share"),
}


@case("risk_file", *RISK_BAD)
async def risk_bad(tmp_path: Path, kind: str) -> None:
    content, says = RISK_BAD[kind]
    data = content if isinstance(content, bytes) else content.encode()
    path = tmp_path / "risk.toml"
    path.write_bytes(data)
    limits, problem = load_risk(path, known_symbols={"BTC/USD", "ETH/USD", "SOL/USD"})
    assert problem is not None, "the file's limits were taken as they are"
    assert problem.startswith(("risk limits file", "cannot read the risk limits file")) and str(path) in problem
    assert says in problem and problem.endswith("using the built-in risk limits until it is fixed"), problem[:400]
    assert len(problem) < MESSAGE_AT_MOST
    assert path.read_bytes() == data  # left as it is
    engine = make_engine_with(risk=limits)
    await engine.start(2)
    try:
        assert (await engine.wait(await engine.submit(market("r-ok")), WAIT)).status is OrderStatus.FILLED
    finally:
        await engine.stop()


SETTINGS_BAD = {
    "nan_quantity": ('{"ticket": {"quantity": NaN}}', "ticket.quantity: nan is a number, not a string"),
    "inf_quantity": ('{"ticket": {"quantity": Infinity}}', "ticket.quantity: inf is a number, not a string"),
    "negative_quantity": ('{"ticket": {"quantity": -5}}', "ticket.quantity: -5 is a number, not a string"),
    "zero_quantity": ('{"ticket": {"quantity": 0}}', "ticket.quantity: 0 is a number, not a string"),
    "huge_quantity": ('{"ticket": {"quantity": 1e400}}', "ticket.quantity: inf is a number, not a string"),
    "wrong_type": ('{"theme": 5}', "theme: 5 is a number, not a string"),
    "unicode_string": ('{"ticket": {"side": "\uff22\uff35\uff39"}}', "ticket.side: 'ＢＵＹ' is not one of BUY, SELL"),
    "overlong_string": (json.dumps({"theme": "x" * 100_000}), "theme: 'xxxxxxxx"),
    "truncated_file": ('{"ticket": {"quant', "is not valid JSON"),
    "foreign_file": ("[1, 2]", "holds a list, not an object"),
    "garbled_bytes": (b"\x89PNG\r\n\x1a\n\x00", "is not UTF-8 text"),
    "newer_version": ('{"theme": "dark", "layout": {}}', "'layout': unknown key"),
}


@case("settings_file", *SETTINGS_BAD)
def settings_bad(tmp_path: Path, kind: str) -> None:
    content, says = SETTINGS_BAD[kind]
    data = content if isinstance(content, bytes) else content.encode()
    path = tmp_path / "settings.json"
    path.write_bytes(data)
    settings, problem = Settings.load(path)
    assert problem is not None and str(path) in problem and says in problem, problem
    assert "defaults" in problem and len(problem) < MESSAGE_AT_MOST
    assert path.read_bytes() == data


@pytest.mark.anyio
@pytest.mark.parametrize("kind", params("journal_file"))
async def test_journal_file(kind: str, tmp_path: Path) -> None:
    await CASES["journal_file", kind](tmp_path, kind)


@pytest.mark.parametrize("kind", params("profiler_file"))
def test_profiler_file(kind: str, tmp_path: Path) -> None:
    CASES["profiler_file", kind](tmp_path, kind)


@pytest.mark.anyio
@pytest.mark.parametrize("kind", params("risk_file"))
async def test_risk_file(kind: str, tmp_path: Path) -> None:
    await CASES["risk_file", kind](tmp_path, kind)


@pytest.mark.parametrize("kind", params("settings_file"))
def test_settings_file(kind: str, tmp_path: Path) -> None:
    CASES["settings_file", kind](tmp_path, kind)


@pytest.mark.anyio
async def test_a_desk_on_a_bad_settings_file_starts_with_defaults_says_so_and_fills(tmp_path: Path) -> None:
    (tmp_path / "settings.json").write_bytes(b'{"ticket": {"quant')
    app = make_app(tmp_path)
    async with app.run_test(size=(160, 48)) as pilot:
        try:
            await until(pilot, lambda: any("is not valid JSON" in n.message for n in app._notifications))
            await ticket_fill(app, pilot, "T-1")
        finally:
            await app.shutdown_engine()


def test_every_cell_is_a_case_or_says_why() -> None:
    cells = set(itertools.product(DOORS, KINDS))
    assert not set(CASES) & set(NOT_APPLICABLE), sorted(set(CASES) & set(NOT_APPLICABLE))
    assert set(CASES) | set(NOT_APPLICABLE) == cells, sorted(cells - set(CASES) - set(NOT_APPLICABLE))
    assert set(CASES) <= cells and set(NOT_APPLICABLE) <= cells and set(XFAIL) <= set(CASES)
    assert all(len(why) > 40 for why in NOT_APPLICABLE.values())
