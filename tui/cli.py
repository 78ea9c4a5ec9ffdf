"""The `execdesk` command: the desk by default; `execdesk bench` for the benchmark."""

from __future__ import annotations

import argparse
import logging
import sys



def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="execdesk",
        description="A terminal execution desk on simulated exchanges: market, limit, iceberg, TWAP, "
        "VWAP and smart orders; live orders, fills, breakers and latency.",
        epilog="Keys: b/s open a buy/sell ticket, Enter sends, ? lists every key, ctrl+p finds any action. "
        "`execdesk bench [--quick] [--only NAME,...] [--out FILE]` measures the engine (see `execdesk bench --help`).",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the simulated markets (reproducible runs)")
    parser.add_argument("--theme", default=None,
                        help="theme name (execdesk-dark, execdesk-light, execdesk-contrast; remembered)")
    parser.add_argument("--demo", action="store_true",
                        help="start a synthetic operator flow (every order type, ~1,000 fills a second)")
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["bench"]:
        from .bench import main as bench_main

        return bench_main(argv[1:])
    args = build_parser().parse_args(argv)
    from .app import DeskApp
    from .settings import config_dir

    # The screen is the terminal: engine warnings go to a log file, never to stderr.
    log_dir = config_dir()
    log_dir.mkdir(parents=True, exist_ok=True)
    logging.basicConfig(
        filename=log_dir / "execdesk.log",
        level=logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )

    DeskApp(seed=args.seed, theme=args.theme, demo=args.demo, tune_gc=True).run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
