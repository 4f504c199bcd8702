"""Pictures people read: overlays, colour labels and a confusion-matrix chart (OpenCV only)."""

from __future__ import annotations

import numpy as np

from .classmap import ClassMap


def to_display_rgb(image: np.ndarray) -> np.ndarray:
    """``(C, H, W)`` or ``(H, W)`` raw image (any dtype) -> ``(H, W, 3)`` uint8 for display.

    16-bit and float data are stretched between the 1st and 99th percentile; more than
    three channels show the first three.
    """
    arr = np.asarray(image)
    if arr.ndim == 3:
        arr = arr[:3].transpose(1, 2, 0) if arr.shape[0] <= 4 else arr
        if arr.shape[2] == 1:
            arr = arr[..., 0]
    if arr.dtype != np.uint8:
        a = arr.astype(np.float64)
        lo, hi = np.percentile(a, [1, 99]) if a.size else (0, 1)
        arr = np.clip((a - lo) / max(hi - lo, 1e-9) * 255, 0, 255).astype(np.uint8)
    if arr.ndim == 2:
        arr = np.repeat(arr[..., None], 3, axis=2)
    if arr.shape[2] == 2:
        arr = np.concatenate([arr, arr[..., :1]], axis=2)
    return np.ascontiguousarray(arr)


def overlay(image: np.ndarray, labels: np.ndarray, class_map: ClassMap, alpha: float = 0.5,
            skip_background: bool = True) -> np.ndarray:
    """Tint each class with its colour over the image and outline region borders."""
    import cv2

    base = to_display_rgb(image).astype(np.float32)
    colour = class_map.colorize(labels).astype(np.float32)
    tint = labels != class_map.ignore_index
    if skip_background:
        tint &= labels != 0
    out = base.copy()
    out[tint] = (1 - alpha) * base[tint] + alpha * colour[tint]
    out = out.astype(np.uint8)
    lab = np.where(labels == class_map.ignore_index, 0, labels).astype(np.uint8)
    edges = cv2.morphologyEx(lab, cv2.MORPH_GRADIENT, np.ones((3, 3), np.uint8)) > 0
    edges &= tint | (cv2.dilate(tint.astype(np.uint8), np.ones((3, 3), np.uint8)) > 0)
    out[edges] = colour[edges].astype(np.uint8)
    return out


def confusion_chart(confusion: np.ndarray, names: list[str] | tuple[str, ...], cell: int = 56) -> np.ndarray:
    """Row-normalised confusion matrix as an RGB picture (truth rows, predicted columns)."""
    import cv2

    c = np.asarray(confusion, dtype=np.float64)
    rows = c.sum(1, keepdims=True)
    norm = np.divide(c, rows, out=np.zeros_like(c), where=rows > 0)
    k = len(names)
    label_w = max(90, 9 * max(len(n) for n in names))
    h, w = label_w + k * cell + 30, label_w + k * cell + 20
    img = np.full((h, w, 3), 255, np.uint8)
    font = cv2.FONT_HERSHEY_SIMPLEX
    for i in range(k):
        for j in range(k):
            v = norm[i, j]
            shade = int(255 - 200 * v)
            y0, x0 = label_w + i * cell, label_w + j * cell
            cv2.rectangle(img, (x0, y0), (x0 + cell - 1, y0 + cell - 1), (shade, shade, 255), -1)
            cv2.rectangle(img, (x0, y0), (x0 + cell - 1, y0 + cell - 1), (200, 200, 200), 1)
            txt = f"{v:.2f}" if rows[i, 0] > 0 else "-"
            cv2.putText(img, txt, (x0 + 6, y0 + cell // 2 + 5), font, 0.45, (0, 0, 0) if v < 0.6 else (255, 255, 255), 1, cv2.LINE_AA)
        cv2.putText(img, names[i][:18], (4, label_w + i * cell + cell // 2 + 5), font, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
    # column labels, written vertically
    for j in range(k):
        text = np.full((cell, label_w - 8, 3), 255, np.uint8)
        cv2.putText(text, names[j][:18], (2, cell // 2 + 5), font, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
        rotated = cv2.rotate(text, cv2.ROTATE_90_COUNTERCLOCKWISE)
        img[4 : 4 + rotated.shape[0], label_w + j * cell : label_w + j * cell + rotated.shape[1]] = rotated
    cv2.putText(img, "rows: truth   columns: prediction", (4, h - 10), font, 0.45, (60, 60, 60), 1, cv2.LINE_AA)
    return img


_COLORMAPS = {"inferno": "COLORMAP_INFERNO", "jet": "COLORMAP_JET", "viridis": "COLORMAP_VIRIDIS", "magma": "COLORMAP_MAGMA"}


def heatmap(values: np.ndarray, colormap: str = "inferno") -> np.ndarray:
    """``(H, W)`` values on the fixed scale 0..1 (clipped; NaN shows as 0) -> ``(H, W, 3)`` uint8 RGB.

    The scale is never stretched per image, so maps of different images compare directly.
    """
    import cv2

    v = np.nan_to_num(np.asarray(values, dtype=np.float32), nan=0.0)
    if v.ndim != 2:
        raise ValueError(f"a heatmap needs a 2D map, got shape {v.shape}")
    grey = np.round(np.clip(v, 0.0, 1.0) * 255.0).astype(np.uint8)
    bgr = cv2.applyColorMap(grey, getattr(cv2, _COLORMAPS[colormap]))
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def heat_overlay(image: np.ndarray, values: np.ndarray, colormap: str = "jet", alpha: float = 0.45) -> np.ndarray:
    """A heatmap (fixed 0..1 scale) blended over the display version of ``image``; weight grows with the value,
    so low values leave the image readable."""
    base = to_display_rgb(image).astype(np.float32)
    heat = heatmap(values, colormap).astype(np.float32)
    w = alpha * np.clip(np.nan_to_num(np.asarray(values, np.float32)), 0.0, 1.0)[..., None] ** 0.5
    return np.clip((1 - w) * base + w * heat, 0, 255).astype(np.uint8)
