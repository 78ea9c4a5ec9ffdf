"""FIX 4.4: our own codec and session layer, both sans-IO (bytes in, bytes and messages out).

`codec` frames and checks messages (BodyLength, CheckSum, required header fields) and
writes them; `store` keeps a session's sequence numbers and sent messages; `session` runs the FIX session protocol (Logon, heartbeats, sequence numbers,
resends, rejects) on top of it, given the clock's time by its caller. Neither opens a
socket, sleeps or starts a task: the asyncio driver and the venue build on them.
"""

from engine.venues.fix.codec import (
    BadMessage,
    FixDecoder,
    FixEncodeError,
    Message,
    encode,
    utc_timestamp,
)
from engine.venues.fix.session import (
    FixSession,
    Output,
    Role,
    SequenceState,
    SessionConfig,
    SessionEvent,
    SessionStatus,
)
from engine.venues.fix.store import SessionStore, StoredMessage
from engine.venues.fix.tags import (
    ExecType,
    GarbledReason,
    MsgType,
    OrdStatus,
    OrdType,
    SessionRejectReason,
    Side,
    Tag,
    TimeInForce,
)

__all__ = [
    "BadMessage", "ExecType", "FixDecoder", "FixEncodeError", "FixSession", "GarbledReason",
    "Message", "MsgType", "OrdStatus", "OrdType", "Output", "Role", "SequenceState",
    "SessionConfig", "SessionEvent", "SessionRejectReason", "SessionStatus", "SessionStore", "Side",
    "StoredMessage", "Tag",
    "TimeInForce", "encode", "utc_timestamp",
]
