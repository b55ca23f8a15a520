"""The daemon's layers, checked on its imports.

From the top: the web role and the CLI (and the service that assembles the roles);
the services (worker, sender, SCP, serving, worklist, monitoring, ...); the queue and
the database (``daemon.db``). A layer imports only from below. The web and the CLI
never speak SQL: they use the services' functions inside :func:`reading` /
:func:`writing` units, so neither imports SQLAlchemy. Nothing in ``daemon.db``
imports a service.
"""

from __future__ import annotations

import ast
from pathlib import Path

import daemon

PACKAGE = Path(daemon.__file__).parent
TOP = ("daemon.web", "daemon.cli", "daemon.service")
DB = "daemon.db"
# Modules every layer may use: configuration, error types, logging set-up.
FOUNDATION = ("daemon.settings", "daemon.errors", "daemon.logs")


def _module(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _within(name: str, prefixes: tuple[str, ...] | str) -> bool:
    prefixes = (prefixes,) if isinstance(prefixes, str) else prefixes
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def imports(path: Path) -> set[str]:
    """Every absolute module name a file imports (``from daemon import x`` gives daemon.x)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            # The daemon imports absolutely (a relative import would hide its layer).
            assert node.level == 0, f"{path}: relative import at line {node.lineno}"
            assert node.module is not None
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def _files() -> dict[str, set[str]]:
    files = {_module(f): imports(f) for f in sorted(PACKAGE.rglob("*.py"))}
    assert len(files) > 30 and "daemon.web.app" in files, "the walk must see the package"
    return files


def _layer(name: str) -> int:
    if _within(name, TOP):
        return 2
    if _within(name, DB):
        return 0
    return 1


def violations(files: dict[str, set[str]]) -> dict[str, list[str]]:
    """Per module, the imports that break the rules."""
    found: dict[str, list[str]] = {}
    for module, names in files.items():
        bad = set()
        for name in names:
            if _within(module, ("daemon.web", "daemon.cli")) and _within(name, "sqlalchemy"):
                bad.add(name)
            if not _within(name, "daemon") or name == "daemon" or _within(name, FOUNDATION):
                continue
            if name not in files and name.rsplit(".", 1)[0] in files:
                name = name.rsplit(".", 1)[0]  # a name imported from a module
            if name in files and _layer(name) > _layer(module):
                bad.add(name)
        if bad:
            found[module] = sorted(bad)
    return found


def test_each_layer_imports_only_from_below() -> None:
    assert violations(_files()) == {}


def test_the_checker_catches_each_kind_of_offence() -> None:
    files = _files()
    files["daemon.web.pages"] = files["daemon.web.pages"] | {"sqlalchemy.orm"}
    files["daemon.cli"] = files["daemon.cli"] | {"sqlalchemy"}
    files["daemon.db.queue"] = files["daemon.db.queue"] | {"daemon.worker.Worker"}
    files["daemon.worklist"] = files["daemon.worklist"] | {"daemon.web.views"}
    assert violations(files) == {
        "daemon.cli": ["sqlalchemy"],
        "daemon.db.queue": ["daemon.worker"],
        "daemon.web.pages": ["sqlalchemy.orm"],
        "daemon.worklist": ["daemon.web.views"],
    }
