"""bot/'s import structure: parts in rows, each importing only rows below it; no cycle; no
import inside a function; and checks/ never imports bot/. Both are imported as parts of the
one installed package (``badgateway.bot``, ``badgateway.checks``), never by a top-level name.

A part is a subpackage (bot.slack, bot.alerts, bot.queue, bot.render, bot.assemble) or a
top-level module (bot.config, bot.state, …). Modules are read with ``ast``, not imported.
docs/architecture.md shows the rows.
"""

from __future__ import annotations

import ast
from pathlib import Path

from tests.lab import REPO

BOT = REPO / "bot"
PACKAGE = "badgateway.bot"  # what bot/ is imported as
DEPTH = PACKAGE.count(".") + 1  # pieces of a module name before the part's own

# The rows of bot/: a part may import parts of higher-numbered rows only (so never a part of its
# own row, which keeps the features apart). A new part gets a row here, on purpose.
ROWS: dict[str, int] = {
    "badgateway.bot.cli": 1,
    "badgateway.bot.assemble": 2,
    "badgateway.bot.shell": 3,
    "badgateway.bot.slack": 4,
    "badgateway.bot.alerts": 4,
    "badgateway.bot.queue": 4,
    "badgateway.bot.render": 5,
    "badgateway.bot.flights": 5,
    "badgateway.bot.state": 6,
    "badgateway.bot.slack_client": 6,
    "badgateway.bot.pipeline": 6,
    "badgateway.bot.threads": 6,
    "badgateway.bot.bounded_json": 6,
    "badgateway.bot.malformed_http": 6,
    "badgateway.bot.demo": 6,
    "badgateway.bot.history_store": 6,
    "badgateway.bot.storage": 7,
    "badgateway.bot.config": 7,
    "badgateway.bot.logs": 7,
    "badgateway.bot.metrics": 7,
    "badgateway.bot.shared_pace": 7,
    PACKAGE: 8,  # the package's own __init__: a docstring
}

# module -> why it may import inside a function. Only optional dependencies belong here;
# the bot has none today.
FUNCTION_IMPORTS_ALLOWED: dict[str, str] = {}


def _modules() -> dict[str, ast.Module]:
    found: dict[str, ast.Module] = {}
    for path in sorted(BOT.rglob("*.py")):
        parts = path.relative_to(BOT).with_suffix("").parts
        name = ".".join((PACKAGE, *(parts[:-1] if parts[-1] == "__init__" else parts)))
        found[name] = ast.parse(path.read_text(encoding="utf-8"), str(path))
    return found


def _part(module: str) -> str:
    """bot.slack.chatops -> bot.slack; bot.config -> bot.config."""
    pieces = module.split(".")
    return ".".join(pieces[: DEPTH + 1])


def _imported(node: ast.Import | ast.ImportFrom, known: set[str]) -> list[str]:
    """The bot modules an import statement names (``from bot import storage`` included)."""
    if isinstance(node, ast.Import):
        return [a.name for a in node.names if _in_package(a.name)]
    if node.level or not node.module or not _in_package(node.module):
        return []
    names = [f"{node.module}.{a.name}" for a in node.names]
    return [n for n in names if n in known] or [node.module]


def _in_package(module: str) -> bool:
    return module == PACKAGE or module.startswith(PACKAGE + ".")


def _top_level_imports(tree: ast.Module) -> list[ast.Import | ast.ImportFrom]:
    """Imports run when the module loads: at module level, also inside if/try blocks."""
    found: list[ast.Import | ast.ImportFrom] = []
    todo: list[ast.stmt] = list(tree.body)
    while todo:
        node = todo.pop()
        if isinstance(node, ast.Import | ast.ImportFrom):
            found.append(node)
        elif isinstance(node, ast.If | ast.Try):
            todo += node.body + node.orelse + getattr(node, "finalbody", [])
            for handler in getattr(node, "handlers", []):
                todo += handler.body
    return found


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    known = set(modules)
    edges: dict[str, set[str]] = {}
    for name, tree in modules.items():
        for node in _top_level_imports(tree):
            for target in _imported(node, known):
                if _part(target) != _part(name):
                    edges.setdefault(_part(name), set()).add(_part(target))
    return edges


def _cycle(edges: dict[str, set[str]]) -> list[str] | None:
    """One cycle in ``edges`` as a path, or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt) :], nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        path.pop()
        state[node] = 2
        return None

    for start in sorted(edges):
        if start not in state and (found := visit(start)):
            return found
    return None


def test_no_import_cycle_between_the_parts_of_bot() -> None:
    edges = _graph()
    assert {"badgateway.bot.slack", "badgateway.bot.alerts", "badgateway.bot.queue"} <= set(
        edges
    )  # the graph is read
    assert _cycle(edges) is None, " -> ".join(_cycle(edges) or [])


def test_the_cycle_finder_finds_one() -> None:
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": {"c"}}) is None


def test_features_do_not_import_each_other_or_the_assemblies() -> None:
    edges = _graph()
    features = {"badgateway.bot.slack", "badgateway.bot.alerts", "badgateway.bot.queue"}
    for feature in features:
        assert not edges.get(feature, set()) & (features - {feature}), feature
    importers = {part for part, targets in edges.items() if "badgateway.bot.assemble" in targets}
    assert importers <= {"badgateway.bot.cli"}, importers


def test_every_part_imports_only_rows_below_it() -> None:
    parts = {_part(name) for name in _modules()}
    assert parts <= set(ROWS), f"give these parts a row in ROWS: {sorted(parts - set(ROWS))}"
    upward = [
        f"{part} (row {ROWS[part]}) imports {target} (row {ROWS[target]})"
        for part, targets in _graph().items()
        for target in targets
        if ROWS[target] <= ROWS[part]
    ]
    assert upward == []


def test_checks_never_imports_bot() -> None:
    found = [
        f"{path.name}:{line}"
        for path in sorted((REPO / "checks").rglob("*.py"))
        for line, module in _imports(path)
        if _in_package(module)
    ]
    assert found == []


def _imports(path: Path) -> list[tuple[int, str]]:
    """(line, module) of every absolute import in the file at ``path``."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
            found.append((node.lineno, node.module))
    return found


def test_nothing_imports_bot_or_checks_by_a_top_level_name() -> None:
    """Only ``badgateway`` is installed: ``import bot`` works in a checkout and nowhere else
    (and would load a second copy of every module). A branch written before the rename is
    brought over by scripts/rename-imports."""
    found = [
        f"{path.relative_to(REPO)}:{line} imports {module}"
        for folder in ("bot", "checks", "tests", "bench")
        for path in sorted((REPO / folder).rglob("*.py"))
        for line, module in _imports(path)
        if module.split(".")[0] in ("bot", "checks")
    ]
    assert found == [], "run scripts/rename-imports: " + "; ".join(found[:5])


def test_no_import_inside_a_function() -> None:
    found: list[str] = []
    for name, tree in _modules().items():
        if name in FUNCTION_IMPORTS_ALLOWED:
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                found += [
                    f"{name}:{sub.lineno}"
                    for sub in ast.walk(node)
                    if isinstance(sub, ast.Import | ast.ImportFrom)
                ]
    assert found == []
