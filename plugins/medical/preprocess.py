"""Volume preprocessing recorded in the model card, and its exact inverse.

Forward (image → model grid):
1. reorient to the closest canonical orientation (RAS in nibabel's sense: the voxel axes
   increase towards the patient's Right, Anterior and Superior) by axis permutations and
   flips only, which are lossless and exactly invertible;
2. resample (trilinear) to the model's voxel spacing;
3. normalise intensities: a CT window (clip to a Hounsfield range, then scale to [-1, 1])
   or, for MRI, a per-volume z-score over the non-zero (body) voxels.

Inverse (model output → the input's own grid): class probabilities are resampled back to
the reoriented input shape (trilinear, as nnU-Net does: interpolating probabilities and
taking the argmax afterwards gives smoother borders than nearest-neighbour on labels),
then the axis flips and permutations are undone and the argmax is taken by the caller.
The result has the input's exact shape and voxel order, so written with the input's
affine it lines up voxel for voxel in any viewer. An oblique input stays oblique: the
canonical orientation is the closest axis-aligned one, and nothing is interpolated for
the reorientation itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from segsuite.core.errors import SegsuiteError

CT_WINDOW = (-250.0, 350.0)
"""Default Hounsfield window for abdominal CT: soft tissue, contrast-enhanced organs, some bone."""


@dataclass(frozen=True)
class Preprocessing:
    """What the model expects; stored as the card's ``normalization`` dict."""

    spacing: tuple[float, float, float] | None = None
    """Voxel size in mm along the canonical (RAS) axes; ``None`` keeps each input's own grid."""
    intensity: str = "ct_window"
    """``ct_window``, ``zscore`` (per volume, non-zero voxels) or ``none``."""
    window: tuple[float, float] = CT_WINDOW
    orientation: str = "RAS"
    mirror_axes: tuple[int, ...] = (0, 1, 2)
    """Axes the training augmentation mirrored (flip test-time augmentation is only valid along these)."""

    def __post_init__(self) -> None:
        if self.intensity not in ("ct_window", "zscore", "none"):
            raise SegsuiteError(f"intensity normalisation {self.intensity!r}: choose ct_window, zscore or none")
        if self.window[0] >= self.window[1]:
            raise SegsuiteError(f"CT window {self.window}: the lower bound must be below the upper one")
        if self.spacing is not None and (len(self.spacing) != 3 or min(self.spacing) <= 0):
            raise SegsuiteError(f"target spacing {self.spacing} must be three positive sizes in mm")

    def to_dict(self) -> dict[str, Any]:
        return {"kind": "volume", "intensity": self.intensity, "window": list(self.window),
                "spacing": list(self.spacing) if self.spacing else None, "orientation": self.orientation,
                "mirror_axes": list(self.mirror_axes)}

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "model card") -> "Preprocessing":
        if data.get("kind") != "volume":
            raise SegsuiteError(f"{source}: not a medical volume model (its input normalisation is "
                                f"{data.get('kind') or 'missing'}); train one with `segsuite train medical`")
        spacing = data.get("spacing")
        return cls(spacing=tuple(float(s) for s in spacing) if spacing else None, intensity=data.get("intensity", "ct_window"),
                   window=tuple(float(w) for w in data.get("window", CT_WINDOW)), orientation=data.get("orientation", "RAS"),
                   mirror_axes=tuple(int(a) for a in data.get("mirror_axes", (0, 1, 2))))

    def normalize(self, volume: np.ndarray, *, inplace: bool = False) -> np.ndarray:
        """Intensity normalisation of a ``(C, X, Y, Z)`` array (per channel), as float32; ``inplace``
        reuses ``volume``'s memory when it already is float32 (no copy of a CT-sized volume)."""
        x = volume.astype(np.float32, copy=not inplace)
        if self.intensity == "ct_window":
            lo, hi = self.window
            np.clip(x, lo, hi, out=x)
            x -= (lo + hi) / 2.0
            x /= (hi - lo) / 2.0
        elif self.intensity == "zscore":
            for c in range(x.shape[0]):
                body = x[c] != 0
                vals = x[c][body] if body.any() else x[c].ravel()
                x[c] -= float(vals.mean())
                x[c] /= max(float(vals.std()), 1e-6)
        return x


@dataclass
class Grid:
    """How one volume was brought to the model grid, so that the way back is exact."""

    original_shape: tuple[int, int, int]
    transform: np.ndarray
    """nibabel orientation transform from the file's voxel axes to the canonical ones."""
    canonical_shape: tuple[int, int, int]


def canonical_transform(affine: np.ndarray, orientation: str = "RAS") -> np.ndarray:
    import nibabel as nib

    return nib.orientations.ornt_transform(nib.io_orientation(affine), nib.orientations.axcodes2ornt(tuple(orientation)))


def reorient(volume: np.ndarray, transform: np.ndarray) -> np.ndarray:
    """Apply an orientation transform to the spatial axes of ``(C, X, Y, Z)`` (flips/permutations only)."""
    import nibabel as nib

    return np.stack([nib.orientations.apply_orientation(v, transform) for v in volume])


def voxel_sizes(affine: np.ndarray) -> np.ndarray:
    return np.sqrt((np.asarray(affine)[:3, :3] ** 2).sum(0))


def canonical_voxel_sizes(affine: np.ndarray, transform: np.ndarray) -> tuple[float, ...]:
    """Voxel sizes in mm along the canonical axes (the file's sizes, permuted by ``transform``)."""
    return tuple(float(s) for s in voxel_sizes(affine)[transform[:, 0].astype(int).argsort()])


def resample(volume: Any, shape: tuple[int, ...], mode: str = "trilinear") -> Any:
    """Resize a ``(C, *S)`` tensor to ``shape``; voxel centres stay aligned (``align_corners=False``).

    ``mode="nearest"`` is for label volumes and keeps their integer dtype.
    """
    import torch.nn.functional as F

    if tuple(volume.shape[1:]) == tuple(shape):
        return volume
    if mode == "nearest":
        return F.interpolate(volume[None].float(), size=shape, mode="nearest-exact")[0].to(volume.dtype)
    return F.interpolate(volume[None].float(), size=shape, mode=mode, align_corners=False)[0]


def grid_shapes(shape: tuple[int, ...], affine: np.ndarray, prep: Preprocessing,
                transform: np.ndarray | None = None) -> tuple[tuple[int, int, int], tuple[int, int, int]]:
    """``(canonical shape, model-grid shape)`` of a volume of spatial ``shape`` with ``affine``: known from
    the header alone, so memory can be planned before any voxel is read."""
    tf = canonical_transform(affine, prep.orientation) if transform is None else transform
    canon = [0, 0, 0]
    for axis, (dst, _flip) in enumerate(tf):
        canon[int(dst)] = int(shape[axis])
    canon_shape = tuple(canon)
    if prep.spacing is None:
        return canon_shape, canon_shape  # type: ignore[return-value]
    spacing = canonical_voxel_sizes(affine, tf)
    return canon_shape, tuple(max(1, int(round(n * s / t))) for n, s, t in zip(canon_shape, spacing, prep.spacing))  # type: ignore[return-value]


def to_model_grid(volume: np.ndarray, affine: np.ndarray, prep: Preprocessing, *,
                  labels: np.ndarray | None = None) -> tuple[Any, Any, Grid]:
    """``(image tensor (C, *model grid), label tensor or None, Grid)`` for a ``(C, X, Y, Z)`` raw volume."""
    import torch

    tf = canonical_transform(affine, prep.orientation)
    canon = reorient(volume, tf)
    canon_shape, model_shape = grid_shapes(volume.shape[1:], affine, prep, tf)
    image = resample(torch.from_numpy(prep.normalize(canon, inplace=True)), model_shape)  # canon is our own copy
    lab = None
    if labels is not None:
        lab_c = reorient(labels[None], tf)
        lab = resample(torch.from_numpy(np.ascontiguousarray(lab_c).astype(np.int64)), model_shape, mode="nearest")[0]
    grid = Grid(original_shape=tuple(int(s) for s in volume.shape[1:]), transform=tf, canonical_shape=canon_shape)
    return image.contiguous(), lab, grid


SLAB = 16
"""Output slices per step when mapping back: the full-resolution class probabilities of a CT
volume (classes x 67 M voxels at 512x512x256) are never held at once."""


def _linear_taps(n_out: int, n_in: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Source indices and weights of 1D linear resizing ``n_in -> n_out`` with voxel centres aligned
    (``align_corners=False``, clamped at the edges: the same mapping as ``F.interpolate``)."""
    src = np.maximum((np.arange(n_out) + 0.5) * (n_in / n_out) - 0.5, 0.0)
    i0 = np.minimum(np.floor(src).astype(np.int64), n_in - 1)
    i1 = np.minimum(i0 + 1, n_in - 1)
    w1 = (src - i0).astype(np.float32)
    return i0, i1, w1


def _canonical_slabs(values: Any, grid: Grid):
    """``(start, stop, slab)``: the values ``(C, *model grid)`` resampled (trilinear, separably: in-plane
    first, then along the last axis) to the canonical input shape, a few slices at a time; each
    slab is ``(slices, C, X, Y)``."""
    import torch
    import torch.nn.functional as F

    x, y, z = grid.canonical_shape
    v = values.float()
    # in-plane: the model's slices become batch entries, (Zm, C, Xm, Ym) -> (Zm, C, X, Y)
    plane = F.interpolate(v.permute(3, 0, 1, 2), size=(x, y), mode="bilinear", align_corners=False) \
        if tuple(v.shape[1:3]) != (x, y) else v.permute(3, 0, 1, 2)
    i0, i1, w1 = _linear_taps(z, plane.shape[0])
    for start in range(0, z, SLAB):
        stop = min(start + SLAB, z)
        a, b = torch.from_numpy(i0[start:stop]), torch.from_numpy(i1[start:stop])
        w = torch.from_numpy(w1[start:stop]).view(-1, 1, 1, 1)
        yield start, stop, plane[a] * (1 - w) + plane[b] * w  # (slices, C, X, Y)


def from_model_grid(values: Any, grid: Grid) -> np.ndarray:
    """Per-channel maps ``(C, *model grid)`` (probabilities, uncertainty...) → ``(C, X, Y, Z)`` float32 on
    the input's grid: trilinear back to the reoriented input shape, then the flips and axis
    permutations undone (no interpolation in that step)."""
    import nibabel as nib

    out = np.empty((values.shape[0], *grid.canonical_shape), np.float32)
    for start, stop, slab in _canonical_slabs(values, grid):
        out[..., start:stop] = slab.permute(1, 2, 3, 0).cpu().numpy()
    inv = _invert(grid.transform)
    restored = np.stack([nib.orientations.apply_orientation(c, inv) for c in out])
    _check(restored.shape[1:], grid)
    return restored


def labels_from_model_grid(probabilities: Any, grid: Grid) -> np.ndarray:
    """Class probabilities ``(C, *model grid)`` → labels on the input's grid (uint8, uint16 above 255
    classes): probabilities resampled slab by slab, argmax per slab, then reoriented back."""
    import nibabel as nib

    dtype = np.uint8 if probabilities.shape[0] <= 256 else np.uint16
    labels = np.empty(grid.canonical_shape, dtype)
    for start, stop, slab in _canonical_slabs(probabilities, grid):
        labels[..., start:stop] = _argmax_channels(slab).permute(1, 2, 0).cpu().numpy()
    restored = np.ascontiguousarray(nib.orientations.apply_orientation(labels, _invert(grid.transform)))
    _check(restored.shape, grid)
    return restored


def _argmax_channels(slab: Any) -> Any:
    """Argmax over dim 1 of ``(S, C, X, Y)`` (first maximum wins, as ``Tensor.argmax``), by running
    comparisons over the few classes: several times faster than ``argmax`` over a middle axis."""
    import torch

    best = slab[:, 0].clone()
    index = torch.zeros(best.shape, dtype=torch.int16 if slab.shape[1] > 255 else torch.uint8)
    for c in range(1, slab.shape[1]):
        better = slab[:, c] > best
        best = torch.where(better, slab[:, c], best)
        index[better] = c
    return index


def _check(shape: tuple[int, ...], grid: Grid) -> None:
    if tuple(shape) != grid.original_shape:  # cannot happen unless the transform is wrong
        raise SegsuiteError(f"internal error: restored grid {tuple(shape)} != input {grid.original_shape}")


def _invert(transform: np.ndarray) -> np.ndarray:
    """The orientation transform that undoes ``transform`` (a permutation with flips)."""
    inv = np.zeros_like(transform)
    for src_axis, (dst_axis, flip) in enumerate(transform):
        inv[int(dst_axis)] = (src_axis, flip)
    return inv
