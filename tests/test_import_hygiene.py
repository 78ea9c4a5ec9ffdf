"""The engine stays importable without Textual (DESIGN.md, Layout; harlequin's guard).

`import engine` and every module under engine/ (found by globbing, so new
modules are covered without editing this file) are imported in a fresh
interpreter, one at a time; after each, no `textual` (nor our `tui`) module
may be loaded. A fresh process is the only honest check: in the test run
itself the TUI tests have long since imported Textual.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ENGINE = ROOT / "engine"
FORBIDDEN = ("textual", "tui")

_PROBE = """
import importlib, json, sys
forbidden = tuple(json.loads(sys.argv[2]))
for name in json.loads(sys.argv[1]):
    importlib.import_module(name)
    loaded = sorted(m for m in sys.modules if m.split(".")[0] in forbidden)
    if loaded:
        print(json.dumps({"module": name, "loaded": loaded[:5]}))
        break
else:
    print(json.dumps(None))
"""


def engine_modules() -> list[str]:
    names = []
    for path in sorted(ENGINE.rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        if parts[-1] == "__main__":
            continue  # importing it would run it
        if parts[-1] == "__init__":
            parts = parts[:-1]
        names.append(".".join(parts))
    return names


def first_offender(modules: list[str]) -> dict | None:
    """Import `modules` in order in a fresh interpreter; the first that loads a forbidden package."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run(
        [sys.executable, "-c", _PROBE, json.dumps(modules), json.dumps(FORBIDDEN)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, f"importing the engine failed:\n{proc.stderr}"
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_engine_modules_are_found() -> None:
    modules = engine_modules()
    assert modules[0] == "engine"
    assert {"engine.models", "engine.clock"} <= set(modules)


def test_engine_imports_without_textual() -> None:
    offender = first_offender(engine_modules())
    assert offender is None, (
        f"importing {offender['module']} loaded {offender['loaded']}: "
        "the engine must not depend on Textual or the TUI"
    )


def test_the_engine_and_the_desk_load_no_ccxt() -> None:
    # ccxt is an optional extra (execdesk[ccxt]): only opening a ccxt: venue may load it
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    probe = ("import sys, engine, engine.venue_spec, tui.cli; "
             "print(sorted(m for m in sys.modules if m.split('.')[0] == 'ccxt')[:3])")
    proc = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"
    would = subprocess.run([sys.executable, "-c", probe.replace("tui.cli", "tui.cli, engine.venues.ccxtio")],
                           cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert "'ccxt'" in would.stdout  # the probe notices ccxt when it is loaded


def test_the_probe_would_notice_textual() -> None:
    # the check above can fail: a module that does pull Textual in is named
    offender = first_offender(["engine", "textual.app"])
    assert offender is not None
    assert offender["module"] == "textual.app"
    assert "textual" in offender["loaded"]


# -- the layering contracts (pyproject.toml, [tool.importlinter]) ---------------------------

_LINT = """
import sys
from importlinter.cli import lint_imports
sys.exit(lint_imports(config_filename=sys.argv[1], no_cache=True, no_logo=True))
"""


def lint(config: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run([sys.executable, "-c", _LINT, str(config)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)


def test_the_layering_contracts_are_kept() -> None:
    proc = lint(ROOT / "pyproject.toml")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert "6 kept, 0 broken" in proc.stdout


def test_the_contracts_would_notice_a_broken_layer(tmp_path: Path) -> None:
    # Routing importing the scheduler is exactly what a contract forbids: a config that
    # demands the reverse (scheduling imports no routing, which it does) must fail.
    config = tmp_path / "contracts.toml"
    config.write_text(
        '[tool.importlinter]\nroot_packages = ["engine"]\n\n'
        '[[tool.importlinter.contracts]]\nname = "probe"\ntype = "forbidden"\n'
        'source_modules = ["engine.engine"]\nforbidden_modules = ["engine.routing"]\n'
    )
    proc = lint(config)
    assert proc.returncode != 0 and "BROKEN" in proc.stdout


def test_no_string_imports_get_round_the_contracts() -> None:
    """importlib / __import__ in the engine would hide an import from the contracts."""
    offenders = []
    for path in sorted(ENGINE.rglob("*.py")):
        text = path.read_text()
        for needle in ("importlib", "__import__(", "import_module("):
            if needle in text:
                offenders.append(f"{path.relative_to(ROOT)}: {needle}")
    assert offenders == []
