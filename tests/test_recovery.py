"""A restart recovers from the journal (engine.recovery): the kill switch holds, positions
come back, algorithm parents stop or resume as configured, orders of in-process venues
end saying why, and the desk says what was done. The previous process is a real one that
dies without stopping (os._exit after its journal caught up), as after a kill."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import anyio
import pytest

from engine import Engine, Order, OrderStatus
from engine.errors import VenueUnavailableError
from engine.recovery import RecoveryReport
from tests.test_journal import until
from tui.app import DeskApp

ROOT = Path(__file__).resolve().parents[1]
SYMBOL = "BTC/USD"


def previous_process(journal: Path, body: str) -> None:
    """Run `body` (async, `e` is an Engine.default(seed=1) on `journal`, started) in a
    process that then dies without stopping anything."""
    script = textwrap.dedent("""
        import os, sys, anyio
        sys.path.insert(0, {root!r})
        from engine import Engine, Order
        async def main():
            e = Engine.default(seed=1, journal={journal!r}, risk=None)
            await e.start()
            bid = e.venues["deep"].book("BTC/USD").best_bid
        {body}
            await e.journal_caught_up()
            os._exit(0)
        anyio.run(main)
    """).format(root=str(ROOT), journal=str(journal), body=textwrap.indent(textwrap.dedent(body), "    "))
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr[-3000:]


WORKING_TWAP_AND_LIMIT = """
await e.submit(Order(id="rest", symbol="BTC/USD", side="BUY", type="LIMIT", quantity=0.1, price=round(bid - 100, 2)))
await e.submit(Order(id="mkt", symbol="BTC/USD", side="BUY", type="MARKET", quantity=0.2))
await e.submit(Order(id="twap", symbol="BTC/USD", side="BUY", type="TWAP", quantity=0.4,
                     metadata={"duration_s": 60, "slices": 8}))
await e.wait("mkt", timeout=10)
while e.status("twap").filled_quantity < 0.05:
    await anyio.sleep(0.05)
"""


async def started(journal: Path, **kwargs: Any) -> Engine:
    engine = Engine.default(seed=1, journal=journal, risk=None, **kwargs)
    await engine.start()
    return engine


@pytest.mark.anyio
async def test_a_restart_stops_algorithm_parents_ends_in_process_orders_and_rebuilds_positions(tmp_path: Path) -> None:
    journal = tmp_path / "journal.sqlite3"
    previous_process(journal, WORKING_TWAP_AND_LIMIT)
    engine = await started(journal)
    try:
        report = engine.recovery
        assert isinstance(report, RecoveryReport)
        assert report.ended_with_process == ["rest"]
        assert report.parents_stopped == ["twap"]
        rest = engine.status("rest")
        assert rest.status is OrderStatus.CANCELED
        assert rest.reason == "ended with the previous process: thrift is an in-process simulator" or (
            rest.reason.startswith("ended with the previous process: ") and "in-process simulator" in rest.reason)
        twap = engine.status("twap")
        assert twap.status is OrderStatus.CANCELED
        assert twap.reason.startswith("stopped at a restart: ") and "of 0.4 filled" in twap.reason
        assert 0.05 <= twap.filled_quantity < 0.4
        # Positions: the market order and the TWAP's fills, from the journal alone.
        (position,) = engine.positions()
        assert position.net_quantity == pytest.approx(0.2 + twap.filled_quantity)
        assert report.fills_replayed == position.fills
        assert engine.working() == []
    finally:
        await engine.stop()
    # A second restart finds nothing open.
    again = await started(journal)
    try:
        assert again.recovery is not None and again.recovery.orders == 0
        assert again.recovery.parents_stopped == []
        assert again.recovery.summary().startswith("nothing was open")
    finally:
        await again.stop()


@pytest.mark.anyio
async def test_resume_hands_what_is_left_of_a_parent_to_a_new_one_over_the_rest_of_its_window(tmp_path: Path) -> None:
    journal = tmp_path / "journal.sqlite3"
    previous_process(journal, WORKING_TWAP_AND_LIMIT)
    engine = await started(journal, on_restart="resume")
    try:
        report = engine.recovery
        assert report is not None and report.parents_resumed == {"twap": "twap-r1"}
        old = engine.status("twap")
        assert old.status is OrderStatus.CANCELED
        assert old.reason.startswith("resumed after a restart as twap-r1 (")
        new = engine.status("twap-r1")
        assert new.quantity == round(0.4 - old.filled_quantity, 4)
        await until(lambda: "twap-r1" in engine.working())
        assert "1 resumed (twap as twap-r1)" in report.summary()
    finally:
        await engine.stop()


@pytest.mark.anyio
async def test_the_kill_switch_holds_across_restarts_until_resume(tmp_path: Path) -> None:
    journal = tmp_path / "journal.sqlite3"
    previous_process(journal, """
        await e.submit(Order(id="rest", symbol="BTC/USD", side="BUY", type="LIMIT", quantity=0.1,
                             price=round(bid - 100, 2)))
        while e.status("rest").status.value == "PENDING_NEW":
            await anyio.sleep(0.01)
        report = await e.halt("risk breach")
        assert report.canceled == ["rest"], report
    """)
    engine = await started(journal)
    try:
        assert engine.halted_reason == "risk breach"
        assert engine.recovery is not None and engine.recovery.halted == "risk breach"
        assert "still HALTED (risk breach)" in engine.recovery.summary()
        oid = await engine.submit(Order(id="after", symbol=SYMBOL, side="BUY", type="MARKET", quantity=0.01))
        refused = await engine.wait(oid, timeout=10)
        assert refused.status is OrderStatus.REJECTED
        assert refused.reason == "trading halted: risk breach"
    finally:
        await engine.stop()
    engine = await started(journal)  # still halted: nobody resumed
    try:
        assert engine.halted_reason == "risk breach"
        engine.resume()
    finally:
        await engine.stop()
    engine = await started(journal)  # resumed before the last stop: open
    try:
        assert engine.halted_reason is None
        oid = await engine.submit(Order(id="open", symbol=SYMBOL, side="BUY", type="MARKET", quantity=0.01))
        assert (await engine.wait(oid, timeout=10)).status is OrderStatus.FILLED
    finally:
        await engine.stop()


@pytest.mark.anyio
async def test_a_halt_reports_what_it_could_not_cancel_and_keeps_trying(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("engine.engine.HALT_RETRY_S", 0.0)  # retry at the next housekeeping
    engine = Engine.default(seed=2, risk=None)
    await engine.start()
    try:
        bid = engine.venues["deep"].book(SYMBOL).best_bid
        oid = await engine.submit(Order(id="rest", symbol=SYMBOL, side="BUY", type="LIMIT", quantity=0.1,
                                        price=round(bid - 100, 2)), venue="deep")
        await until(lambda: engine.status(oid).status is OrderStatus.NEW)
        venue = engine.venues["deep"]
        real_cancel = venue.cancel_async
        down = {"yes": True}

        async def cancel(cid: str) -> Any:
            if down["yes"]:
                raise VenueUnavailableError("deep: the line is down", venue="deep")
            return await real_cancel(cid)

        venue.cancel_async = cancel  # type: ignore[method-assign]
        report = await engine.halt("operator")
        assert report.canceled == []
        assert list(report.failed) == ["rest"]
        assert report.failed["rest"] == "cancel failed at deep: deep: the line is down"
        assert report.summary() == ("1 could not be canceled yet (retrying), e.g. rest: "
                                    "cancel failed at deep: deep: the line is down")
        assert engine.status(oid).status is OrderStatus.NEW
        await engine.housekeeping()  # still down: still failing, still working
        assert list(engine.halt_report.failed) == ["rest"]
        assert engine.status(oid).status is OrderStatus.NEW
        down["yes"] = False
        await engine.housekeeping()
        assert engine.status(oid).status is OrderStatus.CANCELED
        assert engine.halt_report is not None and engine.halt_report.failed == {}
        assert "rest" in engine.halt_report.canceled
    finally:
        await engine.stop()


@pytest.mark.anyio
async def test_the_desk_says_what_the_restart_recovered(tmp_path: Path) -> None:
    journal = tmp_path / "journal.sqlite3"
    previous_process(journal, WORKING_TWAP_AND_LIMIT)
    app = DeskApp(seed=1, live=False, settings_path=tmp_path / "settings.json", journal_path=journal)
    async with app.run_test(size=(160, 48)) as pilot:
        await pilot.pause()
        for _ in range(40):
            app.draw_frame()
            text = "\n".join(str(line) for line in app.event_log.lines)
            if "RECOVERED from the journal" in text:
                break
            await anyio.sleep(0.05)
        assert "RECOVERED from the journal: 1 open order from the journal" in text
        assert "1 algorithm parents stopped" in text
        notices = [n.message for n in app._notifications]
        assert any(n.startswith("Recovered from the journal: ") for n in notices), notices
        # What the last run left open is on the blotter again, as it stands now.
        assert str(app.blotter.cell("rest", "status")) == "CANCELED"
        assert str(app.blotter.cell("twap", "status")) == "CANCELED"
        assert "mkt" not in app.orders  # it had finished: nothing to recover
        await pilot.press("q")


@pytest.mark.anyio
async def test_a_recovery_that_fails_halts_the_engine_and_says_why(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    journal = tmp_path / "journal.sqlite3"
    previous_process(journal, WORKING_TWAP_AND_LIMIT)

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("the journal said something odd")

    monkeypatch.setattr("engine.recovery._settle_or_adopt", broken)
    engine = await started(journal)  # starts all the same: the operator can look, cancel, resume
    try:
        assert engine.halted_reason == ("recovery from the journal failed (the journal said something odd); "
                                        "check the open orders, then resume")
        assert engine.recovery is not None and engine.recovery.halted.startswith("recovery failed (RuntimeError")
        assert engine.stats.errors == 1
        engine.resume()
        oid = await engine.submit(Order(id="after", symbol=SYMBOL, side="BUY", type="MARKET", quantity=0.01))
        assert (await engine.wait(oid, timeout=10)).status is OrderStatus.FILLED
    finally:
        await engine.stop()


@pytest.mark.anyio
async def test_a_venue_that_does_not_say_it_is_in_process_is_asked_not_declared_ended(tmp_path: Path) -> None:
    # A real exchange's adapter (CCXT) has no session listener: its orders still outlive us.
    journal = tmp_path / "journal.sqlite3"
    previous_process(journal, WORKING_TWAP_AND_LIMIT)
    engine = Engine.default(seed=1, journal=journal, risk=None)
    for venue in engine.venues.values():
        venue.in_process = False  # as any venue that does not say otherwise
    await engine.start()
    try:
        assert engine.recovery is not None
        assert engine.recovery.ended_with_process == [] and engine.recovery.never_sent == ["rest"]
        rest = engine.status("rest")
        assert rest.status is OrderStatus.REJECTED
        assert rest.reason == "thrift never received the order (confirmed by status query)"
    finally:
        await engine.stop()


@pytest.mark.anyio
async def test_a_first_start_says_nothing_of_recovery(tmp_path: Path) -> None:
    # Nothing was open: no Recovered event (a line in a small Events panel pushes the welcome out).
    from engine.events import Recovered

    engine = Engine.default(seed=1, journal=tmp_path / "journal.sqlite3", risk=None)
    feed = engine.subscribe(name="test")
    await engine.start()
    try:
        assert engine.recovery is not None and engine.recovery.summary().startswith("nothing was open")
        await engine.journal_caught_up()
        assert not any(isinstance(e, Recovered) for e in feed.drain())
    finally:
        await engine.stop()
