"""`execdesk bench`: the engine's throughput and latency, in builds of a fixed reference
order and against a floor, each goal judged within the same run.

Prints one JSON document on stdout, `{"workloads": [...], "machine": {...}}`,
and a table on stderr. `--quick` runs every workload on a tiny count (the
test suite does); `--only NAME[,NAME...]` picks workloads; `--out FILE`
writes the JSON to a file as well.

The package, one module per concern: `common` (the order, sizes, alternating
rounds, goals' arithmetic), `reference` (the yard stick), `engine_sync` and
`engine_async` (engine workloads), `desk` (the desk headless), `steady` (a long
run's speed and memory), `machine` (facts about the machine), `report` (the
table) and `runner` (workloads by name, the command line).

Rules of this package:

* Same code as the desk. Every workload builds the same validated `Order`
  and sends it through the public engine objects the desk and the component
  document use (`OrderRouter`, `SmartOrderRouter`, `AsyncExecutionOptimizer`,
  `SimulatedExchange`, `LatencyProfiler`, `Engine`, the desk's view model,
  `DeskApp`), with their default settings: profiler, breaker, latency gate and
  bookkeeping all on. No shortcut exists here that the desk does not take.
* Honest flow. Market orders of one small size alternate buy and sell, so the
  book never drains and every order fills; venues have zero simulated
  latency and no faults (unless a workload says otherwise), so what is
  measured is the engine's own cost. Each throughput entry reports fills and
  rejections next to orders: a run whose orders were refused is not a
  throughput figure (`rejections_negligible` says so, and `met` needs it).
* Stated limits. Each entry says the pre-trade risk limits it ran under
  (`risk_limits`: the limits as values, or "none" for the bare routers,
  which apply none unless given them). Where a flow of tens of thousands of
  orders a second would meet the desk's rate or open-order limits, the entry
  says which limits were raised.
* A yard stick that does not move. Each throughput entry states its cost per
  order in builds of a frozen copy of the product's `Order` as it was at
  commit 0157938 (`order_builds_per_order = 1e6 / orders_per_s /
  order_build_us`), built in the same run, best of several measurements: a
  faster or slower product `Order` changes the engine's cost, never the
  yard stick. Goals are ceilings in such builds or shares of another setup
  measured in the same run.
* A floor from the same run: the same loop with the engine replaced by the
  least it could possibly do (build the same Order, read the clock twice,
  append a result). `ratio_to_floor = orders_per_s / floor_orders_per_s`.
* Interleaved, both ways. Setups compared with each other (and the floor) run
  in alternating rounds of `Sizes.round_orders` orders, and who goes first is
  swapped every round, so neither a burst of load nor a warm start favours one.
* Only the engine is timed. An async round stops its clock when the router
  has reported every order final; outcomes are read after the clock stops.
* Warm-up first, then measure; real time, except `twap_hour`, which runs
  an hour of schedule on the `VirtualClock`. Per-order times come from
  `time.perf_counter_ns` around the call, for every `SAMPLE_EVERY`-th order.
* No workload asserts a time; goals are reported (`goal`, `met`), never enforced.
"""

from .common import FULL, QUICK, REJECTED_TOLERANCE, Sizes, percentile
from .runner import OPT_IN, WORKLOADS, main, run

__all__ = ["FULL", "OPT_IN", "QUICK", "REJECTED_TOLERANCE", "WORKLOADS", "Sizes", "main", "percentile", "run"]
