"""`execdesk venue`: the simulated venues as a FIX 4.4 server in their own process.

Rules:

- The venues are the desk's built-in simulators (`engine.engine.simulated_venues`: the
  same presets, one reference market, the same seeds), so a venue process and a desk
  started with the same --seed trade the same markets.
- Loopback only, unless --allow-remote says a non-loopback --host is meant.
- One line on stdout once listening ("execdesk venue: FIX 4.4 on HOST:PORT, venues ...,
  CompID ..."), so scripts and tests can wait for it; the port is the real one (--port 0
  picks a free port).
- SIGINT or SIGTERM: every session is logged out, the state committed, exit 0.
- Bad flags, a refused host, a corrupt or foreign state file: a message on stderr and
  exit 2, never a traceback; nothing on disk is overwritten.
- Logs go to stderr, warnings only unless --verbose (sessions logging on and off).
- --password-env VAR or --password-file FILE: every Logon must carry that password as
  Password(554) (one for all counterparties); the file must be owner-only (chmod 600).
  The password is never printed, logged or written; a refused Logon is logged as a
  warning naming the CompID, never what it sent. A password is never given on the
  command line itself (ps and shell history would show it).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import logging
import re
import sys
from pathlib import Path
from typing import Any

from .serving import serve_until_signalled

LISTENING = "execdesk venue: FIX 4.4 on {host}:{port}, venues {venues}, CompID {comp_id}{password}"
FAULTS = ("none", "preset", "flaky")
LATENCIES = ("none", "preset")
_COMP_ID = re.compile(r"^[A-Za-z0-9_.-]{1,32}$")

log = logging.getLogger("execdesk.venue")


def build_parser() -> argparse.ArgumentParser:
    from engine.engine import DEFAULT_VENUES

    names = ", ".join(spec.name for spec in DEFAULT_VENUES)
    parser = argparse.ArgumentParser(
        prog="execdesk venue",
        description="Run the simulated venues as a FIX 4.4 server (an acceptor) any FIX client can trade with. "
        "See docs/fix.md for the messages and tags.",
        epilog="Point the desk at it with `execdesk --venues fix://127.0.0.1:PORT`, or any FIX 4.4 client with "
        "TargetCompID = --comp-id and ExDestination(100) = a venue name.",
    )
    parser.add_argument("--port", type=int, required=True, help="TCP port to listen on (0: any free port, printed)")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--allow-remote", action="store_true",
                        help="allow a --host that is not loopback (the venue is then reachable from other machines)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the simulated markets (default 0)")
    parser.add_argument("--venues", default=None, metavar="LIST",
                        help=f"comma list of the simulated venues to serve, the first is the default "
                        f"ExDestination (default: all: {names})")
    parser.add_argument("--faults", choices=FAULTS, default="none",
                        help="injected venue faults: none (default), preset (each venue's own: thrift 2%% errors), "
                        "flaky (every venue: 2%% errors, 1%% timeouts)")
    parser.add_argument("--latency", choices=LATENCIES, default="none",
                        help="simulated request latency on top of the network: none (default) or preset "
                        "(each venue's own; a session's orders are handled one after another, so it caps throughput)")
    parser.add_argument("--state", type=Path, default=None, metavar="DIR",
                        help="keep orders, fills and FIX session numbers in SQLite files under DIR, "
                        "so a restarted venue knows them (default: in memory only)")
    parser.add_argument("--comp-id", default="VENUE", help="our SenderCompID (default VENUE)")
    parser.add_argument("--counterparties", default=None, metavar="A,B",
                        help="the only SenderCompIDs allowed to log on (default: any)")
    password = parser.add_mutually_exclusive_group()
    password.add_argument("--password-env", default=None, metavar="VAR",
                          help="require this password on every Logon (Password 554), read from environment "
                          "variable VAR (default: no password asked)")
    password.add_argument("--password-file", type=Path, default=None, metavar="FILE",
                          help="require the password on the first line of FILE, which only its owner may "
                          "read (chmod 600 FILE)")
    parser.add_argument("--tick-interval", type=float, default=0.1, metavar="SECONDS",
                        help="how often the simulated markets step and market data goes out (default 0.1)")
    parser.add_argument("--verbose", action="store_true", help="log sessions logging on and off (stderr)")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    from engine.engine import DEFAULT_VENUES, simulated_venues
    from engine.errors import ExecdeskError
    from engine.venues.fixio.server import FixVenueServer, is_loopback
    from engine.venues.sim.config import FaultConfig, LatencyModel

    if not 0 <= args.port <= 65535:
        parser.error(f"--port must be 0-65535, got {args.port}")
    if not is_loopback(args.host) and not args.allow_remote:
        parser.exit(2, f"execdesk venue: --host {args.host} is not a loopback address: the venue would be "
                       "reachable from other machines; add --allow-remote to mean it\n")
    if not _COMP_ID.match(args.comp_id):
        parser.error(f"--comp-id {args.comp_id!r} must be 1-32 letters, digits, '_', '.', '-'")
    if not args.tick_interval > 0:
        parser.error(f"--tick-interval must be > 0 seconds, got {args.tick_interval}")
    known = [spec.name for spec in DEFAULT_VENUES]
    names = known if args.venues is None else [n.strip() for n in args.venues.split(",")]
    for name in names:
        if name not in known:
            parser.error(f"--venues: unknown venue {name!r} (venues: {', '.join(known)})")
    if len(set(names)) != len(names):
        parser.error(f"--venues names a venue twice: {args.venues}")
    from engine.secrets import secret_from_env, secret_from_file
    from engine.venues.fix.session import check_fix_password

    secret = None
    try:
        if args.password_env is not None:
            secret = secret_from_env(args.password_env)
        elif args.password_file is not None:
            secret = secret_from_file(args.password_file)
        if secret is not None:
            check_fix_password(secret)
    except ExecdeskError as exc:
        flag = "--password-env" if args.password_env is not None else "--password-file"
        parser.exit(2, f"execdesk venue: {flag}: {exc}\n")
    counterparties = None
    if args.counterparties is not None:
        counterparties = frozenset(c.strip() for c in args.counterparties.split(","))
        bad = sorted(c for c in counterparties if not _COMP_ID.match(c))
        if bad:
            parser.error(f"--counterparties: {bad[0]!r} is not a CompID (1-32 letters, digits, '_', '.', '-')")

    specs = []
    for spec in DEFAULT_VENUES:
        if spec.name not in names:
            continue
        if args.faults == "none":
            spec = dataclasses.replace(spec, faults=FaultConfig())
        elif args.faults == "flaky":
            spec = dataclasses.replace(spec, faults=FaultConfig(error_rate=0.02, timeout_rate=0.01, timeout_s=0.5))
        if args.latency == "none":
            spec = dataclasses.replace(spec, latency=LatencyModel())
        specs.append(spec)
    built = simulated_venues(args.seed, specs=tuple(specs))
    venues = {name: built[name] for name in names}  # the order given: the first is the default destination

    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    state = None
    if args.state is not None:
        from engine.venues.fixio.venue_state import VenueState

        try:
            state = VenueState(args.state)
        except ExecdeskError as exc:
            parser.exit(2, f"execdesk venue: --state {args.state}: {exc}\n")
    try:
        server = FixVenueServer(venues, args.host, args.port, comp_id=args.comp_id,
                                allowed_counterparties=counterparties, allow_remote=args.allow_remote,
                                tick_interval=args.tick_interval, state=state, password=secret)
        return asyncio.run(_serve(server))
    except (ExecdeskError, OSError) as exc:
        parser.exit(2, f"execdesk venue: {exc}\n")
    finally:
        if state is not None:
            state.close()
    return 0


async def _serve(server: Any) -> int:
    return await serve_until_signalled(server, lambda: LISTENING.format(
        host=server.host, port=server.port, venues=", ".join(server.venues), comp_id=server.comp_id,
        password=", password required" if server.password_required else ""))
