"""Pixel data of a DICOM series into one array, fast for what scanners write, pydicom for the rest.

Uncompressed little-endian pixel data that ends the file (as scanners write it) is read
straight into its slice of one preallocated array: parsing every header again only to find
the pixels would cost more than copying them. Anything else (big-endian, deflated, pixel
data followed by other elements, compressed transfer syntaxes) goes through pydicom; a
compressed syntax that no installed decoder reads is one line naming it. Bits above
BitsStored are masked (and signed values sign-extended) as the standard says.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from segsuite.core.errors import InputFileError

NATIVE_SYNTAXES = {
    "1.2.840.10008.1.2": "<",  # implicit VR little endian
    "1.2.840.10008.1.2.1": "<",  # explicit VR little endian
    "1.2.840.10008.1.2.1.99": "<",  # deflated explicit VR little endian (pydicom inflates it on reading)
    "1.2.840.10008.1.2.2": ">",  # explicit VR big endian (retired, still found in archives)
}


def _syntax(ds: Any) -> str:
    return str(getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", "1.2.840.10008.1.2"))


def _native_dtype(ds: Any, syntax: str) -> np.dtype | None:
    """The numpy type of uncompressed pixel data copied straight from the file, or ``None`` when
    pydicom's own pixel handling must do it (compressed, odd bit layouts)."""
    order = NATIVE_SYNTAXES.get(syntax)
    bits = int(ds.get("BitsAllocated", 0) or 0)
    if order is None or bits not in (8, 16, 32) or str(ds.get("PhotometricInterpretation", "")) not in (
            "MONOCHROME1", "MONOCHROME2"):
        return None
    signed = int(ds.get("PixelRepresentation", 0) or 0) == 1
    return np.dtype(f"{order}{'i' if signed else 'u'}{bits // 8}")


def read_pixels(files: Sequence[Path], headers: Sequence[Any]) -> np.ndarray:
    """Stored values ``(slices, rows, columns)`` of ``files``, in that order. Uncompressed data is
    copied from each file's PixelData into one preallocated array (no per-pixel Python work);
    values beyond BitsStored are masked (and sign-extended) as the standard says."""
    import pydicom

    rows, cols = int(headers[0].Rows), int(headers[0].Columns)
    out: np.ndarray | None = None
    for k, (f, h) in enumerate(zip(files, headers)):
        syntax = _syntax(h)
        dtype = _native_dtype(h, syntax)
        if dtype is not None and NATIVE_SYNTAXES[syntax] == "<" and not syntax.endswith(".99"):
            if out is None:
                out = np.empty((len(files), rows, cols), dtype=dtype.newbyteorder("="))
            if _read_trailing_pixels(f, out[k], explicit=syntax != "1.2.840.10008.1.2"):
                continue
        try:
            ds = pydicom.dcmread(f)
            data = ds.get("PixelData")
        except Exception as exc:  # a damaged file: pydicom raises many types
            raise InputFileError(f"{f}: unreadable DICOM file ({type(exc).__name__}: {exc}); it is damaged or "
                                 "truncated") from None
        if data is None:
            raise InputFileError(f"{f}: no pixel data; the file is truncated or not an image")
        syntax = _syntax(ds)
        dtype = _native_dtype(ds, syntax)
        if dtype is not None:
            need = rows * cols * dtype.itemsize
            if len(data) < need:
                raise InputFileError(f"{f}: {len(data)} bytes of pixel data where {rows}x{cols} pixels need {need}; "
                                     "the file is truncated")
            plane = np.frombuffer(data, dtype=dtype, count=rows * cols).reshape(rows, cols)
        else:
            plane = _decoded(f, ds, syntax)
        if out is None:
            out = np.empty((len(files), rows, cols), dtype=plane.dtype.newbyteorder("="))
        out[k] = plane
    assert out is not None
    stored = int(headers[0].get("BitsStored", 0) or 0)
    allocated = out.dtype.itemsize * 8
    if 0 < stored < allocated and out.dtype.kind in "iu" and _native_dtype(headers[0], _syntax(headers[0])) is not None:
        # the bits above BitsStored may carry overlays or noise: masked, and for signed data sign-extended
        shift = allocated - stored
        if out.dtype.kind == "u":
            out &= np.array((1 << stored) - 1, dtype=out.dtype)
        else:
            out <<= shift
            out >>= shift
    return out


def _read_trailing_pixels(path: Path, target: np.ndarray, *, explicit: bool) -> bool:
    """Read uncompressed little-endian pixel data straight into ``target`` when it is the file's last
    element (as scanners write it): the element's tag and length just before the last bytes must
    say so exactly, else ``False`` and the caller parses the file. Parsing every header a second
    time only to find the pixels costs more than copying them."""
    size = target.nbytes + (target.nbytes % 2)  # values are padded to an even length
    head = 12 if explicit else 8
    try:
        with open(path, "rb") as fh:
            fh.seek(0, 2)
            end = fh.tell()
            if end < size + head + 132:
                return False
            fh.seek(end - size - head)
            element = fh.read(head)
            if element[:4] != b"\xe0\x7f\x10\x00":
                return False
            if explicit and (element[4:6] not in (b"OW", b"OB") or int.from_bytes(element[8:12], "little") != size):
                return False
            if not explicit and int.from_bytes(element[4:8], "little") != size:
                return False
            return fh.readinto(memoryview(target.reshape(-1)).cast("B")) == target.nbytes
    except OSError:
        return False


def _decoded(path: Path, ds: Any, syntax: str) -> np.ndarray:
    """One compressed frame through pydicom's decoders; a syntax no installed plugin decodes is one line."""
    from pydicom.uid import UID

    try:
        arr = ds.pixel_array
    except Exception as exc:  # pydicom: NotImplementedError/RuntimeError/ValueError depending on the plugin
        name = UID(syntax).name or syntax
        text = str(exc).lower()
        if "no pixel data decoders" in text or "plugins" in text or "decod" in text and "available" in text:
            raise InputFileError(f"{path}: pixel data compressed as {name} ({syntax}) and no installed decoder reads it; "
                                 "install one (e.g. pip install pylibjpeg pylibjpeg-libjpeg pylibjpeg-openjpeg) or "
                                 "decompress the series (e.g. gdcmconv --raw) and run it again") from None
        raise InputFileError(f"{path}: pixel data ({name}) cannot be decoded ({type(exc).__name__}: "
                             f"{' '.join(str(exc).split())}); the file is damaged or truncated") from None
    if arr.ndim != 2:
        raise InputFileError(f"{path}: pixel data of shape {arr.shape}; expected one grey frame")
    return arr
