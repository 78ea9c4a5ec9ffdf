"""The Engine with a journal: every order written before it is queued, every event after,
and a finished order's status answered from the journal once memory has forgotten it."""

from __future__ import annotations

import sqlite3

import anyio
import pytest

from engine import Engine, Order, OrderStatus, RealClock
from engine.journal import Journal
from tests.desk_support import instant_specs


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def market(oid: str, side: str = "BUY") -> Order:
    return Order(id=oid, symbol="BTC/USD", side=side, type="MARKET", quantity=0.01)


@pytest.mark.anyio
async def test_an_engine_journals_every_order_and_answers_from_it_once_memory_forgot(tmp_path) -> None:
    path = tmp_path / "journal.sqlite3"
    engine = Engine.default(seed=2, clock=RealClock(), specs=instant_specs(), remember_orders=1, journal=path)
    await engine.start(num_workers=2)
    try:
        ids, results = [], []
        for i in range(5):
            oid = await engine.submit(market(f"j{i}", "BUY" if i % 2 else "SELL"))
            # Written before it was queued: on disk already, whatever happened since.
            assert sqlite3.connect(path).execute("SELECT id FROM orders WHERE id=?", (oid,)).fetchone() == (oid,)
            ids.append(oid)
            results.append(await engine.wait(oid, timeout=10))
        assert {r.status for r in results} == {OrderStatus.FILLED}
        with anyio.fail_after(10):
            while engine.journal.status("j0") is None or engine.journal.status("j0").status is not OrderStatus.FILLED:
                await anyio.sleep(0.01)
        # remember_orders=1: the engine's memory keeps one finished order; the rest come from the journal.
        first = engine.status("j0")
        assert (first.status, first.filled_quantity) == (OrderStatus.FILLED, 0.01)
        assert first.average_price == results[0].average_price and len(first.fills) == len(results[0].fills)
    finally:
        await engine.stop(drain=False)
    # Stopped: everything committed and the file closed; it reads back in a new Journal.
    with Journal(path) as again:
        assert {again.status(oid).status for oid in ids} == {OrderStatus.FILLED}
        assert again.open_orders() == []


def test_the_desk_refuses_a_journal_that_is_not_one_and_leaves_it_untouched(tmp_path) -> None:
    import subprocess
    import sys
    from pathlib import Path

    path = tmp_path / "mine.sqlite3"
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE invoices (id INTEGER)")
    db.commit()
    db.close()
    before = path.read_bytes()
    root = Path(__file__).resolve().parents[1]
    proc = subprocess.run([sys.executable, "-m", "tui.cli", "--journal", str(path)], cwd=root, capture_output=True,
                          text=True, timeout=60, env={**__import__("os").environ, "EXECDESK_CONFIG_DIR": str(tmp_path)})
    assert proc.returncode == 2 and "is not an execdesk" in proc.stderr and "Traceback" not in proc.stderr
    assert path.read_bytes() == before


@pytest.mark.anyio
async def test_the_desk_keeps_a_journal_beside_its_settings(tmp_path) -> None:
    from engine.engine import simulated_venues
    from tests.desk_support import until
    from tests.test_desk import send_ticket
    from tui.app import DeskApp

    app = DeskApp(venues=simulated_venues(1, specs=instant_specs()), live=False,
                  settings_path=tmp_path / "settings.json", order_prefix="T")
    async with app.run_test(size=(160, 48)) as pilot:
        await send_ticket(pilot, ["f2", "enter"])
        await until(pilot, lambda: "T-1" in app.blotter.keys and app.engine.status("T-1").status is OrderStatus.FILLED,
                    tries=500)
        await app.shutdown_engine()
    with Journal(tmp_path / "journal.sqlite3") as journal:
        assert journal.status("T-1").status is OrderStatus.FILLED


@pytest.mark.anyio
async def test_an_id_the_journal_holds_is_never_reused_even_after_a_restart(tmp_path) -> None:
    path = tmp_path / "journal.sqlite3"
    engine = Engine.default(seed=2, clock=RealClock(), specs=instant_specs(), journal=path)
    await engine.start(num_workers=2)
    try:
        assert (await engine.wait(await engine.submit(market("once")), timeout=10)).status is OrderStatus.FILLED
    finally:
        await engine.stop()
    engine = Engine.default(seed=2, clock=RealClock(), specs=instant_specs(), journal=path)
    await engine.start(num_workers=2)
    try:
        with pytest.raises(Exception) as refused:
            await engine.submit(market("once", "SELL"))
        assert str(refused.value) == ("order id 'once' is already in the journal (journal.sqlite3): an earlier "
                                      "order's; ids are never reused")
        assert await engine.submit_many([market("once", "SELL"), market("twice", "SELL")]) == ["twice"]
        assert (await engine.wait("twice", timeout=10)).status is OrderStatus.FILLED
        # The first order's row is as it was: a BUY, filled.
        first = engine.status("once")
        assert (first.side.value, first.status) == ("BUY", OrderStatus.FILLED)
        # Its id is free again in memory: the refused order left nothing behind.
        assert "once" not in engine.working()
    finally:
        await engine.stop()
