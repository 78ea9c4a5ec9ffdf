"""`execdesk bench`: the engine's throughput and latency, measured against a floor.

Prints one JSON document on stdout, `{"workloads": [...], "machine": {...}}`,
and a table on stderr. `--quick` runs every workload on a tiny count (the
test suite does); `--only NAME[,NAME...]` picks workloads; `--out FILE`
writes the JSON to a file as well.

Rules of this module:

* Same code as the desk. Every workload builds the same validated `Order`
  and sends it through the public engine objects the desk and the component
  document use (`OrderRouter`, `SmartOrderRouter`, `AsyncExecutionOptimizer`,
  `SimulatedExchange`, `LatencyProfiler`, `Engine`, `DeskApp`), with their
  default settings: profiler, breaker, latency gate and bookkeeping all on.
  No shortcut exists here that the desk does not take.
* Honest flow. Market orders of one small size alternate buy and sell, so the
  book never drains and every order fills; venues have zero simulated
  latency and no faults (unless a workload says otherwise), so what is
  measured is the engine's own cost. Each throughput entry reports fills and
  rejections next to orders: a run whose orders were refused is not a
  throughput figure (`rejections_negligible` says so, and `goal_met` needs it).
* Stated limits. Each entry says the pre-trade risk limits it ran under
  (`risk_limits`: the limits as values, or "none" for the bare routers,
  which apply none unless given them). The Engine and the desk run under
  the defaults, which the flow here never breaches (`rejected` would show it).
* A floor from the same run. Machines are noisy (the reference machine has 2
  cores shared with other work), so each throughput workload also runs the
  same loop with the engine replaced by the least it could possibly do
  (build the same Order, read the clock twice, append a result).
  `ratio_to_floor = orders_per_s / floor_orders_per_s` is the figure to
  compare across runs and machines.
* Interleaved. The floor and the engine run in alternating rounds of
  `Sizes.round_orders` orders, so a burst of load from other processes hits
  both alike rather than one of them.
* Warm-up first, then measure; real time, except `twap_hour`, which runs
  an hour of schedule on the `VirtualClock`. Per-order times come from
  `time.perf_counter_ns` around the call, for every `SAMPLE_EVERY`-th order.
* No workload asserts a time; goals are reported (`goal_met`), never enforced.
"""

from .common import FULL, QUICK, REJECTED_TOLERANCE, Sizes, percentile
from .runner import OPT_IN, WORKLOADS, main, run

__all__ = ["FULL", "OPT_IN", "QUICK", "REJECTED_TOLERANCE", "WORKLOADS", "Sizes", "main", "percentile", "run"]
