"""Bad FIX sent to the venue server over TCP gets the standard answer, and the server goes
on serving everyone else: garbled bytes and frames with a wrong BodyLength or CheckSum are
ignored (their number is not consumed, so the next good message shows a gap and is asked
for again), a missing header tag gets Reject (3), an unknown ClOrdID in G/H the contract's
answer, and a sequence number too low a Logout. Raw frames come from our encoder, then
are broken by hand."""

from __future__ import annotations

import asyncio

import anyio
import pytest
import simplefix

from engine.venues.fix import MsgType, Tag, encode, utc_timestamp
from tests import test_fix_server as base
from tests.test_fix_server import WAIT, Client

anyio_backend, venues, server, client = base.anyio_backend, base.venues, base.server, base.client


class RawClient:
    """A FIX client writing raw bytes (ours, broken on purpose) and reading with simplefix."""

    def __init__(self, comp_id: str = "RAW") -> None:
        self.comp_id = comp_id
        self.parser = simplefix.FixParser()
        self.seq = 0

    async def connect(self, port: int) -> None:
        self.reader, self.writer = await asyncio.open_connection("127.0.0.1", port)
        self.write(self.frame("A", [(98, "0"), (108, "30")]))
        assert (await self.answer()).get(35) == b"A"

    def frame(self, msg_type: str, body, *, seq: int | None = None) -> bytes:
        if seq is None:
            self.seq += 1
            seq = self.seq
        return encode(msg_type, self.comp_id, "VENUE", seq, utc_timestamp(0), body)

    def write(self, data: bytes) -> None:
        self.writer.write(data)

    async def answer(self) -> simplefix.FixMessage:
        with anyio.fail_after(WAIT):
            while True:
                got = self.parser.get_message()
                if got is not None:
                    return got
                data = await self.reader.read(4096)
                if not data:
                    raise EOFError("the venue closed the connection")
                self.parser.append_buffer(data)

    async def closed(self) -> bool:
        with anyio.fail_after(WAIT):
            while True:
                if not await self.reader.read(4096):
                    return True

    async def close(self) -> None:
        self.writer.close()
        await self.writer.wait_closed()


@pytest.fixture
async def raw(server):
    c = RawClient()
    await c.connect(server.port)
    try:
        yield c
    finally:
        await c.close()


def status_request(cid: str):
    return [(11, cid), (55, "BTC/USD"), (54, "1")]


@pytest.mark.anyio
async def test_garbled_bytes_are_ignored_and_the_session_carries_on(raw, client):
    raw.write(b"\x00\xffthis is not FIX at all\x01\x01")
    raw.write(raw.frame("H", status_request("g-1")))
    status = await raw.answer()
    assert (status.get(35), status.get(150), status.get(58)) == (b"8", b"I", b"order 'g-1' is not known")
    client.send(MsgType.ORDER_STATUS_REQUEST, (Tag.ClOrdID, "other"))  # the other session is untouched
    assert (await client.next()).get(Tag.ExecType) == "I"


@pytest.mark.anyio
@pytest.mark.parametrize("breakage", ["checksum", "body_length"])
async def test_a_frame_with_a_wrong_checksum_or_body_length_is_ignored_and_asked_for_again(raw, client, breakage):
    good = raw.frame("H", status_request("lost-1"))  # seq 2
    if breakage == "checksum":
        bad = good[:-4] + b"%03d\x01" % ((int(good[-4:-1]) + 1) % 256)
    else:
        bad = good.replace(b"\x019=", b"\x019=1", 1)  # claims 10x the body it has
    raw.write(bad)
    raw.write(raw.frame("H", status_request("next-1")))  # seq 3: the server expected 2
    resend = await raw.answer()
    assert (resend.get(35), resend.get(7), resend.get(16)) == (b"2", b"2", b"0")
    client.send(MsgType.ORDER_STATUS_REQUEST, (Tag.ClOrdID, "other"))
    assert (await client.next()).get(Tag.ExecType) == "I"


@pytest.mark.anyio
async def test_a_missing_header_tag_gets_a_session_reject_naming_it(raw):
    raw.seq += 1
    text = (f"35=H\x0149=RAW\x0156=VENUE\x0134={raw.seq}\x0111=x\x01").encode()  # no SendingTime(52)
    head = b"8=FIX.4.4\x019=%d\x01" % len(text)
    raw.write(head + text + b"10=%03d\x01" % (sum(head + text) % 256))
    reject = await raw.answer()
    assert (reject.get(35), reject.get(45), reject.get(371), reject.get(373)) == (b"3", str(raw.seq).encode(), b"52", b"1")
    assert reject.get(58) == b"required tag 52 missing"
    raw.write(raw.frame("H", status_request("after")))  # its number was consumed: no gap
    assert (await raw.answer()).get(35) == b"8"


@pytest.mark.anyio
async def test_unknown_cl_ord_ids_in_g_and_h_get_the_contracts_answers(raw):
    raw.write(raw.frame("G", [(41, "ghost"), (11, "ghost-2"), (55, "BTC/USD"), (54, "1"), (38, "1"), (40, "2"),
                              (44, "100")]))
    refused = await raw.answer()
    assert (refused.get(35), refused.get(434), refused.get(102), refused.get(39)) == (b"9", b"2", b"1", b"8")
    assert refused.get(58) == b"order 'ghost' is not known"
    raw.write(raw.frame("H", status_request("ghost")))
    unknown = await raw.answer()
    assert (unknown.get(150), unknown.get(39), unknown.get(37)) == (b"I", b"8", b"NONE")


@pytest.mark.anyio
async def test_an_unknown_msg_type_and_a_missing_body_field_get_a_business_reject(raw):
    raw.write(raw.frame("ZZ", [(58, "hello")]))
    reject = await raw.answer()
    assert (reject.get(35), reject.get(372), reject.get(380)) == (b"j", b"ZZ", b"3")
    raw.write(raw.frame("G", [(41, "a"), (11, "b")]))
    missing = await raw.answer()
    assert (missing.get(35), missing.get(380), missing.get(58)) == (b"j", b"5", b"required field(s) missing: 55, 54, 38, 40")


@pytest.mark.anyio
async def test_a_sequence_number_too_low_ends_that_session_only(raw, client, venues):
    raw.write(raw.frame("H", status_request("s-1")))
    await raw.answer()
    raw.write(raw.frame("H", status_request("s-2"), seq=1))  # seq 1 again, no PossDupFlag
    logout = await raw.answer()
    assert (logout.get(35), logout.get(58)) == (b"5", b"MsgSeqNum too low, expecting 3 but received 1")
    assert await raw.closed()
    bid, _ = base.book(venues["swift"])
    client.order("still-1", "1", "0.01", base.fix_number(round(bid * 0.9, 2)))
    assert (await client.next()).get(Tag.OrdStatus) == "0"


@pytest.mark.anyio
async def test_many_bad_messages_leave_the_server_serving_new_sessions(server):
    for i in range(3):
        raw = RawClient(f"BAD{i}")
        await raw.connect(server.port)
        raw.write(b"8=FIX.4.4\x019=5\x0135=D\x0110=000\x01garbage" * 3)
        await raw.close()
    fresh = Client("FRESH")
    await fresh.connect(server.port)
    fresh.send(MsgType.ORDER_MASS_STATUS_REQUEST, (584, "ok"), (585, "7"))
    assert (await fresh.next()).get(584) == "ok"
    await fresh.close()
