"""What the desk remembers between runs: the theme and the last ticket's fields.

Stored as JSON in $EXECDESK_CONFIG_DIR, else $XDG_CONFIG_HOME/execdesk, else
~/.config/execdesk. Rules:

* Loading never raises and never hands the app a value the ticket cannot
  show. A missing file means defaults, silently. A file that cannot be read
  at all (unreadable, not UTF-8, not JSON, truncated, not a JSON object,
  nested past the parser's depth, over `MAX_FILE_BYTES`) means defaults and
  one warning. Inside a readable file each ticket key is checked on its own
  (`check_ticket`): good keys are kept, bad or unknown ones are dropped and
  named in the one warning, so a single hand-edited typo costs that field,
  not the whole ticket.
* Saving is atomic (a temporary file in the same directory, then
  `os.replace`) and returns a problem message instead of raising. A failed
  save removes its temporary file; one left by a killed process (a kill
  cannot clean up) is removed by the next load once it is older than
  `STALE_TEMP_S`, so that a save running in another desk right now is not
  pulled from under it.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from engine import OrderSide

from .ticket_model import CHOICES, FIELDS_BY_TYPE

TEMP_PREFIX = ".settings-"
TEMP_SUFFIX = ".tmp"
# A temporary file this old belongs to no save still running (a save takes milliseconds).
STALE_TEMP_S = 60.0
# The desk writes well under a kilobyte; anything this large is another program's file,
# and reading it whole would only cost memory and start-up time.
MAX_FILE_BYTES = 1 << 20
# The warning names at most this many dropped keys, then counts the rest.
_NAMED_AT_MOST = 8

# Ticket keys by kind. Routes and symbols are checked against the running desk by the
# ticket itself (it falls back to smart routing and the first symbol), so here they
# only need to be strings; every other field's rule is known without a desk.
_FREE_TEXT = ("symbol", "venue")
_ENUMS: dict[str, tuple[str, ...]] = {
    "type": tuple(t.value for t in FIELDS_BY_TYPE),  # the types the ticket can show
    "side": tuple(s.value for s in OrderSide),
    **CHOICES,
}
_WHOLE = frozenset({"slices"})
_NUMERIC = tuple(dict.fromkeys(
    name for names in FIELDS_BY_TYPE.values() for name in names if name not in CHOICES and name not in _FREE_TEXT
))
TICKET_KEYS = frozenset((*_FREE_TEXT, *_ENUMS, *_NUMERIC))


def config_dir() -> Path:
    explicit = os.environ.get("EXECDESK_CONFIG_DIR")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "execdesk"


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _json_kind(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    return {"list": "a list", "dict": "an object", "str": "a string"}.get(type(value).__name__, "a value")


def _ticket_value_problem(key: str, value: object) -> str | None:
    """Why `value` cannot stand for ticket field `key`, or None if it can."""
    if key not in TICKET_KEYS:
        return "unknown key"
    if not isinstance(value, str):
        return f"{_short(value)} is {_json_kind(value)}, not a string"
    if key in _ENUMS:
        if value not in _ENUMS[key]:
            return f"{_short(value)} is not one of {', '.join(_ENUMS[key])}"
        return None
    if key in _NUMERIC:
        text = value.strip().replace(",", "")
        try:
            number = int(text) if key in _WHOLE else float(text)
        except ValueError:
            kind = "a whole number" if key in _WHOLE else "a number"
            return f"{_short(value)} is not {kind}"
        if not math.isfinite(number):
            return f"{_short(value)} is not a finite number"
    return None


def check_ticket(ticket: object) -> tuple[dict[str, str], list[str]]:
    """The ticket keys worth keeping, and one note per key dropped ("key: why")."""
    if not isinstance(ticket, dict):
        return {}, [f"ticket: {_json_kind(ticket)}, not an object"]
    kept: dict[str, str] = {}
    dropped: list[str] = []
    for key, value in ticket.items():
        problem = _ticket_value_problem(key, value)
        if problem is None:
            kept[key] = value
        else:
            dropped.append(f"ticket.{_short(key) if key not in TICKET_KEYS else key}: {problem}")
    return kept, dropped


def remove_stale_temps(directory: Path, *, older_than_s: float = STALE_TEMP_S) -> int:
    """Delete temporary files that killed saves left in `directory`; returns how many went."""
    cutoff = time.time() - older_than_s
    removed = 0
    try:
        candidates = list(directory.glob(f"{TEMP_PREFIX}*{TEMP_SUFFIX}"))
    except OSError:
        return 0
    for candidate in candidates:
        with contextlib.suppress(OSError):  # gone already, or not ours to delete: leave it
            if candidate.stat().st_mtime < cutoff:
                candidate.unlink()
                removed += 1
    return removed


@dataclass(slots=True)
class Settings:
    theme: str | None = None
    ticket: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def load(cls, path: Path | None = None) -> tuple[Settings, str | None]:
        """The saved settings, and one problem to show the operator if the file was bad."""
        path = path or config_dir() / "settings.json"
        remove_stale_temps(path.parent)
        try:
            with path.open("rb") as handle:
                raw = handle.read(MAX_FILE_BYTES + 1)
        except FileNotFoundError:
            return cls(), None
        except OSError as exc:
            return cls(), f"settings file {path} could not be read ({exc}); using defaults"
        if len(raw) > MAX_FILE_BYTES:
            return cls(), (f"settings file {path} is over {MAX_FILE_BYTES:,} bytes, not a settings file "
                           "this desk wrote; using defaults")
        try:
            data = json.loads(raw.decode("utf-8"))
        except UnicodeDecodeError:
            return cls(), f"settings file {path} is not UTF-8 text (corrupt or another program's); using defaults"
        except ValueError as exc:  # json.JSONDecodeError
            return cls(), f"settings file {path} is not valid JSON ({exc}; truncated or corrupt?); using defaults"
        except RecursionError:
            return cls(), f"settings file {path} is nested too deeply to be a settings file; using defaults"
        if not isinstance(data, dict):
            return cls(), f"settings file {path} holds {_json_kind(data)}, not an object; using defaults"
        dropped: list[str] = []
        theme = data.get("theme")
        if theme is not None and not isinstance(theme, str):
            dropped.append(f"theme: {_short(theme)} is {_json_kind(theme)}, not a string")
            theme = None
        elif theme is not None and not (0 < len(theme) <= 64 and theme.isprintable()):
            dropped.append(f"theme: {_short(theme)} is no theme's name (1-64 printable characters)")
            theme = None
        for key in data:
            if key not in ("theme", "ticket"):
                dropped.append(f"{_short(key)}: unknown key")
        saved_ticket = data.get("ticket", {})
        if isinstance(saved_ticket, dict):
            # A price belongs to the market of its moment: a new run (another seed, a
            # day later) opens the ticket at the touch, not at a price that may be far
            # through it. Within a run the last ticket's price is kept.
            saved_ticket = {k: v for k, v in saved_ticket.items() if k != "price"}
        ticket, ticket_dropped = check_ticket(saved_ticket)
        dropped.extend(ticket_dropped)
        problem = None
        if dropped:
            named = "; ".join(dropped[:_NAMED_AT_MOST])
            more = len(dropped) - _NAMED_AT_MOST
            if more > 0:
                named += f"; and {more} more"
            problem = f"settings file {path}: ignored {named} (defaults used instead)"
        return cls(theme=theme, ticket=ticket), problem

    def save(self, path: Path | None = None) -> str | None:
        """Write atomically; returns a problem message instead of raising."""
        path = path or config_dir() / "settings.json"
        try:
            text = json.dumps(asdict(self), indent=2, sort_keys=True)
        except (TypeError, ValueError) as exc:
            return f"settings could not be saved to {path}: {exc}"
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=TEMP_PREFIX, suffix=TEMP_SUFFIX)
        except OSError as exc:
            return f"settings could not be saved to {path}: {exc}"
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write(text)
            os.replace(tmp, path)
        except OSError as exc:
            _unlink_quietly(tmp)
            return f"settings could not be saved to {path}: {exc}"
        except BaseException:  # an interrupt mid-write: the half-written file must not stay
            _unlink_quietly(tmp)
            raise
        return None


def _unlink_quietly(name: str) -> None:
    with contextlib.suppress(OSError):  # already gone, or the directory went read-only
        os.unlink(name)
