"""The `execdesk` command: the desk by default; `execdesk bench` for the benchmark;
`execdesk venue` for the simulated venues as a FIX 4.4 server (tui/venue_cmd.py);
`execdesk serve` for the desk in a browser tab (tui/serve.py).

Rules: a desk that ended on an unhandled exception exits non-zero (scripts and
supervisors must see the crash), and the log file is bounded (it rotates).
"""

from __future__ import annotations

import argparse
import logging
import logging.handlers
import sys
from pathlib import Path
from typing import Any

# The log holds warnings and errors only, but a busy desk can still write several a
# second for hours: a few files of a few MB each keep days of news and no more.
LOG_MAX_BYTES = 5 * 1024 * 1024
LOG_BACKUPS = 3
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

log = logging.getLogger("execdesk.cli")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="execdesk",
        description="A terminal execution desk on simulated exchanges: market, limit, iceberg, TWAP, "
        "VWAP and smart orders; live orders, fills, breakers and latency.",
        epilog="Keys: b/s open a buy/sell ticket, Enter sends, ? lists every key, ctrl+p finds any action. "
        "`execdesk bench [--quick] [--only NAME,...] [--out FILE]` measures the engine (see `execdesk bench --help`); "
        "`execdesk venue --port N` runs the simulated venues as a FIX 4.4 server (see `execdesk venue --help`); "
        "`execdesk serve` serves the desk in a browser tab (see `execdesk serve --help`).",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the simulated markets (reproducible runs)")
    parser.add_argument("--theme", default=None,
                        help="theme name (execdesk-dark, execdesk-light, execdesk-contrast; remembered)")
    parser.add_argument("--demo", action="store_true",
                        help="start a synthetic operator flow (every order type, ~1,000 fills a second)")
    parser.add_argument("--venues", default=None, metavar="LIST",
                        help="the venues to trade, a comma list: sim:swift, sim:deep, sim:thrift (built-in "
                        "simulators), fix://HOST:PORT[/VENUE][?password_file=FILE] (a FIX 4.4 venue, e.g. "
                        "`execdesk venue`; its Logon password from env EXECDESK_FIX_PASSWORD_<VENUE> or from "
                        "FILE, owner-only: chmod 600); default: the three simulators")
    parser.add_argument("--live", action="store_true",
                        help="trade real money: ccxt: venues leave their sandbox (testnet), and an exchange CCXT "
                        "has no sandbox for (kraken) is accepted; the top bar says LIVE all the while")
    parser.add_argument("--journal", type=Path, default=None, metavar="PATH",
                        help="the order journal, SQLite (default: journal.sqlite3 in the config directory); "
                        "read it with sqlite3")
    parser.add_argument("--on-restart", choices=("stop", "resume"), default="stop",
                        help="algorithm orders (ICEBERG, TWAP, VWAP, SMART) the previous run left working: stop "
                        "them (default) or resume what is left of them")
    parser.add_argument("--on-close", choices=("cancel", "leave"), default="cancel",
                        help="orders still working when the desk is closed without its quit question (a browser "
                        "tab closed under `execdesk serve`, SIGTERM, SIGINT): cancel them (default) or leave them "
                        "working at their venues, journaled, for the next start to recover")
    parser.add_argument("--risk", type=Path, default=None, metavar="PATH",
                        help="pre-trade risk limits, a TOML file (default: risk.toml in the config directory, "
                        "written with the built-in limits on the first run)")
    return parser


def configure_logging(
    log_dir: Path, *, max_bytes: int = LOG_MAX_BYTES, backups: int = LOG_BACKUPS,
) -> logging.Handler:
    """Send warnings to `log_dir`/execdesk.log, rotated; returns the handler it added.

    The screen is the terminal: engine warnings go to a file, never to stderr.
    """
    log_dir.mkdir(parents=True, exist_ok=True)
    handler = logging.handlers.RotatingFileHandler(
        log_dir / "execdesk.log", maxBytes=max_bytes, backupCount=backups, encoding="utf-8",
    )
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(logging.WARNING)
    return handler


def run_desk(app: Any, **run_options: Any) -> int:
    """Run the app to its end; its exit status, non-zero when it ended on a crash.

    Textual prints an unhandled exception's traceback and sets the app's return code
    to 1, but `App.run` returns normally: left to itself the process would exit 0.
    """
    app.run(**run_options)
    code = app.return_code or 0
    if code:
        # The terminal's traceback scrolls away with the next command; the log keeps it.
        error = getattr(app, "_exception", None)  # Textual keeps the first crash here
        log.error("the desk ended on an unhandled exception (exit status %d)", code,
                  exc_info=(type(error), error, error.__traceback__) if error else None)
    # A notice shown while the desk closes goes with its screen: what failed on the way
    # out (a save) is said on the terminal, where it stays.
    for problem in getattr(app, "exit_problems", ()):
        print(f"execdesk: {problem}", file=sys.stderr)
    return code


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["bench"]:
        from .bench import main as bench_main

        return bench_main(argv[1:])
    if argv[:1] == ["serve"]:
        from .serve import main as serve_main

        return serve_main(argv[1:])
    if argv[:1] == ["venue"]:
        from .venue_cmd import main as venue_main

        return venue_main(argv[1:])
    parser = build_parser()
    args = parser.parse_args(argv)
    from .app import DESK_VENUE_REMEMBER_IDS, DeskApp
    from .settings import config_dir

    configure_logging(config_dir())
    from engine.errors import ExecdeskError

    venues = None
    if args.venues is not None:
        from engine.venue_spec import open_venues, parse_venues, redact

        try:
            venues = open_venues(parse_venues(args.venues, live=args.live), seed=args.seed, remember_ids=DESK_VENUE_REMEMBER_IDS,
                                 state_dir=config_dir() / "fix")
        except (ExecdeskError, OSError) as exc:
            parser.exit(2, f"execdesk: --venues {redact(args.venues)}: {exc}\n")
    try:
        try:
            app = DeskApp(seed=args.seed, theme=args.theme, demo=args.demo, tune_gc=True,
                          risk_path=args.risk, venues=venues, journal_path=args.journal,
                          on_restart=args.on_restart, on_close=args.on_close)
        except (ExecdeskError, OSError) as exc:
            parser.exit(2, f"execdesk: {exc}\n")
        return run_desk(app)
    finally:
        for venue in (venues or {}).values():
            close = getattr(venue, "close", None)
            if close is not None:
                close()


if __name__ == "__main__":
    sys.exit(main())
