"""Adversarial cases for the journal and restart recovery (issue 18's probe): two
engines on one journal, crashes inside recovery, resumed parents resumed again, and
the other awkward points a real desk meets."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import anyio
import pytest

from engine import Engine, Order, OrderStatus
from engine.errors import ConfigurationError
from engine.journal import Journal

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
