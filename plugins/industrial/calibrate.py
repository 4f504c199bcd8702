"""Choosing the decision threshold on a validation set, by a policy the user picks.

Each validation part gets a *part score*: the highest threshold at which it is still
judged NG (some defective region of at least ``min_area`` pixels survives). Judging NG is
monotone in the threshold, so the score is found by bisection, and every policy becomes a
choice on the sorted scores:

* ``recall``: the highest threshold whose part-level recall on defective parts reaches
  the target (0.99 is the usual line requirement: at most 1 escape in 100 NG parts);
* ``far``: the lowest threshold whose false-alarm rate on good parts stays at or under
  the target;
* ``f1``: the threshold with the best part-level F1.

A validation set without defective parts cannot support a recall or F1 target (any
threshold "achieves" it vacuously, the pitfall anomaly tools are known for), and one
without good parts cannot measure false alarms: both are refused with a message.
"""

from __future__ import annotations

import datetime
import math
from pathlib import Path
from typing import Any, Literal

import numpy as np

from segsuite.core.errors import SegsuiteError

Policy = Literal["recall", "far", "f1"]


def judged_ng(p_defect: np.ndarray, threshold: float, min_area: int) -> bool:
    import cv2

    binary = (p_defect >= threshold).astype(np.uint8)
    if min_area <= 1:
        return bool(binary.any())
    n, _, stats, _ = cv2.connectedComponentsWithStats(binary, connectivity=8)
    return bool(n > 1 and stats[1:, cv2.CC_STAT_AREA].max() >= min_area)


def part_score(p_defect: np.ndarray, min_area: int, tol: float = 1e-5) -> float:
    """The highest threshold at which the part is NG (0 if never)."""
    if not judged_ng(p_defect, 0.0 + 1e-12, min_area):
        return 0.0
    lo, hi = 0.0, float(p_defect.max())
    if judged_ng(p_defect, hi, min_area):
        return hi
    while hi - lo > tol:
        mid = (lo + hi) / 2
        if judged_ng(p_defect, mid, min_area):
            lo = mid
        else:
            hi = mid
    return lo


def part_metrics(scores: np.ndarray, truth: np.ndarray, threshold: float) -> dict[str, float]:
    pred = scores >= threshold
    tp = int((pred & truth).sum())
    fp = int((pred & ~truth).sum())
    fn = int((~pred & truth).sum())
    n_ng, n_good = int(truth.sum()), int((~truth).sum())
    recall = tp / n_ng if n_ng else float("nan")
    precision = tp / (tp + fp) if tp + fp else float("nan")
    f1 = 2 * tp / (2 * tp + fp + fn) if (2 * tp + fp + fn) else float("nan")
    return {"recall": recall, "precision": precision, "f1": f1,
            "false_alarm_rate": fp / n_good if n_good else float("nan"),
            "escapes_per_1000": 1000.0 * fn / len(truth) if len(truth) else float("nan"),
            "tp": tp, "fp": fp, "fn": fn, "parts": len(truth)}


def choose_threshold(scores: np.ndarray, truth: np.ndarray, policy: Policy, target: float | None) -> float:
    truth = truth.astype(bool)
    ng, good = np.sort(scores[truth])[::-1], np.sort(scores[~truth])[::-1]
    if policy in ("recall", "f1") and len(ng) == 0:
        raise SegsuiteError(
            "the validation set has no defective parts; a recall or F1 threshold chosen on good parts alone "
            "would be meaningless; add labelled NG parts (or use --policy far with a false-alarm target)"
        )
    if policy == "far" and len(good) == 0:
        raise SegsuiteError("the validation set has no good parts; a false-alarm target cannot be measured")
    if policy == "recall":
        if target is None or not 0 < target <= 1:
            raise SegsuiteError("--target must be a recall between 0 and 1 (e.g. 0.99)")
        k = math.ceil(target * len(ng))  # this many NG parts must score at or above the threshold
        t = float(ng[k - 1])
        if t <= 0:
            raise SegsuiteError(f"no threshold reaches recall {target}: {int((ng <= 0).sum())} defective part(s) never "
                                "produce a region of --min-area pixels; lower --min-area or retrain")
        return t
    if policy == "far":
        if target is None or not 0 <= target < 1:
            raise SegsuiteError("--target must be a false-alarm rate between 0 and 1 (e.g. 0.01)")
        m = math.floor(target * len(good))  # this many good parts may score at or above the threshold
        if m >= len(good):
            return float(np.nextafter(0.0, 1.0))
        return float(np.nextafter(good[m], 1.0))  # just above the (m+1)-th highest good score
    if policy == "f1":
        candidates = np.unique(scores[scores > 0])
        best_t, best_f1 = 0.5, -1.0
        for t in candidates:
            f1 = part_metrics(scores, truth, float(t))["f1"]
            if f1 > best_f1:
                best_t, best_f1 = float(t), f1
        return best_t
    raise SegsuiteError(f"unknown policy {policy!r}; use recall, far or f1")


def calibrate(checkpoint: str | Path, data: str | Path, policy: Policy, target: float | None, *, min_area: int = 10,
              output: str | Path | None = None, device: str = "auto") -> dict[str, Any]:
    """Score every validation part, choose the threshold, store it with provenance in the card."""
    from segsuite.core import __version__
    from segsuite.core.checkpoint import load_checkpoint, rewrite_card
    from segsuite.core.infer import Predictor

    from .inspection import labelled_parts

    predictor = Predictor.from_checkpoint(checkpoint, device=device)
    class_map = predictor.class_map
    names, scores, truth = [], [], []
    for pair, _image, mask, probs in labelled_parts(predictor, data):
        names.append(pair.image.name)
        truth.append(bool(((mask > 0) & (mask != class_map.ignore_index)).any()))
        scores.append(part_score(1.0 - probs[0], min_area))
    s, t = np.asarray(scores), np.asarray(truth)
    threshold = choose_threshold(s, t, policy, target)
    achieved = part_metrics(s, t, threshold)
    card = load_checkpoint(checkpoint).card
    card.thresholds = {
        "defect_probability": threshold,
        "min_area_px": min_area,
        "provenance": {
            "policy": policy, "target": target, "achieved": achieved, "data": str(data),
            "parts": {"defective": int(t.sum()), "good": int((~t).sum())},
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "segsuite_version": __version__,
        },
    }
    out = Path(output) if output is not None else Path(checkpoint)
    rewrite_card(checkpoint, card, out)
    return {"threshold": threshold, "min_area_px": min_area, "achieved": achieved, "checkpoint": str(out),
            "scores": {n: float(v) for n, v in zip(names, s)}}
