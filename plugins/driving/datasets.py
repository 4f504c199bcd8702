"""Street-scene dataset layouts: Cityscapes (leftImg8bit/ + gtFine/), CamVid (SegNet release) and a
flat folder of Cityscapes-named frames and label-id files (the shipped sample). Which layout a
folder is in is decided in :mod:`.formats`.

All give pairs to the core's SegmentationDataset, which remaps raw label ids to train ids
through the class map on load (Cityscapes: 34 label ids -> 19 train ids, the rest 255).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from segsuite.core.classmap import ClassMap
from segsuite.core.data.datasets import Normalization, Pair, SegmentationDataset, channel_stats
from segsuite.core.data.transforms import Augment
from segsuite.core.errors import InputFileError


def cityscapes_pairs(root: str | Path, split: str) -> list[Pair]:
    root = Path(root)
    images = root / "leftImg8bit" / split
    if not images.is_dir():
        raise InputFileError(f"{root}: no leftImg8bit/{split}/ folder (Cityscapes layout)")
    pairs = []
    for img in sorted(images.glob("*/*_leftImg8bit.png")):
        base = img.name[: -len("_leftImg8bit.png")]
        gt = root / "gtFine" / split / img.parent.name / f"{base}_gtFine_labelIds.png"
        if not gt.exists():
            raise InputFileError(f"{img}: no label file {gt}")
        pairs.append(Pair(img, gt, img.parent.name))  # group = city, so splits never share a city
    if not pairs:
        raise InputFileError(f"{images}: no *_leftImg8bit.png images")
    return pairs


def cityscapes_named_pairs(root: str | Path) -> list[Pair]:
    """``*_leftImg8bit.png`` frames anywhere below ``root``, each with the ``*_gtFine_labelIds.png``
    of the same base name anywhere below ``root`` (e.g. ``frames/`` and ``labels/`` side by side)."""
    root = Path(root)
    labels = {p.name[: -len("_gtFine_labelIds.png")]: p for p in sorted(root.rglob("*_gtFine_labelIds.png"))}
    pairs = []
    for img in sorted(root.rglob("*_leftImg8bit.png")):
        base = img.name[: -len("_leftImg8bit.png")]
        if base not in labels:
            raise InputFileError(f"{img}: no label file {base}_gtFine_labelIds.png below {root}")
        pairs.append(Pair(img, labels[base], base.split("_")[0]))  # group = city, as in the full layout
    if not pairs:
        raise InputFileError(f"{root}: no *_leftImg8bit.png frames beside its *_gtFine_labelIds.png files")
    return pairs


def camvid_pairs(root: str | Path, split: str) -> list[Pair]:
    root = Path(root)
    images, annots = root / split, root / f"{split}annot"
    if not images.is_dir() or not annots.is_dir():
        raise InputFileError(f"{root}: expected {split}/ and {split}annot/ folders (CamVid, SegNet release)")
    pairs = []
    for img in sorted(images.glob("*.png")):
        gt = annots / img.name
        if not gt.exists():
            raise InputFileError(f"{img}: no annotation {gt}")
        pairs.append(Pair(img, gt, img.stem.split("_")[0]))  # group = sequence prefix
    return pairs


def _dataset(pairs: list[Pair], class_map: ClassMap, train: bool, patch_size: Any, normalization: Normalization | None,
             augment: bool) -> SegmentationDataset:
    norm = normalization or channel_stats(pairs)
    transform = None
    if train and augment:
        transform = Augment(flip_axes=None, scale=(0.75, 1.5), crop=tuple(patch_size) if patch_size else None,
                            brightness=0.1, contrast=0.1, ignore_index=class_map.ignore_index)
    elif patch_size and train:
        transform = Augment(crop=tuple(patch_size), ignore_index=class_map.ignore_index)
    ds = SegmentationDataset(pairs, class_map, norm, transform=transform)
    ds.normalization = norm  # type: ignore[attr-defined]
    return ds


def cityscapes_format(root: str | Path, class_map: ClassMap, *, train: bool, patch_size: Any = None,
                      normalization: Normalization | None = None, augment: bool = True) -> SegmentationDataset:
    """Cityscapes folders: train split for training, val split for validation/evaluation."""
    return _dataset(cityscapes_pairs(root, "train" if train else "val"), class_map, train, patch_size, normalization, augment)


def camvid_format(root: str | Path, class_map: ClassMap, *, train: bool, patch_size: Any = None,
                  normalization: Normalization | None = None, augment: bool = True) -> SegmentationDataset:
    return _dataset(camvid_pairs(root, "train" if train else "val"), class_map, train, patch_size, normalization, augment)


def cityscapes_named_format(root: str | Path, class_map: ClassMap, *, train: bool, patch_size: Any = None,
                            normalization: Normalization | None = None, augment: bool = True) -> SegmentationDataset:
    """Every Cityscapes-named pair below ``root`` (no splits: for evaluation and small samples)."""
    return _dataset(cityscapes_named_pairs(root), class_map, train, patch_size, normalization, augment)
