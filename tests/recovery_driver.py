"""An engine process for the recovery tests: the library, a FIX venue, a journal.

    python tests/recovery_driver.py send PORT JOURNAL FIXDIR SEED COUNT
        sends COUNT orders of mixed kinds (market, limit crossing and resting, IOC,
        iceberg, TWAP, a few cancels) in small batches, printing "ID <id>" for every id
        `submit_many` returned, then "SENT"; then waits for what can finish, cancels
        what still works, and prints "DONE <json>". The test may kill it at any point.
    python tests/recovery_driver.py recover PORT JOURNAL FIXDIR SEED
        starts an engine on the same journal (its start recovers), waits until every
        order is settled with the venue, cancels what still works, prints
        "RECOVERED <summary>" and "DONE <json>".

DONE's json: {"positions": {symbol: net}, "report": {...counts}}.
"""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path

import anyio

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine import Engine, Order  # noqa: E402
from engine.models import OrderStatus  # noqa: E402
from engine.venue_spec import open_venues, parse_venues  # noqa: E402

SYMBOL = "BTC/USD"


def make_orders(rng: random.Random, n: int, start: int, bid: float, ask: float) -> list[Order]:
    orders = []
    for i in range(start, start + n):
        side = rng.choice(("BUY", "SELL"))
        kind = rng.random()
        oid = f"o{i}"
        q = round(rng.uniform(0.001, 0.02), 4)
        if kind < 0.35:
            orders.append(Order(id=oid, symbol=SYMBOL, side=side, type="MARKET", quantity=q))
        elif kind < 0.55:  # rests near the touch: some fill as the market moves
            px = bid - rng.uniform(0, 15) if side == "BUY" else ask + rng.uniform(0, 15)
            orders.append(Order(id=oid, symbol=SYMBOL, side=side, type="LIMIT", quantity=q, price=round(px, 2)))
        elif kind < 0.7:  # crosses: fills at once
            px = ask + 5 if side == "BUY" else bid - 5
            orders.append(Order(id=oid, symbol=SYMBOL, side=side, type="LIMIT", quantity=q, price=round(px, 2)))
        elif kind < 0.8:
            px = ask if side == "BUY" else bid
            orders.append(Order(id=oid, symbol=SYMBOL, side=side, type="LIMIT", quantity=q, price=round(px, 2),
                                time_in_force="IOC"))
        elif kind < 0.9:
            px = bid - rng.uniform(0, 10) if side == "BUY" else ask + rng.uniform(0, 10)
            orders.append(Order(id=oid, symbol=SYMBOL, side=side, type="ICEBERG", quantity=round(q * 5, 4),
                                price=round(px, 2), metadata={"display_size": round(q, 4)}))
        else:
            orders.append(Order(id=oid, symbol=SYMBOL, side=side, type="TWAP", quantity=round(q * 4, 4),
                                metadata={"duration_s": rng.uniform(1.0, 4.0), "slices": 4}))
    return orders


async def settle(engine: Engine, timeout: float = 30.0) -> None:
    """Until nothing is unresolved, then cancel what still works and wait for it."""
    with anyio.move_on_after(timeout):
        while engine.router.unreconciled:
            await engine.housekeeping()
            await anyio.sleep(0.1)
    for _ in range(3):
        await engine.cancel_all("end of the test")
        with anyio.move_on_after(10):
            while engine.working():
                await anyio.sleep(0.05)
        if not engine.working():
            break
    await engine.journal_caught_up()


def done(engine: Engine) -> None:
    positions = {p.symbol: p.net_quantity for p in engine.positions()}
    report = engine.recovery
    counts = {} if report is None else {
        "tracked": len(report.tracked), "finished": len(report.finished), "never_sent": len(report.never_sent),
        "unresolved": len(report.unresolved), "left_open": len(report.left_open),
        "parents_stopped": len(report.parents_stopped), "fills_replayed": report.fills_replayed,
    }
    print("DONE " + json.dumps({"positions": positions, "report": counts, "working": engine.working()}), flush=True)


async def main(argv: list[str]) -> None:
    mode, port, journal, fixdir, seed = argv[0], int(argv[1]), argv[2], Path(argv[3]), int(argv[4])
    venues = open_venues(parse_venues(f"fix://127.0.0.1:{port}/swift"), connect_timeout=20.0, state_dir=fixdir)
    engine = Engine(venues, seed=seed, journal=journal, risk=None)
    try:
        await engine.start(num_workers=8)
        if mode == "recover":
            assert engine.recovery is not None
            print("RECOVERED " + engine.recovery.summary(), flush=True)
            await settle(engine)
            done(engine)
            return
        count = int(argv[5])
        rng = random.Random(seed)
        sent: list[str] = []
        i = 0
        while i < count:
            book = venues["swift"].book(SYMBOL)
            n = min(rng.randint(5, 40), count - i)
            ids = await engine.submit_many(make_orders(rng, n, i, book.best_bid, book.best_ask))
            i += n
            print("\n".join(f"ID {oid}" for oid in ids), flush=True)
            sent += ids
            if rng.random() < 0.3 and sent:
                victim = rng.choice(sent[-50:])
                result = engine.order_status_or_none(victim)
                if result is not None and not result.status.is_final and result.status is not OrderStatus.PENDING_NEW:
                    await engine.cancel(victim)
            await anyio.sleep(rng.uniform(0, 0.02))
            if i % 400 == 0:
                await engine.housekeeping()
        print("SENT", flush=True)
        await anyio.sleep(1.0)
        await settle(engine)
        done(engine)
    finally:
        await engine.stop(timeout=5.0)
        for venue in venues.values():
            close = getattr(venue, "close", None)
            if close is not None:
                close()


if __name__ == "__main__":
    anyio.run(main, sys.argv[1:])
