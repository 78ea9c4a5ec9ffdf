"""The venue server's guards (from an adversarial probe): an order whose connection drops
while its venue answers is recorded and its report parked, values FIX does not write are
refused, a reserved or another counterparty's ClOrdID says no more than it must, a flood
of made-up CompIDs is refused past a bound, and no order is taken while the state cannot
be saved."""

from __future__ import annotations

import anyio
import pytest

from engine.clock import RealClock
from engine.venues.fix import Tag
from engine.venues.fix.store import SessionStore
from engine.venues.fixio.server import FixVenueServer, fix_number
from engine.venues.fixio.venue_state import VenueState
from engine.venues.sim.config import LatencyModel
from engine.venues.sim.exchange import SimulatedExchange
from tests.test_fix_server import WAIT, Client, book


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.mark.anyio
async def test_an_order_whose_connection_drops_while_its_venue_answers_is_reported_at_the_next_logon() -> None:
    slow = SimulatedExchange("slow", clock=RealClock(), seed=2, latency=LatencyModel(median_s=0.3, p99_s=0.3))
    server = FixVenueServer(slow, tick_interval=0.05)  # the ticker steps the venue: its arrivals land
    await server.start()
    try:
        store = SessionStore()
        client = Client("DESK", store)
        await client.connect(server.port)
        _, ask = book(slow)
        client.order("late-1", "1", "0.01", fix_number(ask))
        await anyio.sleep(0.05)  # the venue has it and takes its time (0.3 s)
        client.connection.abort()
        with anyio.fail_after(WAIT):
            while slow.counters.submitted < 1 or not server.parked:
                await anyio.sleep(0.02)
        again = Client("DESK", store)
        await again.connect(server.port)
        reports = [await again.next()]  # the venue's answer, made after the line was cut: parked
        assert (reports[0].get(Tag.ClOrdID), reports[0].poss_dup) == ("late-1", True)
        while reports[-1].get(Tag.OrdStatus) != "2":  # and its fill, parked or live, whenever it came
            reports.append(await again.next())
        assert {r.get(Tag.ClOrdID) for r in reports} == {"late-1"}
        assert slow.status("late-1").status.value == "FILLED"
        await again.close()
    finally:
        with anyio.fail_after(WAIT):
            await server.stop()


@pytest.fixture
def venues() -> dict[str, SimulatedExchange]:
    return {"swift": SimulatedExchange("swift", seed=7)}


@pytest.mark.anyio
@pytest.mark.parametrize(("qty", "says"), [
    ("1_0", "OrderQty(38) '1_0' is not a FIX decimal number"),
    (" 1", "OrderQty(38) ' 1' is not a FIX decimal number"),
    ("1e2", "OrderQty(38) '1e2' is not a FIX decimal number"),
    ("inf", "OrderQty(38) 'inf' is not a FIX decimal number"),
])
async def test_a_number_fix_does_not_write_is_refused(venues, qty, says) -> None:
    server = FixVenueServer(venues, tick_interval=None)
    await server.start()
    try:
        client = Client()
        await client.connect(server.port)
        client.order("q-1", "1", qty, None)
        refused = await client.next()
        assert refused.get(Tag.OrdStatus) == "8" and says in refused.get(Tag.Text)
        await client.close()
    finally:
        await server.stop()


@pytest.mark.anyio
async def test_reserved_and_foreign_client_order_ids_are_refused_saying_no_more_than_needed(venues) -> None:
    server = FixVenueServer(venues, tick_interval=None)
    await server.start()
    try:
        mine, theirs = Client("DESK"), Client("OTHER")
        await mine.connect(server.port)
        await theirs.connect(server.port)
        bid, _ = book(venues["swift"])
        low = fix_number(round(bid * 0.9, 2))
        mine.order("NONE", "1", "0.01", low)
        assert "ClOrdID 'NONE' is reserved" in (await mine.next()).get(Tag.Text)
        mine.order("shared-1", "1", "0.01", low)
        assert (await mine.next()).get(Tag.OrdStatus) == "0"
        theirs.order("shared-1", "1", "0.01", low)
        text = (await theirs.next()).get(Tag.Text)
        assert text == "duplicate ClOrdID 'shared-1': it was used before; no new order was made"
        mine.order("shared-1", "1", "0.01", low)
        assert "order swift:shared-1 already has it" in (await mine.next()).get(Tag.Text)
        await mine.close()
        await theirs.close()
    finally:
        await server.stop()


@pytest.mark.anyio
async def test_past_its_bound_of_counterparties_a_new_comp_id_is_refused_saying_why(venues) -> None:
    server = FixVenueServer(venues, tick_interval=None, max_counterparties=2)
    await server.start()
    try:
        for name in ("A", "B"):
            client = Client(name)
            await client.connect(server.port)
            await client.close()
        third = Client("C")
        with pytest.raises(TimeoutError):
            await third.connect(server.port)
        assert any("serves at most 2 SenderCompIDs" in e.text for e in third.events)
        known = Client("A", None)  # a known one still logs on (its numbers are the venue's to keep)
        known.session.store.next_outgoing = 3
        known.session.store.next_incoming = 3
        await known.connect(server.port)
        await known.close()
    finally:
        await server.stop()


@pytest.mark.anyio
async def test_no_order_is_taken_while_the_state_cannot_be_saved(venues, tmp_path) -> None:
    state = VenueState(tmp_path)
    server = FixVenueServer(venues, tick_interval=None, state=state)
    await server.start()
    try:
        client = Client()
        await client.connect(server.port)
        state.failing = f"the venue cannot save its state in {state.path}: database or disk is full"
        client.order("full-1", "1", "0.01", None)
        refused = await client.next()
        assert refused.get(Tag.OrdStatus) == "8"
        assert refused.get(Tag.Text).endswith("database or disk is full; no new order is taken until it can")
        await client.close()
    finally:
        await server.stop()
        state.close()
