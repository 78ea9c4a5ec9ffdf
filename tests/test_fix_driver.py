"""The asyncio driver's own timers over real TCP: heartbeats keep an idle session up, and a
peer that goes silent gets a TestRequest, then a Logout. HeartBtInt is 1 s so the test takes
seconds; nothing here asserts a duration, only what was sent and why the session ended."""

from __future__ import annotations

import asyncio

import anyio
import pytest

from engine.venues.fix import FixSession, Role, SessionConfig
from engine.venues.fix.codec import FixDecoder, Message, encode, utc_timestamp
from engine.venues.fix.session import SessionStatus
from engine.venues.fixio.driver import FixConnection, open_fix_connection

WAIT = 10.0


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.mark.anyio
async def test_an_idle_session_stays_up_on_heartbeats_both_ways() -> None:
    acceptors: list[FixConnection] = []

    def accept() -> FixConnection:
        acceptors.append(FixConnection(FixSession(SessionConfig("VENUE"), Role.ACCEPTOR)))
        return acceptors[-1]

    server = await asyncio.get_running_loop().create_server(accept, "127.0.0.1", 0)
    session = FixSession(SessionConfig("DESK", "VENUE", heart_bt_int=1), Role.INITIATOR)
    events: list = []
    connection, task = await open_fix_connection("127.0.0.1", server.sockets[0].getsockname()[1], session,
                                                 on_event=events.append)
    try:
        with anyio.fail_after(WAIT):
            await connection.logged_on.wait()
            # Logon is 1; each side has heard at least two Heartbeats after it.
            while session.store.next_incoming < 4 or acceptors[0].session.store.next_incoming < 4:
                await asyncio.sleep(0.05)
        assert session.status is SessionStatus.ACTIVE and acceptors[0].session.status is SessionStatus.ACTIVE
        assert [e.kind for e in events] == ["logged_on"]  # no TestRequest was needed
    finally:
        connection.logout("done")
        with anyio.fail_after(WAIT):
            await task
        server.close()
    assert acceptors[0].closed.is_set() or await _closes(acceptors[0])


async def _closes(connection: FixConnection) -> bool:
    with anyio.fail_after(WAIT):
        await connection.closed.wait()
    return True


@pytest.mark.anyio
async def test_a_silent_peer_gets_a_test_request_then_a_logout_and_the_connection_ends() -> None:
    heard: list[Message] = []

    async def mute_venue(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Answers the Logon, then reads everything and says nothing."""
        decoder = FixDecoder()
        while data := await reader.read(65536):
            decoder.feed(data)
            for msg in decoder:
                assert isinstance(msg, Message)
                heard.append(msg)
                if msg.msg_type == "A":
                    writer.write(encode("A", "VENUE", "DESK", 1, utc_timestamp(0), [(98, "0"), (108, "1")]))
        writer.close()

    server = await asyncio.start_server(mute_venue, "127.0.0.1", 0)
    session = FixSession(SessionConfig("DESK", "VENUE", heart_bt_int=1), Role.INITIATOR)
    events: list = []
    try:
        connection, task = await open_fix_connection("127.0.0.1", server.sockets[0].getsockname()[1], session,
                                                     on_event=events.append)
        with anyio.fail_after(WAIT):
            await task
    finally:
        server.close()
    assert connection.closed.is_set() and session.status is SessionStatus.CLOSED
    kinds = [e.kind for e in events]
    assert kinds[0] == "logged_on" and "test_request" in kinds and kinds[-1] == "closed"
    assert events[-1].text == "TestRequest TEST1 unanswered"
    sent = [m.msg_type for m in heard]
    assert sent[0] == "A" and "1" in sent and sent[-1] == "5"
    test_request = next(m for m in heard if m.msg_type == "1")
    assert test_request.get(112) == "TEST1"
    assert heard[-1].get(58) == "TestRequest TEST1 unanswered"


@pytest.mark.anyio
async def test_a_peer_that_does_not_read_is_cut_off_past_the_unsent_bound(monkeypatch) -> None:
    import socket

    from engine.venues.fixio import driver

    monkeypatch.setattr(driver, "MAX_UNSENT", 256 * 1024)
    acceptors: list[FixConnection] = []
    events: list = []

    def accept() -> FixConnection:
        acceptors.append(FixConnection(FixSession(SessionConfig("VENUE"), Role.ACCEPTOR), on_event=events.append))
        return acceptors[-1]

    server = await asyncio.get_running_loop().create_server(accept, "127.0.0.1", 0)
    peer = socket.socket()
    peer.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    peer.connect(server.sockets[0].getsockname())
    try:
        peer.sendall(encode("A", "SLOW", "VENUE", 1, utc_timestamp(1e9), [(98, "0"), (108, "30")]))
        with anyio.fail_after(WAIT):
            while not acceptors or acceptors[0].session.status is not SessionStatus.ACTIVE:
                await asyncio.sleep(0.01)
        venue = acceptors[0]
        sock = venue._transport.get_extra_info("socket")  # a small kernel buffer: ours fills first
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        news = [(58, "x" * 900)]
        with anyio.fail_after(WAIT):
            while not venue.closed.is_set():
                for _ in range(50):  # market data it never reads
                    if not venue.closed.is_set():
                        venue.send("B", news)
                await asyncio.sleep(0.001)
        assert any(e.kind == "closed" and "the peer is not reading" in e.text for e in events)
    finally:
        peer.close()
        server.close()
