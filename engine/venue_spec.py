"""The venues an Engine trades, named in one line: `sim:swift,fix://127.0.0.1:9878,ccxt:binance`.

Rules:

- Items are separated by commas; each is `sim:NAME` (a built-in simulated venue:
  swift, deep or thrift; `sim` alone is all three),
  `fix://HOST:PORT[/DESTINATION][?name=NAME&sender=ID&target=ID&password_file=FILE]` (a
  FIX 4.4 counterparty, such as `execdesk venue`; DESTINATION is sent as
  ExDestination(100) to a server that hosts several venues) or `ccxt:EXCHANGE` (a real
  exchange through CCXT, the optional extra `execdesk[ccxt]`; engine.venues.ccxtio).
- A CCXT venue trades the exchange's sandbox (testnet) unless `live` is given (the desk's
  `--live`); an exchange CCXT knows no sandbox for (kraken) is refused without it, when
  the line is read. Its keys come from `EXECDESK_<EXCHANGE>_API_KEY` and `_SECRET` (and
  `_PASSWORD` where the exchange asks for one), never from the line.
- A FIX venue's Logon password (Password 554) comes from the environment variable
  `EXECDESK_FIX_PASSWORD_<NAME>` (the venue's name upper-cased, other than letters and
  digits as `_`: `swift` -> `EXECDESK_FIX_PASSWORD_SWIFT`) or from `password_file=FILE`,
  a file only its owner may read (engine.secrets); both at once is refused, and neither
  means no password. The password itself is never written in the line (`password=` is
  refused: ps and shell history would show it). Every password is loaded before any
  venue is connected.
- A venue's name on the desk is the simulator's name, or for FIX the `name` option, else
  the destination, else `fix-PORT`. Two venues may not share a name.
- Anything else is refused with a `ConfigurationError` that says what was wrong and
  what is accepted; nothing is started until the whole line has been read.
- The simulated venues follow one reference market, as in `Engine.default`.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from .clock import Clock
from .engine import DEFAULT_VENUES, simulated_venues
from .errors import ConfigurationError
from .secrets import Secret, secret_from_env, secret_from_file

__all__ = ["VenueAddress", "fix_password", "live_venues", "open_venues", "parse_venues", "password_variable",
           "redact"]

_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,32}$")
_FIX_OPTIONS = ("name", "sender", "target", "password_file")
PASSWORD_PREFIX = "EXECDESK_FIX_PASSWORD_"
_PASSWORD_IN_LINE = re.compile(r"(?i)([?&]password=)[^&,]*")


@dataclass(frozen=True, slots=True)
class VenueAddress:
    kind: str  # "sim", "fix" or "ccxt"
    name: str
    host: str = ""
    port: int = 0
    destination: str | None = None
    options: dict[str, str] = field(default_factory=dict)


def _usage() -> str:
    names = ", ".join(spec.name for spec in DEFAULT_VENUES)
    return f"use sim:NAME ({names}), sim (all of them), fix://HOST:PORT[/VENUE] or ccxt:EXCHANGE"


def parse_venues(text: str, *, live: bool = False) -> list[VenueAddress]:
    """The venues of `text`, refused whole on the first item that is wrong; `live`: CCXT
    venues trade real money (see the module rules)."""
    if not isinstance(text, str) or not text.strip():
        raise ConfigurationError(f"no venues given: {_usage()}")
    known = [spec.name for spec in DEFAULT_VENUES]
    addresses: list[VenueAddress] = []
    for raw in text.split(","):
        item = raw.strip()
        if not item:
            raise ConfigurationError(f"an empty venue in {text!r}: {_usage()}")
        if item == "sim":
            addresses += [VenueAddress("sim", name) for name in known]
        elif item.startswith("sim:"):
            name = item[4:]
            if name not in known:
                raise ConfigurationError(f"unknown simulated venue {name!r} in {item!r}: {_usage()}")
            addresses.append(VenueAddress("sim", name))
        elif item.startswith("fix://"):
            addresses.append(_parse_fix(item))
        elif item.startswith("ccxt:"):
            addresses.append(_parse_ccxt(item, live))
        else:
            raise ConfigurationError(f"venue {item!r} is of no kind execdesk knows: {_usage()}")
    seen: set[str] = set()
    for address in addresses:
        if address.name in seen:
            raise ConfigurationError(
                f"two venues are named {address.name!r}; give a FIX venue its own with ?name=NAME"
            )
        seen.add(address.name)
    return addresses


def _parse_ccxt(item: str, live: bool) -> VenueAddress:
    exchange = item[len("ccxt:"):]
    if not re.fullmatch(r"[a-z0-9]{2,32}", exchange):
        raise ConfigurationError(f"CCXT venue {item!r}: name the exchange by its CCXT id, e.g. ccxt:binance")
    try:
        from .venues.ccxtio import has_sandbox
    except ImportError:
        raise ConfigurationError(f"{item}: CCXT venues need the ccxt extra: pip install 'execdesk[ccxt]'") from None
    if not live and not has_sandbox(exchange):
        raise ConfigurationError(
            f"{item}: {exchange} has no sandbox (testnet) in CCXT, so trading it means real money; "
            "pass --live to do so knowingly")
    return VenueAddress("ccxt", exchange, options={"exchange": exchange, "live": "1" if live else ""})


def live_venues(venues: Mapping[str, Any]) -> list[str]:
    """The names of the venues trading real money (a CCXT venue out of its sandbox)."""
    return [name for name, venue in venues.items() if getattr(venue, "live", False) is True]


def redact(text: str) -> str:
    """A venue line fit to show: any `password=` value replaced by ***."""
    return _PASSWORD_IN_LINE.sub(r"\1***", text)


def password_variable(name: str) -> str:
    """The environment variable a FIX venue's password is read from."""
    return PASSWORD_PREFIX + re.sub(r"[^A-Z0-9]", "_", name.upper())


def _parse_fix(item: str) -> VenueAddress:
    if _PASSWORD_IN_LINE.search(item):
        # Said without the item: it holds the password.
        raise ConfigurationError(
            "a FIX venue's password is never written in the venue line (ps and shell history would show "
            f"it): set {PASSWORD_PREFIX}<VENUE> or name an owner-only file with ?password_file=FILE")
    try:
        url = urlsplit(item)
        port = url.port
    except ValueError as exc:
        raise ConfigurationError(f"FIX venue {item!r}: {exc}; {_usage()}") from None
    host = url.hostname
    if not host or port is None or port == 0:
        raise ConfigurationError(f"FIX venue {item!r} needs a host and a port: fix://127.0.0.1:9878")
    destination = url.path.strip("/") or None
    if destination is not None and not _NAME.match(destination):
        raise ConfigurationError(f"FIX venue {item!r}: destination {destination!r} is not a venue name")
    options = dict(parse_qsl(url.query, keep_blank_values=True))
    unknown = sorted(set(options) - set(_FIX_OPTIONS))
    if unknown:
        raise ConfigurationError(f"FIX venue {item!r}: unknown option(s) {', '.join(unknown)} "
                                 f"(known: {', '.join(_FIX_OPTIONS)})")
    for key, value in options.items():
        if key == "password_file":
            if not value:
                raise ConfigurationError(f"FIX venue {item!r}: password_file= needs a file")
            continue
        if not _NAME.match(value):
            raise ConfigurationError(f"FIX venue {item!r}: {key}={value!r} must be 1-32 letters, digits, '_', '.', '-'")
    name = options.get("name") or destination or f"fix-{port}"
    return VenueAddress("fix", name, host, port, destination, options)


def open_venues(
    addresses: list[VenueAddress],
    *,
    seed: int = 0,
    clock: Clock | None = None,
    remember_ids: int | None = None,
    connect_timeout: float = 5.0,
    state_dir: Path | None = None,
    environ: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """Build the venues, in the order given; FIX venues are connected (logged on, their
    instruments and books received) before this returns. A venue that cannot be reached
    raises, after the ones already connected are closed.

    `state_dir`: where each FIX venue keeps its session's sequence numbers (a directory
    per venue name), so the next run logs on where this one stopped; a venue that has
    seen them would refuse a desk that starts again at 1.

    `environ`: where the `EXECDESK_FIX_PASSWORD_<NAME>` variables are read (default
    `os.environ`). A venue that refuses our Logon for its credentials raises
    `BadCredentialsError` saying so and where the password came from."""
    env = os.environ if environ is None else environ
    passwords = {a.name: fix_password(a, env) for a in addresses if a.kind == "fix"}
    keys = {a.name: _ccxt_keys(a, env) for a in addresses if a.kind == "ccxt"}
    sims = [a.name for a in addresses if a.kind == "sim"]
    specs = tuple(spec for spec in DEFAULT_VENUES if spec.name in sims)
    built: dict[str, Any] = simulated_venues(seed, clock=clock, specs=specs, remember_ids=remember_ids) if specs else {}
    venues: dict[str, Any] = {}
    try:
        for address in addresses:
            if address.kind == "sim":
                venues[address.name] = built[address.name]
                continue
            if address.kind == "ccxt":
                from .venues.ccxtio import CcxtVenue

                ccxt_venue = CcxtVenue(address.options["exchange"], live=bool(address.options.get("live")),
                                       **keys[address.name])
                venues[address.name] = ccxt_venue
                ccxt_venue.connect()  # loads the exchange's markets
                continue
            from .venues.fixio.venue import BadCredentialsError, FixVenue

            kwargs: dict[str, Any] = {"name": address.name, "destination": address.destination,
                                      "connect_timeout": connect_timeout}
            if state_dir is not None:
                kwargs["state_dir"] = Path(state_dir) / address.name
            if "sender" in address.options:
                kwargs["sender_comp_id"] = address.options["sender"]
            if "target" in address.options:
                kwargs["target_comp_id"] = address.options["target"]
            password = passwords[address.name]
            venue = FixVenue(address.host, address.port, password=password[0] if password else None, **kwargs)
            venues[address.name] = venue
            try:
                venue.connect()
            except BadCredentialsError as exc:
                where = (f"the password from {password[1]}" if password else
                         f"no password given: set {password_variable(address.name)} or ?password_file=FILE")
                raise BadCredentialsError(f"{exc} ({where})", venue=address.name) from None
    except BaseException:
        for venue in venues.values():
            close = getattr(venue, "close", None)
            if close is not None:
                close()
        raise
    return venues


def _ccxt_keys(address: VenueAddress, environ: Mapping[str, str]) -> dict[str, Secret]:
    from .venues.ccxtio import credentials_from_env

    return credentials_from_env(address.options["exchange"], environ)


def fix_password(address: VenueAddress, environ: Mapping[str, str]) -> tuple[Secret, str] | None:
    """The password of the FIX venue at `address` and where it came from (a text to show),
    or None when none is given; refused (naming the source, never the value) when it
    cannot be loaded."""
    from .venues.fix.session import check_fix_password

    variable = password_variable(address.name)
    file = address.options.get("password_file")
    try:
        if file is not None:
            if variable in environ:
                raise ConfigurationError(f"a password both in {variable} and in password_file={file}: keep one")
            secret, source = secret_from_file(file), f"file {file}"
        elif variable in environ:
            secret, source = secret_from_env(variable, environ), f"environment variable {variable}"
        else:
            return None
        check_fix_password(secret)
    except ConfigurationError as exc:
        raise ConfigurationError(f"FIX venue {address.name}: {exc}") from None
    return secret, source
