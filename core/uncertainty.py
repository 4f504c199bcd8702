"""Per-pixel (2D) or per-voxel (3D) uncertainty of a segmentation, as a map in [0, 1].

Three measures, from cheapest to dearest:

* ``entropy``: the softmax entropy of the prediction divided by ``log C``, so 0 means one
  class has all the probability and 1 means all classes are equally likely. It costs
  nothing beyond the prediction itself.
* ``tta``: the spread of the class probabilities over the flipped copies of the input
  (every combination of spatial-axis flips: 4 passes in 2D, 8 in 3D; a domain whose images
  have an up and a down, such as street scenes, flips left-right only: 2 passes). The
  prediction that comes with it is the flip-averaged one, as with ``Predictor.tta``.
* ``mcdropout``: the spread over ``samples`` forward passes with the model's dropout layers
  left on (Monte Carlo dropout; ``samples`` passes). Only dropout modules are switched to
  training mode; normalisation layers keep their inference behaviour. A model without
  dropout (p > 0) cannot do this and says so.

The spread of samples is the total variance of the probability vector,
``E||p - E[p]||^2``, scaled by ``C / (C - 1)``: it lies in [0, 1] and reaches 1 only when
the samples are one-hot votes spread evenly over every class.

All functions take tensors shaped ``(N, C, *S)`` and work for any number of spatial axes.
"""

from __future__ import annotations

import contextlib
import itertools
import math
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from .errors import SegsuiteError

METHODS = ("entropy", "tta", "mcdropout")
DEFAULT_SAMPLES = 8
"""MC-dropout forward passes per input."""


def check_method(method: str | None) -> str | None:
    """``None`` (off) or one of :data:`METHODS`; anything else is a one-line error."""
    if method is None or method in METHODS:
        return method
    raise SegsuiteError(f"--uncertainty {method!r}: choose one of {', '.join(METHODS)}")


def entropy(probs: torch.Tensor) -> torch.Tensor:
    """Normalised softmax entropy ``(N, *S)`` in [0, 1] of probabilities ``(N, C, *S)``."""
    c = probs.shape[1]
    if c < 2:
        return torch.zeros((probs.shape[0], *probs.shape[2:]), dtype=probs.dtype, device=probs.device)
    p = probs.clamp(min=0)
    h = -(p * torch.log(p.clamp(min=1e-12))).sum(1)
    return (h / math.log(c)).clamp(0, 1)


class SampleSpread:
    """Running mean of sampled probability maps and their normalised total variance.

    Add ``(N, C, *S)`` probabilities (and optionally the logits they came from, whose mean is
    then kept too) one sample at a time; only sums are stored, never the samples.
    """

    def __init__(self) -> None:
        self.n = 0
        self._sum: torch.Tensor | None = None
        self._sq: torch.Tensor | None = None
        self._logits: torch.Tensor | None = None

    def add(self, probs: torch.Tensor, logits: torch.Tensor | None = None) -> None:
        sq = (probs * probs).sum(1)
        self._sum = probs.clone() if self._sum is None else self._sum + probs
        self._sq = sq if self._sq is None else self._sq + sq
        if logits is not None:
            self._logits = logits.clone() if self._logits is None else self._logits + logits
        self.n += 1

    def mean(self) -> torch.Tensor:
        if self._sum is None:
            raise ValueError("no samples added")
        return self._sum / self.n

    def mean_logits(self) -> torch.Tensor:
        if self._logits is None:
            raise ValueError("no logits added")
        return self._logits / self.n

    def variance(self) -> torch.Tensor:
        """``(N, *S)`` total variance of the probability vector, scaled to [0, 1]."""
        assert self._sq is not None
        m = self.mean()
        c = m.shape[1]
        if c < 2:
            return torch.zeros_like(self._sq)
        var = self._sq / self.n - (m * m).sum(1)
        return (var.clamp(min=0) * (c / (c - 1))).clamp(0, 1)


def sample_variance(samples: torch.Tensor) -> torch.Tensor:
    """Normalised total variance ``(N, *S)`` of stacked probability samples ``(K, N, C, *S)``."""
    spread = SampleSpread()
    for s in samples:
        spread.add(s)
    return spread.variance()


def flip_sets(spatial_dims: int, axes: Sequence[int] | None = None) -> list[tuple[int, ...]]:
    """Every combination of flips of an ``(N, C, *S)`` tensor along the spatial ``axes`` (0-based
    spatial indices; default all), the identity first, as tensor dimensions for ``Tensor.flip``."""
    chosen = range(spatial_dims) if axes is None else sorted(set(int(a) for a in axes))
    if any(not 0 <= a < spatial_dims for a in chosen):
        raise SegsuiteError(f"flip axes {tuple(axes or ())} must be spatial axes 0..{spatial_dims - 1}")
    axes = [2 + a for a in chosen]
    return [c for r in range(len(axes) + 1) for c in itertools.combinations(axes, r)]


def tta_spread(forward: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, spatial_dims: int,
               axes: Sequence[int] | None = None) -> SampleSpread:
    """Run ``forward`` (input -> logits) on every flip of ``x`` (see :func:`flip_sets`); returns the
    spread of the flipped-back results."""
    spread = SampleSpread()
    for axes in flip_sets(spatial_dims, axes):
        y = forward(x.flip(axes) if axes else x).float()
        y = y.flip(axes) if axes else y
        spread.add(y.softmax(1), y)
    return spread


def dropout_modules(model: nn.Module) -> list[nn.Module]:
    """The model's dropout layers that actually drop something (p > 0)."""
    kinds = (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout, nn.FeatureAlphaDropout)
    return [m for m in model.modules() if isinstance(m, kinds) and float(getattr(m, "p", 0.0)) > 0]


def require_dropout(model: Any) -> list[nn.Module]:
    """The model's active dropout layers, or a one-line error saying MC dropout cannot run on it."""
    layers = dropout_modules(model) if isinstance(model, nn.Module) else []
    if not layers:
        arch = getattr(model, "arch", type(model).__name__)
        raise SegsuiteError(f"MC dropout needs a model with dropout layers and this {arch} model has none (p > 0); "
                            "train one with a dropout option (e.g. --model-option dropout=0.2) or use entropy or tta")
    return layers


@contextlib.contextmanager
def dropout_active(model: nn.Module) -> Iterator[int]:
    """Switch only the dropout layers to training mode; restores every layer's mode on exit."""
    layers = require_dropout(model)
    before = [m.training for m in layers]
    try:
        for m in layers:
            m.train(True)
        yield len(layers)
    finally:
        for m, mode in zip(layers, before):
            m.train(mode)


def mc_dropout_spread(forward: Callable[[torch.Tensor], torch.Tensor], model: nn.Module, x: torch.Tensor,
                      samples: int = DEFAULT_SAMPLES) -> SampleSpread:
    """``samples`` passes of ``forward`` with ``model``'s dropout on (seed the RNG first for repeatable maps)."""
    if samples < 2:
        raise SegsuiteError(f"MC dropout needs at least 2 samples, got {samples}")
    spread = SampleSpread()
    with dropout_active(model):
        for _ in range(samples):
            y = forward(x).float()
            spread.add(y.softmax(1), y)
    return spread


@contextlib.contextmanager
def seeded(seed: int, device: torch.device | str = "cpu") -> Iterator[None]:
    """Run the block with torch's RNG seeded, leaving the caller's RNG state as it was."""
    device = torch.device(device)
    devices = [device.index or 0] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield


def summary(values: np.ndarray | torch.Tensor, valid: np.ndarray | None = None) -> dict[str, Any]:
    """Mean, max and share of pixels above 0.5 of an uncertainty map (valid pixels only)."""
    arr = values.detach().float().cpu().numpy() if isinstance(values, torch.Tensor) else np.asarray(values, np.float32)
    v = arr[valid] if valid is not None else arr.ravel()
    if v.size == 0:
        return {"mean": None, "max": None, "above_0.5": None}
    return {"mean": round(float(v.mean()), 5), "max": round(float(v.max()), 5),
            "above_0.5": round(float((v > 0.5).mean()), 5)}
