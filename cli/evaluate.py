"""``segsuite evaluate``: metrics of a checkpoint on labelled data."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from .common import domain, not_implemented, require_path


def evaluate(
    domain_name: Annotated[str | None, typer.Argument(metavar="[DOMAIN]", help="Domain (default: from the checkpoint)")] = None,
    model: Annotated[Path | None, typer.Option(help="segsuite checkpoint")] = None,
    data: Annotated[Path | None, typer.Option(help="Labelled data: paired folders or a manifest")] = None,
    output: Annotated[Path, typer.Option(help="Folder for metrics JSON and confusion-matrix PNG")] = Path("evaluation"),
) -> None:
    """Evaluate a checkpoint: per-class IoU/accuracy/Dice, mIoU, confusion matrix (JSON + PNG)."""
    domain(domain_name)
    require_path(model, "checkpoint (--model)", kind="file")
    require_path(data, "evaluation data (--data)")
    raise not_implemented("evaluate", "evaluation")
