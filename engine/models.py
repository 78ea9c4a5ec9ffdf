"""Orders, fills and results: the vocabulary every layer speaks.

Rules of this module:

* Field rules are checked once, when an `Order` is built, and raise pydantic's
  `ValidationError` (a `ValueError`) naming the field, the value and what is
  accepted. Anything that needs a venue or a limit to judge (unknown symbol,
  price off the tick, risk) is not checked here: it becomes a REJECTED
  `OrderResult` with a reason.
* Enum inputs are accepted by name, case-insensitive ("buy", "Buy", "BUY").
  Numbers must be numbers: an int or a float, never a string or a bool
  (`quantity="5"` and `quantity=True` are refused, not converted).
* Every size, count and duration is bounded where it enters, by the named
  constants below, so no later arithmetic (lots, ticks, notional, a
  schedule's length) can overflow or run away. A value past a bound is
  refused with the bound in the message, never silently capped.
* Inside the engine prices and quantities are integers of ticks and lots
  (`Instrument` converts), so sums are exact; the public API speaks floats.
"""

from __future__ import annotations

import hashlib
import math
import operator
import re
from dataclasses import dataclass, field, fields
from decimal import Decimal
from enum import Enum
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator


class _NamedEnum(str, Enum):
    """A str enum whose members can be looked up by name, any case."""

    @classmethod
    def _missing_(cls, value: object) -> Any:
        if isinstance(value, str):
            return cls.__members__.get(value.strip().upper())
        return None

    def __str__(self) -> str:
        return self.value


class OrderSide(_NamedEnum):
    BUY = "BUY"
    SELL = "SELL"

    @property
    def sign(self) -> int:
        return 1 if self is OrderSide.BUY else -1

    @property
    def opposite(self) -> OrderSide:
        return OrderSide.SELL if self is OrderSide.BUY else OrderSide.BUY


class OrderType(_NamedEnum):
    MARKET = "MARKET"
    LIMIT = "LIMIT"
    ICEBERG = "ICEBERG"
    TWAP = "TWAP"
    VWAP = "VWAP"
    SMART = "SMART"

    @property
    def is_algorithm(self) -> bool:
        """Parent types that run on the scheduler as a series of child orders."""
        return self in _ALGORITHM_TYPES


_ALGORITHM_TYPES = frozenset({OrderType.ICEBERG, OrderType.TWAP, OrderType.VWAP, OrderType.SMART})


class TimeInForce(_NamedEnum):
    GTC = "GTC"
    IOC = "IOC"
    FOK = "FOK"
    DAY = "DAY"
    GTD = "GTD"


class OrderStatus(_NamedEnum):
    """FIX 4.4 OrdStatus (tag 39), the one order-state vocabulary of DESIGN.md."""

    PENDING_NEW = "PENDING_NEW"
    NEW = "NEW"
    PARTIALLY_FILLED = "PARTIALLY_FILLED"
    FILLED = "FILLED"
    PENDING_CANCEL = "PENDING_CANCEL"
    CANCELED = "CANCELED"
    REJECTED = "REJECTED"
    EXPIRED = "EXPIRED"

    @property
    def is_final(self) -> bool:
        return self in _FINAL_STATUSES

    @property
    def is_working(self) -> bool:
        return self in _WORKING_STATUSES

    @property
    def fix_code(self) -> str:
        return _FIX_CODES[self]


_FINAL_STATUSES = frozenset(
    {OrderStatus.FILLED, OrderStatus.CANCELED, OrderStatus.REJECTED, OrderStatus.EXPIRED}
)
_WORKING_STATUSES = frozenset(
    {OrderStatus.NEW, OrderStatus.PARTIALLY_FILLED, OrderStatus.PENDING_CANCEL}
)
_FIX_CODES = {
    OrderStatus.PENDING_NEW: "A",
    OrderStatus.NEW: "0",
    OrderStatus.PARTIALLY_FILLED: "1",
    OrderStatus.FILLED: "2",
    OrderStatus.PENDING_CANCEL: "6",
    OrderStatus.CANCELED: "4",
    OrderStatus.REJECTED: "8",
    OrderStatus.EXPIRED: "C",
}


class Liquidity(_NamedEnum):
    MAKER = "MAKER"
    TAKER = "TAKER"


# What exchanges accept as a client order id (the strictest common rule).
ID_PATTERN = re.compile(r"[A-Za-z0-9._:\-]{1,36}")
ID_RULE = "1-36 characters of A-Z a-z 0-9 . _ : -"

# A symbol is a venue's name for an instrument: letters of any script (exchanges list
# tokens named in Chinese), but printable, so what the desk shows is what is sent: no
# control or format characters (a right-to-left override prints one symbol as another),
# no line breaks, and short enough to show (the longest listed are about 30 characters).
MAX_SYMBOL_LENGTH = 64
SYMBOL_RULE = (f"1-{MAX_SYMBOL_LENGTH} printable characters (no control or format characters), "
               "without surrounding spaces, for example 'BTC/USD'")


def quote(value: Any, at_most: int = 40) -> str:
    """`value` as a message quotes it: its repr, an overlong one clipped and its length said
    (an error must name the value, not repeat 5,000 characters of it)."""
    text = repr(value)
    if len(text) <= at_most:
        return text
    size = f" ({len(value):,} characters)" if isinstance(value, str) else ""
    return f"{text[:at_most]}...{size}"


def symbol_problem(symbol: Any) -> str | None:
    """Why `symbol` cannot name an instrument (None: it can)."""
    if (
        not isinstance(symbol, str)
        or not 0 < len(symbol) <= MAX_SYMBOL_LENGTH
        or not symbol.isprintable()
        or symbol.strip() != symbol
    ):
        return f"symbol must be {SYMBOL_RULE}, got {quote(symbol)}"
    return None

# -- absolute sanity bounds ----------------------------------------------------------------
# Beyond what any real instrument needs, so only a typo or garbage reaches them. Exchanges
# commonly keep amounts as 64-bit integers of 1e-8 units, which tops out at 9.2e10, and
# tokens with larger supplies trade in 1000x or 1Mx units for that reason; quote currencies
# with many digits put BTC near 1e9 (VND, IDR). The maxima leave orders of magnitude above
# those, and their product (1e27) is still a finite, exact-enough float notional.
MAX_QUANTITY = 1e15
MAX_PRICE = 1e12
# The finest ticks listed are around 1e-8 to 1e-10; a price under 1e-12 can only be a
# mistake, and one like 1e-300 would round to 0 ticks at any venue.
MIN_PRICE = 1e-12
# Algorithm parameters. One trading day is the longest schedule a parent runs (a longer
# one is several parents, each re-planned on the day's volume). 1,000 slices or buckets
# is one every 86 s over a day, one every 3.6 s over an hour: finer is a stream of
# minimum-size orders, and each slice or bucket costs the algorithm memory and decisions.
MAX_WINDOW_S = 86_400.0
MAX_SLICES = 1_000
MAX_BUCKETS = 1_000  # also the most weights a listed VWAP profile may have
# A slice a second already outpaces a venue round trip under load.
MIN_INTERVAL_S = 1.0


def child_id(parent_id: str, seq: int) -> str:
    """A child order's id: `<parent prefix>.<hash>.<seq>`, at most 36 characters of the
    id alphabet, the same after a restart (the parent's id and the sequence make it)."""
    digest = hashlib.blake2b(parent_id.encode(), digest_size=5).hexdigest()
    return f"{parent_id[:16]}.{digest}.{seq}"


def show(value: float) -> str:
    """A number for a message: short (1e+12, 0.5) unless that would change its value."""
    text = f"{value:g}"
    return text if float(text) == value else repr(value)


def _fmt(bound: float) -> str:
    """A bound for a message: 1,000 / 86,400 / 1e-12 (thousands separated, no float noise)."""
    if bound >= 1 and float(bound).is_integer():
        return f"{int(bound):,}"
    return f"{bound:g}"


URGENCIES = ("low", "normal", "high")
VWAP_PROFILES = ("u_shape", "market")

# Metadata keys each order type accepts (DESIGN.md, Models).
METADATA_KEYS: dict[OrderType, frozenset[str]] = {
    OrderType.MARKET: frozenset(),
    OrderType.LIMIT: frozenset(),
    OrderType.ICEBERG: frozenset({"display_size", "display_variance"}),
    OrderType.TWAP: frozenset(
        {"duration_s", "start_time", "end_time", "slices", "interval_s", "randomize", "allow_past_end"}
    ),
    OrderType.VWAP: frozenset(
        {"duration_s", "start_time", "end_time", "buckets", "profile", "max_participation"}
    ),
    OrderType.SMART: frozenset({"urgency", "duration_s"}),
}


def _finite_positive(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be finite and > 0, got {value!r}")
    return float(value)


def _positive_int(name: str, value: Any, maximum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a whole number >= 1, got {value!r}")
    if value > maximum:
        raise ValueError(f"{name} must be at most {maximum:,}, got {value:,}")
    return value


def _at_most(name: str, value: Any, maximum: float, unit: str = "") -> float:
    v = _finite_positive(name, value)
    if v > maximum:
        raise ValueError(f"{name} must be at most {_fmt(maximum)}{unit}, got {show(v)}{unit}")
    return v


def _flag(name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"{name} must be true or false, got {value!r}")
    return value


def _check_window(kind: str, meta: dict[str, Any]) -> None:
    """duration_s, or start_time + end_time: exactly one of the two forms."""
    has_duration = "duration_s" in meta
    has_start, has_end = "start_time" in meta, "end_time" in meta
    if has_duration and (has_start or has_end):
        raise ValueError(
            f"metadata for {kind} takes duration_s or start_time + end_time, not both"
        )
    if has_duration:
        _at_most("metadata['duration_s']", meta["duration_s"], MAX_WINDOW_S, " s")
        return
    if has_start != has_end:
        missing = "end_time" if has_start else "start_time"
        raise ValueError(f"metadata['{missing}'] is required with the other end of the window")
    if not has_start:
        raise ValueError(
            f"metadata for {kind} requires duration_s (seconds > 0) or start_time + end_time"
        )
    start = _finite_positive("metadata['start_time']", meta["start_time"])
    end = _finite_positive("metadata['end_time']", meta["end_time"])
    if end <= start:
        raise ValueError(
            f"metadata['end_time'] must be after start_time, got start {start!r} end {end!r}"
        )
    if end - start > MAX_WINDOW_S:
        raise ValueError(
            f"metadata window start_time..end_time must be at most {_fmt(MAX_WINDOW_S)} s "
            f"(one day), got {end - start:g} s"
        )


def _window_s(meta: dict[str, Any]) -> float:
    """The window's length (after _check_window passed)."""
    if "duration_s" in meta:
        return float(meta["duration_s"])
    return float(meta["end_time"]) - float(meta["start_time"])


def _check_metadata(order_type: OrderType, quantity: float | None, meta: dict[str, Any]) -> None:
    allowed = METADATA_KEYS[order_type]
    unknown = sorted(set(meta) - allowed)
    if unknown:
        accepted = ", ".join(sorted(allowed)) if allowed else "none"
        raise ValueError(
            f"metadata key {unknown[0]!r} is not accepted for {order_type.value} orders "
            f"(accepted: {accepted})"
        )
    if order_type is OrderType.ICEBERG:
        if "display_size" not in meta:
            raise ValueError("metadata['display_size'] is required for ICEBERG orders")
        display = _finite_positive("metadata['display_size']", meta["display_size"])
        if quantity is not None and display > quantity:
            raise ValueError(
                f"metadata['display_size'] must be in (0, quantity={quantity:g}], got {display:g}"
            )
        if "display_variance" in meta:
            v = meta["display_variance"]
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 <= v < 1:
                raise ValueError(
                    f"metadata['display_variance'] must be a fraction in [0, 1), got {v!r}"
                )
    elif order_type is OrderType.TWAP:
        _check_window("TWAP", meta)
        if "slices" in meta and "interval_s" in meta:
            raise ValueError("metadata for TWAP takes slices or interval_s, not both")
        if "slices" in meta:
            _positive_int("metadata['slices']", meta["slices"], MAX_SLICES)
        if "interval_s" in meta:
            interval = _finite_positive("metadata['interval_s']", meta["interval_s"])
            if interval < MIN_INTERVAL_S:
                raise ValueError(
                    f"metadata['interval_s'] must be at least {_fmt(MIN_INTERVAL_S)} s, got {interval:g}"
                )
            window = _window_s(meta)
            slices = math.ceil(window / interval - 1e-9)
            if slices > MAX_SLICES:
                raise ValueError(
                    f"metadata['interval_s'] {interval:g} over {window:g} s makes {slices:,} slices; "
                    f"at most {MAX_SLICES:,} (use interval_s >= {show(window / MAX_SLICES)})"
                )
        for key in ("randomize", "allow_past_end"):
            if key in meta:
                _flag(f"metadata['{key}']", meta[key])
    elif order_type is OrderType.VWAP:
        _check_window("VWAP", meta)
        if "buckets" in meta:
            _positive_int("metadata['buckets']", meta["buckets"], MAX_BUCKETS)
        if "max_participation" in meta:
            p = meta["max_participation"]
            if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0 < p <= 1:
                raise ValueError(
                    f"metadata['max_participation'] must be in (0, 1], got {p!r}"
                )
        if "profile" in meta:
            _check_profile(meta["profile"], meta.get("buckets"))
    elif order_type is OrderType.SMART:
        if "urgency" in meta:
            u = meta["urgency"]
            if not isinstance(u, str) or u.strip().lower() not in URGENCIES:
                raise ValueError(
                    f"metadata['urgency'] must be one of {', '.join(URGENCIES)}, got {u!r}"
                )
        if "duration_s" in meta:
            _at_most("metadata['duration_s']", meta["duration_s"], MAX_WINDOW_S, " s")


def _check_profile(profile: Any, buckets: Any) -> None:
    if isinstance(profile, str):
        if profile not in VWAP_PROFILES:
            raise ValueError(
                f"metadata['profile'] must be one of {', '.join(VWAP_PROFILES)} or a list of "
                f"weights, got {profile!r}"
            )
        return
    if not isinstance(profile, (list, tuple)) or not profile:
        raise ValueError(
            f"metadata['profile'] must be one of {', '.join(VWAP_PROFILES)} or a non-empty "
            f"list of weights, got {profile!r}"
        )
    if len(profile) > MAX_BUCKETS:
        raise ValueError(
            f"metadata['profile'] may list at most {MAX_BUCKETS:,} weights, got {len(profile):,}"
        )
    for w in profile:
        if isinstance(w, bool) or not isinstance(w, (int, float)) or not math.isfinite(w) or w < 0:
            raise ValueError(
                f"metadata['profile'] weights must be finite numbers >= 0, got {w!r}"
            )
    if sum(profile) <= 0:
        raise ValueError("metadata['profile'] weights must sum to a positive number")
    if isinstance(buckets, int) and not isinstance(buckets, bool) and len(profile) != buckets:
        raise ValueError(
            f"metadata['profile'] has {len(profile)} weights but buckets is {buckets}"
        )


def _field_error(field_name: str, message: str, value: Any) -> ValidationError:
    """A ValidationError located at `field_name`, as a field validator would raise."""
    return ValidationError.from_exception_data(
        "Order",
        [{"type": "value_error", "loc": (field_name,), "input": value,
          "ctx": {"error": ValueError(message)}}],
    )


# Strict: an int or a float, never "5" or True. pydantic-core checks these; the upper and
# lower bounds are checked in `_check` so their message names the bound.
_PositiveFinite = Annotated[float, Field(gt=0, allow_inf_nan=False, strict=True)]


class Order(BaseModel):
    """An order as the operator or a library user states it.

    `Order(id=..., symbol=..., side=..., type=..., quantity=..., price=None,
    metadata={})` is the component document's form; everything else has a
    default. Building an Order is where field rules are enforced, once: the
    numeric rules run inside pydantic-core, the rest in one Python pass
    (`_check`), because each extra Python validator costs about as much as the
    whole model on the order path.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str
    symbol: str
    side: OrderSide
    type: OrderType
    quantity: _PositiveFinite
    price: _PositiveFinite | None = None
    # A factory, not `= {}`: pydantic deep-copies a mutable default for every order (~0.9 us).
    metadata: dict[str, Any] = Field(default_factory=dict)
    time_in_force: TimeInForce = TimeInForce.GTC
    expire_at: _PositiveFinite | None = None
    client_order_id: str | None = None
    parent_id: str | None = None

    @model_validator(mode="after")
    def _check(self) -> Order:
        q = self.quantity
        if q > MAX_QUANTITY:
            raise _field_error(
                "quantity", f"quantity must be at most {_fmt(MAX_QUANTITY)} (MAX_QUANTITY), got {show(q)}", q
            )
        p = self.price
        if p is not None and not MIN_PRICE <= p <= MAX_PRICE:
            raise _field_error(
                "price",
                f"price must be in [{_fmt(MIN_PRICE)}, {_fmt(MAX_PRICE)}] (MIN_PRICE, MAX_PRICE), got {show(p)}",
                p,
            )
        match = ID_PATTERN.fullmatch
        if match(self.id) is None:
            raise _field_error("id", f"id must be {ID_RULE}, got {quote(self.id)}", self.id)
        for name in ("client_order_id", "parent_id"):
            value = self.__dict__[name]
            if value is not None and match(value) is None:
                raise _field_error(name, f"{name} must be {ID_RULE}, got {quote(value)}", value)
        symbol = self.symbol
        if not 0 < len(symbol) <= MAX_SYMBOL_LENGTH or not symbol.isprintable() or symbol.strip() != symbol:
            raise _field_error("symbol", symbol_problem(symbol) or "", symbol)
        t = self.type
        if self.metadata or t.is_algorithm:
            try:
                _check_metadata(t, self.quantity, self.metadata)
            except ValueError as exc:
                raise _field_error("metadata", str(exc), self.metadata) from None
        if self.price is None and (t is OrderType.LIMIT or t is OrderType.ICEBERG):
            raise _field_error("price", f"price is required for {t.value} orders", None)
        if self.price is not None and t is OrderType.MARKET:
            raise _field_error(
                "price", "price must not be set for MARKET orders (use LIMIT with IOC)", self.price
            )
        tif = self.time_in_force
        if tif is TimeInForce.GTD:
            if self.expire_at is None:
                raise _field_error(
                    "expire_at", "expire_at is required when time_in_force is GTD", None
                )
        elif self.expire_at is not None:
            raise _field_error(
                "expire_at",
                f"expire_at is only accepted with time_in_force GTD, not {tif.value}",
                self.expire_at,
            )
        if t.is_algorithm and tif is not TimeInForce.GTC and tif is not TimeInForce.DAY:
            raise _field_error(
                "time_in_force",
                f"time_in_force {tif.value} is not accepted for {t.value} orders "
                "(accepted: GTC, DAY)",
                tif.value,
            )
        if self.client_order_id is None:
            # frozen model: the default is derived once, here
            self.__dict__["client_order_id"] = self.id
        return self


@dataclass(frozen=True, slots=True)
class Fill:
    """One execution of (part of) an order at a venue."""

    order_id: str
    exchange_id: str
    symbol: str
    side: OrderSide
    price: float
    quantity: float
    fee: float
    liquidity: Liquidity
    timestamp: float
    trade_id: str = ""

    @property
    def notional(self) -> float:
        return self.price * self.quantity


@dataclass(slots=True)
class OrderResult:
    """What became of an order: the answer of a venue, router or optimizer.

    `reason` is always set when the status is REJECTED. Latency figures are in
    nanoseconds of the engine's clock (None when not measured).
    """

    order_id: str
    exchange_id: str | None
    status: OrderStatus
    quantity: float = 0.0
    filled_quantity: float = 0.0
    average_price: float | None = None
    fills: list[Fill] = field(default_factory=list)
    reason: str | None = None
    symbol: str = ""
    side: OrderSide | None = None
    price: float | None = None
    timestamp: float = 0.0
    latency_ns: int | None = None
    ack_latency_ns: int | None = None
    # A parent's or a split order's pieces, and what it did (filled in by optimizers).
    children: list[OrderResult] = field(default_factory=list)
    detail: dict[str, Any] = field(default_factory=dict)

    @property
    def is_final(self) -> bool:
        return self.status.is_final

    @property
    def remaining_quantity(self) -> float:
        return max(self.quantity - self.filled_quantity, 0.0)

    @property
    def fees(self) -> float:
        return sum(f.fee for f in self.fills)


@dataclass(frozen=True, slots=True)
class Instrument:
    """A tradable symbol with its tick, lot and minimum size, and its order filters.

    Sizes are Decimals so that conversions to and from integer ticks and lots
    are exact: `lots_to_quantity(quantity_to_lots(q)) == q` for any q on the lot.
    A conversion never raises: a value that is not a whole number of units, is
    not finite, or is a positive amount under half a unit gives None.

    The filters are those real spot exchanges put on each order (Binance's
    LOT_SIZE maximum quantity, NOTIONAL minimum and maximum): None means none.
    `filter_refusal` applies them; a venue answers a breach with a REJECTED result.
    """

    symbol: str
    tick_size: Decimal
    lot_size: Decimal
    min_quantity: Decimal
    max_quantity: Decimal | None = None
    min_notional: Decimal | None = None
    max_notional: Decimal | None = None
    _tick: tuple[int, int] = field(init=False, repr=False, compare=False)
    _lot: tuple[int, int] = field(init=False, repr=False, compare=False)
    # The filters as floats (max quantity, min notional, max notional; inf or 0 for none):
    # compared on every order, where a Decimal comparison costs a microsecond.
    _limits: tuple[float, float, float] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        for name in ("tick_size", "lot_size", "min_quantity", "max_quantity", "min_notional", "max_notional"):
            raw = getattr(self, name)
            if raw is None and name not in ("tick_size", "lot_size", "min_quantity"):
                continue
            value = Decimal(str(raw))
            if not value.is_finite() or value <= 0:
                raise ValueError(f"{name} of {self.symbol} must be > 0, got {value}")
            object.__setattr__(self, name, value)
        if self.max_quantity is not None and self.max_quantity < self.min_quantity:
            raise ValueError(
                f"max_quantity of {self.symbol} must be >= min_quantity {self.min_quantity}, "
                f"got {self.max_quantity}"
            )
        if (
            self.min_notional is not None
            and self.max_notional is not None
            and self.max_notional < self.min_notional
        ):
            raise ValueError(
                f"max_notional of {self.symbol} must be >= min_notional {self.min_notional}, "
                f"got {self.max_notional}"
            )
        object.__setattr__(self, "_tick", self.tick_size.as_integer_ratio())
        object.__setattr__(self, "_lot", self.lot_size.as_integer_ratio())
        object.__setattr__(self, "_limits", (
            math.inf if self.max_quantity is None else float(self.max_quantity),
            0.0 if self.min_notional is None else float(self.min_notional),
            math.inf if self.max_notional is None else float(self.max_notional),
        ))

    @staticmethod
    def _to_units(value: float, ratio: tuple[int, int]) -> int | None:
        num, den = ratio
        exact = value * den / num
        if not math.isfinite(exact):  # 1e308 * den overflows: no venue has that many units
            return None
        units = round(exact)
        # Float noise here is a few ulps (~1e-16 relative); 1e-12 tolerates far
        # more yet stays below half a unit up to 5e11 units (1e-9 did not: at
        # lot 1e-8, 10.000000005 passed as 1e9 lots).
        if abs(exact - units) > max(1e-12 * abs(exact), 1e-7):
            return None
        if units == 0 and value != 0:
            return None  # e.g. a price of 1e-300: zero ticks is no price at all
        return units

    def price_to_ticks(self, price: float) -> int | None:
        """Integer ticks, or None when the price is not on the tick."""
        return self._to_units(price, self._tick)

    def ticks_to_price(self, ticks: int) -> float:
        num, den = self._tick
        return ticks * num / den

    def quantity_to_lots(self, quantity: float) -> int | None:
        """Integer lots, or None when the quantity is not a whole number of lots."""
        return self._to_units(quantity, self._lot)

    def lots_to_quantity(self, lots: int) -> float:
        num, den = self._lot
        return lots * num / den

    def lots_at_most(self, quantity: float) -> int:
        """The whole lots in `quantity`, rounded down (0 for anything under one lot or not finite)."""
        exact = self.quantity_to_lots(quantity)
        if exact is not None:
            return max(exact, 0)
        num, den = self._lot
        units = quantity * den / num
        return math.floor(units + 1e-9) if math.isfinite(units) and units > 0 else 0

    def nearest_lots(self, quantity: float) -> int:
        """The nearest whole number of lots (0 when not finite): for a sum a float left off the lot."""
        num, den = self._lot
        units = quantity * den / num
        return round(units) if math.isfinite(units) else 0

    def ticks_toward(self, price: float, up: bool) -> int | None:
        """The price in ticks, rounded up or down when it is off the tick (None if not finite)."""
        num, den = self._tick
        exact = price * den / num
        if not math.isfinite(exact):
            return None
        nearest = round(exact)
        if abs(exact - nearest) <= 1e-9 * max(abs(exact), 1.0):
            return nearest
        return math.ceil(exact) if up else math.floor(exact)

    @property
    def min_lots(self) -> int:
        num, den = self._lot
        return math.ceil(self.min_quantity * den / num)

    @property
    def has_filters(self) -> bool:
        return self._limits != (math.inf, 0.0, math.inf)

    def filter_refusal(self, quantity: float, price: float | None, *, market: bool = False) -> str | None:
        """Why an order of `quantity` at `price` breaks a filter, or None when none is broken.

        For a market order pass the price it would trade near (the far touch, or the
        mid) and `market=True`: its notional is judged at that price, and a breach
        says so. No price, no notional check.
        """
        max_quantity, min_notional, max_notional = self._limits
        if quantity > max_quantity:
            return f"quantity {show(quantity)} over the maximum {self.max_quantity:,} of {self.symbol}"
        if price is None:
            return None
        notional = quantity * price
        if notional > max_notional:
            problem = (
                f"notional {notional:,.2f} ({show(quantity)} at {show(price)}) over the maximum "
                f"{self.max_notional:,} of {self.symbol}"
            )
        elif notional < min_notional:
            problem = (
                f"notional {notional:,.2f} ({show(quantity)} at {show(price)}) under the minimum "
                f"{self.min_notional:,} of {self.symbol}"
            )
        else:
            return None
        return f"{problem} (a market order is judged at the touch)" if market else problem


@dataclass(frozen=True, slots=True)
class FeeSchedule:
    """Maker and taker fees in basis points of notional (negative is a rebate)."""

    maker_bps: float = 0.0
    taker_bps: float = 0.0

    def fee(self, notional: float, liquidity: Liquidity) -> float:
        bps = self.maker_bps if liquidity is Liquidity.MAKER else self.taker_bps
        return notional * bps / 10_000.0


# -- compact forms, for history -------------------------------------------------------------
# A finished order kept in history (engine.history) is pickled. Pickled as they are, an
# Order (pydantic's state dicts) and its OrderResult (enums by reference) came to ~840
# bytes and ~18 us; as tuples of plain values (enums by value) they are ~230-260 bytes
# and ~4 us with a fill or two (history keeps them as Python's small objects, in
# pieces when long: engine.history._small_pieces). Reading one back is rare and builds
# equal objects. Each form lists its class's fields, so a field added later is kept.

_ORDER_FIELDS = tuple(Order.model_fields)
_ORDER_ENUMS = tuple(i for i, name in enumerate(_ORDER_FIELDS) if name in ("side", "type", "time_in_force"))
_ORDER_BITS = {name: 1 << i for i, name in enumerate(_ORDER_FIELDS)}
_RESULT_FIELDS = tuple(f.name for f in fields(OrderResult))
_get_result = operator.attrgetter(*_RESULT_FIELDS)
_R_STATUS, _R_SIDE, _R_FILLS, _R_CHILDREN = (
    _RESULT_FIELDS.index(name) for name in ("status", "side", "fills", "children"))
_FILL_FIELDS = tuple(f.name for f in fields(Fill))
_get_fill = operator.attrgetter(*_FILL_FIELDS)
_F_SIDE, _F_LIQUIDITY = _FILL_FIELDS.index("side"), _FILL_FIELDS.index("liquidity")


def compact_order(order: Order) -> tuple[Any, ...]:
    """The order's field values (enums by value), then which fields were set."""
    d = order.__dict__
    values = [d[name] for name in _ORDER_FIELDS]
    for i in _ORDER_ENUMS:
        values[i] = values[i].value
    bits = _ORDER_BITS
    values.append(sum(bits[name] for name in order.model_fields_set))
    return tuple(values)


def order_from_compact(values: tuple[Any, ...]) -> Order:
    *field_values, mask = values
    d = dict(zip(_ORDER_FIELDS, field_values, strict=True))
    d["side"], d["type"] = OrderSide(d["side"]), OrderType(d["type"])
    d["time_in_force"] = TimeInForce(d["time_in_force"])
    given = {name for name, bit in _ORDER_BITS.items() if mask & bit}
    # Built from a valid Order: no need to check it again.
    return Order.model_construct(_fields_set=given, **d)


def _compact_fill(fill: Fill) -> tuple[Any, ...]:
    values = list(_get_fill(fill))
    values[_F_SIDE] = fill.side.value
    values[_F_LIQUIDITY] = fill.liquidity.value
    return tuple(values)


def _fill_from_compact(values: tuple[Any, ...]) -> Fill:
    d = dict(zip(_FILL_FIELDS, values, strict=True))
    d["side"], d["liquidity"] = OrderSide(d["side"]), Liquidity(d["liquidity"])
    return Fill(**d)


def compact_result(result: OrderResult) -> tuple[Any, ...]:
    values = list(_get_result(result))
    values[_R_STATUS] = result.status.value
    if result.side is not None:
        values[_R_SIDE] = result.side.value
    values[_R_FILLS] = tuple(map(_compact_fill, result.fills))
    values[_R_CHILDREN] = tuple(map(compact_result, result.children)) if result.children else ()
    return tuple(values)


def result_from_compact(values: tuple[Any, ...]) -> OrderResult:
    d = dict(zip(_RESULT_FIELDS, values, strict=True))
    d["status"] = OrderStatus(d["status"])
    if d["side"] is not None:
        d["side"] = OrderSide(d["side"])
    d["fills"] = [_fill_from_compact(f) for f in d["fills"]]
    d["children"] = [result_from_compact(c) for c in d["children"]]
    return OrderResult(**d)
