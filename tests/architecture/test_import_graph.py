"""The package's shape, read from the source: imports point down the pipeline and never go round in a circle.

Every `import` of a `launcher` module counts, at module level or inside a function. The layers, lowest first:
the shared vocabulary (errors, layout, versions, atomic writes, file fingerprints, run status, the launcher-rank
lifeline, which rank output the console shows), `lf/` (what LLaMA-Factory makes of a config), `check/`
(validate), `plan/`, then the stages that use a plan or a run directory (`observe/`, `stats/`, `convert/`), the
run itself (`run/` in the launcher, `worker/` inside each rank), what comes after a run (`evaluate/`: generate,
judge, eval, loop), `commands/`, and `cli`.
A module imports from its own stage or a lower one.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PACKAGE = REPO / "launcher"
LAYERS = (
    ("launcher", "launcher.errors", "launcher.layout", "launcher.versions", "launcher.atomic", "launcher.fingerprint",
     "launcher.run_status", "launcher.lifeline", "launcher.rank_output"),
    ("launcher.lf",),
    ("launcher.check",),
    ("launcher.plan",),
    ("launcher.observe", "launcher.stats", "launcher.convert"),
    ("launcher.run", "launcher.worker"),
    ("launcher.evaluate",),
    ("launcher.commands",),
    ("launcher.cli",),
    ("launcher.__main__",),
)
# Imported lazily on purpose: optional or heavy third-party packages. Our own modules never are.
HEAVY = ("torch", "transformers", "deepspeed", "llamafactory", "trl", "peft", "tensorboard", "accelerate", "datasets")


def module_name(path: Path) -> str:
    name = ".".join(path.relative_to(REPO).with_suffix("").parts)
    return name.removesuffix(".__init__")


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def imports_of(path: Path) -> list[tuple[str, int, bool]]:
    """(imported launcher module, line, at module level) for every import statement in the file."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    top = {id(node) for node in tree.body}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                target = f"{node.module}.{alias.name}"
                found.append((target if target in MODULES else node.module, node.lineno, id(node) in top))
        elif isinstance(node, ast.Import):
            found += [(alias.name, node.lineno, id(node) in top) for alias in node.names]
    return [(name, line, at_top) for name, line, at_top in found if name in MODULES]


GRAPH = {name: sorted({target for target, _, _ in imports_of(path)}) for name, path in MODULES.items()}


def stage(name: str) -> tuple[int, str]:
    """(layer index, the stage's package) of a module: the longest stage name it falls under."""
    matches = [(index, root) for index, roots in enumerate(LAYERS) for root in roots
               if name == root or (root != "launcher" and name.startswith(root + "."))]
    layer, root = max(matches, key=lambda match: len(match[1])) if matches else (0, "launcher")
    return (0, "launcher") if layer == 0 else (layer, root)  # the shared vocabulary is one stage


def find_cycle(graph: dict[str, list[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in graph.get(node, ()):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for node in graph:
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_the_package_has_no_import_cycle():
    assert find_cycle(GRAPH) is None


def test_the_cycle_finder_finds_a_planted_cycle():
    planted = {**GRAPH, "launcher.errors": ["launcher.cli"]}
    cycle = find_cycle(planted)
    assert cycle is not None and cycle[0] == cycle[-1]


@pytest.mark.parametrize("name", sorted(MODULES))
def test_every_import_points_to_the_same_stage_or_a_lower_one(name):
    layer, own = stage(name)
    upward = [target for target in GRAPH[name] if stage(target)[0] > layer
              or (stage(target)[0] == layer and stage(target)[1] != own)]
    assert upward == [], f"{name} (stage {own}) imports {upward}"


def test_only_the_cli_imports_the_commands():
    importers = {name for name, targets in GRAPH.items() for t in targets
                 if t.startswith("launcher.commands") or t == "launcher.cli"}
    commands = {name for name in MODULES if name.startswith("launcher.commands")}
    assert importers <= {"launcher.cli", "launcher.__main__"} | commands


def test_our_own_imports_are_at_the_top_of_each_module():
    inside = [f"{MODULES[name].relative_to(REPO)}:{line} imports {target}" for name in MODULES
              for target, line, at_top in imports_of(MODULES[name]) if not at_top]
    assert inside == []


@pytest.mark.parametrize("path", sorted(p for p in PACKAGE.rglob("__init__.py") if p.parent != PACKAGE),
                         ids=lambda p: str(p.relative_to(REPO)))
def test_subpackage_inits_hold_only_a_docstring(path):
    tree = ast.parse(path.read_text(encoding="utf-8"))
    assert len(tree.body) == 1 and isinstance(tree.body[0], ast.Expr), "importing a stage must not run code"


def test_heavy_packages_are_imported_at_module_level_only_inside_a_rank():
    allowed = ("launcher.worker", "launcher.stats.worker", "launcher.evaluate.worker")
    offenders = []
    for name, path in MODULES.items():
        if name.startswith(allowed):
            continue
        for node in ast.parse(path.read_text(encoding="utf-8")).body:
            modules = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            offenders += [f"{name}: {m}" for m in modules if m.split(".")[0] in HEAVY]
    assert offenders == []


CITATION = re.compile(r"docs/upstream-notes\.md#([a-z0-9-]+)")


def test_every_citation_of_the_upstream_notes_names_a_section_that_exists():
    notes = (REPO / "docs" / "upstream-notes.md").read_text(encoding="utf-8")
    sections = {re.sub(r"[^a-z0-9 -]", "", line[3:].strip().lower()).replace(" ", "-")
                for line in notes.splitlines() if line.startswith("## ")}
    cited = {(str(p.relative_to(REPO)), anchor) for folder in ("launcher", "scripts", "bench", "tests")
             for p in (REPO / folder).rglob("*") if p.is_file() and p.suffix in (".py", ".jsonl", ".sh")
             for anchor in CITATION.findall(p.read_text(encoding="utf-8", errors="replace"))}
    assert cited, "the code cites the notes"
    assert {(file, anchor) for file, anchor in cited if anchor not in sections} == set()


def test_nothing_cites_a_file_outside_the_repository():
    pattern = re.compile(r"REFERENCE\.md|\.\./shared")
    offenders = [str(p.relative_to(REPO)) for folder in ("launcher", "scripts", "bench", "tests", "docs")
                 for p in (REPO / folder).rglob("*") if p.is_file() and p.suffix in (".py", ".md", ".sh", ".jsonl")
                 and p.name != "test_import_graph.py"
                 and pattern.search(p.read_text(encoding="utf-8", errors="replace"))]
    assert offenders == []
