"""The project's own rules, enforced as tests: lint, format, layer order, no import circles, types."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import grimp
import pytest

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
PACKAGES = ("tasks", "flows", "data_contracts", "tuneline", "deployments")

# Import edges (importer, imported) allowed to close a circle: none. An edge listed here that no
# longer closes a circle fails the test until it is taken out.
ALLOWED_CYCLE_EDGES: set[tuple[str, str]] = set()


def _executable(tool: str) -> str | None:
    exe = BIN / tool if (BIN / tool).exists() else shutil.which(tool)
    return None if exe is None else str(exe)


def run(tool: str, *args: str) -> subprocess.CompletedProcess[str]:
    exe = _executable(tool)
    if exe is None:
        pytest.fail(f"{tool} is not installed; install the dev extra (pip install -e '.[dev]')")
    return subprocess.run([exe, *args], cwd=REPO, capture_output=True, text=True, timeout=300)


def test_ruff_lint() -> None:
    proc = run("ruff", "check", ".")
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_ruff_format() -> None:
    proc = run("ruff", "format", "--check", ".")
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_layers_import_one_way() -> None:
    proc = run("lint-imports")
    assert proc.returncode == 0, proc.stdout + proc.stderr


# mypy takes a minute of one core over every package and the libraries they use: the session
# starts it once it has collected this test (conftest's pytest_collection_finish), beside the
# tests that spend their time waiting on servers, and the test reads its result.
_early: list[tuple[subprocess.Popen[bytes], Any]] = []


def start_mypy() -> None:
    exe = _executable("mypy")
    if exe is None or _early:
        return  # the test says what is missing
    output = tempfile.TemporaryFile()  # noqa: SIM115 - read and closed by the test
    _early.append(
        (subprocess.Popen([exe], cwd=REPO, stdout=output, stderr=subprocess.STDOUT), output)
    )


def test_mypy_on_every_package() -> None:
    if not _early:
        proc = run("mypy")
        assert proc.returncode == 0, proc.stdout + proc.stderr
        return
    process, output = _early.pop()
    with output:
        code = process.wait(timeout=600)
        output.seek(0)
        assert code == 0, output.read().decode(errors="replace")


def stop_mypy() -> None:
    """The session ended before the test read it (stopped early, deselected on the way)."""
    while _early:
        process, output = _early.pop()
        process.kill()
        process.wait()
        output.close()


def _components(edges: dict[str, set[str]]) -> list[set[str]]:
    """The strongly connected components with more than one module (Tarjan, iteratively)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[set[str]] = []
    for root in sorted(edges):
        if root in index:
            continue
        work = [(root, iter(sorted(edges[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(edges[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = set()
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.add(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(component)
    return found


def _path(edges: dict[str, set[str]], start: str, goal: str, within: set[str]) -> list[str]:
    """A shortest import chain start -> ... -> goal through modules of `within` (breadth first)."""
    previous: dict[str, str] = {}
    frontier = [start]
    seen = {start}
    while frontier:
        following = []
        for node in frontier:
            for child in sorted(edges[node] & within):
                if child in seen:
                    continue
                previous[child] = node
                if child == goal:
                    chain = [goal]
                    while chain[-1] != start:
                        chain.append(previous[chain[-1]])
                    return chain[::-1]
                seen.add(child)
                following.append(child)
        frontier = following
    raise AssertionError(f"no chain {start} -> {goal}")  # a component always has one


def _edges(graph: grimp.ImportGraph) -> dict[str, set[str]]:
    """Each module's direct imports among the graph's own modules (external packages left out)."""
    return {m: graph.find_modules_directly_imported_by(m) & graph.modules for m in graph.modules}


def import_cycles(
    graph: grimp.ImportGraph, allowed: Iterable[tuple[str, str]] = ()
) -> list[list[str]]:
    """Every import circle among the graph's modules, as module chains `a, b, ..., a`: one chain
    per import edge that lies on a circle (an edge already named by an earlier chain is not named
    again), ignoring the `allowed` edges."""
    edges = _edges(graph)
    for importer, imported in allowed:
        edges.get(importer, set()).discard(imported)
    cycles: list[list[str]] = []
    for component in _components(edges):
        named: set[tuple[str, str]] = set()
        for importer in sorted(component):
            for imported in sorted(edges[importer] & component):
                if (importer, imported) not in named:
                    chain = [importer, *_path(edges, imported, importer, component)]
                    named.update(zip(chain, chain[1:], strict=False))
                    cycles.append(chain)
    return cycles


def test_cycle_finder_sees_imports_inside_functions(tmp_path: Path) -> None:
    package = tmp_path / "circle_demo"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "low.py").write_text("def f():\n    from circle_demo import high\n")
    (package / "high.py").write_text("from circle_demo import low\n")
    (package / "apart.py").write_text("from circle_demo import low\n")
    sys.path.insert(0, str(tmp_path))
    try:
        graph = grimp.build_graph("circle_demo", cache_dir=None)
    finally:
        sys.path.remove(str(tmp_path))
    circle = ["circle_demo.high", "circle_demo.low", "circle_demo.high"]
    assert import_cycles(graph) == [circle]
    assert import_cycles(graph, {("circle_demo.low", "circle_demo.high")}) == []


def test_no_import_circles() -> None:
    """No module reaches itself through imports, counting imports inside functions (grimp reads
    every import statement): a circle hidden in a function is still a circle."""
    graph = grimp.build_graph(*PACKAGES, cache_dir=None)
    cycles = import_cycles(graph, ALLOWED_CYCLE_EDGES)
    assert not cycles, "import circles:\n" + "\n".join(" -> ".join(c) for c in cycles)
    edges = _edges(graph)
    components = _components(edges)
    stale = {
        (importer, imported)
        for importer, imported in ALLOWED_CYCLE_EDGES
        if imported not in edges.get(importer, set())
        or not any({importer, imported} <= c for c in components)
    }
    assert not stale, f"ALLOWED_CYCLE_EDGES no longer close a circle; remove {sorted(stale)}"
