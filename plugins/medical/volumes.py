"""Medical outputs: label volumes on the input's exact grid, and the volume report.

The label NIfTI copies the input's shape, affine, qform/sform (with their codes) and
zooms, and stores labels as uint8 (uint16 above 255 classes) — never float, the
MONAI-writer default that viewers then show as a continuous image. Volumes come from the
voxel size of the affine (|det| of its 3x3 part, in mm³; 1 mL = 1000 mm³).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from segsuite.core.errors import InputFileError
from segsuite.core.spatial import Item


def write_label_volume(labels: np.ndarray, item: Item, path: str | Path) -> Path:
    """Write ``labels`` (the input's voxel grid) with the input's geometry, atomically."""
    if tuple(labels.shape) != tuple(item.spatial.shape):
        raise ValueError(f"labels {labels.shape} do not match the input grid {item.spatial.shape}")
    dtype = np.uint8 if labels.max(initial=0) < 256 else np.uint16
    return write_like(labels.astype(dtype), item, path)


def write_map_volume(values: np.ndarray, item: Item, path: str | Path) -> Path:
    """Write values in [0, 1] (``(X, Y, Z)`` or ``(C, X, Y, Z)`` → 4D with channels last) on the input's
    grid, stored as uint8 with a NIfTI scale factor: viewers and nibabel read floats back, at a
    quarter of float32's size and a resolution of 1/255 of the largest value."""
    data = values if values.ndim == 3 else np.moveaxis(values, 0, -1)
    if tuple(data.shape[:3]) != tuple(item.spatial.shape):
        raise ValueError(f"map {data.shape} does not match the input grid {item.spatial.shape}")
    return write_like(np.clip(data, 0.0, 1.0).astype(np.float32), item, path, disk_dtype=np.uint8)


def write_like(data: np.ndarray, item: Item, path: str | Path, *, disk_dtype: Any = None) -> Path:
    """Write ``data`` with the input's header: the same NIfTI version (a NIfTI-2 input gives NIfTI-2
    outputs, whose qform/sform are stored in float64) and its qform/sform fields, codes, zooms and
    units copied as stored, not recomputed (recomputing the quaternion moves the qform by ~1e-4 mm),
    atomically. A sform the reader passed over as broken is not written (code 0).

    With ``disk_dtype``, nibabel stores the (float) data in that type with a scale factor."""
    import nibabel as nib

    from segsuite.core.io import atomic_path

    path = Path(path)
    affine = item.spatial.affine_array()
    source = item.meta.get("nifti_header")
    if source is None and item.source is not None:  # an Item not made by the medical reader
        source = nib.load(str(item.source)).header
    if source is None:
        img = nib.Nifti1Image(data, affine)
    else:
        header = source.copy()
        header.extensions.clear()  # the input's extensions describe the input, not a label volume
        for key in ("cal_min", "cal_max", "intent_code", "intent_p1", "intent_p2", "intent_p3"):
            header[key] = 0
        header["intent_name"] = b""
        if item.spatial.extra.get("sform_ignored"):
            header.set_sform(affine, code=0)  # the geometry used (the qform's), flagged unset
        klass = nib.Nifti2Image if isinstance(source, nib.Nifti2Header) else nib.Nifti1Image
        # with the header's own best affine nibabel keeps the header's fields instead of recomputing them
        img = klass(data, header.get_best_affine(), header=header)
        img.header.set_zooms(tuple(source.get_zooms()[:3]) + tuple(1.0 for _ in data.shape[3:]))
    img.header.set_data_dtype(disk_dtype or data.dtype)
    if disk_dtype is None:  # labels: stored as they are, never rescaled
        img.header["scl_slope"], img.header["scl_inter"] = 1, 0
    else:  # let nibabel choose the scale factor for the stored type
        img.header["scl_slope"], img.header["scl_inter"] = np.nan, np.nan
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        nib.save(img, str(tmp))
    return path


def postprocess(labels: np.ndarray, voxel_ml: float, *, keep_largest: bool = False, fill_holes: bool = False,
                min_volume_ml: float = 0.0) -> np.ndarray:
    """Per foreground class: drop components under ``min_volume_ml``, keep only the largest
    component, fill enclosed holes (in that order). Removed voxels become background (0)."""
    from scipy import ndimage

    out = labels.copy()
    structure = ndimage.generate_binary_structure(3, 3)
    for c in [int(v) for v in np.unique(labels) if v != 0]:
        mask = out == c
        comp, n = ndimage.label(mask, structure=structure)
        if n:
            sizes = np.bincount(comp.ravel())
            sizes[0] = 0
            keep = sizes * voxel_ml >= min_volume_ml
            keep[0] = False
            if keep_largest and keep.any():
                keep[:] = False
                keep[int(sizes.argmax())] = True
            out[mask & ~keep[comp]] = 0
        if fill_holes:
            filled = ndimage.binary_fill_holes(out == c)
            out[filled & (out == 0)] = c
    return out


def voxel_volume_mm3(item: Item) -> float:
    vol = item.spatial.sample_area()
    if vol is None:
        raise InputFileError(f"{item.source}: no voxel size in the header; volumes cannot be computed")
    return float(vol)


def _ml(volume: float) -> float:
    """A volume in mL to 6 significant digits: rounding to a fixed number of decimals would report a
    component of micro-CT voxels as 0.0 mL."""
    return float(f"{volume:.6g}")


def volume_report(labels: np.ndarray, item: Item, class_names: tuple[str, ...]) -> dict[str, Any]:
    """Per class (background excluded): voxels, volume in mL, connected components, largest component in mL."""
    from scipy import ndimage

    voxel_ml = voxel_volume_mm3(item) / 1000.0
    structure = ndimage.generate_binary_structure(3, 3)  # 26-connectivity, as ITK-SNAP counts islands
    classes = {}
    counts = np.bincount(labels.ravel(), minlength=len(class_names))
    boxes = ndimage.find_objects(labels, max_label=len(class_names) - 1)  # one pass; components per class box only
    for c, name in enumerate(class_names):
        if c == 0:
            continue
        n_vox = int(counts[c])
        box = boxes[c - 1] if c - 1 < len(boxes) else None
        comp, n = ndimage.label(labels[box] == c, structure=structure) if box is not None else (np.zeros(0, np.int32), 0)
        sizes = np.bincount(comp.ravel())[1:] if n else np.zeros(0, np.int64)
        classes[name] = {
            "voxels": n_vox,
            "volume_ml": _ml(n_vox * voxel_ml),
            "components": int(n),
            "largest_component_ml": _ml(float(sizes.max()) * voxel_ml) if n else 0.0,
        }
    return {
        "input": str(item.source), "shape": list(labels.shape), "voxel_mm": list(item.spatial.pixel_size or ()),
        "voxel_volume_ml": voxel_ml, "orientation": item.spatial.extra.get("axcodes"), "classes": classes,
        "disclaimer": "research use only; not for diagnostic use",
    }
