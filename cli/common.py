"""Small helpers shared by the command modules."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from segsuite.core.errors import NotImplementedYet
from segsuite.core.jobs import expand_inputs, require_path

__all__ = ["domain", "execute_job", "expand_inputs", "not_implemented", "registry", "require_path"]


def registry() -> Any:
    from segsuite.core.plugins import get_registry

    return get_registry()


def domain(name: str | None) -> Any:
    """The named domain (``None`` stays ``None``); unknown names are a one-line error."""
    return None if name is None else registry().domain(name)


def not_implemented(command: str, where: str) -> NotImplementedYet:
    return NotImplementedYet(f"segsuite {command}: {where} is not implemented yet")


def card_of(model: Path) -> Any:
    """The model card of a checkpoint or of a segsuite ONNX export."""
    if str(model).lower().endswith(".onnx"):
        from segsuite.core.export import OnnxSegmentationModel

        return OnnxSegmentationModel(model).card
    from segsuite.core.checkpoint import read_card

    return read_card(model)


def execute_job(job: Any, *, report: Path | None = None, class_map: Any = None, title: str = "",
                debug: bool = False, what: str = "segmenting") -> Any:
    """Run ``job`` through the core executor, write ``--report``, and exit with the job's status
    (0 all ok, 2 some failed, 130/143 interrupted)."""
    import click
    import typer

    from segsuite.core.jobs import JobConsole, files_under, record_written, run_job

    if report is not None:
        from segsuite.core.report import check_report_folder

        check_report_folder(report)
    result = run_job(job, console=JobConsole(debug=debug), what=what)
    ok = sum(r.status == "ok" for r in result.results)
    skipped = sum(r.status == "skipped" for r in result.results)
    if not result.interrupted and ok + skipped:
        click.echo(f"wrote {ok} result(s)" + (f", skipped {skipped}" if skipped else "")
                   + f"; summary: {result.summary}")
    if report is not None and result.records and not result.interrupted:
        from segsuite.core.report import write_report

        section = job.pipeline.report_section(result.records, class_map, report)
        index = write_report(report, [section], title=title or f"segsuite {job.command}: {len(result.records)} result(s)")
        record_written(files_under(report))
        click.echo(f"report: {index}")
    if result.exit_code:
        raise typer.Exit(result.exit_code)
    return result

