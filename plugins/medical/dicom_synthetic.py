"""Synthetic DICOM CT series from the phantoms of :mod:`.synthetic`: the same voxels, stored as a scanner would.

A volume on a NIfTI grid (array ``(X, Y, Z)`` and RAS affine) becomes one CT Image Storage
file per slice: voxel axis 0 runs along the image columns (the ImageOrientationPatient row
direction), axis 1 along the rows, axis 2 from slice to slice. DICOM's patient axes are LPS,
so the RAS affine is flipped in x and y first. HU are stored as unsigned values with
RescaleIntercept -1024 (as CT scanners store them), so a reader that forgets the rescale
is off by 1024 HU.

What the tests and ``segsuite sample medical --format dicom`` need from a scanner's output:
random file names, files shuffled into the folder, InstanceNumbers that need not follow the
slice order, any orientation (axial, sagittal, oblique, slices stored head-to-feet), and
deliberately broken series (an irregular gap, gantry tilt, a slice of another size).
UIDs derive from a seed, so the same call writes the same files.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
LPS = np.diag([-1.0, -1.0, 1.0])
"""RAS <-> LPS (its own inverse)."""


def ds(value: float) -> str:
    """``value`` as a DICOM decimal string (at most 16 characters), as precise as that allows."""
    from pydicom.valuerep import format_number_as_ds

    return format_number_as_ds(float(value))


def dicom_geometry(affine: np.ndarray, shape: Sequence[int]) -> dict[str, Any]:
    """Per-series and per-slice DICOM geometry of a RAS voxel grid: ImageOrientationPatient, PixelSpacing
    and each slice's ImagePositionPatient (slice ``k`` of the volume), all as the decimal strings written."""
    lps = LPS @ np.asarray(affine, dtype=np.float64)[:3]
    col_step, row_step, slice_step, origin = lps[:, 0], lps[:, 1], lps[:, 2], lps[:, 3]
    dx, dy = float(np.linalg.norm(col_step)), float(np.linalg.norm(row_step))
    iop = [ds(v) for v in (*(col_step / dx), *(row_step / dy))]
    positions = [[ds(v) for v in origin + k * slice_step] for k in range(int(shape[2]))]
    return {"iop": iop, "spacing": [ds(dy), ds(dx)], "positions": positions,
            "thickness": ds(float(np.linalg.norm(slice_step)))}


def _uid(*parts: Any) -> str:
    from pydicom.uid import generate_uid

    return generate_uid(entropy_srcs=[str(p) for p in parts])


def write_series(folder: str | Path, image: np.ndarray, affine: np.ndarray, *, seed: int = 0,
                 description: str = "segsuite phantom", series_number: int = 1, study: str = "study",
                 shuffle: bool = True, positions: Sequence[Sequence[float]] | None = None,
                 series_uid: str | None = None) -> list[Path]:
    """Write ``image`` (``(X, Y, Z)`` HU, RAS ``affine``) as a CT series into ``folder``; returns the files.

    ``shuffle``: random file names and InstanceNumbers in random order (nothing but the positions
    tells the slice order). ``positions`` overrides each slice's ImagePositionPatient (LPS mm),
    to make broken series. Studies with the same ``study`` and ``seed`` share their Study and
    FrameOfReference UIDs."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, PYDICOM_IMPLEMENTATION_UID

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng([seed, series_number])
    image = np.asarray(image)
    geo = dicom_geometry(affine, image.shape)
    study_uid, frame_uid = _uid(study, seed, "study"), _uid(study, seed, "frame")
    series_uid = series_uid or _uid(study, seed, series_number, description, "series")
    n = image.shape[2]
    numbers = rng.permutation(n) + 1 if shuffle else np.arange(1, n + 1)
    stored = np.clip(np.asarray(image, np.int32) + 1024, 0, 65535).astype(np.uint16)
    written = []
    for k in range(n):
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = CT_IMAGE_STORAGE
        meta.MediaStorageSOPInstanceUID = _uid(series_uid, k)
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
        d = Dataset()
        d.file_meta = meta
        d.SOPClassUID, d.SOPInstanceUID = CT_IMAGE_STORAGE, meta.MediaStorageSOPInstanceUID
        d.PatientName, d.PatientID, d.PatientBirthDate, d.PatientSex = "Phantom^Segsuite", f"PH{seed:04d}", "", "O"
        d.StudyInstanceUID, d.StudyID, d.StudyDate, d.StudyTime = study_uid, "1", "20260101", "120000"
        d.AccessionNumber, d.ReferringPhysicianName = "", ""
        d.SeriesInstanceUID, d.SeriesNumber, d.SeriesDescription = series_uid, series_number, description
        d.Modality, d.Manufacturer, d.FrameOfReferenceUID, d.PositionReferenceIndicator = "CT", "segsuite", frame_uid, ""
        d.InstanceNumber = int(numbers[k])
        d.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
        d.ImageOrientationPatient = geo["iop"]
        d.ImagePositionPatient = list(positions[k]) if positions is not None else geo["positions"][k]
        d.PixelSpacing, d.SliceThickness = geo["spacing"], geo["thickness"]
        d.SamplesPerPixel, d.PhotometricInterpretation = 1, "MONOCHROME2"
        d.Rows, d.Columns = int(image.shape[1]), int(image.shape[0])
        d.BitsAllocated, d.BitsStored, d.HighBit, d.PixelRepresentation = 16, 16, 15, 0
        d.RescaleIntercept, d.RescaleSlope, d.RescaleType = "-1024", "1", "HU"
        d.PixelData = np.ascontiguousarray(stored[:, :, k].T).tobytes()  # rows = voxel axis 1
        name = f"{rng.integers(1 << 62):016x}.dcm" if shuffle else f"IM{k + 1:04d}.dcm"
        path = folder / name
        d.save_as(path, enforce_file_format=True)
        written.append(path)
    return written


def phantom_volume(seed: int = 0, axcodes: str | None = "LPS", max_tilt_deg: float = 0.0,
                   spacing: tuple[float, float, float] | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(image int16 HU, labels uint8, affine)`` of phantom ``seed`` on a grid stored in ``axcodes``
    (``max_tilt_deg`` > 0: an oblique grid), exactly as :mod:`.synthetic` renders it."""
    from .synthetic import FOV_MM, random_affine, render_phantom

    rng = np.random.default_rng([seed, 7])
    affine, shape = random_affine(rng, FOV_MM, spacing=spacing, axcodes=axcodes, max_tilt_deg=max_tilt_deg)
    image, labels = render_phantom(rng, affine, shape)
    return image, labels, affine


def make_dicom_sample(folder: str | Path, seed: int = 0) -> Path:
    """``segsuite sample medical --format dicom``: two phantom CT series of one study, in sub-folders,
    with random file names (one axial, one oblique), plus their reference labels as NIfTI: the paired
    layout ``images/<case>/`` (one series per folder) and ``labels/<case>.nii.gz`` that ``train`` and
    ``evaluate medical`` read."""
    import nibabel as nib

    from segsuite.core.io import atomic_path

    folder = Path(folder)
    for number, (name, codes, tilt) in enumerate((("axial", "LPS", 0.0), ("oblique", "LPS", 10.0)), start=1):
        image, labels, affine = phantom_volume(seed * 100 + number, codes, tilt)
        write_series(folder / "images" / name, image, affine, seed=seed, series_number=number,
                     description=f"phantom {name}", study="sample")
        label_path = folder / "labels" / f"{name}.nii.gz"
        label_path.parent.mkdir(parents=True, exist_ok=True)
        img = nib.Nifti1Image(labels, affine)
        img.set_qform(affine, code=1)
        img.set_sform(affine, code=1)
        with atomic_path(label_path) as tmp:
            nib.save(img, str(tmp))
    return folder
