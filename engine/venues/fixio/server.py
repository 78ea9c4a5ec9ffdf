"""A FIX 4.4 acceptor in front of simulated exchanges: any FIX client can trade with them.

The wire contract (what each message carries) is docs/fix.md. Rules of this module:

- One `FixConnection` (the asyncio driver) per TCP connection, acceptor role; the session
  accepts any SenderCompID unless `allowed_counterparties` is given. Orders belong to the
  counterparty's SenderCompID (their *owner*), not to a connection: fills of a resting
  order go to whichever connection that CompID has now. One live connection per CompID:
  a second Logon with a CompID already logged on is logged out with a Text saying so.
- A session's application messages are handled one after another, in arrival order, so
  the answers to one order keep their order: at once, in the read that brought them (their
  answers leave in that read's one write), while nothing in them waits: D/F/G to a venue
  that answers without waiting (a simulator with no latency or faults) and everything
  else. A D/F/G that must await its venue, and every message after it on that connection
  until the backlog is drained, goes through the connection's worker task instead. An
  order's immediate ERs (New, Trades, Expired) are written in one go.
- The server keeps its own record of every order it acknowledged (`_OrderInfo`: ClOrdIDs,
  owner, status, cum qty, average price) and answers H and AF from it, so its answers
  survive a restart when a `VenueState` persists that record (`--state DIR`).
- ClOrdID is the idempotency key across every venue and counterparty of the server: a
  ClOrdID already used (by a D, or the new ClOrdID of an accepted F or G) is refused and
  never reaches a venue. After a replace the order answers to every ClOrdID it had.
- Unsupported application MsgTypes get BusinessMessageReject (j) reason 3; a message
  missing a field the contract requires gets j reason 5 naming the tags.
- The venue of an order is ExDestination (100), else SecurityExchange (207), else the
  first venue given.
- Market data: the books' top levels and the public trades go to subscribers as W
  snapshots then X incremental refreshes; the X of a book is the difference from the
  levels last sent to it, computed once per book for all its subscribers, after every
  loop iteration that touched the book (an order, a fill) and after every ticker step.
  A ticker task calls each venue's `tick()` every `tick_interval` seconds, so the market
  moves and resting orders fill with nobody asking.
- Work that is batched runs once per event-loop iteration (`_after_batch`), or at the end
  of a read right after its answers are written (so the ERs do not wait for it, and the
  market data they moved follows in the same turn of the loop): the market data diffs
  and the state commit. Nothing is logged per message at INFO.
- Listens on loopback only unless `allow_remote=True`.
- With a `password`, every Logon must carry it as Password(554); one without it or with
  another is answered "logon refused: bad credentials" and closed (the session layer's
  rule), logged as a warning naming the CompID and the peer, never what was sent.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import itertools
import logging
import re
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from decimal import Decimal
from typing import TYPE_CHECKING

from pydantic import ValidationError

from engine.errors import ConfigurationError, UnknownOrderError, UnknownOutcomeError, VenueError
from engine.secrets import Secret
from engine.market_data import BookLevel, ExecutionReport, PublicTrade
from engine.models import Fill, Liquidity, Order, OrderResult, OrderSide, OrderStatus, OrderType, TimeInForce
from engine.venues.fix.codec import FieldValue, Message, utc_timestamp
from engine.venues.fix.session import FixSession, Role, SessionConfig, SessionEvent, SessionStatus
from engine.venues.fix.store import SessionStore
from engine.venues.fix.tags import ExecType, MsgType, OrdStatus, Tag
from engine.venues.fixio.driver import FixConnection
from engine.venues.sim.exchange import SimulatedExchange

if TYPE_CHECKING:
    from engine.venues.fixio.venue_state import VenueState

log = logging.getLogger(__name__)

# Reason codes (FIX 4.4 data dictionary).
ORD_REJ_DUPLICATE = "6"
ORD_REJ_OTHER = "99"
CXL_REJ_TOO_LATE = "0"
CXL_REJ_UNKNOWN_ORDER = "1"
CXL_REJ_DUPLICATE = "6"
CXL_REJ_OTHER = "99"
BIZ_REJ_OTHER = "0"
BIZ_REJ_UNSUPPORTED_MSG_TYPE = "3"
BIZ_REJ_FIELD_MISSING = "5"
MD_REJ_UNKNOWN_SYMBOL = "0"
MD_REJ_DUPLICATE_REQ = "1"
MD_REJ_UNSUPPORTED_SUBSCRIPTION = "4"
MD_REJ_UNSUPPORTED_DEPTH = "5"
MD_REJ_UNSUPPORTED_UPDATE_TYPE = "6"
MD_REJ_UNSUPPORTED_ENTRY_TYPE = "8"
MD_REQUEST_REJECT = "Y"  # MarketDataRequestReject
#: Text of the unsolicited ER Canceled of an order working when the venue process ended.
RESTART_TEXT = "venue restarted: the order was working when the venue process ended; it is canceled"
#: The most book levels a market data subscriber gets per side.
MAX_DEPTH = 10

_SIDES = {"1": OrderSide.BUY, "2": OrderSide.SELL}
_SIDE_CODES = {OrderSide.BUY: "1", OrderSide.SELL: "2"}
_ORD_TYPES = {"1": OrderType.MARKET, "2": OrderType.LIMIT}
_TIFS = {"0": TimeInForce.DAY, "1": TimeInForce.GTC, "3": TimeInForce.IOC, "4": TimeInForce.FOK,
         "6": TimeInForce.GTD}
_ORD_STATUS = {
    OrderStatus.PENDING_NEW: OrdStatus.PENDING_NEW, OrderStatus.NEW: OrdStatus.NEW,
    OrderStatus.PARTIALLY_FILLED: OrdStatus.PARTIALLY_FILLED, OrderStatus.FILLED: OrdStatus.FILLED,
    OrderStatus.PENDING_CANCEL: OrdStatus.PENDING_CANCEL, OrderStatus.CANCELED: OrdStatus.CANCELED,
    OrderStatus.REJECTED: OrdStatus.REJECTED, OrderStatus.EXPIRED: OrdStatus.EXPIRED,
}
_ACTIVE = SessionStatus.ACTIVE
_CODES: dict[str, str] = {member: member.value for member in (*ExecType, *OrdStatus)}
_WORKING = frozenset({OrdStatus.NEW, OrdStatus.PARTIALLY_FILLED, OrdStatus.PENDING_NEW})
_LIQUIDITY = {Liquidity.MAKER: "1", Liquidity.TAKER: "2"}
_REQUIRED = {
    "D": (Tag.ClOrdID, Tag.Symbol, Tag.Side, Tag.OrderQty, Tag.OrdType),
    "F": (Tag.OrigClOrdID, Tag.ClOrdID),
    "G": (Tag.OrigClOrdID, Tag.ClOrdID, Tag.Symbol, Tag.Side, Tag.OrderQty, Tag.OrdType),
    "H": (Tag.ClOrdID,),
    "AF": (Tag.MassStatusReqID, Tag.MassStatusReqType),
    "x": (Tag.SecurityReqID, Tag.SecurityListRequestType),
    "V": (Tag.MDReqID, Tag.SubscriptionRequestType),
}


_NUMBER_TEXT: dict[float, str] = {}  # the texts of numbers met lately: quantities and prices repeat


def fix_number(value: float) -> str:
    """A float as a FIX decimal: no exponent, the shortest text that reads back as it."""
    text = _NUMBER_TEXT.get(value)
    if text is not None:
        return text
    text = repr(float(value))
    if "e" in text or "E" in text:
        text = format(Decimal(text), "f")
    if text.endswith(".0"):
        text = text[:-2]
    if value:  # not zero: 0.0 and -0.0 are one key but write "0" and "-0"
        if len(_NUMBER_TEXT) >= 65536:
            _NUMBER_TEXT.clear()
        _NUMBER_TEXT[value] = text
    return text


def _decimal_text(value: Decimal | float) -> str:
    if isinstance(value, Decimal):
        text = format(value.normalize(), "f")
        return text
    return fix_number(value)


def _parse_utc(text: str) -> float:
    for fmt in ("%Y%m%d-%H:%M:%S.%f", "%Y%m%d-%H:%M:%S"):
        try:
            return datetime.strptime(text, fmt).replace(tzinfo=timezone.utc).timestamp()
        except ValueError:
            continue
    raise ValueError(f"ExpireTime(126) {text!r} is not a UTCTimestamp")


@dataclass(slots=True, eq=False)
class _OrderInfo:
    """The server's record of one order it passed to a venue (persisted by a VenueState)."""

    key: str  # the venue's id of the order: its first ClOrdID
    venue: SimulatedExchange
    owner: str  # the counterparty's SenderCompID
    symbol: str
    side: str  # FIX code
    quantity: float
    ord_type: str
    price: float | None
    tif: str
    cl_ord_ids: tuple[str, ...] = ()
    status: OrdStatus = OrdStatus.PENDING_NEW
    cum_qty: float = 0.0
    notional: float = 0.0
    text: str | None = None
    #: Reports that arrived before the order's New went out; sent right after it.
    pending: list[ExecutionReport] | None = None

    @property
    def order_id(self) -> str:
        return f"{self.venue.name}:{self.key}"

    @property
    def cl_ord_id(self) -> str:
        """The newest ClOrdID (after a replace, the replace's)."""
        return self.cl_ord_ids[-1]

    @property
    def avg_px(self) -> float:
        return self.notional / self.cum_qty if self.cum_qty else 0.0

    @property
    def leaves(self) -> float:
        # Rounded: 0.03 - 0.01 is 0.019999999999999997 in floats; no lot is finer than 1e-12.
        return max(round(self.quantity - self.cum_qty, 12), 0.0) if self.status in _WORKING else 0.0


#: What is parked for a counterparty that is away: an order's execution reports and cancel
#: rejects (what it must not miss); market data and the rest go only to a live session.
_PARKED_TYPES = frozenset({"8", "9"})


class _Client:
    """One accepted connection: its driver, and its messages handled in arrival order: at
    once while nothing waits, else by a worker task that drains them one after another."""

    def __init__(self, server: FixVenueServer) -> None:
        self.server = server
        self.inbox: deque[Message] = deque()  # messages waiting behind one that awaits
        self.worker: asyncio.Task[None] | None = None
        self.connection: FixConnection | None = None
        self.comp_id: str | None = None  # set once logged on and accepted
        self.subscriptions: dict[str, _Subscription] = {}

    @property
    def alive(self) -> bool:
        connection = self.connection
        return (connection is not None and not connection.closed.is_set()
                and connection.session.status is _ACTIVE)

    def send(self, msg_type: str, body: list[tuple[int, FieldValue]]) -> None:
        connection = self.connection
        if (connection is not None and connection.session.status is _ACTIVE and not connection.closed.is_set()
                and self.comp_id is not None):
            connection.send(msg_type, body)
        elif self.comp_id is not None and str(getattr(msg_type, "value", msg_type)) in _PARKED_TYPES:
            # The connection went while this was being answered: an order's news goes to the
            # counterparty's live session if it has logged on again, else is parked for its
            # next Logon; never lost (market data is).
            self.server._deliver(self.comp_id, msg_type, body)

    def receive(self, message: Message) -> None:
        """The connection's `on_message`: handle it now, unless it must wait (for a venue
        that answers later) or others wait before it; then it queues for the worker."""
        if self.worker is None:
            if self.comp_id is None:
                return  # a session refused after its Logon: nothing of it is acted on
            try:
                if self.server._handle_now(self, message):
                    return
            except Exception:  # one bad message must not end the session
                self._failed(message)
                return
            self.worker = asyncio.ensure_future(self._work())
            self.server._tasks.add(self.worker)
        self.inbox.append(message)

    async def _work(self) -> None:
        server = self.server
        inbox = self.inbox
        try:
            while inbox:
                message = inbox.popleft()
                if self.comp_id is None:
                    continue
                try:
                    await server._handle(self, message)
                except Exception:  # one bad message must not end the session's worker
                    self._failed(message)
        finally:
            server._tasks.discard(self.worker)  # type: ignore[arg-type]
            self.worker = None

    def _failed(self, message: Message) -> None:
        log.exception("FIX venue: handling %r failed", message)
        with contextlib.suppress(Exception):
            self.server._business_reject(self, message, BIZ_REJ_OTHER, "internal error handling the message")


# -- market data ---------------------------------------------------------------------------------


class _Book:
    """The levels last sent for one (venue, symbol, depth): the base of the next X."""

    __slots__ = ("depth", "bids", "asks", "subscriptions")

    def __init__(self, depth: int) -> None:
        self.depth = depth
        self.bids: tuple[BookLevel, ...] = ()
        self.asks: tuple[BookLevel, ...] = ()
        self.subscriptions: set[_Subscription] = set()


class _Market:
    """Everything subscribed on one (venue, symbol): its books by depth and its trades."""

    __slots__ = ("venue", "symbol", "books", "trade_subscriptions", "trades")

    def __init__(self, venue: SimulatedExchange, symbol: str) -> None:
        self.venue = venue
        self.symbol = symbol
        self.books: dict[int, _Book] = {}
        self.trade_subscriptions: set[_Subscription] = set()
        self.trades: list[PublicTrade] = []


class _Subscription:
    """One MDReqID of one connection: its markets, its depth and the entry types it wants."""

    __slots__ = ("client", "req_id", "markets", "depth", "types", "pending")

    def __init__(self, client: _Client, req_id: str, markets: list[_Market], depth: int, types: set[str]) -> None:
        self.client = client
        self.req_id = req_id
        self.markets = markets
        self.depth = depth
        self.types = types
        self.pending: list[tuple[int, FieldValue]] = []  # X entries gathered in this batch


def _level_entries(
    kind: str, symbol: str, venue: str, old: tuple[BookLevel, ...], new: tuple[BookLevel, ...]
) -> list[tuple[int, FieldValue]]:
    """X entries turning the levels `old` into `new`, keyed by price: deletes, changes, news."""
    out: list[tuple[int, FieldValue]] = []
    before = {level.price: level for level in old}
    after = {level.price: level for level in new}
    for price, level in before.items():
        if price not in after:
            out += [(279, "2"), (269, kind), (55, symbol), (Tag.SecurityExchange, venue), (270, fix_number(price)),
                    (271, "0"), (Tag.NumberOfOrders, "0")]
    for price, level in after.items():
        seen = before.get(price)
        if seen is None:
            action = "0"
        elif seen.quantity != level.quantity or seen.orders != level.orders:
            action = "1"
        else:
            continue
        out += [(279, action), (269, kind), (55, symbol), (Tag.SecurityExchange, venue), (270, fix_number(price)),
                (271, fix_number(level.quantity)), (Tag.NumberOfOrders, str(level.orders))]
    return out


def _trade_entries(trades: list[PublicTrade]) -> list[tuple[int, FieldValue]]:
    out: list[tuple[int, FieldValue]] = []
    for trade in trades:
        stamp = utc_timestamp(trade.ts_event)
        out += [(279, "0"), (269, "2"), (55, trade.symbol), (Tag.SecurityExchange, trade.venue),
                (270, fix_number(trade.price)), (271, fix_number(trade.quantity)), (Tag.MDEntryDate, stamp[:8]),
                (Tag.MDEntryTime, stamp[9:]), (Tag.AggressorSide, _SIDE_CODES[trade.aggressor])]
    return out


# -- the server ------------------------------------------------------------------------------------


class FixVenueServer:
    """Serve `venues` to FIX 4.4 initiators: `await start()`, `port`, `await stop()`."""

    def __init__(
        self,
        venues: Mapping[str, SimulatedExchange] | SimulatedExchange,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        comp_id: str = "VENUE",
        allowed_counterparties: frozenset[str] | None = None,
        allow_remote: bool = False,
        remember_ids: int = 1_000_000,
        tick_interval: float | None = 0.1,
        state: VenueState | None = None,
        heart_bt_int: int = 30,
        max_counterparties: int = 1_000,
        clock: Callable[[], float] = time.time,
        password: Secret | None = None,
    ) -> None:
        if isinstance(venues, SimulatedExchange):
            venues = {venues.name: venues}
        if not venues:
            raise ConfigurationError("FixVenueServer needs at least one venue")
        if not allow_remote and not is_loopback(host):
            raise ConfigurationError(
                f"host {host!r} is not a loopback address: the venue would be reachable from other "
                "machines; pass allow_remote=True to mean it"
            )
        if tick_interval is not None and not tick_interval > 0:
            raise ConfigurationError(f"tick_interval must be > 0 seconds or None, got {tick_interval!r}")
        if password is not None and not isinstance(password, Secret):
            raise ConfigurationError(f"password must be a Secret (engine.secrets), got {type(password).__name__}")
        self.venues = dict(venues)
        self.host = host
        self._password = password
        self._port = port
        self.comp_id = comp_id
        self.allowed_counterparties = allowed_counterparties
        self.tick_interval = tick_interval
        self.heart_bt_int = heart_bt_int
        #: SenderCompIDs whose sessions are kept (each holds its numbers and resend window):
        #: a Logon from one more is refused, so a flood of made-up CompIDs cannot exhaust
        #: memory or files.
        self.max_counterparties = max_counterparties
        self._remember = remember_ids
        self._clock = clock
        self._state = state
        self._orders: OrderedDict[str, _OrderInfo] = OrderedDict()  # every ClOrdID -> its order
        self._working: dict[str, dict[str, _OrderInfo]] = {}  # owner -> key -> working order
        # ExecIDs must not repeat across restarts: each run has its own prefix.
        self._exec_prefix = f"{int(time.time() * 1000):x}-"
        self._exec_ids = itertools.count(1)
        self._server: asyncio.base_events.Server | None = None
        self._clients: set[_Client] = set()
        self._sessions: dict[str, _Client] = {}  # CompID -> its live connection
        self._stores: dict[str, SessionStore] = {}  # CompID -> its session store, across connections
        self._parked: set[SessionStore] = set()  # stores holding parked reports not committed yet
        self._tasks: set[asyncio.Task[None]] = set()
        self._ticker: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: int | None = None
        self._markets: dict[tuple[str, str], _Market] = {}
        self._dirty: set[_Market] = set()
        self._batch: asyncio.Handle | None = None  # the `_after_batch` call scheduled
        #: Reports for a counterparty with no live connection, parked in its session store.
        self.parked = 0
        self._restarted: list[_OrderInfo] = []
        if state is not None:
            self._restore(state)

    @property
    def password_required(self) -> bool:
        return self._password is not None

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("the server is not started")
        return self._server.sockets[0].getsockname()[1]

    @property
    def subscriptions(self) -> int:
        """Market data subscriptions live now (every connection's)."""
        return sum(len(c.subscriptions) for c in self._clients)

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        for venue in self.venues.values():
            venue.add_report_listener(self._on_report)
            venue.add_trade_listener(self._on_trade)
        self._cancel_restarted()
        self._server = await self._loop.create_server(self._connection_made, self.host, self._port)
        if self.tick_interval is not None:
            self._ticker = asyncio.ensure_future(self._tick_forever(self.tick_interval))

    async def stop(self) -> None:
        """Stop listening, log every session out, wait for the connections to end."""
        if self._ticker is not None:
            self._ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._ticker
            self._ticker = None
        for venue in self.venues.values():
            venue.remove_report_listener(self._on_report)
            venue.remove_trade_listener(self._on_trade)
        if self._server is not None:
            self._server.close()
        for client in list(self._clients):
            if client.connection is not None:
                client.connection.logout("venue shutting down")
        waits = [asyncio.ensure_future(c.connection.closed.wait()) for c in self._clients if c.connection is not None]
        if waits:
            await asyncio.wait(waits, timeout=5.0)
        for wait in waits:
            wait.cancel()
        for client in list(self._clients):  # a peer that never answered our Logout: cut
            if client.connection is not None and not client.connection.closed.is_set():
                client.connection.abort()
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None
        for store in self._stores.values():
            with contextlib.suppress(Exception):
                store.close()
        self._stores.clear()
        if self._state is not None:
            self._state.commit()

    # -- connections ------------------------------------------------------------------------

    def _connection_made(self) -> FixConnection:
        """The protocol factory: one client, its connection and its worker per TCP connection."""
        config = SessionConfig(self.comp_id, allowed_counterparties=self.allowed_counterparties,
                               heart_bt_int=self.heart_bt_int, password=self._password)
        client = _Client(self)
        session = FixSession(config, Role.ACCEPTOR, store_for=self._store_for)

        def on_event(event: SessionEvent) -> None:
            self._on_event(client, event)

        connection = client.connection = FixConnection(
            session, on_message=client.receive, on_event=on_event, after_read=self._read_done,
            before_write=self._save_state, clock=self._clock)
        self._clients.add(client)
        run = asyncio.ensure_future(self._serve(client))
        self._tasks.add(run)
        return connection

    async def _serve(self, client: _Client) -> None:
        """Wait for the connection to end, then forget its client."""
        assert client.connection is not None
        try:
            await client.connection.run()
        finally:
            # A worker still handling what arrived before the drop finishes it (an order
            # already at its venue must be recorded and reported): its answers are parked.
            self._clients.discard(client)
            run = asyncio.current_task()
            if run is not None:
                self._tasks.discard(run)
            self._drop_client(client)

    def _store_for(self, comp_id: str) -> SessionStore | str:
        """The session store of counterparty `comp_id`, asked by its session at Logon; a
        text refuses the Logon (the counterparty is logged on already)."""
        other = self._sessions.get(comp_id)
        if other is not None and other.alive:
            log.warning("FIX venue: a second Logon from %s refused (already logged on)", comp_id)
            return f"SenderCompID {comp_id} is already logged on"
        if comp_id not in self._stores and len(self._stores) >= self.max_counterparties:
            log.warning("FIX venue: a Logon from a new SenderCompID %r refused: %d counterparties known",
                        comp_id, len(self._stores))
            return (f"this venue serves at most {self.max_counterparties} SenderCompIDs and knows that many; "
                    "log on with one it knows")
        try:
            return self._store(comp_id)
        except Exception as exc:  # a broken store file: refuse this Logon, keep serving others
            log.error("FIX venue: the session store of %s cannot be opened: %s", comp_id, exc)
            return f"the venue cannot open the session store of {comp_id}"

    def _store(self, comp_id: str) -> SessionStore:
        store = self._stores.get(comp_id)
        if store is None:
            store = self._state.session_store(self.comp_id, comp_id) if self._state is not None else SessionStore()
            self._stores[comp_id] = store
        return store

    def _on_event(self, client: _Client, event: SessionEvent) -> None:
        kind = event.kind
        if kind == "logged_on":
            comp_id = client.connection.session.target_comp_id  # type: ignore[union-attr]
            client.comp_id = comp_id
            self._sessions[comp_id] = client  # type: ignore[index]
            log.info("FIX venue: %s logged on (%s)", comp_id, client.connection.peer)  # type: ignore[union-attr]
        elif kind == "closed" and client.comp_id is None and event.text.endswith("refused: bad credentials"):
            log.warning("FIX venue: %s (%s)", event.text, client.connection.peer)  # type: ignore[union-attr]
        elif kind in ("logged_out", "closed"):
            log.info("FIX venue: session %s %s: %s", client.comp_id, kind, event.text)
        else:
            log.debug("FIX venue: session %s %s: %s", client.comp_id, kind, event.text)

    def _drop_client(self, client: _Client) -> None:
        comp_id = client.comp_id
        if comp_id is not None and self._sessions.get(comp_id) is client:
            del self._sessions[comp_id]
        for subscription in list(client.subscriptions.values()):
            self._unsubscribe(subscription)

    def _deliver(self, owner: str, msg_type: str, body: list[tuple[int, FieldValue]]) -> None:
        """Send to the counterparty `owner` on its live connection; without one, park it in
        its session store: its next Logon shows the gap and its ResendRequest fetches it."""
        client = self._sessions.get(owner)
        if client is not None and client.alive and client.comp_id == owner:
            client.send(msg_type, body)
            return
        self._park(owner, msg_type, body)

    def _park(self, owner: str, msg_type: str, body: list[tuple[int, FieldValue]]) -> None:
        store = self._store(owner)
        store.park(getattr(msg_type, "value", msg_type), body, self._clock())
        self.parked += 1
        self._parked.add(store)
        self._schedule_batch()

    # -- batching: once per event-loop iteration ---------------------------------------------

    def _schedule_batch(self) -> None:
        if self._batch is None and self._loop is not None:
            self._batch = self._loop.call_soon(self._after_batch)

    def _save_state(self) -> None:
        """Before any answer is written: the orders, ClOrdIDs and fills it tells of are on
        disk (a kill -9 right after the write must not leave a counterparty holding a fill
        the restarted venue never made)."""
        if self._state is not None:
            self._state.commit()

    def _read_done(self) -> None:
        """A connection's read was handled and its answers written: the batch's work runs
        now (its market data leaves right after them, in this turn of the loop)."""
        if self._batch is not None:
            try:
                self._after_batch()
            except Exception:  # the read's answers must still go out
                log.exception("FIX venue: the batch's work failed")

    def _after_batch(self) -> None:
        if self._batch is not None:
            self._batch.cancel()
            self._batch = None
        if self._dirty:
            self._publish()
        if self._parked:
            parked, self._parked = self._parked, set()
            for store in parked:
                try:
                    store.commit()
                except Exception:
                    log.exception("FIX venue: a session store commit failed")
        if self._state is not None:
            try:
                self._state.commit()
            except Exception:
                log.exception("FIX venue: the state commit failed")

    async def _tick_forever(self, interval: float) -> None:
        venues = list(self.venues.values())
        while True:
            await asyncio.sleep(interval)
            for venue in venues:
                try:
                    venue.tick()
                except Exception:  # the ticker must outlive one venue's bad step
                    log.exception("FIX venue: %s tick failed", venue.name)
            if self._markets:
                self._dirty.update(self._markets.values())
            self._after_batch()

    # -- application messages ------------------------------------------------------------------

    def _acceptable(self, client: _Client, msg: Message) -> bool:
        """A MsgType we speak with the fields it requires; else a BusinessMessageReject."""
        kind = msg.msg_type
        required = _REQUIRED.get(kind)
        if required is None:
            self._business_reject(client, msg, BIZ_REJ_UNSUPPORTED_MSG_TYPE, f"MsgType {kind} is not supported")
            return False
        missing = [int(tag) for tag in required if tag not in msg]
        if missing:
            self._business_reject(client, msg, BIZ_REJ_FIELD_MISSING,
                                  f"required field(s) missing: {', '.join(map(str, missing))}")
            return False
        return True

    def _handle_now(self, client: _Client, msg: Message) -> bool:
        """Handle `msg` at once if nothing in it awaits: D/F/G only when their venue answers
        without waiting (a simulator with no latency or faults); False: it must be awaited."""
        kind = msg.msg_type
        if kind == "D":
            venue = self._venue_for(msg)
            if venue is not None and not venue.answers_at_once:
                return False
        elif kind == "F" or kind == "G":
            info = self._orders.get(msg.get(Tag.OrigClOrdID) or "")
            if info is not None and not info.venue.answers_at_once:
                return False
        if self._acceptable(client, msg):
            if kind == "D":
                self._new_order_now(client, msg, venue)
            elif kind == "F":
                self._cancel_now(client, msg)
            elif kind == "G":
                self._replace_now(client, msg)
            else:
                self._handle_local(client, msg)
        self._schedule_batch()
        return True

    async def _handle(self, client: _Client, msg: Message) -> None:
        kind = msg.msg_type
        if self._acceptable(client, msg):
            if kind == "D":
                await self._new_order(client, msg)
            elif kind == "F":
                await self._cancel(client, msg)
            elif kind == "G":
                await self._replace(client, msg)
            else:
                self._handle_local(client, msg)
        self._schedule_batch()

    def _handle_local(self, client: _Client, msg: Message) -> None:
        """The messages answered from the server's own records (H, AF, x, V)."""
        kind = msg.msg_type
        if kind == "H":
            self._status(client, msg)
        elif kind == "AF":
            self._mass_status(client, msg)
        elif kind == "x":
            self._security_list(client, msg)
        else:
            self._market_data_request(client, msg)

    def _refuse_order(self, client: _Client, msg: Message, text: str, reason: str = ORD_REJ_OTHER,
                      venue_name: str = "") -> None:
        """ER Rejected for the NewOrderSingle `msg` (OrdRejReason `reason`, Text `text`)."""
        cid = msg.get(Tag.ClOrdID)
        body: list[tuple[int, FieldValue]] = [
            (Tag.OrderID, f"{venue_name}:{cid}" if venue_name else "NONE"), (Tag.ClOrdID, cid),  # type: ignore[list-item]
            (Tag.ExecID, self._exec_id()), (Tag.ExecType, ExecType.REJECTED), (Tag.OrdStatus, OrdStatus.REJECTED),
            (Tag.Symbol, msg.get(Tag.Symbol)), (Tag.Side, msg.get(Tag.Side)),  # type: ignore[list-item]
            (Tag.OrderQty, msg.get(Tag.OrderQty) or "0"),
            (Tag.LeavesQty, "0"), (Tag.CumQty, "0"), (Tag.AvgPx, "0"),
            (Tag.TransactTime, utc_timestamp(self._clock())),
        ]
        if venue_name:
            body.append((Tag.ExDestination, venue_name))
        body += [(Tag.OrdRejReason, reason), (Tag.Text, text)]
        client.send(MsgType.EXECUTION_REPORT, body)

    def _order_of(self, client: _Client, msg: Message, venue: SimulatedExchange | None
                  ) -> tuple[_OrderInfo, Order] | None:
        """The order a NewOrderSingle asks for at `venue` (`_venue_for`), remembered under
        its ClOrdID; None when it was refused (its ER Rejected sent)."""
        cid = msg.get(Tag.ClOrdID)
        symbol = msg.get(Tag.Symbol)
        side_code = msg.get(Tag.Side)
        ord_type = msg.get(Tag.OrdType)
        price_text = msg.get(Tag.Price)
        assert cid is not None and symbol is not None and side_code is not None and ord_type is not None
        known = self._orders.get(cid)
        if known is not None:
            whose = f"order {known.order_id} already has it" if known.owner == client.comp_id else "it was used before"
            self._refuse_order(client, msg, f"duplicate ClOrdID {cid!r}: {whose}; no new order was made",
                               ORD_REJ_DUPLICATE)
            return None
        if cid == "NONE":
            self._refuse_order(client, msg, "ClOrdID 'NONE' is reserved (it marks 'no order' in mass status answers)")
            return None
        if self._state is not None and self._state.failing is not None:
            # An order the venue cannot record would be forgotten by a restart, its ClOrdID
            # taken again: refused until a commit succeeds.
            self._refuse_order(client, msg, f"{self._state.failing}; no new order is taken until it can")
            return None
        if venue is None:
            self._refuse_order(client, msg, f"unknown venue {msg.get(Tag.ExDestination) or msg.get(Tag.SecurityExchange)!r} "
                               f"(venues: {', '.join(self.venues)})")
            return None
        side = _SIDES.get(side_code)
        otype = _ORD_TYPES.get(ord_type)
        tif_code = msg.get(Tag.TimeInForce, "0")
        tif = _TIFS.get(tif_code)
        if side is None:
            self._refuse_order(client, msg, f"Side(54) {side_code!r} is not supported (1 buy, 2 sell)",
                               venue_name=venue.name)
            return None
        if otype is None:
            self._refuse_order(client, msg, f"OrdType(40) {ord_type!r} is not supported (1 market, 2 limit)",
                               venue_name=venue.name)
            return None
        if tif is None:
            self._refuse_order(client, msg, f"TimeInForce(59) {tif_code!r} is not supported (0, 1, 3, 4, 6)",
                               venue_name=venue.name)
            return None
        try:
            quantity = _fix_float(msg.get(Tag.OrderQty), "OrderQty(38)")
            price = _fix_float(price_text, "Price(44)") if price_text is not None and otype is OrderType.LIMIT else None
            expire_at = _parse_utc(msg.get(Tag.ExpireTime, "")) if tif is TimeInForce.GTD else None
            order = Order(id=cid, client_order_id=cid, symbol=symbol, side=side, type=otype, quantity=quantity,
                          price=price, time_in_force=tif, expire_at=expire_at)
        except (ValueError, ValidationError) as exc:  # ValidationError is a ValueError; both named for the reader
            self._refuse_order(client, msg, f"invalid order: {exc}".replace("\n", " "), venue_name=venue.name)
            return None
        info = _OrderInfo(cid, venue, client.comp_id or "", symbol, side_code, quantity, ord_type, price, tif_code,
                          (cid,))
        info.pending = []
        self._remember_id(cid, info)
        return info, order

    async def _new_order(self, client: _Client, msg: Message) -> None:
        asked = self._order_of(client, msg, self._venue_for(msg))
        if asked is None:
            return
        info, order = asked
        venue = info.venue
        try:
            result = await venue.submit_async(order)
        except UnknownOutcomeError as exc:
            try:
                result = await venue.status_async(info.key)
            except (UnknownOrderError, VenueError):
                result = OrderResult(info.key, venue.name, OrderStatus.REJECTED,
                                     reason=f"{exc}; the order is not known at the venue")
        except VenueError as exc:
            result = OrderResult(info.key, venue.name, OrderStatus.REJECTED, reason=str(exc))
        self._order_answered(client, msg, info, result)

    def _new_order_now(self, client: _Client, msg: Message, venue: SimulatedExchange | None) -> None:
        """`_new_order` for a venue that answers at once: its sync calls, the same answers."""
        asked = self._order_of(client, msg, venue)
        if asked is None:
            return
        info, order = asked
        venue = info.venue
        try:
            result = venue.submit(order)
        except UnknownOutcomeError as exc:
            try:
                result = venue.status(info.key)
            except (UnknownOrderError, VenueError):
                result = OrderResult(info.key, venue.name, OrderStatus.REJECTED,
                                     reason=f"{exc}; the order is not known at the venue")
        except VenueError as exc:
            result = OrderResult(info.key, venue.name, OrderStatus.REJECTED, reason=str(exc))
        self._order_answered(client, msg, info, result)

    def _order_answered(self, client: _Client, msg: Message, info: _OrderInfo, result: OrderResult) -> None:
        if result.status is OrderStatus.REJECTED:
            info.status = OrdStatus.REJECTED
            info.text = result.reason or "rejected by the venue"
            info.pending = None
            self._changed(info)
            self._refuse_order(client, msg, info.text, venue_name=info.venue.name)
            return
        self._report_result(info, result, client)

    def _report_result(self, info: _OrderInfo, result: OrderResult, client: _Client) -> None:
        """ER New, one ER Trade per fill, then ER Expired for a remainder that does not rest;
        an order filled in full at once gets its Trade ER(s) alone (the first says it was
        accepted): half the messages for the commonest answer, on both sides."""
        self._set_status(info, OrdStatus.NEW)
        send = client.send
        if result.status is not OrderStatus.FILLED or not result.fills:
            send(MsgType.EXECUTION_REPORT, self._er(info, ExecType.NEW, OrdStatus.NEW))
        self._send_fills(info, result, send)
        if result.status is OrderStatus.EXPIRED:
            self._set_status(info, OrdStatus.EXPIRED, result.reason)
            send(MsgType.EXECUTION_REPORT, self._er(info, ExecType.EXPIRED, OrdStatus.EXPIRED, text=result.reason))
        elif result.status is OrderStatus.CANCELED:
            self._set_status(info, OrdStatus.CANCELED, result.reason)
            send(MsgType.EXECUTION_REPORT, self._er(info, ExecType.CANCELED, OrdStatus.CANCELED, text=result.reason))
        pending, info.pending = info.pending, None
        for report in pending or ():
            self._unsolicited(report)
        self._touch(info)

    def _cancel_reject(self, client: _Client, info: _OrderInfo | None, cid: str, orig: str, reason: str,
                       status: str, text: str, response_to: str = "1") -> None:
        """OrderCancelReject (9) to a cancel (CxlRejResponseTo 1) or a replace (2)."""
        client.send(MsgType.ORDER_CANCEL_REJECT, [
            (Tag.OrderID, info.order_id if info else "NONE"), (Tag.ClOrdID, cid), (Tag.OrigClOrdID, orig),
            (Tag.OrdStatus, status), (Tag.CxlRejResponseTo, response_to), (Tag.CxlRejReason, reason),
            (Tag.Text, text),
        ])

    def _cancel_of(self, client: _Client, msg: Message) -> tuple[_OrderInfo, str, str] | None:
        """The order an OrderCancelRequest may cancel, its OrigClOrdID and ClOrdID; None
        when it was refused (its OrderCancelReject sent)."""
        orig = msg.get(Tag.OrigClOrdID) or ""
        cid = msg.get(Tag.ClOrdID) or ""
        info = self._orders.get(orig)
        if info is not None and info.owner != client.comp_id:
            info = None  # another counterparty's order is not this one's to touch
        if info is None:
            self._cancel_reject(client, info, cid, orig, CXL_REJ_UNKNOWN_ORDER, OrdStatus.REJECTED,
                                f"order {orig!r} is not known")
            return None
        if cid in self._orders:
            self._cancel_reject(client, info, cid, orig, CXL_REJ_DUPLICATE, info.status,
                                f"duplicate ClOrdID {cid!r}: it was used before")
            return None
        if info.status not in _WORKING:
            self._cancel_reject(client, info, cid, orig, CXL_REJ_TOO_LATE, info.status,
                                f"order {orig!r} is already {info.status.name}")
            return None
        return info, orig, cid

    async def _cancel(self, client: _Client, msg: Message) -> None:
        asked = self._cancel_of(client, msg)
        if asked is None:
            return
        info = asked[0]
        try:
            result: OrderResult | VenueError = await info.venue.cancel_async(info.key)
        except VenueError as exc:
            result = exc
        self._cancel_answered(client, *asked, result)

    def _cancel_now(self, client: _Client, msg: Message) -> None:
        asked = self._cancel_of(client, msg)
        if asked is None:
            return
        info = asked[0]
        try:
            result: OrderResult | VenueError = info.venue.cancel(info.key)
        except VenueError as exc:
            result = exc
        self._cancel_answered(client, *asked, result)

    def _cancel_answered(self, client: _Client, info: _OrderInfo, orig: str, cid: str,
                         result: OrderResult | VenueError) -> None:
        if isinstance(result, VenueError):  # not canceled: it stands as last reported
            self._cancel_reject(client, info, cid, orig, CXL_REJ_OTHER, info.status, str(result))
            return
        if result.status is OrderStatus.CANCELED:
            self._remember_id(cid, info)
            self._set_status(info, OrdStatus.CANCELED, result.reason)
            client.send(MsgType.EXECUTION_REPORT, self._er(
                info, ExecType.CANCELED, OrdStatus.CANCELED, cl_ord_id=cid, orig=orig, text=result.reason))
            self._touch(info)
            return
        self._cancel_reject(client, info, cid, orig, CXL_REJ_TOO_LATE if info.status not in _WORKING else CXL_REJ_OTHER,
                            info.status, result.reason or "cancel refused")

    def _replace_of(self, client: _Client, msg: Message) -> tuple[_OrderInfo, str, str, float, float | None] | None:
        """The order an OrderCancelReplaceRequest may replace, OrigClOrdID, ClOrdID and the
        new quantity and price; None when it was refused (its OrderCancelReject sent)."""
        orig = msg.get(Tag.OrigClOrdID) or ""
        cid = msg.get(Tag.ClOrdID) or ""
        info = self._orders.get(orig)
        if info is not None and info.owner != client.comp_id:
            info = None

        def replace_reject(reason: str, text: str) -> None:
            self._cancel_reject(client, info, cid, orig, reason, info.status if info else OrdStatus.REJECTED, text,
                                response_to="2")

        if info is None:
            replace_reject(CXL_REJ_UNKNOWN_ORDER, f"order {orig!r} is not known")
            return None
        if cid in self._orders:
            replace_reject(CXL_REJ_DUPLICATE, f"duplicate ClOrdID {cid!r}: it was used before")
            return None
        if info.status not in _WORKING:
            replace_reject(CXL_REJ_TOO_LATE, f"order {orig!r} is already {info.status.name}")
            return None
        for tag, name, have in ((Tag.Symbol, "Symbol", info.symbol), (Tag.Side, "Side", info.side),
                                (Tag.OrdType, "OrdType", info.ord_type)):
            if msg.get(tag) != have:
                replace_reject(CXL_REJ_OTHER, f"{name}({int(tag)}) cannot change in a replace: the order's is "
                                              f"{have!r}, the request's {msg.get(tag)!r}")
                return None
        price_text = msg.get(Tag.Price)
        try:
            quantity = float(msg.get(Tag.OrderQty))  # type: ignore[arg-type]
            price = float(price_text) if price_text is not None else None
        except ValueError:
            replace_reject(CXL_REJ_OTHER, f"OrderQty(38) {msg.get(Tag.OrderQty)!r} or Price(44) {price_text!r} "
                                          "is not a number")
            return None
        if info.ord_type == "2" and price is None:
            replace_reject(CXL_REJ_OTHER, "Price(44) is required to replace a limit order")
            return None
        return info, orig, cid, quantity, price

    async def _replace(self, client: _Client, msg: Message) -> None:
        asked = self._replace_of(client, msg)
        if asked is None:
            return
        info, _, _, quantity, price = asked
        try:
            result: OrderResult | VenueError = await info.venue.amend_async(info.key, quantity=quantity, price=price)
        except VenueError as exc:
            result = exc
        self._replace_answered(client, *asked, result)

    def _replace_now(self, client: _Client, msg: Message) -> None:
        asked = self._replace_of(client, msg)
        if asked is None:
            return
        info, _, _, quantity, price = asked
        try:
            result: OrderResult | VenueError = info.venue.amend(info.key, quantity=quantity, price=price)
        except VenueError as exc:
            result = exc
        self._replace_answered(client, *asked, result)

    def _replace_answered(self, client: _Client, info: _OrderInfo, orig: str, cid: str, quantity: float,
                          price: float | None, result: OrderResult | VenueError) -> None:
        if isinstance(result, VenueError):
            self._cancel_reject(client, info, cid, orig, CXL_REJ_OTHER, info.status, str(result), response_to="2")
            return
        if result.status is OrderStatus.REJECTED:
            # Finished meanwhile (a fill reported while we waited): too late; else the request was bad.
            self._cancel_reject(client, info, cid, orig, CXL_REJ_TOO_LATE if info.status not in _WORKING
                                else CXL_REJ_OTHER, info.status, result.reason or "replace refused", response_to="2")
            return
        self._remember_id(cid, info)
        info.quantity = quantity
        if price is not None:
            info.price = price
        self._changed(info)
        send = client.send
        send(MsgType.EXECUTION_REPORT, self._er(info, ExecType.REPLACED, info.status, orig=orig))
        self._send_fills(info, result, send)  # the new price crossed: taker fills
        self._touch(info)

    def _status(self, client: _Client, msg: Message) -> None:
        cid = msg.get(Tag.ClOrdID) or ""
        info = self._orders.get(cid)
        if info is not None and info.owner != client.comp_id:
            info = None
        extra: list[tuple[int, FieldValue]] = []
        if Tag.OrdStatusReqID in msg:
            extra.append((Tag.OrdStatusReqID, msg.get(Tag.OrdStatusReqID) or ""))
        if info is None:
            client.send(MsgType.EXECUTION_REPORT, [
                (Tag.OrderID, "NONE"), (Tag.ClOrdID, cid), (Tag.ExecID, self._exec_id()),
                (Tag.ExecType, ExecType.ORDER_STATUS), (Tag.OrdStatus, OrdStatus.REJECTED),
                (Tag.Symbol, msg.get(Tag.Symbol) or "NA"), (Tag.Side, msg.get(Tag.Side) or "1"),
                (Tag.LeavesQty, "0"), (Tag.CumQty, "0"), (Tag.AvgPx, "0"),
                (Tag.Text, f"order {cid!r} is not known"), *extra,
            ])
            return
        client.send(MsgType.EXECUTION_REPORT, self._er(
            info, ExecType.ORDER_STATUS, info.status, cl_ord_id=cid, text=info.text) + extra)

    def _mass_status(self, client: _Client, msg: Message) -> None:
        req_id = msg.get(Tag.MassStatusReqID) or ""
        kind = msg.get(Tag.MassStatusReqType)
        symbol = None
        if kind == "1":
            symbol = msg.get(Tag.Symbol)
            if symbol is None:
                self._business_reject(client, msg, BIZ_REJ_FIELD_MISSING,
                                      "required field(s) missing: 55 (MassStatusReqType 1 is by Symbol)")
                return
        elif kind != "7":
            self._business_reject(client, msg, BIZ_REJ_OTHER,
                                  f"MassStatusReqType(585) {kind!r} is not supported (7 all orders, 1 by Symbol)")
            return
        working = [info for info in self._working.get(client.comp_id or "", {}).values()
                   if symbol is None or info.symbol == symbol]
        if not working:
            client.send(MsgType.EXECUTION_REPORT, [
                (Tag.OrderID, "NONE"), (Tag.ClOrdID, "NONE"), (Tag.ExecID, self._exec_id()),
                (Tag.ExecType, ExecType.ORDER_STATUS), (Tag.OrdStatus, OrdStatus.REJECTED),
                (Tag.Symbol, symbol or "NA"), (Tag.Side, "1"), (Tag.LeavesQty, "0"), (Tag.CumQty, "0"),
                (Tag.AvgPx, "0"), (Tag.MassStatusReqID, req_id), (Tag.TotNumReports, "0"),
                (Tag.LastRptRequested, "Y"), (Tag.Text, "no working orders"),
            ])
            return
        total = str(len(working))
        for i, info in enumerate(working, 1):
            client.send(MsgType.EXECUTION_REPORT, self._er(info, ExecType.ORDER_STATUS, info.status) + [
                (Tag.MassStatusReqID, req_id), (Tag.TotNumReports, total),
                (Tag.LastRptRequested, "Y" if i == len(working) else "N"),
            ])

    def _security_list(self, client: _Client, msg: Message) -> None:
        req_id = msg.get(Tag.SecurityReqID) or ""
        kind = msg.get(Tag.SecurityListRequestType)
        wanted = None
        if kind == "0":
            wanted = msg.get(Tag.Symbol)
        elif kind != "4":
            client.send(MsgType.SECURITY_LIST, [
                (Tag.SecurityReqID, req_id), (Tag.SecurityResponseID, self._exec_id()),
                (Tag.SecurityRequestResult, "1"),
                (Tag.Text, f"SecurityListRequestType(559) {kind!r} is not supported (4 all, 0 by Symbol)"),
            ])
            return
        entries: list[tuple[int, FieldValue]] = []
        count = 0
        for venue in self.venues.values():
            fees = venue.fees
            for inst in venue.instruments().values():
                if wanted is not None and inst.symbol != wanted:
                    continue
                count += 1
                entries += [(Tag.Symbol, inst.symbol), (Tag.SecurityExchange, venue.name),
                            (Tag.MinPriceIncrement, _decimal_text(inst.tick_size)),
                            (Tag.RoundLot, _decimal_text(inst.lot_size)),
                            (Tag.MinTradeVol, _decimal_text(inst.min_quantity))]
                if inst.max_quantity is not None:
                    entries.append((Tag.MaxTradeVol, _decimal_text(inst.max_quantity)))
                if inst.min_notional is not None:
                    entries.append((Tag.MinNotional, _decimal_text(inst.min_notional)))
                if inst.max_notional is not None:
                    entries.append((Tag.MaxNotional, _decimal_text(inst.max_notional)))
                entries += [(Tag.MakerFeeBps, fix_number(fees.maker_bps)), (Tag.TakerFeeBps, fix_number(fees.taker_bps))]
        body: list[tuple[int, FieldValue]] = [
            (Tag.SecurityReqID, req_id), (Tag.SecurityResponseID, self._exec_id()),
            (Tag.SecurityRequestResult, "0" if count else "2"), (Tag.TotNoRelatedSym, str(count)),
            (Tag.LastFragment, "Y"),
        ]
        if count:
            body += [(Tag.NoRelatedSym, str(count)), *entries]
        else:
            body.append((Tag.Text, f"no instrument {wanted!r} (symbols: {', '.join(self._all_symbols())})"))
        client.send(MsgType.SECURITY_LIST, body)

    # -- market data ---------------------------------------------------------------------------

    def _market_data_request(self, client: _Client, msg: Message) -> None:
        req_id = msg.get(Tag.MDReqID) or ""
        kind = msg.get(Tag.SubscriptionRequestType)

        def reject(reason: str, text: str) -> None:
            client.send(MD_REQUEST_REJECT, [
                (Tag.MDReqID, req_id), (Tag.MDReqRejReason, reason), (Tag.Text, text)])

        if kind == "2":
            subscription = client.subscriptions.get(req_id)
            if subscription is None:
                reject(MD_REJ_UNSUPPORTED_SUBSCRIPTION, f"MDReqID {req_id!r} is not subscribed: nothing to end")
            else:
                self._unsubscribe(subscription)
            return
        if kind not in ("0", "1"):
            reject(MD_REJ_UNSUPPORTED_SUBSCRIPTION,
                   f"SubscriptionRequestType(263) {kind!r} is not supported (0 snapshot, 1 subscribe, 2 unsubscribe)")
            return
        if kind == "1" and req_id in client.subscriptions:
            reject(MD_REJ_DUPLICATE_REQ, f"MDReqID {req_id!r} is already subscribed")
            return
        depth_text = msg.get(Tag.MarketDepth, "0")
        if not depth_text.isdigit():
            reject(MD_REJ_UNSUPPORTED_DEPTH, f"MarketDepth(264) {depth_text!r} is not a whole number")
            return
        depth = int(depth_text)
        depth = MAX_DEPTH if depth == 0 else min(depth, MAX_DEPTH)
        update_type = msg.get(Tag.MDUpdateType, "1")
        if kind == "1" and update_type != "1":
            reject(MD_REJ_UNSUPPORTED_UPDATE_TYPE,
                   f"MDUpdateType(265) {update_type!r} is not supported (1 incremental refresh)")
            return
        types = set(msg.get_all(Tag.MDEntryType)) or {"0", "1"}
        unknown_types = sorted(types - {"0", "1", "2"})
        if unknown_types:
            reject(MD_REJ_UNSUPPORTED_ENTRY_TYPE,
                   f"MDEntryType(269) {unknown_types[0]!r} is not supported (0 bid, 1 offer, 2 trade)")
            return
        wants_book = bool(types & {"0", "1"})
        wants_trades = "2" in types
        markets: list[_Market] = []
        for symbol, venue_name in _related_symbols(msg):
            if venue_name is not None:
                venue = self.venues.get(venue_name)
                if venue is None:
                    reject(MD_REJ_UNKNOWN_SYMBOL, f"unknown venue {venue_name!r} (venues: {', '.join(self.venues)})")
                    return
                candidates = [venue]
            else:
                candidates = list(self.venues.values())
            listing = [v for v in candidates if symbol in v.instruments()]
            if not listing:
                reject(MD_REJ_UNKNOWN_SYMBOL, f"unknown symbol {symbol!r} (symbols: {', '.join(self._all_symbols())})")
                return
            for venue in listing:
                key = (venue.name, symbol)
                market = self._markets.get(key) or _Market(venue, symbol)
                if market not in markets:
                    markets.append(market)
        if not markets:
            self._business_reject(client, msg, BIZ_REJ_FIELD_MISSING, "required field(s) missing: 146 (with 55)")
            return
        # Bring every current subscriber up to date first, so the snapshot below and the
        # levels the next X is computed from are the same.
        if self._dirty:
            self._publish()
        for market in markets:
            self._markets.setdefault((market.venue.name, market.symbol), market)
            book = market.books.get(depth)
            try:
                snapshot = market.venue.book(market.symbol, depth)
            except VenueError as exc:
                reject("2", f"{market.venue.name} cannot give its book now: {exc}")  # 2: insufficient bandwidth
                continue
            if kind == "1" and wants_book and book is None:
                book = market.books[depth] = _Book(depth)
                book.bids, book.asks = snapshot.bids, snapshot.asks
            if book is not None:  # what subscribers were sent is what the new one starts from
                bids, asks = book.bids, book.asks
            else:
                bids, asks = snapshot.bids, snapshot.asks
            entries: list[tuple[int, FieldValue]] = []
            if wants_book:
                if "0" in types:
                    for level in bids:
                        entries += [(Tag.MDEntryType, "0"), (Tag.MDEntryPx, fix_number(level.price)),
                                    (Tag.MDEntrySize, fix_number(level.quantity)), (Tag.NumberOfOrders, str(level.orders))]
                if "1" in types:
                    for level in asks:
                        entries += [(Tag.MDEntryType, "1"), (Tag.MDEntryPx, fix_number(level.price)),
                                    (Tag.MDEntrySize, fix_number(level.quantity)), (Tag.NumberOfOrders, str(level.orders))]
            client.send(MsgType.MARKET_DATA_SNAPSHOT, [
                (Tag.MDReqID, req_id), (Tag.Symbol, market.symbol), (Tag.SecurityExchange, market.venue.name),
                (Tag.NoMDEntries, str(len(entries) // 4)), *entries,
            ])
        if kind != "1":
            return
        subscription = _Subscription(client, req_id, markets, depth, types)
        client.subscriptions[req_id] = subscription
        for market in markets:
            if wants_book:
                market.books[depth].subscriptions.add(subscription)
            if wants_trades:
                market.trade_subscriptions.add(subscription)

    def _unsubscribe(self, subscription: _Subscription) -> None:
        subscription.client.subscriptions.pop(subscription.req_id, None)
        for market in subscription.markets:
            for depth, book in list(market.books.items()):
                book.subscriptions.discard(subscription)
                if not book.subscriptions:
                    del market.books[depth]
            market.trade_subscriptions.discard(subscription)
            if not market.books and not market.trade_subscriptions:
                self._markets.pop((market.venue.name, market.symbol), None)
                self._dirty.discard(market)
                market.trades.clear()

    def _touch(self, info: _OrderInfo) -> None:
        """An order may have changed its book: publish it after this loop iteration."""
        market = self._markets.get((info.venue.name, info.symbol))
        if market is not None:
            self._dirty.add(market)

    def _on_trade(self, trade: PublicTrade) -> None:
        market = self._markets.get((trade.venue, trade.symbol))
        if market is not None and market.trade_subscriptions:
            market.trades.append(trade)
            self._dirty.add(market)
            self._schedule_batch()

    def _publish(self) -> None:
        """One X per subscription with what changed on its markets since it was last sent."""
        dirty, self._dirty = self._dirty, set()
        touched: set[_Subscription] = set()
        for market in dirty:
            venue, symbol = market.venue, market.symbol
            for depth, book in market.books.items():
                try:
                    snapshot = venue.book(symbol, depth)
                except Exception:  # an outage: nothing to send until it ends
                    continue
                entries: list[tuple[int, FieldValue]] = []
                if snapshot.bids is not book.bids:  # the venue reuses a side's tuple while it is unchanged
                    entries += _level_entries("0", symbol, venue.name, book.bids, snapshot.bids)
                    book.bids = snapshot.bids
                if snapshot.asks is not book.asks:
                    asks = _level_entries("1", symbol, venue.name, book.asks, snapshot.asks)
                    book.asks = snapshot.asks
                else:
                    asks = []
                if not entries and not asks:
                    continue
                for subscription in book.subscriptions:
                    types = subscription.types
                    if "0" in types:
                        subscription.pending += entries
                    if "1" in types:
                        subscription.pending += asks
                    touched.add(subscription)
            if market.trades:
                entries = _trade_entries(market.trades)
                market.trades = []
                for subscription in market.trade_subscriptions:
                    subscription.pending += entries
                    touched.add(subscription)
        for subscription in touched:
            pending, subscription.pending = subscription.pending, []
            if pending and subscription.client.alive:
                subscription.client.send(MsgType.MARKET_DATA_INCREMENTAL, [
                    (Tag.MDReqID, subscription.req_id), (Tag.NoMDEntries, str(_count_entries(pending))), *pending])

    # -- pushed by the venues ---------------------------------------------------------------------

    def _on_report(self, report: ExecutionReport) -> None:
        """The venues' report listener: may be called on any thread."""
        loop = self._loop
        if loop is None:
            return
        if threading.get_ident() == self._loop_thread:
            self._unsolicited(report)
        else:
            loop.call_soon_threadsafe(self._unsolicited, report)

    def _unsolicited(self, report: ExecutionReport) -> None:
        info = self._orders.get(report.client_order_id)
        if info is None or info.venue.name != report.venue or info.key != report.client_order_id:
            return  # not an order this server placed
        if info.pending is not None:  # its New has not gone out yet: after it
            info.pending.append(report)
            return
        fill = report.fill
        if fill is not None:
            if report.filled_quantity <= info.cum_qty and info.cum_qty:
                return  # already reported (from a status read after an unknown outcome)
            exec_id = self._apply_fill(info, fill, report.filled_quantity)
            if report.status is OrderStatus.FILLED:
                self._set_status(info, OrdStatus.FILLED)
            body = self._er(info, ExecType.TRADE, info.status, fill=fill, exec_id=exec_id)
        else:
            if info.status not in _WORKING:
                return
            exec_type = ExecType.EXPIRED if report.status is OrderStatus.EXPIRED else ExecType.CANCELED
            self._set_status(info, _ORD_STATUS[report.status], report.reason)
            body = self._er(info, exec_type, info.status, text=report.reason)
        self._touch(info)
        self._schedule_batch()
        self._deliver(info.owner, MsgType.EXECUTION_REPORT, body)

    # -- the order record ----------------------------------------------------------------------------

    def _apply_fill(self, info: _OrderInfo, fill: Fill, cum: float | None = None) -> str:
        """Count `fill` in the order's record (and on disk); the ExecID its ER carries."""
        info.notional += fill.price * fill.quantity
        info.cum_qty = cum if cum is not None else round(info.cum_qty + fill.quantity, 12)
        if info.cum_qty >= info.quantity - 1e-12:
            info.cum_qty = info.quantity
            self._set_status(info, OrdStatus.FILLED)
        else:
            self._set_status(info, OrdStatus.PARTIALLY_FILLED)
        exec_id = self._exec_id()
        if self._state is not None:
            self._state.add_fill(info.key, exec_id, fill)
        return exec_id

    def _send_fills(self, info: _OrderInfo, result: OrderResult, send: Callable[..., None]) -> None:
        """One ER Trade per fill of `result`, then the venue's exact cum qty and final word."""
        fills = result.fills
        if not fills:
            return
        last = fills[-1]
        for fill in fills:
            if fill is last:  # the venue's own figure, exact, for the order's state after it
                exec_id = self._apply_fill(info, fill, result.filled_quantity)
                if result.status is OrderStatus.FILLED:
                    self._set_status(info, OrdStatus.FILLED)
            else:
                exec_id = self._apply_fill(info, fill)
            send(MsgType.EXECUTION_REPORT, self._er(info, ExecType.TRADE, info.status, fill=fill, exec_id=exec_id))

    def _set_status(self, info: _OrderInfo, status: OrdStatus, text: str | None = None) -> None:
        info.status = status
        if text is not None:
            info.text = text
        working = self._working.setdefault(info.owner, {})
        if status in _WORKING:
            working[info.key] = info
        else:
            working.pop(info.key, None)
        self._changed(info)

    def _changed(self, info: _OrderInfo) -> None:
        if info.status in _WORKING:
            self._working.setdefault(info.owner, {})[info.key] = info
        if self._state is not None:
            self._state.order_changed(info)
            self._schedule_batch()

    def _remember_id(self, cl_ord_id: str, info: _OrderInfo) -> None:
        self._orders[cl_ord_id] = info
        if cl_ord_id not in info.cl_ord_ids:
            info.cl_ord_ids = (*info.cl_ord_ids, cl_ord_id)
        if self._state is not None:
            self._state.add_id(cl_ord_id, info)
        if len(self._orders) > self._remember:
            _, old = self._orders.popitem(last=False)
            if old.status in _WORKING and self._orders.get(old.key) is None:
                self._orders[old.key] = old  # a working order is never forgotten

    def _restore(self, state: VenueState) -> None:
        """Take back the orders a previous run acknowledged (docs/fix.md, "Restart"): all of
        them answer H and refuse their ClOrdIDs again; those that were working are canceled
        by `start` (the fresh simulator's market is not the one they rested on)."""
        for record in state.load_orders():
            venue = self.venues.get(record.venue)
            if venue is None:
                continue  # a venue not served this time: its orders stay on disk, untouched
            info = _OrderInfo(record.key, venue, record.owner, record.symbol, record.side, record.quantity,
                              record.ord_type, record.price, record.tif, tuple(record.cl_ord_ids),
                              OrdStatus(record.status), record.cum_qty, record.cum_qty * record.avg_px, record.text)
            for cid in info.cl_ord_ids:
                self._orders[cid] = info
            if info.status in _WORKING:
                self._restarted.append(info)

    def _cancel_restarted(self) -> None:
        """Orders working when the previous run ended: canceled, an unsolicited ER to the owner."""
        restarted, self._restarted = self._restarted, []
        for info in restarted:
            self._set_status(info, OrdStatus.CANCELED, RESTART_TEXT)
            self._deliver(info.owner, MsgType.EXECUTION_REPORT,
                          self._er(info, ExecType.CANCELED, OrdStatus.CANCELED, text=RESTART_TEXT))
        if restarted and self._state is not None:
            self._state.commit()

    # -- helpers ---------------------------------------------------------------------------------

    def _all_symbols(self) -> list[str]:
        seen: dict[str, None] = {}
        for venue in self.venues.values():
            seen.update(dict.fromkeys(venue.instruments()))
        return list(seen)

    def _venue_for(self, msg: Message) -> SimulatedExchange | None:
        name = msg.get(Tag.ExDestination) or msg.get(Tag.SecurityExchange)
        if name is None:
            return next(iter(self.venues.values()))
        return self.venues.get(name)

    def _exec_id(self) -> str:
        return f"{self._exec_prefix}{next(self._exec_ids)}"

    def _er(
        self,
        info: _OrderInfo,
        exec_type: ExecType,
        status: OrdStatus,
        *,
        fill: Fill | None = None,
        exec_id: str | None = None,
        cl_ord_id: str | None = None,
        orig: str | None = None,
        text: str | None = None,
    ) -> list[tuple[int, FieldValue]]:
        # Plain int tags and str values (not IntEnum/str-enum members): the store keeps the
        # body for resends, and tuples of plain values drop out of the cycle collector's walks.
        cum = info.cum_qty
        body: list[tuple[int, FieldValue]] = [(37, info.order_id), (11, cl_ord_id or info.cl_ord_id)]
        if orig is not None:
            body.append((41, orig))
        body += [
            (17, exec_id or self._exec_id()), (150, _CODES[exec_type]), (39, _CODES[status]),
            (55, info.symbol), (54, info.side), (38, fix_number(info.quantity)), (40, info.ord_type),
        ]
        if info.price is not None:
            body.append((44, fix_number(info.price)))
        body.append((59, info.tif))
        if fill is not None:
            body += [(31, fix_number(fill.price)), (32, fix_number(fill.quantity)),
                     (Tag.Commission, fix_number(fill.fee)), (Tag.CommType, "3"),
                     (Tag.LastLiquidityInd, _LIQUIDITY[fill.liquidity])]
            if fill.trade_id:
                body.append((Tag.TradeID, fill.trade_id))
        body += [
            (151, fix_number(info.leaves if status in _WORKING else 0.0)), (14, fix_number(cum)),
            (6, fix_number(info.avg_px)), (60, utc_timestamp(self._clock())), (Tag.ExDestination, info.venue.name),
        ]
        if text:
            body.append((Tag.Text, text))
        return body

    def _business_reject(self, client: _Client, msg: Message, reason: str, text: str) -> None:
        client.send(MsgType.BUSINESS_MESSAGE_REJECT, [
            (Tag.RefSeqNum, str(msg.seq_num)), (Tag.RefMsgType, msg.msg_type),
            (Tag.BusinessRejectReason, reason), (Tag.Text, text),
        ])


def _related_symbols(msg: Message) -> list[tuple[str, str | None]]:
    """The (Symbol, SecurityExchange or None) entries of a NoRelatedSym (146) group."""
    out: list[tuple[str, str | None]] = []
    for tag, value in msg.pairs:
        if tag == 55:
            out.append((value.decode("latin-1"), None))
        elif tag == Tag.SecurityExchange and out and out[-1][1] is None:
            out[-1] = (out[-1][0], value.decode("latin-1"))
    return out


def _count_entries(fields: Iterable[tuple[int, FieldValue]]) -> int:
    return sum(1 for tag, _ in fields if tag == Tag.MDUpdateAction)


_FIX_FLOAT = re.compile(r"-?(?:\d+\.?\d*|\.\d+)")


def _fix_float(text: str | None, what: str) -> float:
    """A FIX float: digits with an optional point and sign, nothing else (Python's float()
    also takes '1_0', ' 1', '1e2', 'inf')."""
    if text is None or len(text) > 40 or not text.isascii() or _FIX_FLOAT.fullmatch(text) is None:
        raise ValueError(f"{what} {text!r} is not a FIX decimal number")
    return float(text)


def is_loopback(host: str) -> bool:
    """`host` names this machine only (localhost, 127.0.0.0/8, ::1)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
