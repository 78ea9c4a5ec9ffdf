"""`execdesk venue` as a real process: it says where it listens, trades over FIX, stops
cleanly on SIGTERM, refuses bad flags and bad state files with exit 2, and, killed with
SIGKILL and restarted on the same --state, still knows every order and fill it made."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sqlite3
import sys
from pathlib import Path

import anyio
import pytest

from engine.venues.fix import Message, MsgType, SessionStatus, Tag
from engine.venues.fix.store import SessionStore
from engine.venues.fixio.server import RESTART_TEXT, fix_number
from engine.venues.fixio.venue_state import VenueState
from tests import test_fix_server as base
from tests.test_fix_server import WAIT, Client

ROOT = Path(__file__).resolve().parents[1]
anyio_backend = base.anyio_backend
_LISTENING = re.compile(r"^execdesk venue: FIX 4\.4 on 127\.0\.0\.1:(\d+), venues (.+), CompID (\S+)(?:, password required)?$")


class VenueProcess:
    """`python -m tui.cli venue --port 0 ...` until it stops; `port` once it listens."""

    def __init__(self, *args: str) -> None:
        self.args = ["-m", "tui.cli", "venue", "--port", "0", *args]
        self.proc: asyncio.subprocess.Process | None = None
        self.port = 0
        self.line = ""

    async def start(self) -> None:
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable, *self.args, cwd=ROOT, env=env,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        with anyio.fail_after(WAIT * 3):  # a cold interpreter imports the engine first
            raw = await self.proc.stdout.readline()
        self.line = raw.decode().strip()
        match = _LISTENING.match(self.line)
        if match is None:
            err = await self.proc.stderr.read()
            raise AssertionError(f"no listening line: {self.line!r}; stderr: {err.decode()}")
        self.port = int(match.group(1))

    async def signal(self, sig: int) -> int:
        assert self.proc is not None
        self.proc.send_signal(sig)
        with anyio.fail_after(WAIT):
            return await self.proc.wait()

    async def ensure_stopped(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.kill()
            await self.proc.wait()


async def answer(client: Client, kind: str = "8") -> Message:
    msg = await client.next()
    assert msg.msg_type == kind, msg
    return msg


@pytest.mark.anyio
async def test_the_venue_process_trades_and_stops_on_sigterm_logging_sessions_out():
    venue = VenueProcess("--venues", "deep,swift", "--comp-id", "VENUE", "--seed", "4")
    try:
        await venue.start()
        assert venue.line.endswith(f":{venue.port}, venues deep, swift, CompID VENUE")
        client = Client()
        await client.connect(venue.port)
        client.send(MsgType.SECURITY_LIST_REQUEST, (320, "s"), (559, "4"))
        listing = await answer(client, "y")
        assert listing.get_all(207)[:1] == ["deep"] and listing.get(393) == "6"
        client.order("p-1", "1", "0.001", None, tif="3")  # a market IOC at the default venue, deep
        filled = await answer(client)  # filled at once: one Trade ER
        assert (filled.get(Tag.ExecType), filled.get(Tag.OrdStatus), filled.get(100)) == ("F", "2", "deep")
        assert await venue.signal(signal.SIGTERM) == 0
        with anyio.fail_after(WAIT):
            await client.task
        assert client.session.status is SessionStatus.CLOSED
        assert [e.text for e in client.events if e.kind == "logged_out"] == ["venue shutting down"]
    finally:
        await venue.ensure_stopped()


def run_venue(*args: str, cwd: Path = ROOT) -> tuple[int, str]:
    import subprocess

    done = subprocess.run([sys.executable, "-m", "tui.cli", "venue", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=60, env={**os.environ, "PYTHONPATH": str(ROOT)})
    return done.returncode, done.stderr


def test_a_non_loopback_host_needs_allow_remote_and_bad_flags_exit_2_without_a_traceback():
    code, err = run_venue("--port", "0", "--host", "0.0.0.0")
    assert code == 2
    assert "--host 0.0.0.0 is not a loopback address" in err and "--allow-remote" in err
    for args, text in [
        (["--port", "x"], "argument --port: invalid int value: 'x'"),
        (["--port", "0", "--venues", "swift,nope"], "unknown venue 'nope' (venues: swift, deep, thrift)"),
        (["--port", "0", "--faults", "lots"], "argument --faults: invalid choice: 'lots'"),
        (["--port", "70000"], "--port must be 0-65535, got 70000"),
        (["--port", "0", "--comp-id", "A|B"], "--comp-id 'A|B' must be 1-32 letters"),
        ([], "the following arguments are required: --port"),
    ]:
        code, err = run_venue(*args)
        assert (code, "Traceback" in err) == (2, False), (args, err)
        assert text in err, (args, err)


def test_a_corrupt_or_foreign_state_file_is_refused_and_left_as_it_was(tmp_path):
    corrupt = tmp_path / "corrupt"
    corrupt.mkdir()
    (corrupt / "venue.sqlite3").write_bytes(b"not a database at all" * 100)
    code, err = run_venue("--port", "0", "--state", str(corrupt))
    assert code == 2 and "Traceback" not in err
    assert "is not an execdesk venue state" in err and "left as it is" in err
    assert (corrupt / "venue.sqlite3").read_bytes() == b"not a database at all" * 100
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    db = sqlite3.connect(foreign / "venue.sqlite3")
    db.execute("CREATE TABLE invoices (id INTEGER)")
    db.commit()
    db.close()
    before = (foreign / "venue.sqlite3").read_bytes()
    code, err = run_venue("--port", "0", "--state", str(foreign))
    assert code == 2 and "another program's SQLite database" in err and "invoices" in err
    assert (foreign / "venue.sqlite3").read_bytes() == before


@pytest.mark.anyio
async def test_a_venue_killed_and_restarted_on_its_state_still_knows_every_order_and_fill(tmp_path):
    state = str(tmp_path / "state")
    store = SessionStore()  # the client's own numbers, kept across the venue's restart
    first = VenueProcess("--venues", "swift", "--seed", "2", "--state", state)
    second = VenueProcess("--venues", "swift", "--seed", "2", "--state", state)
    try:
        await first.start()
        client = Client("DESK", store)
        await client.connect(first.port)
        client.send(MsgType.MARKET_DATA_REQUEST, (262, "b"), (263, "0"), (264, "1"), (146, "1"), (55, "BTC/USD"))
        snap = await answer(client, "W")
        bid, ask = (float(p) for p in snap.get_all(270))
        client.order("fill-1", "1", "0.002", fix_number(round(ask * 1.01, 2)), tif="3")
        trades = []
        while not trades or trades[-1].get(Tag.OrdStatus) != "2":
            trades.append(await answer(client))
        filled = trades[-1]
        low = fix_number(round(bid * 0.9, 2))
        client.order("rest-1", "1", "0.001", low)
        client.order("rest-2", "2", "0.001", fix_number(round(ask * 1.1, 2)))
        client.order("rej-1", "1", "0.001", "100.001")
        assert [(await answer(client)).get(Tag.OrdStatus) for _ in range(3)] == ["0", "0", "8"]
        client.send(MsgType.ORDER_CANCEL_REPLACE_REQUEST, (41, "rest-2"), (11, "rest-2b"), (55, "BTC/USD"),
                    (54, "2"), (38, "0.003"), (40, "2"), (44, fix_number(round(ask * 1.1, 2))))
        assert (await answer(client)).get(Tag.ExecType) == "5"
        client.send(MsgType.ORDER_STATUS_REQUEST, (11, "rest-1"))  # answered: everything before it is on disk
        assert (await answer(client)).get(Tag.OrdStatus) == "0"
        assert await first.signal(signal.SIGKILL) == -signal.SIGKILL
        with anyio.fail_after(WAIT):
            await client.task

        await second.start()
        again = Client("DESK", store)
        await again.connect(second.port)
        # The two orders working at the kill were canceled; the ERs were parked for us and
        # come by resend after the Logon's gap.
        canceled = [await answer(again), await answer(again)]
        assert [(m.get(Tag.ClOrdID), m.get(Tag.ExecType), m.get(Tag.OrdStatus)) for m in canceled] == [
            ("rest-1", "4", "4"), ("rest-2b", "4", "4")]
        assert all(m.poss_dup and m.get(Tag.Text) == RESTART_TEXT for m in canceled)
        assert canceled[1].get(Tag.OrderQty) == "0.003"
        again.send(MsgType.ORDER_STATUS_REQUEST, (11, "fill-1"))
        status = await answer(again)
        assert (status.get(Tag.OrdStatus), status.get(Tag.CumQty), status.get(Tag.AvgPx)) == (
            "2", "0.002", filled.get(Tag.AvgPx))
        for cid, expected in (("rest-2", "4"), ("rej-1", "8")):
            again.send(MsgType.ORDER_STATUS_REQUEST, (11, cid))
            assert (await answer(again)).get(Tag.OrdStatus) == expected
        again.order("fill-1", "1", "0.001", low)  # a ClOrdID from before the restart is still taken
        duplicate = await answer(again)
        assert (duplicate.get(Tag.OrdStatus), duplicate.get(103)) == ("8", "6")
        again.send(MsgType.ORDER_CANCEL_REQUEST, (41, "rest-1"), (11, "cxl-1"))
        late = await answer(again, "9")
        assert (late.get(Tag.CxlRejReason), late.get(Tag.OrdStatus)) == ("0", "4")
        again.send(MsgType.ORDER_MASS_STATUS_REQUEST, (584, "all"), (585, "7"))
        assert (await answer(again)).get(911) == "0"
        assert await second.signal(signal.SIGTERM) == 0
    finally:
        await first.ensure_stopped()
        await second.ensure_stopped()
    saved = VenueState(state)
    try:
        fills = saved.fills("fill-1")
        assert sum(f.quantity for f in fills) == pytest.approx(0.002)
        assert [f.price for f in fills] == [float(t.get(Tag.LastPx)) for t in trades]
        assert [f.exec_id for f in fills] == [t.get(Tag.ExecID) for t in trades]
        assert {f.liquidity for f in fills} == {"TAKER"} and all(f.fee > 0 for f in fills)
    finally:
        saved.close()
