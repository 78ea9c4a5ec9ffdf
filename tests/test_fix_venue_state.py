"""The venue's state directory: one venue process at a time, a damaged file or a row that is
not an order refused and left as it is, and a commit that fails keeping its changes."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from engine.models import Fill, Liquidity, OrderSide
from engine.venues.fixio.venue_state import VenueState, VenueStateError
from tests.test_fix_server_cli import ROOT, run_venue
from tests.test_desk_fix import LISTENING, free_port


def test_a_second_venue_process_on_the_same_state_is_refused_while_the_first_runs(tmp_path: Path) -> None:
    state = str(tmp_path / "state")
    first = subprocess.Popen([sys.executable, "-m", "tui.cli", "venue", "--port", str(free_port()), "--state", state],
                             cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert first.stdout is not None and LISTENING.search(first.stdout.readline())
        code, err = run_venue("--port", "0", "--state", state)
        assert code == 2 and f"is in use by another execdesk venue (pid {first.pid})" in err
        assert "Traceback" not in err
    finally:
        first.terminate()
        first.wait(10)
    # Once the first has ended, the directory is free again.
    VenueState(state).close()


def stored_order(directory: Path) -> None:
    class Venue:
        name = "swift"

    class Info:
        key, owner, symbol, side, quantity, ord_type, price, tif = "k1", "DESK", "BTC/USD", "1", 0.01, "2", 100.0, "1"
        status, cum_qty, text, avg_px, venue = "0", 0.0, None, 0.0, Venue()

    state = VenueState(directory)
    state.add_id("c1", Info())
    state.close()


@pytest.mark.parametrize(("column", "value", "says"), [
    ("status", "Z", "has status 'Z', which FIX does not define"),
    ("quantity", "abc", "has quantity 'abc', which is not a quantity"),
    ("cum_qty", -1.0, "has cum_qty -1.0, which is not a quantity"),
])
def test_a_row_that_is_not_an_order_refuses_the_state_with_exit_2(tmp_path: Path, column, value, says) -> None:
    stored_order(tmp_path)
    db = sqlite3.connect(tmp_path / "venue.sqlite3")
    db.execute(f"UPDATE orders SET {column}=?", (value,))
    db.commit()
    db.close()
    before = (tmp_path / "venue.sqlite3").read_bytes()
    code, err = run_venue("--port", "0", "--state", str(tmp_path))
    assert code == 2 and f"order 'k1' {says}" in err and "Traceback" not in err
    assert (tmp_path / "venue.sqlite3").read_bytes() == before


def test_a_damaged_file_is_refused_at_start(tmp_path: Path) -> None:
    stored_order(tmp_path)
    path = tmp_path / "venue.sqlite3"
    db = sqlite3.connect(path)
    page_size = db.execute("PRAGMA page_size").fetchone()[0]
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.close()
    data = bytearray(path.read_bytes())
    data[page_size * 2: page_size * 2 + 512] = b"\xa5" * 512  # scribble over a page past the schema
    path.write_bytes(bytes(data))
    with pytest.raises(VenueStateError, match="is damaged|not an execdesk venue state"):
        VenueState(tmp_path)


def test_a_commit_that_fails_keeps_its_changes_for_the_next_one(tmp_path: Path) -> None:
    state = VenueState(tmp_path)
    fill = Fill("k1", "swift", "BTC/USD", OrderSide.BUY, 100.0, 0.01, 0.0, Liquidity.TAKER, 1.0, "t1")
    state.add_fill("k1", "E1", fill)
    blocker = sqlite3.connect(tmp_path / "venue.sqlite3", timeout=0)
    blocker.execute("BEGIN EXCLUSIVE")  # another writer holds the file
    state._conn.execute("PRAGMA busy_timeout=0")
    with pytest.raises(VenueStateError, match="cannot save its state"):
        state.commit()
    assert state.failing is not None and state.pending == 1
    blocker.rollback()
    blocker.close()
    state.commit()
    assert state.failing is None and state.pending == 0
    assert [f.exec_id for f in state.fills()] == ["E1"]
    state.close()
