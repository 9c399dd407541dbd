"""Ledger reasons: every one the code names is registered, documented, and nothing else is accepted."""

from __future__ import annotations

import ast
import re

import pytest

from shards.schema import LEDGER_REASONS
from stages.item import Reject
from tests.conftest import REPO


def reasons_in_code() -> dict[str, set[str]]:
    """Literal reasons passed to ``Reject(...)``/``seg.reject(...)`` or ``reason=`` in stages/ and pipeline/,
    plus literals a stage's decision function returns as its reason (asd, dnsmos: checked at runtime too)."""
    found: dict[str, set[str]] = {}
    for path in sorted((REPO / "stages").glob("*.py")) + sorted((REPO / "pipeline").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.Call):
                continue
            name = getattr(node.func, "attr", getattr(node.func, "id", ""))
            args = [kw.value for kw in node.keywords if kw.arg == "reason"]
            if name in ("Reject", "reject") and len(node.args) >= 2:
                args.append(node.args[1])
            for a in args:
                if isinstance(a, ast.Constant) and isinstance(a.value, str):
                    found.setdefault(a.value, set()).add(path.name)
    return found


def test_every_literal_reason_in_the_code_is_registered() -> None:
    found = reasons_in_code()
    assert len(found) >= 30  # the walk finds the stages' reasons (it would find none if it broke)
    assert set(found) <= set(LEDGER_REASONS), set(found) - set(LEDGER_REASONS)


def test_the_registered_reasons_are_the_documented_ones() -> None:
    doc = (REPO / "docs" / "shards.md").read_text(encoding="utf-8")
    section = doc.split("## Rejects ledger columns", 1)[1].split("\n## ", 1)[0]
    documented = re.findall(r"^\| `([a-z_0-9]+)` \|", section, flags=re.M)
    assert sorted(documented) == sorted(LEDGER_REASONS)


@pytest.mark.parametrize("reason", ["low_dnsmos_p808", "asd-low", ""])
def test_an_unregistered_reason_is_refused(reason: str) -> None:
    with pytest.raises(ValueError, match="LEDGER_REASONS"):
        Reject(stage="x", reason=reason)
