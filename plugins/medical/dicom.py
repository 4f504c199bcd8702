"""DICOM series as medical volumes: found by SeriesInstanceUID, stacked by position, on the NIfTI grid convention.

A folder from a scanner or a PACS export holds files with any names, in nested folders,
often several series mixed, sometimes with non-image objects (structured reports, RT
structure sets, segmentations, a DICOMDIR). :func:`scan_files` reads only their headers
and groups the image files by SeriesInstanceUID; each series is one case.

:func:`open_series` checks a series before any pixel is read, and refuses, in one line
naming the problem, what would otherwise be a volume on the wrong grid:

- the slice order comes from each slice's position along the slice normal (the cross
  product of the ImageOrientationPatient row and column directions, dotted with
  ImagePositionPatient), never from file names or InstanceNumber, which exports scramble;
- every slice must have the same orientation, size and pixel spacing (a localizer left in
  the series is the usual culprit);
- the slices must be stacked along the normal (gantry tilt shears the stack) at one
  spacing: a gap that is a multiple of the others is a missing slice, any other uneven
  gap is named with its size and position;
- the voxel-to-world matrix is built from ImageOrientationPatient, ImagePositionPatient and
  PixelSpacing in DICOM's LPS patient axes, then flipped to the RAS convention the NIfTI
  reader uses, so a series and its NIfTI conversion describe the same world grid: voxel
  axis 0 runs along the image columns, axis 1 along the rows, axis 2 along the normal.

:meth:`DicomSeries.read` applies RescaleSlope/RescaleIntercept per slice (Hounsfield units
for CT); the pixels are read by :mod:`.dicom_pixels`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from segsuite.core.errors import InputFileError
from segsuite.core.spatial import Item, SpatialRef

from .io import NiftiWarning

RAS_FROM_LPS = np.diag([-1.0, -1.0, 1.0, 1.0])
SPACING_TOLERANCE = 0.01
"""A gap between neighbouring slices may differ from the series' spacing by 1% (or 1 micrometre)
before the series is refused: more than the rounding of positions to decimal strings, less
than anything that would visibly misplace a slice."""
ORIENTATION_TOLERANCE = 1e-4
"""Direction cosines of two slices that differ by more than this (about 0.006°) are different orientations."""
TILT_TOLERANCE_DEG = 0.05
# Objects with image-like attributes that are not scans to segment.
DERIVED_SOP_CLASSES = {
    "1.2.840.10008.5.1.4.1.1.66.4": "a Segmentation",
    "1.2.840.10008.5.1.4.1.1.481.2": "an RT Dose",
    "1.2.840.10008.5.1.4.1.1.30": "a Parametric Map",
    "1.2.840.10008.5.1.4.1.1.66.7": "a Label Map Segmentation",
}
_HEADER_TAGS = ("SOPClassUID", "SeriesInstanceUID", "SeriesDescription", "SeriesNumber", "Modality", "Rows", "Columns")


class DicomWarning(NiftiWarning):
    """A problem with a DICOM series that does not stop it being segmented (one ``segsuite: warning:`` line)."""


def is_dicom_file(path: Path) -> bool:
    """Whether ``path`` starts as a DICOM Part 10 file does (128 bytes of preamble, then ``DICM``)."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(132)
    except OSError:
        return False
    return len(head) == 132 and head[128:] == b"DICM"


# -- finding series -------------------------------------------------------------------


@dataclass(frozen=True)
class SeriesFiles:
    """The files of one series, as found (not yet checked or sorted)."""

    uid: str
    files: tuple[Path, ...]
    description: str = ""
    modality: str = ""
    number: int | None = None

    @property
    def folder(self) -> Path:
        """The deepest folder holding every file of the series."""
        import os

        return Path(os.path.commonpath([str(p.parent) for p in self.files]))

    @property
    def source(self) -> Path:
        """The series as one input of a job: ``FOLDER/SeriesInstanceUID`` (a name, not a file on disk)."""
        return self.folder / self.uid

    @property
    def stem(self) -> str:
        """A readable, stable base for output names: the SeriesDescription, else modality and series number."""
        text = self.description or (f"{self.modality or 'series'}_{self.number}" if self.number is not None else "")
        safe = re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("._-")
        return safe[:64] or self.uid


@dataclass
class DicomScan:
    """What :func:`scan_files` found."""

    series: list[SeriesFiles] = field(default_factory=list)
    skipped: dict[str, list[Path]] = field(default_factory=dict)
    """Non-image objects by kind (``"a Comprehensive SR Storage"``): not read as images."""
    not_dicom: list[Path] = field(default_factory=list)
    """Files that are not DICOM, whose header cannot be read, or images whose header stops short."""


def _kind(sop_class: str) -> str | None:
    """What a non-image object is (``None`` for an image)."""
    if sop_class in DERIVED_SOP_CLASSES:
        return DERIVED_SOP_CLASSES[sop_class]
    from pydicom.uid import UID

    name = UID(sop_class).name if sop_class else "an object without SOP class"
    return name if name.startswith("an ") else f"a {name}"


def scan_files(paths: Iterable[Path]) -> DicomScan:
    """Group DICOM files by SeriesInstanceUID, reading headers only. Files without image pixel
    attributes, and derived objects (segmentations, RT dose), are set aside as skipped; files that
    are not DICOM, or whose header is unreadable, are listed as such."""
    import pydicom
    from pydicom.errors import InvalidDicomError

    groups: dict[str, list[Path]] = {}
    info: dict[str, Any] = {}
    scan = DicomScan()
    for path in paths:
        if not is_dicom_file(path):
            scan.not_dicom.append(path)
            continue
        try:
            ds = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=list(_HEADER_TAGS))
        except (InvalidDicomError, OSError, ValueError, EOFError, KeyError, TypeError, AttributeError):
            scan.not_dicom.append(path)
            continue
        stored_as = str(getattr(getattr(ds, "file_meta", None), "MediaStorageSOPClassUID", "") or "")
        sop = str(ds.get("SOPClassUID", "") or stored_as)
        uid = str(ds.get("SeriesInstanceUID", "") or "")
        image = "Rows" in ds and "Columns" in ds and sop not in DERIVED_SOP_CLASSES and uid
        if not image:
            if "Image Storage" in (_kind(stored_as) or "") and stored_as not in DERIVED_SOP_CLASSES:
                scan.not_dicom.append(path)  # an image whose header stops short (truncated): it fails on its own
            else:
                scan.skipped.setdefault(_kind(sop) or "an object without a series", []).append(path)
            continue
        groups.setdefault(uid, []).append(path)
        if uid not in info:
            number = ds.get("SeriesNumber")
            info[uid] = (str(ds.get("SeriesDescription", "") or ""), str(ds.get("Modality", "") or ""),
                         int(number) if number not in (None, "") else None)
    for uid, files in groups.items():
        description, modality, number = info[uid]
        scan.series.append(SeriesFiles(uid, tuple(sorted(files)), description, modality, number))
    scan.series.sort(key=lambda s: (str(s.folder), s.number if s.number is not None else -1, s.uid))
    return scan


def skipped_note(scan: DicomScan, where: str | Path) -> str | None:
    """One line for the non-image objects a scan set aside, or ``None``."""
    if not scan.skipped:
        return None
    total = sum(len(v) for v in scan.skipped.values())
    kinds = ", ".join(f"{len(v)} x {k}" for k, v in sorted(scan.skipped.items()))
    return f"{where}: skipped {total} DICOM object(s) that are not images to segment ({kinds})"


# -- one series -----------------------------------------------------------------------


def _floats(ds: Any, keyword: str, n: int, path: Path) -> np.ndarray:
    value = ds.get(keyword)
    try:
        arr = np.array([float(v) for v in value], dtype=np.float64)
    except (TypeError, ValueError):
        arr = np.zeros(0)
    if arr.shape != (n,) or not np.isfinite(arr).all():
        raise InputFileError(f"{path}: {keyword} is {'missing' if value is None else f'invalid ({value!r})'}; "
                             "a slice without it cannot be placed in a volume")
    return arr


def _scalar(ds: Any, keyword: str, default: float) -> float:
    value = ds.get(keyword)
    try:
        return float(value) if value not in (None, "") else default
    except (TypeError, ValueError):
        return default


def _group_problem(values: Sequence[Any], files: Sequence[Path], what: str, fmt: Callable[[Any], str]) -> str | None:
    """``None`` when every value is the same, else the two most common values with a file of each."""
    seen: dict[Any, list[Path]] = {}
    for v, f in zip(values, files):
        seen.setdefault(v, []).append(f)
    if len(seen) == 1:
        return None
    (a, fa), (b, fb) = sorted(seen.items(), key=lambda kv: -len(kv[1]))[:2]
    return (f"mixed {what} in one series: {fmt(a)} ({len(fa)} file(s)) and {fmt(b)} ({len(fb)} file(s), e.g. "
            f"{fb[0].name})")


@dataclass
class DicomSeries:
    """A checked series, slices in order along the normal; :meth:`read` reads the voxels.

    Offers what :class:`~.io.NiftiFile` offers (``shape``, ``channels``, ``voxels``, ``affine``,
    ``memory_bytes``, ``read``), so the per-case code serves both."""

    path: Path
    """The input's name (``FOLDER/SeriesInstanceUID``)."""
    files: list[Path]
    headers: list[Any]
    """The pydicom datasets (no pixel data), in slice order."""
    affine: np.ndarray
    """Voxel to world, RAS mm."""
    spacing: tuple[float, float, float]
    notes: list[str] = field(default_factory=list)

    @property
    def shape(self) -> tuple[int, int, int]:
        first = self.headers[0]
        return int(first.Columns), int(first.Rows), len(self.files)

    channels = 1

    @property
    def voxels(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64))

    def memory_bytes(self) -> int:
        """What :meth:`read` holds at its peak: the stored values and the float32 volume made from them."""
        stored = max(1, int(self.headers[0].get("BitsAllocated", 16) or 16) // 8)
        return (stored + 4) * self.voxels

    @property
    def series_uid(self) -> str:
        return str(self.headers[0].SeriesInstanceUID)

    def read(self) -> Item:
        """The volume as a ``(1, X, Y, Z)`` float32 Item (rescaled values, e.g. HU), on the RAS affine."""
        import warnings

        for note in self.notes:
            warnings.warn(note, DicomWarning, stacklevel=2)
        from .dicom_pixels import read_pixels

        raw = read_pixels(self.files, self.headers)
        slope = np.array([_scalar(h, "RescaleSlope", 1.0) for h in self.headers], np.float32)
        inter = np.array([_scalar(h, "RescaleIntercept", 0.0) for h in self.headers], np.float32)
        volume = raw.astype(np.float32)
        if not (slope == 1).all():
            volume *= slope[:, None, None]
        if not (inter == 0).all():
            volume += inter[:, None, None]
        # (slices, rows, columns) in C order is (X, Y, Z) in Fortran order: the layout nibabel returns
        array = volume.transpose(2, 1, 0)[None]
        return Item(array=array, spatial=self.spatial_ref(), source=self.path,
                    meta={"dtype": "float32", "nifti_header": self.nifti_header(), "dicom_series": self.series_uid,
                          "dicom_files": len(self.files)})

    def spatial_ref(self) -> SpatialRef:
        import nibabel as nib

        return SpatialRef(shape=self.shape, pixel_size=self.spacing, affine=tuple(map(tuple, self.affine)), units="mm",
                          extra={"axcodes": "".join(nib.aff2axcodes(self.affine)), "qform_code": 1, "sform_code": 1,
                                 "sform_ignored": False, "dicom_series": self.series_uid})

    def nifti_header(self) -> Any:
        """The header a NIfTI output of this series gets: scanner coordinates (codes 1), mm, this grid."""
        import nibabel as nib

        header = nib.Nifti1Header()
        header.set_data_shape(self.shape)
        header.set_zooms(self.spacing)
        header.set_qform(self.affine, code=1)
        header.set_sform(self.affine, code=1)
        header.set_xyzt_units("mm", "sec")
        return header


def open_series(source: Path, files: Sequence[Path]) -> DicomSeries:
    """The series made of ``files``, checked and in slice order; no pixel is read (see the module
    docstring for what is refused). ``source`` names the series in messages."""
    import pydicom

    if not files:
        raise InputFileError(f"{source}: no DICOM files for this series")
    headers = []
    for f in files:
        if not is_dicom_file(f):
            raise InputFileError(f"{f}: not a DICOM file (no DICM marker at byte 128); move it out of the series "
                                 "folder if it does not belong there")
        try:
            headers.append(pydicom.dcmread(f, stop_before_pixels=True))
        except Exception as exc:  # pydicom raises many types for damaged headers
            raise InputFileError(f"{f}: unreadable DICOM header ({type(exc).__name__}: {exc}); the file is damaged "
                                 "or truncated") from None
    where = f"{source} ({len(files)} files)"
    first = headers[0]
    if int(first.get("NumberOfFrames", 1) or 1) > 1:
        raise InputFileError(f"{files[0]}: a multi-frame (enhanced) image of {first.NumberOfFrames} frames; segsuite reads "
                             "series of single-frame images: convert it (e.g. dcm2niix) and run the NIfTI")
    if int(first.get("SamplesPerPixel", 1) or 1) != 1:
        raise InputFileError(f"{files[0]}: colour images ({first.SamplesPerPixel} samples per pixel); a scan has one grey channel")
    for keyword in ("Rows", "Columns"):
        problem = _group_problem([int(h.get(keyword, 0) or 0) for h in headers], files, f"image {keyword.lower()}", str)
        if problem:
            raise InputFileError(f"{where}: {problem}; a series must be one volume: remove the odd slice(s)")
    iops = [_floats(h, "ImageOrientationPatient", 6, f) for h, f in zip(headers, files)]
    ipps = [_floats(h, "ImagePositionPatient", 3, f) for h, f in zip(headers, files)]
    spacings = [_floats(h, "PixelSpacing", 2, f) for h, f in zip(headers, files)]
    # the orientation most slices share is the series'; the others are named
    stacked = np.stack(iops)
    agree = (np.abs(stacked[:, None, :] - stacked[None, :64, :]).max(-1) <= ORIENTATION_TOLERANCE).sum(1)
    ref = stacked[int(np.argmax(agree))]
    odd = [int(i) for i in np.flatnonzero(np.abs(stacked - ref).max(1) > ORIENTATION_TOLERANCE)]
    if odd:
        main = next(i for i, v in enumerate(iops) if i not in odd)
        raise InputFileError(f"{where}: mixed orientations in one series ({len(odd)} slice(s), e.g. {files[odd[0]].name}, "
                             f"are not parallel to the others, e.g. {files[main].name}; a localizer in the series?); "
                             "remove them and run it again")
    bad = [i for i, v in enumerate(spacings) if np.abs(v - spacings[0]).max() > 1e-4 * float(spacings[0].max())]
    if bad:
        raise InputFileError(f"{where}: mixed pixel spacings in one series ({spacings[0].tolist()} mm in {files[0].name}, "
                             f"{spacings[bad[0]].tolist()} mm in {files[bad[0]].name}); a series must be one volume")
    if len(files) < 2:
        raise InputFileError(f"{where}: a single slice; a volume needs at least 2 slices of one series")
    row, col = ref[:3] / np.linalg.norm(ref[:3]), ref[3:] / np.linalg.norm(ref[3:])
    if min(np.linalg.norm(ref[:3]), np.linalg.norm(ref[3:])) < 0.5 or abs(float(row @ col)) > 1e-3:
        raise InputFileError(f"{files[0]}: ImageOrientationPatient {ref.tolist()} does not hold two perpendicular unit "
                             "directions; the header is damaged")
    normal = np.cross(row, col)
    depth = np.array([float(normal @ p) for p in ipps])
    order = np.argsort(depth, kind="stable")
    files = [files[i] for i in order]
    headers = [headers[i] for i in order]
    ipps_sorted = np.stack([ipps[i] for i in order])
    depth = depth[order]
    gaps = np.diff(depth)
    step = _check_spacing(where, files, depth, gaps)
    _check_tilt(where, files, ipps_sorted, normal, depth)
    pixel = spacings[0]  # (between rows, between columns)
    lps = np.eye(4)
    lps[:3, 0] = row * pixel[1]
    lps[:3, 1] = col * pixel[0]
    lps[:3, 2] = normal * step
    lps[:3, 3] = ipps_sorted[0]
    affine = RAS_FROM_LPS @ lps
    notes = []
    thickness = _scalar(first, "SliceThickness", 0.0)
    if thickness > step * (1 + SPACING_TOLERANCE) + 1e-3:
        notes.append(f"{where}: slices {thickness:g} mm thick but {step:.4g} mm apart (overlapping slices); "
                     "volumes use the spacing")
    return DicomSeries(source, files, headers, affine, (float(pixel[1]), float(pixel[0]), float(step)), notes)


def _check_spacing(where: str, files: Sequence[Path], depth: np.ndarray, gaps: np.ndarray) -> float:
    """The slice spacing, after refusing duplicate positions, missing slices and uneven gaps."""
    if (gaps <= 1e-3).any():
        i = int(np.argmax(gaps <= 1e-3))
        raise InputFileError(f"{where}: two slices at the same position ({depth[i]:.3f} mm along the normal: "
                             f"{files[i].name} and {files[i + 1].name}); a series with repeated positions (several "
                             "acquisitions or time points) cannot be one volume: split it")
    step = float(np.median(gaps))
    tolerance = max(1e-3, SPACING_TOLERANCE * step)
    off = np.abs(gaps - step) > tolerance
    if off.any():
        i = int(np.argmax(np.abs(gaps - step)))
        gap = float(gaps[i])
        between = (f"between {depth[i]:.3f} and {depth[i + 1]:.3f} mm along the normal ({files[i].name} and "
                   f"{files[i + 1].name})")
        ratio = gap / step
        if ratio > 1.5 and abs(ratio - round(ratio)) * step <= tolerance:
            raise InputFileError(f"{where}: missing slice(s): a gap of {gap:.4g} mm {between} where the others are "
                                 f"{step:.4g} mm (about {round(ratio) - 1} slice(s) missing); export the whole series")
        raise InputFileError(f"{where}: non-uniform slice spacing: a gap of {gap:.4g} mm {between} where the others are "
                             f"{step:.4g} mm; resample the series to one spacing and run it again")
    return float((depth[-1] - depth[0]) / (len(depth) - 1))


def _check_tilt(where: str, files: Sequence[Path], ipps: np.ndarray, normal: np.ndarray, depth: np.ndarray) -> None:
    """Refuse slices shifted within their plane from one to the next (gantry tilt shears the stack)."""
    offsets = ipps - ipps[0]
    in_plane = offsets - np.outer(offsets @ normal, normal)
    shift = float(np.linalg.norm(in_plane[-1]))
    span = float(depth[-1] - depth[0])
    angle = float(np.degrees(np.arctan2(shift, span)))
    worst = float(np.linalg.norm(in_plane, axis=1).max())
    if angle > TILT_TOLERANCE_DEG or worst > max(0.01, np.tan(np.radians(TILT_TOLERANCE_DEG)) * span):
        raise InputFileError(f"{where}: the slices are not stacked perpendicular to their planes (gantry tilt of about "
                             f"{angle:.2f}°, {worst:.3g} mm in-plane shift at most); segsuite needs a rectilinear grid: "
                             "correct the tilt (e.g. dcm2niix does) and run the NIfTI")
