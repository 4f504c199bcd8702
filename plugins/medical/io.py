"""NIfTI reading with nibabel, keeping the full geometry in the SpatialRef."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from segsuite.core.errors import InputFileError
from segsuite.core.spatial import Item, SpatialRef


def read_nifti(path: Path) -> Item:
    """A 3D (or 4D, channels last on disk) NIfTI volume as a channels-first ``(C, X, Y, Z)`` Item.

    The array stays in the file's voxel order; the affine, qform/sform codes and zooms
    are kept so that a writer can restore the geometry exactly.
    """
    import nibabel as nib

    path = Path(path)
    if not path.exists():
        raise InputFileError(f"{path}: file not found")
    try:
        img = nib.load(str(path))
        data = np.asanyarray(img.dataobj)
    except Exception as exc:  # nibabel raises several unrelated types for bad files
        raise InputFileError(f"{path}: not a readable NIfTI file ({type(exc).__name__}: {exc})") from None
    if data.ndim == 3:
        chw = data[None]
    elif data.ndim == 4:
        chw = np.moveaxis(data, -1, 0)
    else:
        raise InputFileError(f"{path}: expected a 3D or 4D volume, got {data.ndim} dimensions {data.shape}")
    affine = np.asarray(img.affine, dtype=np.float64)
    if not np.isfinite(affine).all() or abs(np.linalg.det(affine[:3, :3])) < 1e-12:
        raise InputFileError(f"{path}: the header's voxel-to-world matrix (qform/sform) is "
                             f"{'not finite' if not np.isfinite(affine).all() else 'singular'}, so the volume has no "
                             "usable geometry; fix the header (e.g. with nibabel or fslorient) and run it again")
    header = img.header
    zooms = tuple(float(z) for z in header.get_zooms()[:3])
    _, qcode = header.get_qform(coded=True)
    _, scode = header.get_sform(coded=True)
    spatial = SpatialRef(
        shape=chw.shape[1:],
        pixel_size=zooms,
        affine=tuple(map(tuple, img.affine)),
        units="mm",
        extra={"qform_code": int(qcode or 0), "sform_code": int(scode or 0), "axcodes": "".join(nib.aff2axcodes(img.affine))},
    )
    return Item(array=chw, spatial=spatial, meta={"dtype": str(data.dtype)}, source=path)
