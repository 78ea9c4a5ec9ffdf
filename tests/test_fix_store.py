"""FIX session stores: numbers and sent messages kept across connections and restarts,
messages parked for a counterparty that is away, one store per counterparty at an acceptor,
and files that are not ours refused untouched."""

from __future__ import annotations

import sqlite3

import pytest

from engine.errors import ConfigurationError
from engine.venues.fix import FixSession, Message, MsgType, Role, SessionConfig, SessionStatus, encode, utc_timestamp
from engine.venues.fix.store import SessionStore
from engine.venues.fixio.store import SqliteSessionStore
from tests.test_fix_session import ORDER, T0, Pair

ER = [(37, "O1"), (11, "ord-1"), (17, "E1"), (150, "F"), (39, "2"), (55, "BTC-USD"), (54, "1"),
      (151, "0"), (14, "1"), (6, "100")]


def pair_with(desk: SessionStore, venue: SessionStore | None = None, **venue_kw) -> Pair:
    pair = Pair()
    pair.desk = FixSession(SessionConfig("DESK", "VENUE"), Role.INITIATOR, desk)
    pair.venue = FixSession(SessionConfig("VENUE", **venue_kw.pop("config", {})), Role.ACCEPTOR, venue, **venue_kw)
    return pair


def test_the_memory_store_keeps_the_newest_window_and_parks_with_the_next_number() -> None:
    store = SessionStore(resend_window=3)
    for seq in range(1, 6):
        store.save_sent(seq, "8", "20260101-00:00:00.000", [(11, f"o{seq}")])
    assert store.held(2) is None and store.held(3).fields == ((11, "o3"),)
    store.next_outgoing = 6
    assert store.park("8", [(11, "away")], 1_700_000_000.0) == 6
    assert store.next_outgoing == 7 and store.held(6).fields == ((11, "away"),)
    store.reset()
    assert (store.next_outgoing, store.next_incoming, store.held(6)) == (1, 1, None)


def test_sqlite_stores_carry_both_sides_numbers_across_a_restart(tmp_path) -> None:
    desk_db, venue_db = tmp_path / "desk.sqlite", tmp_path / "venue.sqlite"
    pair = pair_with(SqliteSessionStore(desk_db, "DESK->VENUE"), SqliteSessionStore(venue_db, "VENUE->DESK"))
    pair.logon()
    pair.take("desk", pair.desk.send(MsgType.NEW_ORDER_SINGLE, ORDER, pair.now))
    pair.deliver()
    pair.take("venue", pair.venue.send(MsgType.EXECUTION_REPORT, ER, pair.now))
    pair.deliver()
    for side in (pair.desk, pair.venue):
        side.store.close()  # what the driver's last commit leaves on disk
    # Both processes restart.
    again = pair_with(SqliteSessionStore(desk_db, "DESK->VENUE"), SqliteSessionStore(venue_db, "VENUE->DESK"))
    assert (again.desk.store.next_outgoing, again.desk.store.next_incoming) == (3, 3)
    assert (again.venue.store.next_outgoing, again.venue.store.next_incoming) == (3, 3)
    again.logon()
    assert again.wire["desk"][0].seq_num == 3 and again.venue.status is SessionStatus.ACTIVE
    assert "gap" not in again.kinds("desk") + again.kinds("venue")
    # The execution report sent before the restart can still be resent from disk.
    assert again.venue.store.held(2).fields[0] == (37, "O1")


def test_a_report_parked_while_the_desk_was_away_arrives_by_resend_at_its_next_logon(tmp_path) -> None:
    stores: dict[str, SessionStore] = {}

    def store_for(counterparty: str) -> SessionStore:
        return stores.setdefault(counterparty, SqliteSessionStore(tmp_path / "venue.sqlite", f"VENUE->{counterparty}"))

    desk_store = SessionStore()
    pair = pair_with(desk_store, store_for=store_for)
    pair.logon()
    pair.take("desk", pair.desk.send(MsgType.NEW_ORDER_SINGLE, ORDER, pair.now))
    pair.deliver()
    # The desk's connection drops; meanwhile its resting order fills: the venue parks the report.
    stores["DESK"].park("8", ER, pair.now)
    stores["DESK"].commit()
    again = pair_with(desk_store, store_for=store_for)
    again.logon()
    assert "gap" in again.kinds("desk")
    delivered = [m for m in again.received["desk"] if m.msg_type == "8"]
    assert len(delivered) == 1 and delivered[0].poss_dup and delivered[0].get(37) == "O1"
    assert desk_store.next_incoming == stores["DESK"].next_outgoing


def test_an_acceptor_refuses_a_logon_its_store_for_refuses_and_the_initiator_hears_why() -> None:
    pair = pair_with(SessionStore(), store_for=lambda who: f"SenderCompID {who} is already logged on")
    pair.logon()
    assert pair.venue.status is SessionStatus.CLOSED and pair.desk.status is SessionStatus.CLOSED
    assert pair.events["desk"][-1].text == "Logon refused: SenderCompID DESK is already logged on"


def test_a_desk_that_resends_no_application_message_gap_fills_them() -> None:
    desk = SessionStore()
    pair = Pair()
    pair.desk = FixSession(SessionConfig("DESK", "VENUE", resend_application=False), Role.INITIATOR, desk)
    pair.logon()
    pair.take("desk", pair.desk.send(MsgType.NEW_ORDER_SINGLE, ORDER, pair.now))
    pair.deliver(drop_from="desk")  # the order never arrived
    pair.take("desk", pair.desk.send(MsgType.NEW_ORDER_SINGLE, [(11, "ord-2"), *ORDER[1:]], pair.now))
    pair.deliver()
    # The venue saw a gap and asked; the desk answered with a GapFill, not the order.
    assert [m.get(11) for m in pair.received["venue"]] == []
    assert "4" in pair.sent_types("desk") and pair.sent_types("desk").count("D") == 2
    assert pair.venue.store.next_incoming == desk.next_outgoing


def test_a_foreign_database_is_refused_and_left_untouched(tmp_path) -> None:
    path = tmp_path / "other.sqlite"
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE invoices (id INTEGER)")
    db.commit()
    db.close()
    before = path.read_bytes()
    with pytest.raises(ConfigurationError, match="is not an execdesk FIX session store"):
        SqliteSessionStore(path, "VENUE->DESK")
    assert path.read_bytes() == before


@pytest.mark.parametrize("content", [b"not a database at all" * 50, b"SQLite format 3\x00" + b"\xff" * 200])
def test_a_corrupt_file_is_refused_and_left_untouched(tmp_path, content) -> None:
    path = tmp_path / "store.sqlite"
    path.write_bytes(content)
    with pytest.raises(ConfigurationError, match="corrupt, truncated or not a database|not an execdesk"):
        SqliteSessionStore(path, "VENUE->DESK")
    assert path.read_bytes() == content


def test_a_store_from_a_newer_execdesk_is_refused(tmp_path) -> None:
    path = tmp_path / "store.sqlite"
    SqliteSessionStore(path, "VENUE->DESK").close()
    db = sqlite3.connect(path)
    db.execute("PRAGMA user_version=99")
    db.close()
    with pytest.raises(ConfigurationError, match="newer execdesk"):
        SqliteSessionStore(path, "VENUE->DESK")


def test_the_window_is_pruned_on_disk_and_reloaded(tmp_path) -> None:
    path = tmp_path / "store.sqlite"
    store = SqliteSessionStore(path, "K", resend_window=5)
    for seq in range(1, 21):
        store.save_sent(seq, "8", "20260101-00:00:00.000", [(11, f"o{seq}"), (58, "a=b")])
        store.next_outgoing = seq + 1
        store.commit()
    store.close()
    rows = sqlite3.connect(path).execute("SELECT COUNT(*) FROM fix_sent").fetchone()[0]
    assert rows <= 6
    again = SqliteSessionStore(path, "K", resend_window=5)
    assert again.held(20).fields == ((11, "o20"), (58, "a=b")) and again.held(10) is None


def test_when_both_sides_see_a_gap_at_logon_each_answers_the_other_and_it_converges() -> None:
    # Each side sent a message the other never saw (killed between reading and saving).
    desk, venue = SessionStore(5, 4), SessionStore(7, 3)
    desk.save_sent(4, "D", "20260101-00:00:00.000", ORDER)
    venue.save_sent(6, "8", "20260101-00:00:00.000", ER)
    pair = pair_with(desk, venue)
    pair.logon()
    for _ in range(5):
        pair.advance(1.0)
    assert pair.desk.status is SessionStatus.ACTIVE and pair.venue.status is SessionStatus.ACTIVE
    assert pair.sent_types("desk").count("2") == 1 and pair.sent_types("venue").count("2") == 1
    assert desk.next_incoming == venue.next_outgoing and venue.next_incoming == desk.next_outgoing
    assert [m.msg_type for m in pair.received["desk"]] == ["8"] and pair.received["desk"][0].poss_dup
    assert [m.msg_type for m in pair.received["venue"]] == ["D"]


def test_a_resend_request_loop_is_answered_once_a_second() -> None:
    pair = Pair()
    pair.logon()
    for i in range(50):
        pair.take("venue", pair.venue.send(MsgType.EXECUTION_REPORT, ER, pair.now))
    pair.deliver()
    ask = [(7, "1"), (16, "0")]
    for _ in range(20):  # a peer asking for everything, again and again
        pair.take("desk", pair.desk.send("2", ask, pair.now))  # sent as if it were application data
    pair.deliver()
    resent = [m for m in pair.wire["venue"] if isinstance(m, Message) and m.poss_dup and m.msg_type == "8"]
    assert len(resent) == 50  # one answer, not twenty
    pair.advance(1.5)
    pair.take("desk", pair.desk.send("2", ask, pair.now))
    pair.deliver()
    resent = [m for m in pair.wire["venue"] if isinstance(m, Message) and m.poss_dup and m.msg_type == "8"]
    assert len(resent) == 100


def test_an_acceptor_closes_a_connection_that_never_logs_on() -> None:
    venue = FixSession(SessionConfig("VENUE", answer_timeout=10.0), Role.ACCEPTOR)
    venue.connection_made(T0)
    assert venue.next_deadline() == T0 + 10.0
    venue.receive(b"8=FIX.4.4\x01", T0 + 5)  # a byte now and then keeps nothing alive
    out = venue.tick(T0 + 10.0)
    assert venue.status is SessionStatus.CLOSED and out.events[-1].text == "no Logon within 10 s of connecting"


@pytest.mark.parametrize("interval", ["\u00b2", "0", "-1", "99999999999", "9" * 5000, "abc"])
def test_a_logon_heartbeat_interval_that_is_not_1_to_3600_seconds_is_refused(interval) -> None:
    venue = FixSession(SessionConfig("VENUE"), Role.ACCEPTOR)
    venue.connection_made(T0)
    logon = encode("A", "DESK", "VENUE", 1, utc_timestamp(T0), [(98, "0"), (108, interval)])
    out = venue.receive(logon, T0)
    assert venue.status is SessionStatus.CLOSED
    assert out.events[-1].text == f"Logon HeartBtInt {interval!r} is not a number of seconds from 1 to 3600"


def test_a_stored_message_that_is_not_fix_is_refused_as_corrupt(tmp_path) -> None:
    path = tmp_path / "store.sqlite"
    store = SqliteSessionStore(path, "K")
    store.save_sent(1, "8", "20260101-00:00:00.000", [(11, "a")])
    store.next_outgoing = 2
    store.close()
    db = sqlite3.connect(path)
    db.execute("UPDATE fix_sent SET body='x=1'")
    db.commit()
    db.close()
    with pytest.raises(ConfigurationError, match="is corrupt .*'x=1' is not tag=value"):
        SqliteSessionStore(path, "K")


def test_a_logon_with_reset_seq_num_flag_starts_both_sides_again_at_1() -> None:
    desk = SessionStore()
    venue = SessionStore(40, 25)  # numbers from an earlier life the desk no longer has
    venue.save_sent(39, "8", "20260101-00:00:00.000", ER)
    pair = Pair()
    pair.desk = FixSession(SessionConfig("DESK", "VENUE", reset_on_logon=True), Role.INITIATOR, desk)
    pair.venue = FixSession(SessionConfig("VENUE"), Role.ACCEPTOR, venue)
    pair.logon()
    assert pair.desk.status is SessionStatus.ACTIVE and pair.venue.status is SessionStatus.ACTIVE
    logon, answer = pair.wire["desk"][0], pair.wire["venue"][0]
    assert (logon.seq_num, logon.get(141), answer.seq_num, answer.get(141)) == (1, "Y", 1, "Y")
    assert (desk.next_outgoing, desk.next_incoming, venue.next_outgoing, venue.next_incoming) == (2, 2, 2, 2)
    assert venue.held(39) is None and "gap" not in pair.kinds("desk") + pair.kinds("venue")


def test_a_possible_duplicate_without_its_original_sending_time_is_rejected_and_not_acted_on() -> None:
    pair = Pair()
    pair.logon()
    seq = pair.desk.store.next_outgoing
    raw = encode("D", "DESK", "VENUE", seq, utc_timestamp(pair.now), ORDER, header=[(43, "Y")])
    pair.take("venue", pair.venue.receive(raw, pair.now))
    pair.desk.store.next_outgoing = seq + 1  # as if the desk had sent it
    pair.deliver()
    assert pair.received["venue"] == []
    [reject] = [m for m in pair.wire["venue"] if isinstance(m, Message) and m.msg_type == "3"]
    assert (reject.get(45), reject.get(371), reject.get(373)) == (str(seq), "122", "1")
    assert pair.venue.store.next_incoming == seq + 1 and pair.venue.status is SessionStatus.ACTIVE
