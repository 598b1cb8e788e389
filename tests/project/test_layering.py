"""The package graph of ../shared/ARCHITECTURE.md: kernels < zoo < generators | weightnets < weightzoo,
checked by import-linter (the contracts in pyproject.toml), no import cycles anywhere (grimp), and
imports that stay light."""

import shutil
import subprocess
import sys
from pathlib import Path

import grimp
import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("kernels", "zoo", "generators", "weightnets", "weightzoo")


def _loaded_after(statement: str, modules: tuple[str, ...]) -> list[str]:
    code = f"import sys; {statement}; print([m for m in {modules!r} if m in sys.modules])"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0, r.stdout + r.stderr
    return eval(r.stdout.strip().splitlines()[-1])  # a list literal printed by the child


def test_import_contracts_hold():
    exe = shutil.which("lint-imports", path=str(Path(sys.executable).parent)) or shutil.which("lint-imports")
    if exe is None:
        pytest.fail("lint-imports is not installed: pip install -e '.[dev]'")
    r = subprocess.run([exe, "--no-cache"], capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0 and "0 broken" in r.stdout, r.stdout[-3000:] + r.stderr[-2000:]


def test_no_import_cycles():
    graph = grimp.build_graph(*PACKAGES, exclude_type_checking_imports=True)
    # depth-first search for a back edge, reporting the cycle it closes
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(module: str) -> list[str] | None:
        state[module] = 1
        stack.append(module)
        for dep in sorted(graph.find_modules_directly_imported_by(module)):
            if state.get(dep) == 1:
                return stack[stack.index(dep):] + [dep]
            if dep not in state:
                found = visit(dep)
                if found:
                    return found
        stack.pop()
        state[module] = 2
        return None

    for module in sorted(graph.modules):
        if module not in state:
            cycle = visit(module)
            assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_import_zoo_loads_no_training_code_lightning_or_ray():
    assert _loaded_after("import zoo", ("generators", "weightnets", "weightzoo", "lightning", "ray",
                                         "matplotlib")) == []


def test_import_kernels_loads_no_store_code():
    assert _loaded_after("import kernels", ("zoo", "zarr", "pandas", "generators", "weightnets")) == []


def test_parsing_a_spec_loads_no_ray():
    assert _loaded_after("from generators.spec import load_spec; load_spec('demo')", ("ray", "weightnets")) == []


def test_nothing_imports_the_cli_package():
    graph = grimp.build_graph(*PACKAGES)
    importers = {m for m in graph.find_modules_that_directly_import("weightzoo")} | {
        m for sub in graph.find_children("weightzoo") for m in graph.find_modules_that_directly_import(sub)}
    assert {m for m in importers if not m.startswith("weightzoo")} == set()
