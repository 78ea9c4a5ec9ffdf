"""engine.secrets: a secret from the environment or an owner-only file, held so that it
never shows (repr, str, format, pickle), refused with errors that name where it was
looked for and never what it is."""

from __future__ import annotations

import copy
import logging
import os
import pickle
from dataclasses import dataclass
from pathlib import Path

import pytest

from engine.errors import ConfigurationError
from engine.secrets import Secret, SecretError, secret_from_env, secret_from_file

PLANTED = "s3cr3t-Kx9-planted"


def write(path: Path, text: str, mode: int = 0o600) -> Path:
    path.write_text(text)
    path.chmod(mode)
    return path


def test_a_secret_never_shows_in_repr_str_format_or_a_dataclass() -> None:
    secret = Secret(PLANTED)

    @dataclass
    class Config:
        password: Secret

    shown = [repr(secret), str(secret), f"{secret}", f"{secret!r}", f"{secret:>20}", "%s" % secret,
             repr(Config(secret)), repr([secret]), repr({"password": secret})]
    assert repr(secret) == "Secret('***')" and str(secret) == "***"
    assert not any(PLANTED in text for text in shown)
    assert secret.reveal() == PLANTED


def test_a_secret_in_a_log_line_shows_stars(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG):
        logging.getLogger("test.secrets").debug("password %s / %r", Secret(PLANTED), Secret(PLANTED))
    assert "password *** / Secret('***')" in caplog.text and PLANTED not in caplog.text


def test_a_secret_refuses_pickle_and_compares_only_by_matches() -> None:
    secret = Secret(PLANTED)
    with pytest.raises(TypeError, match="cannot be pickled"):
        pickle.dumps(secret)
    assert copy.deepcopy(secret) is secret
    assert secret != Secret(PLANTED)  # `==` would invite comparing in variable time
    assert secret.matches(PLANTED) and secret.matches(PLANTED.encode())
    assert not secret.matches(PLANTED + "x") and not secret.matches("") and not secret.matches(None)


def test_an_empty_secret_is_refused() -> None:
    with pytest.raises(SecretError, match="may not be empty"):
        Secret("")


def test_from_env() -> None:
    assert secret_from_env("PW", {"PW": PLANTED}).reveal() == PLANTED
    with pytest.raises(SecretError, match="^environment variable PW is not set$"):
        secret_from_env("PW", {})
    with pytest.raises(SecretError, match="^environment variable PW is empty$"):
        secret_from_env("PW", {"PW": ""})


def test_from_file_reads_the_first_line_without_its_newline(tmp_path: Path) -> None:
    assert secret_from_file(write(tmp_path / "pw", PLANTED + "\n")).reveal() == PLANTED
    assert secret_from_file(write(tmp_path / "crlf", PLANTED + "\r\n")).reveal() == PLANTED
    assert secret_from_file(write(tmp_path / "bare", " spaced pw ")).reveal() == " spaced pw "
    assert secret_from_file(write(tmp_path / "ro", PLANTED, 0o400)).reveal() == PLANTED


@pytest.mark.skipif(os.name != "posix", reason="file modes are POSIX")
@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o660, 0o606, 0o620])
def test_a_file_group_or_others_can_open_is_refused_naming_it_its_mode_and_the_fix(tmp_path: Path, mode: int) -> None:
    path = write(tmp_path / "pw", PLANTED, mode)
    with pytest.raises(SecretError) as caught:
        secret_from_file(path)
    text = str(caught.value)
    assert text == (f"secret file {str(path)!r} is open to group or others (mode {mode:04o}): "
                    f"run `chmod 600 {path}` so only its owner can read it")
    assert PLANTED not in text


def test_a_missing_empty_or_odd_file_is_refused_clearly(tmp_path: Path) -> None:
    with pytest.raises(SecretError, match=r"secret file '.*nope' does not exist"):
        secret_from_file(tmp_path / "nope")
    for text in ("", "\n", "\r\n"):
        with pytest.raises(SecretError, match=r"secret file '.*empty' is empty"):
            secret_from_file(write(tmp_path / "empty", text))
    with pytest.raises(SecretError, match="has more than one line") as caught:
        secret_from_file(write(tmp_path / "two", f"{PLANTED}\nsecond-line\n"))
    assert PLANTED not in str(caught.value) and "second-line" not in str(caught.value)
    with pytest.raises(SecretError, match="is not a regular file"):
        secret_from_file(tmp_path)
    with pytest.raises(SecretError, match="more than a secret"):
        secret_from_file(write(tmp_path / "big", "x" * 5000))
    big = tmp_path / "latin"
    big.write_bytes(b"\xff\xfe" + PLANTED.encode())
    big.chmod(0o600)
    with pytest.raises(SecretError, match="is not UTF-8 text") as caught:
        secret_from_file(big)
    assert PLANTED not in str(caught.value)


def test_secret_errors_are_configuration_errors() -> None:
    assert issubclass(SecretError, ConfigurationError)
