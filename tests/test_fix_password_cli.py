"""Where FIX passwords come from on each side: `execdesk venue --password-env/--password-file`,
and the desk's `--venues fix://...` (env EXECDESK_FIX_PASSWORD_<VENUE> or ?password_file=);
every refusal names the variable or the file and exits 2, never showing the password."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from engine.errors import ConfigurationError
from engine.venue_spec import fix_password, open_venues, parse_venues, password_variable, redact
from tests.test_desk_fix import LISTENING

ROOT = Path(__file__).resolve().parents[1]
PASSWORD = "pw-cli-Q4v8-planted"


def secret_file(path: Path, text: str = PASSWORD, mode: int = 0o600) -> Path:
    path.write_text(text + "\n")
    path.chmod(mode)
    return path


def run(args: list[str], env: dict[str, str] | None = None, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "tui.cli", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})})


# -- the desk's venue line ------------------------------------------------------------------------


def test_the_password_variable_is_named_after_the_venue() -> None:
    assert password_variable("swift") == "EXECDESK_FIX_PASSWORD_SWIFT"
    assert password_variable("fix-9878") == "EXECDESK_FIX_PASSWORD_FIX_9878"
    assert password_variable("lse.main") == "EXECDESK_FIX_PASSWORD_LSE_MAIN"


def test_a_password_comes_from_the_env_or_the_named_file(tmp_path: Path) -> None:
    [swift] = parse_venues("fix://127.0.0.1:9878/swift")
    secret, source = fix_password(swift, {"EXECDESK_FIX_PASSWORD_SWIFT": PASSWORD})
    assert secret.reveal() == PASSWORD and source == "environment variable EXECDESK_FIX_PASSWORD_SWIFT"
    assert fix_password(swift, {}) is None
    path = secret_file(tmp_path / "swift.pw")
    [filed] = parse_venues(f"fix://127.0.0.1:9878/swift?password_file={path}")
    secret, source = fix_password(filed, {})
    assert secret.reveal() == PASSWORD and source == f"file {path}"


def test_bad_password_sources_are_refused_naming_the_venue_and_the_source(tmp_path: Path) -> None:
    open_file = secret_file(tmp_path / "open.pw", mode=0o644)
    [filed] = parse_venues(f"fix://127.0.0.1:9878/swift?password_file={open_file}")
    cases = [
        (filed, {}, f"FIX venue swift: secret file {str(open_file)!r} is open to group or others (mode 0644): "
                    f"run `chmod 600 {open_file}`"),
        (parse_venues(f"fix://127.0.0.1:9878/swift?password_file={tmp_path / 'none'}")[0], {},
         "FIX venue swift: secret file"),
        (parse_venues("fix://127.0.0.1:9878/swift")[0], {"EXECDESK_FIX_PASSWORD_SWIFT": ""},
         "FIX venue swift: environment variable EXECDESK_FIX_PASSWORD_SWIFT is empty"),
        (filed, {"EXECDESK_FIX_PASSWORD_SWIFT": PASSWORD},
         "FIX venue swift: a password both in EXECDESK_FIX_PASSWORD_SWIFT and in password_file="),
        (parse_venues("fix://127.0.0.1:9878/swift")[0], {"EXECDESK_FIX_PASSWORD_SWIFT": "caf\u00e9"},
         "FIX venue swift: a FIX password must be printable ASCII"),
    ]
    for address, env, says in cases:
        with pytest.raises(ConfigurationError) as caught:
            fix_password(address, env)
        assert str(caught.value).startswith(says), str(caught.value)
        assert PASSWORD not in str(caught.value)
    # open_venues loads every password before it connects anything: nothing listens on port 1.
    with pytest.raises(ConfigurationError, match="is open to group or others"):
        open_venues([filed], environ={})


def test_a_password_written_in_the_line_is_refused_without_being_echoed() -> None:
    for line in (f"fix://127.0.0.1:9878/swift?password={PASSWORD}",
                 f"fix://127.0.0.1:9878/swift?name=x&Password={PASSWORD}&colour=red"):
        with pytest.raises(ConfigurationError, match="never written in the venue line") as caught:
            parse_venues(line)
        assert PASSWORD not in str(caught.value)
        assert PASSWORD not in redact(line) and "password=***" in redact(line).lower()


def test_an_empty_password_file_option_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="password_file= needs a file"):
        parse_venues("fix://127.0.0.1:9878/swift?password_file=")


# -- the two processes ------------------------------------------------------------------------------


def test_execdesk_venue_refuses_a_bad_password_source_with_exit_2(tmp_path: Path) -> None:
    open_file = secret_file(tmp_path / "open.pw", mode=0o640)
    for args, env, says in [
        (["--password-file", str(open_file)], {},
         f"execdesk venue: --password-file: secret file {str(open_file)!r} is open to group or others (mode 0640): "
         f"run `chmod 600 {open_file}` so only its owner can read it"),
        (["--password-file", str(tmp_path / "missing")], {},
         f"execdesk venue: --password-file: secret file {str(tmp_path / 'missing')!r} does not exist"),
        (["--password-env", "VENUE_PW_TEST"], {"VENUE_PW_TEST": ""},
         "execdesk venue: --password-env: environment variable VENUE_PW_TEST is empty"),
        (["--password-env", "A", "--password-file", str(open_file)], {}, "not allowed with argument"),
    ]:
        done = run(["venue", "--port", "0", *args], env)
        assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
        assert says in done.stderr, done.stderr
        assert PASSWORD not in done.stderr + done.stdout


def test_the_desk_exits_2_saying_the_venue_refused_its_logon(tmp_path: Path) -> None:
    venue_pw = secret_file(tmp_path / "venue.pw")
    proc = subprocess.Popen(
        [sys.executable, "-m", "tui.cli", "venue", "--port", "0", "--venues", "swift", "--password-file",
         str(venue_pw), "--tick-interval", "3600", "--verbose"],
        cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True)
    try:
        assert proc.stdout is not None and proc.stderr is not None
        line = proc.stdout.readline()
        match = LISTENING.search(line)
        assert match and line.rstrip().endswith("CompID VENUE, password required"), line
        port = match.group(1)
        env = {"EXECDESK_CONFIG_DIR": str(tmp_path / "config"), "EXECDESK_FIX_PASSWORD_SWIFT": "not-the-password"}
        done = run(["--venues", f"fix://127.0.0.1:{port}/swift"], env)
        assert done.returncode == 2, done.stderr
        assert done.stderr == (f"execdesk: --venues fix://127.0.0.1:{port}/swift: venue swift refused our logon: "
                               "bad credentials (the password from environment variable "
                               "EXECDESK_FIX_PASSWORD_SWIFT)\n")
        # Without one: the same refusal, and how to give one.
        env.pop("EXECDESK_FIX_PASSWORD_SWIFT")
        done = run(["--venues", f"fix://127.0.0.1:{port}/swift"], env)
        assert done.returncode == 2
        assert done.stderr.endswith("venue swift refused our logon: bad credentials (no password given: "
                                    "set EXECDESK_FIX_PASSWORD_SWIFT or ?password_file=FILE)\n"), done.stderr
        log_file = tmp_path / "config" / "execdesk.log"
        assert "refused our logon: bad credentials" in log_file.read_text()
    finally:
        proc.terminate()
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0
    assert err.count("refused: bad credentials") == 2, err  # the venue logs each refusal once
    assert PASSWORD not in out + err and "not-the-password" not in out + err
