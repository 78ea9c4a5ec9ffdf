"""Which algorithm works which parent type."""

from __future__ import annotations

from collections.abc import Callable

from ..models import OrderType
from .adaptive import AdaptiveAlgorithm
from .base import Algorithm, ParentState, check_parent
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


def make_algorithm(state: ParentState, seed: int = 0) -> Algorithm:
    """The algorithm for a parent. Raises ValueError (AlgorithmParameterError) for a parent
    its instrument cannot carry, saying what to change; the scheduler answers REJECTED."""
    try:
        factory = ALGORITHMS[state.order.type]
    except KeyError:
        supported = ", ".join(t.value for t in ALGORITHMS)
        raise ValueError(
            f"no algorithm works {state.order.type.value} orders (supported: {supported})"
        ) from None
    check_parent(state)
    return factory(state, seed)
