"""Input drift: warn when an input looks unlike the data the model was trained on.

A model fed imagery unlike its training data (8-bit RGB through a model trained on 16-bit
reflectance, a 12-bit camera through an 8-bit model, the wrong bands) gives confident noise
and no error. So the trainer records, per input channel, the 1st, 50th and 99th percentiles
of the raw training pixels (before normalisation) in the model card
(``card.input_stats``, see :class:`InputStats`), and every 2D pipeline checks each input
against them once (:func:`check_input_drift`), on a subsample of its pixels.

What "far" means (one rule, per channel; the input drifts when any channel does):

* **out of range**: at least half (:data:`OUTSIDE_SHARE`) of the input's valid pixels lie
  outside the training range ``[p01 - m, p99 + m]``, where the margin ``m`` is
  :data:`MARGIN` (5 %) of the training span ``p99 - p01``. Only 2 % of the training pixels
  lie outside ``[p01, p99]`` by definition, so half of an input there is not the same data;
  the margin forgives a mild change of lighting or gain.
* **flat**: the input's own 1st-99th percentile range is less than :data:`FLAT_RATIO` (2 %)
  of the training span: a blank, saturated or nearly constant channel.

Pixels the domain marks invalid (nodata) and non-finite values are left out. A drifting input
is still segmented: the pipeline prints one warning line (``segsuite: warning: FILE: ...``)
and its JSON record gets ``"input_drift": {"channels": [...], "message": ...}``. Checkpoints
without statistics (older ones, or models whose normalisation is not a per-channel z-score,
such as the medical CT window) are not checked.

Statistics of an existing checkpoint are computed again from its training data with
:func:`record_input_stats` (how the shipped ``sample_data`` models got theirs).
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

MARGIN = 0.05
"""Widening of the training range on each side, as a share of the training span ``p99 - p01``."""
OUTSIDE_SHARE = 0.5
"""Share of an input's pixels outside the widened training range that makes a channel drift."""
FLAT_RATIO = 0.02
"""An input channel whose 1st-99th percentile range is below this share of the training span is flat."""
CHECK_PIXELS = 65536
"""Pixels per input the run-time check looks at (a regular grid over the input)."""
TRAIN_SAMPLES = 32
"""Training samples (images or patches) the statistics are computed from."""
TRAIN_PIXELS = 8192
"""Pixels per training sample (a regular grid over its labelled pixels)."""


@dataclass(frozen=True)
class InputStats:
    """Per-channel percentiles of raw training inputs, as stored in ``ModelCard.input_stats``."""

    p01: tuple[float, ...]
    p50: tuple[float, ...]
    p99: tuple[float, ...]
    samples: int = 0
    """Training samples (images or patches) read."""
    pixels: int = 0
    """Pixels per channel the percentiles come from."""

    @property
    def channels(self) -> int:
        return len(self.p50)

    @classmethod
    def of_pixels(cls, pixels: np.ndarray, samples: int) -> "InputStats":
        """The statistics of ``pixels`` ``(C, N)`` (finite values only)."""
        p01, p50, p99 = (tuple(_plain(q)) for q in np.percentile(pixels, [1, 50, 99], axis=1))
        return cls(p01, p50, p99, samples, int(pixels.shape[1]))

    def to_dict(self) -> dict[str, Any]:
        return {"channels": self.channels, "p01": list(self.p01), "p50": list(self.p50), "p99": list(self.p99),
                "samples": self.samples, "pixels": self.pixels}

    @classmethod
    def from_card(cls, card: Any) -> "InputStats | None":
        """The statistics in ``card`` (a :class:`~segsuite.core.checkpoint.ModelCard`), or ``None`` when
        it has none or they are not usable (an older card, a hand-edited one)."""
        data = getattr(card, "input_stats", None)
        if not isinstance(data, Mapping):
            return None
        try:
            values = [tuple(float(v) for v in data[key]) for key in ("p01", "p50", "p99")]
            stats = cls(*values, samples=int(data.get("samples", 0)), pixels=int(data.get("pixels", 0)))
        except (KeyError, TypeError, ValueError):
            return None
        n = stats.channels
        ok = n > 0 and all(len(v) == n and all(math.isfinite(x) for x in v) for v in values)
        return stats if ok and all(lo <= hi for lo, hi in zip(stats.p01, stats.p99)) else None


def grid_pixels(array: Any, valid: Any = None, max_pixels: int = CHECK_PIXELS) -> np.ndarray:
    """``(C, N)`` float64 pixels of ``array`` ``(C, *S)`` on a regular grid of at most about
    ``max_pixels`` positions, keeping only positions ``valid`` ``(*S)`` allows and where every
    channel is finite."""
    arr = array if hasattr(array, "detach") else np.asarray(array)  # a tensor is sliced before it is copied
    spatial = tuple(arr.shape[1:])
    size = int(np.prod(spatial)) if spatial else 0
    if arr.ndim < 2 or size == 0:
        return np.zeros((arr.shape[0] if arr.ndim else 0, 0))
    step = max(1, math.ceil((size / max_pixels) ** (1 / len(spatial))))
    grid = (slice(None),) + (slice(None, None, step),) * len(spatial)
    picked = arr[grid]
    picked = picked.detach().cpu().numpy() if hasattr(picked, "detach") else picked
    picked = picked.reshape(arr.shape[0], -1).astype(np.float64)
    keep = np.isfinite(picked).all(axis=0)
    if valid is not None:
        keep &= np.asarray(valid)[grid[1:]].reshape(-1).astype(bool)
    return picked[:, keep]


# -- training time ----------------------------------------------------------------------------


def training_input_stats(dataset: Any, normalization: Mapping[str, Any], ignore_index: int | None = None, *,
                         max_samples: int = TRAIN_SAMPLES, seed: int = 0) -> InputStats | None:
    """Percentiles of the raw pixels of up to ``max_samples`` samples of a training ``dataset``.

    Samples are ``{"image", "mask"}`` dicts with z-score normalised images, as every 2D dataset
    gives them; the raw values are recovered from ``normalization`` (its ``mean`` and ``std``).
    Pixels labelled ``ignore_index`` (nodata, unlabelled borders) are left out. The samples are
    evenly spaced over the dataset and drawn under ``seed`` (random crops and windows), with the
    global random state restored afterwards, so training is unchanged. ``None`` when the
    normalisation is not a per-channel z-score (nothing to invert) or no pixel is labelled.
    """
    import torch

    if normalization.get("kind") != "zscore" or len(dataset) == 0:
        return None
    mean = np.asarray(normalization["mean"], np.float64)
    std = np.asarray(normalization["std"], np.float64)
    indices = sorted(set(np.linspace(0, len(dataset) - 1, min(len(dataset), max_samples)).round().astype(int).tolist()))
    chunks: list[np.ndarray] = []
    with _seeded(seed):
        for i in indices:
            sample = dataset[i]
            image = sample["image"]
            if image.shape[0] != mean.size:
                return None
            mask = sample.get("mask")
            valid = None if mask is None or ignore_index is None else (torch.as_tensor(mask) != ignore_index)
            normed = grid_pixels(image, valid, TRAIN_PIXELS)
            chunks.append(normed * std[:, None] + mean[:, None])
    pixels = np.concatenate(chunks, axis=1) if chunks else np.zeros((mean.size, 0))
    return InputStats.of_pixels(pixels, len(indices)) if pixels.shape[1] else None


@contextmanager
def _seeded(seed: int) -> Iterator[None]:
    """Seed torch, numpy and ``random`` for the block; put their previous states back after it."""
    import torch

    states = torch.get_rng_state(), np.random.get_state(), random.getstate()
    torch.manual_seed(seed)
    np.random.seed(seed)
    random.seed(seed)
    try:
        yield
    finally:
        torch.set_rng_state(states[0])
        np.random.set_state(states[1])
        random.setstate(states[2])


def record_input_stats(checkpoint: str | Path, data: str | Path, *, output: str | Path | None = None,
                       seed: int = 0) -> InputStats:
    """Compute a checkpoint's training-input statistics from its training data ``data`` and write
    them into its card (in place, or to ``output``); the weights are written back unchanged.

    ``data`` is read the way ``segsuite train`` read it for the card's domain (its dataset
    format, else paired image folders), without augmentation, and normalised with the card's
    normalisation, so the statistics are those the trainer records.
    """
    from .checkpoint import read_card, rewrite_card
    from .data.datasets import Normalization, SegmentationDataset, scan_pairs
    from .errors import SegsuiteError

    card = read_card(checkpoint)
    norm = card.normalization or {}
    if norm.get("kind") != "zscore":
        raise SegsuiteError(f"{checkpoint}: input statistics need a per-channel z-score normalisation; "
                            f"this model has {norm.get('kind')!r}")
    classes = card.classes
    fmt = None
    if card.domain:
        from .plugins import get_registry
        from .tasks import pick_format

        fmt = pick_format(get_registry().domain(card.domain), data)
    normalization = Normalization.from_dict(norm)
    if fmt is not None:
        patch = tuple(card.patch_size) if card.patch_size else None
        dataset = fmt(data, classes, train=True, patch_size=patch, normalization=normalization, augment=False)
    else:
        dataset = SegmentationDataset(scan_pairs(data), classes, normalization)
    stats = training_input_stats(dataset, norm, classes.ignore_index, seed=seed)
    if stats is None:
        raise SegsuiteError(f"{data}: no labelled pixels with {len(norm['mean'])} channel(s) to compute statistics from")
    card.input_stats = stats.to_dict()
    rewrite_card(checkpoint, card, output)
    return stats


# -- run time ---------------------------------------------------------------------------------


def compare(stats: InputStats, pixels: np.ndarray) -> dict[str, Any] | None:
    """Which channels of ``pixels`` ``(C, N)`` drift from ``stats`` (see the module docstring);
    ``None`` when none does, or when the channel counts differ or no pixel is left."""
    if pixels.ndim != 2 or pixels.shape[0] != stats.channels or pixels.shape[1] == 0:
        return None
    lo, hi = np.asarray(stats.p01), np.asarray(stats.p99)
    span = hi - lo
    margin = MARGIN * span
    outside = ((pixels < (lo - margin)[:, None]) | (pixels > (hi + margin)[:, None])).mean(axis=1)
    q01, q50, q99 = np.percentile(pixels, [1, 50, 99], axis=1)
    flat = (span > 0) & (q99 - q01 < FLAT_RATIO * span)
    drifting = (outside >= OUTSIDE_SHARE) | flat
    if not drifting.any():
        return None
    channels = [int(c) for c in np.flatnonzero(drifting)]
    first = channels[0]
    if flat[first] and outside[first] < OUTSIDE_SHARE:
        why = f"channel {first + 1} is nearly constant (1st-99th percentile range {q99[first] - q01[first]:.4g}, training {span[first]:.4g})"
    else:
        why = (f"channel {first + 1}: {outside[first]:.0%} of pixels outside the training range, median {q50[first]:.4g}, "
               f"training 1st-99th percentile {lo[first]:.4g}..{hi[first]:.4g}")
    listed = ", ".join(str(c + 1) for c in channels)
    message = (f"input unlike the model's training data in channel(s) {listed} ({why}); the result may be unreliable: "
               "check the bands, channel order and bit depth")
    return {"channels": [c + 1 for c in channels], "message": message,
            "share_outside": [round(float(s), 4) for s in outside],
            "input": {"p01": _plain(q01), "p50": _plain(q50), "p99": _plain(q99)}, "pixels": int(pixels.shape[1])}


def _plain(values: np.ndarray) -> list[float]:
    """Six significant digits: the float32 round trip of normalisation leaves noise below that."""
    return [float(f"{v:.6g}") for v in values]


def check_input_drift(card: Any, array: Any, source: str | Path, warn: Callable[[str], None], *,
                      valid: Any = None) -> dict[str, Any]:
    """Check one input against its model's training statistics; the one call a pipeline makes.

    ``array`` ``(C, *S)`` holds the input's raw values as the model will get them (before the
    normalisation); ``valid`` ``(*S)`` marks the pixels to consider (default: all finite ones).
    On drift, ``warn`` gets one line naming ``source`` and the result is
    ``{"input_drift": {...}}`` for the input's record; otherwise ``{}`` (also when ``card`` has
    no statistics or another channel count).
    """
    stats = InputStats.from_card(card)
    if stats is None:
        return {}
    drift = compare(stats, grid_pixels(array, valid))
    if drift is None:
        return {}
    warn(f"{source}: {drift['message']}")
    return {"input_drift": drift}


class InputWatch:
    """What :func:`watch_input` saw: ``fields`` for the input's record (``{}`` without drift)."""

    def __init__(self) -> None:
        self.checked = False
        self.fields: dict[str, Any] = {}


@contextmanager
def watch_input(predictor: Any, source: str | Path, warn: Callable[[str], None]) -> Iterator[InputWatch]:
    """Check the first image ``predictor`` prepares inside the block (with
    :func:`check_input_drift`), for pipelines that hand the predictor an input they read
    deeper down (a frame, the first frame of a video). The predictor is left as it was."""
    watch = InputWatch()
    card = getattr(predictor, "card", None)
    if InputStats.from_card(card) is None or not hasattr(predictor, "prepare"):
        yield watch
        return
    had_own = "prepare" in vars(predictor)
    original = predictor.prepare

    def prepare(image: Any, *args: Any, **kwargs: Any) -> Any:
        prepared = original(image, *args, **kwargs)  # first: an input it refuses gets no warning
        if not watch.checked:
            watch.checked = True
            first = image[0] if getattr(image, "ndim", 0) == predictor.spatial_dims + 2 else image
            watch.fields = check_input_drift(card, first, source, warn)
        return prepared

    predictor.prepare = prepare
    try:
        yield watch
    finally:
        if had_own:
            predictor.prepare = original
        else:
            del predictor.prepare
