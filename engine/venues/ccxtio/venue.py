"""`CcxtVenue`: a real exchange through CCXT's unified API (`ccxt.async_support`), as a venue.

Install with the extra: `pip install execdesk[ccxt]`. Nothing else in the engine imports
this module, so `import engine` never loads ccxt.

Rules:

- One event loop owns the CCXT exchange (its HTTP session and its rate limiter are bound
  to a loop): a daemon thread's own, started on first use. Callers on any thread or loop
  reach it through `asyncio.run_coroutine_threadsafe`; the sync methods wait on the
  future, the `_async` ones await it. Local reads (`book`, `instruments`, `trades`) never
  make a request: `book()` is the last snapshot `book_async()` or the poller fetched.
- Sandbox (testnet) by default: `set_sandbox_mode(True)` where CCXT knows one for the
  exchange. An exchange without one is refused unless `live=True` (real money, said on
  the desk's top bar). `live=True` trades the real exchange even where a sandbox exists.
- CCXT's own rate limiter stays on (`enableRateLimit`); `rate_limit=False` is for offline
  tests, whose canned replies need no pacing. CCXT's limiter paces but does not hear a
  429 or 418: when one comes with a Retry-After, nothing is sent (orders, polls) until it
  has passed; each request meanwhile fails at once as rate limited (binance bans an IP
  that keeps sending after its 429s).
- Keys: `api_key`, `secret` (and `password` where the exchange asks for one) are
  `engine.secrets.Secret`s; `from_environment` reads `EXECDESK_<EXCHANGE>_API_KEY`,
  `_SECRET` and `_PASSWORD`. Their values are revealed only into the CCXT instance that
  signs the requests; every text this venue makes (errors, reasons, logs) is scrubbed of
  them.
- Orders: MARKET and LIMIT (ICEBERG, TWAP, VWAP and SMART are our algorithms: their
  children come here as plain orders); GTC, IOC, FOK. Our client order id goes out as
  CCXT's unified `clientOrderId`, which CCXT writes in the exchange's own parameter
  (binance `newClientOrderId`, bybit `orderLinkId`). The instrument's tick, lot and
  filters are checked before anything is sent; a breach is REJECTED here, as a simulated
  venue answers.
- Errors (CCXT's classes to ours; `venue_error`): DDoSProtection and RateLimitExceeded ->
  `RateLimitedError` (transient, retried); RequestTimeout and other NetworkErrors, and
  any other OperationFailed (BadResponse, NullResponse; binance -1000, -1001, -1006
  "execution status unknown") -> on a create or cancel `UnknownOutcomeError` (the router
  asks the status by client order id before anything is resent), on a read
  `VenueUnavailableError` / transient; InvalidNonce and OnMaintenance (refused before
  anything was done) -> transient; OrderNotFound -> `UnknownOrderError`; InvalidOrder, InsufficientFunds,
  BadRequest, OperationRejected, AuthenticationError and any other answer of the exchange
  -> `PermanentVenueError`. A create refused for the order itself (InvalidOrder,
  InsufficientFunds, BadRequest, OperationRejected) comes back as a REJECTED result with the
  exchange's own message, as base.py asks of order-level refusals.
- Status by client order id: binance `fetch_order` with `origClientOrderId`; bybit its open
  and then its closed orders filtered by `orderLinkId`; any other exchange its open and
  closed orders, matched on `clientOrderId`. Not found -> `UnknownOrderError`. An order
  this object did not send (a previous run's: a restart's recovery asks) is looked for
  among the open orders of every symbol (one request), then in each listed symbol, the
  asked-for first (the interface gives no symbol: an order that is not open costs a
  request per listed market), and, once found, tracked as if sent here: polled, cancelable, its
  fill so far a baseline (the journal has those fills).
- What happens to a resting order later (fills, a cancel by the exchange) is learned by
  polling (`poll_interval` seconds; `poll_once()` by hand) and pushed to the report
  listeners as `ExecutionReport`s; each fill counts once (convert.py: trade ids). Orders
  first, then the books: of every symbol in `symbols` when given, else of the symbols
  asked for (`book()` of a symbol not fetched yet asks the next round for it,
  `book_async()`, an order's), never of every market the exchange lists (binance has
  over a thousand: one round would take minutes at its rate limit, and the order polls
  wait for it).
- Amend is not offered (CCXT's edit_order differs too much between exchanges): it is
  REJECTED with a reason; cancel and send a new order instead.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import json
import logging
import math
import re
import threading
import time
import urllib.parse
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ccxt
import ccxt.async_support as ccxt_async

from engine.errors import (
    ConfigurationError,
    PermanentVenueError,
    RateLimitedError,
    TransientVenueError,
    UnknownOrderError,
    UnknownOutcomeError,
    VenueError,
    VenueUnavailableError,
)
from engine.market_data import BookSnapshot, ExecutionReport, PublicTrade, ReportListener, TradeListener
from engine.models import FeeSchedule, Fill, Instrument, Order, OrderResult, OrderSide, OrderStatus, OrderType
from engine.models import TimeInForce
from engine.secrets import Secret, secret_from_env
from engine.venues.ccxtio.convert import book_snapshot, fee_in_quote, instrument_of, new_fills, number, status_of

__all__ = ["CcxtVenue", "credentials_from_env", "has_sandbox", "key_variables", "venue_error"]

log = logging.getLogger(__name__)

_FINISHED_KEPT = 10_000
_SENT_TIF = {TimeInForce.GTC: "GTC", TimeInForce.IOC: "IOC", TimeInForce.FOK: "FOK"}
# Order-level refusals: the exchange answered, about this order only.
_ORDER_REFUSALS = (ccxt.InvalidOrder, ccxt.InsufficientFunds, ccxt.BadRequest, ccxt.OperationRejected)


@dataclass(frozen=True, slots=True)
class _Dialect:
    """How one exchange is asked about our orders by client order id (CCXT params)."""

    cancel_param: str | None  # the params key a cancel takes our id in (None: by exchange id)
    lookup: str  # "fetch_order": by id param; "lists": open then closed filtered; "scan": match
    lookup_param: str | None


_DIALECTS = {
    "binance": _Dialect("clientOrderId", "fetch_order", "clientOrderId"),  # -> origClientOrderId
    "bybit": _Dialect("orderLinkId", "lists", "orderLinkId"),
}
_SCAN = _Dialect(None, "scan", None)


def key_variables(exchange_id: str) -> tuple[str, str, str]:
    """The environment variables an exchange's key, secret and password are read from."""
    stem = "EXECDESK_" + re.sub(r"[^A-Z0-9]", "_", exchange_id.upper())
    return f"{stem}_API_KEY", f"{stem}_SECRET", f"{stem}_PASSWORD"


def credentials_from_env(exchange_id: str, environ: Mapping[str, str]) -> dict[str, Secret]:
    """The exchange's keys from `environ` as Secrets (none set: an empty dict, for public
    data only). A key without its secret, or the reverse, is refused naming the variables."""
    key_var, secret_var, password_var = key_variables(exchange_id)
    found = {name: var for name, var in (("api_key", key_var), ("secret", secret_var), ("password", password_var))
             if environ.get(var)}
    if ("api_key" in found) != ("secret" in found):
        have, missing = (key_var, secret_var) if "api_key" in found else (secret_var, key_var)
        raise ConfigurationError(f"{exchange_id}: {have} is set but {missing} is not: set both or neither")
    return {name: secret_from_env(var, environ) for name, var in found.items()}


def has_sandbox(exchange_id: str) -> bool:
    """Whether CCXT knows a sandbox (testnet) for the exchange."""
    cls = getattr(ccxt, exchange_id, None)
    if cls is None:
        raise ConfigurationError(_unknown_exchange(exchange_id))
    return bool(cls().urls.get("test"))


def _unknown_exchange(exchange_id: str) -> str:
    close = [e for e in ccxt.exchanges if e.startswith(exchange_id[:3])][:8]
    hint = f" (did you mean {', '.join(close)}?)" if close else ""
    return f"CCXT has no exchange {exchange_id!r}{hint}; its ids are listed in ccxt.exchanges"


def _describe(exc: BaseException) -> str:
    """The exchange's own words in a CCXT error: the message (and code) of its JSON body."""
    text = str(exc)
    head, _, rest = text.partition(" ")
    if rest and head in ccxt.exchanges:
        text = rest  # CCXT puts the exchange's id first
    body = text[text.find("{"):] if "{" in text else text  # "429 Error {...}": the body after the status
    try:
        data = json.loads(body)
    except ValueError:
        data = None
    if isinstance(data, dict):
        message = next((str(data[k]) for k in ("msg", "retMsg", "message", "error") if data.get(k)), None)
        code = next((data[k] for k in ("code", "retCode") if k in data), None)
        if message:
            return f"{message} (code {code})" if code not in (None, "") else message
    return text[:300]


def venue_error(exc: BaseException, venue: str, op: str, scrub: Callable[[str], str] = str) -> Exception:
    """Our error for a CCXT error raised by `op` ("create", "cancel", or a read)."""
    what = scrub(f"{venue}: {op}: {type(exc).__name__}: {_describe(exc)}")
    sends = op in ("create", "cancel")
    if isinstance(exc, (ccxt.DDoSProtection, ccxt.RateLimitExceeded)):
        return RateLimitedError(what, venue=venue)
    if isinstance(exc, ccxt.InvalidNonce):
        return TransientVenueError(what, venue=venue)
    if isinstance(exc, ccxt.OnMaintenance):
        return VenueUnavailableError(what, venue=venue)
    if isinstance(exc, ccxt.NetworkError):  # RequestTimeout, ExchangeNotAvailable, ...
        if sends:
            return UnknownOutcomeError(f"{what}; outcome unknown until a status query", venue=venue)
        return VenueUnavailableError(what, venue=venue)
    if isinstance(exc, ccxt.OrderNotFound):
        return UnknownOrderError(what)
    if isinstance(exc, ccxt.OperationFailed):  # BadResponse, binance -1000/-1001/-1006 ...
        if sends:  # the exchange may have acted ("execution status unknown"): never resend blind
            return UnknownOutcomeError(f"{what}; outcome unknown until a status query", venue=venue)
        return TransientVenueError(what, venue=venue)
    return PermanentVenueError(what, venue=venue)


class _Track:
    """An order this venue sent and has not seen finish (or finished recently)."""

    __slots__ = ("cid", "symbol", "side", "quantity", "price", "type", "tif", "order_id", "status", "cum", "notional",
                 "fee", "trade_ids", "fills", "acknowledged", "reason", "not_found")

    def __init__(self, order: Order, cid: str) -> None:
        self.cid = cid
        self.symbol = order.symbol
        self.side = order.side
        self.quantity = float(order.quantity)
        self.price = order.price
        self.type = order.type
        self.tif = order.time_in_force
        self.order_id = ""
        self.status = OrderStatus.PENDING_NEW
        self.cum = 0.0
        self.notional = 0.0
        self.fee = 0.0
        self.trade_ids: set[str] = set()
        self.fills: list[Fill] = []
        self.acknowledged = False
        self.reason: str | None = None
        self.not_found = 0  # status queries that did not find it (before it was acknowledged)


class CcxtVenue:
    """A venue on a real exchange through CCXT: build, `connect()`, trade, `close()`."""

    def __init__(
        self,
        exchange_id: str,
        *,
        name: str | None = None,
        live: bool = False,
        api_key: Secret | None = None,
        secret: Secret | None = None,
        password: Secret | None = None,
        markets: Mapping[str, Any] | str | Path | None = None,
        symbols: Sequence[str] | None = None,
        fees: FeeSchedule | None = None,
        rate_limit: bool = True,
        timeout: float = 10.0,
        poll_interval: float | None = 1.0,
        book_depth: int = 10,
        clock: Callable[[], float] = time.time,
        options: Mapping[str, Any] | None = None,
    ) -> None:
        if not isinstance(exchange_id, str) or getattr(ccxt_async, exchange_id, None) is None \
                or exchange_id not in ccxt.exchanges:
            raise ConfigurationError(_unknown_exchange(str(exchange_id)))
        for label, value in (("api_key", api_key), ("secret", secret), ("password", password)):
            if value is not None and not isinstance(value, Secret):
                raise ConfigurationError(f"{label} must be a Secret (engine.secrets), got {type(value).__name__}")
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not timeout > 0:
            raise ConfigurationError(f"timeout must be a number of seconds > 0, got {timeout!r}")
        if poll_interval is not None and (isinstance(poll_interval, bool) or not isinstance(poll_interval, (int, float))
                                          or not poll_interval > 0):
            raise ConfigurationError(f"poll_interval must be seconds > 0 or None, got {poll_interval!r}")
        self.exchange_id = exchange_id
        self.name = name or exchange_id
        self.live = bool(live)
        self._secrets = tuple(s for s in (api_key, secret, password) if s is not None)
        self._loop = asyncio.new_event_loop()
        config: dict[str, Any] = {"enableRateLimit": bool(rate_limit), "timeout": int(timeout * 1000),
                                  "asyncio_loop": self._loop}
        if options:
            config["options"] = dict(options)
        if api_key is not None:
            config["apiKey"] = api_key.reveal()
        if secret is not None:
            config["secret"] = secret.reveal()
        if password is not None:
            config["password"] = password.reveal()
        self.exchange: Any = getattr(ccxt_async, exchange_id)(config)
        self.sandbox = not self.live
        try:
            if self.exchange.precisionMode != ccxt.TICK_SIZE:
                raise ConfigurationError(f"{exchange_id}: CCXT gives its precisions as digit counts, which this "
                                         "adapter does not read yet (TICK_SIZE exchanges only)")
            if self.sandbox:
                if not self.exchange.urls.get("test"):
                    raise ConfigurationError(
                        f"{exchange_id} has no sandbox in CCXT: trading it means real money; "
                        "pass --live (live=True) to do so knowingly")
                self.exchange.set_sandbox_mode(True)
        except BaseException:
            self._loop.close()
            raise
        self.fees = fees or FeeSchedule()
        self._fees_given = fees is not None
        self._markets_given = markets
        self._symbols = list(symbols) if symbols is not None else None
        self._clock = clock
        self._poll_interval = poll_interval
        self._book_depth = book_depth
        self._dialect = _DIALECTS.get(exchange_id, _SCAN)
        self._instruments: dict[str, Instrument] = {}
        self._books: dict[str, BookSnapshot] = {}
        # The symbols whose books the poller fetches: all of `symbols` when given; else
        # those someone asked for (book(), book_async(), an order), not every spot market.
        self._watched: dict[str, None] = dict.fromkeys(self._symbols or ())
        self._tracks: dict[str, _Track] = {}
        self._finished: OrderedDict[str, _Track] = OrderedDict()
        self._report_listeners: tuple[ReportListener, ...] = ()
        self._thread: threading.Thread | None = None
        self._thread_lock = threading.Lock()
        self._poller: asyncio.Task[None] | None = None
        self._closed = False
        self._closing: asyncio.Task[None] | None = None
        self._quiet_until = 0.0  # clock time until which the exchange asked us to send nothing

    def __repr__(self) -> str:
        mode = "LIVE" if self.live else "sandbox"
        return f"CcxtVenue({self.name!r}, {self.exchange_id}, {mode})"

    @classmethod
    def from_environment(cls, exchange_id: str, environ: Mapping[str, str], **kwargs: Any) -> CcxtVenue:
        """A venue with its keys from `EXECDESK_<EXCHANGE>_API_KEY` / `_SECRET` / `_PASSWORD`."""
        return cls(exchange_id, **credentials_from_env(exchange_id, environ), **kwargs)

    # -- the loop ---------------------------------------------------------------------------

    def _ensure_thread(self) -> None:
        with self._thread_lock:
            if self._closed:
                raise VenueUnavailableError(f"{self.name}: the venue is closed", venue=self.name)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run_loop, name=f"execdesk-ccxt-{self.name}",
                                                daemon=True)
                self._thread.start()

    def _run_loop(self) -> None:
        self._loop.run_forever()
        if self._closed:
            self._loop.close()  # stopped by close(), maybe from a listener on this very thread

    def _submit_coro(self, fn: Callable[..., Awaitable[Any]], *args: Any) -> concurrent.futures.Future[Any]:
        self._ensure_thread()
        return asyncio.run_coroutine_threadsafe(self._guarded(fn, *args), self._loop)

    async def _guarded(self, fn: Callable[..., Awaitable[Any]], *args: Any) -> Any:
        """`fn` on the loop; cut short by `close()`, its caller hears why (an error of ours, never
        a CancelledError its own task would take for its own cancellation)."""
        try:
            return await fn(*args)
        except asyncio.CancelledError:
            if not self._closed:
                raise
            what = f"{self.name}: the venue was closed while the request was in flight"
            if fn in (self._submit, self._cancel):
                raise UnknownOutcomeError(f"{what}; outcome unknown until a status query", venue=self.name) from None
            raise VenueUnavailableError(what, venue=self.name) from None

    async def _on_loop(self, fn: Callable[..., Awaitable[Any]], *args: Any) -> Any:
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is self._loop:
            return await fn(*args)
        return await asyncio.wrap_future(self._submit_coro(fn, *args))

    def _wait(self, fn: Callable[..., Awaitable[Any]], *args: Any) -> Any:
        if self._thread is not None and threading.current_thread() is self._thread:
            # A report listener (it runs on this loop) calling a sync method would wait on
            # the loop it blocks: forever.
            raise RuntimeError(f"{self.name}: a sync CcxtVenue method was called on the venue's own loop "
                               "thread (from a report listener?): use its _async form or hand the call off")
        return self._submit_coro(fn, *args).result()

    # -- lifecycle --------------------------------------------------------------------------

    def connect(self) -> CcxtVenue:
        """Load the markets (from `markets` when given, else the exchange) and start polling."""
        self._wait(self._connect)
        return self

    async def connect_async(self) -> CcxtVenue:
        await self._on_loop(self._connect)
        return self

    async def _connect(self) -> None:
        ex = self.exchange
        given = self._markets_given
        if given is not None:
            if isinstance(given, (str, Path)):
                given = json.loads(Path(given).read_text())
            ex.set_markets(list(given.values()))
        else:
            try:
                await self._ask(ex.load_markets())
            except ccxt.BaseError as exc:
                raise venue_error(exc, self.name, "load_markets", self._scrub) from None
        wanted = self._symbols if self._symbols is not None else [s for s in ex.markets if ex.markets[s].get("spot")]
        instruments: dict[str, Instrument] = {}
        for symbol in wanted:
            market = ex.markets.get(symbol)
            if market is None:
                raise ConfigurationError(f"{self.name} lists no market {symbol!r}")
            try:
                instrument = instrument_of(market)
            except ValueError as exc:
                log.warning("CCXT venue %s: market %s left out: %s", self.name, symbol, exc)
                continue
            if instrument is not None:
                instruments[symbol] = instrument
        self._instruments = instruments
        if not self._fees_given and instruments:
            market = ex.markets[next(iter(instruments))]
            maker, taker = number(market.get("maker")), number(market.get("taker"))
            if maker is not None and taker is not None:
                self.fees = FeeSchedule(maker * 10_000, taker * 10_000)
        if self._poll_interval is not None and self._poller is None:
            self._poller = asyncio.ensure_future(self._poll_forever())

    def close(self) -> None:
        """Stop polling, close CCXT's session, end the loop thread. A request still in flight
        ends with UnknownOutcomeError (a create or cancel: settle it by status) or
        VenueUnavailableError (a read)."""
        with self._thread_lock:
            if self._closed:
                return
            self._closed = True
            thread = self._thread
        if thread is None:
            self._loop.close()
            return
        if threading.current_thread() is thread:
            # From a report listener, on the loop itself: it cannot wait for the loop, so the
            # loop finishes the closing after the listener returns.
            async def finish() -> None:
                try:
                    await self._stop()
                except Exception as exc:
                    log.warning("CCXT venue %s: close: %s", self.name, self._scrub(str(exc)))
                self._loop.stop()

            self._closing = self._loop.create_task(finish())  # held: the loop keeps tasks weakly
            return
        future = asyncio.run_coroutine_threadsafe(self._stop(), self._loop)
        try:
            future.result(timeout=10)
        except Exception as exc:  # closing must not raise; say what went wrong
            log.warning("CCXT venue %s: close: %s", self.name, self._scrub(str(exc)))
        self._loop.call_soon_threadsafe(self._loop.stop)
        thread.join(timeout=10)

    async def close_async(self) -> None:
        await asyncio.get_running_loop().run_in_executor(None, self.close)

    async def _stop(self) -> None:
        # The poller and every request still in flight end here (their callers hear so,
        # see _guarded), before the session closes under them.
        me = asyncio.current_task()
        others = [t for t in asyncio.all_tasks() if t is not me]
        for task in others:
            task.cancel()
        await asyncio.gather(*others, return_exceptions=True)
        self._poller = None
        await self.exchange.close()

    def __enter__(self) -> CcxtVenue:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- local reads ------------------------------------------------------------------------

    def instruments(self) -> Mapping[str, Instrument]:
        return self._instruments

    def book(self, symbol: str, depth: int = 10) -> BookSnapshot:
        """The last snapshot fetched (an empty one before the first): never a request."""
        snap = self._books.get(symbol)
        if snap is None:
            if symbol in self._instruments:
                self._watched[symbol] = None  # the poller fetches it from its next round on
            return BookSnapshot(self.name, symbol, (), (), self._clock())
        if len(snap.bids) > depth or len(snap.asks) > depth:
            return BookSnapshot(snap.venue, symbol, snap.bids[:depth], snap.asks[:depth], snap.ts_event)
        return snap

    async def book_async(self, symbol: str, depth: int = 10) -> BookSnapshot:
        return await self._on_loop(self._fetch_book, symbol, depth)

    def trades(self, symbol: str, since: float | None = None) -> list[PublicTrade]:
        return []  # public trades are not polled (VWAP follows its own schedule on these venues)

    def add_report_listener(self, listener: ReportListener) -> None:
        self._report_listeners = (*self._report_listeners, listener)

    def remove_report_listener(self, listener: ReportListener) -> None:
        self._report_listeners = tuple(x for x in self._report_listeners if x is not listener)

    def add_trade_listener(self, listener: TradeListener) -> None:
        pass  # no public trades are pushed (see trades())

    def remove_trade_listener(self, listener: TradeListener) -> None:
        pass

    # -- requests ---------------------------------------------------------------------------

    def submit(self, order: Order) -> OrderResult:
        return self._wait(self._submit, order)  # type: ignore[no-any-return]

    async def submit_async(self, order: Order) -> OrderResult:
        return await self._on_loop(self._submit, order)  # type: ignore[no-any-return]

    def cancel(self, client_order_id: str) -> OrderResult:
        return self._wait(self._cancel, client_order_id)  # type: ignore[no-any-return]

    async def cancel_async(self, client_order_id: str) -> OrderResult:
        return await self._on_loop(self._cancel, client_order_id)  # type: ignore[no-any-return]

    def amend(self, client_order_id: str, quantity: float | None = None, price: float | None = None) -> OrderResult:
        return self._amend_refused(client_order_id)

    async def amend_async(
        self, client_order_id: str, quantity: float | None = None, price: float | None = None
    ) -> OrderResult:
        return self._amend_refused(client_order_id)

    def status(self, client_order_id: str) -> OrderResult:
        return self._wait(self._status, client_order_id)  # type: ignore[no-any-return]

    async def status_async(self, client_order_id: str) -> OrderResult:
        return await self._on_loop(self._status, client_order_id)  # type: ignore[no-any-return]

    def open_orders(self, symbol: str | None = None) -> list[OrderResult]:
        return self._wait(self._open_orders, symbol)  # type: ignore[no-any-return]

    async def open_orders_async(self, symbol: str | None = None) -> list[OrderResult]:
        return await self._on_loop(self._open_orders, symbol)  # type: ignore[no-any-return]

    async def poll_once(self) -> None:
        """Learn what happened to the orders working here (and refresh the books);
        changes go to the report listeners."""
        await self._on_loop(self._poll)

    # -- on the loop ------------------------------------------------------------------------

    async def _ask(self, call: Coroutine[Any, Any, Any]) -> Any:
        """A CCXT call. A reply CCXT cannot read raises a ValueError (or the like) from its
        parser, not a ccxt error: it becomes ccxt.BadResponse, mapped as any bad reply (on a
        create or cancel: outcome unknown, the order may exist). While the exchange's
        Retry-After of a 429/418 runs, nothing is sent: RateLimitExceeded at once."""
        pause = self._quiet_until - self._clock()
        if pause > 0:
            call.close()
            raise ccxt.RateLimitExceeded(f"{self.exchange_id} not sent: the exchange asked for a pause "
                                         f"(Retry-After), {pause:.0f}s more")
        try:
            return await call
        except (ccxt.RateLimitExceeded, ccxt.DDoSProtection):
            self._note_retry_after()
            raise
        except ccxt.BaseError:
            raise
        except (ValueError, TypeError, KeyError, IndexError, AttributeError, ArithmeticError) as exc:
            raise ccxt.BadResponse(f"{self.exchange_id} unreadable reply: {type(exc).__name__}: {exc}") from exc

    def _note_retry_after(self) -> None:
        headers = getattr(self.exchange, "last_response_headers", None) or {}
        value = next((v for k, v in dict(headers).items() if str(k).lower() == "retry-after"), None)
        seconds = number(value)
        if seconds is not None and seconds > 0:
            self._quiet_until = max(self._quiet_until, self._clock() + seconds)
            log.warning("CCXT venue %s: the exchange asks for a pause of %gs (Retry-After): nothing is sent "
                        "until then", self.name, seconds)

    def _scrub(self, text: str) -> str:
        for secret in self._secrets:
            value = secret.reveal()
            if not value:
                continue
            # as given, and as it appears in a URL (CCXT puts the request's URL in its errors)
            for form in {value, urllib.parse.quote(value, safe=""), urllib.parse.quote_plus(value)}:
                if form in text:
                    text = text.replace(form, "***")
        return text

    def _refused(self, order: Order, cid: str, reason: str) -> OrderResult:
        return OrderResult(cid, self.name, OrderStatus.REJECTED, float(order.quantity), reason=self._scrub(reason),
                           symbol=order.symbol, side=order.side, price=order.price, timestamp=self._clock())

    def _check(self, order: Order, cid: str) -> OrderResult | None:
        if order.type not in (OrderType.MARKET, OrderType.LIMIT):
            return self._refused(order, cid, f"order type {order.type.value} is not sent to {self.name} "
                                             "(MARKET, LIMIT; the algorithms send their children as those)")
        if order.time_in_force not in _SENT_TIF:
            return self._refused(order, cid, f"time in force {order.time_in_force.value} is not sent to "
                                             f"{self.name} (GTC, IOC, FOK)")
        instrument = self._instruments.get(order.symbol)
        if instrument is None:
            listed = ", ".join(list(self._instruments)[:10]) or "none loaded"
            return self._refused(order, cid, f"unknown symbol {order.symbol!r} at {self.name} (listed: {listed})")
        if instrument.quantity_to_lots(order.quantity) is None:
            return self._refused(order, cid, f"quantity {order.quantity:g} is not a multiple of the lot "
                                             f"{instrument.lot_size} of {order.symbol}")
        if order.quantity < float(instrument.min_quantity) * (1 - 1e-9):
            return self._refused(order, cid, f"quantity {order.quantity:g} under the minimum "
                                             f"{instrument.min_quantity} of {order.symbol}")
        if order.price is not None and order.type is OrderType.LIMIT and instrument.price_to_ticks(order.price) is None:
            return self._refused(order, cid, f"price {order.price:g} is not on the tick {instrument.tick_size} "
                                             f"of {order.symbol}")
        if order.type is OrderType.LIMIT:
            problem = instrument.filter_refusal(order.quantity, order.price)
        else:
            snap = self._books.get(order.symbol)
            touch = (snap.best_ask if order.side is OrderSide.BUY else snap.best_bid) if snap is not None else None
            problem = instrument.filter_refusal(order.quantity, touch, market=True)
        if problem is not None:
            return self._refused(order, cid, problem)
        return None

    async def _submit(self, order: Order) -> OrderResult:
        cid = order.client_order_id or order.id
        known = self._tracks.get(cid)
        if known is not None and known.acknowledged:
            return self._refused(order, cid, f"duplicate client order id {cid!r}: an order with it is still working "
                                             f"at {self.name}; no new order was made")
        refusal = self._check(order, cid)
        if refusal is not None:
            return refusal
        track = _Track(order, cid)
        self._tracks[cid] = track
        params: dict[str, Any] = {"clientOrderId": cid}
        price = None
        if order.type is OrderType.LIMIT:
            params["timeInForce"] = _SENT_TIF[order.time_in_force]
            price = order.price
        try:
            reply = await self._ask(self.exchange.create_order(
                order.symbol, order.type.value.lower(), order.side.value.lower(), order.quantity, price, params))
        except ccxt.BaseError as exc:
            error = venue_error(exc, self.name, "create", self._scrub)
            if isinstance(error, UnknownOutcomeError):
                raise error from None  # tracked: a status query settles it
            self._tracks.pop(cid, None)
            if isinstance(exc, _ORDER_REFUSALS):
                return self._refused(order, cid, f"{self.name} refused the order: {type(exc).__name__}: "
                                                 f"{_describe(exc)}")
            raise error from None
        fills = self._apply(track, reply)
        if reply.get("status") is None:
            # The exchange answered with the ids only (bybit): ask what became of it.
            try:
                found = await self._lookup(cid, track.symbol, track.order_id)
            except VenueError as exc:
                log.info("CCXT venue %s: status after create of %s: %s", self.name, cid, exc)
                found = None
            if found is not None:
                fills += self._apply(track, found)
        result = self._result(track, fills)
        if track.status.is_final:
            self._finish(track)
        return result

    async def _cancel(self, cid: str) -> OrderResult:
        track = self._tracks.get(cid)
        if track is None:
            done = self._finished.get(cid)
            status = done.status.value if done is not None else "not known here"
            return OrderResult(cid, self.name, OrderStatus.REJECTED, done.quantity if done else 0.0,
                               done.cum if done else 0.0, reason=f"too late to cancel: the order is {status}",
                               symbol=done.symbol if done else "", side=done.side if done else None,
                               timestamp=self._clock())
        dialect = self._dialect
        params: dict[str, Any] = {}
        order_id = track.order_id or None
        if dialect.cancel_param is not None:
            params[dialect.cancel_param] = cid
        elif order_id is None:
            found = await self._lookup(cid, track.symbol, "")
            if found is None:
                raise UnknownOrderError(f"{self.name} does not know order {cid!r}")
            self._apply(track, found)
            order_id = track.order_id
        try:
            reply = await self._ask(self.exchange.cancel_order(order_id, track.symbol, params))
        except ccxt.OrderNotFound as exc:
            # Ended meanwhile (filled?): learn how, tell the listeners, refuse the cancel.
            await self._refresh(track)
            return OrderResult(cid, self.name, OrderStatus.REJECTED, track.quantity, track.cum,
                               reason=self._scrub(f"{self.name} refused the cancel: {_describe(exc)}"),
                               symbol=track.symbol, side=track.side, price=track.price, timestamp=self._clock())
        except ccxt.BaseError as exc:
            raise venue_error(exc, self.name, "cancel", self._scrub) from None
        fills = self._apply(track, reply)
        if reply.get("status") is None:
            try:
                found = await self._lookup(cid, track.symbol, track.order_id)
            except VenueError:
                found = None
            if found is not None:
                fills += self._apply(track, found)
            if not track.status.is_final:
                track.status = OrderStatus.CANCELED  # the exchange took the cancel
        result = self._result(track, fills)
        if track.status.is_final:
            self._finish(track)
        return result

    def _amend_refused(self, cid: str) -> OrderResult:
        track = self._tracks.get(cid)
        return OrderResult(cid, self.name, OrderStatus.REJECTED, track.quantity if track else 0.0,
                           track.cum if track else 0.0,
                           reason=f"amend is not offered at {self.name} (CCXT): cancel and send a new order",
                           symbol=track.symbol if track else "", side=track.side if track else None,
                           price=track.price if track else None, timestamp=self._clock())

    async def _status(self, cid: str) -> OrderResult:
        track = self._tracks.get(cid)
        if track is None:
            done = self._finished.get(cid)
            if done is not None:
                return self._result(done, list(done.fills))
            hit = await self._open_anywhere(cid)
            if hit is not None:
                return self._result(self._adopt(hit[0], cid, hit[1]), [])
            # Ended, or never placed: only a symbol's own lists can tell (the asked-for first).
            symbols = [*self._watched, *(s for s in self._instruments if s not in self._watched)]
            for symbol in symbols:
                found = await self._lookup(cid, symbol, "")
                if found is not None:
                    adopted = self._adopt(found, cid, symbol)
                    return self._result(adopted, [])
            raise UnknownOrderError(f"{self.name} does not know order {cid!r}")
        found = await self._lookup(cid, track.symbol, track.order_id)
        if found is None:
            if track.acknowledged:
                raise UnknownOrderError(f"{self.name} no longer knows order {cid!r}")
            # An exchange may not list an order it has just taken: the router asks twice,
            # a backoff apart, before it believes "never placed" (status_is_immediate is
            # False here); the second time the track goes, and the router may send again.
            track.not_found += 1
            if track.not_found >= 2:
                self._tracks.pop(cid, None)
            raise UnknownOrderError(f"{self.name} does not know order {cid!r}: it was never placed")
        self._apply(track, found)
        result = self._result(track, list(track.fills))
        if track.status.is_final:
            self._finish(track)
        return result

    async def _open_orders(self, symbol: str | None) -> list[OrderResult]:
        symbols = [symbol] if symbol is not None else sorted({t.symbol for t in self._tracks.values()})
        out: list[OrderResult] = []
        for sym in symbols:
            try:
                orders = await self._ask(self.exchange.fetch_open_orders(sym))
            except ccxt.BaseError as exc:
                raise venue_error(exc, self.name, "fetch_open_orders", self._scrub) from None
            for raw in orders:
                cid = str(raw.get("clientOrderId") or raw.get("id"))
                track = self._tracks.get(cid)
                if track is not None:
                    self._apply(track, raw)
                    out.append(self._result(track, list(track.fills)))
                else:
                    out.append(self._foreign(raw, cid))
        return out

    async def _fetch_book(self, symbol: str, depth: int) -> BookSnapshot:
        if symbol not in self._instruments:
            raise ConfigurationError(
                f"unknown symbol {symbol!r} at {self.name} (listed: {', '.join(self._instruments) or 'none'})")
        try:
            raw = await self._ask(self.exchange.fetch_order_book(symbol, depth))
        except ccxt.BaseError as exc:
            raise venue_error(exc, self.name, "fetch_order_book", self._scrub) from None
        snap = book_snapshot(self.name, symbol, raw, depth, self._clock())
        self._books[symbol] = snap
        self._watched[symbol] = None
        return snap

    async def _lookup(self, cid: str, symbol: str, order_id: str) -> dict[str, Any] | None:
        """The exchange's order with our client id (see the module rules); None: not found."""
        ex, dialect = self.exchange, self._dialect
        try:
            if dialect.lookup == "fetch_order":
                try:
                    return await self._ask(ex.fetch_order(order_id or None, symbol, {dialect.lookup_param: cid}))  # type: ignore[no-any-return]
                except ccxt.OrderNotFound:
                    return None
            params = {dialect.lookup_param: cid} if dialect.lookup_param else {}
            for fetch in (ex.fetch_open_orders, ex.fetch_closed_orders):
                for raw in await self._ask(fetch(symbol, None, None, params)):
                    if raw.get("clientOrderId") == cid or (order_id and raw.get("id") == order_id):
                        return raw  # type: ignore[no-any-return]
            return None
        except ccxt.OrderNotFound:
            return None
        except ccxt.BaseError as exc:
            raise venue_error(exc, self.name, "status", self._scrub) from None

    async def _open_anywhere(self, cid: str) -> tuple[dict[str, Any], str] | None:
        """Our order among the exchange's open spot orders of every symbol (one request where
        CCXT offers it: binance weighs it as ~13 per-symbol asks, far fewer than its
        markets), with its symbol; None when not there or not asked."""
        ex = self.exchange
        if not ex.has.get("fetchOpenOrders"):
            return None
        settings = ex.options.get("fetchOpenOrders")
        if isinstance(settings, dict):
            settings["warnWithoutSymbol"] = False  # binance: we ask without a symbol knowingly
        if "warnOnFetchOpenOrdersWithoutSymbol" in ex.options:
            ex.options["warnOnFetchOpenOrdersWithoutSymbol"] = False
        params: dict[str, Any] = {"type": "spot"}
        if self._dialect.lookup_param and self._dialect.lookup != "fetch_order":
            params[self._dialect.lookup_param] = cid
        try:
            orders = await self._ask(ex.fetch_open_orders(None, None, None, params))
        except ccxt.BaseError as exc:
            log.info("CCXT venue %s: open orders of every symbol: %s", self.name,
                     self._scrub(f"{type(exc).__name__}: {_describe(exc)}"))
            return None
        for raw in orders:
            symbol = raw.get("symbol")
            # any market of the exchange's, listed here or not: it works, so it is followed
            if raw.get("clientOrderId") == cid and isinstance(symbol, str) and symbol in (ex.markets or {}):
                return raw, symbol
        return None

    async def _refresh(self, track: _Track) -> None:
        """Ask for one order; tell the listeners what changed."""
        found = await self._lookup(track.cid, track.symbol, track.order_id)
        if found is None:
            return
        before = track.status
        fills = self._apply(track, found)
        for fill in fills:
            self._emit(ExecutionReport(self.name, track.cid, track.symbol, track.status, track.cum,
                                       max(track.quantity - track.cum, 0.0), fill.timestamp, fill))
        if track.status is not before and (track.status.is_final and not fills
                                           or track.status in (OrderStatus.CANCELED, OrderStatus.EXPIRED)):
            self._emit(ExecutionReport(self.name, track.cid, track.symbol, track.status, track.cum,
                                       0.0, self._clock(), None, f"{track.status.value.lower()} at {self.name}"))
        if track.status.is_final:
            self._finish(track)

    async def _poll(self) -> None:
        # One order's or book's trouble (even a bug) never keeps the others from their turn.
        for track in list(self._tracks.values()):
            if not track.acknowledged:
                continue  # a create still in flight (or unsettled): the router settles it
            try:
                await self._refresh(track)
            except (VenueError, UnknownOrderError) as exc:
                log.info("CCXT venue %s: poll of %s: %s", self.name, track.cid, exc)
            except Exception:
                log.exception("CCXT venue %s: poll of %s failed", self.name, track.cid)
        for symbol in [*self._watched, *sorted({t.symbol for t in self._tracks.values()} - set(self._watched))]:
            if symbol not in self._instruments:
                continue
            try:
                await self._fetch_book(symbol, self._book_depth)
            except VenueError as exc:
                log.info("CCXT venue %s: book of %s: %s", self.name, symbol, exc)
            except Exception:
                log.exception("CCXT venue %s: book of %s failed", self.name, symbol)

    async def _poll_forever(self) -> None:
        assert self._poll_interval is not None
        while True:
            try:
                await self._poll()
            except asyncio.CancelledError:
                raise
            except Exception:  # a bug must not end the polling silently
                log.exception("CCXT venue %s: poll failed", self.name)
            await asyncio.sleep(self._poll_interval)

    # -- bookkeeping ------------------------------------------------------------------------

    def _apply(self, track: _Track, raw: dict[str, Any]) -> list[Fill]:
        """Merge a CCXT order into the track; the fills it adds."""
        if raw.get("id"):
            track.order_id = str(raw["id"])
        track.acknowledged = True
        market = self.exchange.markets.get(track.symbol) if self.exchange.markets else None
        maker = track.type is OrderType.LIMIT and track.status is not OrderStatus.PENDING_NEW
        fills = new_fills(raw, cid=track.cid, venue=self.name, symbol=track.symbol, side=track.side,
                          known_qty=track.cum, known_notional=track.notional, known_fee=track.fee,
                          known_trades=track.trade_ids, market=market, maker=maker, now=self._clock())
        left = track.quantity - track.cum
        if track.quantity and math.fsum(f.quantity for f in fills) > left + 1e-9 * track.quantity:
            # A reply filling past the order's quantity is wrong; what the order could fill counts.
            log.warning("CCXT venue %s: %s: the exchange reports more than the order's quantity %g filled "
                        "(%g); counting %g", self.name, track.cid, track.quantity,
                        track.cum + math.fsum(f.quantity for f in fills), max(left, 0.0))
            kept: list[Fill] = []
            for fill in fills:
                if left <= 1e-12 * track.quantity:
                    break
                if fill.quantity > left:
                    fill = dataclasses.replace(fill, quantity=left)
                kept.append(fill)
                left -= fill.quantity
            fills = kept
        for fill in fills:
            track.cum += fill.quantity
            track.notional += fill.quantity * fill.price
            track.fee += fill.fee
            track.trade_ids.add(fill.trade_id)
            track.fills.append(fill)
        if not track.status.is_final:
            resting = track.type is OrderType.LIMIT and track.tif is TimeInForce.GTC
            new = status_of(raw, track.quantity, resting=resting) if raw.get("status") is not None else None
            if new is None:
                new = OrderStatus.PARTIALLY_FILLED if track.cum > 0 else OrderStatus.NEW
            if new is OrderStatus.NEW and track.cum > 0:
                new = OrderStatus.PARTIALLY_FILLED
            track.status = new
            if new is OrderStatus.REJECTED:
                info = raw.get("info") if isinstance(raw.get("info"), dict) else {}
                why = next((str(info[k]) for k in ("rejectReason", "msg", "message") if info.get(k)
                            and info[k] != "EC_NoError"), None)
                track.reason = self._scrub(f"{self.name} rejected the order" + (f": {why}" if why else
                                                                                 " (no reason given)"))
        return fills

    def _result(self, track: _Track, fills: list[Fill]) -> OrderResult:
        average = track.notional / track.cum if track.cum and track.notional else None
        return OrderResult(track.cid, self.name, track.status, track.quantity, track.cum, average, fills,
                           track.reason, track.symbol, track.side, track.price, self._clock(),
                           detail={"exchange_order_id": track.order_id} if track.order_id else {})

    def _adopt(self, raw: dict[str, Any], cid: str, symbol: str) -> _Track:
        """Track an order of ours the exchange has and this object never sent (a previous
        run's, asked about by the restart's recovery), so the poller follows it and a cancel
        reaches it. What it filled before is its baseline, not new fills: the router's
        record and the journal hold those (a status answer's total beyond them becomes one
        fill there)."""
        amount = number(raw.get("amount")) or 0.0
        side = OrderSide.BUY if raw.get("side") == "buy" else OrderSide.SELL
        kind = OrderType.LIMIT if raw.get("type") == "limit" else OrderType.MARKET
        tif = {"IOC": TimeInForce.IOC, "FOK": TimeInForce.FOK}.get(str(raw.get("timeInForce")), TimeInForce.GTC)
        track = _Track.__new__(_Track)
        track.cid, track.symbol, track.side, track.quantity = cid, symbol, side, amount
        track.price, track.type, track.tif = number(raw.get("price")), kind, tif
        track.order_id = str(raw.get("id") or "")
        filled = number(raw.get("filled")) or 0.0
        average = number(raw.get("average"))
        if average is None and filled:
            cost = number(raw.get("cost"))
            average = cost / filled if cost else None
        market = self.exchange.markets.get(symbol) if self.exchange.markets else None
        track.cum, track.notional = filled, (average or 0.0) * filled
        track.fee = fee_in_quote(raw.get("fee"), market, average or 0.0)
        track.trade_ids, track.fills, track.acknowledged, track.reason = set(), [], True, None
        track.status = OrderStatus.NEW
        self._apply(track, raw)  # the status (and a reason); nothing fills beyond the baseline
        if track.status.is_final:
            self._finish(track)
        else:
            self._tracks[cid] = track
        return track

    def _foreign(self, raw: dict[str, Any], cid: str) -> OrderResult:
        """A result for an order this venue does not track (placed by another run)."""
        amount = number(raw.get("amount")) or 0.0
        side = OrderSide.BUY if raw.get("side") == "buy" else OrderSide.SELL
        return OrderResult(cid, self.name, status_of(raw, amount), amount, number(raw.get("filled")) or 0.0,
                           number(raw.get("average")), [], None, str(raw.get("symbol") or ""), side,
                           number(raw.get("price")), self._clock())

    def _finish(self, track: _Track) -> None:
        self._tracks.pop(track.cid, None)
        self._finished[track.cid] = track
        while len(self._finished) > _FINISHED_KEPT:
            self._finished.popitem(last=False)

    def _emit(self, report: ExecutionReport) -> None:
        for listener in self._report_listeners:
            try:
                listener(report)
            except Exception:  # one listener's bug must not stop the others
                log.exception("CCXT venue %s: report listener failed", self.name)

