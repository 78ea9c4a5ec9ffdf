"""The yard stick: a frozen copy of the product's `Order` as it was at commit 0157938.

The benchmark states each throughput figure in builds of this order as well as in
orders per second (`order_builds_per_order`), so that a figure means the same on a
fast and a slow machine. The copy is kept here, not imported, so that making the
product's `Order` (engine/models.py) slower or faster never moves the yard stick:
its fields, their constraints and the validator are those of 0157938, with their
own enums. Do not change it; a new yard stick is a new name and a new goal table.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable
from enum import Enum
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

__all__ = ["ReferenceOrder", "best_build_us", "reference_order", "reference_build_us"]

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


# What exchanges accept as a client order id (the strictest common rule).
ID_PATTERN = re.compile(r"[A-Za-z0-9._:\-]{1,36}")
ID_RULE = "1-36 characters of A-Z a-z 0-9 . _ : -"

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


def _positive_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a whole number >= 1, got {value!r}")
    return value


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
        _finite_positive("metadata['duration_s']", meta["duration_s"])
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
            _positive_int("metadata['slices']", meta["slices"])
        if "interval_s" in meta:
            _finite_positive("metadata['interval_s']", meta["interval_s"])
        for key in ("randomize", "allow_past_end"):
            if key in meta:
                _flag(f"metadata['{key}']", meta[key])
    elif order_type is OrderType.VWAP:
        _check_window("VWAP", meta)
        if "buckets" in meta:
            _positive_int("metadata['buckets']", meta["buckets"])
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
            _finite_positive("metadata['duration_s']", meta["duration_s"])


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


_PositiveFinite = Annotated[float, Field(gt=0, allow_inf_nan=False)]


class ReferenceOrder(BaseModel):
    """`engine.Order` as it was at 0157938: the same fields, constraints and checks."""

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
    def _check(self) -> ReferenceOrder:
        match = ID_PATTERN.fullmatch
        if match(self.id) is None:
            raise _field_error("id", f"id must be {ID_RULE}, got {self.id!r}", self.id)
        for name in ("client_order_id", "parent_id"):
            value = self.__dict__[name]
            if value is not None and match(value) is None:
                raise _field_error(name, f"{name} must be {ID_RULE}, got {value!r}", value)
        if not self.symbol or self.symbol.strip() != self.symbol:
            raise _field_error(
                "symbol",
                f"symbol must be a non-empty name without surrounding spaces (for example "
                f"'BTC/USD'), got {self.symbol!r}",
                self.symbol,
            )
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


# -- the measurement ------------------------------------------------------------------------
# The benchmark's order (engine workloads send the same fields as the product's Order).
_SYMBOL = "BTC/USD"
_QUANTITY = 0.001
_SIDES = (OrderSide.BUY, OrderSide.SELL)
BUILD_ROUNDS = 7  # best of this many: the least disturbed by other processes
BUILDS_PER_ROUND = 2_000


def reference_order(i: int) -> ReferenceOrder:
    """The i-th order of a workload, built as the yard stick: a small market order."""
    return ReferenceOrder(id=f"ref-{i}", symbol=_SYMBOL, side=_SIDES[i & 1], type=OrderType.MARKET,
                          quantity=_QUANTITY)


def best_build_us(make: Callable[[int], Any], *, rounds: int = BUILD_ROUNDS,
                  per_round: int = BUILDS_PER_ROUND) -> float:
    """Microseconds to build one order with `make(i)`: the best of `rounds` rounds."""
    if rounds < 1 or per_round < 1:
        raise ValueError(f"rounds and per_round must be >= 1, got {rounds} and {per_round}")
    best = math.inf
    clock = time.perf_counter_ns
    for _ in range(rounds):
        start = clock()
        for i in range(per_round):
            make(i)
        best = min(best, (clock() - start) / per_round)
    return best / 1e3


def reference_build_us(*, rounds: int = BUILD_ROUNDS) -> float:
    """The yard stick on this machine, now: microseconds to build one `ReferenceOrder`."""
    return best_build_us(reference_order, rounds=rounds)
