"""The human table on stderr: one row per workload, its key figure against the floor and goal."""

from __future__ import annotations

from typing import Any


def _fmt(value: Any, spec: str = ",.0f") -> str:
    if value is None:
        return "-"
    if isinstance(value, (int, float)):
        return format(value, spec)
    return str(value)


def _us(value: float | None) -> str:
    return "-" if value is None else f"{value:,.1f} us"


def _goal(w: dict[str, Any]) -> str:
    """The goal, with its threshold on this machine in this run where it has one."""
    threshold = w.get("goal_orders_per_s")
    return w.get("goal", "") + ("" if threshold is None else f" ({threshold:,.0f} orders/s)")


def format_table(doc: dict[str, Any]) -> str:
    """The human table: one row per workload, its key figure against the floor, its cost in
    builds of the reference order, and its goal."""
    header = ("workload", "figure", "builds/order", "document", "floor", "ratio", "p50", "p99", "fills",
              "rejected", "goal", "met")
    rows = [header]
    for w in doc["workloads"]:
        name = w["name"]
        if "skipped" in w or "error" in w:
            rows.append((name, w.get("skipped") or f"ERROR {w['error']}", "", "", "", "", "", "", "", "", "", "-"))
            continue
        met = {True: "yes", False: "NO", None: "-"}[w.get("met")]
        if "orders_per_s" in w and "floor_orders_per_s" in w:
            rows.append((
                name, f"{_fmt(w['orders_per_s'])} orders/s", _fmt(w.get("order_builds_per_order"), ".2f"),
                _fmt(w.get("seed_orders_per_s")), _fmt(w["floor_orders_per_s"]), _fmt(w["ratio_to_floor"], ".3f"),
                _us(w["p50_us"]), _us(w["p99_us"]),
                _fmt(w["fills"]), _fmt(w["rejected"]), _goal(w), met,
            ))
        elif name == "fix_roundtrip":
            rows.append((name, f"{_fmt(w['orders_per_s'])} orders/s ({w['in_flight']} in flight)", "", "-",
                         f"{_fmt(w['floor_frames_per_s'])} echo/s", _fmt(w["ratio_to_floor"], ".3f"),
                         f"{_us(w['one_in_flight_p50_us'])} (1 in flight)", _us(w["one_in_flight_p99_us"]),
                         _fmt(w["fills"]), _fmt(w["rejected"]), w["goal"], met))
        elif name == "profiler_record":
            rows.append((name, f"{w['ns_per_sample']:.0f} ns/sample", "", "-", f"{w['floor_ns_per_sample']:.0f} ns",
                         _fmt(w["ratio_to_floor"], ".3f"), "", "", "", "", w["goal"], met))
        elif name == "twap_hour":
            rows.append((name, f"{w['seconds']:.3f} s wall", "", "-", "", "", "", "", _fmt(w["fills"]), "",
                         w["goal"], met))
        elif name == "desk_under_load":
            rows.append((name, f"{w['fills_per_s']:,.0f} fills/s", "", "-", "", "",
                         f"{w['p50_ms']:.1f} ms", f"{w['p99_ms']:.1f} ms", "", "", w["goal"], met))
        elif name == "desk_soak":
            rows.append((name, f"RSS {w['rss_mb_first']} -> {w['rss_mb_max']} max -> {w['rss_mb_last']} MB, "
                         f"{w['fills_per_s']:,.0f} fills/s", "", "-", "", "",
                         f"{w['p50_ms']:.1f} ms", f"{w['p99_ms']:.1f} ms", _fmt(w["fills_total"]), "",
                         w["goal"], met))
        elif name == "steady_state":
            speed, rss = w["speed_ratio"], w["rss_ratio"]
            rows.append((name, f"last/first stretch {_fmt(speed, '.2f')}x orders/s, peak RSS "
                         f"{_fmt(w['peak_rss_mb'])} MB ({_fmt(rss, '.2f')}x)", "", "-", "", "", "", "",
                         _fmt(w["fills"]), _fmt(w["rejected"]), w["goal"], met))
        else:
            rows.append((name, "", "", "", "", "", "", "", "", "", w.get("goal", ""), met))
    widths = [max(len(str(r[i])) for r in rows) for i in range(len(header))]
    lines = ["  ".join(str(c).ljust(widths[i]) for i, c in enumerate(r)).rstrip() for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    m = doc["machine"]
    lines.append("")
    lines.append(f"{m['cpu_count']} CPUs ({m['cpu_model']}), Python {m['python']}, commit {m['git_commit'][:12]}"
                 + f", load {m['load_average_at_start']}, reference Order build {m['order_build_us']} us"
                 + f" (the product's: {m['product_order_build_us']} us)"
                 + (" (engine/tui modified)" if m.get("git_dirty") else "")
                 + (", quick" if m["quick"] else ""))
    return "\n".join(lines)
