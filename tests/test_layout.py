"""How the suite is laid out: every test module has a kind, builders come from support modules,
and the benchmarks import the package, never the tests."""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Final

import pytest

from tests.conftest import KINDS

ROOT = Path(__file__).resolve().parent.parent


def imported_modules(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return names


def test_every_test_module_has_a_kind() -> None:
    modules = {path.stem for path in (ROOT / "tests").glob("test_*.py")}
    assert modules - set(KINDS) == set(), "add these to KINDS in tests/conftest.py"


def test_no_test_module_imports_another() -> None:
    for path in (ROOT / "tests").glob("*.py"):
        imports = {name for name in imported_modules(path) if name.startswith("tests.test_")}
        assert not imports, f"{path.name} imports {sorted(imports)}: move the builder to support"


def test_benchmarks_do_not_import_the_tests() -> None:
    for path in (ROOT / "bench").glob("*.py"):
        imports = {name for name in imported_modules(path) if name.split(".")[0] == "tests"}
        assert not imports, f"bench/{path.name} imports {sorted(imports)}"


# The pure core: plain data and decisions, the clock passed in. The edges import it, never the
# other way round.
PURE: Final = (
    "auth",
    "options",
    "bodies",
    "commands",
    "exits",
    "filekind",
    "headers",
    "jsonscan",
    "outcome",
    "readiness",
    "redact",
    "schedule",
    "secret",
    "settings",
    "throttle",
    "values",
    "injector/wiring",
    "injector/patch",
    "injector/review",
    "hub/cache",
    "emulator/scenario",
)
IO_PACKAGES: Final = ("aiohttp", "prometheus_client", "structlog", "multidict", "yarl")


def absolute_imports(path: Path) -> set[str]:
    """Every module `path` imports, relative imports resolved against its package."""
    package = path.relative_to(ROOT).with_suffix("").parts[:-1]
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else ()
            names.add(".".join([*base, *([node.module] if node.module else [])]))
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return names


@pytest.mark.parametrize("module", PURE)
def test_a_pure_module_imports_no_io_library_and_no_role(module: str) -> None:
    imports = absolute_imports(ROOT / "sidecar" / f"{module}.py")
    io = {name for name in imports if name.split(".")[0] in IO_PACKAGES}
    assert not io, f"sidecar/{module}.py imports {sorted(io)}"
    roles = {
        name
        for name in imports
        if name.startswith(("sidecar.agent", "sidecar.hub", "sidecar.runtime", "sidecar.emulator"))
        and name != "sidecar.emulator.scenario"
    }
    assert not roles, f"sidecar/{module}.py imports {sorted(roles)}"
