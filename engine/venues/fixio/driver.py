"""The one asyncio driver of a sans-IO `FixSession`: the only FIX code that touches a socket
or waits. It is an `asyncio.Protocol`, so bytes reach the session in the loop's own read
callback, with no task or future between the socket and the session.

Rules:

- Bytes read from the transport go to `session.receive`; whatever any session call returns
  has its application messages handed to `on_message` and its events to `on_event`,
  synchronously (a consumer that needs to await queues them), and its bytes queued.
- Queued bytes go out after `session.store.commit()`, in one write per batch: at the end
  of the read that produced them (the answers to everything in one read leave together),
  and otherwise once per turn of the loop (sends made in one turn leave together). No
  sequence number reaches the wire unsaved. `before_write` runs before that commit (the
  owner saves what the answers tell, so no answer reaches the wire about a state a
  restart would not know); `after_read` runs once the read's answers are written (the
  owner's batch work, off their path); what it sends is written next.
- One loop timer runs `session.tick` when `session.next_deadline()` is reached. Traffic
  only moves that deadline later, so a timer that fires early ticks (harmless) and is
  armed again; whatever may move it earlier (a Logon, a Logout, a tick) re-arms it.
- While the peer does not read (the transport's buffer is full) we stop reading from it,
  so a slow peer is not flooded with answers it has not asked for yet; and past
  `MAX_UNSENT` bytes waiting for it (market data or resends it does not take) the
  connection is cut, said as a `closed` event: one slow peer cannot take the process's
  memory.
- The connection ends when the session is CLOSED (Logout exchanged, a timeout, a fatal
  error) or the peer closes the stream; either way `closed` is set and the transport
  closed (after the bytes already queued). A peer that vanishes without a Logout is
  reported as a `closed` event ("connection lost").
- Time is `clock()` in epoch seconds (SendingTime is UTC wall time); the loop's own timer
  only waits for it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable

from engine.venues.fix.codec import FieldValue, Message
from engine.venues.fix.session import FixSession, Output, SessionEvent, SessionStatus

log = logging.getLogger(__name__)


#: The most bytes taken from the socket per read, by default. Smaller reads let the answers
#: to the first part of a burst leave while the rest is handled, so two busy peers overlap
#: their work (8 to 32 KiB measured the same; 256 KiB made them take turns).
READ_SIZE = 16 * 1024
MAX_UNSENT = 16 * 1024 * 1024


class FixConnection(asyncio.BufferedProtocol):
    """Run one `FixSession` over a transport: the protocol a `create_connection` or
    `create_server` factory returns. `await run()` waits until the connection is over."""

    def __init__(
        self,
        session: FixSession,
        *,
        on_message: Callable[[Message], None] | None = None,
        on_event: Callable[[SessionEvent], None] | None = None,
        after_read: Callable[[], None] | None = None,
        before_write: Callable[[], None] | None = None,
        clock: Callable[[], float] = time.time,
        read_size: int = READ_SIZE,
    ) -> None:
        self.session = session
        self._on_message = on_message
        self._on_event = on_event
        self._after_read = after_read
        self._before_write = before_write
        self._clock = clock
        self.logged_on = asyncio.Event()
        self.closed = asyncio.Event()
        self._finished = asyncio.Event()  # the transport is gone
        self._transport: asyncio.Transport | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._pending: list[bytes] = []
        self._flush_handle: asyncio.Handle | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None  # the deadline (clock time) the timer is armed for
        self._peer = "?"
        self._buffer = bytearray(read_size)
        #: Reads so far, and whether the last one filled the buffer (more bytes were
        #: probably waiting: what was written together may continue in the next read).
        self.reads = 0
        self.last_read_full = False
        self._view = memoryview(self._buffer)

    @property
    def peer(self) -> str:
        return self._peer

    # -- the transport's calls ---------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]
        self._loop = asyncio.get_running_loop()
        info = transport.get_extra_info("peername")
        self._peer = f"{info[0]}:{info[1]}" if isinstance(info, tuple) else str(info)
        self._handle(self.session.connection_made(self._clock()))
        self._flush()
        self._after()

    def get_buffer(self, sizehint: int) -> memoryview:
        return self._view

    def buffer_updated(self, nbytes: int) -> None:
        self.reads += 1
        self.last_read_full = nbytes == len(self._buffer)
        self.data_received(self._view[:nbytes])  # the decoder copies what it keeps

    def data_received(self, data: bytes | memoryview) -> None:
        if self.session.status is SessionStatus.CLOSED:
            return
        self._handle(self.session.receive(data, self._clock()))
        self._flush()
        if self._after_read is not None:
            self._after_read()
            if self._pending:
                self._flush()
        self._after()

    def eof_received(self) -> bool:
        return False  # the transport closes itself; connection_lost says why

    def connection_lost(self, exc: Exception | None) -> None:
        if self._flush_handle is not None:
            self._flush_handle.cancel()
            self._flush_handle = None
        self._pending.clear()
        self._cancel_timer()
        if exc is None:
            self._lost("connection lost: the peer closed the stream")
        else:
            self._lost(f"connection lost: {exc}")
        self.closed.set()
        self._finished.set()

    def pause_writing(self) -> None:
        if self._transport is not None and not self._transport.is_closing():
            self._transport.pause_reading()

    def resume_writing(self) -> None:
        if self._transport is not None and not self._transport.is_closing():
            self._transport.resume_reading()

    # -- calls from the owner ------------------------------------------------------------------

    def send(self, msg_type: str, body: Iterable[tuple[int, FieldValue]]) -> None:
        """Send one application message (the session must be logged on); it goes out at
        the end of this read or this turn of the loop, with any others sent meanwhile."""
        self._handle(self.session.send(msg_type, body, self._clock()))
        if self._flush_handle is None:
            self._flush_handle = (self._loop or asyncio.get_running_loop()).call_soon(self._flush)

    def logout(self, text: str = "") -> None:
        """Start the Logout exchange; `closed` is set once it is over (or timed out)."""
        if not self.closed.is_set():
            self._handle(self.session.logout(self._clock(), text))
            self._flush()
            self._after()

    def abort(self) -> None:
        """Drop the transport at once (nothing queued is written): a cut line."""
        if self._transport is not None:
            self._transport.abort()

    async def run(self) -> None:
        """Wait until the connection is over; cancelled, it closes the transport."""
        try:
            await self._finished.wait()
        finally:
            if not self._finished.is_set():
                self._close_transport()

    # -- inside ------------------------------------------------------------------------------------

    def _handle(self, out: Output) -> None:
        if out.data:
            self._pending.append(out.data)
        if out.messages and self._on_message is not None:
            on_message = self._on_message
            for message in out.messages:
                on_message(message)
        for event in out.events:
            if event.kind == "logged_on":
                self.logged_on.set()
            log.debug("FIX %s: %s %s", self._peer, event.kind, event.text)
            if self._on_event is not None:
                self._on_event(event)

    def _flush(self) -> None:
        """Commit the session's store, then write what was queued."""
        if self._flush_handle is not None:
            self._flush_handle.cancel()
            self._flush_handle = None
        if self._before_write is not None and self._pending:
            try:
                self._before_write()
            except Exception:  # said by the owner (a venue refuses orders while it cannot save)
                log.exception("FIX %s: saving before the write failed", self._peer)
        try:
            self.session.store.commit()
        except Exception:
            # Nothing unsaved may go out: the numbers would repeat after a restart.
            log.exception("FIX %s: the session store could not commit; closing", self._peer)
            self._pending.clear()
            self._close_transport()
            return
        pending = self._pending
        if not pending:
            return
        transport = self._transport
        if transport is not None and not transport.is_closing():
            transport.write(pending[0] if len(pending) == 1 else b"".join(pending))
            unsent = transport.get_write_buffer_size()
            if unsent > MAX_UNSENT:
                text = f"connection cut: the peer is not reading ({unsent / 1e6:.0f} MB unsent)"
                log.warning("FIX %s: %s", self._peer, text)
                if self._on_event is not None and self.session.status is not SessionStatus.CLOSED:
                    self._on_event(SessionEvent("closed", text))
                transport.abort()
        pending.clear()

    def _after(self) -> None:
        """After the session moved: close when it is over, else keep its timer right."""
        session = self.session
        if session.status is SessionStatus.CLOSED:
            self._close_transport()
            return
        deadline = session.next_deadline()
        if deadline is None:
            self._cancel_timer()
        elif self._timer_at is None or deadline < self._timer_at:
            self._cancel_timer()
            self._timer_at = deadline
            loop = self._loop or asyncio.get_running_loop()
            self._timer = loop.call_later(max(0.0, deadline - self._clock()), self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self._timer_at = None
        if self.session.status is SessionStatus.CLOSED:
            return
        self._handle(self.session.tick(self._clock()))
        self._flush()
        self._after()

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._timer_at = None

    def _close_transport(self) -> None:
        """The end: what is queued goes out (after the commit), then the transport closes."""
        self._cancel_timer()
        if self._pending:
            self._flush()
        self.closed.set()
        transport = self._transport
        if transport is not None and not transport.is_closing():
            transport.close()
        elif transport is None:
            self._finished.set()

    def _lost(self, text: str) -> None:
        if self.session.status is not SessionStatus.CLOSED and self._on_event is not None:
            self._on_event(SessionEvent("closed", text))


async def open_fix_connection(
    host: str,
    port: int,
    session: FixSession,
    *,
    on_message: Callable[[Message], None] | None = None,
    on_event: Callable[[SessionEvent], None] | None = None,
    clock: Callable[[], float] = time.time,
) -> tuple[FixConnection, asyncio.Task[None]]:
    """Connect as the initiator and start driving `session`: returns the connection and a
    task that ends with it (the Logon is on its way; wait on `connection.logged_on`)."""
    loop = asyncio.get_running_loop()
    _, connection = await loop.create_connection(
        lambda: FixConnection(session, on_message=on_message, on_event=on_event, clock=clock), host, port)
    return connection, asyncio.ensure_future(connection.run())
