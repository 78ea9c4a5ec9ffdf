"""The order journal (engine.journal): orders written before they are sent, every event of
the one stream after, read back as the engine reports them; what survives a kill -9; files
that are not ours refused and left as they were."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import anyio
import pytest

from engine import Engine, Order, OrderStatus, VirtualClock
from engine.errors import ConfigurationError
from engine.journal import APPLICATION_ID, SCHEMA_VERSION, Journal
from engine.models import OrderResult
from engine.risk import RiskLimits
from tests.conftest import virtual_anyio_backend
from tests.desk_support import instant_specs

SYMBOL = "BTC/USD"
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def anyio_backend(virtual_clock: VirtualClock) -> Any:
    return virtual_anyio_backend(virtual_clock)


def order(oid: str, kind: str, qty: float, **kwargs: Any) -> Order:
    return Order(id=oid, symbol=SYMBOL, side=kwargs.pop("side", "BUY"), type=kind, quantity=qty, **kwargs)


def essentials(result: OrderResult) -> tuple[Any, ...]:
    """What the journal must answer exactly as the engine does."""
    average = None if result.average_price is None else round(result.average_price, 6)
    fills = sorted((f.order_id, f.exchange_id, f.price, f.quantity, round(f.fee, 9), f.liquidity, f.trade_id,
                    f.timestamp, f.side, f.symbol) for f in result.fills)
    return (result.order_id, result.status, result.quantity, round(result.filled_quantity, 9), average, fills,
            result.symbol, result.side)


async def until(condition: Any) -> None:
    with anyio.fail_after(120):
        while not condition():
            await anyio.sleep(0.01)


@pytest.mark.anyio
async def test_every_order_kind_reads_back_from_the_journal_as_the_engine_reports_it(
        tmp_path: Path, virtual_clock: VirtualClock) -> None:
    journal = Journal(tmp_path / "journal.db")
    engine = Engine.default(seed=3, clock=virtual_clock, specs=instant_specs(), risk=RiskLimits(symbols={}))
    stream = engine.subscribe(lossless=True, name="journal")

    def feed() -> None:
        for event in stream.drain():
            journal.subscriber(event)

    await engine.start(num_workers=4)
    try:
        book = engine.venues["deep"].book(SYMBOL)
        bid, ask = book.best_bid, book.best_ask
        orders = [
            (order("mkt", "MARKET", 0.05), None),  # fills
            (order("sell", "MARKET", 0.03, side="SELL"), "swift"),  # fills
            (order("rest", "LIMIT", 0.02, price=round(bid - 100, 2)), "deep"),  # works
            (order("gone", "LIMIT", 0.02, price=round(bid - 120, 2), client_order_id="c-gone"), "swift"),  # canceled
            (order("ioc", "LIMIT", 0.02, price=round(bid - 100, 2), time_in_force="IOC"), None),  # expires
            (order("fat", "LIMIT", 5_000.0, price=round(ask, 2)), None),  # denied: notional
            (order("twap", "TWAP", 0.06, metadata={"duration_s": 6, "slices": 3}), None),  # parent, fills
            (order("ice", "ICEBERG", 0.5, price=round(bid - 80, 2), metadata={"display_size": 0.1}), None),
        ]
        for o, venue in orders:
            journal.record_order(o, venue)
        assert journal.pending == len(orders)
        journal.commit()  # write-ahead: on disk before the first is sent
        assert journal.pending == 0
        assert {j.order_id for j in journal.open_orders()} == {o.id for o, _ in orders}
        for o, venue in orders:
            await engine.submit(o, venue=venue)
        for oid in ("mkt", "sell", "ioc", "fat"):
            await engine.wait(oid, timeout=60)
        for oid in ("rest", "gone", "ice"):
            await until(lambda oid=oid: engine.status(oid).status is not OrderStatus.PENDING_NEW)
        amended = await engine.amend("rest", quantity=0.03)
        assert amended.status is OrderStatus.NEW, amended.reason
        assert (await engine.cancel("gone")).status is OrderStatus.CANCELED
        assert (await engine.wait("twap", timeout=60)).status is OrderStatus.FILLED
        await engine.halt("end of the day")
        engine.resume()
        await engine.submit(order("late", "LIMIT", 0.01, price=round(bid - 150, 2)), venue="thrift")
        await until(lambda: engine.status("late").status is OrderStatus.NEW)
        await anyio.sleep(1)  # every event published so far is in the stream
        feed()
        journal.commit()

        ids = [o.id for o, _ in orders] + ["late"]
        seen = {oid: engine.status(oid).status for oid in ids}
        assert seen["mkt"] is seen["sell"] is seen["twap"] is OrderStatus.FILLED
        assert seen["gone"] is seen["rest"] is seen["ice"] is OrderStatus.CANCELED  # the halt canceled them
        assert seen["ioc"] in (OrderStatus.EXPIRED, OrderStatus.CANCELED)
        assert seen["fat"] is OrderStatus.REJECTED
        for oid in ids:
            assert essentials(journal.status(oid)) == essentials(engine.status(oid)), oid
        assert journal.status("rest").quantity == 0.03  # the amend
        assert "notional" in journal.status("fat").reason
        assert journal.status("gone").exchange_id == "swift"
        assert journal.status("c-gone").order_id == "gone"  # by either id, as the events name it
        assert [j.order_id for j in journal.open_orders()] == ["late"]
        [late] = journal.open_orders()
        assert late.order == order("late", "LIMIT", 0.01, price=round(bid - 150, 2))
        assert (late.venue, late.status, late.filled_quantity) == ("thrift", OrderStatus.NEW, 0.0)
        assert journal.status("nobody") is None
        assert len(journal.fills()) == sum(len(engine.status(oid).fills) for oid in ids)
    finally:
        await engine.stop(drain=False)
        journal.close()

    # Plain SQL: what an operator reads with sqlite3.
    with sqlite3.connect(tmp_path / "journal.db") as db:
        kinds = {row[0] for row in db.execute("SELECT DISTINCT kind FROM events")}
        row = db.execute("SELECT symbol, side, type, metadata, status FROM orders WHERE id='twap'").fetchone()
        halted = db.execute("SELECT reason FROM events WHERE kind='halted'").fetchall()
    assert {"submitted", "accepted", "filled", "canceled", "denied", "amended", "updated", "halted",
            "resumed"} <= kinds, kinds
    assert row == ("BTC/USD", "BUY", "TWAP", '{"duration_s":6,"slices":3}', "FILLED")
    assert halted == [("end of the day",)]


def test_an_order_recorded_and_never_answered_stays_open_and_rebuilds_whole(tmp_path: Path) -> None:
    path = tmp_path / "journal.db"
    sent = Order(id="a", symbol=SYMBOL, side="SELL", type="LIMIT", quantity=1.5, price=101.25,
                 time_in_force="GTD", expire_at=1_900_000_000.0, client_order_id="cl-a", parent_id="p")
    ice = Order(id="b", symbol=SYMBOL, side="BUY", type="ICEBERG", quantity=2.0, price=99.5,
                metadata={"display_size": 0.5})
    with Journal(path, durable=True) as journal:
        journal.record_order(sent, "deep")
        journal.record_order(ice)
    with Journal(path) as journal:
        found, found_ice = journal.open_orders()
        assert (found.order, found_ice.order) == (sent, ice)
        assert (found.order_id, found.client_order_id, found.venue, found.status) == (
            "a", "cl-a", "deep", OrderStatus.PENDING_NEW)
        assert found_ice.venue is None
        result = journal.status("a")
        assert (result.status, result.filled_quantity, result.fills, result.average_price) == (
            OrderStatus.PENDING_NEW, 0.0, [], None)


_WRITER = """
import os, sys, time
sys.path.insert(0, {root!r})
from engine import Order
from engine.journal import Journal
journal = Journal({path!r}, batch=1_000_000)
for batch in range(5):
    for i in range(200):
        journal.record_order(Order(id=f"o{{batch}}-{{i}}", symbol="BTC/USD", side="BUY", type="LIMIT",
                                   quantity=1, price=100 + i))
    journal.commit()
for i in range(100):  # queued, never committed: lost with the process, as documented
    journal.record_order(Order(id=f"lost-{{i}}", symbol="BTC/USD", side="BUY", type="MARKET", quantity=1))
print("committed", flush=True)
time.sleep(60)
"""


def test_what_was_committed_survives_a_kill_9(tmp_path: Path) -> None:
    path = tmp_path / "journal.db"
    child = subprocess.Popen([sys.executable, "-c", textwrap.dedent(_WRITER.format(root=str(ROOT), path=str(path)))],
                             stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "committed"
        os.kill(child.pid, signal.SIGKILL)
        child.wait(timeout=30)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait(timeout=30)
        child.stdout.close()
    assert child.returncode == -signal.SIGKILL
    with Journal(path) as journal:
        ids = {j.order_id for j in journal.open_orders()}
    assert len(ids) == 1000
    assert {f"o{b}-{i}" for b in range(5) for i in range(200)} == ids


# -- files that are not ours -----------------------------------------------------------------------


def _foreign(path: Path) -> None:
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE notes (body TEXT)")
        db.execute("INSERT INTO notes VALUES ('mine')")
    sqlite3.connect(path).close()


def _versioned(version: int) -> Any:
    def make(path: Path) -> None:
        Journal(path).close()
        db = sqlite3.connect(path)
        db.execute(f"PRAGMA user_version={version}")
        db.close()
    return make


def _corrupt(path: Path) -> None:
    path.write_bytes(b"this is not a database at all, just text " * 100)


def _truncated(cut: int) -> Any:
    """A journal of ours cut short by `cut` bytes: whole pages (SQLite finds it as it
    reads), or part of the last page (only the open's quick_check finds that)."""
    def make(path: Path) -> None:
        with Journal(path) as journal:
            for i in range(2000):
                journal.record_order(order(f"o{i}", "LIMIT", 1.0, price=100.0 + i))
        data = path.read_bytes()
        assert len(data) > 40_000
        path.write_bytes(data[: len(data) - cut])
    return make


@pytest.mark.parametrize(("make", "message"), [
    (_foreign, "is not an execdesk order journal (application id 0x0, tables ['notes'])"),
    (_versioned(SCHEMA_VERSION + 1), f"written by a newer execdesk (schema {SCHEMA_VERSION + 1}"),
    (_versioned(SCHEMA_VERSION - 1), f"written by an older execdesk (schema {SCHEMA_VERSION - 1}"),
    (_corrupt, "is corrupt, truncated or not a database"),
    (_truncated(100_000), "is corrupt, truncated or not a database (database disk image is malformed)"),
    (_truncated(100), "is corrupt, truncated or not a database (*** in database main ***"),
], ids=["foreign", "newer", "older", "corrupt", "truncated", "last-page-cut"])
def test_a_file_that_is_not_a_journal_of_ours_is_refused_and_left_untouched(
        tmp_path: Path, make: Any, message: str) -> None:
    path = tmp_path / "journal.db"
    make(path)
    before = path.read_bytes()
    with pytest.raises(ConfigurationError, match="left untouched") as refused:
        Journal(path)
    assert message in str(refused.value)
    assert str(path) in str(refused.value)
    assert path.read_bytes() == before


def test_a_new_journal_says_what_it_is(tmp_path: Path) -> None:
    Journal(tmp_path / "j.db").close()
    with sqlite3.connect(tmp_path / "j.db") as db:
        assert db.execute("PRAGMA application_id").fetchone()[0] == APPLICATION_ID
        assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    for durable, synchronous in ((False, 1), (True, 2)):  # NORMAL, FULL
        with Journal(tmp_path / "j.db", durable=durable) as journal:
            assert journal._read("PRAGMA synchronous") == [(synchronous,)]


# -- size and cost ---------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_size_per_thousand_filled_orders_is_measured(tmp_path: Path, virtual_clock: VirtualClock) -> None:
    """1,000 market orders through an engine, every event journaled: the file's size per
    order is printed (run with -s) and bounded loosely so a schema mistake shows."""
    path = tmp_path / "journal.db"
    journal = Journal(path)
    engine = Engine.default(seed=5, clock=virtual_clock, specs=instant_specs(), risk=RiskLimits(symbols={}))
    stream = engine.subscribe(lossless=True, maxsize=100_000, name="journal")
    await engine.start(num_workers=4)
    events = 0
    record_s = subscriber_s = 0.0
    try:
        orders = [order(f"m{i}", "MARKET", 0.001, side="BUY" if i % 2 else "SELL") for i in range(1000)]
        started = time.perf_counter()
        for o in orders:
            journal.record_order(o)
        journal.commit()
        record_s = time.perf_counter() - started
        for o in orders:
            await engine.submit(o)
        for o in orders:
            await engine.wait(o.id, timeout=60)
        await anyio.sleep(1)
        drained = stream.drain()
        events = len(drained)
        started = time.perf_counter()
        for event in drained:
            journal.subscriber(event)
        journal.commit()
        subscriber_s = time.perf_counter() - started
        assert all(journal.status(o.id).status is OrderStatus.FILLED for o in orders[:50])
    finally:
        await engine.stop(drain=False)
        journal.close()
    size = path.stat().st_size
    print(f"\njournal: {size} bytes for 1,000 filled market orders ({size / 1000:.0f} B/order, {events} events); "
          f"record_order+commit {record_s / 1000 * 1e6:.1f} us/order, subscriber+commit "
          f"{subscriber_s / max(events, 1) * 1e6:.1f} us/event")
    assert events >= 3000  # submitted, accepted, filled at least
    assert 50_000 < size < 2_000_000


def _stream() -> list[Any]:
    """One order's life and then some: submitted, accepted, amended, partly filled,
    canceled, then a late fill report after the cancel; a child the journal learns of
    from its events; a parent's progress; a halt."""
    from engine import Fill, OrderSide
    from engine.events import (
        Halted,
        OrderAccepted,
        OrderAmended,
        OrderCanceled,
        OrderFilled,
        OrderSubmitted,
        OrderUpdated,
    )
    from engine.models import Liquidity, OrderType

    def fill(oid: str, qty: float, price: float, ts: float) -> Fill:
        return Fill(oid, "deep", SYMBOL, OrderSide.BUY, price, qty, 0.01, Liquidity.MAKER, ts, f"t{ts}")

    S = OrderStatus
    return [
        OrderSubmitted(1.0, 1.0, "a", "deep", S.PENDING_NEW, None, SYMBOL, OrderSide.BUY, OrderType.LIMIT, 2.0, 100.0),
        OrderAccepted(1.1, 1.1, "a", "deep", S.NEW),
        OrderAmended(1.2, 1.2, "a", "deep", S.NEW, None, 3.0, 99.5),
        OrderFilled(1.3, 1.3, "a", "deep", S.PARTIALLY_FILLED, None, fill("a", 1.0, 99.5, 1.3), 1.0, 2.0),
        OrderCanceled(1.4, 1.4, "a", "deep", S.CANCELED, None, 1.0, "canceled by request"),
        OrderAccepted(1.5, 1.5, "a", "deep", S.NEW),  # stale: the order is final
        OrderSubmitted(2.0, 2.0, "p.1", "swift", S.PENDING_NEW, "p", SYMBOL, OrderSide.BUY, OrderType.MARKET, 0.5),
        OrderFilled(2.1, 2.1, "p.1", "swift", S.FILLED, "p", fill("p.1", 0.5, 101.0, 2.1), 0.5, 0.0),
        OrderUpdated(2.2, 2.2, "p", None, S.PARTIALLY_FILLED, None, 0.5, 1.0, 101.0, "1 of 2 slices"),
        Halted(3.0, 3.0, "drill"),
    ]


@pytest.mark.parametrize("batch", [1, 3, 1000])
def test_events_make_the_same_orders_table_whatever_the_batch(tmp_path: Path, batch: int) -> None:
    parent = Order(id="p", symbol=SYMBOL, side="BUY", type="TWAP", quantity=1.0, metadata={"duration_s": 60})
    with Journal(tmp_path / "j.db", batch=batch) as journal:
        journal.record_order(order("a", "LIMIT", 2.0, price=100.0), "deep")
        journal.record_order(parent)
        journal.commit()
        for event in _stream():
            journal.subscriber(event)
        a, child, p = journal.status("a"), journal.status("p.1"), journal.status("p")
        rows = journal._read("SELECT client_order_id, symbol, side, type, quantity, price, venue, parent_id, status, "
                             "filled_quantity, reason, final FROM orders ORDER BY 1")
        open_ids = [j.order_id for j in journal.open_orders()]
    assert rows == [
        ("a", SYMBOL, "BUY", "LIMIT", 3.0, 99.5, "deep", None, "CANCELED", 1.0, "canceled by request", 1),
        ("p", SYMBOL, "BUY", "TWAP", 1.0, None, None, None, "PARTIALLY_FILLED", 0.5, None, 0),
        ("p.1", SYMBOL, "BUY", "MARKET", 0.5, None, "swift", "p", "FILLED", 0.5, None, 1),
    ]
    assert (a.status, a.filled_quantity, a.average_price, a.quantity) == (OrderStatus.CANCELED, 1.0, 99.5, 3.0)
    assert [f.trade_id for f in a.fills] == ["t1.3"]
    assert (child.status, child.average_price, child.exchange_id) == (OrderStatus.FILLED, 101.0, "swift")
    assert (p.status, p.filled_quantity, [f.order_id for f in p.fills]) == (OrderStatus.PARTIALLY_FILLED, 0.5, ["p.1"])
    assert open_ids == ["p"]


def test_a_callback_subscription_journals_on_its_own_thread(tmp_path: Path) -> None:
    """The way the engine will run it: `subscriber` as a lossless subscription's callback
    (its dispatcher thread), read back from the test's thread meanwhile."""

    async def main() -> None:
        engine = Engine.default(seed=2, specs=instant_specs())
        subscription = engine.subscribe(lossless=True, name="journal", callback=journal.subscriber)
        await engine.start(num_workers=2)
        try:
            for i in range(20):
                await engine.submit(order(f"cb{i}", "MARKET", 0.01))
            for i in range(20):
                await engine.wait(f"cb{i}", timeout=30)
            with anyio.fail_after(30):
                while not all(getattr(journal.status(f"cb{i}"), "status", None) is OrderStatus.FILLED
                              for i in range(20)):
                    await anyio.sleep(0.02)
        finally:
            await engine.stop(drain=False)
            subscription.close()
        for i in range(20):
            assert essentials(journal.status(f"cb{i}")) == essentials(engine.status(f"cb{i}"))

    with Journal(tmp_path / "j.db", batch=7) as journal:
        anyio.run(main)


def test_a_commit_that_fails_loses_nothing_and_the_next_one_writes_it(tmp_path: Path) -> None:
    class FullDisk:
        """The journal's connection, whose next write fails as a full disk would."""

        def __init__(self, db: sqlite3.Connection) -> None:
            self.db, self.fail = db, True

        def execute(self, *args: Any) -> Any:
            return self.db.execute(*args)

        def executemany(self, *args: Any) -> Any:
            if self.fail:
                self.fail = False
                raise sqlite3.OperationalError("database or disk is full")
            return self.db.executemany(*args)

        @property
        def in_transaction(self) -> bool:
            return self.db.in_transaction

        def close(self) -> None:
            self.db.close()

    journal = Journal(tmp_path / "j.db")
    journal._db = FullDisk(journal._db)  # type: ignore[assignment]
    events = _stream()
    journal.record_order(order("a", "LIMIT", 2.0, price=100.0), "deep")
    for event in events[:3]:
        journal.subscriber(event)
    with pytest.raises(sqlite3.OperationalError, match="disk is full"):
        journal.commit()
    assert journal.pending == 4
    for event in events[3:]:
        journal.subscriber(event)
    journal.close()
    with Journal(tmp_path / "j.db") as reopened:
        a = reopened.status("a")
        assert (a.status, a.quantity, a.filled_quantity, a.reason) == (
            OrderStatus.CANCELED, 3.0, 1.0, "canceled by request")
        assert reopened._read("SELECT count(*) FROM events")[0][0] == len(events)


def test_wait_committed_returns_once_the_subscriber_took_that_many_events_and_they_are_on_disk(
        tmp_path: Path) -> None:
    import threading

    from engine.events import Event

    path = tmp_path / "j.db"
    events = _stream()
    with Journal(path, batch=1000) as journal:
        assert journal.wait_committed(0, timeout=0) is True  # nothing asked, nothing to wait for
        assert journal.wait_committed(1, timeout=0.05) is False  # nobody hands it events: it says so
        journal.subscriber(events[0])
        assert journal.received == 1 and journal.wait_committed(1, timeout=0) is True
        on_disk = sqlite3.connect(path)
        assert on_disk.execute("SELECT kind FROM events").fetchall() == [("submitted",)]

        class Newer(Event):  # an event kind this schema does not know: skipped, and counted
            __slots__ = ()

        def feed() -> None:  # the subscription's thread, later
            time.sleep(0.05)
            for event in events[1:]:
                journal.subscriber(event)
            journal.subscriber(Newer(9.0, 9.0))

        thread = threading.Thread(target=feed)
        thread.start()
        try:
            assert journal.wait_committed(len(events) + 1, timeout=30) is True
        finally:
            thread.join()
        # Every event it waited for is on disk (read by another connection).
        assert journal.received == len(events) + 1
        assert on_disk.execute("SELECT count(*) FROM events").fetchone() == (len(events),)
        assert on_disk.execute("SELECT status FROM orders WHERE client_order_id = 'a'").fetchone() == ("CANCELED",)
        on_disk.close()


def test_an_event_reaches_the_disk_soon_after_the_stream_pauses_without_any_commit_call(tmp_path: Path) -> None:
    # The desk publishes a few events a minute: a batch of 512 would leave a fill in memory
    # for an hour, and a kill -9 would lose it from the journal.
    from engine.bus import EventBus
    from engine.events import Halted

    path = tmp_path / "journal.sqlite3"
    journal = Journal(path)
    bus = EventBus()
    feed = bus.subscribe(lossless=True, name="journal", callback=journal.subscriber, on_idle=journal.idle)
    try:
        bus.publish(Halted(1.0, 1.0, "one event, then quiet"))
        reader = sqlite3.connect(path)
        deadline = time.monotonic() + 10
        while not reader.execute("SELECT count(*) FROM events WHERE kind='halted'").fetchone()[0]:
            assert time.monotonic() < deadline, "the event never reached the disk"
            time.sleep(0.01)
        reader.close()
        assert journal.commits >= 1 and journal.pending == 0
    finally:
        feed.close()
        journal.close()


def test_a_journal_that_cannot_commit_says_so_once_keeps_its_rows_and_writes_them_later(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    from engine.events import Halted

    journal = Journal(tmp_path / "journal.sqlite3", batch=1)
    real = journal._commit_locked
    full = {"yes": True}

    def commit_locked() -> None:
        if full["yes"]:
            raise sqlite3.OperationalError("database or disk is full")
        real()

    journal._commit_locked = commit_locked  # type: ignore[method-assign]
    try:
        with caplog.at_level("ERROR", logger="execdesk.journal"):
            for i in range(50):
                journal.subscriber(Halted(float(i), float(i), f"halt {i}"))
        errors = [r for r in caplog.records if r.levelname == "ERROR"]
        assert len(errors) == 1, [r.getMessage() for r in errors]
        assert "cannot commit (database or disk is full); what it holds waits in memory" in errors[0].getMessage()
        assert journal.pending == 50
        full["yes"] = False
        journal.idle()
        journal._last_commit = 0.0
        journal.idle()
        assert journal.pending == 0
        assert sqlite3.connect(tmp_path / "journal.sqlite3").execute(
            "SELECT count(*) FROM events WHERE kind='halted'").fetchone() == (50,)
    finally:
        journal.close()
