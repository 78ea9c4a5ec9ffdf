"""The benchmark's yard stick: a frozen copy of `engine.Order` as it was at commit 0157938.

It must stay what it was there, whatever the product's `Order` becomes: the same fields,
constraints and checks, and nothing imported from the product that could move it.
"""

from __future__ import annotations

import ast
import inspect
import re
import subprocess
from pathlib import Path

import pytest
from pydantic import ValidationError

from tui.bench import reference
from tui.bench.reference import ReferenceOrder

ROOT = Path(__file__).parent.parent
COMMIT = "0157938"
# What Order's validation used at that commit, by name: each must read as it did there.
DEFINITIONS = ("_NamedEnum", "OrderSide", "OrderType", "TimeInForce", "_finite_positive", "_positive_int", "_flag",
               "_check_window", "_check_metadata", "_check_profile", "_field_error")
CONSTANTS = ("_ALGORITHM_TYPES", "ID_PATTERN", "ID_RULE", "URGENCIES", "VWAP_PROFILES", "METADATA_KEYS",
             "_PositiveFinite")


def models_at_commit() -> str:
    try:
        proc = subprocess.run(["git", "show", f"{COMMIT}:engine/models.py"], cwd=ROOT,
                              capture_output=True, text=True, timeout=30, check=True)
    except (OSError, subprocess.SubprocessError) as exc:
        pytest.skip(f"the checkout has no commit {COMMIT} to compare with ({exc})")
    return proc.stdout


def definition(source: str, name: str) -> str:
    """The source of the top-level function or class `name` in `source`."""
    tree = ast.parse(source)
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)) and node.name == name:
            return ast.get_source_segment(source, node) or ""
    raise AssertionError(f"{name} is not defined at the top of the module")


def fields_and_validator(class_source: str) -> tuple[list[str], str]:
    """A model class's field lines and its validator's body, without the docstring."""
    fields = [line.strip() for line in class_source.splitlines() if re.match(r"    \w+: ", line)]
    validator = class_source[class_source.index("    @model_validator"):]
    return fields, validator.replace("-> ReferenceOrder:", "-> Order:")


def test_the_reference_has_the_fields_and_checks_of_the_order_at_that_commit() -> None:
    then = models_at_commit()
    ours = Path(reference.__file__).read_text(encoding="utf-8")
    assert fields_and_validator(definition(ours, "ReferenceOrder")) == fields_and_validator(definition(then, "Order"))
    for name in DEFINITIONS:
        assert definition(ours, name) == definition(then, name), name
    for name in CONSTANTS:
        assert assignment(ours, name) == assignment(then, name), name


def assignment(source: str, name: str) -> str:
    """The source of the top-level assignment to `name` in `source`."""
    for node in ast.parse(source).body:
        if isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            if any(getattr(t, "id", None) == name for t in targets):
                return ast.get_source_segment(source, node) or ""
    raise AssertionError(f"{name} is not assigned at the top of the module")


def test_the_reference_imports_nothing_from_the_product() -> None:
    tree = ast.parse(inspect.getsource(reference))
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"relative import from {node.module!r}: the yard stick must stand alone"
            imported.add(node.module.split(".")[0] if node.module else "")
        elif isinstance(node, ast.Import):
            imported.update(alias.name.split(".")[0] for alias in node.names)
    assert imported <= {"__future__", "collections", "enum", "math", "re", "time", "typing", "pydantic"}, imported


def test_the_reference_validates_as_the_order_did_then() -> None:
    order = reference.reference_order(3)
    assert (order.id, order.side.value, order.type.value, order.quantity) == ("ref-3", "SELL", "MARKET", 0.001)
    assert order.client_order_id == "ref-3"  # derived in the validator, as it was
    # At 0157938 numbers were converted (the product refuses these since) and sizes had no upper bound.
    assert ReferenceOrder(id="a", symbol="BTC/USD", side="buy", type="market", quantity="5").quantity == 5.0
    twap = ReferenceOrder(id="t", symbol="BTC/USD", side="BUY", type="TWAP", quantity=1.0,
                          metadata={"duration_s": 1e9, "slices": 100_000})
    assert twap.metadata["slices"] == 100_000
    with pytest.raises(ValidationError, match="price is required for LIMIT orders"):
        ReferenceOrder(id="l", symbol="BTC/USD", side="BUY", type="LIMIT", quantity=1.0)


def test_the_build_time_is_the_best_of_its_rounds() -> None:
    built: list[int] = []
    assert reference.best_build_us(built.append, rounds=3, per_round=10) > 0
    assert built == list(range(10)) * 3
    with pytest.raises(ValueError, match="rounds and per_round must be >= 1, got 0 and 10"):
        reference.best_build_us(built.append, rounds=0, per_round=10)
