"""Which algorithm works which parent type."""

from __future__ import annotations

from collections.abc import Callable

from ..models import OrderType
from .base import Algorithm, ParentState
from .iceberg import IcebergAlgorithm

# OrderType -> factory(state, seed). TWAP, VWAP and SMART join here as they are built.
ALGORITHMS: dict[OrderType, Callable[[ParentState, int], Algorithm]] = {
    OrderType.ICEBERG: IcebergAlgorithm,
}


def make_algorithm(state: ParentState, seed: int = 0) -> Algorithm:
    try:
        factory = ALGORITHMS[state.order.type]
    except KeyError:
        supported = ", ".join(t.value for t in ALGORITHMS)
        raise ValueError(
            f"no algorithm works {state.order.type.value} orders (supported: {supported})"
        ) from None
    return factory(state, seed)
