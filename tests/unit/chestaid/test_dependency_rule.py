"""The ML core never imports the service, SQLAlchemy, pynetdicom or a web framework."""

from __future__ import annotations

import ast
from pathlib import Path

import chestaid

FORBIDDEN = (
    "daemon",
    "sqlalchemy",
    "pynetdicom",
    "alembic",
    "apscheduler",
    "fastapi",
    "starlette",
    "litestar",
    "flask",
    "django",
    "uvicorn",
    "aiohttp",
)


def _imported_roots(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    roots: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            roots.add(node.module.split(".")[0])
    return roots


def test_chestaid_imports_nothing_of_the_service() -> None:
    package = Path(chestaid.__file__).parent
    files = sorted(package.rglob("*.py"))
    assert len(files) > 10, "the walk must actually see the package"
    offenders = {
        str(f.relative_to(package)): sorted(_imported_roots(f) & set(FORBIDDEN)) for f in files
    }
    assert {k: v for k, v in offenders.items() if v} == {}


def test_the_checker_catches_an_offender(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("import os\nfrom daemon.scp import x\nimport sqlalchemy.orm\n")
    assert _imported_roots(bad) & set(FORBIDDEN) == {"daemon", "sqlalchemy"}
