"""What one medical case is: a NIfTI file, or a DICOM series (many files, one input).

:func:`expand_cases` turns ``--input`` (a file, a folder searched recursively, or a glob)
into the job's inputs: each NIfTI file as today, and each DICOM series found among the
other files as one input named ``FOLDER/SeriesInstanceUID`` (FOLDER: the deepest folder
holding all its files). A file that sits among DICOM files but is not DICOM, or whose
header cannot be read, becomes an input of its own that fails with one line, so the batch
lists it and carries on; non-image DICOM objects (reports, RT structures, segmentations)
are skipped with a note. Outside folders that hold DICOM files, files that are not NIfTI
are left alone as before (a ``dataset.json`` beside the volumes is no input).

:func:`open_case` opens any of these inputs for reading: the series a job found is looked
up in the job's table of series, and, when that table is not at hand (another process), the
series is found again under its folder by its UID.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from segsuite.core.errors import InputFileError

from .dicom import SeriesFiles, is_dicom_file, open_series, scan_files, skipped_note

NIFTI_SUFFIXES = (".nii.gz", ".nii")


def is_nifti(path: Path) -> bool:
    return Path(path).name.lower().endswith(NIFTI_SUFFIXES)


def expand_cases(spec: str | Path, warn: Callable[[str], None]) -> tuple[list[Path], dict[str, SeriesFiles]]:
    """The inputs ``spec`` names (NIfTI files, DICOM series, and files among DICOM files that cannot
    be read, which fail on their own) and the series table ``{str(input): SeriesFiles}``."""
    from segsuite.core.planning import expand_inputs

    try:
        found = expand_inputs(spec, None)
    except InputFileError as exc:
        if "no input files" in str(exc):
            raise InputFileError(f"{spec}: no input files with suffix .nii, .nii.gz and no DICOM series") from None
        raise
    single = Path(str(spec)).is_file()
    nifti = [p for p in found if is_nifti(p)]
    others = [p for p in found if not is_nifti(p)]
    if single and others:  # one DICOM file stands for its series: the files of that series in its folder
        others = sorted(p for p in others[0].parent.iterdir() if p.is_file() and not p.name.startswith(".")) \
            if is_dicom_file(others[0]) else others
    scan = scan_files(others)
    if single and scan.series:
        uid = _series_uid(Path(str(spec)))
        scan.series = [s for s in scan.series if s.uid == uid]
        scan.not_dicom = [p for p in scan.not_dicom if p == Path(str(spec))]
    note = skipped_note(scan, spec)
    if note:
        warn(note)
    dicom_folders = {p.parent for s in scan.series for p in s.files} | {p.parent for ps in scan.skipped.values() for p in ps}
    failing = [p for p in scan.not_dicom if single or p.parent in dicom_folders]
    table = {str(s.source): s for s in scan.series}
    inputs = sorted(nifti) + [s.source for s in scan.series] + sorted(failing)
    if not inputs:
        raise InputFileError(f"{spec}: no input files with suffix .nii, .nii.gz and no DICOM series"
                             + (" (only DICOM objects that are not images)" if scan.skipped else ""))
    return inputs, table


def _series_uid(path: Path) -> str | None:
    import pydicom

    try:
        return str(pydicom.dcmread(path, stop_before_pixels=True, specific_tags=["SeriesInstanceUID"]).SeriesInstanceUID)
    except Exception:  # noqa: BLE001 - an unreadable header fails later, with its own line
        return None


def find_series(source: Path) -> SeriesFiles:
    """The series named ``FOLDER/SeriesInstanceUID``, found again under FOLDER."""
    folder, uid = source.parent, source.name
    if not folder.is_dir():
        raise InputFileError(f"{source}: input not found")
    files = sorted(p for p in folder.rglob("*") if p.is_file() and not p.name.startswith("."))
    for series in scan_files(files).series:
        if series.uid == uid:
            return series
    raise InputFileError(f"{source}: no DICOM series with SeriesInstanceUID {uid} under {folder}")


def series_in_folder(folder: Path) -> SeriesFiles:
    """The one series a case folder holds (a dataset's image given as a folder)."""
    files = sorted(p for p in Path(folder).rglob("*") if p.is_file() and not p.name.startswith("."))
    scan = scan_files(files)
    if len(scan.series) != 1:
        what = "no DICOM image series" if not scan.series else f"{len(scan.series)} DICOM series"
        raise InputFileError(f"{folder}: {what}; a case folder must hold exactly one series")
    return scan.series[0]


def open_case(source: Path, table: Mapping[str, SeriesFiles] | None = None) -> Any:
    """An opened case with ``shape``, ``channels``, ``voxels``, ``affine``, ``memory_bytes()`` and
    ``read()``: a :class:`~.io.NiftiFile` or a :class:`~.dicom.DicomSeries` (header checks done,
    no voxel read)."""
    from .io import open_nifti

    source = Path(source)
    if is_nifti(source):
        return open_nifti(source)
    known = (table or {}).get(str(source))
    if known is not None:
        return open_series(source, known.files)
    if source.is_dir():
        series = series_in_folder(source)
        return open_series(source, series.files)
    if source.is_file():
        if not is_dicom_file(source):
            raise InputFileError(f"{source}: neither NIfTI (.nii, .nii.gz) nor DICOM (no DICM marker at byte 128); "
                                 "move it out of the input folder if it is not part of a series")
        uid = _series_uid(source)
        if uid is None:
            raise InputFileError(f"{source}: a DICOM file whose header cannot be read to its SeriesInstanceUID; it is "
                                 "truncated or damaged: copy or export it again")
        siblings = [p for p in source.parent.iterdir() if p.is_file() and not p.name.startswith(".")]
        series = next((s for s in scan_files(sorted(siblings)).series if s.uid == uid), None)
        if series is None:
            raise InputFileError(f"{source}: a DICOM object that is not an image to segment")
        return open_series(series.source, series.files)
    return open_series(source, find_series(source).files)
