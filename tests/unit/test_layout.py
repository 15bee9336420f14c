"""Packaging and layering rules: the import root, the http trap, the dependency direction."""

from __future__ import annotations

import ast
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _imports(path: Path) -> set[str]:
    return _imports_of(path.read_text(), path)


def _imports_of(source: str, path: Path) -> set[str]:
    """Every module (or module member) `source`, the text of `path`, imports, by absolute name:
    `from aura import engine` is `aura.engine`; relative imports resolve against its package."""
    package = ["aura", *path.relative_to(ROOT).parent.parts]
    names: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            module = ".".join([*base, *([node.module] if node.module else [])])
            names.add(module)
            names.update(f"{module}.{alias.name}" for alias in node.names)
    return names


def test_imports_are_read_by_absolute_name() -> None:
    source = "from aura import engine\nfrom . import log\nfrom ..http import app\nimport json\n"
    names = _imports_of(source, ROOT / "store" / "example.py")
    assert {"aura.engine", "aura.store.log", "aura.http.app", "json"} <= names


def test_projections_import_only_the_stdlib_msgspec_and_themselves() -> None:
    # pure standard modules only: no I/O, no clock, no logging
    allowed_roots = {"__future__", "collections", "datetime", "enum", "typing", "msgspec"}
    allowed_roots |= {"math", "statistics"}
    for path in (ROOT / "projections").glob("*.py"):
        for name in _imports(path):
            assert name.split(".")[0] in allowed_roots or name.startswith("aura.projections"), (
                f"{path.name} imports {name}"
            )


def test_store_imports_nothing_of_ours_but_projections_and_itself() -> None:
    for path in (ROOT / "store").glob("*.py"):
        for name in _imports(path):
            if name.startswith("aura."):
                assert name.startswith(("aura.store", "aura.projections")), f"{path.name}: {name}"


def test_engine_does_not_import_http() -> None:
    for path in (ROOT / "engine").rglob("*.py"):
        assert not any(n.startswith("aura.http") for n in _imports(path)), path


def test_http_folder_is_not_a_regular_package() -> None:
    assert not (ROOT / "http" / "__init__.py").exists()


def test_every_folder_with_modules_is_listed_as_a_package() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    listed = set(config["tool"]["setuptools"]["packages"])
    skip = {".venv", "tests", "bench", "docs", "build", "data", "scripts", ".typecheck"}
    for path in ROOT.rglob("*.py"):
        parts = path.relative_to(ROOT).parts
        if parts[0] in skip or len(parts) == 1 or parts[0].startswith("."):
            continue
        package = ".".join(("aura", *parts[:-1]))
        assert package in listed, f"{path} is in {package}, missing from pyproject packages"


def test_stdlib_http_and_aiohttp_import_from_the_repo_root() -> None:
    code = "import http.client, aiohttp, aura.store, aura.engine.errors.taxonomy; "
    code += "print(http.client.__file__)"
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert str(ROOT) not in result.stdout
