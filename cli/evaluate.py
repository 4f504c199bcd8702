"""``segsuite evaluate``: metrics of a checkpoint on labelled data."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from .common import domain, not_implemented, require_path


def evaluate(
    domain_name: Annotated[Optional[str], typer.Argument(metavar="[DOMAIN]", help="Domain (default: from the checkpoint)")] = None,
    model: Annotated[Optional[Path], typer.Option(help="segsuite checkpoint (.safetensors)")] = None,
    data: Annotated[Optional[Path], typer.Option(help="Labelled data: paired folders or a manifest")] = None,
    output: Annotated[Path, typer.Option(help="Folder for metrics.json, per_image.csv and confusion.png")] = Path("evaluation"),
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N")] = "auto",
    report: Annotated[Optional[Path], typer.Option(help="Also write an HTML report (metrics tables, confusion matrix) into this folder")] = None,
    allow_domain_mismatch: Annotated[bool, typer.Option("--allow-domain-mismatch", help="Evaluate a model whose card names another domain (refused by default)")] = False,
) -> None:
    """Evaluate a checkpoint: per-class IoU/accuracy/Dice/BF score, mIoU, confusion matrix (JSON + PNG)."""
    from segsuite.core import tasks
    from segsuite.core.checkpoint import read_card
    from segsuite.core.pipeline import Evaluates

    dom = domain(domain_name)
    require_path(model, "checkpoint (--model)", kind="file")
    require_path(data, "evaluation data (--data)")
    if report is not None:
        from segsuite.core.report import check_report_folder

        check_report_folder(report)
    card = read_card(model)
    if dom is not None:
        card.check_domain(dom.name, model, allow=allow_domain_mismatch)
    if dom is None and card.domain:
        dom = domain(card.domain)
    volumetric = card.model.get("spatial_dims", 2) != 2 or (dom is not None and dom.spatial_dims != 2)
    pipeline = dom.pipeline if dom is not None else None
    if volumetric and not isinstance(pipeline, Evaluates):
        raise not_implemented("evaluate", "evaluation of volumetric (3D) models outside a domain that evaluates volumes")
    if isinstance(pipeline, Evaluates):
        result = pipeline.evaluate(model, data, output, device=device)
        typer.echo(pipeline.describe_evaluation(result))
        if output is not None and (Path(output) / "metrics.json").is_file():
            typer.echo(f"wrote {Path(output) / 'metrics.json'}")
        if report is not None:
            _report(report, result, card, output, dom.name, model, data)
        return
    fmt = tasks.pick_format(dom, data)
    metrics = tasks.evaluate(model, data, output, device=device, dataset_format=fmt)
    typer.echo(metrics.table())
    typer.echo(f"\nwrote {output / 'metrics.json'}, {output / 'per_image.csv'}, {output / 'confusion.png'}")
    if report is not None:
        _report(report, metrics.to_dict(), card, output, dom.name if dom is not None else None, model, data)


def _report(folder: Path, result: dict, card, output: Path, domain_name: str | None, model: Path, data: Path) -> None:
    """``--report``: the metrics the evaluation returned as one report section."""
    from segsuite.core.report import evaluation_section, write_report

    arch = card.model.get("arch", "model")
    section = evaluation_section(result, card.classes, output, folder, domain=domain_name or "evaluation",
                                 title=f"Evaluation of {model.name} ({arch}) on {data.name}")
    typer.echo(f"report: {write_report(folder, [section], title='segsuite evaluate')}")
