"""Import layering: no cycles between the harness's packages, and the floor rule of DESIGN.md section 3.

The imports of every module under ``benchmark/``, ``methods/`` and ``study_app/`` are read with
the standard ``ast`` module, without importing anything: module-level imports AND imports
inside functions (a lazy import hides a cycle from Python, not from the design), relative
imports resolved against the importing module's package. Imports under ``if TYPE_CHECKING:``
are skipped: they never run, so they cannot form a cycle. String references of the lazy
registries ("module:attr") are not imports and are not followed.

Two graphs are built from the same edges:

* the **module graph**: one node per module (``study_app.analysis.rankings``);
* the **package graph**: one node per *unit* of the layout: a subpackage or a top-level module
  of ``benchmark`` (``benchmark.stereo``, ``benchmark.errors``, ``benchmark.runner``), a package
  or module of ``methods`` (``methods.m2svid``, ``methods.base``) and of ``study_app``
  (``study_app.analysis``). Imports inside one unit are not edges.

The tests fail on any cycle between units that involves a ``benchmark`` unit, on any cycle
between modules inside ``study_app``, and on any import that :data:`RULES` forbids (the floor
rule: which package may import which), printing each cycle or violation with file and line.
``docs/architecture.md`` prints the same rule table.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
ROOTS = ("benchmark", "methods", "study_app")


# ----------------------------------------------------------------------------- reading imports

@dataclass(frozen=True)
class Import:
    """One import statement's resolved target inside the walked packages."""

    source: str  # importing module, e.g. "benchmark.stereo.cache"
    target: str  # imported module, e.g. "benchmark.types"
    path: str  # file of the importing module, relative to the walked root folder
    line: int
    lazy: bool  # inside a function (runs only when called)

    def where(self) -> str:
        return f"{self.path}:{self.line}{' (in a function)' if self.lazy else ''}"


def discover_modules(root: Path, packages: tuple[str, ...]) -> dict[str, Path]:
    """Module name -> file for every ``.py`` under ``root/<package>`` (``__init__`` = the package)."""
    modules: dict[str, Path] = {}
    for package in packages:
        for path in sorted((root / package).rglob("*.py")):
            rel = path.relative_to(root).with_suffix("")
            parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
            if any(not p.isidentifier() for p in parts):  # e.g. a data folder with a dash: not importable
                continue
            modules[".".join(parts)] = path
    return modules


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or \
        (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _resolve(name: str, modules: dict[str, Path]) -> str | None:
    """The longest prefix of ``name`` that is a walked module (None: outside the walked packages)."""
    parts = name.split(".")
    for n in range(len(parts), 0, -1):
        candidate = ".".join(parts[:n])
        if candidate in modules:
            return candidate
    return None


def module_imports(module: str, path: Path, modules: dict[str, Path], root: Path) -> list[Import]:
    """Every import of ``module`` (file ``path``) that lands in a walked package, resolved."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    is_package = path.name == "__init__.py"
    package = module if is_package else module.rpartition(".")[0]
    rel_path = str(path.relative_to(root))
    found: list[Import] = []

    def add(name: str, node: ast.AST, lazy: bool) -> None:
        target = _resolve(name, modules)
        if target is not None and target != module:
            found.append(Import(module, target, rel_path, node.lineno, lazy))

    def visit(node: ast.AST, lazy: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _is_type_checking(child.test):
                for sub in child.orelse:  # the else branch does run
                    visit(ast.Module(body=[sub], type_ignores=[]), lazy)
                continue
            if isinstance(child, ast.Import):
                for alias in child.names:
                    add(alias.name, child, lazy)
            elif isinstance(child, ast.ImportFrom):
                if child.level:
                    base_parts = package.split(".") if package else []
                    if child.level - 1 > len(base_parts):
                        continue  # beyond the top package: Python would refuse it too
                    base_parts = base_parts[:len(base_parts) - (child.level - 1)]
                    base = ".".join(base_parts + ([child.module] if child.module else []))
                else:
                    base = child.module or ""
                for alias in child.names:
                    # `from pkg import sub` imports the submodule when there is one.
                    full = f"{base}.{alias.name}" if base else alias.name
                    add(full if alias.name != "*" and full in modules else base, child, lazy)
            visit(child, lazy or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)))

    visit(tree, False)
    return found


def collect_imports(root: Path = REPO, packages: tuple[str, ...] = ROOTS) -> tuple[dict[str, Path], list[Import]]:
    modules = discover_modules(root, packages)
    edges = [imp for name, path in modules.items() for imp in module_imports(name, path, modules, root)]
    return modules, edges


# ----------------------------------------------------------------------------- graphs and cycles

def unit_of(module: str) -> str:
    """The layout unit of a module: top package + first component (``benchmark.stereo.cache`` ->
    ``benchmark.stereo``; ``benchmark.errors`` stays; a top package is its own unit)."""
    parts = module.split(".")
    return ".".join(parts[:2])


def build_graph(edges: list[Import], key=lambda m: m) -> dict[str, dict[str, list[Import]]]:
    """node -> {node it imports -> the import statements that make the edge}; no self-edges."""
    graph: dict[str, dict[str, list[Import]]] = defaultdict(lambda: defaultdict(list))
    for imp in edges:
        a, b = key(imp.source), key(imp.target)
        graph[a]  # every importer is a node, even with no outgoing edge left
        if a != b:
            graph[a][b].append(imp)
    return graph


def strongly_connected(graph: dict[str, dict[str, list]]) -> list[list[str]]:
    """Tarjan's strongly connected components with more than one node, each sorted (iterative)."""
    nodes = sorted(set(graph) | {b for out in graph.values() for b in out})
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    components: list[list[str]] = []
    counter = 0
    for start in nodes:
        if start in index:
            continue
        work = [(start, iter(sorted(graph.get(start, {}))))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            advanced = False
            for child in children:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, {})))))
                    advanced = True
                    break
                if child in on_stack:
                    low[node] = min(low[node], index[child])
            if advanced:
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    components.append(sorted(component))
    return sorted(components)


def one_cycle(graph: dict[str, dict[str, list]], component: list[str]) -> list[str]:
    """A shortest cycle through the first node of ``component`` (breadth-first inside it): [a, b, ..., a]."""
    members = set(component)
    start = component[0]
    previous: dict[str, str] = {}
    frontier = [start]
    while frontier:
        nxt = []
        for node in frontier:
            for child in sorted(graph.get(node, {})):
                if child not in members:
                    continue
                if child == start:
                    path = [node]
                    while path[-1] != start:
                        path.append(previous[path[-1]])
                    return [start, *reversed(path[:-1]), start]
                if child not in previous:
                    previous[child] = node
                    nxt.append(child)
        frontier = nxt
    raise AssertionError(f"no cycle through {start} in {component}")  # impossible for a real SCC


def describe_cycle(graph: dict[str, dict[str, list[Import]]], cycle: list[str]) -> str:
    """``a -> b -> a`` plus, per edge, the first import statement that makes it."""
    lines = [" -> ".join(cycle)]
    for a, b in zip(cycle, cycle[1:]):
        imp = graph[a][b][0]
        more = f" (+{len(graph[a][b]) - 1} more)" if len(graph[a][b]) > 1 else ""
        lines.append(f"    {a} -> {b}: {imp.where()} imports {imp.target}{more}")
    return "\n".join(lines)


def find_cycles(graph: dict[str, dict[str, list[Import]]], keep=lambda component: True) -> list[str]:
    """One described cycle per strongly connected component that ``keep`` accepts."""
    return [describe_cycle(graph, one_cycle(graph, c)) for c in strongly_connected(graph) if keep(c)]


# ----------------------------------------------------------------------------- the floor rule as data

#: The ground floor of the harness: imported by everything, imports only itself.
GROUND = ("benchmark.errors", "benchmark.registry", "benchmark.fileio", "benchmark.types", "benchmark.video_io",
          "benchmark.weights", "benchmark.windows", "benchmark.layouts")
ENTRY = ("benchmark.cli", "benchmark.commands")  # thin command layer: nothing below it imports it


@dataclass(frozen=True)
class Rule:
    """Modules under ``importers`` (unit/module prefixes) may not import modules under ``forbidden``;
    with ``only``, they may import nothing of the walked packages outside ``only`` (and themselves).
    ``exempt``: importers the rule does not apply to."""

    importers: tuple[str, ...]
    reason: str
    forbidden: tuple[str, ...] = ()
    only: tuple[str, ...] | None = None
    exempt: tuple[str, ...] = field(default=())


def _under(module: str, prefixes: tuple[str, ...]) -> bool:
    return any(module == p or module.startswith(p + ".") for p in prefixes)


RULES: tuple[Rule, ...] = (
    Rule(GROUND, "the ground floor (errors, registry, fileio, types, video_io, weights, windows, layouts) imports only "
                 "the ground floor", only=GROUND),
    Rule(("benchmark.stereo",), "the shared stereo stage sits below datasets, metrics, the runner and the commands; "
                                "every method's native warp rule lives inside it",
         forbidden=("benchmark.datasets", "benchmark.metrics", "benchmark.runner", "benchmark.run_store",
                    "benchmark.leaderboard", "methods", *ENTRY)),
    Rule(("benchmark.depth",), "depth models feed the stereo stage; they know nothing above it",
         forbidden=("benchmark.stereo", "benchmark.datasets", "benchmark.metrics", "benchmark.runner", "methods",
                    *ENTRY)),
    Rule(("benchmark.convert",), "convert streams a video through depth, the stereo stage and one method; it reaches "
                                 "methods only through the METHODS registry, never runs, scores or the CLI",
         only=(*GROUND, "benchmark.stereo", "benchmark.depth", "benchmark.timing", "methods.registry")),
    Rule(("benchmark.datasets",), "datasets may use the stereo stage (disparity, protocols), nothing that scores "
                                  "or runs",
         forbidden=("benchmark.metrics", "benchmark.runner", "benchmark.run_store", "benchmark.leaderboard",
                    "methods", *ENTRY)),
    Rule(("benchmark.dataprep",), "dataset preparation writes prepared clips with the ground floor, the stereo stage "
                                  "and the datasets; it never scores, runs or parses the command line",
         only=(*GROUND, "benchmark.stereo", "benchmark.datasets", "benchmark.dataprep")),
    Rule(("benchmark.metrics",), "metrics score tensors; they never run methods or pairs",
         forbidden=("benchmark.runner", "benchmark.leaderboard", "methods", *ENTRY)),
    Rule(("benchmark.results", "benchmark.run_store", "benchmark.leaderboard", "benchmark.plots",
          "benchmark.paper_numbers"),
         "the long table, the run store and the leaderboards are read by the runner, not the other way round",
         forbidden=("benchmark.runner", *ENTRY)),
    Rule(("benchmark.warp_quality",), "the warp-quality tables evaluate the stereo stage from above; they never run",
         forbidden=("benchmark.runner", *ENTRY)),
    Rule(("methods",), "a method adapter uses the ground floor and the stereo stage; it never drives a run",
         forbidden=("benchmark.runner", "benchmark.leaderboard", "benchmark.run_store", *ENTRY, "study_app")),
    Rule(("benchmark", "methods", "study_app"), "only the CLI imports the command modules",
         forbidden=ENTRY, exempt=ENTRY),
    Rule(("benchmark",), "the harness never imports the study app", forbidden=("study_app",)),
    Rule(("study_app.analysis",), "the study statistics read response tables; they use only the harness's ground "
                                  "floor (errors, atomic writes), never runs, methods or the CLI",
         only=(*GROUND, "study_app.analysis")),
    Rule(("study_app.assign", "study_app.media", "study_app.package", "study_app.store", "study_app.auth",
          "study_app.migrations"),
         "the study backend (packages, media, storage, admin auth) sits below the web app and the CLI that use it",
         forbidden=("study_app.web", "study_app.cli", *ENTRY)),
)


def violations(edges: list[Import], rules: tuple[Rule, ...] = RULES) -> list[str]:
    out = []
    for imp in edges:
        for rule in rules:
            if not _under(imp.source, rule.importers) or _under(imp.source, rule.exempt):
                continue
            bad = _under(imp.target, rule.forbidden)
            if rule.only is not None:
                bad |= not _under(imp.target, rule.only) and not _under(imp.target, rule.importers)
            if bad:
                out.append(f"{imp.source} -> {imp.target} at {imp.where()}: {rule.reason}")
    return sorted(set(out))


# ----------------------------------------------------------------------------- the repository

@pytest.fixture(scope="module")
def repo_imports():
    return collect_imports()


def test_walker_sees_every_package_and_lazy_imports(repo_imports):
    modules, edges = repo_imports
    for name in ("benchmark.cli", "benchmark.errors", "methods.registry", "study_app.analysis.schema"):
        assert name in modules
    assert any(e.lazy for e in edges), "function-level imports must be walked too"
    assert len(edges) > 100


def test_no_cycle_between_benchmark_packages(repo_imports):
    _, edges = repo_imports
    graph = build_graph(edges, unit_of)
    cycles = find_cycles(graph, keep=lambda c: any(_under(n, ("benchmark",)) for n in c))
    assert not cycles, "import cycles between packages (fix by moving the shared piece down a floor):\n" + \
        "\n".join(cycles)


def test_no_cycle_between_study_app_modules(repo_imports):
    _, edges = repo_imports
    inside = [e for e in edges if _under(e.source, ("study_app",)) and _under(e.target, ("study_app",))]
    cycles = find_cycles(build_graph(inside))
    assert not cycles, "import cycles inside study_app:\n" + "\n".join(cycles)


def test_floor_rule(repo_imports):
    _, edges = repo_imports
    found = violations(edges)
    assert not found, "imports that break the floor rule (DESIGN.md section 3, docs/architecture.md):\n" + \
        "\n".join(found)


# ----------------------------------------------------------------------------- the finder itself

def _package(root: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def test_finder_reports_a_planted_cycle_through_a_lazy_relative_import(tmp_path):
    _package(tmp_path, {
        "pkg/__init__.py": "",
        "pkg/a/__init__.py": "from pkg.b import thing\n",
        "pkg/b/__init__.py": "from .helpers import thing\n",
        "pkg/b/helpers.py": "def thing():\n    from ..a import x  # lazy: Python would not notice\n    return x\n",
        "pkg/c.py": "import pkg.a\n",
    })
    modules, edges = collect_imports(tmp_path, ("pkg",))
    assert set(modules) == {"pkg", "pkg.a", "pkg.b", "pkg.b.helpers", "pkg.c"}
    lazy = [e for e in edges if e.lazy]
    assert [(e.source, e.target, e.line) for e in lazy] == [("pkg.b.helpers", "pkg.a", 2)]
    graph = build_graph(edges, unit_of)
    assert strongly_connected(graph) == [["pkg.a", "pkg.b"]]
    (cycle,) = find_cycles(graph)
    assert cycle.splitlines()[0] == "pkg.a -> pkg.b -> pkg.a"
    assert "pkg/b/helpers.py:2 (in a function)" in cycle
    # At module level the same files have no cycle inside one unit: pkg.b -> pkg.b.helpers only.
    assert find_cycles(build_graph([e for e in edges if not e.lazy], unit_of)) == []


def test_finder_passes_a_clean_package_and_skips_type_checking_imports(tmp_path):
    _package(tmp_path, {
        "pkg/__init__.py": "",
        "pkg/low.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg.high import H\n",
        "pkg/mid.py": "from . import low\nimport os\n",
        "pkg/high.py": "from pkg import mid\nfrom pkg.low import *\n",
    })
    modules, edges = collect_imports(tmp_path, ("pkg",))
    assert sorted((e.source, e.target) for e in edges) == [("pkg.high", "pkg.low"), ("pkg.high", "pkg.mid"),
                                                          ("pkg.mid", "pkg.low")]
    assert find_cycles(build_graph(edges)) == []


def test_finder_finds_a_three_module_cycle_and_the_rules_flag_forbidden_imports(tmp_path):
    _package(tmp_path, {
        "pkg/__init__.py": "",
        "pkg/x.py": "import pkg.y\n",
        "pkg/y.py": "from pkg import z\n",
        "pkg/z.py": "def f():\n    import pkg.x.inner\n",  # a name below a module resolves to the module
    })
    _, edges = collect_imports(tmp_path, ("pkg",))
    (cycle,) = find_cycles(build_graph(edges))
    assert cycle.splitlines()[0] == "pkg.x -> pkg.y -> pkg.z -> pkg.x"
    rules = (Rule(("pkg.z",), "z is the ground floor", only=("pkg.z",)),
             Rule(("pkg.x",), "x may not import y", forbidden=("pkg.y",)),
             Rule(("pkg",), "nobody imports z except y", forbidden=("pkg.z",), exempt=("pkg.y",)))
    found = violations(edges, rules)
    assert found == ["pkg.x -> pkg.y at pkg/x.py:1: x may not import y",
                     "pkg.z -> pkg.x at pkg/z.py:2 (in a function): z is the ground floor"]


# ----------------------------------------------------------------------------- docs/architecture.md

def documented_modules(text: str) -> set[str]:
    """The ``.py`` paths named in the layout block of docs/architecture.md (indentation = folders)."""
    import re

    block = text.split("## Layout", 1)[1].split("```", 2)[1]
    stack: list[tuple[int, str]] = []  # (indent, folder path)
    found = set()
    for line in block.splitlines():
        if not line.strip():
            continue
        indent = len(line) - len(line.lstrip())
        while stack and stack[-1][0] >= indent:
            stack.pop()
        folder = stack[-1][1] if stack else ""
        names = re.split(r"\s{2,}", line.strip())[0]  # the description starts after two spaces
        for token in re.split(r"[,\s]+", names):
            if token.endswith("/"):
                stack.append((indent, folder + token))
            elif token.endswith(".py"):
                found.add(folder + token)
    return found


def test_architecture_doc_has_one_line_per_module(repo_imports):
    modules, _ = repo_imports
    # An empty __init__.py is only a package marker: its folder's line documents it.
    actual = {str(path.relative_to(REPO)) for path in modules.values()
              if not (path.name == "__init__.py" and not path.read_text(encoding="utf-8").strip())}
    documented = documented_modules((REPO / "docs" / "architecture.md").read_text(encoding="utf-8"))
    every_file = {str(path.relative_to(REPO)) for path in modules.values()}
    walked = {p for p in documented if p.split("/")[0] in ROOTS}  # tests/ lines describe helpers, not modules
    missing, stale = sorted(actual - documented), sorted(walked - every_file)
    assert not missing, "modules missing from docs/architecture.md (add one line each): " + ", ".join(missing)
    assert not stale, "docs/architecture.md names modules that do not exist: " + ", ".join(stale)


def test_documented_modules_reads_folders_from_indentation():
    text = "## Layout\n\n```\npkg/             the package\n  a.py b.py      two\n  sub/           folder\n" \
           "    c.py, d.py   two more\n  e.py           back up\ntop.py           top\n```\n"
    assert documented_modules(text) == {"pkg/a.py", "pkg/b.py", "pkg/sub/c.py", "pkg/sub/d.py", "pkg/e.py", "top.py"}
