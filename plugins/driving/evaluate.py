"""Cityscapes-style evaluation: IoU per train class, mIoU over the 19 classes, and category IoU."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from .classes import CITYSCAPES_CATEGORIES


def category_iou(confusion: np.ndarray, names: tuple[str, ...]) -> dict[str, float]:
    """IoU of the 7 Cityscapes categories: classes are merged within a category first."""
    cats = sorted({CITYSCAPES_CATEGORIES[n] for n in names if n in CITYSCAPES_CATEGORIES})
    index = {c: i for i, c in enumerate(cats)}
    owner = [index.get(CITYSCAPES_CATEGORIES.get(n, ""), -1) for n in names]
    merged = np.zeros((len(cats), len(cats)), np.int64)
    for t, ct in enumerate(owner):
        for p, cp in enumerate(owner):
            if ct >= 0 and cp >= 0:
                merged[ct, cp] += confusion[t, p]
    tp = np.diag(merged).astype(float)
    denom = merged.sum(0) + merged.sum(1) - tp
    return {c: (float(tp[i] / denom[i]) if denom[i] else float("nan")) for c, i in index.items()}


def evaluate_scenes(checkpoint: str | Path, data: str | Path, output: str | Path | None, *, device: str = "auto") -> dict[str, Any]:
    import typer

    from segsuite.core import tasks
    from segsuite.core.checkpoint import read_card

    from .datasets import camvid_format, cityscapes_format

    root = Path(data)
    fmt = None
    if (root / "leftImg8bit").is_dir():
        fmt = cityscapes_format
    elif (root / "val").is_dir() and (root / "valannot").is_dir():
        fmt = camvid_format
    metrics = tasks.evaluate(checkpoint, data, output, device=device, dataset_format=fmt)
    names = tuple(read_card(checkpoint).classes.names)
    result = metrics.to_dict()
    typer.echo(metrics.table())
    if all(n in CITYSCAPES_CATEGORIES for n in names):
        cats = category_iou(metrics.confusion, names)
        result["category_iou"] = cats
        valid = [v for v in cats.values() if np.isfinite(v)]
        result["mean_category_iou"] = float(np.mean(valid)) if valid else None
        typer.echo("\ncategory IoU: " + ", ".join(f"{c} {v:.4f}" for c, v in cats.items()))
        if valid:
            typer.echo(f"mean category IoU {np.mean(valid):.4f}")
        if output is not None:
            from segsuite.core.io import write_json

            write_json(Path(output) / "metrics.json", {**result, "checkpoint": str(checkpoint), "data": str(data)})
    return result
