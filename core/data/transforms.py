"""Augmentation on tensors, applied identically to image and mask, 2D and 3D.

One random draw decides each geometric change and is applied to both arrays, with the
interpolation each needs (linear for the image, nearest for the mask, as MONAI does per
key). Intensity changes touch the image only. Randomness comes from torch's generator, so
``torch.manual_seed`` (and the DataLoader's per-worker seeding) makes it reproducible.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class Augment:
    flip_axes: tuple[int, ...] | None = None
    """Spatial axes (0 = first spatial axis) flipped with probability 0.5; ``None`` = the last one only
    (left-right), which is safe for street scenes; use all axes for satellite or microscopy."""
    rotate90: bool = False
    """Random multiples of 90 degrees in the last two axes (orientation-free imagery only)."""
    scale: tuple[float, float] | None = None
    """Random zoom range, e.g. (0.75, 1.25); without ``crop`` the result is cropped/padded back to the input size."""
    crop: tuple[int, ...] | None = None
    """Random crop to this spatial size; smaller inputs are padded (mask with the ignore index)."""
    foreground_crop: float = 0.0
    """Share of crops centred on a random labelled foreground pixel (class > 0) instead of a random
    place: oversamples rare defects or lesions that uniform crops would almost never contain."""
    brightness: float = 0.0
    contrast: float = 0.0
    noise: float = 0.0
    ignore_index: int = 255

    def __call__(self, sample: dict[str, Any]) -> dict[str, Any]:
        image, mask = sample["image"], sample["mask"]
        dims = mask.ndim
        original = tuple(mask.shape)
        if self.scale is not None:
            lo, hi = self.scale
            f = float(torch.empty(1).uniform_(lo, hi))
            size = [max(1, round(s * f)) for s in mask.shape]
            mode = "bilinear" if dims == 2 else "trilinear"
            image = F.interpolate(image[None], size=size, mode=mode, align_corners=False)[0]
            mask = F.interpolate(mask[None, None].float(), size=size, mode="nearest")[0, 0].long()
        axes = self.flip_axes if self.flip_axes is not None else (dims - 1,)
        for ax in axes:
            if torch.rand(1).item() < 0.5:
                image = image.flip(ax + 1)
                mask = mask.flip(ax)
        if self.rotate90:
            k = int(torch.randint(0, 4, (1,)))
            if k:
                image = torch.rot90(image, k, dims=(dims - 1, dims))
                mask = torch.rot90(mask, k, dims=(dims - 2, dims - 1))
        if self.crop is not None:
            center = None
            if self.foreground_crop and torch.rand(1).item() < self.foreground_crop:
                fg = ((mask > 0) & (mask != self.ignore_index)).nonzero()
                if len(fg):
                    center = tuple(int(v) for v in fg[int(torch.randint(0, len(fg), (1,)))])
            image, mask = random_crop(image, mask, self.crop, self.ignore_index, center=center)
        elif tuple(mask.shape) != original:  # zoomed without a crop size: back to the input size
            image, mask = random_crop(image, mask, original, self.ignore_index)
        if self.brightness or self.contrast:
            c = 1 + float(torch.empty(1).uniform_(-self.contrast, self.contrast))
            b = float(torch.empty(1).uniform_(-self.brightness, self.brightness))
            mean = image.mean(dim=tuple(range(1, image.ndim)), keepdim=True)
            image = (image - mean) * c + mean + b
        if self.noise:
            image = image + self.noise * torch.randn_like(image)
        return {**sample, "image": image.contiguous(), "mask": mask.contiguous()}


def random_crop(image: torch.Tensor, mask: torch.Tensor, size: tuple[int, ...], ignore_index: int,
                center: tuple[int, ...] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Crop ``size`` at a random place (or around ``center``), padding where the input is smaller."""
    if len(size) != mask.ndim:
        raise ValueError(f"crop size {size} does not match {mask.ndim}D data")
    pads = []
    for s, c in zip(reversed(mask.shape), reversed(size)):
        pads += [0, max(0, c - s)]
    if any(pads):
        image = F.pad(image, pads, value=0.0)
        mask = F.pad(mask, pads, value=ignore_index)
    slices = []
    for i, (s, c) in enumerate(zip(mask.shape, size)):
        if center is not None:
            start = min(max(0, center[i] - c // 2), s - c)
        else:
            start = int(torch.randint(0, s - c + 1, (1,)))
        slices.append(slice(start, start + c))
    return image[(slice(None), *slices)], mask[tuple(slices)]
