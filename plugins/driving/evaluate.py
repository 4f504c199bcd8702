"""Cityscapes-style evaluation: IoU per train class, mIoU over the 19 classes, and category IoU."""

from __future__ import annotations

from collections.abc import Mapping
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


def evaluate_scenes(checkpoint: str | Path, data: str | Path, output: str | Path | None, *,
                    device: str = "auto") -> dict[str, Any]:
    """Score ``checkpoint`` on labelled street scenes: the core metrics (per-class IoU, mIoU over the
    train classes, the ignore label excluded) and, for a Cityscapes class map, the IoU of the 7
    categories and their mean. ``data`` is a Cityscapes root (its val split), a CamVid root, a
    folder of Cityscapes-named frames and label-id files, or paired folders / a manifest.
    Writes ``metrics.json`` (with the category IoU), ``per_image.csv`` and ``confusion.png``
    under ``output``; prints nothing."""
    from segsuite.core import tasks
    from segsuite.core.checkpoint import read_card

    from .formats import detect_format

    metrics = tasks.evaluate(checkpoint, data, output, device=device, dataset_format=detect_format(Path(data)))
    names = tuple(read_card(checkpoint).classes.names)
    result = metrics.to_dict()
    if all(n in CITYSCAPES_CATEGORIES for n in names):
        cats = category_iou(metrics.confusion, names)
        result["category_iou"] = cats
        valid = [v for v in cats.values() if np.isfinite(v)]
        result["mean_category_iou"] = float(np.mean(valid)) if valid else None
        if output is not None:
            from segsuite.core.io import write_json

            write_json(Path(output) / "metrics.json", {**result, "checkpoint": str(checkpoint), "data": str(data)})
    return result


def _metrics_of(result: Mapping[str, Any]) -> Any:
    """The core's metrics object again, from what :func:`evaluate_scenes` returned (for its table)."""
    from segsuite.core.metrics import SegmentationMetrics

    per_class = result["per_class"]
    bf = [v.get("bf_score") for v in per_class.values()]
    mean_bf = result.get("mean_bf_score")
    return SegmentationMetrics(list(per_class), np.asarray(result["confusion_matrix"], np.int64),
                               bf_per_class=np.array([np.nan if b is None else b for b in bf], np.float64),
                               mean_bf=np.nan if mean_bf is None else float(mean_bf))


def describe_scores(result: Mapping[str, Any]) -> str:
    """What ``segsuite evaluate driving`` prints: the per-class table, then the category IoU."""
    lines = [_metrics_of(result).table()]
    cats = result.get("category_iou")
    if cats is not None:
        lines.append("\ncategory IoU: " + ", ".join(f"{c} {v:.4f}" for c, v in cats.items()))
        if result.get("mean_category_iou") is not None:
            lines.append(f"mean category IoU {result['mean_category_iou']:.4f}")
    return "\n".join(lines)


def add_scores(section: Any, result: Mapping[str, Any], output: Path) -> None:
    """The evaluation part of the driving report: metrics and confusion matrix, the category IoU
    and its mean, and the mean IoU as a headline fact."""
    from segsuite.core.report import Evaluation, fmt

    output = Path(output)
    cats = result.get("category_iou") or {}
    extra = [("mean category IoU", result.get("mean_category_iou")), *((f"category IoU {c}", v) for c, v in cats.items())] \
        if cats else []
    section.evaluation = Evaluation.from_metrics(result, confusion=output / "confusion.png", extra=extra,
                                                 source=output / "metrics.json")
    section.notes.append("classes absent from both the labels and the prediction have no IoU (a dash) and are left out of the mean")
    section.facts.append(("mean IoU", fmt(result.get("mean_iou"))))
