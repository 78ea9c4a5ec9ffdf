"""Adversarial cases for the journal and restart recovery (issue 18's probe): two
engines on one journal, crashes inside recovery, resumed parents resumed again, and
the other awkward points a real desk meets."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import anyio
import pytest

from engine import Engine, Order, OrderStatus
from engine.engine import simulated_venues
from engine.errors import ConfigurationError, JournalError, VenueUnavailableError
from engine.journal import Journal
from engine.models import OrderResult, OrderSide

ROOT = Path(__file__).resolve().parents[1]
SYMBOL = "BTC/USD"


def test_a_journal_in_use_by_another_process_is_refused_and_left_untouched(tmp_path: Path) -> None:
    path = tmp_path / "journal.sqlite3"
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; sys.path.insert(0, sys.argv[1]); "
         "from engine.journal import Journal; j = Journal(sys.argv[2]); print('open', flush=True); time.sleep(60)",
         str(ROOT), str(path)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "open"
        with pytest.raises(ConfigurationError, match=r"is in use by another execdesk \(pid \d+\)"):
            Journal(path)
    finally:
        holder.kill()
        holder.wait(timeout=10)
    Journal(path).close()  # the holder died: free again


@pytest.mark.anyio
async def test_a_second_engine_on_a_journal_in_use_is_refused_and_does_not_end_the_firsts_orders(
        tmp_path: Path) -> None:
    path = tmp_path / "journal.sqlite3"
    first = Engine.default(seed=1, journal=path, risk=None)
    await first.start()
    try:
        bid = first.venues["deep"].book(SYMBOL).best_bid
        await first.submit(Order(id="rest", symbol=SYMBOL, side="BUY", type="LIMIT", quantity=0.1,
                                 price=round(bid - 100, 2)))
        with anyio.fail_after(10):
            while first.status("rest").status is not OrderStatus.NEW:
                await anyio.sleep(0.01)
        await first.journal_caught_up()
        with pytest.raises(ConfigurationError, match="in use by another execdesk"):
            Engine.default(seed=1, journal=path, risk=None)
        assert first.journal is not None and first.journal.status("rest").status is OrderStatus.NEW
    finally:
        await first.stop()
    second = Engine.default(seed=1, journal=path, risk=None)  # the first closed it: free
    await second.start()
    await second.stop()


def run_process(journal: Path, body: str, *, on_restart: str = "stop", prelude: str = "") -> str:
    """Run `body` (async; `e` an Engine.default(seed=1) on `journal`, started; `bid` the
    best bid at deep) in a process that dies without stopping anything, as a kill -9
    would leave it (after its journal caught up). `prelude` runs before the engine is
    made (patches). Returns its stdout."""
    script = textwrap.dedent("""
        import os, sys, time, anyio
        sys.path.insert(0, {root!r})
        from engine import Engine, Order
        {prelude}
        async def main():
            e = Engine.default(seed=1, journal={journal!r}, risk=None, on_restart={on_restart!r})
            await e.start()
            bid = e.venues["deep"].book("BTC/USD").best_bid
        {body}
            await e.journal_caught_up()
            os._exit(0)
        anyio.run(main)
    """).format(root=str(ROOT), journal=str(journal), on_restart=on_restart,
                prelude=textwrap.indent(textwrap.dedent(prelude), "").replace("\n", "\n"),
                body=textwrap.indent(textwrap.dedent(body), "    "))
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=90)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


TWAP_PART_FILLED = """
await e.submit(Order(id="twap", symbol="BTC/USD", side="BUY", type="TWAP", quantity=0.4,
                     metadata={"duration_s": 120, "slices": 16}))
while e.status("twap").filled_quantity < 0.02:
    await anyio.sleep(0.05)
"""


def parents(journal: Path) -> dict[str, tuple[float, str, float, str | None]]:
    """Every parent in the journal: id -> (quantity, status, filled, reason)."""
    with sqlite3.connect(journal) as db:
        return {cid: (q, status, filled, reason) for cid, q, status, filled, reason in db.execute(
            "SELECT client_order_id, quantity, status, filled_quantity, reason FROM orders "
            "WHERE type = 'TWAP' ORDER BY recorded_at")}


def test_a_parent_resumed_again_is_named_from_its_first_id_and_never_trades_more_than_it(tmp_path: Path) -> None:
    journal = tmp_path / "journal.sqlite3"
    run_process(journal, TWAP_PART_FILLED)
    wait_for_a_fill = """
        new = next(iter(e.recovery.parents_resumed.values()))
        while e.status(new).filled_quantity < 0.01:
            await anyio.sleep(0.05)
        """
    run_process(journal, wait_for_a_fill, on_restart="resume")
    run_process(journal, wait_for_a_fill, on_restart="resume")
    run_process(journal, "pass", on_restart="resume")
    found = parents(journal)
    assert list(found) == ["twap", "twap-r1", "twap-r2", "twap-r3"], found
    assert found["twap-r1"][3] == f"resumed after a restart as twap-r2 ({found['twap-r2'][0]:g} left)"
    # Each takes what its predecessor left: the total never grows past the first's 0.4.
    for old, new in (("twap", "twap-r1"), ("twap-r1", "twap-r2"), ("twap-r2", "twap-r3")):
        assert found[new][0] == pytest.approx(found[old][0] - found[old][2], abs=1e-9)
    working = [p for p, (_, status, _, _) in found.items() if status not in ("CANCELED", "FILLED")]
    assert working == ["twap-r3"]


def test_a_kill_right_after_a_resumed_parent_was_written_ahead_never_resumes_both(tmp_path: Path) -> None:
    """The old parent's end must be on disk before its successor is: else the next restart
    finds both open and resumes each (twice what was left)."""
    journal = tmp_path / "journal.sqlite3"
    run_process(journal, TWAP_PART_FILLED)
    # The journal's subscriber is slow to take the old parent's end (a busy dispatcher);
    # the process dies as soon as the successor's write-ahead commit returns.
    prelude = """
        from engine.journal import Journal
        from engine.events import OrderUpdated
        real_subscriber, real_commit, real_record = Journal.subscriber, Journal.commit, Journal.record_order
        def subscriber(self, event):
            if isinstance(event, OrderUpdated) and event.order_id == "twap" and event.status.is_final:
                time.sleep(0.5)
            real_subscriber(self, event)
        def record_order(self, order, venue=None):
            real_record(self, order, venue)
            if order.id.startswith("twap-r"):
                self.kill_after_commit = True
        def commit(self):
            real_commit(self)
            if getattr(self, "kill_after_commit", False):
                os._exit(0)
        Journal.subscriber, Journal.commit, Journal.record_order = subscriber, commit, record_order
        """
    run_process(journal, "pass", on_restart="resume", prelude=prelude)
    run_process(journal, "pass", on_restart="resume")
    found = parents(journal)
    working = {p: q for p, (q, status, _, _) in found.items() if status not in ("CANCELED", "FILLED")}
    left = found["twap"][0] - found["twap"][2]
    assert sum(working.values()) <= left + 1e-9, found


def journal_with_a_parent_and_a_resting_child(path: Path, venue: str) -> None:
    """A journal a killed process left: TWAP 'twap' (0.4 over 10 minutes) with one child
    'twap-c1' (0.05, a limit) accepted at `venue` and resting there."""
    with Journal(path) as journal:
        journal.record_order(Order(id="twap", symbol=SYMBOL, side="BUY", type="TWAP", quantity=0.4,
                                   metadata={"duration_s": 600, "slices": 8}))
        journal.record_order(Order(id="twap-c1", symbol=SYMBOL, side="BUY", type="LIMIT", quantity=0.05,
                                   price=1000.0, parent_id="twap"), venue)
    with sqlite3.connect(path) as db:
        db.execute("UPDATE orders SET status = 'NEW' WHERE client_order_id = 'twap-c1'")


def a_venue_in_another_process(venue: Any, *, child_status: OrderStatus, cancel_works: bool) -> None:
    """Make an in-process simulator look like a network venue (its orders outlive us) that
    holds 'twap-c1' (working or not) and cannot (or can) cancel it now."""
    real_status, real_cancel = venue.status_async, venue.cancel_async

    async def status(cid: str) -> OrderResult:
        if cid != "twap-c1":
            return await real_status(cid)
        return OrderResult(cid, venue.name, child_status, 0.05, 0.0, None, [], None, SYMBOL, OrderSide.BUY,
                           1000.0, time.time())

    async def cancel(cid: str) -> OrderResult:
        if cid == "twap-c1" and not cancel_works:
            raise VenueUnavailableError(f"{venue.name}: the line is down", venue=venue.name)
        if cid == "twap-c1":
            return OrderResult(cid, venue.name, OrderStatus.CANCELED, 0.05, 0.0, None, [], "canceled", SYMBOL,
                               OrderSide.BUY, 1000.0, time.time())
        return await real_cancel(cid)

    venue.status_async, venue.cancel_async = status, cancel
    venue.in_process = False


@pytest.mark.anyio
async def test_a_parent_whose_child_could_not_be_canceled_is_not_resumed_over_it(tmp_path: Path) -> None:
    """Resuming while a child still rests at its venue would trade its quantity twice
    (the child fills later, the new parent trades it too)."""
    path = tmp_path / "journal.sqlite3"
    journal_with_a_parent_and_a_resting_child(path, "deep")
    venues = simulated_venues(1)
    a_venue_in_another_process(venues["deep"], child_status=OrderStatus.NEW, cancel_works=False)
    engine = Engine(venues, seed=1, journal=path, risk=None, on_restart="resume")
    await engine.start()
    try:
        report = engine.recovery
        assert report is not None and report.tracked == ["twap-c1"]
        assert engine.status("twap-c1").status is OrderStatus.NEW  # still working: the cancel could not reach it
        assert report.parents_resumed == {}
        assert report.parents_stopped == ["twap"]
        twap = engine.status("twap")
        assert twap.status is OrderStatus.CANCELED
        assert twap.reason == ("stopped at a restart: 0 of 0.4 filled (not resumed: its child 'twap-c1' "
                               "still works at deep, its cancel did not go through)")
    finally:
        await engine.stop()


@pytest.mark.anyio
async def test_a_parent_whose_children_were_canceled_at_their_venue_is_resumed(tmp_path: Path) -> None:
    path = tmp_path / "journal.sqlite3"
    journal_with_a_parent_and_a_resting_child(path, "deep")
    venues = simulated_venues(1)
    a_venue_in_another_process(venues["deep"], child_status=OrderStatus.NEW, cancel_works=True)
    engine = Engine(venues, seed=1, journal=path, risk=None, on_restart="resume")
    await engine.start()
    try:
        report = engine.recovery
        assert report is not None and report.parents_resumed == {"twap": "twap-r1"}
        assert engine.status("twap-c1").status is OrderStatus.CANCELED
        assert engine.status("twap-r1").quantity == 0.4
    finally:
        await engine.stop()


def book_of(positions: list[Any]) -> list[tuple[Any, ...]]:
    return sorted((p.symbol, p.venue, round(p.net_quantity, 9), round(p.average_entry or 0.0, 6),
                   round(p.realized_pnl, 6), round(p.fees, 9), round(p.bought, 9), round(p.sold, 9), p.fills)
                  for p in positions)


@pytest.mark.anyio
async def test_positions_after_a_restart_are_the_ones_before_it_fees_and_realized_pnl_included(
        tmp_path: Path) -> None:
    journal = tmp_path / "journal.sqlite3"
    out = run_process(journal, """
        import json
        ask = e.venues["deep"].book("BTC/USD").best_ask
        ids = []
        for i in range(30):
            side = "BUY" if i % 3 else "SELL"
            ids.append(await e.submit(Order(id=f"m{i}", symbol="BTC/USD", side=side, type="MARKET",
                                            quantity=0.013 + i / 1000)))
        for i in range(6):  # crossing limits (taker), some split across venues
            ids.append(await e.submit(Order(id=f"x{i}", symbol="BTC/USD", side="SELL", type="LIMIT",
                                            quantity=0.3, price=round(bid - 50, 2))))
        for oid in ids:
            await e.wait(oid, timeout=20)
        await e.journal_caught_up()
        def rows(ps):
            return [[p.symbol, p.venue, p.net_quantity, p.average_entry, p.realized_pnl, p.fees, p.bought, p.sold,
                     p.fills] for p in ps]
        print("POSITIONS " + json.dumps([rows(e.positions()), rows(e.positions(by_venue=True))]), flush=True)
        """)
    import json

    line = next(x for x in out.splitlines() if x.startswith("POSITIONS "))
    total, by_venue = json.loads(line[len("POSITIONS "):])

    class P:
        def __init__(self, row: list[Any]) -> None:
            (self.symbol, self.venue, self.net_quantity, self.average_entry, self.realized_pnl, self.fees,
             self.bought, self.sold, self.fills) = row

    engine = Engine.default(seed=1, journal=journal, risk=None)
    await engine.start()
    try:
        assert book_of(engine.positions(by_venue=True)) == book_of([P(r) for r in by_venue])
        assert book_of(engine.positions()) == book_of([P(r) for r in total])
        assert engine.positions()[0].realized_pnl != 0.0 and engine.positions()[0].fees > 0.0
    finally:
        await engine.stop()


@pytest.mark.anyio
async def test_the_desk_started_on_a_halted_journal_says_halted_and_why(tmp_path: Path) -> None:
    from tui.app import DeskApp

    journal = tmp_path / "journal.sqlite3"
    run_process(journal, """
        await e.halt("risk breach at 14:02")
        """)
    app = DeskApp(seed=1, live=False, settings_path=tmp_path / "settings.json", journal_path=journal)
    async with app.run_test(size=(160, 48)) as pilot:
        await pilot.pause()
        with anyio.fail_after(20):
            while "HALTED: risk breach at 14:02" not in str(app.status_bar.render()):
                app.draw_frame()
                await anyio.sleep(0.05)
        assert "HALTED: press r to resume" in str(app.topbar.render())
        notices = [n.message for n in app._notifications]
        assert any("still HALTED (risk breach at 14:02)" in n for n in notices), notices
        await pilot.press("q")


AMEND_AT_FIX = """
import os, sys, anyio
sys.path.insert(0, {root!r})
from engine import Engine, Order
from engine.venue_spec import open_venues, parse_venues
async def main():
    venues = open_venues(parse_venues("fix://127.0.0.1:{port}/swift"), connect_timeout=20.0, state_dir={fixdir!r})
    e = Engine(venues, seed=1, journal={journal!r}, risk=None)
    await e.start()
    bid = venues["swift"].book("BTC/USD").best_bid
    if {first!r}:
        await e.submit(Order(id="a", symbol="BTC/USD", side="BUY", type="LIMIT", quantity=0.01,
                             price=round(bid - 50, 2)), venue="swift")
        while e.status("a").status.value == "PENDING_NEW":
            await anyio.sleep(0.01)
    for k in range(3):
        r = await e.amend("a", price=round(bid - 60 - k - 10 * (not {first!r}), 2))
        print("AMEND", r.status.value, r.reason, flush=True)
    if not {first!r}:
        r = await e.cancel("a")
        print("CANCEL", r.status.value, r.reason, flush=True)
    await e.journal_caught_up()
    os._exit(0)
anyio.run(main)
"""


def test_an_order_amended_before_a_restart_can_be_amended_and_canceled_after_it(tmp_path: Path) -> None:
    """The FIX venue's ClOrdIDs for a replace or a cancel (`cid.rN`, `cid.cN`) must never
    be ones a previous process used: the venue refuses a ClOrdID used before."""
    from tests.test_desk_fix import Venue, free_port

    venue = Venue(free_port(), tmp_path / "venue-state")
    venue.start()
    try:
        outs = []
        for first in (True, False):
            script = AMEND_AT_FIX.format(root=str(ROOT), port=venue.port, fixdir=str(tmp_path / "fix"),
                                         journal=str(tmp_path / "journal.sqlite3"), first=first)
            done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=90)
            assert done.returncode == 0, done.stderr[-3000:]
            outs += done.stdout.splitlines()
    finally:
        venue.stop()
    answers = [line for line in outs if line.startswith(("AMEND", "CANCEL"))]
    assert [line.split()[:2] for line in answers] == [["AMEND", "NEW"]] * 6 + [["CANCEL", "CANCELED"]], outs
    assert answers[-1] == "CANCEL CANCELED canceled by request"


@pytest.mark.anyio
async def test_a_halt_is_on_disk_when_halt_returns(tmp_path: Path) -> None:
    """The operator pressed the kill switch, the desk said HALTED, then the process died:
    the restart must come back halted."""
    journal = tmp_path / "journal.sqlite3"
    run_process(journal, """
        await e.halt("operator pressed k")
        os._exit(0)  # killed at once: nothing after the halt's return ran
        """)
    engine = Engine.default(seed=1, journal=journal, risk=None)
    await engine.start()
    try:
        assert engine.halted_reason == "operator pressed k"
    finally:
        await engine.stop()


@pytest.mark.anyio
async def test_a_journal_that_cannot_be_written_refuses_orders_clearly_and_the_kill_switch_still_works(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    engine = Engine.default(seed=1, journal=tmp_path / "journal.sqlite3", risk=None)
    await engine.start()
    try:
        bid = engine.venues["deep"].book(SYMBOL).best_bid
        oid = await engine.submit(Order(id="rest", symbol=SYMBOL, side="BUY", type="LIMIT", quantity=0.1,
                                        price=round(bid - 100, 2)), venue="deep")
        with anyio.fail_after(10):
            while engine.status(oid).status is not OrderStatus.NEW:
                await anyio.sleep(0.01)
        await engine.journal_caught_up()
        journal = engine.journal
        assert journal is not None
        real = journal._commit_locked

        def full_disk() -> None:
            raise sqlite3.OperationalError("database or disk is full")

        monkeypatch.setattr(journal, "_commit_locked", full_disk)
        with pytest.raises(JournalError, match=r"not queued: the order journal '.*journal\.sqlite3' could not be "
                                               r"written \(database or disk is full\)"):
            await engine.submit(Order(id="next", symbol=SYMBOL, side="BUY", type="MARKET", quantity=0.01))
        assert engine.order_status_or_none("next") is None  # nothing queued, its id free
        report = await engine.halt("disk full")  # the kill switch does not need the disk
        assert report.canceled == ["rest"]
        assert engine.status("rest").status is OrderStatus.CANCELED
        monkeypatch.setattr(journal, "_commit_locked", real)
        assert await engine.journal_caught_up()  # the disk is back: nothing was lost
        assert journal.halted() == "disk full"
        assert journal.status("rest").status is OrderStatus.CANCELED
        assert journal.status("next") is None  # refused, so never journaled as if sent
        oid = await engine.submit(Order(id="next", symbol=SYMBOL, side="BUY", type="MARKET", quantity=0.01))
        assert (await engine.wait(oid, timeout=10)).reason == "trading halted: disk full"
    finally:
        await engine.stop()
