"""Shared fixtures. Everything test data needs is generated here or by committed code."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def cli() -> Callable[..., "object"]:
    """Invoke the CLI in-process with click's runner and a freshly loaded plugin registry."""
    from click.testing import CliRunner

    from segsuite.cli.app import build_cli
    from segsuite.core.plugins import load_plugins, set_registry

    def invoke(*args: str, registry=None):
        reg = registry if registry is not None else load_plugins(entry_points=False)
        command = build_cli(reg)
        try:
            return CliRunner().invoke(command, [str(a) for a in args], prog_name="segsuite")
        finally:
            set_registry(None)

    return invoke


@pytest.fixture
def segsuite_proc() -> Callable[..., subprocess.CompletedProcess]:
    """Run the real ``segsuite`` entry point in a subprocess (what a user's shell does)."""

    def run(*args: str, env: dict[str, str] | None = None, pythonpath: list[Path] = (),
            cwd: Path | None = None) -> subprocess.CompletedProcess:
        full_env = {**os.environ, **(env or {})}
        if pythonpath:
            full_env["PYTHONPATH"] = os.pathsep.join([*map(str, pythonpath), full_env.get("PYTHONPATH", "")])
        code = "import sys; from segsuite.cli.app import main; sys.exit(main())"
        return subprocess.run(
            [sys.executable, "-c", code, *map(str, args)],
            capture_output=True, text=True, env=full_env, timeout=300, cwd=cwd,
        )

    return run


def assert_one_line_error(result, *fragments: str, code: int = 2) -> None:
    """Exit ``code``, exactly one line on stderr naming the problem, no traceback."""
    stderr = result.stderr
    exit_code = result.exit_code if hasattr(result, "exit_code") else result.returncode
    assert exit_code == code, stderr
    lines = [ln for ln in stderr.splitlines() if ln.strip() and not ln.startswith("segsuite: warning:")]
    assert len(lines) == 1, f"expected one error line, got:\n{stderr}"
    assert "Traceback" not in stderr
    assert lines[0].startswith("segsuite: error: ")
    for frag in fragments:
        assert frag in lines[0], f"{frag!r} not in {lines[0]!r}"
