"""Reading GeoTIFF scenes with rasterio: opening with one-line errors, the bands a model sees,
which pixels are valid (nodata value, internal mask, alpha band), the area of a pixel, and
per-band statistics. Shared by the tiler, ``segsuite stats`` and the training dataset.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from segsuite.core.errors import InputFileError


def open_raster(path: Path) -> Any:
    """``rasterio.open(path)``, or a one-line :class:`InputFileError` naming the file."""
    import rasterio
    from rasterio.errors import RasterioIOError

    if not path.exists():
        raise InputFileError(f"{path}: file not found")
    try:
        return rasterio.open(path)
    except RasterioIOError as exc:
        raise InputFileError(f"{path}: not a readable raster ({str(exc).splitlines()[0]})") from None


def default_bands(src: Any) -> tuple[int, ...]:
    """Every band but alpha bands (1-based, as GDAL counts)."""
    from rasterio.enums import ColorInterp

    return tuple(i + 1 for i, ci in enumerate(src.colorinterp) if ci != ColorInterp.alpha) or (1,)


def describe_bands(src: Any) -> str:
    """The raster's bands for a message: ``"bands 1..4 (band 4 is alpha)"``, ``"band 1"``."""
    from rasterio.enums import ColorInterp

    text = "band 1" if src.count == 1 else f"bands 1..{src.count}"
    alpha = [str(i + 1) for i, ci in enumerate(src.colorinterp) if ci == ColorInterp.alpha]
    if alpha:
        text += f" (band {alpha[0]} is alpha)" if len(alpha) == 1 else f" (bands {','.join(alpha)} are alpha)"
    return text


def check_bands(src: Any, bands: Sequence[int], path: Path) -> None:
    """A one-line error when a requested band is not in the raster."""
    bad = [b for b in bands if not 1 <= b <= src.count]
    if bad:
        raise InputFileError(f"{path}: band(s) {','.join(map(str, bad))} do not exist; the raster has {describe_bands(src)}")


def band_mismatch(src: Any, path: Path, bands: tuple[int, ...], expected: int, names: Any = None) -> str:
    """The one line for a scene whose selected bands do not match the model's input: a
    ``--bands`` hint only from bands that exist and are data (alpha is a mask, not a band)."""
    data = tuple(i + 1 for i, ci in enumerate(src.colorinterp) if ci.name != "alpha")
    wanted = f"{expected} band(s)" + (f" ({', '.join(names)})" if names else "")
    chosen = f"{len(bands)} {'is' if len(bands) == 1 else 'are'} selected from this raster's {describe_bands(src)}"
    if len(data) >= expected:
        fix = f"choose {expected} with --bands, e.g. --bands {','.join(map(str, data[:expected]))}"
    else:
        fix = (f"it has only {len(data)} data band(s), so no --bands choice fits; use a scene with {expected} "
               f"bands or a model trained on {len(data)}")
    return f"{path}: the model expects {wanted} but {chosen}; {fix}"


def read_error(path: Path, exc: BaseException, where: str) -> InputFileError:
    """One line for a failed pixel read. rasterio chains GDAL's messages (``Read failed. See
    previous exception for details.``); the first one in the chain says what happened, e.g.
    ``got 39570 bytes, expected 388389``."""
    cause = exc
    while cause.__cause__ is not None:
        cause = cause.__cause__
    detail = (str(cause).strip().splitlines() or [type(cause).__name__])[0]
    return InputFileError(f"{path}: cannot read pixels {where} ({detail}); the file is truncated or corrupt")


def area_units(src: Any) -> tuple[float | None, str, float | None]:
    """Area of one pixel in map units², the units' name, and in m² when the CRS is projected."""
    t = src.transform
    if t.is_identity and src.crs is None:
        return None, "pixel", None
    a = abs(t.a * t.e - t.b * t.d)
    if src.crs is not None and src.crs.is_projected:
        factor = src.crs.linear_units_factor[1] if hasattr(src.crs, "linear_units_factor") else 1.0
        return a, src.crs.linear_units or "unit", a * factor * factor
    return a, "degree" if src.crs is not None and src.crs.is_geographic else "unit", None


def has_mask(src: Any) -> bool:
    """Whether the file itself marks invalid pixels (nodata value, internal mask or alpha)."""
    from rasterio.enums import ColorInterp, MaskFlags

    return (src.nodata is not None or any(ci == ColorInterp.alpha for ci in src.colorinterp)
            or any(m != MaskFlags.all_valid for flags in src.mask_flag_enums for m in flags))


def valid_mask(src: Any, window: Any, data: np.ndarray, nodata: float | None, use_file_mask: bool) -> np.ndarray:
    """Valid pixels of ``data`` (read from ``window``): a user's ``--nodata`` value wins; otherwise
    GDAL's dataset mask plus any alpha band (GDAL itself honours alpha only as the last of 2 or 4 bands)."""
    from rasterio.enums import ColorInterp

    if nodata is not None:
        return ~np.all(data == np.float32(nodata), axis=0)
    if not use_file_mask:
        return np.ones(data.shape[1:], bool)
    valid = src.dataset_mask(window=window) > 0
    for i, ci in enumerate(src.colorinterp):
        if ci == ColorInterp.alpha:
            valid &= src.read(i + 1, window=window) > 0
    return valid


def band_statistics(path: str | Path, bands: Sequence[int] | None = None, nodata: float | None = None) -> dict[str, Any]:
    """Per-band count, mean, std, min and max over valid pixels, streamed block by block; a file
    that cannot be read to the end (truncated, corrupt) is a one-line :class:`InputFileError`."""
    from rasterio.errors import RasterioError

    src = open_raster(Path(path))
    with src:
        bands = list(bands or default_bands(src))
        check_bands(src, bands, Path(path))
        use_mask = has_mask(src)
        n = np.zeros(len(bands))
        s = np.zeros(len(bands))
        s2 = np.zeros(len(bands))
        lo = np.full(len(bands), np.inf)
        hi = np.full(len(bands), -np.inf)
        for _, win in src.block_windows(1):
            try:
                data = src.read(bands, window=win, out_dtype="float64")
                valid = valid_mask(src, win, data, nodata, use_mask) & np.isfinite(data).all(axis=0)
            except RasterioError as exc:
                raise read_error(Path(path), exc, f"at row {win.row_off}, column {win.col_off}") from None
            v = data[:, valid]
            if v.size == 0:
                continue
            # shift by the first block's mean would be more stable; float64 sums suffice for imagery
            n += v.shape[1]
            s += v.sum(1)
            s2 += (v**2).sum(1)
            lo = np.minimum(lo, v.min(1))
            hi = np.maximum(hi, v.max(1))
        if not n.any():
            raise InputFileError(f"{path}: every pixel is nodata; nothing to compute")
        mean = s / n
        std = np.sqrt(np.maximum(s2 / n - mean**2, 0))
        return {
            "input": str(path), "bands": bands, "valid_pixels": int(n[0]),
            "mean": mean.tolist(), "std": std.tolist(), "min": lo.tolist(), "max": hi.tolist(),
            "normalization": {"kind": "zscore", "mean": mean.tolist(), "std": (std + 1e-6).tolist(), "bands": [f"band {b}" for b in bands]},
        }
