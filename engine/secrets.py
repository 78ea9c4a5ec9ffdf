"""Venue credentials (FIX passwords now, exchange keys next): where they come from and how
they are held so that they never reach a log, a file, an event or the screen.

Rules:

- A secret comes from an environment variable or from a file. A file must be a regular
  file that only its owner may read or write (mode 0600 or stricter): a file that group
  or others can open is refused, naming the file, its mode and the fix (`chmod 600
  FILE`), and never read. A missing or empty file, an unset or empty variable, is refused
  naming it. A file holds the secret on its first line; one trailing newline is dropped,
  nothing else (a secret may start or end with a space).
- A secret is held in a `Secret`: its `repr` and `str` are `Secret('***')` and `***`,
  whatever it holds, so a secret formatted into a log line, an error, an event or a
  dataclass's repr shows nothing. `reveal()` gives the value; it is called only where the
  value goes on the wire (the FIX Logon). `matches()` compares in constant time.
- A `Secret` cannot be pickled or copied into another process by accident (`pickle`
  refuses it), and two are never equal by `==` (compare with `matches`).
- Errors name the variable or the file, never the value (not even a part of it).
"""

from __future__ import annotations

import hmac
import os
import stat
from collections.abc import Mapping
from pathlib import Path

from .errors import ConfigurationError

__all__ = ["Secret", "SecretError", "secret_from_env", "secret_from_file"]

#: The longest secret file read: a password or a key is short; a file longer than this is
#: not one (a wrong path), and is refused rather than read whole.
MAX_SECRET_BYTES = 4096
MASK = "***"


class SecretError(ConfigurationError):
    """A secret that cannot be loaded (its text never holds the secret)."""


class Secret:
    """A value that must not be shown: `reveal()` only where it is used."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        if not isinstance(value, str):
            raise TypeError(f"a Secret holds a str, got {type(value).__name__}")
        if not value:
            raise SecretError("a secret may not be empty")
        self._value = value

    def reveal(self) -> str:
        """The value: for the wire only, never for a log, an error or the screen."""
        return self._value

    def matches(self, candidate: str | bytes | None) -> bool:
        """Whether `candidate` is this secret, in time that does not depend on where they differ."""
        if candidate is None:
            return False
        given = candidate.encode("utf-8", "surrogateescape") if isinstance(candidate, str) else bytes(candidate)
        return hmac.compare_digest(given, self._value.encode("utf-8", "surrogateescape"))

    def __repr__(self) -> str:
        return f"Secret('{MASK}')"

    def __str__(self) -> str:
        return MASK

    def __format__(self, spec: str) -> str:
        return format(MASK, spec)

    def __eq__(self, other: object) -> bool:
        return other is self

    __hash__ = object.__hash__

    def __reduce__(self) -> None:  # type: ignore[override]
        raise TypeError("a Secret cannot be pickled: it would leave the process in the clear")

    def __copy__(self) -> Secret:
        return self

    def __deepcopy__(self, memo: dict[int, object]) -> Secret:
        return self


def secret_from_env(variable: str, environ: Mapping[str, str] | None = None) -> Secret:
    """The secret in environment variable `variable`; refused when unset or empty."""
    env = os.environ if environ is None else environ
    value = env.get(variable)
    if value is None:
        raise SecretError(f"environment variable {variable} is not set")
    if not value:
        raise SecretError(f"environment variable {variable} is empty")
    return Secret(value)


def secret_from_file(path: str | Path) -> Secret:
    """The secret on the first line of `path`, a file only its owner may open."""
    path = Path(path).expanduser()
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOCTTY", 0) | getattr(os, "O_NONBLOCK", 0))
    except FileNotFoundError:
        raise SecretError(f"secret file {str(path)!r} does not exist") from None
    except OSError as exc:
        raise SecretError(f"secret file {str(path)!r} cannot be opened: {exc.strerror}") from None
    try:
        info = os.fstat(fd)  # of what was opened: a swap after a check cannot slip past it
        if not stat.S_ISREG(info.st_mode):
            raise SecretError(f"secret file {str(path)!r} is not a regular file")
        mode = stat.S_IMODE(info.st_mode)
        if os.name == "posix" and mode & 0o077:
            raise SecretError(
                f"secret file {str(path)!r} is open to group or others (mode {mode:04o}): "
                f"run `chmod 600 {path}` so only its owner can read it"
            )
        if info.st_size > MAX_SECRET_BYTES:
            raise SecretError(f"secret file {str(path)!r} is {info.st_size} bytes, more than a secret "
                              f"({MAX_SECRET_BYTES} at most): is it the right file?")
        data = os.read(fd, MAX_SECRET_BYTES + 1)
    finally:
        os.close(fd)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise SecretError(f"secret file {str(path)!r} is not UTF-8 text") from None
    line, newline, rest = text.partition("\n")
    if newline and rest.strip("\r\n"):
        raise SecretError(f"secret file {str(path)!r} has more than one line: put the secret alone on the first")
    line = line.removesuffix("\r")
    if not line:
        raise SecretError(f"secret file {str(path)!r} is empty")
    return Secret(line)
