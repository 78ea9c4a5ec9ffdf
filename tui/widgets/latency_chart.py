"""Live latency percentiles (p50/p95/p99 per second) and the saved history, via plotext.

Redrawn by the app at 2 Hz from the profiler's rolling windows (no samples
are kept anywhere); the history view reads the profiler's saved file.
"""

from __future__ import annotations

from pathlib import Path

from textual_plotext import PlotextPlot

from engine import Engine, LatencyProfiler, ProfilerFileError

CATEGORIES = ("acknowledgment", "submission", "execution")
WINDOW_S = 300


class LatencyChart(PlotextPlot):
    BORDER_TITLE = "Latency"

    def __init__(self, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.category = CATEGORIES[0]
        self.venues: list[str] = []
        self.venue: str | None = None  # None: every venue, p99 each; a name: p50/p95/p99 of it
        self.history: LatencyProfiler | None = None

    def next_category(self) -> None:
        self.category = CATEGORIES[(CATEGORIES.index(self.category) + 1) % len(CATEGORIES)]

    def next_venue(self) -> None:
        options: list[str | None] = [None, *self.venues]
        self.venue = options[(options.index(self.venue) + 1) % len(options)]

    def toggle_history(self, path: Path | None) -> str | None:
        """Switch to the saved history (or back to live); returns a problem to show, if any."""
        if self.history is not None:
            self.history = None
            return None
        if path is None:
            return "no saved latency history: the profiler has no save file"
        # A file on disk can be anything: load names every fault of its content with
        # ProfilerFileError, and OSError covers what stops it being read at all.
        try:
            self.history = LatencyProfiler.load(path)
        except FileNotFoundError:
            return f"no saved latency history yet at {path} (saved on exit and every minute)"
        except ProfilerFileError as exc:
            return f"latency history not shown: {exc}"
        except OSError as exc:
            return f"latency history not shown: {path} could not be read ({exc.strerror or exc})"
        return None

    def redraw(self, engine: Engine) -> None:
        plt = self.plt
        plt.clear_data()
        plt.clear_figure()
        plt.theme("clear")
        if self.history is not None:
            self._draw_history(plt)
        else:
            self._draw_live(plt, engine)
        self.refresh()

    def _draw_live(self, plt: object, engine: Engine) -> None:
        profiler = engine.profiler
        now = engine.clock.now()
        venues = [self.venue] if self.venue else list(engine.venues)
        drawn = False
        for venue in venues:
            points = profiler.rolling(self.category, venue, seconds=WINDOW_S)
            if not points:
                continue
            xs = [p.ts - now for p in points]
            series = (("p50", "p50"), ("p95", "p95"), ("p99", "p99")) if self.venue else (("p99", "p99"),)
            for attr, label in series:
                ys = [getattr(p, attr) / 1e6 for p in points]
                plt.plot(xs, ys, label=f"{venue} {label}" if not self.venue else label, marker="braille")
                drawn = True
        scope = self.venue or "all venues (p99)"
        self.border_title = f"Latency · {self.category} · {scope} · last {WINDOW_S // 60} min (ms)"
        if not drawn:
            plt.title("no samples yet")
        plt.xlim(-WINDOW_S, 0)
        plt.xlabel("seconds ago")

    def _draw_history(self, plt: object) -> None:
        assert self.history is not None
        venues = self.history.venues(self.category) or []
        labels, p50, p95, p99 = [], [], [], []
        for venue in venues:
            st = self.history.stats(self.category, venue)
            if st.count:
                labels.append(venue)
                p50.append(st.median / 1e6)
                p95.append(st.p95 / 1e6)
                p99.append(st.p99 / 1e6)
        self.border_title = f"Latency history · {self.category} · saved run (ms)"
        if labels:
            plt.multiple_bar(labels, [p50, p95, p99], labels=["p50", "p95", "p99"])
        else:
            plt.title("the saved history has no samples for this category")
