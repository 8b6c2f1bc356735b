"""Structure a newcomer can follow, checked on the source (static imports, function-level ones too):

- job programs (`runtime/<kind>.py`) import libraries, never another program, and libraries never
  import a program (torchtune's recipes vs components);
- no import cycles among rlspec's own modules;
- the job models and the content hash need nothing of the compiler's validation stack.
"""

from __future__ import annotations

import ast
from pathlib import Path

from rlspec.compiler.jobs import KINDS

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = {"compiler": "rlspec.compiler", "runtime": "rlspec.runtime", "templates": "rlspec.templates"}
PROGRAMS = {f"rlspec.runtime.{k}" for k in KINDS}


def _module_name(path: Path) -> str:
    rel = path.relative_to(ROOT)
    parts = [PACKAGES[rel.parts[0]], *rel.with_suffix("").parts[1:]]
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def import_graph() -> dict[str, set[str]]:
    modules = {_module_name(p): p for top in PACKAGES for p in (ROOT / top).rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        found: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    up = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join(up + ([base] if base else []))
                targets = [base] + [f"{base}.{a.name}" for a in node.names]
            else:
                continue
            found |= {t for t in targets if t in modules and t != name}
        graph[name] = found
    return graph


def test_programs_import_no_program_and_libraries_import_no_program():
    graph = import_graph()
    bad = sorted((m, t) for m, targets in graph.items() for t in targets if t in PROGRAMS)
    # the CLI's `rlspec report` runs the report program's entry point, as `python -m` would
    bad = [(m, t) for m, t in bad if (m, t) != ("rlspec.compiler.cli", "rlspec.runtime.report")]
    assert not bad, f"imports of a job program (move the shared part into a library): {bad}"


def test_no_import_cycles():
    graph = import_graph()
    cycles = []

    def visit(node: str, path: list[str], on_path: set[str], done: set[str]) -> None:
        for nxt in sorted(graph[node]):
            if nxt in on_path:
                cycles.append(path[path.index(nxt):] + [nxt])
            elif nxt not in done:
                on_path.add(nxt)
                visit(nxt, path + [nxt], on_path, done)
                on_path.discard(nxt)
        done.add(node)

    done: set[str] = set()
    for start in sorted(graph):
        if start not in done:
            visit(start, [start], {start}, done)
    # a package's __init__ importing its own submodules is not a cycle a reader trips over
    cycles = [c for c in cycles if not any(b.startswith(a + ".") for a, b in zip(c, c[1:]))]
    assert not cycles, f"import cycles: {cycles[:5]}"


def test_the_job_contract_needs_no_validation_stack():
    graph = import_graph()
    reach, todo = set(), ["rlspec.compiler.jobs", "rlspec.compiler.hashing"]
    while todo:
        m = todo.pop()
        if m not in reach:
            reach.add(m)
            todo.extend(graph[m])
    assert reach <= {"rlspec.compiler", "rlspec.compiler.jobs", "rlspec.compiler.hashing", "rlspec.compiler.spec"}, reach
