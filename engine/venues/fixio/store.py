"""A FIX session store that survives a restart: SQLite (stdlib `sqlite3`) in WAL mode.

Rules:

- One database file may hold many sessions, each under its own `key` (the venue keys
  them by counterparty, "VENUE->DESK"); every store opens its own connection.
- What `save_sent` and the sequence numbers change is written at `commit()`, in one
  transaction (the driver calls it once per batch, before that batch's bytes go out).
  `synchronous=NORMAL` in WAL mode survives a kill -9 of the process, not a power cut;
  `durable=True` asks for `FULL`.
- The newest `resend_window` sent messages are kept (older rows are pruned as new ones
  come) and loaded back into memory on open, so a resend never reads the disk.
- A file that is not ours (another application's database, a corrupt or truncated file,
  a newer schema) is refused with `ConfigurationError` naming the file and never
  written to.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from pathlib import Path

from engine.errors import ConfigurationError
from engine.venues.fix.codec import FieldValue, field_text
from engine.sqlite_file import open_database
from engine.venues.fix.store import SessionStore

#: PRAGMA application_id of an execdesk FIX store ("EXFX").
APPLICATION_ID = 0x45584658
SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS fix_session (
    key TEXT PRIMARY KEY,
    next_outgoing INTEGER NOT NULL,
    next_incoming INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS fix_sent (
    key TEXT NOT NULL,
    seq INTEGER NOT NULL,
    msg_type TEXT NOT NULL,
    sending_time TEXT NOT NULL,
    body TEXT NOT NULL,
    PRIMARY KEY (key, seq)
) WITHOUT ROWID;
"""


def open_session_database(path: Path | str, *, durable: bool = False) -> sqlite3.Connection:
    """One connection to a session store file, to share between the stores of many
    counterparties (`SqliteSessionStore(..., db=...)`): one file descriptor for all."""
    return open_database(Path(path), application_id=APPLICATION_ID, schema=_SCHEMA, version=SCHEMA_VERSION,
                         what="FIX session store", durable=durable)


class SqliteSessionStore(SessionStore):
    """`db`: a connection from `open_session_database` to share (closed by its owner, not
    by the store); without it the store opens its own."""

    def __init__(self, path: Path | str, key: str, *, resend_window: int = 10_000, durable: bool = False,
                 db: sqlite3.Connection | None = None) -> None:
        super().__init__(resend_window=resend_window)
        self.path = Path(path)
        self.key = key
        self._owns_db = db is None
        self._db = db if db is not None else open_session_database(self.path, durable=durable)
        self._rows: list[tuple[str, int, str, str, str]] = []
        self._saved: tuple[int, int] | None = None
        try:
            row = self._db.execute("SELECT next_outgoing, next_incoming FROM fix_session WHERE key=?", (key,)).fetchone()
            if row is not None:
                self.next_outgoing, self.next_incoming = int(row[0]), int(row[1])
                self._saved = (self.next_outgoing, self.next_incoming)
            rows = self._db.execute(
                "SELECT seq, msg_type, sending_time, body FROM fix_sent WHERE key=? ORDER BY seq DESC LIMIT ?",
                (key, resend_window),
            ).fetchall()
            for seq, msg_type, sending_time, body in reversed(rows):
                super().save_sent(int(seq), str(msg_type), str(sending_time), _fields(body))
        except (sqlite3.DatabaseError, ValueError, TypeError, AttributeError) as exc:
            if self._owns_db:
                self._db.close()
            raise ConfigurationError(
                f"the FIX session store {str(self.path)!r} is corrupt ({exc}); it was left untouched"
            ) from None

    def save_sent(self, seq: int, msg_type: str, sending_time: str, fields: Iterable[tuple[int, FieldValue]]) -> None:
        fields = tuple(fields)
        super().save_sent(seq, msg_type, sending_time, fields)
        body = "\x01".join(f"{tag}={field_text(tag, value)}" for tag, value in fields)
        self._rows.append((self.key, seq, str(msg_type), sending_time, body))

    def reset(self) -> None:
        super().reset()
        self._rows.clear()
        self._db.execute("DELETE FROM fix_sent WHERE key=?", (self.key,))
        self.commit()

    def commit(self) -> None:
        numbers = (self.next_outgoing, self.next_incoming)
        if not self._rows and numbers == self._saved:
            return
        db = self._db
        db.execute("BEGIN")
        try:
            if self._rows:
                db.executemany("INSERT OR REPLACE INTO fix_sent VALUES (?, ?, ?, ?, ?)", self._rows)
                db.execute("DELETE FROM fix_sent WHERE key=? AND seq<?", (self.key, self.next_outgoing - self.resend_window))
            db.execute("INSERT OR REPLACE INTO fix_session VALUES (?, ?, ?)", (self.key, *numbers))
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:  # a failed ROLLBACK must not hide why the commit failed
                try:
                    db.execute("ROLLBACK")
                except sqlite3.Error:
                    pass
            raise
        self._rows.clear()
        self._saved = numbers

    def close(self) -> None:
        try:
            self.commit()
        finally:
            if self._owns_db:
                self._db.close()


def _fields(body: str) -> list[tuple[int, FieldValue]]:
    fields: list[tuple[int, FieldValue]] = []
    for part in body.split("\x01") if body else ():
        tag, sep, value = part.partition("=")
        if not (sep and tag.isascii() and tag.isdigit() and len(tag) <= 9 and value):
            raise ValueError(f"a stored message field {part[:40]!r} is not tag=value")
        fields.append((int(tag), value))
    return fields
