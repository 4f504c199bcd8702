"""Segmentation metrics from a confusion matrix accumulated on the tensors' own device.

Conventions (the ones MATLAB's ``evaluateSemanticSegmentation`` reports, written out):

* The confusion matrix has ground truth in rows and prediction in columns.
* Pixels whose truth is the ignore index do not count anywhere.
* Per-class accuracy is TP / (TP + FN) (recall); IoU is TP / (TP + FP + FN); Dice (F1) is
  2TP / (2TP + FP + FN); precision is TP / (TP + FP).
* A class absent from both truth and prediction has no defined IoU/Dice: it is reported
  as NaN and left out of every mean. A class absent from the truth but predicted somewhere
  has IoU 0 (its false positives are real errors).
* Weighted IoU weights each class's IoU by its share of ground-truth pixels.
* The BF (boundary F1) score compares class boundaries with a distance tolerance of
  0.75 % of the image diagonal, per image and class; the mean BF is the mean over images
  of each image's mean over its classes.

``update`` never moves data to the CPU or synchronises (no ``.item()``, no boolean
indexing): ignored pixels are routed to a spare bin, so accumulation stays asynchronous
on a GPU. Values are read back once, in ``compute``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from .errors import SegsuiteError


def _nan_div(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1), np.nan)


def _nanmean(x: np.ndarray) -> float:
    x = np.asarray(x, dtype=np.float64)
    return float(np.nanmean(x)) if np.isfinite(x).any() else float("nan")


@dataclass
class SegmentationMetrics:
    class_names: list[str]
    confusion: np.ndarray
    per_image: list[dict[str, float]] = field(default_factory=list)
    bf_per_class: np.ndarray | None = None  # mean over images of each class's BF score
    mean_bf: float = float("nan")

    def __post_init__(self) -> None:
        c = self.confusion.astype(np.float64)
        tp = np.diag(c)
        truth = c.sum(axis=1)
        pred = c.sum(axis=0)
        fp, fn = pred - tp, truth - tp
        self.total = float(c.sum())
        self.global_accuracy = float(tp.sum() / self.total) if self.total else float("nan")
        self.accuracy = _nan_div(tp, truth)
        self.iou = _nan_div(tp, tp + fp + fn)
        self.dice = _nan_div(2 * tp, 2 * tp + fp + fn)
        self.precision = _nan_div(tp, pred)
        self.recall = self.accuracy
        self.mean_accuracy = _nanmean(self.accuracy)
        self.mean_iou = _nanmean(self.iou)
        self.mean_dice = _nanmean(self.dice)
        weights = truth / truth.sum() if truth.sum() else truth
        valid = np.isfinite(self.iou) & (truth > 0)
        self.weighted_iou = float((weights[valid] * self.iou[valid]).sum()) if valid.any() else float("nan")
        self.normalized_confusion = _nan_div(c, truth[:, None].repeat(c.shape[1], axis=1))

    def to_dict(self) -> dict[str, Any]:
        def clean(v: Any) -> Any:
            if isinstance(v, float):
                return None if math.isnan(v) else v
            if isinstance(v, np.ndarray):
                return [clean(float(x)) if np.ndim(x) == 0 else clean(x) for x in v]
            return v

        per_class = {
            name: {
                "accuracy": clean(float(self.accuracy[i])),
                "iou": clean(float(self.iou[i])),
                "dice": clean(float(self.dice[i])),
                "precision": clean(float(self.precision[i])),
                "recall": clean(float(self.recall[i])),
                "bf_score": clean(float(self.bf_per_class[i])) if self.bf_per_class is not None else None,
                "pixels": int(self.confusion[i].sum()),
            }
            for i, name in enumerate(self.class_names)
        }
        return {
            "global_accuracy": clean(self.global_accuracy),
            "mean_accuracy": clean(self.mean_accuracy),
            "mean_iou": clean(self.mean_iou),
            "weighted_iou": clean(self.weighted_iou),
            "mean_dice": clean(self.mean_dice),
            "mean_bf_score": clean(self.mean_bf),
            "per_class": per_class,
            "confusion_matrix": self.confusion.astype(int).tolist(),
            "normalized_confusion_matrix": [clean(row) for row in self.normalized_confusion],
            "per_image": [{k: clean(v) for k, v in row.items()} for row in self.per_image],
            "conventions": "rows = truth, columns = prediction; classes absent from truth and prediction are NaN (null) and excluded from means",
        }

    def table(self) -> str:
        """A plain-text table: one row per class, then the dataset-level metrics."""
        w = max(16, *(len(n) for n in self.class_names))
        lines = [f"{'class':<{w}}  {'IoU':>7}  {'Acc':>7}  {'Dice':>7}  {'Prec':>7}  {'BF':>7}  {'pixels':>10}"]
        for i, name in enumerate(self.class_names):
            bf = self.bf_per_class[i] if self.bf_per_class is not None else float("nan")
            vals = [self.iou[i], self.accuracy[i], self.dice[i], self.precision[i], bf]
            cells = "  ".join(f"{v:7.4f}" if np.isfinite(v) else f"{'n/a':>7}" for v in vals)
            lines.append(f"{name:<{w}}  {cells}  {int(self.confusion[i].sum()):>10}")
        lines.append("")
        for label, v in (("global accuracy", self.global_accuracy), ("mean accuracy", self.mean_accuracy),
                         ("mean IoU", self.mean_iou), ("weighted IoU", self.weighted_iou),
                         ("mean Dice", self.mean_dice), ("mean BF score", self.mean_bf)):
            lines.append(f"{label:<{w}}  {v:7.4f}" if np.isfinite(v) else f"{label:<{w}}  {'n/a':>7}")
        return "\n".join(lines)


def _ball(radius: int, dims: int, device: torch.device) -> torch.Tensor:
    r = max(int(radius), 0)
    axes = torch.meshgrid(*[torch.arange(-r, r + 1, device=device, dtype=torch.float32)] * dims, indexing="ij")
    return (sum(a * a for a in axes) <= r * r + 1e-6).float()[None, None]


def _boundary(mask: torch.Tensor) -> torch.Tensor:
    """Pixels of ``mask`` with a 4-(6-)connected neighbour outside it. ``mask``: (B, 1, *S) float."""
    dims = mask.ndim - 2
    pool = F.max_pool2d if dims == 2 else F.max_pool3d
    eroded = -pool(-mask, kernel_size=3, stride=1, padding=1)
    return mask * (1 - eroded)


def boundary_f1(pred: torch.Tensor, target: torch.Tensor, num_classes: int, ignore_index: int,
                tolerance: float | None = None) -> torch.Tensor:
    """Per-image, per-class BF score ``(N, K)``; NaN where a class is in neither map.

    ``pred``/``target``: integer label maps ``(N, *S)``. Ignored truth pixels are removed
    from both maps before boundaries are traced.
    """
    dims = pred.ndim - 1
    if tolerance is None:
        tolerance = 0.0075 * math.sqrt(sum(s * s for s in pred.shape[1:]))
    radius = max(1, int(math.ceil(tolerance)))
    kernel = _ball(radius, dims, pred.device)
    conv = F.conv2d if dims == 2 else F.conv3d
    valid = (target != ignore_index)
    classes = torch.arange(num_classes, device=pred.device).view(1, -1, *([1] * dims))
    p = ((pred.unsqueeze(1) == classes) & valid.unsqueeze(1)).float()  # (N, K, *S)
    t = ((target.unsqueeze(1) == classes) & valid.unsqueeze(1)).float()
    n, k = p.shape[:2]
    pb = _boundary(p.reshape(n * k, 1, *p.shape[2:]))
    tb = _boundary(t.reshape(n * k, 1, *t.shape[2:]))
    near_t = conv(tb, kernel, padding=radius) > 0
    near_p = conv(pb, kernel, padding=radius) > 0
    pb_n, tb_n = pb.flatten(1).sum(1), tb.flatten(1).sum(1)
    precision = (pb * near_t).flatten(1).sum(1) / pb_n.clamp(min=1)
    recall = (tb * near_p).flatten(1).sum(1) / tb_n.clamp(min=1)
    f1 = torch.where(precision + recall > 0, 2 * precision * recall / (precision + recall).clamp(min=1e-12),
                     torch.zeros_like(precision))
    present = (pb_n > 0) | (tb_n > 0)
    f1 = torch.where(present, f1, torch.full_like(f1, float("nan")))
    return f1.view(n, k)


class ConfusionMatrix:
    """Accumulates a (K, K) confusion matrix on the device of the tensors it is given."""

    def __init__(self, num_classes: int, ignore_index: int = 255, *, class_names: list[str] | None = None,
                 per_image: bool = False, boundary: bool = False, device: torch.device | str | None = None) -> None:
        self.num_classes = int(num_classes)
        self.ignore_index = int(ignore_index)
        self.class_names = list(class_names) if class_names else [str(i) for i in range(num_classes)]
        if len(self.class_names) != self.num_classes:
            raise SegsuiteError(f"{len(self.class_names)} class names for {self.num_classes} classes")
        self.per_image = per_image
        self.boundary = boundary
        self.device = torch.device(device) if device is not None else None
        self.reset()

    def reset(self) -> None:
        k = self.num_classes
        # two spare bins: [k*k] ignored pixels, [k*k+1] labels outside 0..k-1 (checked in compute)
        self._flat = torch.zeros(k * k + 2, dtype=torch.int64, device=self.device)
        self._images: list[torch.Tensor] = []
        self._bf: list[torch.Tensor] = []

    def _bins(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        k = self.num_classes
        t, p = target.long(), pred.long()
        ignored = t == self.ignore_index
        bad = ~ignored & ((t < 0) | (t >= k) | (p < 0) | (p >= k))
        idx = t.clamp(0, k - 1) * k + p.clamp(0, k - 1)
        idx = torch.where(ignored, torch.full_like(idx, k * k), idx)
        return torch.where(bad, torch.full_like(idx, k * k + 1), idx)

    @torch.no_grad()
    def update(self, pred: torch.Tensor, target: torch.Tensor) -> None:
        """``pred``: labels ``(N, *S)`` or logits ``(N, K, *S)``; ``target``: labels ``(N, *S)``."""
        if pred.ndim == target.ndim + 1:
            pred = pred.argmax(1)
        if pred.shape != target.shape:
            raise SegsuiteError(f"prediction shape {tuple(pred.shape)} does not match label shape {tuple(target.shape)}")
        if self._flat.device != pred.device:
            self._flat = self._flat.to(pred.device)
        idx = self._bins(pred, target)
        nbins = self._flat.numel()
        self._flat.index_add_(0, idx.reshape(-1), torch.ones_like(idx.reshape(-1)))
        if self.per_image:
            n = idx.shape[0]
            offsets = torch.arange(n, device=idx.device).view(-1, *([1] * (idx.ndim - 1))) * nbins
            per = torch.zeros(n * nbins, dtype=torch.int64, device=idx.device)
            per.index_add_(0, (idx + offsets).reshape(-1), torch.ones_like(idx.reshape(-1)))
            self._images.append(per.view(n, nbins))
        if self.boundary:
            self._bf.append(boundary_f1(pred, target, self.num_classes, self.ignore_index))

    def matrix(self) -> np.ndarray:
        flat = self._flat.cpu().numpy()
        if flat[-1]:
            raise SegsuiteError(
                f"{int(flat[-1])} labelled pixels hold values outside 0..{self.num_classes - 1} and are not the ignore "
                f"index {self.ignore_index}; remap raw label ids with the class map first"
            )
        k = self.num_classes
        return flat[: k * k].reshape(k, k)

    def compute(self) -> SegmentationMetrics:
        mat = self.matrix()
        k = self.num_classes
        per_image: list[dict[str, float]] = []
        bf = torch.cat(self._bf).cpu().numpy() if self._bf else None
        if self._images:
            for i, row in enumerate(torch.cat(self._images).cpu().numpy()):
                m = SegmentationMetrics(self.class_names, row[: k * k].reshape(k, k))
                entry = {"global_accuracy": m.global_accuracy, "mean_accuracy": m.mean_accuracy,
                         "mean_iou": m.mean_iou, "weighted_iou": m.weighted_iou}
                if bf is not None:
                    entry["mean_bf_score"] = _nanmean(bf[i])
                per_image.append(entry)
        out = SegmentationMetrics(self.class_names, mat, per_image=per_image)
        if bf is not None:
            with np.errstate(all="ignore"):
                out.bf_per_class = np.array([_nanmean(bf[:, c]) for c in range(k)])
            out.mean_bf = _nanmean(np.array([_nanmean(r) for r in bf]))
        return out
