"""The one asyncio driver of a sans-IO `FixSession`: the only FIX code that touches a socket
or waits.

Rules:

- Bytes read from the stream go to `session.receive`; whatever any session call returns has
  its application messages handed to `on_message` and its events to `on_event`,
  synchronously (a consumer that needs to await queues them), and its bytes queued.
- Queued bytes go out once per turn of the loop, after `session.store.commit()`: a batch of
  sends is one commit and one write, and no sequence number reaches the wire unsaved.
- `session.tick` runs when `session.next_deadline()` is reached, and again whenever a
  `send` or `logout` may have moved that deadline.
- The connection ends when the session is CLOSED (Logout exchanged, a timeout, a fatal
  error) or the peer closes the stream; either way `closed` is set and the stream closed.
  A peer that vanishes without a Logout is reported as a `closed` event ("connection lost").
- Time is `clock()` in epoch seconds (SendingTime is UTC wall time); the loop's own timer
  only waits for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterable

from engine.venues.fix.codec import FieldValue, Message
from engine.venues.fix.session import FixSession, Output, SessionEvent, SessionStatus

log = logging.getLogger(__name__)

_READ_SIZE = 1 << 16


class FixConnection:
    """Run one `FixSession` over an asyncio stream pair until it closes: `await run()`."""

    def __init__(
        self,
        session: FixSession,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        *,
        on_message: Callable[[Message], None] | None = None,
        on_event: Callable[[SessionEvent], None] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.session = session
        self._reader = reader
        self._writer = writer
        self._on_message = on_message
        self._on_event = on_event
        self._clock = clock
        self.logged_on = asyncio.Event()
        self.closed = asyncio.Event()
        self._wake = asyncio.Event()
        self._pending: list[bytes] = []
        self._flush_handle: asyncio.Handle | None = None

    @property
    def peer(self) -> str:
        info = self._writer.get_extra_info("peername")
        return f"{info[0]}:{info[1]}" if isinstance(info, tuple) else str(info)

    # -- calls from the owner ------------------------------------------------------------------

    def send(self, msg_type: str, body: Iterable[tuple[int, FieldValue]]) -> None:
        """Send one application message (the session must be logged on); it goes out at
        the end of this turn of the loop, with any others sent in the same turn."""
        self._handle(self.session.send(msg_type, body, self._clock()))
        if self._flush_handle is None:
            self._flush_handle = asyncio.get_running_loop().call_soon(self._flush)

    def logout(self, text: str = "") -> None:
        """Start the Logout exchange; `closed` is set once it is over (or timed out)."""
        if not self.closed.is_set():
            self._handle(self.session.logout(self._clock(), text))
            self._wake.set()

    async def run(self) -> None:
        """Drive the session until it closes; always closes the stream on the way out."""
        read: asyncio.Task[bytes] | None = None
        wake: asyncio.Task[bool] | None = None
        try:
            self._handle(self.session.connection_made(self._clock()))
            self._flush()
            while self.session.status is not SessionStatus.CLOSED:
                if read is None:
                    read = asyncio.ensure_future(self._reader.read(_READ_SIZE))
                if wake is None:
                    self._wake.clear()
                    wake = asyncio.ensure_future(self._wake.wait())
                deadline = self.session.next_deadline()
                timeout = None if deadline is None else max(0.0, deadline - self._clock())
                done, _ = await asyncio.wait({read, wake}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
                if wake in done:
                    wake = None
                if read in done:
                    data = read.result()
                    read = None
                    if not data:
                        self._lost("connection lost: the peer closed the stream")
                        break
                    self._handle(self.session.receive(data, self._clock()))
                else:
                    self._handle(self.session.tick(self._clock()))
                self._flush()
                await self._writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError) as exc:
            self._lost(f"connection lost: {exc}")
        finally:
            for task in (read, wake):
                if task is not None:
                    task.cancel()
            self._flush()
            self.closed.set()
            self._writer.close()
            with contextlib.suppress(ConnectionError):
                await self._writer.wait_closed()

    # -- inside ------------------------------------------------------------------------------------

    def _handle(self, out: Output) -> None:
        if out.data:
            self._pending.append(out.data)
        for message in out.messages:
            if self._on_message is not None:
                self._on_message(message)
        for event in out.events:
            if event.kind == "logged_on":
                self.logged_on.set()
            log.debug("FIX %s: %s %s", self.peer, event.kind, event.text)
            if self._on_event is not None:
                self._on_event(event)

    def _flush(self) -> None:
        """Commit the session's store, then write what was queued."""
        if self._flush_handle is not None:
            self._flush_handle.cancel()
            self._flush_handle = None
        try:
            self.session.store.commit()
        except Exception:
            # Nothing unsaved may go out: the numbers would repeat after a restart.
            log.exception("FIX %s: the session store could not commit; closing", self.peer)
            self._pending.clear()
            self._writer.close()
            return
        if self._pending and not self._writer.is_closing():
            self._writer.write(self._pending[0] if len(self._pending) == 1 else b"".join(self._pending))
        self._pending.clear()

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
    """Connect as the initiator and start driving `session`: returns the connection and the
    task running it (the Logon is on its way; wait on `connection.logged_on`)."""
    reader, writer = await asyncio.open_connection(host, port)
    connection = FixConnection(session, reader, writer, on_message=on_message, on_event=on_event, clock=clock)
    return connection, asyncio.ensure_future(connection.run())
