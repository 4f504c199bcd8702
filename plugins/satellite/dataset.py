"""Training data from aligned GeoTIFF image/mask pairs, sampled as windows.

``ROOT/images/*.tif`` and ``ROOT/masks/*.tif`` are matched by file stem. Each mask must be
on exactly the image's grid (same CRS, transform and size); anything else is refused with
the difference spelled out, because a shifted mask silently teaches the wrong thing.
Training draws random windows (more from larger scenes); validation tiles every scene with
non-overlapping windows so every labelled pixel is scored once. Nodata pixels (image
nodata/mask, or the mask's own nodata) are labelled with the ignore index.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from segsuite.core.classmap import ClassMap
from segsuite.core.data.datasets import Normalization
from segsuite.core.data.transforms import Augment
from segsuite.core.errors import InputFileError

SUFFIXES = (".tif", ".tiff")


@dataclass(frozen=True)
class ScenePair:
    image: Path
    mask: Path | None
    height: int
    width: int


def scan_scenes(root: str | Path, *, require_masks: bool = True) -> list[ScenePair]:
    """The ``images/`` + ``masks/`` pairs under ``root`` (matched by file stem), each mask checked
    to lie exactly on its image's grid."""
    root = Path(root)
    images, masks = root / "images", root / "masks"
    if not images.is_dir():
        raise InputFileError(f"{root}: expected images/ and masks/ folders of GeoTIFFs with the same file stems")
    imgs = {p.stem: p for p in sorted(images.iterdir()) if p.suffix.lower() in SUFFIXES}
    if not imgs:
        raise InputFileError(f"{images}: no GeoTIFF (.tif) images")
    msks = {p.stem: p for p in sorted(masks.iterdir()) if p.suffix.lower() in SUFFIXES} if masks.is_dir() else {}
    pairs = []
    for stem, img in imgs.items():
        mask = msks.get(stem)
        if mask is None and require_masks:
            raise InputFileError(f"{img}: no mask {masks / (stem + '.tif')}")
        pairs.append(check_pair(img, mask))
    return pairs


def check_pair(image: Path, mask: Path | None) -> ScenePair:
    """``image`` and its label raster ``mask``, refused unless the mask has one band on exactly the
    image's grid (size, CRS, transform): a shifted mask silently teaches and scores the wrong thing."""
    import rasterio

    try:
        with rasterio.open(image) as si:
            shape, crs, transform = (si.height, si.width), si.crs, si.transform
        if mask is not None:
            with rasterio.open(mask) as sm:
                if (sm.height, sm.width) != shape:
                    raise InputFileError(f"{mask}: mask is {sm.width}x{sm.height} pixels, its image {image.name} is {shape[1]}x{shape[0]}")
                if sm.crs != crs:
                    raise InputFileError(f"{mask}: mask CRS {sm.crs} differs from its image's {crs}")
                if not sm.transform.almost_equals(transform):
                    raise InputFileError(f"{mask}: mask transform {tuple(sm.transform)[:6]} differs from its image's {tuple(transform)[:6]}")
                if sm.count != 1:
                    raise InputFileError(f"{mask}: a mask needs one band, it has {sm.count}")
    except rasterio.errors.RasterioIOError as exc:
        raise InputFileError(f"{exc}: not a readable GeoTIFF") from None
    return ScenePair(image, mask, shape[0], shape[1])


def scene_normalization(pairs: list[ScenePair]) -> Normalization:
    """Pooled per-band mean/std over all scenes, nodata excluded (streamed)."""
    from .raster import band_statistics

    n_tot, s_tot, s2_tot = 0.0, None, None
    for p in pairs:
        st = band_statistics(p.image)
        n = st["valid_pixels"]
        mean, std = np.asarray(st["mean"]), np.asarray(st["std"])
        s_tot = mean * n if s_tot is None else s_tot + mean * n
        s2_tot = (std**2 + mean**2) * n if s2_tot is None else s2_tot + (std**2 + mean**2) * n
        n_tot += n
    mean = s_tot / n_tot
    std = np.sqrt(np.maximum(s2_tot / n_tot - mean**2, 0)) + 1e-6
    return Normalization(tuple(mean.tolist()), tuple(std.tolist()))


class GeoTiffWindows(torch.utils.data.Dataset):
    def __init__(self, root: str | Path, class_map: ClassMap, *, train: bool = True, patch_size: tuple[int, int] | None = None,
                 normalization: Normalization | None = None, augment: bool = True, samples_per_epoch: int | None = None) -> None:
        self.pairs = scan_scenes(root)
        self.class_map = class_map
        self.patch = tuple(patch_size or (256, 256))
        self.train = train
        self.normalization = normalization or scene_normalization(self.pairs)
        self.augment = Augment(flip_axes=(0, 1), rotate90=True, ignore_index=class_map.ignore_index) if (train and augment) else None
        areas = np.array([p.height * p.width for p in self.pairs], np.float64)
        self.weights = areas / areas.sum()
        ph, pw = self.patch
        if train:
            self.length = samples_per_epoch or max(8, int(2 * areas.sum() / (ph * pw)))
            self.index: list[tuple[int, int, int]] = []
        else:
            self.index = [(i, y, x) for i, p in enumerate(self.pairs)
                          for y in _grid(p.height, ph) for x in _grid(p.width, pw)]
            self.length = len(self.index)

    def __len__(self) -> int:
        return self.length

    def _read(self, i: int, y: int, x: int) -> dict[str, Any]:
        import rasterio
        from rasterio.windows import Window

        pair = self.pairs[i]
        ph, pw = min(self.patch[0], pair.height), min(self.patch[1], pair.width)
        win = Window(x, y, pw, ph)
        with rasterio.open(pair.image) as src:
            data = src.read(window=win, out_dtype="float32")
            valid = src.dataset_mask(window=win) > 0
        with rasterio.open(pair.mask) as src:
            raw = src.read(1, window=win).astype(np.int64)
            mvalid = src.dataset_mask(window=win) > 0
        lab = self.class_map.to_train_ids(raw) if self.class_map.raw_ids is not None else raw
        ignore = self.class_map.ignore_index
        lab = np.where(valid & mvalid, lab, ignore)
        bad = (lab != ignore) & ((lab < 0) | (lab >= self.class_map.num_classes))
        if bad.any():
            raise InputFileError(f"{pair.mask}: class ids {sorted(np.unique(lab[bad]).tolist())[:5]} are outside the class map "
                                 f"(0..{self.class_map.num_classes - 1}, ignore {ignore})")
        image = self.normalization.apply(torch.from_numpy(data))
        image[:, torch.from_numpy(~valid)] = 0.0
        return {"image": image, "mask": torch.from_numpy(lab),
                "meta": {"image": str(pair.image), "mask": str(pair.mask), "window": [y, x], "group": pair.image.stem}}

    def __getitem__(self, idx: int) -> dict[str, Any]:
        if self.train:
            i = int(torch.multinomial(torch.as_tensor(self.weights), 1))
            pair = self.pairs[i]
            y = int(torch.randint(0, max(1, pair.height - self.patch[0] + 1), (1,)))
            x = int(torch.randint(0, max(1, pair.width - self.patch[1] + 1), (1,)))
            sample = self._read(i, y, x)
            return self.augment(sample) if self.augment else sample
        return self._read(*self.index[idx])


def _grid(size: int, patch: int) -> list[int]:
    if size <= patch:
        return [0]
    starts = list(range(0, size - patch, patch))
    starts.append(size - patch)
    return starts


def geotiff_format(root: str | Path, class_map: ClassMap, *, train: bool, patch_size: tuple[int, ...] | None = None,
                   normalization: Normalization | None = None, augment: bool = True) -> GeoTiffWindows:
    """Dataset-format hook: aligned GeoTIFF pairs sampled as windows."""
    return GeoTiffWindows(root, class_map, train=train, patch_size=patch_size, normalization=normalization, augment=augment)
