"""Nothing lost, for real: an engine process (tests/recovery_driver.py: the library, a FIX
venue, a journal) sends a few thousand orders of mixed kinds to an `execdesk venue`
process and is killed -9 at a random point; a new engine process on the same journal
recovers. Then the journal, the engine's positions and the venue's own state must agree:
every id `submit_many` returned is in the journal, every order the venue holds is one
the journal holds (under one ClOrdID), every fill the venue made is in the journal (its
quantity and value per order) and in the positions, and nothing the venue knows is
marked never sent. The same when the venue is the one killed (it keeps its state)."""

from __future__ import annotations

import collections
import json
import random
import signal
import sqlite3
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.test_desk_fix import ROOT, Venue, free_port

DRIVER = str(ROOT / "tests" / "recovery_driver.py")


@dataclass
class Audit:
    submitted: int  # ids submit_many returned before the kill
    journal_orders: int
    venue_orders: int
    lost: int  # returned ids the journal does not hold
    unknown_to_journal: int  # venue orders no journaled order accounts for
    duplicated: int  # journaled orders the venue holds more than once
    fill_mismatches: list[Any]  # (cid, venue cum, venue value, journal qty, journal value)
    never_sent_but_known: int
    phantom_fills: int  # journaled fills of orders the venue does not know
    still_open: int  # journaled orders not final after the recovery settled
    venue_net: float
    journal_net: float


def audit(journal: Path, venue_state: Path, ids: list[str]) -> Audit:
    jdb = sqlite3.connect(journal)
    vdb = sqlite3.connect(venue_state)
    try:
        orders = {cid: (oid, side, reason, final) for cid, oid, side, reason, final in jdb.execute(
            "SELECT client_order_id, id, side, reason, final FROM orders")}
        journaled_ids = {oid for oid, *_ in orders.values()}
        cl_ord_ids = dict(vdb.execute("SELECT cl_ord_id, key FROM cl_ord_ids"))
        venue = {key: (cum, avg, side) for key, cum, avg, side in vdb.execute(
            "SELECT key, cum_qty, avg_px, side FROM orders")}
        keys_of: dict[str, set[str]] = collections.defaultdict(set)
        for cl, key in cl_ord_ids.items():
            keys_of[key].add(cl)
        journal_fills: dict[str, list[float]] = collections.defaultdict(lambda: [0.0, 0.0])
        journal_net = 0.0
        for cid, price, quantity, side in jdb.execute(
                "SELECT e.order_id, e.price, e.quantity, o.side FROM events e JOIN orders o "
                "ON o.client_order_id = e.order_id WHERE e.kind = 'filled' AND e.price IS NOT NULL"):
            journal_fills[cid][0] += quantity
            journal_fills[cid][1] += price * quantity
            journal_net += quantity if side == "BUY" else -quantity
        unknown, mismatches = 0, []
        venue_keys_per_cid: collections.Counter[str] = collections.Counter()
        for key, (cum, avg, _side) in venue.items():
            cids = [cl for cl in keys_of[key] if cl in orders]
            if not cids:
                unknown += 1
                continue
            for cid in cids:
                venue_keys_per_cid[cid] += 1
            qty, value = journal_fills.get(cids[0], (0.0, 0.0))
            if abs(qty - cum) > 1e-9 or abs(value - cum * avg) > 1e-6 * max(cum * avg, 1.0):
                mismatches.append((cids[0], cum, cum * avg, qty, value))
        phantom = sum(1 for cid in journal_fills if cid not in cl_ord_ids)
        venue_net = 0.0
        for key, quantity in vdb.execute("SELECT key, quantity FROM fills"):
            venue_net += quantity if venue[key][2] == "1" else -quantity
        return Audit(
            submitted=len(ids), journal_orders=len(orders), venue_orders=len(venue),
            lost=sum(1 for oid in ids if oid not in journaled_ids), unknown_to_journal=unknown,
            duplicated=sum(1 for n in venue_keys_per_cid.values() if n > 1), fill_mismatches=mismatches,
            never_sent_but_known=sum(1 for cid, (_, _, reason, _) in orders.items()
                                     if reason and "never" in reason and cid in cl_ord_ids),
            phantom_fills=phantom,
            still_open=sum(1 for *_, final in orders.values() if not final),
            venue_net=venue_net, journal_net=journal_net,
        )
    finally:
        jdb.close()
        vdb.close()


def driver(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, DRIVER, *args], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def finish(proc: subprocess.Popen[str], timeout: float = 120) -> tuple[list[str], dict[str, Any]]:
    out, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, err[-3000:]
    lines = out.splitlines()
    done = [line for line in lines if line.startswith("DONE ")]
    assert done, (out[-2000:], err[-3000:])
    return lines, json.loads(done[-1][5:])


def ids_of(lines: list[str]) -> list[str]:
    return [line[3:] for line in lines if line.startswith("ID ")]


def kill_after(proc: subprocess.Popen[str], seconds: float) -> list[str]:
    """Read the driver's lines for `seconds` after its first id, then kill it -9; the
    lines it printed (every id it printed was returned before the kill)."""
    assert proc.stdout is not None
    lines: list[str] = []
    first = proc.stdout.readline()
    assert first.startswith("ID "), (first, proc.stderr.read() if proc.stderr else "")
    lines.append(first.rstrip("\n"))
    deadline = time.monotonic() + seconds
    import selectors

    with selectors.DefaultSelector() as sel:
        sel.register(proc.stdout, selectors.EVENT_READ)
        while time.monotonic() < deadline and proc.poll() is None:
            if sel.select(timeout=max(deadline - time.monotonic(), 0.0)):
                line = proc.stdout.readline()
                if line:
                    lines.append(line.rstrip("\n"))
    proc.send_signal(signal.SIGKILL)
    rest, _ = proc.communicate(timeout=30)
    # Lines already in the pipe were printed before the kill: their ids were returned.
    lines += rest.splitlines()
    return lines


def assert_nothing_lost(a: Audit, positions: dict[str, float]) -> None:
    assert a.lost == 0, a
    assert a.unknown_to_journal == 0, a
    assert a.duplicated == 0, a
    assert a.fill_mismatches == [], a
    assert a.never_sent_but_known == 0, a
    assert a.phantom_fills == 0, a  # a venue killed right after answering must have saved first
    assert a.still_open == 0, a
    assert a.venue_net == pytest.approx(a.journal_net, abs=1e-9)
    assert positions.get("BTC/USD", 0.0) == pytest.approx(a.venue_net, abs=1e-9)


@pytest.mark.parametrize("seed", [11, 12, 13])
def test_an_engine_killed_mid_flow_recovers_every_order_and_fill(tmp_path: Path, seed: int) -> None:
    venue = Venue(free_port(), tmp_path / "venue", tick_interval="0.05")  # a market that moves
    venue.start()
    try:
        journal, fixdir = tmp_path / "journal.sqlite3", tmp_path / "fix"
        kill_at = random.Random(seed).uniform(0.3, 1.5)
        sender = driver("send", str(venue.port), str(journal), str(fixdir), str(seed), "3000")
        lines = kill_after(sender, kill_at)
        assert "SENT" not in lines, "the kill came after the last order: pick an earlier point"
        ids = ids_of(lines)
        assert len(ids) >= 100, len(ids)
        recovered_lines, done = finish(driver("recover", str(venue.port), str(journal), str(fixdir), str(seed)))
        report = done["report"]
        summary = next(line for line in recovered_lines if line.startswith("RECOVERED "))
        a = audit(journal, venue.state / "venue.sqlite3", ids)
        print(f"seed {seed}: killed at {kill_at:.2f}s after {len(ids)} ids; {summary}; {a}")
        assert_nothing_lost(a, done["positions"])
        assert report["unresolved"] == 0
        assert report["tracked"] + report["finished"] + report["never_sent"] > 0, summary
        assert done["working"] == []
    finally:
        venue.stop()


def test_a_venue_killed_mid_flow_is_reconciled_and_nothing_it_knows_is_called_never_sent(tmp_path: Path) -> None:
    venue = Venue(free_port(), tmp_path / "venue", tick_interval="0.05")
    venue.start()
    try:
        journal, fixdir = tmp_path / "journal.sqlite3", tmp_path / "fix"
        sender = driver("send", str(venue.port), str(journal), str(fixdir), "21", "2500")
        assert sender.stdout is not None
        first = sender.stdout.readline()
        assert first.startswith("ID "), first
        time.sleep(0.6)
        venue.kill()
        time.sleep(0.5)
        venue.start()  # on its state: every order and fill it made, old ClOrdIDs remembered
        lines, done = finish(sender)
        lines.insert(0, first.rstrip("\n"))
        assert "SENT" in lines
        a = audit(journal, venue.state / "venue.sqlite3", ids_of(lines))
        print(f"venue killed: {a}")
        assert_nothing_lost(a, done["positions"])
        assert a.venue_orders > 0
    finally:
        venue.stop()


def test_halt_cancels_at_a_fix_venue_reports_what_it_could_not_and_retries_until_it_can(tmp_path: Path) -> None:
    import anyio

    from engine import Engine, Order, OrderStatus
    from engine.venue_spec import open_venues, parse_venues

    venue = Venue(free_port(), tmp_path / "venue")
    venue.start()
    venues = open_venues(parse_venues(f"fix://127.0.0.1:{venue.port}/swift"), connect_timeout=10.0,
                         state_dir=tmp_path / "fix")

    async def main() -> None:
        engine = Engine(venues, seed=1, risk=None, journal=tmp_path / "journal.sqlite3")
        await engine.start()
        try:
            bid = venues["swift"].book("BTC/USD").best_bid
            for oid in ("a", "b"):
                await engine.submit(Order(id=oid, symbol="BTC/USD", side="BUY", type="LIMIT", quantity=0.01,
                                          price=round(bid - 200, 2)))
            with anyio.fail_after(10):
                while any(engine.status(o).status is not OrderStatus.NEW for o in ("a", "b")):
                    await anyio.sleep(0.02)
            # The line goes down with the orders working: the halt cannot reach them.
            venue.kill()
            with anyio.fail_after(10):
                while venues["swift"].session_info().state == "logged on":
                    await anyio.sleep(0.02)
            report = await engine.halt("venue trouble")
            assert report.canceled == [] and sorted(report.failed) == ["a", "b"], report
            assert "2 could not be canceled yet (retrying)" in report.summary()
            venue.start()  # back on its state (it cancels what rested there: "venue restarted")
            with anyio.fail_after(30):
                while engine.halt_report is None or engine.halt_report.failed:
                    await engine.housekeeping()
                    await anyio.sleep(0.2)
            assert {engine.status(o).status for o in ("a", "b")} == {OrderStatus.CANCELED}
            assert sorted(engine.halt_report.canceled) == ["a", "b"]
        finally:
            await engine.stop()

    try:
        anyio.run(main)
    finally:
        for v in venues.values():
            v.close()
        venue.stop()
    # At the venue, both are canceled.
    db = sqlite3.connect(venue.state / "venue.sqlite3")
    statuses = [row[0] for row in db.execute("SELECT status FROM orders")]
    db.close()
    assert statuses == ["4", "4"], statuses  # OrdStatus canceled
