"""The FIX session layer: an initiator and an acceptor wired back to back in memory on a
fake clock (the bytes one returns are the bytes the other receives; no socket)."""

from __future__ import annotations

import ast
from dataclasses import replace
from pathlib import Path

from engine.venues.fix import (
    FixSession,
    Message,
    MsgType,
    Output,
    Role,
    SequenceState,
    SessionConfig,
    SessionRejectReason,
    SessionStatus,
    encode,
    utc_timestamp,
)
from engine.venues.fix.codec import FixDecoder

T0 = 1_700_000_000.0
ORDER = [(11, "ord-1"), (55, "BTC-USD"), (54, "1"), (38, "1"), (40, "2"), (44, "100")]


class Pair:
    """Two sessions and a fake clock; `deliver` carries what each sent to the other until quiet.
    Every byte each side sends is also decoded into `wire[side]` for assertions."""

    def __init__(self, heart_bt_int: int = 30, desk_state=None, venue_state=None, allowed=None) -> None:
        self.now = T0
        self.desk = FixSession(SessionConfig("DESK", "VENUE", heart_bt_int=heart_bt_int), Role.INITIATOR, desk_state)
        self.venue = FixSession(SessionConfig("VENUE", allowed_counterparties=allowed), Role.ACCEPTOR, venue_state)
        self.received = {"desk": [], "venue": []}
        self.events = {"desk": [], "venue": []}
        self.wire = {"desk": [], "venue": []}
        self._decoders = {"desk": FixDecoder(), "venue": FixDecoder()}
        self.pending = {"desk": b"", "venue": b""}

    def take(self, side: str, out: Output) -> None:
        self.received[side] += out.messages
        self.events[side] += out.events
        if out.data:
            self._decoders[side].feed(out.data)
            self.wire[side] += list(self._decoders[side])
            self.pending[side] += out.data

    def deliver(self, drop_from=None) -> None:
        """Pass bytes both ways until nobody has anything to send. `drop_from` ("desk" or
        "venue") loses what that side sends in this first round (a lost packet)."""
        first = True
        rounds = 0
        while self.pending["desk"] or self.pending["venue"]:
            rounds += 1
            assert rounds < 1_000, "the sessions never went quiet (a message storm)"
            for side, other in (("desk", "venue"), ("venue", "desk")):
                data, self.pending[side] = self.pending[side], b""
                if data and not (first and drop_from == side):
                    self.take(other, getattr(self, other).receive(data, self.now))
            first = False

    def logon(self) -> None:
        self.take("desk", self.desk.connection_made(self.now))
        self.take("venue", self.venue.connection_made(self.now))
        self.deliver()

    def advance(self, seconds: float) -> None:
        self.now += seconds
        self.take("desk", self.desk.tick(self.now))
        self.take("venue", self.venue.tick(self.now))
        self.deliver()

    def sent_types(self, side: str) -> list[str]:
        return [m.msg_type for m in self.wire[side] if isinstance(m, Message)]

    def kinds(self, side: str) -> list[str]:
        return [e.kind for e in self.events[side]]


def test_logon_both_ways_and_the_acceptor_learns_who_logged_on() -> None:
    pair = Pair(heart_bt_int=10)
    pair.logon()
    assert pair.desk.status is SessionStatus.ACTIVE and pair.venue.status is SessionStatus.ACTIVE
    assert pair.venue.target_comp_id == "DESK" and pair.venue.heart_bt_int == 10
    assert pair.sent_types("desk") == ["A"] and pair.sent_types("venue") == ["A"]
    assert pair.wire["venue"][0].get(108) == "10"
    assert pair.desk.state == SequenceState(next_outgoing=2, next_incoming=2)


def test_a_strict_acceptor_closes_on_an_unlisted_sender() -> None:
    pair = Pair(allowed=frozenset({"SOMEONE"}))
    pair.logon()
    assert pair.venue.status is SessionStatus.CLOSED
    assert pair.sent_types("venue") == []
    assert "not an allowed SenderCompID" in pair.events["venue"][-1].text


def test_application_messages_flow_with_their_sequence_numbers() -> None:
    pair = Pair()
    pair.logon()
    pair.take("desk", pair.desk.send(MsgType.NEW_ORDER_SINGLE, ORDER, pair.now))
    pair.deliver()
    [order] = pair.received["venue"]
    assert order.msg_type == "D" and order.get(11) == "ord-1" and order.seq_num == 2
    assert pair.venue.state.next_incoming == 3


def test_heartbeat_when_idle_and_test_request_when_silent() -> None:
    pair = Pair(heart_bt_int=10)
    pair.logon()
    pair.advance(10)
    assert pair.sent_types("desk")[-1] == "0" and pair.sent_types("venue")[-1] == "0"
    # The venue goes deaf and dumb: nothing it would send arrives.
    pair.now += 12.5
    pair.take("desk", pair.desk.tick(pair.now))
    assert pair.sent_types("desk")[-1] == "1"
    assert "test_request" in pair.kinds("desk")
    # The venue answers the TestRequest: the desk stays logged on and clears it.
    pair.deliver()
    heartbeat = pair.wire["venue"][-1]
    assert heartbeat.msg_type == "0" and heartbeat.get(112) == "TEST1"
    pair.now += 12.5
    pair.take("desk", pair.desk.tick(pair.now))
    assert pair.desk.status is SessionStatus.ACTIVE


def test_the_acceptors_margin_follows_the_interval_agreed_at_logon() -> None:
    """The venue is configured for 30 s, the desk logs on asking 2 s: a silent desk is asked
    after 2 s + a fifth of 2, not after 2 s + a fifth of 30."""
    pair = Pair(heart_bt_int=2)
    pair.logon()
    assert pair.venue.heart_bt_int == 2
    pair.now += 2.5  # the desk goes silent: nothing it would send arrives
    pair.take("venue", pair.venue.tick(pair.now))
    assert pair.sent_types("venue")[-1] == "1" and "test_request" in pair.kinds("venue")


def test_an_unanswered_test_request_ends_the_session_with_a_logout() -> None:
    pair = Pair(heart_bt_int=10)
    pair.logon()
    pair.now += 12
    pair.take("desk", pair.desk.tick(pair.now))
    assert pair.sent_types("desk")[-1] == "1" and "test_request" in pair.kinds("desk")
    pair.pending["desk"] = b""  # lost
    pair.now += 12
    pair.take("desk", pair.desk.tick(pair.now))
    assert pair.desk.status is SessionStatus.CLOSED
    logout = pair.wire["desk"][-1]
    assert logout.msg_type == "5" and "TestRequest TEST1 unanswered" in logout.get(58)


def test_next_deadline_tells_the_driver_when_to_tick() -> None:
    pair = Pair(heart_bt_int=10)
    pair.logon()
    assert pair.desk.next_deadline() == T0 + 10
    pair.advance(10)
    assert pair.desk.next_deadline() == T0 + 20


def test_a_gap_is_resent_and_admin_messages_are_gap_filled() -> None:
    pair = Pair()
    pair.logon()
    pair.take("desk", pair.desk.send(MsgType.NEW_ORDER_SINGLE, ORDER, pair.now))  # seq 2
    pair.take("desk", pair.desk.tick(pair.now + 30))  # heartbeat, seq 3
    pair.now += 30
    pair.deliver(drop_from="desk")  # both lost
    second = [(11, "ord-2")] + ORDER[1:]
    pair.take("desk", pair.desk.send(MsgType.NEW_ORDER_SINGLE, second, pair.now))  # seq 4
    pair.deliver()
    assert "gap" in pair.kinds("venue")
    request = [m for m in pair.wire["venue"] if m.msg_type == "2"][0]
    assert (request.get(7), request.get(16)) == ("2", "0")
    resent = [m for m in pair.wire["desk"] if m.poss_dup]
    assert [(m.msg_type, m.seq_num) for m in resent] == [("D", 2), ("4", 3), ("D", 4)]
    assert resent[1].get(123) == "Y" and resent[1].get(36) == "4"
    assert resent[0].get(122) == utc_timestamp(T0)
    assert [m.get(11) for m in pair.received["venue"]] == ["ord-1", "ord-2"]
    assert pair.venue.state.next_incoming == 5


def test_a_sequence_number_too_low_without_possdup_ends_the_session() -> None:
    pair = Pair()
    pair.logon()
    stale = encode("D", "DESK", "VENUE", 1, utc_timestamp(pair.now), ORDER)
    pair.take("venue", pair.venue.receive(stale, pair.now))
    assert pair.venue.status is SessionStatus.CLOSED
    logout = pair.wire["venue"][-1]
    assert logout.msg_type == "5" and logout.get(58) == "MsgSeqNum too low, expecting 2 but received 1"
    assert pair.received["venue"] == []


def test_a_low_sequence_number_with_possdup_is_ignored() -> None:
    pair = Pair()
    pair.logon()
    dup = encode("D", "DESK", "VENUE", 1, utc_timestamp(pair.now), ORDER, header=[(43, "Y"), (122, utc_timestamp(T0))])
    pair.take("venue", pair.venue.receive(dup, pair.now))
    assert pair.venue.status is SessionStatus.ACTIVE and pair.received["venue"] == []


def test_a_malformed_message_is_rejected_and_its_number_consumed() -> None:
    pair = Pair()
    pair.logon()
    body = "35=D\x0149=DESK\x0156=VENUE\x0134=2\x0152=x\x0111=\x01".encode()
    head = b"8=FIX.4.4\x019=%d\x01" % len(body)
    bad = head + body + b"10=%03d\x01" % (sum(head + body) % 256)
    pair.take("venue", pair.venue.receive(bad, pair.now))
    reject = pair.wire["venue"][-1]
    assert reject.msg_type == "3"
    assert (reject.get(45), reject.get(371), reject.get(372)) == ("2", "11", "D")
    assert reject.get(373) == str(int(SessionRejectReason.TAG_SPECIFIED_WITHOUT_A_VALUE))
    assert pair.venue.state.next_incoming == 3 and pair.venue.status is SessionStatus.ACTIVE


def test_a_garbled_message_is_ignored_and_its_gap_resent() -> None:
    pair = Pair()
    pair.logon()
    pair.take("desk", pair.desk.send(MsgType.NEW_ORDER_SINGLE, ORDER, pair.now))
    data, pair.pending["desk"] = pair.pending["desk"], b""
    pair.take("venue", pair.venue.receive(data[:-3] + b"99\x01", pair.now))  # checksum broken
    assert "garbled" in pair.kinds("venue") and pair.venue.state.next_incoming == 2
    assert pair.sent_types("venue") == ["A"]  # no Reject for a garbled frame
    pair.take("desk", pair.desk.tick(pair.now + 30))  # heartbeat 3 reveals the gap
    pair.now += 30
    pair.deliver()
    assert [m.get(11) for m in pair.received["venue"]] == ["ord-1"]


def test_logout_both_ways() -> None:
    pair = Pair()
    pair.logon()
    pair.take("desk", pair.desk.logout(pair.now, "end of day"))
    pair.deliver()
    assert pair.desk.status is SessionStatus.CLOSED and pair.venue.status is SessionStatus.CLOSED
    assert pair.sent_types("desk")[-1] == "5" and pair.sent_types("venue")[-1] == "5"
    assert pair.events["venue"][-1].text == "logout: end of day"


def test_sequence_numbers_survive_a_restart_of_either_side() -> None:
    pair = Pair()
    pair.logon()
    pair.take("desk", pair.desk.send(MsgType.NEW_ORDER_SINGLE, ORDER, pair.now))
    pair.deliver()
    saved_desk, saved_venue = replace(pair.desk.state), replace(pair.venue.state)
    assert saved_desk == SequenceState(next_outgoing=3, next_incoming=2)
    again = Pair(desk_state=saved_desk, venue_state=saved_venue)
    again.logon()
    logon = again.wire["desk"][0]
    assert logon.seq_num == 3 and again.venue.status is SessionStatus.ACTIVE
    assert again.venue.state == SequenceState(next_outgoing=3, next_incoming=4)


def test_the_fix_package_imports_nothing_of_the_engine_but_errors_models_and_secrets() -> None:
    package = Path(__file__).resolve().parents[1] / "engine" / "venues" / "fix"
    for path in package.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            for name in names:
                if name.startswith("engine"):
                    assert name in ("engine.errors", "engine.models", "engine.secrets") or name.startswith("engine.venues.fix"), (path.name, name)
                assert name.split(".")[0] not in ("asyncio", "socket", "threading", "time.sleep"), (path.name, name)
