"""Which algorithm works which parent type."""

from __future__ import annotations

from collections.abc import Callable, Mapping

from ...models import Instrument, OrderType
from .adaptive import AdaptiveAlgorithm
from .base import Algorithm, ParentState, check_filters, check_parent
from .iceberg import IcebergAlgorithm
from .twap import TwapAlgorithm
from .vwap import VwapAlgorithm

# OrderType -> factory(state, seed).
ALGORITHMS: dict[OrderType, Callable[[ParentState, int], Algorithm]] = {
    OrderType.ICEBERG: IcebergAlgorithm,
    OrderType.TWAP: TwapAlgorithm,
    OrderType.VWAP: VwapAlgorithm,
    OrderType.SMART: AdaptiveAlgorithm,
}


def make_algorithm(
    state: ParentState,
    seed: int = 0,
    *,
    listings: Mapping[str, Instrument] | None = None,
    price: float | None = None,
) -> Algorithm:
    """The algorithm for a parent. Raises ValueError (AlgorithmParameterError) for a parent
    its instrument cannot carry, saying what to change; the scheduler answers REJECTED.

    `listings` (each venue's instrument for the symbol; by default the parent's own, at an
    unnamed venue) and `price` (the parent's limit, else the market's mid) are for the
    venues' per-order filters: see `check_filters`."""
    try:
        factory = ALGORITHMS[state.order.type]
    except KeyError:
        supported = ", ".join(t.value for t in ALGORITHMS)
        raise ValueError(
            f"no algorithm works {state.order.type.value} orders (supported: {supported})"
        ) from None
    check_parent(state)
    algo = factory(state, seed)
    if listings is None:
        listings = {"the venue": state.instrument} if state.instrument is not None else {}
    check_filters(state, listings, price if price is not None else state.order.price, algo.largest_child())
    return algo
