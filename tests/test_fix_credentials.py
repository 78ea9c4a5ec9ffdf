"""FIX Logon credentials: Password(554) from the initiator, checked by the acceptor; a
missing or wrong one refused with "logon refused: bad credentials" and never echoed; a
FixVenue refused so says it and stops, rather than hammering the venue."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from engine.errors import VenueUnavailableError
from engine.secrets import Secret, SecretError
from engine.venues.fix import FixSession, Message, Role, SessionConfig, SessionStatus, Tag
from engine.venues.fix.codec import BadMessage, FixDecoder, mask_secrets
from engine.venues.fix.session import BAD_CREDENTIALS
from engine.venues.fix.store import SessionStore
from engine.venues.fixio.server import FixVenueServer
from engine.venues.fixio.venue import BadCredentialsError, FixVenue
from engine.venues.sim.exchange import SimulatedExchange
from engine.clock import VirtualClock
from tests.fix_venue_helpers import WAIT, NetLoop, wait_for
from tests.test_fix_session import T0

RIGHT = "pw-Right-7731"
WRONG = "pw-Wrong-5519"


def pair(desk_password: str | None, venue_password: str | None, store: SessionStore | None = None):
    desk = FixSession(SessionConfig("DESK", "VENUE", password=Secret(desk_password) if desk_password else None),
                      Role.INITIATOR)
    venue = FixSession(SessionConfig("VENUE", password=Secret(venue_password) if venue_password else None),
                       Role.ACCEPTOR, store_for=(lambda comp_id: store) if store is not None else None)
    logon = desk.connection_made(T0).data
    venue.connection_made(T0)
    answer = venue.receive(logon, T0)
    back = desk.receive(answer.data, T0)
    return desk, venue, logon, answer, back


def decoded(data: bytes) -> list[Message]:
    decoder = FixDecoder()
    decoder.feed(data)
    return [m for m in decoder if isinstance(m, Message)]


def test_the_logon_carries_the_password_and_the_acceptor_takes_it() -> None:
    desk, venue, logon, answer, _ = pair(RIGHT, RIGHT)
    [sent] = decoded(logon)
    assert sent.msg_type == "A" and sent.get(Tag.Password) == RIGHT
    assert desk.status is venue.status is SessionStatus.ACTIVE
    # ...and the acceptor's answer does not send it back.
    assert RIGHT.encode() not in answer.data


@pytest.mark.parametrize("sent", [WRONG, None, RIGHT + "x", RIGHT[:-1]])
def test_a_wrong_or_missing_password_is_refused_without_echo_and_closed(sent: str | None) -> None:
    store = SessionStore(40, 30)
    desk, venue, _, answer, back = pair(sent, RIGHT, store)
    [logout] = decoded(answer.data)
    assert logout.msg_type == "5" and logout.get(Tag.Text) == BAD_CREDENTIALS
    assert logout.seq_num == 1  # a throwaway number: the counterparty's own are not touched
    assert (store.next_outgoing, store.next_incoming) == (40, 30)
    assert venue.status is SessionStatus.CLOSED and desk.status is SessionStatus.CLOSED
    assert [e.text for e in answer.events if e.kind == "closed"] == ["Logon from 'DESK' refused: bad credentials"]
    assert [e.text for e in back.events if e.kind == "closed"] == [BAD_CREDENTIALS]
    for text in [e.text for e in answer.events + back.events] + [answer.data.decode("latin-1")]:
        assert WRONG not in text and RIGHT not in text


def test_a_venue_with_no_password_takes_any_logon_as_before() -> None:
    for sent in (None, WRONG):
        desk, venue, *_ = pair(sent, None)
        assert desk.status is venue.status is SessionStatus.ACTIVE


def test_a_logon_is_never_kept_for_resend() -> None:
    desk, *_ = pair(RIGHT, RIGHT)
    assert desk.store.held(1) is None  # the Logon was number 1


def test_reprs_of_messages_mask_credentials() -> None:
    desk = FixSession(SessionConfig("DESK", "VENUE", password=Secret(RIGHT)), Role.INITIATOR)
    data = desk.connection_made(T0).data
    [message] = decoded(data)
    assert "554=***" in repr(message) and RIGHT not in repr(message)
    bad = BadMessage("x", data, garbled=True)
    assert RIGHT not in repr(bad) and b"554=***" in mask_secrets(data)


@pytest.mark.parametrize("password", ["caf\u00e9-pw", "tab\tpw", "soh\x01pw"])
def test_a_fix_password_must_be_printable_ascii_and_the_error_does_not_show_it(password: str) -> None:
    with pytest.raises(SecretError, match="printable ASCII") as caught:
        SessionConfig("DESK", "VENUE", password=Secret(password))
    assert password not in str(caught.value)
    with pytest.raises(SecretError):
        FixVenue("127.0.0.1", 1, password=Secret(password))


def test_a_password_must_be_a_secret_not_a_plain_string() -> None:
    with pytest.raises(Exception, match="password must be a Secret"):
        FixVenue("127.0.0.1", 1, password=RIGHT)  # type: ignore[arg-type]


# -- over TCP: the real server and FixVenue ------------------------------------------------------


@pytest.fixture
def sims() -> dict[str, SimulatedExchange]:
    return {"swift": SimulatedExchange("swift", clock=VirtualClock(), seed=7)}


def start_server(net: NetLoop, sims, password: str | None, port: int = 0) -> FixVenueServer:
    srv = FixVenueServer(sims, port=port, tick_interval=None, password=Secret(password) if password else None)
    net.run(srv.start())
    return srv


@pytest.fixture
def server(net: NetLoop, sims) -> Iterator[FixVenueServer]:
    srv = start_server(net, sims, RIGHT)
    try:
        yield srv
    finally:
        net.run(srv.stop())


def fix_venue(port: int, password: str | None) -> FixVenue:
    return FixVenue("127.0.0.1", port, name="swift", destination="swift", request_timeout=WAIT,
                    connect_timeout=WAIT, password=Secret(password) if password else None)


def test_fix_venue_logs_on_with_the_right_password(server: FixVenueServer) -> None:
    venue = fix_venue(server.port, RIGHT).connect()
    try:
        assert venue.session_info().state == "logged on"
        assert "BTC/USD" in venue.instruments()
    finally:
        venue.close()


@pytest.mark.parametrize("password", [WRONG, None])
def test_fix_venue_refused_says_bad_credentials(server: FixVenueServer, password: str | None,
                                                caplog: pytest.LogCaptureFixture) -> None:
    venue = fix_venue(server.port, password)
    with caplog.at_level(logging.DEBUG):
        with pytest.raises(BadCredentialsError) as caught:
            venue.connect()
    assert str(caught.value) == "venue swift refused our logon: bad credentials"
    assert isinstance(caught.value, VenueUnavailableError)  # what connect() is documented to raise
    info = venue.session_info()
    assert info.state == "closed" and info.last_error == "venue swift refused our logon: bad credentials"
    assert "refused: bad credentials" in caplog.text
    assert WRONG not in caplog.text and RIGHT not in caplog.text


def test_a_reconnect_refused_for_credentials_stops_and_says_so(net: NetLoop, sims) -> None:
    first = start_server(net, sims, RIGHT)
    port = first.port
    venue = fix_venue(port, RIGHT)
    states: list[tuple[str, str]] = []
    venue.add_session_listener(lambda state, detail: states.append((state, detail)))
    venue.connect()
    second: FixVenueServer | None = None
    try:
        net.run(first.stop())
        wait_for(lambda: venue.session_info().state == "reconnecting", "the drop")
        # The venue comes back with another password: one refused Logon, then the desk stops.
        refused: list[logging.LogRecord] = []

        class Count(logging.Handler):
            def emit(self, record: logging.LogRecord) -> None:
                if "bad credentials" in record.getMessage():
                    refused.append(record)

        handler = Count()
        logging.getLogger("engine.venues.fixio.server").addHandler(handler)
        try:
            second = start_server(net, sims, "another-password", port=port)
            wait_for(lambda: venue.session_info().state == "closed", "the refusal")
            info = venue.session_info()
            assert info.last_error == "venue swift refused our logon: bad credentials"
            assert states[-1] == ("closed", "venue swift refused our logon: bad credentials")
            reconnects = info.reconnects
            # A round trip through the server's loop: nothing more came from the venue.
            probe = fix_venue(port, "another-password").connect()
            probe.close()
            assert venue.session_info().reconnects == reconnects and venue.session_info().state == "closed"
            assert len([r for r in refused if r.name == "engine.venues.fixio.server"]) == 1
        finally:
            logging.getLogger("engine.venues.fixio.server").removeHandler(handler)
        with pytest.raises(VenueUnavailableError, match=r"closed \(venue swift refused our logon: bad credentials\)"):
            from engine.models import Order

            venue.submit(Order(id="o-1", symbol="BTC/USD", side="BUY", type="MARKET", quantity=0.01))
    finally:
        venue.close()
        if second is not None:
            net.run(second.stop())


def test_the_password_is_checked_before_anything_else_is_said() -> None:
    """A stranger with a wrong password learns neither which CompIDs are allowed nor that
    one is logged on: every refusal is the same Logout."""
    desk = FixSession(SessionConfig("NOT-ALLOWED", "VENUE", password=Secret(WRONG)), Role.INITIATOR)
    venue = FixSession(SessionConfig("VENUE", password=Secret(RIGHT), allowed_counterparties=frozenset({"DESK"})),
                       Role.ACCEPTOR, store_for=lambda comp_id: "SenderCompID DESK is already logged on")
    venue.connection_made(T0)
    answer = venue.receive(desk.connection_made(T0).data, T0)
    [logout] = decoded(answer.data)
    assert logout.msg_type == "5" and logout.get(Tag.Text) == BAD_CREDENTIALS


@pytest.mark.anyio
async def test_connect_async_refused_raises_bad_credentials(server: FixVenueServer) -> None:
    venue = fix_venue(server.port, WRONG)
    with pytest.raises(BadCredentialsError, match="^venue swift refused our logon: bad credentials$"):
        await venue.connect_async()
    assert venue.session_info().state == "closed"
