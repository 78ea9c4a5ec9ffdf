"""How a simulated venue is configured: instruments, fees, latency, faults, market."""

from __future__ import annotations

import dataclasses
import logging
import math
import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from decimal import Decimal
from types import MappingProxyType
from typing import Any


from ...errors import (
    ConfigurationError,
    ExecdeskError,
)
from ...models import (
    FeeSchedule,
    Instrument,
)

__all__ = ["DEFAULT_FEES", "DEFAULT_INSTRUMENTS", "DEFAULT_START_PRICES", "FaultConfig", "LatencyModel", "MarketConfig", "UnknownSymbolError", "VENUE_PRESETS", "VenueCounters"]

log = logging.getLogger(__name__)

# Filters of the kind spot exchanges put on each order (maximum quantity, a notional of a
# few dollars at least and some millions at most). The maximum notional is above the
# engine's default risk limit per order, so an operator with risk on reads the risk
# reason; these are the backstop for code without risk limits (the bare seed classes).
# The minimum notional is under what the minimum quantity costs at these prices, so it
# refuses only a limit far below the market, never an ordinary small order.
_MAX_NOTIONAL = Decimal("10000000")
_MIN_NOTIONAL = Decimal("1")
DEFAULT_INSTRUMENTS: Mapping[str, Instrument] = MappingProxyType(
    {
        i.symbol: i
        for i in (
            Instrument("BTC/USD", Decimal("0.01"), Decimal("0.0001"), Decimal("0.0001"),
                       Decimal("1000"), _MIN_NOTIONAL, _MAX_NOTIONAL),
            Instrument("ETH/USD", Decimal("0.01"), Decimal("0.001"), Decimal("0.001"),
                       Decimal("10000"), _MIN_NOTIONAL, _MAX_NOTIONAL),
            Instrument("SOL/USD", Decimal("0.001"), Decimal("0.01"), Decimal("0.01"),
                       Decimal("100000"), _MIN_NOTIONAL, _MAX_NOTIONAL),
        )
    }
)
DEFAULT_START_PRICES: Mapping[str, float] = MappingProxyType(
    {"BTC/USD": 50_000.0, "ETH/USD": 3_000.0, "SOL/USD": 150.0}
)
# A common crypto tier: makers pay less than takers.
DEFAULT_FEES = FeeSchedule(maker_bps=2.0, taker_bps=5.0)

# z such that P(N(0,1) < z) = 0.99: the lognormal's p99 is median * exp(z * sigma).
_Z99 = 2.3263478740408408


class UnknownSymbolError(ExecdeskError, KeyError):
    """A symbol the venue does not list (book() and trades() of an unknown symbol)."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "unknown symbol"


def fraction(name: str, value: float) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
        raise ConfigurationError(f"{name} must be a fraction in [0, 1], got {value!r}")


def non_negative(name: str, value: float) -> None:
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not math.isfinite(value)
        or value < 0
    ):
        raise ConfigurationError(f"{name} must be a finite number >= 0, got {value!r}")


def positive(name: str, value: float) -> None:
    non_negative(name, value)
    if value == 0:
        raise ConfigurationError(f"{name} must be > 0, got {value!r}")


def whole(name: str, value: int, minimum: int = 1) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigurationError(f"{name} must be a whole number >= {minimum}, got {value!r}")


def utc_text(t: float) -> str:
    return datetime.fromtimestamp(t, timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


@dataclass(frozen=True, slots=True)
class LatencyModel:
    """Request latency: lognormal with the given median and 99th percentile.

    Zero median is instant (the default). A p99 of 0 or equal to the median
    gives a constant latency.
    """

    median_s: float = 0.0
    p99_s: float = 0.0

    def __post_init__(self) -> None:
        non_negative("median_s", self.median_s)
        non_negative("p99_s", self.p99_s)
        if self.p99_s and self.p99_s < self.median_s:
            raise ConfigurationError(
                f"p99_s must be >= median_s ({self.median_s!r}) or 0, got {self.p99_s!r}"
            )
        if self.p99_s and not self.median_s:
            raise ConfigurationError(
                f"median_s must be > 0 when p99_s is set, got median_s 0 and p99_s {self.p99_s!r}"
            )

    @property
    def sigma(self) -> float:
        """The lognormal's shape: ln(p99 / median) / z(0.99)."""
        if not self.p99_s or not self.median_s:
            return 0.0
        return math.log(self.p99_s / self.median_s) / _Z99

    def sample(self, rng: random.Random) -> float:
        """One latency in seconds."""
        if not self.median_s:
            return 0.0
        sigma = self.sigma
        if not sigma:
            return self.median_s
        return rng.lognormvariate(math.log(self.median_s), sigma)


@dataclass(frozen=True, slots=True)
class FaultConfig:
    """Faults injected into requests, each drawn per request from the seeded RNG.

    One draw decides among error (`TransientVenueError`, nothing happened),
    reject (`PermanentVenueError`) and timeout (`UnknownOutcomeError` after
    `timeout_s`; the request reached the book or not, half and half), so the
    three rates must sum to at most 1. Status and open-orders requests only
    get errors (and outages). `rate_limit_per_s` refuses order requests
    beyond that many in the trailing second (`RateLimitedError`).
    """

    error_rate: float = 0.0
    reject_rate: float = 0.0
    timeout_rate: float = 0.0
    timeout_s: float = 2.0
    rate_limit_per_s: int | None = None

    def __post_init__(self) -> None:
        fraction("error_rate", self.error_rate)
        fraction("reject_rate", self.reject_rate)
        fraction("timeout_rate", self.timeout_rate)
        total = self.error_rate + self.reject_rate + self.timeout_rate
        if total > 1 + 1e-12:
            raise ConfigurationError(
                f"error_rate + reject_rate + timeout_rate must be <= 1, got {total!r}"
            )
        positive("timeout_s", self.timeout_s)
        if self.rate_limit_per_s is not None:
            whole("rate_limit_per_s", self.rate_limit_per_s)

    @property
    def active(self) -> bool:
        return bool(
            self.error_rate
            or self.reject_rate
            or self.timeout_rate
            or self.rate_limit_per_s is not None
        )


@dataclass(frozen=True, slots=True)
class MarketConfig:
    """The simulated market around each book (sizes are scaled by each symbol's price).

    step_s: market time per catch-up step. max_catchup_steps: steps simulated
    at most after a long gap. levels: maker price levels per side.
    level_notional: quote-currency size of the best level (deeper levels grow
    by a quarter each). level_spacing_bps / half_spread_bps: distance between
    levels and from the mid to the first level. volatility_bps: standard
    deviation of the mid per sqrt(second). taker_rate_per_s /
    taker_mean_notional: simulated market orders per second per symbol and
    their mean size. refill_fraction: makers top a level up once it lost this
    share of its size. trade_history: public trades kept per symbol.
    """

    step_s: float = 0.2
    max_catchup_steps: int = 50
    levels: int = 10
    level_notional: float = 50_000.0
    level_spacing_bps: float = 1.0
    half_spread_bps: float = 0.5
    volatility_bps: float = 1.0
    taker_rate_per_s: float = 4.0
    taker_mean_notional: float = 10_000.0
    refill_fraction: float = 0.1
    trade_history: int = 10_000

    def __post_init__(self) -> None:
        positive("step_s", self.step_s)
        whole("max_catchup_steps", self.max_catchup_steps)
        whole("levels", self.levels)
        positive("level_notional", self.level_notional)
        positive("level_spacing_bps", self.level_spacing_bps)
        non_negative("half_spread_bps", self.half_spread_bps)
        non_negative("volatility_bps", self.volatility_bps)
        non_negative("taker_rate_per_s", self.taker_rate_per_s)
        positive("taker_mean_notional", self.taker_mean_notional)
        fraction("refill_fraction", self.refill_fraction)
        whole("trade_history", self.trade_history)


# Three venues for `Engine.default()`: different fees, latency and depth, so
# routing has something to choose. Keyword arguments of SimulatedExchange.
VENUE_PRESETS: Mapping[str, Mapping[str, Any]] = MappingProxyType(
    {
        "sim-fast": {
            "fees": FeeSchedule(maker_bps=2.0, taker_bps=6.0),
            "latency": LatencyModel(median_s=0.001, p99_s=0.005),
            "market": MarketConfig(level_notional=40_000.0),
        },
        "sim-cheap": {
            "fees": FeeSchedule(maker_bps=0.0, taker_bps=3.0),
            "latency": LatencyModel(median_s=0.006, p99_s=0.040),
            "market": MarketConfig(level_notional=25_000.0, half_spread_bps=0.8),
        },
        "sim-deep": {
            "fees": FeeSchedule(maker_bps=1.0, taker_bps=5.0),
            "latency": LatencyModel(median_s=0.003, p99_s=0.015),
            "market": MarketConfig(level_notional=150_000.0, level_spacing_bps=0.6),
        },
    }
)


@dataclass(slots=True)
class VenueCounters:
    """What the venue has seen (for tests and the desk). `errors` counts raised
    exceptions by class name; `rejected` counts orders refused by venue rules;
    `market_steps` the simulated market steps run (bounded after long gaps)."""

    submitted: int = 0
    filled: int = 0
    rejected: int = 0
    canceled: int = 0
    expired: int = 0
    amended: int = 0
    fills: int = 0
    market_steps: int = 0
    errors: dict[str, int] = field(default_factory=dict)

    def copy(self) -> VenueCounters:
        return dataclasses.replace(self, errors=dict(self.errors))


