"""Per-part inspection: defect probability, defects as connected components, OK/NG verdict.

A pixel is defective when the probability of *any* defect class (1 - P(good)) reaches the
threshold; its class is the most probable defect class. Connected defective regions
smaller than ``min_area`` pixels are dropped; a part is NG when at least one region is
left. Heatmaps use one fixed scale (probability 0..1), never a per-image stretch, so a good
part does not light up. Images larger than the model's patch are processed at native
resolution with the core's sliding window: small defects vanish when images are shrunk.

These are the building blocks; :mod:`.pipeline` runs them for one part at a time through the
core's job executor (``segsuite run industrial``), :mod:`.metrics` and :mod:`.calibrate` over
labelled parts.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from segsuite.core.classmap import ClassMap
from segsuite.core.errors import SegsuiteError

DEFAULT_THRESHOLD = 0.5
DEFAULT_MIN_AREA = 10


@dataclass(frozen=True)
class InspectOptions:
    threshold: float | None = None  # default: the calibrated one in the model card, else 0.5
    min_area: int | None = None  # pixels; default: the card's, else 10
    pixel_size: float | None = None  # mm per pixel, for areas in mm²
    overlap: float = 0.25


def settings(card: Any, options: InspectOptions) -> tuple[float, int]:
    """The working threshold and minimum area: the options' where given, else the card's calibrated
    ones (``segsuite calibrate``), else 0.5 and 10 px."""
    th = (card.thresholds or {}) if card is not None else {}
    threshold = options.threshold if options.threshold is not None else float(th.get("defect_probability", DEFAULT_THRESHOLD))
    min_area = options.min_area if options.min_area is not None else int(th.get("min_area_px", DEFAULT_MIN_AREA))
    if not 0 < threshold < 1:
        raise SegsuiteError(f"--threshold {threshold} must be between 0 and 1")
    if min_area < 0:
        raise SegsuiteError(f"--min-area {min_area} must not be negative")
    return threshold, min_area


def to_model_channels(array: np.ndarray, channels: int, card: Any) -> np.ndarray:
    """Grey <-> colour and 16 -> 8 bit as the model was trained (recorded in its card); 12-bit data
    in a 16-bit file is scaled as 12-bit (see :func:`segsuite.core.data.images.to_8bit_range`)."""
    import cv2

    from segsuite.core.data.images import match_bit_depth

    arr = np.asarray(array)
    if arr.shape[0] != channels:
        hwc = arr.transpose(1, 2, 0)
        if channels == 1 and arr.shape[0] in (3, 4):
            arr = cv2.cvtColor(np.ascontiguousarray(hwc[..., :3]), cv2.COLOR_RGB2GRAY)[None]
        elif channels == 3 and arr.shape[0] == 1:
            arr = np.repeat(arr, 3, axis=0)
        else:
            raise SegsuiteError(f"the model takes {channels} channel(s); this image has {arr.shape[0]}")
    trained = (card.normalization or {}).get("dtype") if card is not None else None
    return match_bit_depth(arr, trained)


def _native_window(predictor: Any, array: np.ndarray, options: InspectOptions) -> None:
    from segsuite.core.infer import SlidingWindow

    patch = tuple(predictor.card.patch_size or ()) if getattr(predictor, "card", None) else ()
    h, w = array.shape[-2:]
    predictor.window = SlidingWindow(patch, overlap=options.overlap) if patch and (h > patch[0] or w > patch[1]) else None


def defect_probability(predictor: Any, array: np.ndarray, options: InspectOptions) -> np.ndarray:
    """``(K, H, W)`` class probabilities at native resolution."""
    _native_window(predictor, array, options)
    return predictor.probabilities(array)[0].cpu().numpy()


def defect_probability_and_uncertainty(predictor: Any, array: np.ndarray, options: InspectOptions,
                                       method: str) -> tuple[np.ndarray, np.ndarray]:
    """``(K, H, W)`` class probabilities and an ``(H, W)`` uncertainty map in [0, 1] (entropy, tta or
    mcdropout; see :mod:`segsuite.core.uncertainty`), through the same native-resolution windows."""
    _native_window(predictor, array, options)
    probs, unc = predictor.probabilities_and_uncertainty(array, method)
    return probs[0].cpu().numpy(), unc[0].cpu().numpy().astype(np.float32)


def labelled_parts(predictor: Any, data: str | Path):
    """``(pair, image, train-id mask, class probabilities)`` for every labelled part in ``data``,
    refusing masks whose size or values do not fit the image and the model's class map."""
    from segsuite.core.data.datasets import scan_pairs
    from segsuite.core.data.images import read_image, read_mask
    from segsuite.core.errors import InputFileError

    class_map = predictor.class_map
    for pair in scan_pairs(data):
        image = read_image(pair.image).array
        mask = read_mask(pair.mask)
        if mask.shape != image.shape[1:]:
            raise InputFileError(f"{pair.mask}: mask is {mask.shape[1]}x{mask.shape[0]}, its image {image.shape[2]}x{image.shape[1]}")
        mask = class_map.to_train_ids(mask) if class_map.raw_ids is not None else mask
        bad = (mask != class_map.ignore_index) & ((mask < 0) | (mask >= class_map.num_classes))
        if bad.any():
            raise InputFileError(f"{pair.mask}: mask values {sorted(set(mask[bad].tolist()))[:5]} are not classes of the model "
                                 f"(0..{class_map.num_classes - 1})")
        arr = to_model_channels(image, predictor.model.in_channels, predictor.card)
        yield pair, image, mask, defect_probability(predictor, arr, InspectOptions())


def find_defects(probs: np.ndarray, class_map: ClassMap, threshold: float, min_area: int,
                 pixel_size: float | None = None) -> tuple[np.ndarray, list[dict[str, Any]], np.ndarray]:
    """Labels (0 = good), the defect list, and the defect-probability map."""
    import cv2

    p_defect = 1.0 - probs[0]
    defect_class = probs[1:].argmax(0) + 1
    binary = (p_defect >= threshold).astype(np.uint8)
    n, comp, stats, _ = cv2.connectedComponentsWithStats(binary, connectivity=8)
    labels = np.zeros(binary.shape, np.uint8 if class_map.num_classes < 256 else np.uint16)
    defects = []
    for i in range(1, n):
        area = int(stats[i, cv2.CC_STAT_AREA])
        if area < min_area:
            continue
        region = comp == i
        classes = np.bincount(defect_class[region], minlength=class_map.num_classes)
        cls = int(classes.argmax())
        labels[region] = cls
        x, y, w, h = (int(stats[i, k]) for k in (cv2.CC_STAT_LEFT, cv2.CC_STAT_TOP, cv2.CC_STAT_WIDTH, cv2.CC_STAT_HEIGHT))
        conf = p_defect[region]
        d = {"class": class_map.names[cls], "area_px": area, "bbox_xywh": [x, y, w, h],
             "max_confidence": round(float(conf.max()), 4), "mean_confidence": round(float(conf.mean()), 4)}
        if pixel_size:
            d["area_mm2"] = round(area * pixel_size * pixel_size, 4)
        defects.append(d)
    defects.sort(key=lambda d: -d["max_confidence"])
    return labels, defects, p_defect


def heatmap(p_defect: np.ndarray) -> np.ndarray:
    """Defect probability on a fixed 0..1 scale as an RGB picture (INFERNO colour map)."""
    import cv2

    grey = np.clip(p_defect * 255.0, 0, 255).astype(np.uint8)
    return cv2.cvtColor(cv2.applyColorMap(grey, cv2.COLORMAP_INFERNO), cv2.COLOR_BGR2RGB)


def overlay_defects(image: np.ndarray, labels: np.ndarray, defects: list[dict[str, Any]], class_map: ClassMap) -> np.ndarray:
    """The part with its defect regions tinted in their class colour, each boxed and named."""
    import cv2

    from segsuite.core.visualize import overlay

    out = overlay(image, labels, class_map, alpha=0.45)
    for d in defects:
        x, y, w, h = d["bbox_xywh"]
        colour = class_map.colors[class_map.index(d["class"])]
        cv2.rectangle(out, (x - 2, y - 2), (x + w + 1, y + h + 1), colour, 1)
        cv2.putText(out, d["class"], (x, max(10, y - 4)), cv2.FONT_HERSHEY_SIMPLEX, 0.35, colour, 1, cv2.LINE_AA)
    return out
