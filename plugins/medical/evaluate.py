"""``segsuite evaluate medical``: per-class Dice, HD95 and NSD in mm and volume error, per case.

Each case goes through exactly the pipeline ``segsuite run medical`` uses (model grid and
back), and is scored on the reference label's own voxel grid with its own spacing, so
the numbers are those a user would get from the written label volumes. Voxel-wise IoU,
accuracy and the confusion matrix come from the core's ConfusionMatrix as in every
other domain.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Any

import numpy as np

NSD_TOLERANCE_MM = 2.0


def evaluate_volumes(checkpoint: Path, data: Path, output: Path | None, *, device: str = "auto",
                     tolerance_mm: float = NSD_TOLERANCE_MM) -> dict[str, Any]:
    """Score ``checkpoint`` on the labelled cases under ``data`` (see :func:`.dataset.scan_cases`); with
    ``output``, write ``metrics.json``, ``per_case.csv`` and ``confusion.png`` there. Prints nothing
    (:func:`evaluation_text` is what ``segsuite evaluate medical`` prints)."""
    import torch

    from segsuite.core.io import atomic_path, write_json
    from segsuite.core.metrics import ConfusionMatrix

    from .dataset import load_case, scan_cases
    from .metrics import case_metrics
    from .preprocess import voxel_sizes
    from .run import VolumeModel, check_intensities

    model = VolumeModel.load(checkpoint, device)
    classes = model.predictor.class_map
    cm = ConfusionMatrix(classes.num_classes, classes.ignore_index, class_names=list(classes.names))
    per_case = []
    for case in scan_cases(data):
        image, ref, affine = load_case(case, classes)
        if image.shape[0] != model.predictor.model.in_channels:
            from segsuite.core.errors import InputFileError

            raise InputFileError(f"{case.images[0]}: {image.shape[0]} channel(s), the model takes {model.predictor.model.in_channels}")
        check_intensities(image, case.images[0], model.prep)  # outside the CT window: no score from the bias
        pred = model.predict(image, affine)[0]
        spacing = tuple(float(s) for s in voxel_sizes(affine))
        cm.update(torch.from_numpy(pred)[None], torch.from_numpy(ref)[None])
        per_case.append({"case": case.name, "spacing_mm": spacing,
                         "classes": case_metrics(pred, ref, spacing, classes.names, tolerance_mm=tolerance_mm,
                                                 ignore_index=classes.ignore_index)})
    voxel = cm.compute()
    summary: dict[str, Any] = {}
    for name in classes.names[1:]:
        rows = [c["classes"][name] for c in per_case]
        summary[name] = {key: _mean([r[key] for r in rows]) for key in ("dice", "hd95_mm", "nsd", "volume_error_ml", "volume_error_pct")}
        summary[name]["cases_scored"] = sum(not math.isnan(r["dice"]) for r in rows)
    result = {
        "checkpoint": str(checkpoint), "data": str(data), "cases": len(per_case), "nsd_tolerance_mm": tolerance_mm,
        "mean_dice": _mean([summary[n]["dice"] for n in classes.names[1:]]),
        "classes": summary, "per_case": per_case,
        "voxel_metrics": voxel.to_dict(),
        "policy": "a class absent from both reference and prediction is left out of its mean (NaN); "
                  "absent from exactly one: Dice 0, NSD 0, HD95 undefined",
        "disclaimer": "research use only; not for diagnostic use",
        "output": str(output) if output is not None else None,
    }
    if output is not None:
        out = Path(output)
        out.mkdir(parents=True, exist_ok=True)
        write_json(out / "metrics.json", _nan_to_none(result))
        with atomic_path(out / "per_case.csv") as tmp, tmp.open("w", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(["case", "class", "dice", "hd95_mm", "nsd", "reference_ml", "predicted_ml", "volume_error_ml"])
            for c in per_case:
                for name, m in c["classes"].items():
                    writer.writerow([c["case"], name] + ["" if _isnan(m[k]) else m[k] for k in
                                                         ("dice", "hd95_mm", "nsd", "reference_ml", "predicted_ml", "volume_error_ml")])
        from segsuite.core.data.images import write_image
        from segsuite.core.visualize import confusion_chart

        write_image(out / "confusion.png", confusion_chart(voxel.confusion, list(classes.names)))
    return result


def evaluation_text(result: dict[str, Any]) -> str:
    """The per-structure table ``segsuite evaluate medical`` prints for a result of :func:`evaluate_volumes`."""
    lines = [f"{result['cases']} case(s); NSD tolerance {result['nsd_tolerance_mm']} mm",
             f"{'class':<14}{'Dice':>8}{'HD95 mm':>10}{'NSD':>8}{'vol err mL':>12}{'scored':>8}"]
    for name, s in result["classes"].items():
        lines.append(f"{name:<14}{_fmt(_num(s['dice']))}{_fmt(_num(s['hd95_mm']), 10, 2)}{_fmt(_num(s['nsd']))}"
                     f"{_fmt(_num(s['volume_error_ml']), 12, 2)}{s['cases_scored']:>8}")
    lines.append(f"mean Dice {_fmt(_num(result['mean_dice']), 0)}   voxel mIoU {_num(result['voxel_metrics']['mean_iou']):.4f}")
    if result.get("output"):
        lines.append(f"wrote {Path(result['output']) / 'metrics.json'}, per_case.csv, confusion.png")
    return "\n".join(lines)


def _num(v: Any) -> float:
    """A metric as a float; ``None`` (an undefined metric read back from metrics.json) is NaN."""
    return math.nan if v is None else float(v)


def _isnan(v: Any) -> bool:
    return isinstance(v, float) and math.isnan(v)


def _mean(values: list[float]) -> float:
    vals = [v for v in values if not _isnan(v)]
    return float(np.mean(vals)) if vals else math.nan


def _fmt(v: float, width: int = 8, digits: int = 4) -> str:
    return f"{'n/a':>{width}}" if _isnan(v) else f"{v:>{width}.{digits}f}"


def _nan_to_none(obj: Any) -> Any:
    """JSON has no NaN: undefined metrics are written as null."""
    if isinstance(obj, dict):
        return {k: _nan_to_none(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_nan_to_none(v) for v in obj]
    return None if _isnan(obj) else obj
