"""What the desk remembers between runs: the theme and the last ticket's fields.

Stored as JSON in $EXECDESK_CONFIG_DIR, else $XDG_CONFIG_HOME/execdesk, else
~/.config/execdesk; written atomically. A missing or unreadable file means
defaults (with a notice from the app), never a crash.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any


def config_dir() -> Path:
    explicit = os.environ.get("EXECDESK_CONFIG_DIR")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "execdesk"


@dataclass(slots=True)
class Settings:
    theme: str | None = None
    ticket: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def load(cls, path: Path | None = None) -> tuple[Settings, str | None]:
        """The saved settings, and a problem to show the operator if the file was bad."""
        path = path or config_dir() / "settings.json"
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return cls(), None
        except (OSError, ValueError) as exc:
            return cls(), f"settings file {path} could not be read ({exc}); using defaults"
        if not isinstance(data, dict):
            return cls(), f"settings file {path} is not a JSON object; using defaults"
        theme = data.get("theme")
        ticket = data.get("ticket")
        # A price belongs to the market of its moment: a new run (another seed, a day
        # later) opens the ticket at the touch, not at a price that may be far through
        # it. Within a run the last ticket's price is kept.
        ticket = {k: v for k, v in ticket.items() if k != "price"} if isinstance(ticket, dict) else {}
        return cls(theme=theme if isinstance(theme, str) else None, ticket=ticket), None

    def save(self, path: Path | None = None) -> str | None:
        """Write atomically; returns a problem message instead of raising."""
        path = path or config_dir() / "settings.json"
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".settings-", suffix=".tmp")
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                json.dump(asdict(self), fh, indent=2, sort_keys=True)
            os.replace(tmp, path)
        except OSError as exc:
            return f"settings could not be saved to {path}: {exc}"
        return None
