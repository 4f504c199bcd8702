"""Small helpers shared by the command modules."""

from __future__ import annotations

import glob
from pathlib import Path
from typing import Any

from segsuite.core.errors import InputFileError, NotImplementedYet


def registry() -> Any:
    from segsuite.core.plugins import get_registry

    return get_registry()


def domain(name: str | None) -> Any:
    """The named domain (``None`` stays ``None``); unknown names are a one-line error."""
    return None if name is None else registry().domain(name)


def require_path(path: Path | None, what: str, *, kind: str = "any") -> Path:
    if path is None:
        raise InputFileError(f"{what} is required")
    if not path.exists():
        raise InputFileError(f"{path}: {what} not found")
    if kind == "dir" and not path.is_dir():
        raise InputFileError(f"{path}: {what} must be a folder")
    if kind == "file" and not path.is_file():
        raise InputFileError(f"{path}: {what} must be a file")
    return path


def expand_inputs(spec: str, suffixes: tuple[str, ...] | None = None) -> list[Path]:
    """A file, a folder (its files with the given suffixes) or a glob pattern -> sorted paths."""
    path = Path(spec)
    if any(ch in spec for ch in "*?["):
        found = [Path(p) for p in sorted(glob.glob(spec, recursive=True))]
    elif path.is_dir():
        found = sorted(p for p in path.iterdir() if p.is_file() and not p.name.startswith("."))
    elif path.exists():
        return [path]
    else:
        raise InputFileError(f"{path}: input not found")
    if suffixes:
        found = [p for p in found if p.name.lower().endswith(tuple(s.lower() for s in suffixes))]
    if not found:
        wanted = f" with suffix {', '.join(suffixes)}" if suffixes else ""
        raise InputFileError(f"{spec}: no input files{wanted}")
    return found


def not_implemented(command: str, where: str) -> NotImplementedYet:
    return NotImplementedYet(f"segsuite {command}: {where} is not implemented yet")
