"""`FixVenue`: the engine's side of FIX 4.4, a venue (sync and async forms) behind a FIX session.

It talks to an `execdesk venue` process (`FixVenueServer`) or any FIX 4.4 counterparty, per
the wire contract in the FIX notes (D/F/G/H/AF for orders, x/y for instruments and fees,
V/W/X for books and public trades).

Rules:

- One event loop owns every piece of FIX state (the session, the requests waiting for
  answers, the orders it tracks): a daemon thread's own (`connect()`), or the caller's
  (`await connect_async()`). Callers on other threads or loops reach it through a queue
  and get a `concurrent.futures.Future` back; the sync methods wait on it, the `_async`
  ones await it with `asyncio.wrap_future`. An `_async` call on the venue's own loop runs
  at once, with no hop: its orders leave with the others sent in the same turn of the
  loop, in one write. Local reads (`book`, `trades`, `instruments`, `session_info`)
  never make a round trip.
- Requests are correlated by ClOrdID. An order's ClOrdID is the engine's client order id;
  a cancel or replace takes a new one (`cid.cN`, `cid.rN`), mapped back so the engine only
  ever sees its own id. The answer to a submit is built from the ERs that arrived for it
  in one read of the stream (the venue writes New, Trades and Expired in one go): it is
  resolved at once by a final ER, else at the end of that read (a read that filled the
  driver's buffer was cut by its size: the reads after it count as the same one). Anything that arrives
  later goes to the report listeners as an `ExecutionReport`.
- A fill counts once: an ER whose CumQty is not above what is known already added its
  fill (a resent report, or a fill learned by status while disconnected).
- Errors: not logged on when a request starts -> `VenueUnavailableError` (transient,
  nothing was sent); no answer within `request_timeout` after it went out ->
  `UnknownOutcomeError`; a status of an order the venue does not know ->
  `UnknownOrderError`; a cancel or amend the venue refuses (OrderCancelReject 9) ->
  an `OrderResult` REJECTED with the venue's reason, as the simulator answers.
- When the connection drops it reconnects by itself (backoff 0.1 s doubling to 2 s),
  keeping the session's sequence numbers (one store across connections, on disk with
  `state_dir`). Application messages are never resent after a reconnect (GapFill only):
  a cancel or amend in flight fails with `UnknownOutcomeError` (the router settles it by
  status); a submit in flight, and every order working, is reconciled after the Logon by
  mass status (AF; OrderStatusRequest per order when the venue does not answer AF): a
  submit in flight gets its true answer, and what changed while down goes to the report
  listeners (a missed fill as an `ExecutionReport` with the fill, an end with its status).
- A replace's or cancel's ClOrdID is `<cid>.r<n>-<tag>` / `<cid>.c<n>-<tag>`, the tag
  unique to this FixVenue object: a restarted desk never reuses one its previous
  process sent (the venue refuses a ClOrdID used before).
- Credentials: a `password` (an `engine.secrets.Secret`) goes out as Password(554) on
  every Logon and nowhere else (a Logon is never stored or resent). A Logon refused for
  its credentials is not tried again with the same password: `connect` raises
  `BadCredentialsError` ("venue X refused our logon: bad credentials"), and a reconnect
  refused so stops reconnecting, the session "closed" with that as its last error.
- A counterparty that comes back with sequence numbers lower than ours (it restarted
  without its state) is accepted on the next attempt: our expected incoming number goes
  back to 1, logged; reconciliation by status covers whatever was lost.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import itertools
import logging
import math
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.errors import (
    ConfigurationError,
    PermanentVenueError,
    TransientVenueError,
    UnknownOrderError,
    UnknownOutcomeError,
    VenueError,
    VenueUnavailableError,
)
from engine.market_data import BookSnapshot, ExecutionReport, PublicTrade, ReportListener, TradeListener
from engine.models import FeeSchedule, Fill, Instrument, Liquidity, Order, OrderResult, OrderSide, OrderStatus, OrderType
from engine.models import MAX_PRICE, TimeInForce
from engine.venues.fix.codec import FieldValue, Message, utc_timestamp
from engine.secrets import Secret
from engine.venues.fix.session import BAD_CREDENTIALS, FixSession, Role, SessionConfig, SessionEvent, SessionStatus
from engine.venues.fix.session import check_fix_password
from engine.venues.fix.tags import MsgType, Tag
from engine.venues.fixio.driver import READ_SIZE, FixConnection
from engine.venues.fixio.server import fix_number
from engine.venues.fixio.venue_data import MarketView, as_float, parse_utc

from engine.venues.fix.store import SessionStore
from engine.venues.fixio.store import SqliteSessionStore

log = logging.getLogger(__name__)

_STATUS = {
    "0": OrderStatus.NEW, "1": OrderStatus.PARTIALLY_FILLED, "2": OrderStatus.FILLED,
    "4": OrderStatus.CANCELED, "6": OrderStatus.PENDING_CANCEL, "8": OrderStatus.REJECTED,
    "A": OrderStatus.PENDING_NEW, "C": OrderStatus.EXPIRED, "3": OrderStatus.EXPIRED,
    # Still working, in states the engine has no word for: it reads them as working.
    "5": OrderStatus.NEW, "9": OrderStatus.NEW, "E": OrderStatus.NEW, "7": OrderStatus.NEW,
}
_SIDE_CODES = {OrderSide.BUY: "1", OrderSide.SELL: "2"}
_SIDES = {"1": OrderSide.BUY, "2": OrderSide.SELL}
_TIF_CODES = {TimeInForce.DAY: "0", TimeInForce.GTC: "1", TimeInForce.IOC: "3", TimeInForce.FOK: "4",
              TimeInForce.GTD: "6"}
_RANK = {OrderStatus.PENDING_NEW: 0, OrderStatus.NEW: 1, OrderStatus.PENDING_CANCEL: 1,
         OrderStatus.PARTIALLY_FILLED: 2}
_BACKOFF_FIRST, _BACKOFF_MAX = 0.1, 2.0
_READ_SIZE = READ_SIZE  # bytes per read (a test makes it small)
_FINISHED_KEPT = 10_000


def _base36(n: int) -> str:
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    out = ""
    while True:
        n, r = divmod(n, 36)
        out = digits[r] + out
        if not n:
            return out


@dataclass(frozen=True, slots=True)
class FixSessionInfo:
    """What the desk shows of a FIX venue's session."""

    state: str  # "connecting", "logged on", "reconnecting", "closed"
    peer: str
    next_outgoing: int
    next_incoming: int
    reconnects: int
    last_error: str | None


class _Track:
    """An order this venue sent and has not seen finish (or finished recently)."""

    __slots__ = ("cid", "symbol", "side", "quantity", "price", "ord_type", "wire_id", "status", "cum",
                 "avg", "order_id", "fills", "replaces", "cancels")

    def __init__(self, cid: str, symbol: str, side: OrderSide, quantity: float, price: float | None,
                 ord_type: str) -> None:
        self.cid = cid
        self.symbol = symbol
        self.side = side
        self.quantity = quantity
        self.price = price
        self.ord_type = ord_type
        self.wire_id = cid  # the ClOrdID the venue knows it by now (the last accepted replace)
        self.status = OrderStatus.PENDING_NEW
        self.cum = 0.0
        self.avg: float | None = None
        self.order_id = ""
        self.fills: list[Fill] = []
        self.replaces = 0
        self.cancels = 0

    def result(self, status: OrderStatus | None = None, fills: list[Fill] | None = None,
               reason: str | None = None, venue: str = "", now: float = 0.0) -> OrderResult:
        return OrderResult(
            self.cid, venue, status or self.status, self.quantity, self.cum, self.avg if self.cum else None,
            list(self.fills) if fills is None else fills, reason, self.symbol, self.side, self.price, now,
        )  # fmt: skip


class _Request:
    """A request that went out and waits for its answer."""

    __slots__ = ("kind", "key", "future", "track", "fills", "reason", "sent_ns", "answer_ns", "seq", "deadline",
                 "settled",
                 "items", "extra", "touched")

    def __init__(self, kind: str, key: str, future: concurrent.futures.Future[Any], track: _Track | None) -> None:
        self.kind = kind
        self.key = key
        self.future = future
        self.track = track
        self.fills: list[Fill] = []
        self.reason: str | None = None
        self.sent_ns = 0
        self.answer_ns = 0
        self.seq = 0
        self.deadline = 0.0  # the loop's time its answer is due by
        self.settled = False
        self.items: list[Message] = []
        self.extra: Any = None
        self.touched = False


# ExecType values of FIX 4.4 (Vol. 4): anything else is not an execution report we can read.
_EXEC_TYPES = frozenset("0345678ABCDEFGHI")


def _report_problem(msg: Message, quantity: float) -> str | None:
    """Why an execution report cannot be applied to an order of `quantity` (None: it can).
    ExecType, OrdStatus and CumQty are required; CumQty is a finite quantity from 0 to
    the order's (a rejection may carry none)."""
    exec_type, status = msg.get(Tag.ExecType), msg.get(Tag.OrdStatus)
    if exec_type not in _EXEC_TYPES:
        return f"ExecType(150) {exec_type!r} is not one FIX 4.4 defines"
    if status not in _STATUS:
        return f"OrdStatus(39) {status!r} is not one FIX 4.4 defines"
    if exec_type == "8" or status == "8":
        return None
    text = msg.get(Tag.CumQty)
    if text is None:
        return "CumQty(14) missing"
    try:
        cum = float(text)
    except ValueError:
        cum = math.nan
    if not (math.isfinite(cum) and cum >= 0):
        return f"CumQty(14) {text!r} is not a quantity"
    if quantity and cum > quantity * (1 + 1e-9) + 1e-12:
        return f"CumQty(14) {text} is above the order's quantity {quantity:g}"
    if exec_type != "F":
        return None  # other reports may carry LastQty/LastPx 0 (many venues do): not a fill
    # A fill's own figures: a positive quantity at a price an order could have.
    for tag, name, what, most in ((Tag.LastQty, "LastQty(32)", "quantity", math.inf),
                                  (Tag.LastPx, "LastPx(31)", "price", MAX_PRICE)):
        text = msg.get(tag)
        if text is None:
            continue
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        if not (math.isfinite(value) and 0 < value <= most):
            return f"{name} {text!r} is not a {what}"
    return None


class BadCredentialsError(VenueUnavailableError):
    """The venue refused our Logon for its credentials: the same password will not do."""


class FixVenue:
    """A venue behind a FIX 4.4 session: `connect()`, trade, `close()` (or use `with`)."""

    # The venue answers an OrderStatusRequest from the orders it holds, in the order its
    # messages come: an order it took is never "not known" (see base.py).
    status_is_immediate = True

    def __init__(
        self,
        host: str,
        port: int,
        *,
        name: str | None = None,
        destination: str | None = None,
        sender_comp_id: str = "DESK",
        target_comp_id: str = "VENUE",
        heart_bt_int: int = 30,
        request_timeout: float = 5.0,
        connect_timeout: float = 5.0,
        state_dir: str | Path | None = None,
        clock: Callable[[], float] = time.time,
        fees: FeeSchedule | None = None,
        market_data: bool = True,
        reconnect: bool = True,
        password: Secret | None = None,
    ) -> None:
        if not isinstance(port, int) or isinstance(port, bool) or not 0 < port < 65536:
            raise ConfigurationError(f"port must be an int in 1-65535, got {port!r}")
        for label, value in (("request_timeout", request_timeout), ("connect_timeout", connect_timeout)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
                raise ConfigurationError(f"{label} must be a number of seconds > 0, got {value!r}")
        if password is not None:
            if not isinstance(password, Secret):
                raise ConfigurationError(f"password must be a Secret (engine.secrets), got {type(password).__name__}")
            check_fix_password(password)
        self._password = password
        self._credentials_refused = False
        self.host = host
        self.port = port
        self.destination = destination
        self.name = name or destination or f"fix-{port}"
        self.sender_comp_id = sender_comp_id
        self.target_comp_id = target_comp_id
        self.heart_bt_int = heart_bt_int
        self.request_timeout = float(request_timeout)
        self.connect_timeout = float(connect_timeout)
        self.fees = fees or FeeSchedule()
        self._fees_given = fees is not None
        self._clock = clock
        self._market_data = market_data
        self._reconnect = reconnect
        self._state_dir = Path(state_dir) if state_dir is not None else None
        self._numbers: Any = self._open_store()
        self._store_closed = False
        # Owned by the loop thread.
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._supervisor: asyncio.Task[None] | None = None
        self._conn: FixConnection | None = None
        self._generation = 0
        self._pending: dict[str, _Request] = {}
        self._by_seq: dict[int, _Request] = {}
        self._tracks: dict[str, _Track] = {}
        self._aliases: dict[str, str] = {}  # a replace's ClOrdID -> the engine's id
        self._finished: OrderedDict[str, _Track] = OrderedDict()
        self._touched: list[_Request] = []
        self._end_deferred_at = -1  # the read count `_end_of_read` last waited past
        self._deadlines: deque[_Request] = deque()  # requests in the order sent: `_due`
        self._deadline_timer: asyncio.TimerHandle | None = None
        self._flush_scheduled = False
        self._ids = itertools.count(1)
        # A replace's or a cancel's ClOrdID is `<cid>.r<n>-<tag>`: the tag (this object's
        # birth, in microseconds, base 36) keeps it apart from the ones a previous process
        # used for the same order, which the venue refuses as duplicates after a restart.
        self._wire_tag = _base36(time.time_ns() // 1000)
        self._closing = False
        self._close_text = ""
        self._accept_reset = False
        self._md_waiting: set[str] = set()
        # Shared with other threads.
        self._inbox: deque[tuple[Callable[..., None], tuple[Any, ...]]] = deque()
        self._inbox_scheduled = False
        self._state = "closed"
        self._peer = f"{host}:{port}"
        self._reconnects = 0
        self._last_error: str | None = None
        self._market = MarketView(self.name, clock)  # instruments, books, public trades
        self._report_listeners: tuple[ReportListener, ...] = ()
        self._session_listeners: tuple[Callable[[str, str], None], ...] = ()
        self._loop_ident: int | None = None  # the thread running the session's loop

    def __repr__(self) -> str:
        return f"FixVenue({self.name!r}, {self.host}:{self.port}, {self._state})"

    # -- lifecycle ----------------------------------------------------------------------------

    def _open_store(self) -> Any:
        if self._state_dir is None:
            return SessionStore()
        self._state_dir.mkdir(parents=True, exist_ok=True)
        return SqliteSessionStore(self._state_dir / "fix-session.sqlite",
                                  f"{self.sender_comp_id}->{self.target_comp_id}")

    def connect(self) -> FixVenue:
        """Connect and log on, load instruments and fees, subscribe to the books; blocks.
        The session runs on a loop thread of its own, so any thread or loop may use it.

        Raises `VenueUnavailableError` naming the address and the cause when the venue
        cannot be reached or refuses the Logon (then nothing keeps running)."""
        if self._loop is not None:
            return self
        self._closing = False
        self._credentials_refused = False
        self._reopen_store()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name=f"fix-venue-{self.name}", daemon=True)
        self._thread.start()
        self._loop_ident = self._thread.ident
        self._set_state("connecting")
        ready: concurrent.futures.Future[None] = concurrent.futures.Future()
        self._loop.call_soon_threadsafe(self._start_supervisor, ready)
        try:
            ready.result(self._connect_wait)
        except BaseException as exc:
            self._shutdown_thread()
            self._set_state("closed")
            if isinstance(exc, concurrent.futures.TimeoutError):
                raise self._no_logon_in_time() from None
            raise
        return self

    async def connect_async(self) -> FixVenue:
        """Connect and log on as `connect` does, with the session on the running loop
        instead of a thread of its own: the `_async` calls made on this loop then reach
        the session with no hop between threads (a batch of orders sent in one turn of
        the loop goes out in one write). Sync calls from other threads still work; close
        with `await close_async()`."""
        if self._loop is not None:
            return self
        self._closing = False
        self._credentials_refused = False
        self._reopen_store()
        self._loop = asyncio.get_running_loop()
        self._loop_ident = threading.get_ident()
        self._set_state("connecting")
        ready: concurrent.futures.Future[None] = concurrent.futures.Future()
        self._start_supervisor(ready)
        try:
            await asyncio.wait_for(asyncio.wrap_future(ready), self._connect_wait)
        except BaseException as exc:
            await self._stop()
            self._loop = None
            self._loop_ident = None
            self._set_state("closed")
            if isinstance(exc, asyncio.TimeoutError):
                raise self._no_logon_in_time() from None
            raise
        return self

    @property
    def _connect_wait(self) -> float:
        """How long a connect waits at most: the connection, then the Logon and the security
        list, mass status and market data asked after it."""
        return self.connect_timeout + 3 * self.request_timeout + 1.0

    def _no_logon_in_time(self) -> VenueUnavailableError:
        return VenueUnavailableError(
            f"{self.name}: no Logon from the FIX venue at {self.host}:{self.port} in time", venue=self.name)

    async def close_async(self) -> None:
        """Close from the venue's own loop (after `connect_async`), or from any loop."""
        if self._loop is None:
            return
        if self._thread is not None:
            await asyncio.to_thread(self.close)
            return
        await self._stop()
        self._loop = None
        self._loop_ident = None
        self._set_state("closed")
        self._close_store()

    def close(self) -> None:
        """Log out and stop the loop thread; requests still waiting fail (outcome unknown)."""
        loop = self._loop
        if loop is None:
            return
        if self._thread is None:  # on a caller's loop (connect_async)
            if threading.get_ident() == self._loop_ident:
                raise RuntimeError(f"{self.name}: close() on the venue's own loop would block it; await close_async()")
            asyncio.run_coroutine_threadsafe(self.close_async(), loop).result(10.0)
            return
        done: concurrent.futures.Future[None] = concurrent.futures.Future()

        async def stop() -> None:
            try:
                await self._stop()
            finally:
                done.set_result(None)

        loop.call_soon_threadsafe(lambda: asyncio.ensure_future(stop()))
        try:
            done.result(5.0)
        except concurrent.futures.TimeoutError:
            log.warning("FIX venue %s: logout did not finish in 5 s; closing anyway", self.name)
        self._shutdown_thread()
        self._set_state("closed")
        self._close_store()

    def _close_store(self) -> None:
        self._numbers.close()
        self._store_closed = True

    def _reopen_store(self) -> None:
        """A venue closed and connected again takes up its numbers where it left them."""
        if self._store_closed:
            self._numbers = self._open_store()
            self._store_closed = False

    def _shutdown_thread(self) -> None:
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5.0)
        if not thread.is_alive():
            loop.close()
        self._loop = None
        self._loop_ident = None
        self._thread = None

    def __enter__(self) -> FixVenue:
        return self.connect()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def session_info(self) -> FixSessionInfo:
        numbers = self._numbers
        return FixSessionInfo(self._state, self._peer, numbers.next_outgoing, numbers.next_incoming,
                              self._reconnects, self._last_error)

    # -- the venue interface: local reads ---------------------------------------------------------

    def instruments(self) -> Mapping[str, Instrument]:
        return self._market.instruments()

    def book(self, symbol: str, depth: int = 10) -> BookSnapshot:
        """The book as the venue's market data last said it (no round trip)."""
        return self._market.book(symbol, depth)

    async def book_async(self, symbol: str, depth: int = 10) -> BookSnapshot:
        return self._market.book(symbol, depth)

    def trades(self, symbol: str, since: float | None = None) -> list[PublicTrade]:
        """Public trades from the market data (the last 1,000 per symbol), oldest first."""
        return self._market.trades(symbol, since)

    def add_session_listener(self, listener: Callable[[str, str], None]) -> None:
        """`listener(state, detail)` on every change of the session's state (any thread)."""
        self._session_listeners = (*self._session_listeners, listener)

    def _set_state(self, state: str) -> None:
        if state == self._state:
            return
        self._state = state
        if state == "logged on":
            detail = f"{self._peer}, {self.sender_comp_id}->{self.target_comp_id}"
        else:
            detail = self._last_error or ""
        for listener in self._session_listeners:
            try:
                listener(state, detail)
            except Exception:  # a listener's bug must not take the session down
                log.exception("FIX venue %s: session listener failed", self.name)

    def add_report_listener(self, listener: ReportListener) -> None:
        self._report_listeners = (*self._report_listeners, listener)

    def remove_report_listener(self, listener: ReportListener) -> None:
        self._report_listeners = tuple(x for x in self._report_listeners if x != listener)

    def add_trade_listener(self, listener: TradeListener) -> None:
        self._market.add_trade_listener(listener)

    def remove_trade_listener(self, listener: TradeListener) -> None:
        self._market.remove_trade_listener(listener)

    # -- the venue interface: requests ----------------------------------------------------------

    def submit(self, order: Order) -> OrderResult:
        return self._wait(self._call(self._send_order, order))

    async def submit_async(self, order: Order) -> OrderResult:
        return await self._request_async(self._send_order, order)  # type: ignore[no-any-return]

    async def _request_async(self, fn: Callable[..., None], *args: Any) -> Any:
        if threading.get_ident() == self._loop_ident:
            # On the venue's own loop: the request goes now, answered through a plain
            # asyncio future (a concurrent one is chained back through the self-pipe).
            future = self._loop.create_future()  # type: ignore[union-attr]
            fn(future, *args)
            return await future
        return await asyncio.wrap_future(self._call(fn, *args))

    def cancel(self, client_order_id: str) -> OrderResult:
        return self._wait(self._call(self._send_cancel, client_order_id))

    async def cancel_async(self, client_order_id: str) -> OrderResult:
        return await self._request_async(self._send_cancel, client_order_id)

    def amend(self, client_order_id: str, quantity: float | None = None, price: float | None = None) -> OrderResult:
        return self._wait(self._call(self._send_amend, client_order_id, quantity, price))

    async def amend_async(
        self, client_order_id: str, quantity: float | None = None, price: float | None = None
    ) -> OrderResult:
        return await self._request_async(self._send_amend, client_order_id, quantity, price)

    def status(self, client_order_id: str) -> OrderResult:
        """Raises UnknownOrderError when the venue does not know the order."""
        return self._wait(self._call(self._send_status, client_order_id))

    async def status_async(self, client_order_id: str) -> OrderResult:
        return await self._request_async(self._send_status, client_order_id)

    def open_orders(self, symbol: str | None = None) -> list[OrderResult]:
        return self._wait(self._call(self._send_mass_status, symbol))

    async def open_orders_async(self, symbol: str | None = None) -> list[OrderResult]:
        return await self._request_async(self._send_mass_status, symbol)

    def _call(self, fn: Callable[..., None], *args: Any) -> concurrent.futures.Future[Any]:
        """Run `fn(future, *args)` on the venue's loop; the future carries its answer."""
        future: concurrent.futures.Future[Any] = concurrent.futures.Future()
        loop = self._loop
        if loop is None:
            future.set_exception(VenueUnavailableError(
                f"{self.name}: not connected to the FIX venue at {self.host}:{self.port} (call connect()); "
                "nothing was sent", venue=self.name))
            return future
        self._inbox.append((fn, (future, *args)))
        if not self._inbox_scheduled:
            self._inbox_scheduled = True
            try:
                loop.call_soon_threadsafe(self._drain_inbox)
            except RuntimeError:  # the loop closed under us
                self._inbox_scheduled = False
                self._fail_inbox()
        return future

    def _wait(self, future: concurrent.futures.Future[Any]) -> Any:
        if threading.get_ident() == self._loop_ident:
            raise RuntimeError(f"{self.name}: a sync FixVenue call on its own loop thread would deadlock; "
                               "await the _async form")
        try:
            # Every request has its own deadline on the loop; this one only guards a dead loop.
            return future.result(self.request_timeout * 3 + self.connect_timeout + 5.0)
        except concurrent.futures.TimeoutError:
            raise UnknownOutcomeError(f"{self.name}: the FIX venue's loop did not answer", venue=self.name) from None

    def _drain_inbox(self) -> None:
        self._inbox_scheduled = False
        inbox = self._inbox
        while inbox:
            fn, args = inbox.popleft()
            future = args[0]
            if not future.set_running_or_notify_cancel():
                continue
            try:
                fn(*args)
            except Exception as exc:  # a bug must reach the caller, not kill the loop
                log.exception("FIX venue %s: request failed", self.name)
                if not future.done():
                    future.set_exception(exc)

    def _fail_inbox(self) -> None:
        while self._inbox:
            _, args = self._inbox.popleft()
            if not args[0].done():
                args[0].set_exception(VenueUnavailableError(f"{self.name}: the venue is closed; nothing was sent",
                                                            venue=self.name))

    # -- sending (on the loop) -------------------------------------------------------------------

    def _not_logged_on(self, future: concurrent.futures.Future[Any]) -> bool:
        conn = self._conn
        if conn is not None and conn.session.status is SessionStatus.ACTIVE:
            return False
        why = f" ({self._last_error})" if self._last_error else ""
        future.set_exception(VenueUnavailableError(
            f"{self.name}: not logged on to the FIX venue at {self.host}:{self.port}, "
            f"{self._state}{why}; nothing was sent", venue=self.name))
        return True

    def _send(self, req: _Request, msg_type: MsgType, body: list[tuple[int, FieldValue]]) -> None:
        conn = self._conn
        assert conn is not None
        seq = self._numbers.next_outgoing
        req.seq = seq
        req.sent_ns = time.perf_counter_ns()
        self._pending[req.key] = req
        self._by_seq[seq] = req
        self._due(req)
        conn.send(msg_type, body)

    def _send_order(self, future: concurrent.futures.Future[Any], order: Order) -> None:
        if self._not_logged_on(future):
            return
        cid = order.client_order_id or order.id
        if cid in self._tracks or cid in self._pending:
            future.set_result(OrderResult(
                cid, self.name, OrderStatus.REJECTED, order.quantity,
                reason=f"duplicate ClOrdID {cid!r}: an order with it is still working at {self.name}; "
                "no new order was made", symbol=order.symbol, side=order.side, price=order.price,
                timestamp=self._clock()))
            return
        if order.type is OrderType.MARKET:
            ord_type = "1"
        elif order.type is OrderType.LIMIT:
            ord_type = "2"
        else:
            future.set_result(OrderResult(
                cid, self.name, OrderStatus.REJECTED, order.quantity,
                reason=f"order type {order.type.value} is not sent over FIX (MARKET, LIMIT)",
                symbol=order.symbol, side=order.side, price=order.price, timestamp=self._clock()))
            return
        # Plain int tags and str values: the session store keeps the body, and tuples of
        # plain values drop out of the cycle collector's walks.
        body: list[tuple[int, FieldValue]] = [
            (11, cid), (55, order.symbol), (54, _SIDE_CODES[order.side]), (38, fix_number(order.quantity)),
            (40, ord_type), (59, _TIF_CODES[order.time_in_force]),
        ]
        if order.price is not None:
            body.append((44, fix_number(order.price)))
        if order.expire_at is not None:
            body.append((Tag.ExpireTime, utc_timestamp(order.expire_at)))
        if self.destination:
            body.append((Tag.ExDestination, self.destination))
        body.append((60, utc_timestamp(self._clock())))
        track = _Track(cid, order.symbol, order.side, order.quantity, order.price, ord_type)
        self._tracks[cid] = track
        self._send(_Request("D", cid, future, track), MsgType.NEW_ORDER_SINGLE, body)

    def _track_of(self, cid: str) -> _Track | None:
        return self._tracks.get(cid) or self._finished.get(cid)

    def _send_cancel(self, future: concurrent.futures.Future[Any], cid: str) -> None:
        if self._not_logged_on(future):
            return
        track = self._track_of(cid)
        wire = f"{cid}.c{next(self._ids)}-{self._wire_tag}"
        body: list[tuple[int, FieldValue]] = [
            (Tag.ClOrdID, wire), (Tag.OrigClOrdID, track.wire_id if track else cid)]
        if track is not None:
            body += [(Tag.Symbol, track.symbol), (Tag.Side, _SIDE_CODES[track.side])]
        body.append((Tag.TransactTime, utc_timestamp(self._clock())))
        req = _Request("F", wire, future, track)
        req.extra = cid
        self._send(req, MsgType.ORDER_CANCEL_REQUEST, body)

    def _send_amend(self, future: concurrent.futures.Future[Any], cid: str, quantity: float | None,
                    price: float | None) -> None:
        if self._not_logged_on(future):
            return
        track = self._track_of(cid)
        if track is None or quantity is None and price is None:
            why = (f"order {cid!r} is not known at {self.name}" if track is None
                   else "give a new quantity or a new price")
            future.set_result(OrderResult(cid, self.name, OrderStatus.REJECTED,
                                          reason=f"amend of {cid!r} refused: {why}; the order is unchanged",
                                          timestamp=self._clock()))
            return
        wire = f"{cid}.r{next(self._ids)}-{self._wire_tag}"
        new_qty = track.quantity if quantity is None else quantity
        new_px = track.price if price is None else price
        try:
            body: list[tuple[int, FieldValue]] = [
                (Tag.ClOrdID, wire), (Tag.OrigClOrdID, track.wire_id), (Tag.Symbol, track.symbol),
                (Tag.Side, _SIDE_CODES[track.side]), (Tag.OrderQty, fix_number(new_qty)), (Tag.OrdType, track.ord_type),
            ]
            if new_px is not None:
                body.append((Tag.Price, fix_number(new_px)))
        except (TypeError, ValueError) as exc:
            future.set_result(track.result(OrderStatus.REJECTED, [], f"amend of {cid!r} refused: {exc}; "
                                           "the order is unchanged", self.name, self._clock()))
            return
        body.append((Tag.TransactTime, utc_timestamp(self._clock())))
        req = _Request("G", wire, future, track)
        req.extra = (new_qty, new_px)
        self._aliases[wire] = cid
        self._send(req, MsgType.ORDER_CANCEL_REPLACE_REQUEST, body)

    def _send_status(self, future: concurrent.futures.Future[Any], cid: str) -> None:
        if self._not_logged_on(future):
            return
        track = self._track_of(cid)
        rid = f"S{next(self._ids)}"
        body: list[tuple[int, FieldValue]] = [(Tag.ClOrdID, track.wire_id if track else cid)]
        if track is not None:
            body += [(Tag.Symbol, track.symbol), (Tag.Side, _SIDE_CODES[track.side])]
        body.append((Tag.OrdStatusReqID, rid))
        req = _Request("H", rid, future, track)
        req.extra = cid
        self._send(req, MsgType.ORDER_STATUS_REQUEST, body)

    def _send_mass_status(self, future: concurrent.futures.Future[Any], symbol: str | None) -> None:
        if self._not_logged_on(future):
            return
        rid = f"M{next(self._ids)}"
        body: list[tuple[int, FieldValue]] = [(Tag.MassStatusReqID, rid), (Tag.MassStatusReqType, "1" if symbol else "7")]
        if symbol:
            body.append((Tag.Symbol, symbol))
        req = _Request("AFU", rid, future, None)
        req.extra = symbol
        self._send(req, MsgType.ORDER_MASS_STATUS_REQUEST, body)

    def _local_open_orders(self, symbol: str | None) -> list[OrderResult]:
        """Working orders as this session last heard (for a venue that does not answer AF)."""
        now = self._clock()
        return [t.result(None, None, None, self.name, now) for t in self._tracks.values()
                if t.status.is_working and (symbol is None or t.symbol == symbol)]

    # -- answers (on the loop) ---------------------------------------------------------------------

    def _settle(self, req: _Request, result: Any = None, error: BaseException | None = None) -> None:
        """The request is answered: forget it and hand its caller the result or error."""
        if self._pending.get(req.key) is req:
            del self._pending[req.key]
        if self._by_seq.get(req.seq) is req:
            del self._by_seq[req.seq]
        req.settled = True
        if req.future.done():
            return
        if error is not None:
            req.future.set_exception(error)
        else:
            req.future.set_result(result)

    def _due(self, req: _Request) -> None:
        """`req` is answered within `request_timeout`, or `_expire`d. Every request has the
        same timeout, so their deadlines come in the order they were sent: one queue and
        one loop timer (for the oldest) serve them all, where a timer each would cost a
        heap push and a cancel per request."""
        loop = self._loop
        assert loop is not None
        queue = self._deadlines
        while queue and queue[0].settled:  # answered already: nothing to watch
            queue.popleft()
        req.deadline = loop.time() + self.request_timeout
        queue.append(req)
        if self._deadline_timer is None:
            self._deadline_timer = loop.call_at(queue[0].deadline, self._check_deadlines)

    def _check_deadlines(self) -> None:
        self._deadline_timer = None
        loop = self._loop
        if loop is None:
            return
        now = loop.time()
        queue = self._deadlines
        while queue:
            req = queue[0]
            if req.settled:
                queue.popleft()
            elif req.deadline <= now:
                queue.popleft()
                self._expire(req)
            else:
                self._deadline_timer = loop.call_at(req.deadline, self._check_deadlines)
                return

    def _expire(self, req: _Request) -> None:
        what = {"D": f"order {req.key!r}", "F": f"cancel of {req.extra!r}", "G": f"amend {req.key!r}",
                "H": f"status of {req.extra!r}", "AF": "mass status", "x": "security list"}.get(req.kind, req.kind)
        self._settle(req, error=UnknownOutcomeError(
            f"{self.name}: no answer to the {what} within {self.request_timeout:g} s", venue=self.name))

    def _on_message(self, msg: Message) -> None:
        kind = msg.msg_type
        try:
            if kind == "8":
                self._on_execution_report(msg)
            elif kind == "X":
                self._market.apply_incremental(msg)
            elif kind == "W":
                self._on_md_snapshot(msg)
            elif kind == "9":
                self._on_cancel_reject(msg)
            elif kind == "y":
                self._on_security_list(msg)
            elif kind == "j":
                self._on_business_reject(msg)
            elif kind == "Y":
                log.warning("FIX venue %s: market data refused: %s", self.name, msg.get(Tag.Text, ""))
            else:
                log.info("FIX venue %s: ignored a %s message", self.name, kind)
        except Exception:  # one message we cannot read must not end the session
            log.exception("FIX venue %s: could not handle %r", self.name, msg)

    def _end_of_read_later(self) -> None:
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self._loop.call_soon(self._end_of_read)  # type: ignore[union-attr]

    def _end_of_read(self) -> None:
        """The read that brought a submit's (or amend's) first ERs is over: answer it. A
        read that filled the driver's buffer was cut by its size, not by the venue: the
        answer waits for the read after it (once; a short read ends the wait)."""
        conn = self._conn
        if conn is not None and conn.last_read_full and self._end_deferred_at != conn.reads:
            self._end_deferred_at = conn.reads
            self._loop.call_soon(self._end_of_read)  # type: ignore[union-attr]
            return
        self._flush_scheduled = False
        touched, self._touched = self._touched, []
        now = self._clock()
        for req in touched:
            req.touched = False
            if req.future.done():
                continue
            track = req.track
            assert track is not None
            if req.kind == "D":
                result = track.result(None, req.fills, req.reason, self.name, now)
            else:  # G
                result = track.result(None, req.fills, None, self.name, now)
            result.ack_latency_ns = req.answer_ns - req.sent_ns
            self._settle(req, result)
            if track.status.is_final:
                self._finish(track)

    def _touch(self, req: _Request) -> None:
        if not req.answer_ns:
            req.answer_ns = time.perf_counter_ns()
        if not req.touched:
            req.touched = True
            self._touched.append(req)
            self._end_of_read_later()

    def _on_execution_report(self, msg: Message) -> None:
        exec_type = msg.get(Tag.ExecType)
        wire = msg.get(Tag.ClOrdID) or ""
        if exec_type == "I":
            self._on_status_report(msg)
            return
        req = self._pending.get(wire)
        known = req.track if req is not None and req.track is not None else self._track_for_wire(msg, wire)
        problem = _report_problem(msg, known.quantity if known is not None else 0.0)
        if problem is not None:
            # Nothing of it is believed: a request it would answer times out and is settled
            # by a status query, as a lost answer is.
            log.warning("FIX venue %s: execution report for %s ignored: %s", self.name, wire, problem)
            return
        if req is not None and req.kind == "D":
            self._on_order_answer(req, msg, exec_type)
            return
        if req is not None and req.kind == "F":
            track = req.track or self._track_of(req.extra)
            if exec_type != "4":
                # The order's own news while its cancel is pending (FIX 4.4 reports a fill
                # under the cancel's ClOrdID): applied to the order; the cancel still waits.
                if track is not None:
                    self._apply(track, msg, push=True)
                return
            if track is not None:
                self._apply(track, msg, push=False)
                self._finish(track)
                self._settle(req, track.result(OrderStatus.CANCELED, None, msg.get(Tag.Text), self.name, self._clock()))
            else:
                self._settle(req, OrderResult(req.extra, self.name, OrderStatus.CANCELED,
                                              as_float(msg.get(Tag.OrderQty)), as_float(msg.get(Tag.CumQty)),
                                              reason=msg.get(Tag.Text), timestamp=self._clock()))
            return
        if req is not None and req.kind == "G" and exec_type == "5":
            track = req.track
            assert track is not None
            track.quantity = as_float(msg.get(Tag.OrderQty), track.quantity)
            if Tag.Price in msg:
                track.price = as_float(msg.get(Tag.Price), track.price or 0.0)
            track.wire_id = wire
            self._apply(track, msg, push=False)
            self._touch(req)
            return
        track = known
        if track is None:
            log.info("FIX venue %s: ER for an order not sent from here: %s", self.name, wire)
            return
        replace = next((r for r in self._touched if r.kind == "G" and r.track is track), None)
        if replace is not None and exec_type == "F":  # an amend's own fills, in the same read
            fill = self._apply(track, msg, push=False, immediate=True)
            if fill is not None:
                replace.fills.append(fill)
            return
        self._apply(track, msg, push=True)

    def _track_for_wire(self, msg: Message, wire: str) -> _Track | None:
        """The order an ER is about, by its ClOrdID (ours, a replace's) or its OrigClOrdID."""
        cid = self._aliases.get(wire, wire)
        track = self._tracks.get(cid) or self._finished.get(cid)
        if track is None:
            orig = msg.get(Tag.OrigClOrdID)
            track = self._tracks.get(self._aliases.get(orig, orig)) if orig else None
        return track

    def _on_order_answer(self, req: _Request, msg: Message, exec_type: str | None) -> None:
        track = req.track
        assert track is not None
        if exec_type == "8" or msg.get(Tag.OrdStatus) == "8":
            reason = msg.get(Tag.Text) or "rejected by the venue"
            del self._tracks[track.cid]
            result = track.result(OrderStatus.REJECTED, [], reason, self.name, self._clock())
            result.quantity = track.quantity
            self._settle(req, result)
            return
        fill = self._apply(track, msg, push=False, immediate=True)
        if fill is not None:
            req.fills.append(fill)
        if exec_type in ("C", "4", "3") and msg.get(Tag.Text):
            req.reason = msg.get(Tag.Text)
        if track.status.is_final:
            result = track.result(None, req.fills, req.reason, self.name, self._clock())
            result.ack_latency_ns = (req.answer_ns or time.perf_counter_ns()) - req.sent_ns
            self._settle(req, result)
            self._finish(track)
        else:
            self._touch(req)

    def _apply(self, track: _Track, msg: Message, *, push: bool, immediate: bool = False,
               synthesize: bool = False) -> Fill | None:
        """Merge an ER into the order; returns the new fill, if it brought one. With `push`,
        the listeners hear of a new fill or a new state."""
        status = _STATUS.get(msg.get(Tag.OrdStatus) or "", track.status)
        if track.status.is_final and not status.is_final:
            status = track.status  # a final state never changes
        elif not status.is_final and _RANK.get(status, 0) < _RANK.get(track.status, 0):
            status = track.status
        cum = as_float(msg.get(Tag.CumQty), track.cum)
        order_id = msg.get(Tag.OrderID)
        if order_id and order_id != "NONE":
            track.order_id = order_id
        fill = None
        if cum > track.cum + 1e-12:
            now = self._clock()
            avg = as_float(msg.get(Tag.AvgPx)) or None
            last_qty = as_float(msg.get(Tag.LastQty))
            if last_qty and Tag.LastPx in msg and not synthesize:
                qty, px = last_qty, as_float(msg.get(Tag.LastPx))
                trade_id = msg.get(Tag.TradeID) or f"{track.order_id or track.cid}/{msg.get(Tag.ExecID, '')}"
            else:  # learned by status: the fill(s) missed, as one, at the price they averaged
                qty = cum - track.cum
                px = ((avg or 0.0) * cum - (track.avg or 0.0) * track.cum) / qty if avg else (track.price or 0.0)
                trade_id = f"{track.order_id or track.cid}/sync-{fix_number(cum)}"
            ind = msg.get(Tag.LastLiquidityInd)
            liquidity = (Liquidity.MAKER if ind == "1" else Liquidity.TAKER if ind == "2"
                         else Liquidity.TAKER if immediate else Liquidity.MAKER)
            fee = as_float(msg.get(Tag.Commission)) if Tag.Commission in msg else self.fees.fee(px * qty, liquidity)
            fill = Fill(track.cid, self.name, track.symbol, track.side, px, qty, fee, liquidity,
                        parse_utc(msg.get(Tag.TransactTime)) or now, trade_id)
            track.fills.append(fill)
            track.cum = cum
            track.avg = avg if avg is not None else track.avg
        changed = status is not track.status
        track.status = status
        if push and (fill is not None or changed):
            reason = msg.get(Tag.Text) if status.is_final else None
            leaves = 0.0 if status.is_final else max(as_float(msg.get(Tag.LeavesQty), track.quantity - track.cum), 0.0)
            self._emit(ExecutionReport(self.name, track.cid, track.symbol, status, track.cum, leaves,
                                       fill.timestamp if fill else self._clock(), fill, reason))
        if status.is_final and push:
            self._finish(track)
        return fill

    def _finish(self, track: _Track) -> None:
        if self._tracks.pop(track.cid, None) is not None:
            self._finished[track.cid] = track
            if len(self._finished) > _FINISHED_KEPT:
                _, old = self._finished.popitem(last=False)
                if old.wire_id != old.cid:
                    self._aliases.pop(old.wire_id, None)

    def _emit(self, report: ExecutionReport) -> None:
        for listener in self._report_listeners:
            try:
                listener(report)
            except Exception:
                log.exception("FIX venue %s: report listener failed", self.name)

    def _on_cancel_reject(self, msg: Message) -> None:
        req = self._pending.get(msg.get(Tag.ClOrdID) or "")
        if req is None or req.kind not in ("F", "G"):
            log.info("FIX venue %s: OrderCancelReject for no request of ours: %s", self.name, msg.get(Tag.Text))
            return
        self._refused(req, msg.get(Tag.Text) or "refused by the venue")

    def _refused(self, req: _Request, text: str) -> None:
        now = self._clock()
        if req.kind == "F":
            cid = req.extra
            reason = text if text.startswith("cancel refused") else f"cancel refused: {text}"
        else:
            cid = req.track.cid if req.track else req.key
            self._aliases.pop(req.key, None)
            reason = text if text.startswith("amend of") else f"amend of {cid!r} refused: {text}"
        track = req.track or self._track_of(cid)
        if track is not None:
            self._settle(req, track.result(OrderStatus.REJECTED, None, reason, self.name, now))
        else:
            self._settle(req, OrderResult(cid, self.name, OrderStatus.REJECTED, reason=reason, timestamp=now))

    def _on_status_report(self, msg: Message) -> None:
        mass_id = msg.get(Tag.MassStatusReqID)
        if mass_id is not None:
            req = self._pending.get(mass_id)
            if req is None:
                return
            if msg.get(Tag.ClOrdID) != "NONE" and msg.get(Tag.OrderID) != "NONE":
                req.items.append(msg)
            total = as_float(msg.get(Tag.TotNumReports), -1)
            if msg.get(Tag.LastRptRequested) == "Y" or 0 <= total <= len(req.items):
                if req.kind == "AF":
                    self._settle(req, list(req.items))
                else:
                    self._settle(req, [self._status_result(self._aliases.get(w, w), m, self._tracks.get(
                        self._aliases.get(w, w))) for m in req.items for w in (m.get(Tag.ClOrdID) or "",)])
            return
        rid = msg.get(Tag.OrdStatusReqID)
        req = self._pending.get(rid) if rid else None
        if req is None:  # a counterparty that does not echo OrdStatusReqID: the oldest status asked of it
            wire = msg.get(Tag.ClOrdID)
            req = next((r for r in self._pending.values() if r.kind in ("H", "HR") and
                        (r.track.wire_id if r.track else r.extra) == wire), None)
        if req is None:
            return
        cid = req.extra
        if msg.get(Tag.OrderID) == "NONE" or (msg.get(Tag.OrdStatus) == "8" and
                                               (msg.get(Tag.Text) or "").endswith("is not known")):
            self._settle(req, error=UnknownOrderError(
                f"order {cid!r} is not known at {self.name}: {msg.get(Tag.Text) or 'no such order'}"))
        elif req.kind == "HR":
            self._settle(req, msg)
        else:
            result = self._status_result(cid, msg, req.track)
            if req.track is None and self._track_of(cid) is None and result.status.is_working:
                self._adopt(cid, msg, result)
            self._settle(req, result)

    def _adopt(self, cid: str, msg: Message, result: OrderResult) -> None:
        """A working order this session did not send (a restarted desk asking about an order
        its previous process sent): tracked from now on, so its reports, cancel and amend
        reach it. Its fills so far are in the venue's CumQty/AvgPx, not in the track's fills."""
        side = result.side
        if side is None or not result.symbol or not result.quantity > 0:
            return
        track = _Track(cid, result.symbol, side, result.quantity, result.price,
                       msg.get(Tag.OrdType) or ("2" if result.price is not None else "1"))
        track.wire_id = msg.get(Tag.ClOrdID) or cid
        if track.wire_id != cid:
            self._aliases[track.wire_id] = cid
        track.status = result.status
        track.cum = result.filled_quantity
        track.avg = result.average_price
        track.order_id = msg.get(Tag.OrderID) or ""
        self._tracks[cid] = track

    def _status_result(self, cid: str, msg: Message, track: _Track | None) -> OrderResult:
        status = _STATUS.get(msg.get(Tag.OrdStatus) or "", OrderStatus.NEW)
        cum = as_float(msg.get(Tag.CumQty))
        avg = as_float(msg.get(Tag.AvgPx)) or None
        side = _SIDES.get(msg.get(Tag.Side) or "")
        price = as_float(msg.get(Tag.Price)) if Tag.Price in msg else None
        fills = list(track.fills) if track is not None else []
        return OrderResult(cid, self.name, status, as_float(msg.get(Tag.OrderQty)), cum, avg if cum else None, fills,
                           msg.get(Tag.Text), msg.get(Tag.Symbol) or "", side, price, self._clock())

    def _on_business_reject(self, msg: Message) -> None:
        ref = msg.get(Tag.RefSeqNum)
        req = self._by_seq.get(int(ref)) if ref and ref.isdigit() else None
        text = msg.get(Tag.Text) or f"BusinessMessageReject reason {msg.get(Tag.BusinessRejectReason)}"
        if req is None:
            log.warning("FIX venue %s: BusinessMessageReject of message %s: %s", self.name, ref, text)
            return
        self._rejected_request(req, text)

    def _rejected_request(self, req: _Request, text: str) -> None:
        """The venue refused our message itself (Reject 3 or BusinessMessageReject j)."""
        if req.kind == "D":
            track = req.track
            assert track is not None
            self._tracks.pop(track.cid, None)
            self._settle(req, track.result(OrderStatus.REJECTED, [], f"{self.name} refused the order: {text}",
                                           self.name, self._clock()))
        elif req.kind in ("F", "G"):
            self._refused(req, text)
        elif req.kind == "AFU":
            log.info("FIX venue %s: no mass status (%s); open orders as last heard", self.name, text)
            self._settle(req, self._local_open_orders(req.extra))
        else:
            self._settle(req, error=PermanentVenueError(
                f"{self.name} refused the {req.kind} request: {text}", venue=self.name))

    # -- instruments, books, trades ----------------------------------------------------------------

    def _on_security_list(self, msg: Message) -> None:
        req = self._pending.get(msg.get(Tag.SecurityReqID) or "")
        result = msg.get(Tag.SecurityRequestResult, "0")
        if result != "0":
            if req is not None:
                self._settle(req, error=PermanentVenueError(
                    f"{self.name}: security list refused (SecurityRequestResult {result}): {msg.get(Tag.Text, '')}"))
            return
        venue, fees, problems = self._market.apply_security_list(msg, self.destination)
        for problem in problems:
            self._last_error = problem
            log.warning("FIX venue %s: %s", self.name, problem)
        if fees is not None and not self._fees_given:
            self.fees = fees
        if req is not None:
            req.items.append(msg)
            if msg.get(893, "Y") == "Y":
                self._settle(req, venue)

    def _on_md_snapshot(self, msg: Message) -> None:
        symbol = self._market.apply_snapshot(msg)
        if symbol is not None:
            self._md_waiting.discard(symbol)

    # -- the connection (on the loop) --------------------------------------------------------------

    def _start_supervisor(self, ready: concurrent.futures.Future[None]) -> None:
        self._supervisor = asyncio.ensure_future(self._supervise(ready))

    def _new_session(self) -> FixSession:
        config = SessionConfig(self.sender_comp_id, self.target_comp_id, heart_bt_int=self.heart_bt_int,
                               answer_timeout=self.connect_timeout, password=self._password)
        config.resend_application = False  # orders are reconciled by status, never resent
        # A store that never logged on has no numbers to offer: both sides start at 1.
        config.reset_on_logon = self._numbers.next_outgoing == 1 and self._numbers.next_incoming == 1
        if self._accept_reset:
            self._accept_reset = False
            log.warning("FIX venue %s: the counterparty's numbers restarted; expecting 1 again", self.name)
            self._numbers.next_incoming = 1
        return FixSession(config, Role.INITIATOR, self._numbers)

    async def _supervise(self, ready: concurrent.futures.Future[None]) -> None:
        delay = _BACKOFF_FIRST
        while True:
            try:
                logged_on = await self._run_connection(ready)
            except Exception as exc:  # never let the supervisor die silently
                log.exception("FIX venue %s: connection failed", self.name)
                self._last_error = f"{type(exc).__name__}: {exc}"
                logged_on = False
                if not ready.done():
                    ready.set_exception(VenueUnavailableError(f"{self.name}: {self._last_error}", venue=self.name))
            if ready.exception() is not None or self._closing or not self._reconnect or self._credentials_refused:
                self._set_state("closed")
                return  # the first connect failed (connect() raised), or we are done
            self._set_state("reconnecting")
            if logged_on:
                delay = _BACKOFF_FIRST
            await asyncio.sleep(delay)
            if not logged_on:
                delay = min(delay * 2, _BACKOFF_MAX)
            self._reconnects += 1

    async def _run_connection(self, ready: concurrent.futures.Future[None]) -> bool:
        """One connection: connect, log on, set up, run until it ends. True if it logged on."""
        session = self._new_session()
        self._generation += 1
        generation = self._generation
        self._close_text = ""
        conn = FixConnection(session, on_message=self._on_message,
                             on_event=lambda event: self._on_event(event, generation, conn), clock=self._clock,
                             read_size=_READ_SIZE)
        try:
            await asyncio.wait_for(asyncio.get_running_loop().create_connection(lambda: conn, self.host, self.port),
                                   self.connect_timeout)
        except (OSError, asyncio.TimeoutError) as exc:
            cause = "timed out" if isinstance(exc, asyncio.TimeoutError) else str(exc)
            self._last_error = f"cannot connect to {self.host}:{self.port}: {cause}"
            if not ready.done():
                ready.set_exception(VenueUnavailableError(
                    f"{self.name}: the FIX venue at {self.host}:{self.port} cannot be reached: {cause}",
                    venue=self.name))
            return False
        task = asyncio.ensure_future(conn.run())
        self._peer = conn.peer
        logon = asyncio.ensure_future(conn.logged_on.wait())
        closed = asyncio.ensure_future(conn.closed.wait())
        await asyncio.wait({logon, closed}, timeout=self.connect_timeout, return_when=asyncio.FIRST_COMPLETED)
        logon.cancel()
        closed.cancel()
        if not conn.logged_on.is_set():
            text = self._close_text or "no Logon answer in time"
            if text == BAD_CREDENTIALS:
                # Retrying with the same password only hammers the venue (and may lock
                # the account at a real one): stop, and say so.
                self._credentials_refused = True
                self._last_error = f"venue {self.name} refused our logon: bad credentials"
                log.error("FIX venue %s: %s at %s:%d as %s; not reconnecting", self.name, self._last_error,
                          self.host, self.port, self.sender_comp_id)
                await asyncio.wait({task}, timeout=2.0)
                if not ready.done():
                    ready.set_exception(BadCredentialsError(self._last_error, venue=self.name))
                return False
            self._last_error = f"Logon to {self.host}:{self.port} as {self.sender_comp_id}->{self.target_comp_id} " \
                               f"failed: {text}"
            conn.logout("no Logon")
            await asyncio.wait({task}, timeout=2.0)
            if "MsgSeqNum too low" in text and not text.startswith("Logon refused"):
                # Our session said it: *their* numbers went back (a venue restarted without
                # its state). When the venue says it of ours, it is told in the error.
                self._accept_reset = True
                if not ready.done():  # the first connect tries once more at once
                    return await self._run_connection(ready)
            if not ready.done():
                ready.set_exception(VenueUnavailableError(
                    f"{self.name}: the FIX venue at {self.host}:{self.port} refused the Logon: {text}",
                    venue=self.name))
            return False
        self._conn = conn
        self._last_error = None
        self._set_state("logged on")
        try:
            await self._after_logon(first=not ready.done())
        except VenueError as exc:
            self._last_error = str(exc)
            log.warning("FIX venue %s: after Logon: %s", self.name, exc)
        if not ready.done():
            ready.set_result(None)
        await asyncio.wait({task})
        self._dropped(generation, self._close_text or "connection closed")
        return True

    def _on_event(self, event: SessionEvent, generation: int, conn: FixConnection) -> None:
        if event.kind in ("closed", "logged_out") and event.text:
            self._close_text = event.text
        if event.kind == "logged_on":
            if generation == self._generation and not self._closing:
                # Usable from the Logon on: what arrives with it (a resent answer) may
                # settle a request before the supervisor's turn comes.
                self._conn = conn
                self._peer = conn.peer
                self._set_state("logged on")
        elif event.kind == "closed":
            self._dropped(generation, event.text)
        elif event.kind == "rejected_ours" and event.seq_num is not None:
            req = self._by_seq.get(event.seq_num)
            if req is not None:
                self._rejected_request(req, f"Reject (3): {event.text}")
        elif event.kind in ("gap", "garbled", "rejected_theirs"):
            log.info("FIX venue %s: %s %s", self.name, event.kind, event.text)

    def _dropped(self, generation: int, text: str) -> None:
        """The connection of `generation` ended: fail what cannot survive it."""
        if generation != self._generation or self._conn is None:
            return
        self._conn = None
        if not self._closing:
            self._last_error = text if text.startswith("connection lost") else f"connection lost: {text}"
            self._set_state("reconnecting" if self._reconnect else "closed")
            log.warning("FIX venue %s: %s", self.name, self._last_error)
        for req in list(self._pending.values()):
            if req.kind == "D" and not self._closing:
                continue  # settled by status after the next Logon, or by its deadline
            if req.kind in ("H", "AF", "x"):
                error: VenueError = TransientVenueError(
                    f"{self.name}: the connection dropped before the answer ({text})", venue=self.name)
            else:
                error = UnknownOutcomeError(
                    f"{self.name}: the connection dropped after the request went out ({text}); "
                    "outcome unknown until a status query", venue=self.name)
            self._settle(req, error=error)

    async def _ask(self, fn: Callable[..., None], *args: Any) -> Any:
        future: concurrent.futures.Future[Any] = concurrent.futures.Future()
        future.set_running_or_notify_cancel()
        fn(future, *args)
        return await asyncio.wrap_future(future)

    async def _after_logon(self, *, first: bool) -> None:
        if first or not self._market.instruments():
            future: concurrent.futures.Future[Any] = concurrent.futures.Future()
            future.set_running_or_notify_cancel()
            if not self._not_logged_on(future):
                rid = f"L{next(self._ids)}"
                self._send(_Request("x", rid, future, None), MsgType.SECURITY_LIST_REQUEST,
                           [(Tag.SecurityReqID, rid), (Tag.SecurityListRequestType, "4")])
            try:
                self._market.venue_name = await asyncio.wrap_future(future)
            except VenueError as exc:
                self._last_error = f"no security list: {exc}"
                log.warning("FIX venue %s: %s", self.name, self._last_error)
        if self.destination:
            self._market.venue_name = self.destination
        if self._market_data and self._market.instruments() and self._conn is not None:
            await self._subscribe(wait=first)
        if not first:
            await self._reconcile()

    async def _subscribe(self, *, wait: bool) -> None:
        conn = self._conn
        assert conn is not None
        symbols = list(self._market.instruments())
        self._md_waiting = set(symbols)
        body: list[tuple[int, FieldValue]] = [
            (Tag.MDReqID, f"MD{next(self._ids)}"), (Tag.SubscriptionRequestType, "1"), (Tag.MarketDepth, "10"),
            (Tag.MDUpdateType, "1"), (Tag.NoMDEntryTypes, "3"), (Tag.MDEntryType, "0"), (Tag.MDEntryType, "1"),
            (Tag.MDEntryType, "2"), (Tag.NoRelatedSym, str(len(symbols))),
        ]
        for symbol in symbols:
            body.append((Tag.Symbol, symbol))
            if self._market.venue_name:
                body.append((Tag.SecurityExchange, self._market.venue_name))
        conn.send(MsgType.MARKET_DATA_REQUEST, body)
        if not wait:
            return
        deadline = time.monotonic() + self.request_timeout
        while self._md_waiting and time.monotonic() < deadline and self._conn is conn:
            await asyncio.sleep(0.005)

    async def _reconcile(self) -> None:
        """After a re-Logon: learn what happened to every order in flight or working."""
        tracks = list(self._tracks.values())
        if not tracks:
            return
        seen: set[str] = set()
        try:
            reports = await self._ask(self._send_mass_status_raw)
            for msg in reports:
                wire = msg.get(Tag.ClOrdID) or ""
                track = self._tracks.get(self._aliases.get(wire, wire))
                if track is not None:
                    seen.add(track.cid)
                    self._settled_by_status(track, msg)
        except VenueError as exc:
            log.info("FIX venue %s: no mass status (%s); asking per order", self.name, exc)
        rest = [t for t in tracks if t.cid not in seen and self._tracks.get(t.cid) is t]
        answers = await asyncio.gather(*(self._ask(self._send_status_raw, t) for t in rest), return_exceptions=True)
        for track, answer in zip(rest, answers):
            if isinstance(answer, Message):
                self._settled_by_status(track, answer)
            elif isinstance(answer, UnknownOrderError):
                req = self._pending.get(track.cid)
                if req is not None and req.kind == "D":
                    self._tracks.pop(track.cid, None)
                    self._settle(req, error=TransientVenueError(
                        f"{self.name}: order {track.cid!r} never reached the venue (status query after a "
                        "reconnect: not known); nothing was placed, safe to send again", venue=self.name))
                else:
                    # Acknowledged before the drop, unknown now (a venue restarted without its
                    # state): it works nowhere, and whoever waits for its end must hear it.
                    track.status = OrderStatus.CANCELED
                    self._emit(ExecutionReport(
                        self.name, track.cid, track.symbol, OrderStatus.CANCELED, track.cum, 0.0, self._clock(),
                        None, f"{self.name} no longer knows the order after the reconnect (it restarted "
                        "without its state?): it works nowhere"))
                    self._finish(track)
            else:
                log.warning("FIX venue %s: reconcile of %s: %s", self.name, track.cid, answer)

    def _send_mass_status_raw(self, future: concurrent.futures.Future[Any]) -> None:
        if self._not_logged_on(future):
            return
        rid = f"M{next(self._ids)}"
        self._send(_Request("AF", rid, future, None), MsgType.ORDER_MASS_STATUS_REQUEST,
                   [(Tag.MassStatusReqID, rid), (Tag.MassStatusReqType, "7")])

    def _send_status_raw(self, future: concurrent.futures.Future[Any], track: _Track) -> None:
        """A status request answered with the raw ER (for reconciliation)."""
        if self._not_logged_on(future):
            return
        rid = f"S{next(self._ids)}"
        req = _Request("HR", rid, future, track)
        req.extra = track.cid
        self._send(req, MsgType.ORDER_STATUS_REQUEST, [
            (Tag.ClOrdID, track.wire_id), (Tag.Symbol, track.symbol), (Tag.Side, _SIDE_CODES[track.side]),
            (Tag.OrdStatusReqID, rid)])

    def _settled_by_status(self, track: _Track, msg: Message) -> None:
        """Apply a status learned after a reconnect; a submit still waiting gets its answer."""
        req = self._pending.get(track.cid)
        if req is not None and req.kind == "D":
            self._apply(track, msg, push=False, synthesize=True)
            fills = list(track.fills)
            self._settle(req, track.result(None, fills, msg.get(Tag.Text) if track.status.is_final else None,
                                           self.name, self._clock()))
            if track.status.is_final:
                self._finish(track)
            return
        self._apply(track, msg, push=True, synthesize=True)

    async def _stop(self) -> None:
        self._closing = True
        conn = self._conn
        if conn is not None and not conn.closed.is_set():
            conn.logout("desk closing")
            try:
                await asyncio.wait_for(conn.closed.wait(), 2.0)
            except asyncio.TimeoutError:
                pass
        if self._supervisor is not None:
            self._supervisor.cancel()
            await asyncio.gather(self._supervisor, return_exceptions=True)
        for req in list(self._pending.values()):
            self._settle(req, error=UnknownOutcomeError(
                f"{self.name}: the venue was closed before the answer", venue=self.name))
        if self._deadline_timer is not None:
            self._deadline_timer.cancel()
            self._deadline_timer = None
        self._deadlines.clear()
        self._fail_inbox()
        self._conn = None
        self._set_state("closed")


__all__ = ["BadCredentialsError", "FixSessionInfo", "FixVenue"]
