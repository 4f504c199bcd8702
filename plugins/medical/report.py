"""The medical section of reports: orthogonal slices with the segmentation, organ volumes in mL, metrics.

Volumes are shown as three slices (axial, coronal, sagittal) through the centre of the
segmented organs, after reorientation to RAS so that every case reads the same way
(radiological convention: the patient's right on the left of the picture, anterior and
superior up), stretched to the physical voxel size so anisotropic voxels are not squashed.
Research outputs, not for diagnostic use.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from segsuite.core.classmap import ClassMap
from segsuite.core.errors import SegsuiteError
from segsuite.core.report import ReportSection, Table, fmt

SLICE_SIDE = 220  # pixels on the long side of each slice picture


def _canonical(path: Path) -> tuple[np.ndarray, tuple[float, float, float]]:
    """The first volume of a case (a NIfTI file, or a DICOM series by its input name) reoriented to RAS
    (array ``(X, Y, Z)``) and its voxel size in mm, with the geometry the run used (:func:`.io.open_nifti`:
    a broken sform gives way to the qform)."""
    import warnings

    import nibabel as nib

    from .inputs import is_nifti, open_case
    from .io import library_messages, open_nifti
    from .preprocess import canonical_transform, canonical_voxel_sizes

    if is_nifti(path):
        with library_messages():  # the run already said what nibabel has to say about these files
            nifti = open_nifti(path)
            data = np.asanyarray(nifti.image.dataobj)
    else:
        with warnings.catch_warnings():  # the run already gave the series' warnings
            warnings.simplefilter("ignore")
            nifti = open_case(path)
            data = nifti.read().array[0]
    if data.ndim == 4:
        data = data[..., 0]
    transform = canonical_transform(nifti.affine)
    canon = nib.orientations.apply_orientation(data, transform)
    return np.asarray(canon), canonical_voxel_sizes(nifti.affine, transform)  # type: ignore[return-value]


def _views(volume: np.ndarray, zooms: tuple[float, float, float], centre: tuple[int, int, int]) -> list[tuple[np.ndarray, float]]:
    """Axial, coronal and sagittal slices through ``centre`` as ``(picture, height/width pixel ratio)``."""
    i, j, k = centre
    sx, sy, sz = zooms
    return [
        (volume[:, :, k].T[::-1, ::-1], sy / sx),  # rows anterior -> posterior, columns patient right -> left
        (volume[:, j, :].T[::-1, ::-1], sz / sx),  # rows superior -> inferior
        (volume[i, :, :].T[::-1, ::-1], sz / sy),  # rows superior -> inferior, columns anterior -> posterior
    ]


def _resize(picture: np.ndarray, ratio: float, nearest: bool) -> np.ndarray:
    import cv2

    h, w = picture.shape[:2]
    height = h * ratio
    scale = SLICE_SIDE / max(height, w)
    size = (max(1, round(w * scale)), max(1, round(height * scale)))
    return cv2.resize(np.ascontiguousarray(picture), size, interpolation=cv2.INTER_NEAREST if nearest else cv2.INTER_LINEAR)


def _strip(pictures: list[np.ndarray]) -> np.ndarray:
    """Pictures side by side on a white background, top-aligned, with a small gap."""
    h = max(p.shape[0] for p in pictures)
    cols = []
    for p in pictures:
        pad = np.full((h, p.shape[1], 3), 255, np.uint8)
        pad[: p.shape[0]] = p
        cols += [pad, np.full((h, 6, 3), 255, np.uint8)]
    return np.concatenate(cols[:-1], axis=1)


def _grey(volume: np.ndarray, window: tuple[float, float] | None) -> np.ndarray:
    v = volume.astype(np.float32)
    lo, hi = window if window is not None else tuple(np.percentile(v, [1, 99]))
    return np.clip((v - lo) / max(hi - lo, 1e-6) * 255, 0, 255).astype(np.uint8)


def slice_pictures(image_path: Path, label_paths: dict[str, Path], class_map: ClassMap,
                   window: tuple[float, float] | None) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """The input's three slices and, per label volume, the same slices with the labels over them.

    The slices pass through the centre of the first label volume's foreground (the volume's
    centre when it is empty), so every picture of a case shows the same planes."""
    from segsuite.core.visualize import overlay

    image, zooms = _canonical(image_path)
    labels = {name: _canonical(p)[0].astype(np.int64) for name, p in label_paths.items()}
    first = next(iter(labels.values())) if labels else None
    if first is not None and first.shape != image.shape:
        from segsuite.core.errors import InputFileError

        raise InputFileError(f"{next(iter(label_paths.values()))}: label volume {first.shape} is not on its image's grid {image.shape}")
    fg = np.argwhere(first > 0) if first is not None else np.zeros((0, 3))
    centre = tuple(int(c) for c in (fg.mean(0) if len(fg) else np.array(image.shape) / 2))
    grey = _grey(image, window)
    base = [_resize(p, r, nearest=False) for p, r in _views(grey, zooms, centre)]
    plain = _strip([np.repeat(b[..., None], 3, axis=2) for b in base])
    tinted = {}
    for name, lab in labels.items():
        views = [_resize(p.astype(np.uint8), r, nearest=True) for p, r in _views(lab, zooms, centre)]
        tinted[name] = _strip([overlay(b, v, class_map, alpha=0.5) for b, v in zip(base, views)])
    return plain, tinted


def run_report(records: Sequence[Mapping[str, Any]], class_map: ClassMap, report_dir: Path,
               max_cases: int = 6) -> ReportSection:
    """What ``segsuite run medical`` wrote: per case three slices with the segmentation over them, and
    the volume of every structure in mL with its connected components. ``records`` are the run's
    records (with the ``outputs`` the executor planned); pictures go to ``report_dir``."""
    from segsuite.core.report import write_preview

    report_dir = Path(report_dir)
    section = ReportSection(domain="medical", title="Medical: organ segmentation of CT volumes", legend=class_map)
    rows = []
    for n, r in enumerate(records):
        src, record = Path(r["input"]), Path(r["outputs"]["record"])
        seg = Path(r["outputs"].get("labels") or r["outputs"]["dicom_seg"])
        case = record.stem
        for name, v in r["classes"].items():
            rows.append([name, src.name, v["volume_ml"], v["voxels"], v["components"], v["largest_component_ml"]])
        section.files += [(Path(p).name, Path(p)) for k, p in r["outputs"].items() if k in ("labels", "dicom_seg")]
        section.files.append((record.name, record))
        if "labels" not in r["outputs"]:
            if n < max_cases:
                section.notes.append(f"{seg.name}: no pictures of a case written only as DICOM SEG (--format both adds them)")
        elif n < max_cases:
            plain, tinted = slice_pictures(src, {"prediction": seg}, class_map, _window(r))
            section.images.append((f"{src.name}: axial, coronal, sagittal (RAS, radiological view)",
                                   write_preview(plain, report_dir / f"{case}_input.png", max_side=2048)))
            section.images.append((f"{seg.name}: segmentation over the same slices",
                                   write_preview(tinted["prediction"], report_dir / f"{case}_overlay.png", max_side=2048)))
    section.tables.append(Table("Volumes per structure", ["structure", "case", "volume (mL)", "voxels", "components",
                                                          "largest component (mL)"], rows))
    section.facts.append(("cases", str(len(records))))
    if records:
        totals: dict[str, float] = {}
        for r in records:
            for name, v in r["classes"].items():
                totals[name] = totals.get(name, 0.0) + v["volume_ml"]
        section.facts += [(f"{name} (mean)", f"{fmt(total / len(records))} mL") for name, total in list(totals.items())[:2]]
    if len(records) > max_cases:
        section.notes.append(f"pictures of the first {max_cases} of {len(records)} cases; the table lists all")
    section.notes.append("research use only; not for diagnostic use")
    return section


def add_evaluation(section: ReportSection, result: Mapping[str, Any], output: Path) -> None:
    """Put a result of ``segsuite evaluate medical`` into a run's section: the per-structure table (Dice,
    HD95, NSD, volume error), the voxel metrics with the confusion matrix, the mean Dice, and the
    reference labels of the section's first case over the same slices as its prediction."""
    from segsuite.core.checkpoint import read_card
    from segsuite.core.report import Evaluation, write_preview

    output = Path(output)
    organ_rows = [[name, s["dice"], s["hd95_mm"], s["nsd"], s["volume_error_ml"], s["cases_scored"]]
                  for name, s in result["classes"].items()]
    section.tables.append(Table(f"Against the reference labels, per structure (mean over cases; NSD at "
                                f"{fmt(result['nsd_tolerance_mm'])} mm)", ["structure", "Dice", "HD95 (mm)", "NSD",
                                                                           "volume error (mL)", "cases scored"], organ_rows))
    first = _first_record(section)
    reference = _reference_for(Path(first["input"]), Path(result["data"])) if first is not None else None
    if reference is not None:
        source, seg = Path(first["input"]), Path(first["outputs"]["labels"])
        class_map = read_card(result["checkpoint"]).classes
        _plain, tinted = slice_pictures(source, {"prediction": seg, "reference": reference}, class_map, _window(first))
        section.images.append((f"{source.name}: reference labels over the same slices",
                               write_preview(tinted["reference"], output / f"{_volume_stem(source)}_reference.png",
                                             max_side=2048)))
    section.evaluation = Evaluation.from_metrics(result["voxel_metrics"], confusion=output / "confusion.png",
                                                 extra=[("mean Dice (per case, foreground)", result["mean_dice"])],
                                                 source=output / "metrics.json")
    section.facts.append(("mean Dice", fmt(result["mean_dice"])))


def _volume_stem(path: Path) -> str:
    """A NIfTI file name without ``.nii`` / ``.nii.gz``."""
    return path.name.split(".nii")[0]


def _window(record: Mapping[str, Any]) -> tuple[float, float] | None:
    w = record.get("ct_window")
    return (float(w[0]), float(w[1])) if w else None


def _first_record(section: ReportSection) -> dict[str, Any] | None:
    """The record of the first case :func:`run_report` listed (read back from its JSON), if any."""
    import json

    for _name, path in section.files:
        if Path(path).suffix == ".json" and Path(path).is_file():
            try:
                record = json.loads(Path(path).read_text())
            except (OSError, ValueError):
                continue
            if isinstance(record, dict) and "input" in record and "labels" in record.get("outputs", {}):
                return record
    return None


def _reference_for(image: Path, data: Path) -> Path | None:
    """The reference label volume of ``image`` in the labelled data ``data``, when it has one."""
    from .dataset import scan_cases

    try:
        cases = scan_cases(data)
    except SegsuiteError:
        return None
    target = image.resolve()
    for case in cases:
        if any(p.resolve() == target for p in case.images) and case.label is not None and case.label.is_file():
            return case.label
    return None
