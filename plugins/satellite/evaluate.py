"""``segsuite evaluate satellite`` (and the demo's scores): labelled scenes tiled by the satellite
pipeline through the job executor, exactly as ``segsuite tile`` runs them, then compared with
their labels.

Layouts read (:func:`labelled_scenes`): a folder with ``images/`` and ``masks/`` (the
``geotiff`` dataset format, matched by file stem); a folder of scenes, each with
``SCENE_labels.tif`` beside it (the shipped sample); or one such scene file. Every label
raster must lie on its scene's grid. Pixels the labels mark as ignore or nodata, and pixels
where the scene itself has no data (nodata in the class raster), are not scored. Label
rasters are read strip by strip, so a large scene costs a strip's memory.
"""

from __future__ import annotations

import contextlib
import csv
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from segsuite.core.checkpoint import card_of
from segsuite.core.errors import InputFileError, SegsuiteError
from segsuite.core.jobs import JobConsole

from .pipeline import SCENE_SUFFIXES

LABELS_SUFFIX = "_labels"
STRIP_ROWS = 1024


def labelled_scenes(data: Path) -> list[tuple[Path, Path]]:
    """``(scene, labels)`` pairs of a labelled layout (see the module docstring), each checked for alignment."""
    from segsuite.core.jobs import require_path, written_by_segsuite

    from .dataset import check_pair, scan_scenes

    data = require_path(data, "evaluation data (--data)")
    if data.is_dir() and (data / "images").is_dir():
        return [(p.image, p.mask) for p in scan_scenes(data)]
    if data.is_file():
        scenes = [data]
    else:
        ours = written_by_segsuite(data)
        scenes = [p for p in sorted(data.iterdir()) if p.is_file() and p.suffix.lower() in SCENE_SUFFIXES
                  and not p.name.startswith(".") and p.name not in ours and not p.stem.endswith(LABELS_SUFFIX)]
        if not scenes:
            raise InputFileError(f"{data}: no labelled scenes; expected images/ and masks/ folders of GeoTIFFs, "
                                 f"or SCENE.tif files with SCENE{LABELS_SUFFIX}.tif beside them")
    pairs = []
    for scene in scenes:
        labels = next((p for p in (scene.with_name(f"{scene.stem}{LABELS_SUFFIX}{s}") for s in SCENE_SUFFIXES)
                       if p.is_file()), None)
        if labels is None:
            raise InputFileError(f"{scene}: no labels {scene.stem}{LABELS_SUFFIX}.tif beside it")
        check_pair(scene, labels)
        pairs.append((scene, labels))
    return pairs


class _QuietConsole(JobConsole):
    """An evaluation's job console: the scenes' lines and errors are not printed (a failed scene
    stops the evaluation with its own one-line error); warnings are."""

    def __init__(self) -> None:
        super().__init__(quiet=True)

    def error(self, text: str) -> None:
        pass


def evaluate_scenes(pipeline: Any, checkpoint: Path, data: Path, output: Path | None, windows: Mapping[str, Any], *,
                    device: str = "auto") -> dict[str, Any]:
    """Tile the labelled scenes of ``data`` with ``pipeline`` (options ``windows``) and score them.

    With ``output``: the class rasters go to ``output/predictions`` (with the job's
    ``summary.json``) and ``metrics.json``, ``per_image.csv`` (one row per scene) and
    ``confusion.png`` to ``output``. Returns the metrics (:meth:`SegmentationMetrics.to_dict`)
    plus the checkpoint, data and windows.
    """
    from segsuite.core.jobs import Job, run_job
    from segsuite.core.metrics import SegmentationMetrics
    from segsuite.core.pipeline import check_options

    pairs = labelled_scenes(Path(data))
    options = check_options(pipeline.options, windows)
    with contextlib.ExitStack() as stack:
        folder = Path(output) if output is not None else Path(stack.enter_context(
            tempfile.TemporaryDirectory(prefix="segsuite-evaluate-")))
        job = Job(pipeline=pipeline, inputs=[scene for scene, _ in pairs], checkpoint=Path(checkpoint),
                  output=folder / "predictions", options=options, device=device, command="evaluate satellite")
        result = run_job(job, console=_QuietConsole(), what="tiling")
        if result.interrupted:
            from segsuite.core.jobs import Interrupted

            raise Interrupted(f"evaluation interrupted ({result.interrupted})", 15 if result.interrupted == "SIGTERM" else 2)
        if result.failed:
            raise SegsuiteError(result.failed[0].error or f"{result.failed[0].source}: failed")
        class_map = card_of(Path(checkpoint)).classes
        names = list(class_map.names)
        total = np.zeros((class_map.num_classes,) * 2, np.int64)
        rows = []
        for (scene, labels), done in zip(pairs, result.results):
            prediction = Path(done.outputs["classes"])
            confusion = scene_confusion(prediction, labels, class_map)
            m = SegmentationMetrics(names, confusion)
            rows.append({"image": scene.name, "global_accuracy": m.global_accuracy, "mean_accuracy": m.mean_accuracy,
                         "mean_iou": m.mean_iou, "weighted_iou": m.weighted_iou, "labels": str(labels),
                         "prediction": str(prediction) if output is not None else None})
            total += confusion
    metrics = SegmentationMetrics(names, total, per_image=rows)
    summary = {**metrics.to_dict(), "checkpoint": str(checkpoint), "data": str(data), **dict(windows),
               "output": str(output) if output is not None else None}
    if output is not None:
        _write(Path(output), summary, metrics)
    return summary


def scene_confusion(prediction: Path, labels: Path, class_map: Any) -> np.ndarray:
    """The ``(K, K)`` confusion (rows = truth) of a class raster against its labels, strip by strip."""
    import rasterio
    import torch
    from rasterio.windows import Window

    from segsuite.core.metrics import ConfusionMatrix

    ignore = class_map.ignore_index
    cm = ConfusionMatrix(class_map.num_classes, ignore, class_names=list(class_map.names))
    with rasterio.open(prediction) as pred_src, rasterio.open(labels) as truth_src:
        nodata = pred_src.nodata
        for y0 in range(0, pred_src.height, STRIP_ROWS):
            win = Window(0, y0, pred_src.width, min(STRIP_ROWS, pred_src.height - y0))
            pred = pred_src.read(1, window=win).astype(np.int64)
            truth = truth_src.read(1, window=win).astype(np.int64)
            if class_map.raw_ids is not None:
                truth = class_map.to_train_ids(truth)
            scored = truth_src.read_masks(1, window=win) > 0
            if nodata is not None:
                scored &= pred != int(nodata)
                pred = np.where(pred == int(nodata), 0, pred)
            truth = np.where(scored, truth, ignore)
            cm.update(torch.from_numpy(pred)[None], torch.from_numpy(truth)[None])
    return cm.matrix()


def _write(output: Path, summary: Mapping[str, Any], metrics: Any) -> None:
    from segsuite.core.io import atomic_path, write_json
    from segsuite.core.report import write_confusion

    write_json(output / "metrics.json", summary)
    write_confusion(metrics.confusion, metrics.class_names, output / "confusion.png")
    rows = summary["per_image"]
    keys = ["image", "mean_iou", "global_accuracy", "mean_accuracy", "weighted_iou", "labels", "prediction"]
    with atomic_path(output / "per_image.csv") as tmp:
        with tmp.open("w", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(keys)
            for row in rows:
                writer.writerow(["" if row.get(k) is None else row.get(k) for k in keys])


def describe_evaluation(result: Mapping[str, Any]) -> str:
    """What ``segsuite evaluate satellite`` prints: the per-class table, each scene, where the files are."""
    from segsuite.core.metrics import SegmentationMetrics
    from segsuite.core.report import fmt

    table = SegmentationMetrics(list(result["per_class"]), np.asarray(result["confusion_matrix"])).table()
    lines = [table, ""]
    for row in result.get("per_image", []):
        lines.append(f"{row['image']}: mean IoU {fmt(row.get('mean_iou'))}, pixel accuracy {fmt(row.get('global_accuracy'))}"
                     + (f" ({row['prediction']})" if row.get("prediction") else ""))
    if result.get("output"):
        out = Path(result["output"])
        lines.append(f"\nper scene: {out / 'per_image.csv'}; confusion matrix: {out / 'confusion.png'}; "
                     f"the class rasters and their summary.json: {out / 'predictions'}")
    return "\n".join(lines)
