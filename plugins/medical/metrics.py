"""Volume metrics in millimetres: Dice, 95th-percentile Hausdorff distance, normalised surface Dice.

Definitions follow MONAI's (``compute_hausdorff_distance``, ``compute_surface_dice``) so
numbers compare directly; ``tests/plugins/test_medical.py`` checks equality with MONAI on
anisotropic volumes. A surface voxel is a mask voxel with a 6-neighbour outside the mask
(or on the array border). Distances are Euclidean in mm, using the voxel spacing, from
every surface voxel of one mask to the nearest surface voxel of the other:

- HD95 = the larger of the two directed 95th percentiles;
- NSD(τ) = (surface voxels of A within τ of B's surface + those of B within τ of A's)
  / (surface voxels of A + of B).

Both are computed on the bounding box of the two masks (plus a one-voxel margin) only,
which changes nothing in the result and makes them cheap on large CT volumes.

Empty masks (explicit policy, as in nnU-Net): when a class is absent from both the
reference and the prediction, Dice, HD95 and NSD are undefined (NaN) and the case is left
out of that class's mean; when exactly one of them is empty, Dice and NSD are 0 and HD95
is undefined (NaN; it has no finite value).
"""

from __future__ import annotations

import math

import numpy as np


def dice(pred: np.ndarray, ref: np.ndarray) -> float:
    p, r = int(pred.sum()), int(ref.sum())
    if p == 0 and r == 0:
        return math.nan
    return 2.0 * int(np.logical_and(pred, ref).sum()) / (p + r)


def _surface_distances(pred: np.ndarray, ref: np.ndarray, spacing: tuple[float, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Distances (mm) from pred's surface voxels to ref's surface, and from ref's to pred's."""
    from scipy import ndimage

    union = np.logical_or(pred, ref)
    coords = np.nonzero(union)
    box = tuple(slice(max(int(c.min()) - 1, 0), int(c.max()) + 2) for c in coords)
    p, r = pred[box], ref[box]
    cross = ndimage.generate_binary_structure(p.ndim, 1)
    p_edge = p & ~ndimage.binary_erosion(p, structure=cross)
    r_edge = r & ~ndimage.binary_erosion(r, structure=cross)
    to_ref = ndimage.distance_transform_edt(~r_edge, sampling=spacing)
    to_pred = ndimage.distance_transform_edt(~p_edge, sampling=spacing)
    return to_ref[p_edge], to_pred[r_edge]


def hd95(pred: np.ndarray, ref: np.ndarray, spacing: tuple[float, ...]) -> float:
    if not pred.any() or not ref.any():
        return math.nan
    a, b = _surface_distances(pred, ref, spacing)
    return float(max(np.percentile(a, 95), np.percentile(b, 95)))


def nsd(pred: np.ndarray, ref: np.ndarray, spacing: tuple[float, ...], tolerance_mm: float) -> float:
    has_p, has_r = bool(pred.any()), bool(ref.any())
    if not has_p and not has_r:
        return math.nan
    if not has_p or not has_r:
        return 0.0
    a, b = _surface_distances(pred, ref, spacing)
    return float(((a <= tolerance_mm).sum() + (b <= tolerance_mm).sum()) / (len(a) + len(b)))


def case_metrics(pred: np.ndarray, ref: np.ndarray, spacing: tuple[float, ...], class_names: tuple[str, ...], *,
                 tolerance_mm: float, ignore_index: int | None = None) -> dict[str, dict[str, float]]:
    """Per foreground class: dice, hd95_mm, nsd, reference/predicted volume (mL) and volume error."""
    valid = np.ones(ref.shape, bool) if ignore_index is None else ref != ignore_index
    voxel_ml = float(np.prod(spacing)) / 1000.0
    out = {}
    for c, name in enumerate(class_names):
        if c == 0:
            continue
        p, r = (pred == c) & valid, (ref == c) & valid
        ref_ml, pred_ml = float(r.sum()) * voxel_ml, float(p.sum()) * voxel_ml
        out[name] = {
            "dice": dice(p, r),
            "hd95_mm": hd95(p, r, spacing),
            "nsd": nsd(p, r, spacing, tolerance_mm),
            "reference_ml": round(ref_ml, 4),
            "predicted_ml": round(pred_ml, 4),
            "volume_error_ml": round(pred_ml - ref_ml, 4),
            "volume_error_pct": round(100.0 * (pred_ml - ref_ml) / ref_ml, 3) if ref_ml > 0 else math.nan,
        }
    return out
