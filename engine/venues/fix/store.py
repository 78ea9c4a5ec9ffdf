"""What a FIX session must remember across connections and restarts: its sequence numbers
and the application messages it sent (to answer a ResendRequest), sans-IO.

Rules:

- `next_outgoing` / `next_incoming` are the numbers the session uses and moves; the store
  is the only place they live, so a new connection (or a new process, with a persistent
  store) carries on where the last one stopped.
- `save_sent` keeps an application message under its MsgSeqNum, the newest `resend_window`
  of them; older ones are forgotten and gap-filled if asked for.
- `park` sends a message to a counterparty that is not connected: it takes the next
  outgoing number and is kept, so that counterparty's next Logon shows a gap and its
  ResendRequest delivers it, in order, with everything else it missed.
- `commit` makes what was stored durable; the driver calls it after each batch it handled
  and before it writes that batch's bytes, so a number is never used on the wire before it
  is saved. In memory it does nothing; `engine.venues.fixio.store.SqliteSessionStore`
  persists.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from engine.venues.fix.codec import FieldValue, utc_timestamp


@dataclass(frozen=True, slots=True)
class StoredMessage:
    seq: int
    msg_type: str
    sending_time: str
    fields: Sequence[tuple[int, FieldValue]]


class SessionStore:
    """The in-memory store (state lost with the process); the base of persistent ones."""

    def __init__(self, next_outgoing: int = 1, next_incoming: int = 1, *, resend_window: int = 10_000) -> None:
        self.next_outgoing = next_outgoing
        self.next_incoming = next_incoming
        self.resend_window = resend_window
        self._sent: OrderedDict[int, StoredMessage] = OrderedDict()

    def save_sent(self, seq: int, msg_type: str, sending_time: str, fields: Iterable[tuple[int, FieldValue]]) -> None:
        self._sent[seq] = StoredMessage(seq, msg_type, sending_time, tuple(fields))
        if len(self._sent) > self.resend_window:
            self._sent.popitem(last=False)

    def held(self, seq: int) -> StoredMessage | None:
        return self._sent.get(seq)

    def park(self, msg_type: str, fields: Iterable[tuple[int, FieldValue]], now: float) -> int:
        seq = self.next_outgoing
        self.save_sent(seq, msg_type, utc_timestamp(now), fields)
        self.next_outgoing = seq + 1
        return seq

    def reset(self) -> None:
        """Both numbers back to 1 and nothing held (a new FIX day, or SequenceReset by agreement)."""
        self.next_outgoing = self.next_incoming = 1
        self._sent.clear()

    def commit(self) -> None:
        """Make what was stored durable (nothing to do in memory)."""

    def close(self) -> None:
        self.commit()
