"""SQLite files of ours (the order journal, the FIX session stores): opened, or created,
only when they are what they say they are.

Rules:

- A file says what it is with `PRAGMA application_id` and its schema version with
  `PRAGMA user_version`; a new file gets both.
- Another program's database, a corrupt or truncated file, a newer schema (or an older
  one than the caller reads) is refused with `ConfigurationError` naming the file and
  what is wrong, and is never written to.
- Every file is opened in WAL mode, synchronous=NORMAL (FULL with `durable`), in
  autocommit mode (`isolation_level=None`): callers write their own transactions.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from .errors import ConfigurationError

__all__ = ["open_database"]


def open_database(path: Path, *, application_id: int, schema: str, version: int, what: str,
                  durable: bool = False, oldest: int | None = None, verify: bool = False) -> sqlite3.Connection:
    """Open (or create) an SQLite file of ours: refuse a foreign, corrupt or newer one.

    `oldest`: the oldest schema version this one reads; an older file is refused (a
    caller with a migration passes None and migrates after opening). `verify`: run
    SQLite's `quick_check` over an existing file first (a read of the whole file), so a
    truncated or damaged one is refused at open rather than misread later."""
    path = Path(path)
    existed = path.exists() and path.stat().st_size > 0
    try:
        db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    except sqlite3.Error as exc:
        raise ConfigurationError(f"cannot open the {what} {str(path)!r}: {exc}") from None
    try:
        app_id = db.execute("PRAGMA application_id").fetchone()[0]
        user_version = db.execute("PRAGMA user_version").fetchone()[0]
        if existed:
            tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
            if app_id != application_id:
                raise ConfigurationError(
                    f"{str(path)!r} is not an execdesk {what} (application id {app_id:#x}, tables "
                    f"{sorted(tables) or 'none'}); it was left untouched: choose another path"
                )
            if user_version > version:
                raise ConfigurationError(
                    f"the {what} {str(path)!r} was written by a newer execdesk (schema {user_version}, "
                    f"this one reads {version}); it was left untouched"
                )
            if oldest is not None and user_version < oldest:
                raise ConfigurationError(
                    f"the {what} {str(path)!r} was written by an older execdesk (schema {user_version}, "
                    f"this one reads {oldest} to {version}) and cannot be migrated; it was left untouched"
                )
            if verify:
                problems = [row[0] for row in db.execute("PRAGMA quick_check(5)")]
                if problems != ["ok"]:
                    raise ConfigurationError(
                        f"the {what} {str(path)!r} is corrupt, truncated or not a database ({'; '.join(problems)}); "
                        "it was left untouched"
                    )
        db.execute("PRAGMA journal_mode=WAL")
        db.execute(f"PRAGMA synchronous={'FULL' if durable else 'NORMAL'}")
        db.executescript(f"BEGIN; {schema} COMMIT;")
        if not existed:
            db.execute(f"PRAGMA application_id={application_id}")
            db.execute(f"PRAGMA user_version={version}")
    except sqlite3.DatabaseError as exc:
        db.close()
        raise ConfigurationError(
            f"the {what} {str(path)!r} is corrupt, truncated or not a database ({exc}); it was left untouched"
        ) from None
    except ConfigurationError:
        db.close()
        raise
    return db
