"""The FIX 4.4 session layer, sans-IO: bytes and the clock's time in; bytes to send,
application messages and session events out. No socket, no sleep, no task.

Rules (FIX 4.4 Vol. 2, "Session protocol"):

- The initiator sends Logon (A) first; the acceptor answers with a Logon carrying the
  same HeartBtInt (108). Before Logon, anything else ends the connection.
- Every message carries MsgSeqNum (34): ours count up from the store's `next_outgoing`;
  theirs must equal its `next_incoming` (`engine.venues.fix.store`: the numbers and the
  sent messages live there, across connections and, with a persistent store, restarts).
  * higher: a gap; we send one ResendRequest (2) from the expected number to infinity
    (EndSeqNo 0) and drop what arrives ahead of it: the resend brings it again, in order;
  * lower without PossDupFlag (43=Y): unrecoverable; we send Logout (5) saying so and close;
  * lower with PossDupFlag: a duplicate of something already processed, ignored;
  * SequenceReset (4) in reset mode (no GapFillFlag) sets the expected number whatever its
    own MsgSeqNum; a reset that would lower it is rejected.
- A ResendRequest is answered with the application messages still held (PossDupFlag=Y,
  OrigSendingTime, their original numbers) and a SequenceReset-GapFill over every run of
  administrative messages (never resent) and of messages no longer held.
- Heartbeat (0) when we sent nothing for HeartBtInt seconds; TestRequest (1) when we heard
  nothing for HeartBtInt + margin; Logout when that TestRequest goes unanswered as long again.
- A garbled frame (codec) is ignored and its number not consumed; a malformed one is
  answered with Reject (3) carrying RefSeqNum, RefTagID, RefMsgType and
  SessionRejectReason, and its number is consumed. A message without a readable MsgSeqNum
  cannot be placed in the sequence: Logout.
- A message from the wrong SenderCompID/TargetCompID: Reject (CompID problem) and Logout.
- Credentials: an initiator with a `password` sends it as Password(554) on its Logon; an
  acceptor with one refuses a Logon whose Password is missing or different (compared in
  constant time) with a Logout saying only `BAD_CREDENTIALS`, on a throwaway number
  (the counterparty's numbers and store are not touched, nor is it told whether that
  CompID is logged on elsewhere), and closes. What was sent is never echoed, logged or
  kept: a Logon is administrative, so no store holds it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from enum import Enum

from engine.venues.fix.codec import BadMessage, FixDecoder, FieldValue, Message, encode, utc_timestamp
from engine.secrets import Secret, SecretError
from engine.venues.fix.store import SessionStore
from engine.venues.fix.tags import MsgType, SessionRejectReason, Tag

#: What an acceptor asks for a counterparty's store at its Logon: the store, or a text
#: saying why that counterparty may not log on now (the session logs out with it).
StoreFor = Callable[[str], "SessionStore | str"]


#: The Text of the Logout that refuses a Logon for its credentials; an initiator that reads
#: it knows retrying with the same password is useless.
BAD_CREDENTIALS = "logon refused: bad credentials"

#: The longest heartbeat interval an acceptor agrees to: a longer one would turn off the
#: detection of a dead peer for hours.
MAX_HEART_BT_INT = 3600


class Role(Enum):
    INITIATOR = "initiator"
    ACCEPTOR = "acceptor"


class SessionStatus(Enum):
    CONNECTED = "connected"  # transport up, no Logon yet
    LOGON_SENT = "logon sent"
    ACTIVE = "logged on"
    LOGOUT_SENT = "logout sent"
    CLOSED = "closed"  # the caller should close the transport


@dataclass(slots=True)
class SequenceState:
    """A session's two numbers, as a value (`FixSession.state`); the store keeps them live."""

    next_outgoing: int = 1
    next_incoming: int = 1


@dataclass(slots=True)
class SessionConfig:
    sender_comp_id: str
    #: The counterparty; None on an acceptor means "whoever logs on".
    target_comp_id: str | None = None
    heart_bt_int: int = 30
    #: Added to HeartBtInt before a silence counts as one (FIX leaves it to the engine;
    #: a fifth of the interval, as is common, absorbs transmission delay).
    test_request_margin: float | None = None
    #: Acceptor: the SenderCompIDs allowed to log on (None: any).
    allowed_counterparties: frozenset[str] | None = None
    #: Seconds to wait for the answer to our Logon or Logout before closing anyway.
    answer_timeout: float = 10.0
    #: Application messages kept for resending (oldest dropped first, then gap-filled).
    resend_window: int = 10_000
    #: False: a ResendRequest is answered with GapFill only. An order desk sets it, so an
    #: order sent before a drop is never sent again blindly (it is reconciled by status).
    resend_application: bool = True
    #: Initiator: send ResetSeqNumFlag(141)=Y on the Logon, both sides starting again at 1
    #: (a counterparty with no numbers of its own to offer: a first connection, a lost store).
    reset_on_logon: bool = False
    #: Initiator: sent as Password(554) on the Logon. Acceptor: the password every Logon
    #: must carry (None: none asked). Printable ASCII (see `check_fix_password`).
    password: Secret | None = None

    def __post_init__(self) -> None:
        if self.password is not None:
            check_fix_password(self.password)

    def margin(self, heart_bt_int: float) -> float:
        """The margin for the interval in force (the one agreed at Logon)."""
        return heart_bt_int * 0.2 if self.test_request_margin is None else self.test_request_margin


@dataclass(frozen=True, slots=True)
class SessionEvent:
    """Something the session did or saw that its owner may log or show: `kind` is one of
    logged_on, logged_out, garbled, rejected_theirs, rejected_ours, gap, test_request,
    resend, closed."""

    kind: str
    text: str = ""
    seq_num: int | None = None


@dataclass(slots=True)
class Output:
    """What one call produced: bytes to write, application messages, events."""

    data: bytes = b""
    messages: list[Message] = field(default_factory=list)
    events: list[SessionEvent] = field(default_factory=list)


class FixSession:
    """`store` keeps the sequence numbers and sent messages (a fresh in-memory one if None;
    a `SequenceState` starts one at those numbers). An acceptor may instead be given
    `store_for`, asked at the Logon for the counterparty's store, so one store per
    counterparty lives across its connections."""

    def __init__(
        self,
        config: SessionConfig,
        role: Role,
        store: SessionStore | SequenceState | None = None,
        *,
        store_for: StoreFor | None = None,
    ) -> None:
        self.config = config
        self.role = role
        if isinstance(store, SequenceState):
            store = SessionStore(store.next_outgoing, store.next_incoming, resend_window=config.resend_window)
        self.store: SessionStore = store if store is not None else SessionStore(resend_window=config.resend_window)
        self._store_for = store_for if role is Role.ACCEPTOR else None
        self.status = SessionStatus.CONNECTED
        self.heart_bt_int = config.heart_bt_int
        self.target_comp_id = config.target_comp_id
        self._decoder = FixDecoder()
        self._out: list[bytes] = []
        self._messages: list[Message] = []
        self._events: list[SessionEvent] = []
        self._last_sent = 0.0
        self._last_heard = 0.0
        self._test_request_sent: float | None = None
        self._test_request_id = 0
        self._answer_deadline: float | None = None
        self._resend_requested_to: int | None = None  # their highest number seen since we asked
        self._resend_requested_at = 0.0
        self._reset_answer = False  # the Logon we answer says ResetSeqNumFlag=Y
        self._resend_answered_at: float | None = None

    @property
    def state(self) -> SequenceState:
        """The sequence numbers now (a copy)."""
        return SequenceState(self.store.next_outgoing, self.store.next_incoming)

    # -- the caller's calls ---------------------------------------------------------------

    def connection_made(self, now: float) -> Output:
        """The transport is up: an initiator sends its Logon; an acceptor waits for one,
        `answer_timeout` at most (a connection that never logs on is closed)."""
        self._last_heard = self._last_sent = now
        self._answer_deadline = now + self.config.answer_timeout
        if self.role is Role.INITIATOR:
            if self.target_comp_id is None:
                raise ValueError("an initiator needs target_comp_id")
            logon: list[tuple[int, FieldValue]] = [(Tag.EncryptMethod, "0"), (Tag.HeartBtInt, str(self.heart_bt_int))]
            if self.config.reset_on_logon:
                self.store.reset()
                logon.append((Tag.ResetSeqNumFlag, "Y"))
            if self.config.password is not None:
                logon.append((Tag.Password, self.config.password.reveal()))
            self._send_admin(MsgType.LOGON, now, logon)
            self.status = SessionStatus.LOGON_SENT
            self._answer_deadline = now + self.config.answer_timeout
        return self._flush()

    def send(self, msg_type: str, body: Iterable[tuple[int, FieldValue]], now: float) -> Output:
        """Send one application message; it is kept for resending."""
        if self.status is not SessionStatus.ACTIVE:
            raise RuntimeError(f"cannot send {msg_type}: the session is {self.status.value}")
        fields = body if body.__class__ is list else list(body)
        store = self.store
        seq = store.next_outgoing
        sending_time = utc_timestamp(now)
        data = encode(msg_type, self.config.sender_comp_id, self.target_comp_id, seq, sending_time, fields)  # type: ignore[arg-type]
        store.next_outgoing = seq + 1
        self._last_sent = now
        kind = msg_type.value if isinstance(msg_type, MsgType) else msg_type
        store.save_sent(seq, kind, sending_time, fields)
        if self._out:  # not expected (nothing is left between calls), but never reorder
            self._out.append(data)
            return self._flush()
        return Output(data)

    def logout(self, now: float, text: str = "") -> Output:
        if self.status is SessionStatus.ACTIVE:
            self._send_admin(MsgType.LOGOUT, now, [(Tag.Text, text)] if text else [])
            self.status = SessionStatus.LOGOUT_SENT
            self._answer_deadline = now + self.config.answer_timeout
        else:
            self._close("logout before logon")
        return self._flush()

    def next_deadline(self) -> float | None:
        """The time `tick` has something to do next (None: nothing until bytes arrive)."""
        if self.status is SessionStatus.CLOSED:
            return None
        if self.status in (SessionStatus.CONNECTED, SessionStatus.LOGON_SENT, SessionStatus.LOGOUT_SENT):
            return self._answer_deadline
        if self.status is not SessionStatus.ACTIVE:
            return None
        silence = self.heart_bt_int + self.config.margin(self.heart_bt_int)
        hear_by = (self._test_request_sent + silence) if self._test_request_sent is not None else self._last_heard + silence
        return min(self._last_sent + self.heart_bt_int, hear_by)

    def tick(self, now: float) -> Output:
        """Run the timers: heartbeat, test request, unanswered test request, Logon/Logout timeout."""
        status = self.status
        if status is SessionStatus.CONNECTED:
            if self._answer_deadline is not None and now >= self._answer_deadline:
                self._close(f"no Logon within {self.config.answer_timeout:g} s of connecting")
        elif status in (SessionStatus.LOGON_SENT, SessionStatus.LOGOUT_SENT):
            if self._answer_deadline is not None and now >= self._answer_deadline:
                self._close(f"no answer to our {'Logon' if status is SessionStatus.LOGON_SENT else 'Logout'}")
        elif status is SessionStatus.ACTIVE:
            silence = self.heart_bt_int + self.config.margin(self.heart_bt_int)
            if self._test_request_sent is not None:
                if now >= self._test_request_sent + silence:
                    self._logout_and_close(now, f"TestRequest TEST{self._test_request_id} unanswered")
                    return self._flush()
            elif now >= self._last_heard + silence:
                self._test_request_id += 1
                self._test_request_sent = now
                self._send_admin(MsgType.TEST_REQUEST, now, [(Tag.TestReqID, f"TEST{self._test_request_id}")])
                self._events.append(SessionEvent("test_request", f"nothing heard for {now - self._last_heard:g} s"))
            if now >= self._last_sent + self.heart_bt_int:
                self._send_admin(MsgType.HEARTBEAT, now, [])
        return self._flush()

    def receive(self, data: bytes, now: float) -> Output:
        """Bytes from the transport, in any chunking."""
        if self.status is SessionStatus.CLOSED:
            return Output()
        self._decoder.feed(data)
        for item in self._decoder:
            if self.status is SessionStatus.CLOSED:
                break
            if isinstance(item, BadMessage):
                self._on_bad(item, now)
            else:
                self._last_heard = now
                self._on_message(item, now)
        return self._flush()

    # -- receiving ------------------------------------------------------------------------

    def _on_bad(self, bad: BadMessage, now: float) -> None:
        if bad.garbled:
            self._events.append(SessionEvent("garbled", bad.text))
            return
        self._last_heard = now
        if self.status not in (SessionStatus.ACTIVE, SessionStatus.LOGOUT_SENT):
            self._close(f"malformed message before Logon: {bad.text}")
            return
        if bad.seq_num is None:
            self._logout_and_close(now, f"MsgSeqNum(34) missing or unreadable: {bad.text}")
            return
        body: list[tuple[int, FieldValue]] = [(Tag.RefSeqNum, str(bad.seq_num))]
        if bad.ref_tag is not None:
            body.append((Tag.RefTagID, str(bad.ref_tag)))
        if bad.msg_type:
            body.append((Tag.RefMsgType, bad.msg_type))
        body += [(Tag.SessionRejectReason, str(int(bad.reject_reason))), (Tag.Text, bad.text)]
        self._send_admin(MsgType.REJECT, now, body)
        self._events.append(SessionEvent("rejected_theirs", bad.text, bad.seq_num))
        if bad.seq_num == self.store.next_incoming:
            self.store.next_incoming += 1
        elif bad.seq_num > self.store.next_incoming:
            self._request_resend(now, bad.seq_num)

    def _on_message(self, msg: Message, now: float) -> None:
        mtype = msg.msg_type
        if self.status in (SessionStatus.CONNECTED, SessionStatus.LOGON_SENT) and mtype != "A":
            if mtype == "5" and self.status is SessionStatus.LOGON_SENT:
                text = msg.get(Tag.Text, "")
                self._events.append(SessionEvent("logged_out", text, msg.seq_num))
                self._close(text if text == BAD_CREDENTIALS else f"Logon refused: {text}" if text else "Logon refused")
                return
            self._close(f"first message is {mtype}, not Logon")
            return
        if mtype == "A" and not self._accept_logon(msg, now):
            return
        if msg.sender != self.target_comp_id or msg.target != self.config.sender_comp_id:
            self._send_admin(MsgType.REJECT, now, [
                (Tag.RefSeqNum, str(msg.seq_num)), (Tag.RefMsgType, mtype),
                (Tag.SessionRejectReason, str(int(SessionRejectReason.COMPID_PROBLEM))),
                (Tag.Text, f"CompIDs {msg.sender}->{msg.target}, expected {self.target_comp_id}->{self.config.sender_comp_id}"),
            ])
            self._logout_and_close(now, "CompID problem")
            return
        seq = msg.seq_num
        expected = self.store.next_incoming
        if mtype == "4" and msg.get(Tag.GapFillFlag) != "Y":
            self._sequence_reset(msg, now, gap_fill=False)
            return
        if seq < expected:
            if msg.poss_dup:
                return  # already processed
            self._logout_and_close(now, f"MsgSeqNum too low, expecting {expected} but received {seq}")
            return
        if seq > expected:
            if mtype == "A":
                self._logged_on(now)
            if mtype == "5":
                self._on_logout(msg, now)
                return
            if mtype == "2":
                # Answered even ahead of the gap (FIX 4.4 Vol. 2): when both sides see a
                # gap at the same Logon, each waiting for the other's resend first would
                # stall them both, each asking again for every number it sees.
                self._answer_resend(msg, now)
            self._request_resend(now, seq)
            return
        self.store.next_incoming = seq + 1
        if self._resend_requested_to is not None and seq >= self._resend_requested_to:
            self._resend_requested_to = None  # the gap we asked about is closed
        if msg.poss_dup and mtype not in ("4", "A") and Tag.OrigSendingTime not in msg:
            # A possible duplicate must say when it was first sent (FIX 4.4 Vol. 2); one
            # that does not is refused, its number consumed, its content not acted on.
            self._send_admin(MsgType.REJECT, now, [
                (Tag.RefSeqNum, str(seq)), (Tag.RefTagID, str(int(Tag.OrigSendingTime))), (Tag.RefMsgType, mtype),
                (Tag.SessionRejectReason, str(int(SessionRejectReason.REQUIRED_TAG_MISSING))),
                (Tag.Text, "PossDupFlag(43)=Y without OrigSendingTime(122)"),
            ])
            self._events.append(SessionEvent("rejected_theirs", "PossDupFlag(43)=Y without OrigSendingTime(122)", seq))
            return
        if mtype == "A":
            self._logged_on(now)
        elif mtype == "0":
            if self._test_request_sent is not None and msg.get(Tag.TestReqID) == f"TEST{self._test_request_id}":
                self._test_request_sent = None
        elif mtype == "1":
            self._send_admin(MsgType.HEARTBEAT, now, [(Tag.TestReqID, msg.get(Tag.TestReqID, ""))] if Tag.TestReqID in msg else [])
        elif mtype == "2":
            self._answer_resend(msg, now)
        elif mtype == "3":
            self._events.append(SessionEvent("rejected_ours", msg.get(Tag.Text, ""), _int(msg.get(Tag.RefSeqNum))))
        elif mtype == "4":
            self._sequence_reset(msg, now, gap_fill=True)
        elif mtype == "5":
            self._on_logout(msg, now)
        else:
            self._messages.append(msg)

    def _accept_logon(self, msg: Message, now: float) -> bool:
        if self.role is Role.ACCEPTOR and self.status is SessionStatus.CONNECTED:
            password = self.config.password
            if password is not None and not password.matches(msg.get_bytes(Tag.Password)):
                # First: a stranger learns nothing else (which CompIDs are allowed or logged
                # on), and the counterparty's store and numbers stay as they are.
                self._write(encode(MsgType.LOGOUT, self.config.sender_comp_id, msg.sender, 1,
                                   utc_timestamp(now), [(Tag.Text, BAD_CREDENTIALS)]), now)
                self._close(f"Logon from {msg.sender!r} refused: bad credentials")
                return False
            allowed = self.config.allowed_counterparties
            if allowed is not None and msg.sender not in allowed:
                self._close(f"Logon from {msg.sender!r}, not an allowed SenderCompID")
                return False
            if msg.target != self.config.sender_comp_id:
                self._close(f"Logon addressed to {msg.target!r}, we are {self.config.sender_comp_id!r}")
                return False
            if self.target_comp_id is None:
                self.target_comp_id = msg.sender
            if self._store_for is not None:
                store = self._store_for(msg.sender)
                if isinstance(store, str):
                    # Told on a throwaway number: the counterparty's own numbers belong to
                    # its live session, which this must not disturb.
                    self._write(encode(MsgType.LOGOUT, self.config.sender_comp_id, msg.sender, 1,
                                       utc_timestamp(now), [(Tag.Text, store)]), now)
                    self._close(f"Logon from {msg.sender!r} refused: {store}")
                    return False
                self.store = store
            interval = _int(msg.get(Tag.HeartBtInt))
            if interval is None or not 0 < interval <= MAX_HEART_BT_INT:
                self._close(f"Logon HeartBtInt {msg.get(Tag.HeartBtInt)!r} is not a number of seconds "
                            f"from 1 to {MAX_HEART_BT_INT}")
                return False
            self.heart_bt_int = interval
            if msg.get(Tag.ResetSeqNumFlag) == "Y":
                if msg.seq_num != 1:
                    self._close(f"Logon with ResetSeqNumFlag(141)=Y must be MsgSeqNum 1, not {msg.seq_num}")
                    return False
                # The counterparty starts again at 1, and asks us to: what it was owed is
                # gone with its numbers (it reconciles by status).
                self.store.reset()
                self._reset_answer = True
        return True

    def _logged_on(self, now: float) -> None:
        if self.role is Role.ACCEPTOR and self.status is SessionStatus.CONNECTED:
            answer: list[tuple[int, FieldValue]] = [(Tag.EncryptMethod, "0"), (Tag.HeartBtInt, str(self.heart_bt_int))]
            if self._reset_answer:
                answer.append((Tag.ResetSeqNumFlag, "Y"))
            self._send_admin(MsgType.LOGON, now, answer)
        if self.status is not SessionStatus.ACTIVE:
            self.status = SessionStatus.ACTIVE
            self._answer_deadline = None
            self._events.append(SessionEvent("logged_on", f"{self.target_comp_id}, HeartBtInt {self.heart_bt_int}"))

    def _on_logout(self, msg: Message, now: float) -> None:
        text = msg.get(Tag.Text, "")
        if self.status is not SessionStatus.LOGOUT_SENT:
            self._send_admin(MsgType.LOGOUT, now, [])
        self._events.append(SessionEvent("logged_out", text, msg.seq_num))
        self._close(f"logout: {text}" if text else "logout")

    def _sequence_reset(self, msg: Message, now: float, *, gap_fill: bool) -> None:
        new = _int(msg.get(Tag.NewSeqNo))
        expected = self.store.next_incoming
        if new is None or new < expected:
            self._send_admin(MsgType.REJECT, now, [
                (Tag.RefSeqNum, str(msg.seq_num)), (Tag.RefTagID, str(int(Tag.NewSeqNo))), (Tag.RefMsgType, "4"),
                (Tag.SessionRejectReason, str(int(SessionRejectReason.VALUE_IS_INCORRECT))),
                (Tag.Text, f"NewSeqNo {msg.get(Tag.NewSeqNo)} is below the expected {expected}"),
            ])
            if gap_fill:
                self.store.next_incoming = expected + 1
            return
        self.store.next_incoming = new
        if self._resend_requested_to is not None and new > self._resend_requested_to:
            self._resend_requested_to = None

    def _request_resend(self, now: float, seen: int) -> None:
        if self._resend_requested_to is not None and now < self._resend_requested_at + self._resend_patience():
            # Already asked, to infinity (EndSeqNo 0): the answer covers this number too.
            # Asked again only if no answer came for a while.
            self._resend_requested_to = max(self._resend_requested_to, seen)
            return
        self._resend_requested_to = seen
        self._resend_requested_at = now
        begin = self.store.next_incoming
        self._send_admin(MsgType.RESEND_REQUEST, now, [(Tag.BeginSeqNo, str(begin)), (Tag.EndSeqNo, "0")])
        self._events.append(SessionEvent("gap", f"expected {begin}, received {seen}", seen))

    def _resend_patience(self) -> float:
        return max(float(self.heart_bt_int), 2.0)

    def _answer_resend(self, msg: Message, now: float) -> None:
        if self._resend_answered_at is not None and now < self._resend_answered_at + 1.0:
            # One answer a second at most: each can be the whole resend window, and a peer
            # asking in a loop would have us re-encode it without end. A peer that really
            # lost the answer asks again after its patience runs out.
            self._events.append(SessionEvent("resend", "ResendRequest ignored: one was answered under 1 s ago"))
            return
        self._resend_answered_at = now
        begin = _int(msg.get(Tag.BeginSeqNo)) or 1
        end = _int(msg.get(Tag.EndSeqNo)) or 0
        last = self.store.next_outgoing - 1
        if end == 0 or end > last:
            end = last
        self._events.append(SessionEvent("resend", f"{begin} to {end}"))
        gap_start: int | None = None
        store = self.store
        resend = self.config.resend_application
        for seq in range(begin, end + 1):
            held = store.held(seq) if resend else None
            if held is None:
                if gap_start is None:
                    gap_start = seq
                continue
            if gap_start is not None:
                self._gap_fill(gap_start, seq, now)
                gap_start = None
            self._write(encode(held.msg_type, self.config.sender_comp_id, self.target_comp_id, seq, utc_timestamp(now),
                               held.fields, header=[(Tag.PossDupFlag, "Y"), (Tag.OrigSendingTime, held.sending_time)]), now)
        if gap_start is not None:
            self._gap_fill(gap_start, end + 1, now)

    def _gap_fill(self, seq: int, new_seq: int, now: float) -> None:
        self._write(encode(MsgType.SEQUENCE_RESET, self.config.sender_comp_id, self.target_comp_id, seq,
                           utc_timestamp(now), [(Tag.GapFillFlag, "Y"), (Tag.NewSeqNo, str(new_seq))],
                           header=[(Tag.PossDupFlag, "Y")]), now)

    # -- sending and closing ----------------------------------------------------------------

    def _send_admin(self, msg_type: MsgType, now: float, body: list[tuple[int, FieldValue]]) -> None:
        seq = self.store.next_outgoing
        self._write(encode(msg_type, self.config.sender_comp_id, self.target_comp_id or "", seq,
                           utc_timestamp(now), body), now)
        self.store.next_outgoing = seq + 1

    def _write(self, data: bytes, now: float) -> None:
        self._out.append(data)
        self._last_sent = now

    def _logout_and_close(self, now: float, text: str) -> None:
        if self.target_comp_id is not None:
            self._send_admin(MsgType.LOGOUT, now, [(Tag.Text, text)])
        self._close(text)

    def _close(self, text: str) -> None:
        if self.status is not SessionStatus.CLOSED:
            self.status = SessionStatus.CLOSED
            self._events.append(SessionEvent("closed", text))

    def _flush(self) -> Output:
        out = Output(b"".join(self._out), self._messages, self._events)
        self._out = []
        self._messages = []
        self._events = []
        return out


def _int(text: str | None) -> int | None:
    """A FIX int of at most 18 ASCII digits, else None (`str.isdigit` alone takes '²')."""
    return int(text) if text is not None and len(text) <= 18 and text.isascii() and text.isdigit() else None


def check_fix_password(password: Secret) -> None:
    """A FIX password is printable ASCII (it travels as a FIX string field, which may not
    hold SOH, and the codec writes latin-1); refused without showing it."""
    value = password.reveal()
    if not all(" " <= ch <= "~" for ch in value):
        raise SecretError(f"a FIX password must be printable ASCII; this one ({len(value)} characters) "
                          "holds a character outside it (not shown)")
