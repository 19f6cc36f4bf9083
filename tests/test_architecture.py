"""The shape of harness/: contracts checked by import-linter, no cycles, short chains,
task names and metric facts only inside the task packages."""

from __future__ import annotations

import functools
import re
import shutil
import subprocess
import sys
from pathlib import Path

import grimp
import pytest

ROOT = Path(__file__).resolve().parents[1]
MAX_CHAIN = 10  # modules along the longest chain of imports inside harness/


@functools.cache
def _graph() -> grimp.ImportGraph:
    return grimp.build_graph("harness", exclude_type_checking_imports=True)


def _imports(graph: grimp.ImportGraph) -> dict[str, set[str]]:
    return {m: graph.find_modules_directly_imported_by(m) for m in graph.modules}


def longest_chain(edges: dict[str, set[str]]) -> list[str]:
    """The longest path of imports; raises ValueError naming a cycle if there is one."""
    best: dict[str, list[str]] = {}
    visiting: list[str] = []

    def walk(module: str) -> list[str]:
        if module in best:
            return best[module]
        if module in visiting:
            cycle = [*visiting[visiting.index(module) :], module]
            raise ValueError("import cycle: " + " -> ".join(cycle))
        visiting.append(module)
        tails = [walk(m) for m in edges.get(module, ())]
        visiting.pop()
        best[module] = [module, *max(tails, key=len, default=[])]
        return best[module]

    return max((walk(m) for m in sorted(edges)), key=len)


def test_longest_chain_is_short_and_acyclic() -> None:
    chain = longest_chain(_imports(_graph()))
    print(f"longest chain of imports in harness/: {len(chain)} modules: " + " -> ".join(chain))
    assert len(chain) <= MAX_CHAIN, " -> ".join(chain)


def test_a_cycle_is_found() -> None:
    """The checker itself: a planted cycle is reported, not measured."""
    with pytest.raises(ValueError, match="a -> b -> a"):
        longest_chain({"a": {"b"}, "b": {"a"}})
    assert longest_chain({"a": {"b"}, "b": {"c"}, "c": set()}) == ["a", "b", "c"]


@pytest.mark.skipif(shutil.which("lint-imports") is None, reason="import-linter not installed")
def test_import_contracts_are_kept() -> None:
    done = subprocess.run(
        ["lint-imports", "--no-cache"], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stdout[-3000:]
    assert "BROKEN" not in done.stdout


def test_no_task_name_outside_the_task_packages() -> None:
    """Only a task's own package (and table names, which may coincide) spell its name."""
    from harness.core.task import tasks
    from harness.tables.paper import TABLES

    names = "|".join(re.escape(t) for t in tasks() if t not in TABLES)
    table_and_task = [t for t in tasks() if t in TABLES]
    found = []
    for path in sorted((ROOT / "harness").rglob("*.py")):
        if "tasks" in path.relative_to(ROOT / "harness").parts:
            continue
        text = path.read_text()
        found += [f"{path.name}: {m[0]}" for m in re.finditer(rf"[\"']({names})[\"']", text)]
        for name in table_and_task:  # the adversarial table: its name, never its task
            found += [
                f"{path.name}: task {name}"
                for _ in re.finditer(rf"task\s*(==|=)\s*[\"']{name}[\"']", text)
            ]
    assert not found


def test_no_metric_fact_outside_the_tasks() -> None:
    """Directions, formats and log lists of metrics live in the task packages and core."""
    forbidden = re.compile(r"_HIGHER|_LOWER|_LOGGED|_CONVENTION_COLUMNS|\"\{:\.\d[fe]\}\"")
    for layer in ("render", "stats", "run", "tables"):
        for path in (ROOT / "harness" / layer).rglob("*.py"):
            hits = forbidden.findall(path.read_text())
            assert not hits, f"{path}: {hits}"


def test_harness_imports_cheaply_without_a_task() -> None:
    """`import harness` loads no task, no torch-heavy engine: a plugin is loaded on use."""
    code = "import sys, harness; print(sorted(m for m in sys.modules if m.startswith('harness.tasks')))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


def test_no_function_is_over_50_lines() -> None:
    """A function that long does several things; split it (docs/ARCHITECTURE.md)."""
    import ast

    long = set()
    for path in (ROOT / "harness").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            function = isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
            if function and node.end_lineno - node.lineno + 1 > 50:
                long.add(f"{path.relative_to(ROOT / 'harness').as_posix()}:{node.name}")
    print(f"functions over 50 lines: {len(long)}: {sorted(long)}")
    assert not long, f"functions over 50 lines: {sorted(long)}"
