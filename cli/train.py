"""``segsuite train``: train a model on labelled data."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from .common import domain, not_implemented, require_path


def train(
    domain_name: Annotated[str | None, typer.Argument(metavar="[DOMAIN]", help="Domain whose formats and defaults to use")] = None,
    data: Annotated[Path | None, typer.Option(help="Training data: paired folders (images/, masks/) or a manifest")] = None,
    val: Annotated[Path | None, typer.Option(help="Validation data in the same form")] = None,
    model: Annotated[str | None, typer.Option(help="Architecture name (see `segsuite models`)")] = None,
    classes: Annotated[str | None, typer.Option(help="Comma-separated class names, or a class-map JSON file")] = None,
    epochs: Annotated[int, typer.Option(help="Number of epochs")] = 20,
    output: Annotated[Path, typer.Option(help="Run folder for checkpoints and logs")] = Path("runs/train"),
) -> None:
    """Train a segmentation model; writes best/last checkpoints and CSV/TensorBoard logs to --output."""
    domain(domain_name)
    require_path(data, "training data (--data)")
    raise not_implemented("train", "training")
