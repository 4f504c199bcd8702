"""Reading and writing plain 2D images (PNG, JPEG, BMP, TIFF) with OpenCV.

OpenCV reads 8- and 16-bit, grey and colour images without conversion when asked with
``IMREAD_UNCHANGED``; it stores colour as BGR, which is turned into RGB here once so
nothing downstream has to remember.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import InputFileError
from ..io import atomic_path
from ..spatial import Item, SpatialRef

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")


def read_image_array(path: str | Path) -> np.ndarray:
    """``(H, W)`` or ``(H, W, C)`` array in RGB(A) order, dtype as stored."""
    import cv2

    path = Path(path)
    if not path.exists():
        raise InputFileError(f"{path}: file not found")
    data = np.fromfile(str(path), dtype=np.uint8)  # imread silently returns None on odd paths
    img = cv2.imdecode(data, cv2.IMREAD_UNCHANGED) if data.size else None
    if img is None:
        raise InputFileError(f"{path}: not a readable image (PNG, JPEG, BMP or TIFF expected)")
    if img.ndim == 3 and img.shape[2] == 3:
        img = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
    elif img.ndim == 3 and img.shape[2] == 4:
        img = cv2.cvtColor(img, cv2.COLOR_BGRA2RGBA)
    return img


def read_image(path: str | Path) -> Item:
    """An :class:`Item` with a channels-first array ``(C, H, W)``."""
    path = Path(path)
    img = read_image_array(path)
    chw = img[None] if img.ndim == 2 else np.ascontiguousarray(img.transpose(2, 0, 1))
    return Item(
        array=chw,
        spatial=SpatialRef(shape=chw.shape[1:]),
        meta={"dtype": str(img.dtype), "channels": chw.shape[0]},
        source=path,
    )


def read_mask(path: str | Path) -> np.ndarray:
    """A single-channel label image as an integer ``(H, W)`` array."""
    arr = read_image_array(path)
    if arr.ndim == 3:
        raise InputFileError(
            f"{path}: label mask has {arr.shape[2]} channels; expected a single-channel index image "
            "(convert colour-coded masks with `segsuite labels import`)"
        )
    return arr.astype(np.int64)


def write_image(path: str | Path, array: np.ndarray) -> Path:
    """Write ``(H, W)`` or ``(H, W, 3)`` RGB atomically (temporary name, then rename)."""
    import cv2

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    arr = np.asarray(array)
    if arr.ndim == 3 and arr.shape[2] == 3:
        arr = cv2.cvtColor(arr, cv2.COLOR_RGB2BGR)
    ok, buf = cv2.imencode(path.suffix or ".png", arr)
    if not ok:
        raise InputFileError(f"{path}: OpenCV cannot encode an image of dtype {arr.dtype} as {path.suffix}")
    with atomic_path(path) as tmp:
        tmp.write_bytes(buf.tobytes())
    return path
