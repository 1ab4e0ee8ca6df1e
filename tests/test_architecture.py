"""The import rules of docs/architecture.md, checked on the source with ``ast`` (nothing is imported).

Every ``import`` statement counts, at module level or inside a function (a lazy import is
still an arrow), except those under ``if TYPE_CHECKING:`` (never run). A *unit* is what
sits directly under ``ead/``: a subpackage (``ead.training``) or a module (``ead.metrics``).
"""

from __future__ import annotations

import ast
import functools
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "ead"

CORE = {"schedules", "objectives", "metrics", "tasks", "grading", "config", "seeding", "specs"}
"""Core math and types: depend on nothing above them."""
ABOVE_CORE = {"training", "cli", "evaluation", "experiments", "integrations", "reporting", "engines", "rollout"}
"""What the core must never import: commands, integrations, reports and rollout engines."""
OPTIONAL_ENGINES = {"vllm", "sglang", "verl", "trl"}

# Known exceptions to the rules below: none. A new edge must not be added here; fix the import instead.
ALLOWED_EDGES: set[tuple[str, str]] = set()


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imports(tree: ast.AST, module: str) -> list[tuple[str, bool]]:
    """``(imported module, at module level)`` for every runtime import in ``tree``."""
    out: list[tuple[str, bool]] = []

    def visit(node: ast.AST, top: bool) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node):
            for child in node.orelse:
                visit(child, top)
            return
        if isinstance(node, ast.Import):
            out.extend((alias.name, top) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against this module's package
                base = module.split(".")[: -node.level]
                name = ".".join(base + ([node.module] if node.module else []))
            else:
                name = node.module or ""
            out.append((name, top))
            out.extend((f"{name}.{alias.name}", top) for alias in node.names)  # `from ead import x`
        nested = isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
        for child in ast.iter_child_nodes(node):
            visit(child, top and not nested)

    visit(tree, True)
    return out


def _unit(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[0] == "ead" else None


def _source_modules() -> dict[str, Path]:
    modules = {}
    for path in sorted(SRC.rglob("*.py")):
        rel = path.relative_to(SRC.parent).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        modules[".".join(parts)] = path
    return modules


@functools.lru_cache(maxsize=1)
def _graph() -> tuple[dict[str, set[str]], dict[tuple[str, str], list[str]], list[tuple[str, str]]]:
    """Unit -> units it imports; an example ``file -> module`` per edge; top-level optional-engine imports."""
    edges: dict[str, set[str]] = {}
    where: dict[tuple[str, str], list[str]] = {}
    engines: list[tuple[str, str]] = []
    for module, path in _source_modules().items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        source = _unit(module)
        for name, top in _imports(tree, module):
            root = name.split(".")[0]
            if root in OPTIONAL_ENGINES and top:
                engines.append((str(path.relative_to(SRC)), name))
            target = _unit(name)
            if source is None or target is None or target == source:
                continue
            if target not in {p.name.removesuffix(".py") for p in SRC.iterdir()}:
                continue  # `from ead import __version__` and the like
            edges.setdefault(source, set()).add(target)
            where.setdefault((source, target), []).append(f"{path.relative_to(SRC)} -> {name}")
    return edges, where, engines


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one unit (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []

    def connect(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(edges.get(v, ())):
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            connect(v)
    return out


def _without_allowed(edges: dict[str, set[str]]) -> dict[str, set[str]]:
    return {src: {dst for dst in dsts if (src, dst) not in ALLOWED_EDGES} for src, dsts in edges.items()}


def test_the_parser_sees_function_level_and_skips_type_checking_imports():
    tree = ast.parse("import os\nfrom typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import ead.training\n"
                     "def f():\n    from ead.cli import main\n    import vllm\n")
    found = _imports(tree, "ead.x")
    assert ("os", True) in found and ("ead.cli", False) in found and ("vllm", False) in found
    assert not any(name.startswith("ead.training") for name, _ in found)


def test_cycle_finder_finds_a_cycle_and_only_real_ones():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": {"c"}}) == []


def test_no_import_cycle_between_units():
    edges, where, _ = _graph()
    cycles = _cycles(_without_allowed(edges))
    detail = [[e for a in c for b in c if b in edges.get(a, ()) and (a, b) not in ALLOWED_EDGES
               for e in where[(a, b)][:2]] for c in cycles]
    assert not cycles, f"import cycles between units: {cycles}; edges: {detail}"


def test_core_never_imports_commands_engines_or_integrations():
    edges, where, _ = _graph()
    bad = [e for core in sorted(CORE) for target in sorted(edges.get(core, set()) & ABOVE_CORE)
           if (core, target) not in ALLOWED_EDGES for e in where[(core, target)]]
    assert not bad, "the core imports a command, an engine or an integration:\n" + "\n".join(bad)


def test_optional_engines_are_imported_lazily_inside_their_integration():
    _, _, engines = _graph()
    bad = [f"{path} imports {name} at module level" for path, name in engines
           if not (path.startswith("integrations/") or (path.startswith("rollout/vllm") and path.endswith(".py")))]
    assert not bad, "\n".join(bad)


@pytest.mark.parametrize("edge", sorted(ALLOWED_EDGES))
def test_allowed_edges_still_exist(edge):
    """An allow-list entry whose edge is gone must be deleted (the list only shrinks)."""
    edges, _, _ = _graph()
    assert edge[1] in edges.get(edge[0], set()), f"{edge} no longer exists: remove it from ALLOWED_EDGES"


def test_eval_does_not_import_the_trainer():
    """``ead eval`` shares the lower layers with ``ead train`` (scoring, loading, specs), never its package."""
    edges, where, _ = _graph()
    assert "training" not in edges.get("evaluation", set()), where.get(("evaluation", "training"))


def test_shared_sections_sit_below_the_commands():
    """``ead.sections`` (model, sampler, grading sections of train and eval) imports no command package."""
    edges, where, _ = _graph()
    commands = {"training", "evaluation", "experiments", "cli", "reporting", "schedule_command"}
    bad = sorted(edges.get("sections", set()) & commands)
    assert not bad, [e for target in bad for e in where[("sections", target)]]
