"""The desk trading through an `execdesk venue` process over FIX: an order sent by keys
rests at the venue, the venue is killed (-9) and restarted on its state, and the desk
says so and settles the order without an operator."""

from __future__ import annotations

import math
import os
import re
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest

from engine import Engine, Order, OrderStatus
from engine.venue_spec import open_venues, parse_venues
from tests.desk_support import until
from tests.test_desk import log_text, send_ticket
from tui.app import DeskApp

ROOT = Path(__file__).resolve().parents[1]
LISTENING = re.compile(r"on 127\.0\.0\.1:(\d+)")


class Venue:
    """An `execdesk venue` process on `port` with its state in `state`; start, kill, start again."""

    def __init__(self, port: int, state: Path, tick_interval: str = "3600") -> None:  # a market that holds still
        self.port, self.state, self.tick_interval = port, state, tick_interval
        self.proc: subprocess.Popen[str] | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tui.cli", "venue", "--port", str(self.port), "--venues", "swift",
             "--seed", "3", "--state", str(self.state), "--tick-interval", self.tick_interval],
            cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        assert LISTENING.search(line), (line, self.proc.stderr.read() if self.proc.poll() is not None else "")

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def venue(tmp_path: Path) -> Iterator[Venue]:
    process = Venue(free_port(), tmp_path / "venue-state")
    process.start()
    try:
        yield process
    finally:
        process.stop()


def link(app: DeskApp) -> str:
    return str(app.venues_panel.cell("swift", "link"))


@pytest.mark.anyio
async def test_the_desk_trades_through_a_venue_process_and_rides_out_its_restart(tmp_path: Path, venue: Venue) -> None:
    venues = open_venues(parse_venues(f"fix://127.0.0.1:{venue.port}/swift"), connect_timeout=10.0)
    fix = venues["swift"]
    app = DeskApp(Engine(venues, seed=3), live=False, settings_path=tmp_path / "settings.json", order_prefix="T")
    try:
        async with app.run_test(size=(160, 48)) as pilot:
            app.draw_slow_panels()
            assert link(app).startswith("FIX logged on ")
            # The market panel shows the FIX venue's book (market data over FIX).
            book = fix.book("BTC/USD", depth=1)
            assert book.best_bid is not None and book.best_ask is not None

            # A market sell: filled over FIX, its fill on the tape and in the positions.
            await send_ticket(pilot, ["f2", "enter"], side="s")
            await until(pilot, lambda: "T-1" in app.blotter.keys
                        and app.engine.status("T-1").status is OrderStatus.FILLED, tries=500)
            # b then Enter: a limit buy at the bid, resting at the venue process.
            await send_ticket(pilot, ["f3", "enter"])
            await until(pilot, lambda: "T-2" in app.blotter.keys and app.engine.status("T-2").status is OrderStatus.NEW,
                        tries=500)

            # The venue dies without a word, and comes back on its state.
            await anyio.to_thread.run_sync(venue.kill)
            await until(pilot, lambda: fix.session_info().state == "reconnecting", tries=500)
            app.draw_slow_panels()
            assert link(app) == "FIX reconnecting"
            # The breaker holds the venue out of routing while its session is down.
            assert str(app.venues_panel.cell("swift", "breaker")) == "OPEN (forced)"
            await anyio.to_thread.run_sync(venue.start)
            await until(pilot, lambda: fix.session_info().state == "logged on", tries=1000)
            # The restart canceled the resting order (the venue says why); the desk learned it
            # by the resent report, never by asking the operator.
            await until(pilot, lambda: app.engine.status("T-2").status is OrderStatus.CANCELED, tries=1000)
            assert "venue restarted" in (app.engine.status("T-2").reason or "")
            assert app.engine.status("T-1").status is OrderStatus.FILLED
            [btc] = [p for p in app.engine.positions() if p.symbol == "BTC/USD"]
            assert btc.sold > 0 and btc.bought == 0
            await until(pilot, lambda: "SESSION swift: logged on" in log_text(app), tries=500)
            assert "SESSION swift: reconnecting (connection lost" in log_text(app)
            assert app.engine.router.breaker("swift").state.value == "CLOSED"
            await app.shutdown_engine()
    finally:
        await anyio.to_thread.run_sync(fix.close)


def test_a_desk_restarted_logs_on_where_it_stopped(tmp_path: Path, venue: Venue) -> None:
    line = f"fix://127.0.0.1:{venue.port}/swift"
    first = open_venues(parse_venues(line), connect_timeout=10.0, state_dir=tmp_path / "fix")["swift"]
    first.close()
    numbers = first.session_info()
    again = open_venues(parse_venues(line), connect_timeout=10.0, state_dir=tmp_path / "fix")["swift"]
    try:
        info = again.session_info()
        assert info.state == "logged on" and info.next_outgoing > numbers.next_outgoing
    finally:
        again.close()
    # A desk that lost its numbers has none to offer: it logs on with ResetSeqNumFlag, both at 1.
    fresh = open_venues(parse_venues(line), connect_timeout=10.0, state_dir=tmp_path / "lost")["swift"]
    try:
        info = fresh.session_info()
        assert info.state == "logged on" and info.next_outgoing < numbers.next_outgoing
    finally:
        fresh.close()


@pytest.mark.anyio
async def test_a_vwap_reads_the_fix_venues_public_trades(tmp_path: Path) -> None:
    moving = Venue(free_port(), tmp_path / "state", tick_interval="0.05")  # a market that trades
    moving.start()
    venues = open_venues(parse_venues(f"fix://127.0.0.1:{moving.port}/swift"), connect_timeout=10.0)
    fix = venues["swift"]
    engine = Engine(venues, seed=3)
    try:
        await engine.start()
        vwap = Order(id="vw-1", symbol="BTC/USD", side="BUY", type="VWAP", quantity=0.02,
                     metadata={"duration_s": 2, "buckets": 2})
        result = await engine.wait(await engine.submit(vwap), timeout=30)
        assert (result.status, result.filled_quantity) == (OrderStatus.FILLED, 0.02)
        state = engine.scheduler.parent("vw-1")
        tape = [t for t in fix.trades("BTC/USD", state.created_at - 1e-6) if t.ts_event <= state.done_at]
        others = [t for t in tape if not any(f.trade_id and f.price == t.price for f in result.fills)]
        assert others, "the venue's market printed trades over FIX (MDEntryType 2)"
        # What the VWAP counted came over FIX (a print stamped inside its window may arrive
        # after it finished: the tape read now may hold more, never less).
        assert 0 < result.detail["market_volume"] <= math.fsum(t.quantity for t in tape) + 1e-9
    finally:
        await engine.stop(drain=False)
        await anyio.to_thread.run_sync(fix.close)
        moving.stop()
