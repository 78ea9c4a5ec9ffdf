"""A FIX 4.4 acceptor in front of simulated exchanges: any FIX client can trade with them.

Rules:

- One `FixConnection` (the asyncio driver) per TCP connection, acceptor role; the session
  accepts any SenderCompID unless `allowed_counterparties` is given.
- A session's application messages are handled one after another, in arrival order, by
  one worker task per connection, so the answers to one order keep their order.
- NewOrderSingle (D): ER New (ExecType 0) once the venue accepts it, then one ER Trade
  (ExecType F) per fill with OrdStatus PartiallyFilled/Filled, then ER Expired (C) for an
  IOC/FOK/market remainder; a refusal is one ER Rejected (8) with the venue's reason in Text.
- ClOrdID is the idempotency key across every venue of the server: a ClOrdID already
  used gets an ER Rejected (OrdRejReason 6, duplicate) and never reaches a venue. The
  ClOrdID namespace is the server's, shared by all counterparties.
- OrderCancelRequest (F): ER Canceled (ExecType 4), or OrderCancelReject (9) with
  CxlRejReason (1 unknown order, 0 too late: already finished) and the reason in Text.
- OrderStatusRequest (H): ER with ExecType I (order status); an unknown order gets OrdStatus
  Rejected with Text.
- Fills and expiries of resting orders, pushed later by the venue's report listener, go
  out as unsolicited ERs on the owner's connection (dropped, logged, when it is gone).
- A D/F/H missing a required field gets BusinessMessageReject (j) reason 5; any other
  application MsgType gets j reason 3 (unsupported message type).
- The venue is chosen by ExDestination (100), else SecurityExchange (207), else the first
  venue given.
- Listens on loopback only unless `allow_remote=True`.
"""

from __future__ import annotations

import asyncio
import ipaddress
import itertools
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from decimal import Decimal

from pydantic import ValidationError

from engine.errors import ConfigurationError, UnknownOrderError, UnknownOutcomeError, VenueError
from engine.market_data import ExecutionReport
from engine.models import Order, OrderResult, OrderSide, OrderStatus, OrderType, TimeInForce
from engine.venues.fix.codec import FieldValue, Message, utc_timestamp
from engine.venues.fixio.driver import FixConnection
from engine.venues.fix.session import FixSession, Role, SessionConfig, SessionEvent
from engine.venues.fix.tags import ExecType, MsgType, OrdStatus, Tag
from engine.venues.sim.exchange import SimulatedExchange

log = logging.getLogger(__name__)

# Tags used here only (FIX 4.4 data dictionary).
EX_DESTINATION = 100
SECURITY_EXCHANGE = 207
EXPIRE_TIME = 126
ORD_REJ_REASON = 103
ORD_STATUS_REQ_ID = 790

ORD_REJ_DUPLICATE = "6"
ORD_REJ_OTHER = "99"
CXL_REJ_TOO_LATE = "0"
CXL_REJ_UNKNOWN_ORDER = "1"
BIZ_REJ_UNSUPPORTED_MSG_TYPE = "3"
BIZ_REJ_FIELD_MISSING = "5"

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
_REQUIRED = {
    "D": (Tag.ClOrdID, Tag.Symbol, Tag.Side, Tag.OrderQty, Tag.OrdType),
    "F": (Tag.OrigClOrdID, Tag.ClOrdID),
    "H": (Tag.ClOrdID,),
}


def fix_number(value: float) -> str:
    """A float as a FIX decimal: no exponent, the shortest text that reads back as it."""
    text = repr(float(value))
    if "e" in text or "E" in text:
        text = format(Decimal(text), "f")
    return text[:-2] if text.endswith(".0") else text


def _parse_utc(text: str) -> float:
    for fmt in ("%Y%m%d-%H:%M:%S.%f", "%Y%m%d-%H:%M:%S"):
        try:
            return datetime.strptime(text, fmt).replace(tzinfo=timezone.utc).timestamp()
        except ValueError:
            continue
    raise ValueError(f"ExpireTime(126) {text!r} is not a UTCTimestamp")


@dataclass(slots=True)
class _OrderInfo:
    """What the server knows of an order it passed to a venue."""

    cl_ord_id: str
    venue: SimulatedExchange
    owner: _Client | None
    symbol: str
    side: str  # FIX code
    quantity: float
    ord_type: str
    price: float | None
    cum_qty: float = 0.0
    notional: float = 0.0

    @property
    def order_id(self) -> str:
        return f"{self.venue.name}:{self.cl_ord_id}"

    @property
    def avg_px(self) -> float:
        return self.notional / self.cum_qty if self.cum_qty else 0.0


class _Client:
    """One accepted connection: its driver and the worker that handles its messages in order."""

    def __init__(self, server: FixVenueServer, connection_factory: Callable[[_Client], FixConnection]) -> None:
        self.server = server
        self.inbox: asyncio.Queue[Message] = asyncio.Queue()
        self.connection = connection_factory(self)

    @property
    def alive(self) -> bool:
        return not self.connection.closed.is_set()

    def send(self, msg_type: str, body: list[tuple[int, FieldValue]]) -> None:
        if self.alive:
            self.connection.send(msg_type, body)

    async def work(self) -> None:
        while True:
            message = await self.inbox.get()
            try:
                await self.server._handle(self, message)
            except Exception:  # one bad message must not end the session's worker
                log.exception("FIX venue: handling %r failed", message)


class FixVenueServer:
    """Serve `venues` to FIX 4.4 initiators: `await start()`, `port`, `await stop()`."""

    def __init__(
        self,
        venues: Mapping[str, SimulatedExchange] | SimulatedExchange,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        comp_id: str = "EXECDESK",
        allowed_counterparties: frozenset[str] | None = None,
        allow_remote: bool = False,
        remember_ids: int = 1_000_000,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if isinstance(venues, SimulatedExchange):
            venues = {venues.name: venues}
        if not venues:
            raise ConfigurationError("FixVenueServer needs at least one venue")
        if not allow_remote and not _is_loopback(host):
            raise ConfigurationError(
                f"host {host!r} is not a loopback address: the venue would be reachable from other "
                "machines; pass allow_remote=True to mean it"
            )
        self.venues = dict(venues)
        self.host = host
        self._port = port
        self.comp_id = comp_id
        self.allowed_counterparties = allowed_counterparties
        self._remember = remember_ids
        self._clock = clock
        self._orders: OrderedDict[str, _OrderInfo] = OrderedDict()
        self._exec_ids = itertools.count(1)
        self._server: asyncio.base_events.Server | None = None
        self._clients: set[_Client] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: int | None = None

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("the server is not started")
        return self._server.sockets[0].getsockname()[1]

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        for venue in self.venues.values():
            venue.add_report_listener(self._on_report)
        self._server = await asyncio.start_server(self._accept, self.host, self._port)

    async def stop(self) -> None:
        """Stop listening, log every session out, wait for the connections to end."""
        for venue in self.venues.values():
            venue.remove_report_listener(self._on_report)
        if self._server is not None:
            self._server.close()
        for client in list(self._clients):
            client.connection.logout("venue shutting down")
        waits = [c.connection.closed.wait() for c in self._clients]
        if waits:
            await asyncio.wait([asyncio.ensure_future(w) for w in waits], timeout=5.0)
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None

    # -- connections ------------------------------------------------------------------------

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        config = SessionConfig(self.comp_id, allowed_counterparties=self.allowed_counterparties)

        def connection(client: _Client) -> FixConnection:
            return FixConnection(
                FixSession(config, Role.ACCEPTOR), reader, writer,
                on_message=client.inbox.put_nowait, on_event=self._on_event, clock=self._clock,
            )

        client = _Client(self, connection)
        self._clients.add(client)
        worker = asyncio.ensure_future(client.work())
        run = asyncio.current_task()
        self._tasks.add(worker)
        if run is not None:
            self._tasks.add(run)
        try:
            await client.connection.run()
        finally:
            worker.cancel()
            self._clients.discard(client)
            self._tasks.discard(worker)
            if run is not None:
                self._tasks.discard(run)

    def _on_event(self, event: SessionEvent) -> None:
        log.info("FIX venue session: %s %s", event.kind, event.text)

    # -- application messages ------------------------------------------------------------------

    async def _handle(self, client: _Client, msg: Message) -> None:
        kind = msg.msg_type
        required = _REQUIRED.get(kind)
        if required is None:
            self._business_reject(client, msg, BIZ_REJ_UNSUPPORTED_MSG_TYPE, f"MsgType {kind} is not supported")
            return
        missing = [int(tag) for tag in required if tag not in msg]
        if missing:
            self._business_reject(client, msg, BIZ_REJ_FIELD_MISSING,
                                  f"required field(s) missing: {', '.join(map(str, missing))}")
            return
        if kind == "D":
            await self._new_order(client, msg)
        elif kind == "F":
            await self._cancel(client, msg)
        else:
            await self._status(client, msg)

    async def _new_order(self, client: _Client, msg: Message) -> None:
        cid = msg.get(Tag.ClOrdID)
        symbol = msg.get(Tag.Symbol)
        side_code = msg.get(Tag.Side)
        ord_type = msg.get(Tag.OrdType)
        price_text = msg.get(Tag.Price)
        assert cid is not None and symbol is not None and side_code is not None and ord_type is not None

        def refuse(text: str, reason: str = ORD_REJ_OTHER, venue_name: str = "") -> None:
            client.send(MsgType.EXECUTION_REPORT, [
                (Tag.OrderID, f"{venue_name}:{cid}" if venue_name else "NONE"), (Tag.ClOrdID, cid),
                (Tag.ExecID, self._exec_id()), (Tag.ExecType, ExecType.REJECTED), (Tag.OrdStatus, OrdStatus.REJECTED),
                (Tag.Symbol, symbol), (Tag.Side, side_code), (Tag.OrderQty, msg.get(Tag.OrderQty) or "0"),
                (Tag.LeavesQty, "0"), (Tag.CumQty, "0"), (Tag.AvgPx, "0"),
                (Tag.TransactTime, utc_timestamp(self._clock())), (ORD_REJ_REASON, reason), (Tag.Text, text),
            ])

        if cid in self._orders:
            known = self._orders[cid]
            refuse(f"duplicate ClOrdID {cid!r}: order {known.order_id} already has it; no new order was made",
                   ORD_REJ_DUPLICATE)
            return
        venue = self._venue_for(msg)
        if venue is None:
            refuse(f"unknown venue {msg.get(EX_DESTINATION) or msg.get(SECURITY_EXCHANGE)!r} "
                   f"(venues: {', '.join(self.venues)})")
            return
        side = _SIDES.get(side_code)
        otype = _ORD_TYPES.get(ord_type)
        tif = _TIFS.get(msg.get(Tag.TimeInForce, "0"))
        if side is None:
            refuse(f"Side(54) {side_code!r} is not supported (1 buy, 2 sell)", venue_name=venue.name)
            return
        if otype is None:
            refuse(f"OrdType(40) {ord_type!r} is not supported (1 market, 2 limit)", venue_name=venue.name)
            return
        if tif is None:
            refuse(f"TimeInForce(59) {msg.get(Tag.TimeInForce)!r} is not supported (0, 1, 3, 4, 6)",
                   venue_name=venue.name)
            return
        try:
            quantity = float(msg.get(Tag.OrderQty))  # type: ignore[arg-type]
            price = float(price_text) if price_text is not None else None
            expire_at = _parse_utc(msg.get(EXPIRE_TIME, "")) if tif is TimeInForce.GTD else None
            order = Order(id=cid, client_order_id=cid, symbol=symbol, side=side, type=otype, quantity=quantity,
                          price=price, time_in_force=tif, expire_at=expire_at)
        except (ValueError, ValidationError) as exc:  # ValidationError is a ValueError; both named for the reader
            refuse(f"invalid order: {exc}".replace("\n", " "), venue_name=venue.name)
            return
        info = _OrderInfo(cid, venue, client, symbol, side_code, quantity, ord_type, price)
        self._remember_order(info)
        try:
            result = await venue.submit_async(order)
        except UnknownOutcomeError as exc:
            try:
                result = await venue.status_async(cid)
            except (UnknownOrderError, VenueError):
                refuse(f"{exc}; the order is not known at the venue", venue_name=venue.name)
                return
        except VenueError as exc:
            refuse(str(exc), venue_name=venue.name)
            return
        if result.status is OrderStatus.REJECTED:
            refuse(result.reason or "rejected by the venue", venue_name=venue.name)
            return
        self._report_result(info, result, client)

    def _report_result(self, info: _OrderInfo, result: OrderResult, client: _Client) -> None:
        """ER New, one ER Trade per fill, then ER Expired for a remainder that does not rest."""
        client.send(MsgType.EXECUTION_REPORT, self._er(info, ExecType.NEW, OrdStatus.NEW, leaves=info.quantity))
        last_fill = result.fills[-1] if result.fills else None
        for fill in result.fills:
            info.cum_qty += fill.quantity
            info.notional += fill.quantity * fill.price
            if fill is last_fill and result.status is OrderStatus.FILLED:
                # The venue's own figures, exact, for the order's final state.
                info.cum_qty = result.filled_quantity
                status, leaves, avg = OrdStatus.FILLED, 0.0, result.average_price
            else:
                status, leaves, avg = OrdStatus.PARTIALLY_FILLED, max(info.quantity - info.cum_qty, 0.0), None
            client.send(MsgType.EXECUTION_REPORT, self._er(
                info, ExecType.TRADE, status, leaves=leaves, avg=avg, last=(fill.price, fill.quantity)))
        if result.status is OrderStatus.EXPIRED:
            client.send(MsgType.EXECUTION_REPORT, self._er(
                info, ExecType.EXPIRED, OrdStatus.EXPIRED, leaves=0.0, text=result.reason))

    async def _cancel(self, client: _Client, msg: Message) -> None:
        orig = msg.get(Tag.OrigClOrdID) or ""
        cid = msg.get(Tag.ClOrdID) or ""
        info = self._orders.get(orig)

        def cancel_reject(reason: str, status: str, text: str) -> None:
            client.send(MsgType.ORDER_CANCEL_REJECT, [
                (Tag.OrderID, info.order_id if info else "NONE"), (Tag.ClOrdID, cid), (Tag.OrigClOrdID, orig),
                (Tag.OrdStatus, status), (Tag.CxlRejResponseTo, "1"), (Tag.CxlRejReason, reason), (Tag.Text, text),
            ])

        if info is None:
            cancel_reject(CXL_REJ_UNKNOWN_ORDER, OrdStatus.REJECTED, f"order {orig!r} is not known")
            return
        try:
            result = await info.venue.cancel_async(orig)
        except VenueError as exc:
            # The venue did not cancel: the order stands as the server last reported it.
            standing = OrdStatus.PARTIALLY_FILLED if info.cum_qty else OrdStatus.NEW
            cancel_reject("99", standing, str(exc))
            return
        if result.status is OrderStatus.CANCELED:
            client.send(MsgType.EXECUTION_REPORT, self._er(
                info, ExecType.CANCELED, OrdStatus.CANCELED, leaves=0.0, cl_ord_id=cid, orig=orig,
                cum=result.filled_quantity, avg=result.average_price, text=result.reason))
            return
        try:
            now = await info.venue.status_async(orig)
            status = _ORD_STATUS[now.status]
        except (UnknownOrderError, VenueError):
            status = OrdStatus.REJECTED
        cancel_reject(CXL_REJ_TOO_LATE, status, result.reason or "cancel refused")

    async def _status(self, client: _Client, msg: Message) -> None:
        cid = msg.get(Tag.ClOrdID) or ""
        info = self._orders.get(cid)
        extra: list[tuple[int, FieldValue]] = []
        if ORD_STATUS_REQ_ID in msg:
            extra.append((ORD_STATUS_REQ_ID, msg.get(ORD_STATUS_REQ_ID) or ""))
        if info is None:
            client.send(MsgType.EXECUTION_REPORT, [
                (Tag.OrderID, "NONE"), (Tag.ClOrdID, cid), (Tag.ExecID, self._exec_id()),
                (Tag.ExecType, ExecType.ORDER_STATUS), (Tag.OrdStatus, OrdStatus.REJECTED),
                (Tag.Symbol, msg.get(Tag.Symbol) or "NA"), (Tag.Side, msg.get(Tag.Side) or "1"),
                (Tag.LeavesQty, "0"), (Tag.CumQty, "0"), (Tag.AvgPx, "0"),
                (Tag.Text, f"order {cid!r} is not known"), *extra,
            ])
            return
        try:
            result = await info.venue.status_async(cid)
        except (UnknownOrderError, VenueError) as exc:
            client.send(MsgType.EXECUTION_REPORT, self._er(
                info, ExecType.ORDER_STATUS, OrdStatus.REJECTED, leaves=0.0, text=str(exc)) + extra)
            return
        status = _ORD_STATUS[result.status]
        leaves = result.remaining_quantity if result.status.is_working else 0.0
        client.send(MsgType.EXECUTION_REPORT, self._er(
            info, ExecType.ORDER_STATUS, status, leaves=leaves, cum=result.filled_quantity,
            avg=result.average_price, text=result.reason) + extra)

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
        if info is None or info.venue.name != report.venue:
            return  # not an order this server placed
        owner = info.owner
        fill = report.fill
        status = _ORD_STATUS[report.status]
        if fill is not None:
            info.cum_qty += fill.quantity
            info.notional += fill.quantity * fill.price
            body = self._er(info, ExecType.TRADE, status, leaves=report.leaves_quantity,
                            cum=report.filled_quantity, last=(fill.price, fill.quantity))
        else:
            exec_type = ExecType.EXPIRED if report.status is OrderStatus.EXPIRED else ExecType.CANCELED
            body = self._er(info, exec_type, status, leaves=0.0, cum=report.filled_quantity, text=report.reason)
        if owner is None or not owner.alive:
            log.warning("FIX venue: report for %s dropped, its session is gone: %s", info.order_id, report)
            return
        owner.send(MsgType.EXECUTION_REPORT, body)

    # -- helpers ---------------------------------------------------------------------------------

    def _venue_for(self, msg: Message) -> SimulatedExchange | None:
        name = msg.get(EX_DESTINATION) or msg.get(SECURITY_EXCHANGE)
        if name is None:
            return next(iter(self.venues.values()))
        return self.venues.get(name)

    def _remember_order(self, info: _OrderInfo) -> None:
        self._orders[info.cl_ord_id] = info
        if len(self._orders) > self._remember:
            self._orders.popitem(last=False)

    def _exec_id(self) -> str:
        return f"E{next(self._exec_ids)}"

    def _er(
        self,
        info: _OrderInfo,
        exec_type: ExecType,
        status: OrdStatus,
        *,
        leaves: float,
        cum: float | None = None,
        avg: float | None = None,
        last: tuple[float, float] | None = None,
        cl_ord_id: str | None = None,
        orig: str | None = None,
        text: str | None = None,
    ) -> list[tuple[int, FieldValue]]:
        cum = info.cum_qty if cum is None else cum
        avg = (info.avg_px if avg is None else avg) if cum else 0.0
        body: list[tuple[int, FieldValue]] = [(Tag.OrderID, info.order_id), (Tag.ClOrdID, cl_ord_id or info.cl_ord_id)]
        if orig is not None:
            body.append((Tag.OrigClOrdID, orig))
        body += [
            (Tag.ExecID, self._exec_id()), (Tag.ExecType, exec_type), (Tag.OrdStatus, status),
            (Tag.Symbol, info.symbol), (Tag.Side, info.side), (Tag.OrderQty, fix_number(info.quantity)),
            (Tag.OrdType, info.ord_type),
        ]
        if info.price is not None:
            body.append((Tag.Price, fix_number(info.price)))
        if last is not None:
            body += [(Tag.LastPx, fix_number(last[0])), (Tag.LastQty, fix_number(last[1]))]
        body += [
            (Tag.LeavesQty, fix_number(leaves)), (Tag.CumQty, fix_number(cum)), (Tag.AvgPx, fix_number(avg)),
            (Tag.TransactTime, utc_timestamp(self._clock())),
        ]
        if text:
            body.append((Tag.Text, text))
        return body

    def _business_reject(self, client: _Client, msg: Message, reason: str, text: str) -> None:
        client.send(MsgType.BUSINESS_MESSAGE_REJECT, [
            (Tag.RefSeqNum, str(msg.seq_num)), (Tag.RefMsgType, msg.msg_type),
            (Tag.BusinessRejectReason, reason), (Tag.Text, text),
        ])


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
