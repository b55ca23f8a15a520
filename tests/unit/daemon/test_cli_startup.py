"""The command line loads what a command needs: the queue's commands and ``--help`` do
not wait for the model's libraries or the web application."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

PROBE = textwrap.dedent(
    """
    import contextlib, io, json, sys
    from daemon.cli import main

    argv = json.loads(sys.argv[1])
    with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit):
        status = main(argv)
    heavy = ("torch", "fastapi", "daemon.service", "daemon.web.app", "daemon.serving")
    print(json.dumps({"status": status if argv[0] != "--help" else 0,
                      "loaded": [name for name in heavy if name in sys.modules]}))
    """
)


def _loaded(tmp_path: Path, *argv: str) -> dict[str, object]:
    done = subprocess.run(
        [sys.executable, "-c", PROBE, json.dumps(list(argv))],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    result: dict[str, object] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def test_help_and_the_queue_commands_load_neither_the_model_nor_the_web(tmp_path: Path) -> None:
    config = tmp_path / "chestaid.toml"
    config.write_text(f'[storage]\nvar_dir = "{tmp_path / "var"}"\n', encoding="utf-8")
    assert _loaded(tmp_path, "db", "upgrade", "--config", str(config)) == {
        "status": 0,
        "loaded": [],
    }
    for argv in (("--help",), ("jobs", "list"), ("outbox", "list"), ("status",)):
        config_args = () if argv == ("--help",) else ("--config", str(config))
        assert _loaded(tmp_path, *argv, *config_args) == {"status": 0, "loaded": []}, argv
