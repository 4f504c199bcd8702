"""Small helpers shared by the command modules."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from segsuite.core.errors import NotImplementedYet
from segsuite.core.jobs import expand_inputs, require_path

__all__ = ["card_of", "domain", "engine_settings", "execute_job", "expand_inputs", "not_implemented", "registry", "require_path"]


def registry() -> Any:
    from segsuite.core.plugins import get_registry

    return get_registry()


def domain(name: str | None) -> Any:
    """The named domain (``None`` stays ``None``); unknown names are a one-line error."""
    return None if name is None else registry().domain(name)


def not_implemented(command: str, where: str) -> NotImplementedYet:
    return NotImplementedYet(f"segsuite {command}: {where} is not implemented yet")


def card_of(model: Path) -> Any:
    """:func:`segsuite.core.checkpoint.card_of`, imported when used (torch stays out of ``--help``)."""
    from segsuite.core.checkpoint import card_of as read

    return read(model)


def engine_settings(engine: str | None = None, address: str | None = None, workers: int | None = None,
                    gpus_per_worker: float | None = None) -> Any:
    """``--engine``, ``--address``, ``--workers``, ``--gpus-per-worker`` checked into an
    :class:`~segsuite.core.engines.EngineSettings` (before any input is read)."""
    from segsuite.core.engines import EngineSettings

    return EngineSettings(kind=engine or "local", address=address, workers=workers,  # type: ignore[arg-type]
                          gpus_per_worker=float(gpus_per_worker or 0.0))


def execute_job(job: Any, *, report: Path | None = None, class_map: Any = None, title: str = "",
                debug: bool = False, what: str = "segmenting", engine: Any = None) -> Any:
    """Run ``job`` through the core executor (plus ``--report``) on the engine ``engine`` (an
    :class:`~segsuite.core.engines.EngineSettings`; default: this process) and exit with the job's
    status (0 all ok, 2 some failed, 130/143 interrupted)."""
    import typer

    from segsuite.core.engines import make_engine
    from segsuite.core.jobs import JobConsole, run_and_report

    result = run_and_report(job, report=report, class_map=class_map, title=title, console=JobConsole(debug=debug),
                            what=what, engine=make_engine(engine))
    if result.exit_code:
        raise typer.Exit(result.exit_code)
    return result
