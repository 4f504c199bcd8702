"""Datastores: (image, label) pairs from paired folders or a manifest file.

Samples are dicts with fixed keys, as in TorchGeo: ``image`` (float tensor ``(C, *S)``),
``mask`` (int64 tensor ``(*S)``, train ids, ignore index where unlabelled) and ``meta``
(source paths, group id). Paired folders are ``ROOT/images/*`` and ``ROOT/masks/*``
matched by file stem; a manifest is a CSV or JSON list with ``image`` and ``mask``
columns (paths relative to the manifest) and an optional ``group`` column.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..classmap import ClassMap
from ..errors import InputFileError
from .images import IMAGE_SUFFIXES, read_image, read_mask


class UnknownLabelWarning(UserWarning):
    """A label file holds raw ids that its class map does not list (they become the ignore index)."""


@dataclass(frozen=True)
class Pair:
    image: Path
    mask: Path | None
    group: str = ""

    @property
    def stem(self) -> str:
        return self.image.stem


def _files(folder: Path) -> dict[str, Path]:
    return {p.stem: p for p in sorted(folder.iterdir()) if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES}


def scan_pairs(root: str | Path, *, require_masks: bool = True) -> list[Pair]:
    """Pairs from ``root/images`` + ``root/masks`` or from a manifest file (CSV/JSON)."""
    root = Path(root)
    if not root.exists():
        raise InputFileError(f"{root}: dataset not found")
    if root.is_file():
        return read_manifest(root)
    images, masks = root / "images", root / "masks"
    if not images.is_dir():
        raise InputFileError(f"{root}: expected an images/ folder (and masks/ with the same file stems) or a manifest file")
    imgs = _files(images)
    if not imgs:
        raise InputFileError(f"{images}: no images (PNG, JPEG, BMP or TIFF)")
    if not masks.is_dir():
        if require_masks:
            raise InputFileError(f"{root}: no masks/ folder beside images/")
        return [Pair(p, None) for p in imgs.values()]
    msks = _files(masks)
    missing = sorted(set(imgs) - set(msks))
    if missing and require_masks:
        raise InputFileError(f"{masks}: no mask for {len(missing)} image(s), e.g. {missing[0]!r} (masks are matched by file stem)")
    return [Pair(imgs[s], msks.get(s)) for s in sorted(imgs)]


def read_manifest(path: Path) -> list[Pair]:
    base = path.parent
    try:
        if path.suffix.lower() == ".json":
            rows = json.loads(path.read_text())
            if isinstance(rows, dict):
                rows = rows.get("samples", [])
        elif path.suffix.lower() == ".csv":
            with path.open(newline="") as fh:
                rows = list(csv.DictReader(fh))
        else:
            raise InputFileError(f"{path}: a manifest must be .csv or .json")
    except (OSError, json.JSONDecodeError, csv.Error) as exc:
        raise InputFileError(f"{path}: cannot read manifest ({exc})") from None
    pairs = []
    for i, row in enumerate(rows):
        if not isinstance(row, dict) or "image" not in row:
            raise InputFileError(f"{path}: entry {i} has no 'image' field")
        img = base / row["image"]
        mask = base / row["mask"] if row.get("mask") else None
        for p in (img, mask):
            if p is not None and not p.exists():
                raise InputFileError(f"{path}: entry {i} points to missing file {p}")
        pairs.append(Pair(img, mask, str(row.get("group", "") or "")))
    if not pairs:
        raise InputFileError(f"{path}: manifest lists no samples")
    return pairs


def write_manifest(path: Path, pairs: Sequence[Pair]) -> Path:
    from ..io import atomic_path

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    base = path.parent.resolve()

    def rel(p: Path | None) -> str:
        if p is None:
            return ""
        p = p.resolve()
        try:
            return p.relative_to(base).as_posix()
        except ValueError:
            import os

            return Path(os.path.relpath(p, base)).as_posix()

    with atomic_path(path) as tmp:
        with tmp.open("w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["image", "mask", "group"])
            for p in pairs:
                w.writerow([rel(p.image), rel(p.mask), p.group])
    return path


@dataclass(frozen=True)
class Normalization:
    """Per-channel ``(x - mean) / std`` on raw pixel values (any dtype)."""

    mean: tuple[float, ...]
    std: tuple[float, ...]

    def apply(self, image: torch.Tensor) -> torch.Tensor:
        shape = (-1,) + (1,) * (image.ndim - 1)
        mean = torch.as_tensor(self.mean, dtype=torch.float32, device=image.device).view(shape)
        std = torch.as_tensor(self.std, dtype=torch.float32, device=image.device).view(shape)
        return (image.float() - mean) / std

    def to_dict(self) -> dict[str, Any]:
        return {"kind": "zscore", "mean": list(self.mean), "std": list(self.std)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Normalization":
        return cls(tuple(d["mean"]), tuple(d["std"]))


def channel_stats(pairs: Sequence[Pair], max_images: int = 64) -> Normalization:
    """Mean and standard deviation per channel over (up to) ``max_images`` training images."""
    total = sq = None
    n = 0
    for pair in list(pairs)[:max_images]:
        arr = read_image(pair.image).array.astype(np.float64)
        c = arr.reshape(arr.shape[0], -1)
        total = c.sum(1) if total is None else total + c.sum(1)
        sq = (c**2).sum(1) if sq is None else sq + (c**2).sum(1)
        n += c.shape[1]
    mean = total / n
    std = np.sqrt(np.maximum(sq / n - mean**2, 0)) + 1e-6
    return Normalization(tuple(float(m) for m in mean), tuple(float(s) for s in std))


class SegmentationDataset(torch.utils.data.Dataset):
    """Image/mask pairs as ``{"image", "mask", "meta"}`` samples, with an optional transform."""

    def __init__(self, pairs: Sequence[Pair], class_map: ClassMap, normalization: Normalization | None = None,
                 transform: Callable[[dict[str, Any]], dict[str, Any]] | None = None, remap: bool = True) -> None:
        self.pairs = list(pairs)
        self.class_map = class_map
        self.normalization = normalization
        self.transform = transform
        self.remap = remap

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, i: int) -> dict[str, Any]:
        pair = self.pairs[i]
        item = read_image(pair.image)
        image = torch.from_numpy(item.array.astype(np.float32))
        if self.normalization is not None:
            image = self.normalization.apply(image)
        if pair.mask is not None:
            raw = read_mask(pair.mask)
            if raw.shape != tuple(image.shape[1:]):
                raise InputFileError(f"{pair.mask}: mask is {raw.shape[1]}x{raw.shape[0]} but its image is "
                                     f"{image.shape[2]}x{image.shape[1]}")
            if self.remap and self.class_map.raw_ids is not None:
                unknown = ~np.isin(raw, list(self.class_map.raw_ids))
                if unknown.any():  # counted and reported, then ignored: never a silent wrong label
                    import warnings

                    ids = sorted(np.unique(raw[unknown]).tolist())[:5]
                    warnings.warn(f"{pair.mask}: {int(unknown.sum())} pixels have label ids {ids} that the class map "
                                  f"{self.class_map.name!r} does not know; they are ignored", UnknownLabelWarning, stacklevel=2)
                lab = self.class_map.to_train_ids(raw)
            else:
                lab = raw
            lab = np.asarray(lab, dtype=np.int64)
            bad = (lab != self.class_map.ignore_index) & ((lab < 0) | (lab >= self.class_map.num_classes))
            if bad.any():
                raise InputFileError(
                    f"{pair.mask}: label values {sorted(np.unique(lab[bad]).tolist())[:5]} are not classes 0.."
                    f"{self.class_map.num_classes - 1} nor the ignore index {self.class_map.ignore_index}"
                )
            mask = torch.from_numpy(lab)
        else:
            mask = torch.full(image.shape[1:], self.class_map.ignore_index, dtype=torch.int64)
        sample = {"image": image, "mask": mask, "meta": {"image": str(pair.image), "mask": str(pair.mask or ""), "group": pair.group}}
        if self.transform is not None:
            sample = self.transform(sample)
        return sample
