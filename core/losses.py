"""Pixel-wise losses for 2D and 3D segmentation, all honouring an ignore index.

Every loss takes logits ``(N, K, *S)`` and integer labels ``(N, *S)``. Region losses
(Dice, Tversky) follow MONAI's definitions (softmax probabilities, one-hot truth,
smoothing terms ``smooth_nr``/``smooth_dr`` = 1e-5, mean over classes and samples), so a
model trained here and one trained with MONAI optimise the same number; tests check the
agreement to 1e-5.

Empty classes in Dice/Tversky: with ``empty="include"`` (MONAI's behaviour) a class
absent from both truth and prediction scores a perfect 1 (the smoothing terms make it
0/0 -> 1); with ``empty="exclude"`` (segmentation-models-pytorch's choice) classes absent
from a sample's truth are left out of the mean, so a model is not rewarded for agreeing
about absent classes.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from .errors import SegsuiteError


def _onehot_and_mask(logits: torch.Tensor, target: torch.Tensor, ignore_index: int) -> tuple[torch.Tensor, torch.Tensor]:
    k = logits.shape[1]
    valid = target != ignore_index
    safe = torch.where(valid, target, torch.zeros_like(target)).long()
    onehot = F.one_hot(safe, k).movedim(-1, 1).to(logits.dtype)
    mask = valid.unsqueeze(1).to(logits.dtype)
    return onehot * mask, mask


class CrossEntropyLoss(nn.CrossEntropyLoss):
    """Pixel-wise cross-entropy with class weights, ignore index and label smoothing."""

    def __init__(self, class_weights: Sequence[float] | torch.Tensor | None = None, ignore_index: int = 255,
                 label_smoothing: float = 0.0) -> None:
        w = None if class_weights is None else torch.as_tensor(class_weights, dtype=torch.float32)
        super().__init__(weight=w, ignore_index=ignore_index, label_smoothing=label_smoothing)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return super().forward(logits.float(), target.long())


class _RegionLoss(nn.Module):
    def __init__(self, ignore_index: int = 255, include_background: bool = True, batch: bool = False,
                 empty: Literal["include", "exclude"] = "include", smooth_nr: float = 1e-5, smooth_dr: float = 1e-5) -> None:
        super().__init__()
        if empty not in ("include", "exclude"):
            raise SegsuiteError(f"empty must be 'include' or 'exclude', got {empty!r}")
        self.ignore_index = ignore_index
        self.include_background = include_background
        self.batch = batch
        self.empty = empty
        self.smooth_nr = smooth_nr
        self.smooth_dr = smooth_dr

    def _terms(self, logits: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, ...]:
        probs = logits.float().softmax(1)
        onehot, mask = _onehot_and_mask(probs, target, self.ignore_index)
        probs = probs * mask  # ignored pixels count neither as prediction nor as truth
        if not self.include_background:
            probs, onehot = probs[:, 1:], onehot[:, 1:]
        dims = [0, *range(2, probs.ndim)] if self.batch else list(range(2, probs.ndim))
        tp = (probs * onehot).sum(dims)
        fp = (probs * (1 - onehot)).sum(dims)
        fn = ((1 - probs) * onehot).sum(dims)
        present = onehot.sum(dims) > 0
        return tp, fp, fn, present

    def _reduce(self, per_class: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
        if self.empty == "exclude":
            w = present.to(per_class.dtype)
            return (per_class * w).sum() / w.sum().clamp(min=1)
        return per_class.mean()


class DiceLoss(_RegionLoss):
    """Soft multi-class Dice loss, 1 - (2TP + s) / (2TP + FP + FN + s)."""

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        tp, fp, fn, present = self._terms(logits, target)
        dice = (2 * tp + self.smooth_nr) / (2 * tp + fp + fn + self.smooth_dr)
        return self._reduce(1 - dice, present)


class TverskyLoss(_RegionLoss):
    """Tversky loss; ``alpha`` weighs false positives, ``beta`` false negatives (0.5/0.5 = Dice)."""

    def __init__(self, alpha: float = 0.3, beta: float = 0.7, **kwargs) -> None:
        super().__init__(**kwargs)
        self.alpha, self.beta = alpha, beta

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        tp, fp, fn, present = self._terms(logits, target)
        score = (tp + self.smooth_nr) / (tp + self.alpha * fp + self.beta * fn + self.smooth_dr)
        return self._reduce(1 - score, present)


class FocalLoss(nn.Module):
    """Softmax focal loss (Lin et al. 2017): -alpha_c (1 - p_t)^gamma log p_t, mean over labelled pixels."""

    def __init__(self, gamma: float = 2.0, class_weights: Sequence[float] | torch.Tensor | None = None,
                 ignore_index: int = 255) -> None:
        super().__init__()
        self.gamma = gamma
        self.ignore_index = ignore_index
        self.register_buffer("alpha", None if class_weights is None else torch.as_tensor(class_weights, dtype=torch.float32))

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        logp = F.log_softmax(logits.float(), dim=1)
        valid = target != self.ignore_index
        safe = torch.where(valid, target, torch.zeros_like(target)).long()
        logp_t = logp.gather(1, safe.unsqueeze(1)).squeeze(1)
        loss = -((1 - logp_t.exp()) ** self.gamma) * logp_t
        if self.alpha is not None:
            loss = loss * self.alpha.to(loss.device)[safe]
        loss = loss * valid
        return loss.sum() / valid.sum().clamp(min=1)


class DiceCELoss(nn.Module):
    """``lambda_dice * Dice + lambda_ce * CE``, the default for medical volumes (as in nnU-Net/MONAI)."""

    def __init__(self, class_weights: Sequence[float] | None = None, ignore_index: int = 255,
                 lambda_dice: float = 1.0, lambda_ce: float = 1.0, label_smoothing: float = 0.0, **dice_kwargs) -> None:
        super().__init__()
        self.dice = DiceLoss(ignore_index=ignore_index, **dice_kwargs)
        self.ce = CrossEntropyLoss(class_weights, ignore_index=ignore_index, label_smoothing=label_smoothing)
        self.lambda_dice, self.lambda_ce = lambda_dice, lambda_ce

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return self.lambda_dice * self.dice(logits, target) + self.lambda_ce * self.ce(logits, target)


LOSSES = {"ce": CrossEntropyLoss, "dice": DiceLoss, "dicece": DiceCELoss, "focal": FocalLoss, "tversky": TverskyLoss}


def build_loss(name: str, *, ignore_index: int = 255, class_weights: Sequence[float] | None = None, **options) -> nn.Module:
    """A loss by name: ``ce``, ``dice``, ``dicece``, ``focal`` or ``tversky``."""
    if name not in LOSSES:
        raise SegsuiteError(f"unknown loss {name!r}; choose one of: {', '.join(LOSSES)}")
    if class_weights is not None and name in ("ce", "dicece", "focal"):
        options["class_weights"] = class_weights
    return LOSSES[name](ignore_index=ignore_index, **options)
