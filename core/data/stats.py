"""Class statistics and class weights (the recipes of MATLAB's countEachLabel)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from ..classmap import ClassMap
from ..errors import SegsuiteError

WeightRecipe = Literal["uniform", "inverse", "median"]


@dataclass
class ClassCounts:
    names: tuple[str, ...]
    pixels: np.ndarray  # labelled pixels per class
    image_pixels: np.ndarray  # total pixels of the images in which each class occurs

    @property
    def frequency(self) -> np.ndarray:
        total = self.pixels.sum()
        return self.pixels / total if total else np.zeros_like(self.pixels, dtype=float)

    def weights(self, recipe: WeightRecipe = "median") -> np.ndarray:
        """``uniform``: all 1; ``inverse``: total / (K * count); ``median``: median(f) / f with
        f = class pixels / pixels of the images containing the class (Eigen and Fergus).
        Classes never seen get weight 0 (they cannot be learned from this data)."""
        k = len(self.names)
        if recipe == "uniform":
            return np.ones(k)
        seen = self.pixels > 0
        w = np.zeros(k)
        if recipe == "inverse":
            w[seen] = self.pixels.sum() / (seen.sum() * self.pixels[seen])
        elif recipe == "median":
            f = self.pixels[seen] / self.image_pixels[seen]
            w[seen] = np.median(f) / f
        else:
            raise SegsuiteError(f"unknown class-weight recipe {recipe!r}; use uniform, inverse or median")
        return w

    def to_dict(self) -> dict:
        return {n: {"pixels": int(p), "frequency": float(f)} for n, p, f in zip(self.names, self.pixels, self.frequency)}


def count_classes(masks: Iterable[np.ndarray], class_map: ClassMap) -> ClassCounts:
    k = class_map.num_classes
    pixels = np.zeros(k, dtype=np.int64)
    image_pixels = np.zeros(k, dtype=np.int64)
    for mask in masks:
        m = np.asarray(mask).ravel()
        valid = m != class_map.ignore_index
        c = np.bincount(m[valid].astype(np.int64), minlength=k)[:k]
        pixels += c
        image_pixels[c > 0] += int(valid.sum())
    return ClassCounts(class_map.names, pixels, image_pixels)


def count_dataset(dataset: Sequence, class_map: ClassMap) -> ClassCounts:
    """Counts over a :class:`SegmentationDataset` (reads masks only, no transform)."""
    from .images import read_mask

    def masks():
        for pair in dataset.pairs:  # type: ignore[attr-defined]
            if pair.mask is not None:
                raw = read_mask(pair.mask)
                yield class_map.to_train_ids(raw) if class_map.raw_ids is not None else raw

    return count_classes(masks(), class_map)
