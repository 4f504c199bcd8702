"""Reading and writing plain 2D images (PNG, JPEG, BMP, TIFF) with OpenCV.

OpenCV reads 8- and 16-bit, grey and colour images without conversion when asked with
``IMREAD_UNCHANGED``; it stores colour as BGR, which is turned into RGB here once so
nothing downstream has to remember.

Every image read here passes two checks, the same for every 2D domain: before decoding, the
size its header claims must fit the file and this machine's memory (:func:`check_image_size`);
after decoding, every pixel must be finite (:func:`require_finite`; a float TIFF with NaN is
refused rather than turned into a verdict). :func:`match_bit_depth` is the one place where
16-bit images are brought to the 0..255 range of a model trained on 8-bit ones.
"""

from __future__ import annotations

import os
import struct
from pathlib import Path

import numpy as np

from ..errors import InputFileError
from ..io import atomic_path
from ..resources import available_memory, human_bytes
from ..spatial import Item, SpatialRef

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")


READ_OVERHEAD = 2
"""Decoded copies a read holds at once (the decoded image and its colour-converted copy),
besides one float32 copy for the model (see :func:`check_image_size`)."""


def check_image_size(path: str | Path) -> None:
    """Refuse, from its header alone and before any decoding, an image that claims more pixel
    data than its file can hold (truncated or crafted), more pixels than OpenCV decodes
    (``OPENCV_IO_MAX_IMAGE_PIXELS``, 2^30 by default), or more memory than this machine has
    free: the decoded image twice plus one float32 copy (:data:`READ_OVERHEAD`). Formats the
    header parser does not know pass unchecked."""
    from .image_headers import read_header

    path = Path(path)
    try:
        header = read_header(path)
    except (OSError, struct.error):  # unreadable or cut short: the decoder reports it
        header = None
    if header is None:
        return
    size = f"{header.width}x{header.height} px"
    if header.width == 0 or header.height == 0:
        raise InputFileError(f"{path}: the {header.format} header says the image is {size}; there are no pixels to read")
    if not header.fits_file:
        raise InputFileError(f"{path}: the {header.format} header claims {size}, more than the "
                             f"{human_bytes(path.stat().st_size)} file can hold; the file is truncated or corrupt")
    need = header.pixels * header.samples * (READ_OVERHEAD * header.bytes_per_sample + 4)
    free = available_memory()
    if free is not None and need > free:
        raise InputFileError(f"{path}: a {size} image needs about {human_bytes(need)} of memory to read, and this "
                             f"machine has {human_bytes(free)} free; cut it into smaller images or use a larger machine")
    limit = _opencv_pixel_limit()
    if header.pixels > limit:
        raise InputFileError(f"{path}: {size} is more than the {limit} pixels OpenCV decodes; cut the image into "
                             "smaller files (or raise OPENCV_IO_MAX_IMAGE_PIXELS if this machine has the memory)")


def _opencv_pixel_limit() -> int:
    try:  # OpenCV's own limit, which the same environment variable raises
        return int(os.environ.get("OPENCV_IO_MAX_IMAGE_PIXELS", 1 << 30))
    except ValueError:
        return 1 << 30


def require_finite(array: np.ndarray, path: str | Path, channel_axis: int = -1) -> np.ndarray:
    """``array`` (``(H, W)``, or with channels on ``channel_axis``: ``(H, W, C)`` by default,
    ``(C, H, W)`` with ``channel_axis=0``) if every value is finite; otherwise one
    :class:`InputFileError` naming ``path`` and how many pixels hold NaN or infinity.

    NaN has no place in a verdict or a metric: segsuite refuses such images by default (domains
    with nodata, like satellite rasters, mask them as nodata in their own readers instead)."""
    if not np.issubdtype(array.dtype, np.floating):
        return array
    bad = ~np.isfinite(array)
    if bad.ndim == 3:
        bad = bad.any(axis=channel_axis)
    count = int(bad.sum())
    if count:
        raise InputFileError(f"{path}: {count} of {bad.size} pixels are not finite (NaN or infinity); "
                             "replace them with valid values (or mark them as nodata in a format that has it) and run again")
    return array


def to_8bit_range(array: np.ndarray) -> np.ndarray:
    """A 16-bit image as float32 on the 0..255 scale of an 8-bit one; other dtypes unchanged.

    Rule: a uint16 image whose largest value is at most 4095 holds 12-bit data (what most
    machine-vision, X-ray and microscope cameras write into 16-bit PNG and TIFF files) and is
    scaled by 255/4095; any other uint16 image by 255/65535. A true 16-bit image that is that
    dark (every value under 4096 of 65535) is brightened 16 times by this rule: store such
    images as 8-bit or train the model on 16-bit ones.
    """
    arr = np.asarray(array)
    if arr.dtype != np.uint16:
        return arr
    full = 4095.0 if arr.size and int(arr.max()) <= 4095 else 65535.0
    return arr.astype(np.float32) * np.float32(255.0 / full)


def match_bit_depth(array: np.ndarray, trained_dtype: str | None) -> np.ndarray:
    """``array`` brought to the bit depth the model was trained on (``trained_dtype``, recorded
    in its card's normalisation): 16-bit images for an 8-bit model go through
    :func:`to_8bit_range`; everything else is unchanged."""
    if trained_dtype == "uint8":
        return to_8bit_range(array)
    return np.asarray(array)


def read_image_array(path: str | Path) -> np.ndarray:
    """``(H, W)`` or ``(H, W, C)`` array in RGB(A) order, dtype as stored; refused with one line
    when its header claims more than the file or memory holds (:func:`check_image_size`) or a
    pixel is NaN or infinite (:func:`require_finite`)."""
    import cv2

    path = Path(path)
    if not path.exists():
        raise InputFileError(f"{path}: file not found")
    if not path.is_file():
        raise InputFileError(f"{path}: not a file")
    check_image_size(path)
    data = np.fromfile(str(path), dtype=np.uint8)  # imread silently returns None on odd paths
    from ..native_stderr import library_chatter

    with library_chatter(path):  # libpng prints its own warnings from C; see native_stderr
        img = cv2.imdecode(data, cv2.IMREAD_UNCHANGED) if data.size else None
    if img is None:
        raise InputFileError(f"{path}: not a readable image ({_why_unreadable(path, data)})")
    if img.ndim == 3 and img.shape[2] == 3:
        img = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
    elif img.ndim == 3 and img.shape[2] == 4:
        img = cv2.cvtColor(img, cv2.COLOR_BGRA2RGBA)
    return require_finite(img, path)


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


_SIGNATURES = {b"\x89PNG\r\n\x1a\n": "PNG", b"\xff\xd8\xff": "JPEG", b"BM": "BMP", b"II*\x00": "TIFF",
               b"MM\x00*": "TIFF", b"II+\x00": "TIFF", b"MM\x00+": "TIFF"}


def _why_unreadable(path: Path, data: np.ndarray) -> str:
    """Why the decoder gave up, in the words a user can act on: an empty file, a damaged file of a
    known format (its signature is right, the rest is not), or not an image at all."""
    if data.size == 0:
        return "the file is empty"
    head = data[:8].tobytes()
    kind = next((name for sig, name in _SIGNATURES.items() if head.startswith(sig)), None)
    if kind is not None:
        return f"a {kind} file that cannot be decoded: it is truncated or damaged"
    return "PNG, JPEG, BMP or TIFF expected"
