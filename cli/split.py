"""``segsuite split``: reproducible train/val/test manifests, grouped, or k folds."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from .common import not_implemented, require_path


def split(
    data: Annotated[Path, typer.Argument(help="Paired folders (images/, masks/) or a manifest")],
    output: Annotated[Path, typer.Option(help="Folder for train/val/test manifests")] = Path("splits"),
    ratios: Annotated[str, typer.Option(help="train,val,test fractions")] = "0.7,0.15,0.15",
    seed: Annotated[int, typer.Option(help="Random seed")] = 0,
    group_by: Annotated[str | None, typer.Option(help="Regex whose first group is the group id (e.g. patient)")] = None,
    folds: Annotated[int | None, typer.Option(help="Write K cross-validation folds instead")] = None,
) -> None:
    """Partition a dataset into train/val/test manifests so that no group crosses splits."""
    require_path(data, "dataset")
    raise not_implemented("split", "partitioning")
