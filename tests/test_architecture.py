"""The architecture holds (docs/architecture.md): imports only go down, no module cycles, each fact defined once.

These tests read the source, so an upward import, a cycle or a second copy of a rate or a layout fails CI.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import grimp
import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("core", "shards", "blendshape_fit", "model", "stages", "training", "pipeline", "launchers",
            "inference", "dashboards")


def test_import_contracts_are_kept():
    lint = Path(sys.executable).with_name("lint-imports")
    res = subprocess.run([str(lint), "--no-cache"], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stdout[-4000:] + res.stderr[-2000:]
    assert "0 broken" in res.stdout


def find_cycles(graph: grimp.ImportGraph) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles = []
    counter = 0
    for root in sorted(graph.modules):
        if root in index:
            continue
        work = [(root, iter(sorted(graph.find_modules_directly_imported_by(root))))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.find_modules_directly_imported_by(child)))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                comp = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    comp.append(member)
                    if member == node:
                        break
                if len(comp) > 1:
                    cycles.append(sorted(comp))
    return cycles


def test_find_cycles_sees_a_cycle():
    graph = grimp.ImportGraph()
    for a, b in (("p.a", "p.b"), ("p.b", "p.c"), ("p.c", "p.a"), ("p.c", "p.d")):
        graph.add_import(importer=a, imported=b)
    assert find_cycles(graph) == [["p.a", "p.b", "p.c"]]


def test_no_import_cycles():
    """No two project modules import each other, directly or around a loop (function-level imports count)."""
    graph = grimp.build_graph(*PACKAGES, cache_dir=None)
    assert find_cycles(graph) == []


# Literal values no module but their owner may assign at module level (the owner may derive them instead).
FACT_VALUES = {
    24000: "shards/spec.py",  # the clip sample rate
    93.75: "shards/spec.py",  # the frame rate (24000 / 256 counts too)
}
# Names of facts: only their owner assigns them at module level; everyone else imports them.
FACT_NAMES = {
    **{name: "shards/spec.py" for name in ("AUDIO_SR", "HOP", "MEL_HOP", "N_FFT", "N_MELS", "MEL_DIM", "FRAME_RATE",
                                           "FRAME_RATE_HZ", "MEL_RATE_HZ", "MEL_SPEC")},
    **{name: "shards/codes.py" for name in ("CODE_DIM", "VISUAL_DIM", "CODE_LAYOUT", "CODE_NAMES", "EXPRESSION_SLICE",
                                            "BLENDSHAPE_SLICE", "POSE_SLICE", "EYE_SLICE", "ROTATION_SLICE")},
}


def module_level_assignments(path: Path) -> tuple[set[str], set[object]]:
    """Names assigned at module level, and the numeric literals (and constant quotients) in their values."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names: set[str] = set()
    values: set[object] = set()
    for node in tree.body:
        if isinstance(node, ast.Assign):
            targets, value = node.targets, node.value
        elif isinstance(node, ast.AnnAssign) and node.value is not None:
            targets, value = [node.target], node.value
        else:
            continue
        for target in targets:
            for sub in ast.walk(target):
                if isinstance(sub, ast.Name):
                    names.add(sub.id)
        for sub in ast.walk(value):
            if isinstance(sub, ast.Constant) and isinstance(sub.value, (int, float)) and not isinstance(sub.value, bool):
                values.add(sub.value)
            if isinstance(sub, ast.BinOp) and isinstance(sub.left, ast.Constant) and isinstance(sub.right, ast.Constant):
                try:
                    values.add(eval(compile(ast.Expression(sub), str(path), "eval")))  # e.g. 24000 / 256
                except Exception:
                    pass
    return names, values


def project_files() -> list[Path]:
    return [p for pkg in PACKAGES for p in sorted((REPO / pkg).rglob("*.py"))]


@pytest.mark.parametrize("value", sorted(FACT_VALUES, key=str))
def test_each_fact_value_is_written_once(value):
    owners = sorted(str(p.relative_to(REPO)) for p in project_files() if value in module_level_assignments(p)[1])
    assert set(owners) <= {FACT_VALUES[value]}, f"{value} is assigned in {owners}; import it from {FACT_VALUES[value]}"


def test_each_fact_name_is_defined_once():
    wrong = []
    for p in project_files():
        rel = str(p.relative_to(REPO))
        wrong += [f"{rel} defines {name} (owner: {FACT_NAMES[name]})"
                  for name in module_level_assignments(p)[0] if name in FACT_NAMES and FACT_NAMES[name] != rel]
    assert wrong == []
