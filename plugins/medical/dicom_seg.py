"""DICOM Segmentation output with highdicom: the label volume as a SEG that references its source series.

The SEG is BINARY: one bit-packed frame per (segment, source slice) that holds any voxel of
the segment; frames with none are left out. BINARY is the type every SEG reader handles
(3D Slicer, OHIF, dcmqi, PACS viewers); LABELMAP (one 8-bit frame per slice, standardised in
2024, written by highdicom from 0.24) is smaller for exclusive classes, but few viewers read
it yet, and a SEG nobody can open defeats the purpose.

Each frame names its source image (SOP Instance UID in its derivation sequence) and carries
that image's ImagePositionPatient, because highdicom builds the frames from the source
datasets in the order given, which is the order of the label volume's slices (sorted along
the slice normal by :func:`.dicom.open_series`). Dropping empty frames therefore never
shifts a slice: what is left still says which slice it belongs to. Segment numbers are the
class ids (class 0, background, is no segment), each with its name, the class colour, and a
SNOMED CT category and type where the class is a structure we know (unknown classes:
"Tissue"); the algorithm identification names segsuite, its version and the model.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np

# class name (lower case) -> (category, type) as (SNOMED CT code, meaning) pairs
_ORGAN = ("91723000", "Anatomical Structure")
_ABNORMAL = ("49755003", "Morphologically Abnormal Structure")
PROPERTIES: dict[str, tuple[tuple[str, str], tuple[str, str]]] = {
    "liver": (_ORGAN, ("10200004", "Liver")),
    "spleen": (_ORGAN, ("78961009", "Spleen")),
    "kidney": (_ORGAN, ("64033007", "Kidney")),
    "pancreas": (_ORGAN, ("15776009", "Pancreas")),
    "lung": (_ORGAN, ("39607008", "Lung")),
    "heart": (_ORGAN, ("80891009", "Heart")),
    "aorta": (_ORGAN, ("15825003", "Aorta")),
    "stomach": (_ORGAN, ("69695003", "Stomach")),
    "gallbladder": (_ORGAN, ("28231008", "Gallbladder")),
    "bladder": (_ORGAN, ("89837001", "Urinary bladder")),
    "prostate": (_ORGAN, ("41216001", "Prostate")),
    "brain": (_ORGAN, ("12738006", "Brain")),
    "bone": (("85756007", "Tissue"), ("3138006", "Bone")),
    "lesion": (_ABNORMAL, ("52988006", "Lesion")),
    "tumour": (_ABNORMAL, ("108369006", "Neoplasm")),
    "tumor": (_ABNORMAL, ("108369006", "Neoplasm")),
    "cyst": (_ABNORMAL, ("441457006", "Cyst")),
}
GENERIC = (("85756007", "Tissue"), ("85756007", "Tissue"))
"""For a class with no code here: the segment's label still names it."""
SEGMENTATION_TYPE = "BINARY"


def coded_property(name: str) -> tuple[Any, Any]:
    """``(category, type)`` codes for a class name (plural and case ignored); generic when unknown."""
    from pydicom.sr.coding import Code

    key = name.strip().lower().replace(" ", "_")
    pair = PROPERTIES.get(key) or PROPERTIES.get(key.rstrip("s")) or GENERIC
    return tuple(Code(value, "SCT", meaning) for value, meaning in pair)  # type: ignore[return-value]


def _digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:16]


def model_name(card: Any, checkpoint: Path) -> str:
    """How the SEG names the model: its architecture and checkpoint file (``unet3d model.safetensors``)."""
    arch = str((card.model or {}).get("arch") or (card.model or {}).get("name") or "model")
    return f"{arch} {Path(checkpoint).name}"[:64]


def write_dicom_seg(labels: np.ndarray, series: Any, class_names: tuple[str, ...], colors: tuple[tuple[int, int, int], ...],
                    path: Path, *, model: str, checkpoint: Path | None = None) -> dict[str, Any]:
    """Write ``labels`` (``(X, Y, Z)`` on ``series``' grid, an :class:`~.dicom.DicomSeries`) as a BINARY
    DICOM SEG at ``path`` (atomically); returns what the record keeps (UIDs, segments, frames)."""
    import highdicom as hd
    from pydicom.sr.codedict import codes
    from pydicom.uid import ExplicitVRLittleEndian

    from segsuite.core import __version__
    from segsuite.core.io import atomic_path

    if tuple(labels.shape) != tuple(series.shape):
        raise ValueError(f"labels {labels.shape} do not match the series grid {series.shape}")
    algorithm = hd.AlgorithmIdentificationSequence(name=model, family=codes.cid7162.ArtificialIntelligence,
                                                   version=__version__, source="segsuite")
    segments = []
    for number in range(1, len(class_names)):
        category, kind = coded_property(class_names[number])
        rgb = colors[number] if number < len(colors) else (255, 255, 255)
        segments.append(hd.seg.SegmentDescription(
            segment_number=number, segment_label=class_names[number][:64], segmented_property_category=category,
            segmented_property_type=kind, algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
            algorithm_identification=algorithm, tracking_uid=hd.UID(), tracking_id=class_names[number][:64],
            display_color=hd.color.CIELabColor.from_rgb(*(int(c) for c in rgb))))
    frames = np.ascontiguousarray(labels.transpose(2, 1, 0)).astype(np.uint8 if len(class_names) <= 256 else np.uint16)
    frames[frames >= len(class_names)] = 0  # an ignore id is no segment
    source = series.headers[0]
    number = int(source.get("SeriesNumber", 0) or 0)
    seg = hd.seg.Segmentation(
        source_images=series.headers, pixel_array=frames, segmentation_type=SEGMENTATION_TYPE,
        segment_descriptions=segments, series_instance_uid=hd.UID(), series_number=(1000 + number) % 100000 or 1,
        sop_instance_uid=hd.UID(), instance_number=1, manufacturer="segsuite", manufacturer_model_name=model,
        software_versions=f"segsuite {__version__}"[:64],
        device_serial_number=_digest(checkpoint) if checkpoint is not None and Path(checkpoint).is_file() else "none",
        series_description=f"segsuite {model}"[:64], content_label="SEGSUITE",
        content_description="automatic segmentation; research use only", transfer_syntax_uid=ExplicitVRLittleEndian,
        omit_empty_frames=bool(frames.any()))  # nothing found: every frame kept (a SEG needs at least one)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        seg.save_as(tmp, enforce_file_format=True)
    return {"sop_instance_uid": str(seg.SOPInstanceUID), "series_instance_uid": str(seg.SeriesInstanceUID),
            "referenced_series": series.series_uid, "type": SEGMENTATION_TYPE,
            "frames": int(seg.get("NumberOfFrames", 0) or 0), "segments": len(segments)}
