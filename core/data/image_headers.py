"""What a PNG, JPEG, BMP or TIFF file says about its pixels, read from its header alone.

Decoding a file to find out it is too large is already too late: a 700-byte PNG can claim
20000 x 20000 pixels, and OpenCV allocates the whole image before it notices that the data is
missing. These parsers read the first kilobytes (TIFF: also its first directory) and return
width, height, samples per pixel and bytes per sample, so that a reader can refuse such a file
in well under a second (:func:`segsuite.core.data.images.check_image_size`). Anything they do
not understand gives ``None``: the decoder then has the last word, as before.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# Deflate cannot compress by more than about 1032:1 (258-byte matches in 2-bit codes);
# a PNG whose pixels would need more than this many times its file size is lying.
PNG_MAX_RATIO = 1100
# Sample counts OpenCV decodes PNG colour types to (palette images become RGB).
_PNG_SAMPLES = {0: 1, 2: 3, 3: 3, 4: 2, 6: 4}
_HEAD_BYTES = 512  # PNG and BMP headers; JPEG and TIFF are walked from the file


@dataclass(frozen=True)
class ImageHeader:
    """The decoded size a file claims."""

    format: str
    width: int
    height: int
    samples: int
    """Values per pixel after decoding (grey 1, colour 3, with alpha 2 or 4)."""
    bytes_per_sample: int
    stored_bytes: int | None = None
    """The bytes the file's pixel data must expand to (``None``: not known)."""
    max_stored_bytes: int | None = None
    """The most a file of this size can expand to (``None``: no useful bound)."""

    @property
    def pixels(self) -> int:
        return self.width * self.height

    @property
    def decoded_bytes(self) -> int:
        return self.pixels * self.samples * self.bytes_per_sample

    @property
    def fits_file(self) -> bool:
        """False when the header claims more pixel data than the file can hold."""
        return self.stored_bytes is None or self.max_stored_bytes is None or self.stored_bytes <= self.max_stored_bytes


def read_header(path: str | Path) -> ImageHeader | None:
    """The header of the image at ``path``, or ``None`` when its format is not recognised."""
    path = Path(path)
    size = path.stat().st_size
    with open(path, "rb") as fh:
        head = fh.read(_HEAD_BYTES)
        if head.startswith(PNG_SIGNATURE):
            return _png(head, size)
        if head[:3] == b"\xff\xd8\xff":
            return _jpeg(fh)
        if head[:2] == b"BM":
            return _bmp(head, size)
        if head[:4] in (b"II*\x00", b"MM\x00*"):
            return _tiff(fh, head[:2] == b"II", big=False)
        if head[:4] in (b"II+\x00", b"MM\x00+"):
            return _tiff(fh, head[:2] == b"II", big=True)
    return None


def _png(head: bytes, size: int) -> ImageHeader | None:
    if len(head) < 33 or head[12:16] != b"IHDR":
        return None
    width, height, depth, colour = struct.unpack(">IIBB", head[16:26])
    samples = _PNG_SAMPLES.get(colour)
    if samples is None:
        return None
    per_sample = 2 if depth == 16 else 1
    # the compressed stream holds one filter byte per row and the packed samples
    stored = height * (1 + (width * (1 if colour == 3 else samples) * depth + 7) // 8)
    return ImageHeader("PNG", width, height, samples, per_sample, stored, size * PNG_MAX_RATIO)


def _jpeg(fh) -> ImageHeader | None:
    # Walk the markers to the first start-of-frame (SOF0..SOF15 but DHT C4, JPG C8, DAC CC).
    fh.seek(2)
    for _ in range(10000):
        marker = fh.read(2)
        if len(marker) < 2 or marker[0] != 0xFF:
            return None
        code = marker[1]
        if code == 0xFF:  # fill byte
            fh.seek(-1, 1)
            continue
        if code in (0x01, *range(0xD0, 0xD8)):  # markers without a length
            continue
        raw = fh.read(2)
        if len(raw) < 2:
            return None
        length = struct.unpack(">H", raw)[0]
        if 0xC0 <= code <= 0xCF and code not in (0xC4, 0xC8, 0xCC):
            body = fh.read(6)
            if len(body) < 6:
                return None
            precision, height, width, samples = struct.unpack(">BHHB", body)
            # OpenCV decodes to grey or BGR (CMYK and others become 3 channels)
            return ImageHeader("JPEG", width, height, 1 if samples == 1 else 3, 2 if precision > 8 else 1)
        if code == 0xDA:  # start of scan before any frame header: not a JPEG we understand
            return None
        fh.seek(length - 2, 1)
    return None


def _bmp(head: bytes, size: int) -> ImageHeader | None:
    if len(head) < 30:
        return None
    header_size = struct.unpack("<I", head[14:18])[0]
    compression = 0
    if header_size == 12:  # OS/2 BITMAPCOREHEADER
        width, height, _, bits = struct.unpack("<HhHH", head[18:26])
    elif len(head) >= 34:
        width, height, _, bits, compression = struct.unpack("<iiHHI", head[18:34])
    else:
        return None
    width, height = abs(width), abs(height)
    samples = 4 if bits == 32 else 3 if bits > 1 or bits == 0 else 1
    # uncompressed rows are padded to 4 bytes, and all of them are in the file
    stored = height * ((width * bits + 31) // 32 * 4) if compression == 0 and bits else None
    return ImageHeader("BMP", width, height, samples, 1, stored, size if stored is not None else None)


def _tiff(fh, little: bool, big: bool) -> ImageHeader | None:
    e = "<" if little else ">"
    fh.seek(4)
    if big:
        raw = fh.read(12)
        if len(raw) < 12:
            return None
        offset = struct.unpack(e + "Q", raw[4:12])[0]
        count_fmt, n_fmt, entry_size, value_fmt, value_size = "Q", "Q", 20, "Q", 8
    else:
        raw = fh.read(4)
        if len(raw) < 4:
            return None
        offset = struct.unpack(e + "I", raw)[0]
        count_fmt, n_fmt, entry_size, value_fmt, value_size = "H", "I", 12, "I", 4
    fh.seek(offset)
    raw = fh.read(struct.calcsize(count_fmt))
    if len(raw) < struct.calcsize(count_fmt):
        return None
    count = struct.unpack(e + count_fmt, raw)[0]
    if count > 4096:
        return None
    entries = fh.read(count * entry_size)
    if len(entries) < count * entry_size:
        return None
    tags: dict[int, tuple[int, int, bytes]] = {}
    for i in range(count):
        entry = entries[i * entry_size:(i + 1) * entry_size]
        tag, kind = struct.unpack(e + "HH", entry[:4])
        n_size = struct.calcsize(n_fmt)
        n = struct.unpack(e + n_fmt, entry[4:4 + n_size])[0]
        tags[tag] = (kind, n, entry[4 + n_size:4 + n_size + value_size])

    def first(tag: int, default: int | None = None) -> int | None:
        if tag not in tags:
            return default
        kind, n, value = tags[tag]
        if kind == 3:  # SHORT, stored in the entry when it fits
            if n * 2 <= value_size:
                return struct.unpack(e + "H", value[:2])[0]
            pointer = struct.unpack(e + value_fmt, value)[0]
            fh.seek(pointer)
            data = fh.read(2)
            return struct.unpack(e + "H", data)[0] if len(data) == 2 else default
        if kind in (4, 16):  # LONG, LONG8
            fmt, width = ("I", 4) if kind == 4 else ("Q", 8)
            if n * width <= value_size:
                return struct.unpack(e + fmt, value[:width])[0]
        return default

    width, height = first(256), first(257)
    if width is None or height is None:
        return None
    bits = first(258, 1) or 1
    samples = first(277, 1) or 1
    per_sample = max(1, (bits + 7) // 8)
    if first(259, 1) != 1:  # compressed: no useful bound from the file size
        return ImageHeader("TIFF", width, height, samples, per_sample)
    # uncompressed: every stored byte is in the file (rows padded to whole bytes)
    stored = height * ((width * samples * bits + 7) // 8)
    return ImageHeader("TIFF", width, height, samples, per_sample, stored, fh.seek(0, 2))
