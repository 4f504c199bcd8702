"""Inspection metrics: what quality engineers judge, beyond pixel IoU.

* part level at the working threshold: recall, precision, F1, false-alarm rate and escapes
  (missed NG parts) per 1000 parts;
* defects found vs missed, counted by ground-truth connected components (a defect is found
  when the prediction touches it), and false detections (predicted regions touching none);
* pixel AUROC of the defect probability, and AUPRO up to a false-positive rate of 0.3
  (Bergmann et al., MVTec AD): the per-region overlap averaged over ground-truth regions,
  integrated over FPR in [0, 0.3] and divided by 0.3, so large defects cannot hide missed
  small ones the way pixel AUROC lets them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np


def pixel_auroc(scores: np.ndarray, truth: np.ndarray) -> float:
    """Area under the ROC curve (Mann-Whitney U with ties averaged)."""
    pos, neg = int(truth.sum()), int((~truth).sum())
    if pos == 0 or neg == 0:
        return float("nan")
    order = np.argsort(scores, kind="mergesort")
    _, inverse, counts = np.unique(scores[order], return_inverse=True, return_counts=True)
    average = np.cumsum(counts) - (counts - 1) / 2.0  # 1-based rank of each distinct value, ties averaged
    ranks = np.empty(len(scores), np.float64)
    ranks[order] = average[inverse]
    return float((ranks[truth].sum() - pos * (pos + 1) / 2) / (pos * neg))


def aupro(p_maps: list[np.ndarray], masks: list[np.ndarray], max_fpr: float = 0.3, steps: int = 200) -> float:
    """Normalised area under the per-region-overlap curve for FPR in [0, max_fpr]."""
    import cv2

    regions = []
    for i, m in enumerate(masks):
        n, comp = cv2.connectedComponents((m > 0).astype(np.uint8), connectivity=8)
        regions += [(i, comp == r) for r in range(1, n)]
    if not regions:
        return float("nan")
    good = np.concatenate([p[m == 0] for p, m in zip(p_maps, masks)])
    if good.size == 0:
        return float("nan")
    every = np.concatenate([p.ravel() for p in p_maps])
    thresholds = np.unique(np.concatenate([np.quantile(every, np.linspace(0, 1, steps)),
                                           np.quantile(good, 1 - np.linspace(0, max_fpr, steps)),
                                           [np.nextafter(good.max(), np.inf)]]))
    good_sorted = np.sort(good)
    fprs, pros = [], []
    for t in thresholds:
        fprs.append(1.0 - np.searchsorted(good_sorted, t, side="left") / good_sorted.size)
        pros.append(float(np.mean([(p_maps[i][r] >= t).mean() for i, r in regions])))
    fprs, pros = np.array(fprs), np.array(pros)
    order = np.lexsort((pros, fprs))
    fprs, pros = fprs[order], pros[order]
    at_max = float(np.interp(max_fpr, fprs, pros))
    keep = fprs <= max_fpr
    xs = np.concatenate([fprs[keep], [max_fpr]])
    ys = np.concatenate([pros[keep], [at_max]])
    return float(np.trapezoid(ys, xs) / max_fpr)


def evaluate_parts(checkpoint: str | Path, data: str | Path, output: str | Path | None = None, *, device: str = "auto",
                   threshold: float | None = None, min_area: int | None = None) -> dict[str, Any]:
    import cv2
    import torch

    from segsuite.core.infer import Predictor
    from segsuite.core.io import write_json
    from segsuite.core.metrics import ConfusionMatrix

    from .calibrate import part_metrics, part_score
    from .inspection import InspectOptions, find_defects, labelled_parts, settings

    predictor = Predictor.from_checkpoint(checkpoint, device=device)
    cm_ = predictor.class_map
    thr, area = settings(predictor.card, InspectOptions(threshold=threshold, min_area=min_area))
    cm = ConfusionMatrix(cm_.num_classes, cm_.ignore_index, class_names=list(cm_.names))
    p_maps, masks, truth, scores, rows = [], [], [], [], []
    found = missed = false_det = 0
    for pair, _image, mask, probs in labelled_parts(predictor, data):
        labels, defects, p_def = find_defects(probs, cm_, thr, area)
        valid = mask != cm_.ignore_index
        cm.update(torch.from_numpy(labels.astype(np.int64))[None], torch.from_numpy(np.where(valid, mask, cm_.ignore_index))[None])
        gt = (mask > 0) & valid
        n, comp = cv2.connectedComponents(gt.astype(np.uint8), connectivity=8)
        pred_def = labels > 0
        for r in range(1, n):
            if (pred_def & (comp == r)).any():
                found += 1
            else:
                missed += 1
        pn, pcomp = cv2.connectedComponents(pred_def.astype(np.uint8), connectivity=8)
        false_det += sum(1 for r in range(1, pn) if not (gt & (pcomp == r)).any())
        p_maps.append(np.where(valid, p_def, 0.0))
        masks.append(np.where(valid, gt, False).astype(np.uint8))
        truth.append(bool(gt.any()))
        scores.append(part_score(p_def, area))
        rows.append({"image": pair.image.name, "truth": "NG" if gt.any() else "OK", "verdict": "NG" if defects else "OK",
                     "defects": len(defects)})
    t, s = np.array(truth), np.array(scores)
    all_p = np.concatenate([p.ravel() for p in p_maps])
    all_t = np.concatenate([m.ravel() for m in masks]).astype(bool)
    if all_p.size > 4_000_000:  # AUROC on a fixed random subset keeps memory and time bounded
        idx = np.random.default_rng(0).choice(all_p.size, 4_000_000, replace=False)
        all_p, all_t = all_p[idx], all_t[idx]
    part = part_metrics(s, t, thr)
    result = {
        "threshold": thr, "min_area_px": area,
        "part_level": part,
        "defects": {"found": found, "missed": missed, "false_detections": false_det},
        "pixel_auroc": pixel_auroc(all_p, all_t),
        "aupro_0.3": aupro(p_maps, masks),
        "pixel_metrics": cm.compute().to_dict(),
        "parts": rows,
    }
    if output is not None:
        write_json(Path(output) / "metrics.json", result)
    return result
