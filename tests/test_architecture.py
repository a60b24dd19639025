"""One direction through the house: the import contracts of docs/architecture.md hold, and
`make lint` would catch a file that broke them."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ["docqa", "retrieval", "ingestion", "inference", "evals", "app", "api", "cli"]
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"


def lint_imports(cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache"], cwd=cwd, capture_output=True, text=True, timeout=120
    )


@pytest.fixture
def tree_copy(tmp_path: Path) -> Path:
    """The project's packages and contracts in a scratch folder, to plant violations in."""
    for package in PACKAGES:
        shutil.copytree(ROOT / package, tmp_path / package, ignore=shutil.ignore_patterns("*.pyc"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    return tmp_path


def plant(path: Path, after: str, line: str) -> None:
    """Insert `line` after the first line that contains `after`."""
    lines = path.read_text().splitlines()
    at = next(n for n, text in enumerate(lines) if after in text)
    lines.insert(at + 1, line)
    path.write_text("\n".join(lines) + "\n")


def test_the_contracts_hold() -> None:
    result = lint_imports(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_stage_importing_the_composition_root_breaks_the_layers(tree_copy: Path) -> None:
    # A lazy import inside a function counts as much as one at the top of the file.
    plant(
        tree_copy / "retrieval" / "hybrid.py",
        "top_k = top_k or self.settings.top_k",
        "        import app.container  # noqa",
    )
    result = lint_imports(tree_copy)
    assert result.returncode == 1
    assert "retrieval is not allowed to import app" in result.stdout
    assert "retrieval.hybrid -> app.container" in result.stdout


def test_sibling_stages_importing_each_other_break_the_layers(tree_copy: Path) -> None:
    plant(tree_copy / "inference" / "cache.py", "import json", "import ingestion.records")
    result = lint_imports(tree_copy)
    assert result.returncode == 1
    assert "inference.cache -> ingestion.records" in result.stdout


def test_a_cycle_inside_a_package_breaks_the_acyclic_contract(tree_copy: Path) -> None:
    # evals.runner imports evals.store; a lazy import back closes the circle.
    plant(
        tree_copy / "evals" / "store.py", "    def save_run(", "        import evals.runner  # noqa"
    )
    result = lint_imports(tree_copy)
    assert result.returncode == 1
    assert "no import cycles between the modules of a package BROKEN" in result.stdout


def _imports(path: Path) -> set[str]:
    """Every module a file imports, at module level, in functions or under TYPE_CHECKING."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.add(node.module)
            found.update(f"{node.module}.{a.name}" for a in node.names)
    return found


def _module_graph() -> dict[str, set[str]]:
    files = {
        ".".join(p.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__"): p
        for package in PACKAGES
        for p in (ROOT / package).rglob("*.py")
    }

    def resolve(name: str) -> str | None:
        while name and name not in files:
            name = name.rpartition(".")[0]
        return name or None

    return {
        module: {m for i in _imports(path) if (m := resolve(i)) and m != module}
        for module, path in files.items()
    }


def test_no_two_project_files_import_each_other_even_through_others() -> None:
    graph = _module_graph()
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    cycles: list[list[str]] = []

    def visit(module: str, path: list[str]) -> None:
        state[module] = 1
        for nxt in sorted(graph[module]):
            if state.get(nxt) == 1:
                cycles.append([*path[path.index(nxt) :], module, nxt])
            elif nxt not in state:
                visit(nxt, [*path, module])
        state[module] = 2

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10_000))
    for module in sorted(graph):
        if module not in state:
            visit(module, [])
    assert not cycles, "\n".join(" -> ".join(c) for c in cycles)


def test_dags_reach_the_stages_through_the_composition_root_only() -> None:
    """Airflow loads dags/ as a bundle (not a package), so the layer contract cannot see
    it: its files may import the ground, the composition root and stage functions, never
    the API or the CLI."""
    for path in sorted((ROOT / "dags").glob("*.py")):
        roots = {name.split(".")[0] for name in _imports(path)}
        assert not roots & {"api", "cli"}, f"{path.name} imports {roots & {'api', 'cli'}}"
