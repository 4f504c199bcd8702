"""``segsuite split``: reproducible train/val/test manifests, grouped, or k folds."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from .common import require_path


def split(
    data: Annotated[Path, typer.Argument(help="Paired folders (images/, masks/), a manifest, or a domain layout such as a Decathlon folder")],
    output: Annotated[Path, typer.Option(help="Folder for the manifests")] = Path("splits"),
    ratios: Annotated[str, typer.Option(help="train,val,test fractions")] = "0.7,0.15,0.15",
    seed: Annotated[int, typer.Option(help="Random seed")] = 0,
    group_by: Annotated[Optional[str], typer.Option(help="Regex on the file name; its first group is the group id (e.g. patient)")] = None,
    folds: Annotated[Optional[int], typer.Option(help="Write K cross-validation folds instead")] = None,
) -> None:
    """Partition a dataset into train/val/test manifests (CSV) so that no group crosses splits.

    With --folds K, writes fold_1/ ... fold_K/, each with train.csv and val.csv. Use a
    manifest as --data/--val of `segsuite train`.
    """
    from segsuite.core.data.datasets import scan_pairs, write_manifest
    from segsuite.core.data.split import check_folds, kfold_pairs, parse_ratios, split_pairs

    if folds is not None:
        check_folds(folds)
    else:
        parse_ratios(ratios)  # options first: nothing is scanned for a typo
    require_path(data, "dataset")
    pairs = _domain_pairs(data)
    if pairs is None:
        pairs = scan_pairs(data)
    if folds is not None:
        for i, fold in enumerate(kfold_pairs(pairs, folds, seed, group_by), start=1):
            for name, items in fold.items():
                write_manifest(output / f"fold_{i}" / f"{name}.csv", items)
            groups = len({p.group for p in fold["val"]})
            typer.echo(f"fold {i}: {len(fold['train'])} train, {len(fold['val'])} val ({groups} group(s))")
        return
    parts = split_pairs(pairs, ratios, seed, group_by)
    for name, items in parts.items():
        if items:
            write_manifest(output / f"{name}.csv", items)
        groups = len({p.group for p in items})
        typer.echo(f"{name}: {len(items)} samples, {groups} group(s) -> {output / (name + '.csv') if items else '(empty)'}")


def _domain_pairs(data: Path) -> list | None:
    """Cases of a domain dataset layout (e.g. a Decathlon folder) whose format can list them."""
    if not data.is_dir():
        return None
    from segsuite.core.plugins import get_registry

    for dom in get_registry().domains.values():
        for fmt in dom.dataset_formats.values():
            if fmt.detect is not None and fmt.list_pairs is not None and fmt.detect(data):
                return fmt.list_pairs(data)
    return None
