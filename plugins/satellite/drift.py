"""The input drift check for a scene (see :mod:`segsuite.core.drift`), without reading it whole.

A scene may be far larger than memory, so the check reads a grid of small windows spread over
it (:data:`GRID` x :data:`GRID` windows of at most :data:`SIDE` pixels: a few hundred
kilobytes whatever the scene's size), of the bands the model will see, and leaves out the
pixels the tiler leaves out (nodata, masked, alpha, non-finite).

GDAL decodes whole blocks, so in a tiled file the windows go two to a block, in
``GRID / 2`` blocks spread along each axis: a quarter of a 4096² scene of 512² blocks is decoded
instead of all of it (0.5 s of a 3-second run, measured).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

GRID = 8
SIDE = 32


def scene_pixels(path: Path, bands: tuple[int, ...] | None, nodata: float | None) -> tuple[np.ndarray, np.ndarray] | None:
    """``(C, N)`` pixel values and their ``(N,)`` valid mask from a grid of windows over the
    scene, or ``None`` when it cannot be read or lacks a band (the tiler then says why)."""
    import warnings

    import rasterio
    from rasterio.windows import Window

    from .raster import default_bands, has_mask, valid_mask

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # what matters about the file, the tiler says next
            with rasterio.open(path) as src:
                chosen = list(bands or default_bands(src))
                if not all(1 <= b <= src.count for b in chosen) or src.width == 0 or src.height == 0:
                    return None
                h, w = min(SIDE, src.height), min(SIDE, src.width)
                block_h, block_w = src.block_shapes[chosen[0] - 1]
                use_mask = has_mask(src)
                values, valid = [], []
                for y in _starts(src.height, h, block_h):
                    for x in _starts(src.width, w, block_w):
                        win = Window(x, y, w, h)
                        data = src.read(chosen, window=win, out_dtype="float64")
                        values.append(data.reshape(len(chosen), -1))
                        valid.append(valid_mask(src, win, data, nodata, use_mask).reshape(-1))
    except (rasterio.errors.RasterioError, OSError, ValueError):
        return None
    return np.concatenate(values, axis=1), np.concatenate(valid)


def _starts(size: int, side: int, block: int) -> list[int]:
    """Up to :data:`GRID` window origins along an axis: two in each of ``GRID / 2`` blocks spread
    evenly, or spread evenly themselves when there are fewer blocks or they hold fewer than
    two windows."""
    blocks = -(-size // block)
    if blocks <= GRID // 2 or block < 2 * side:
        return sorted({int(round(v)) for v in np.linspace(0, size - side, GRID)})
    starts = set()
    for b in sorted({int(round(v)) for v in np.linspace(0, blocks - 1, GRID // 2)}):
        b0, b1 = b * block, min(size, (b + 1) * block)
        for quarter in (1, 3):  # centred on the block's first and third quarter
            starts.add(min(max(b0, b0 + quarter * (b1 - b0) // 4 - side // 2), b1 - side))
    return sorted(starts)


def check_scene(card: Any, path: Path, options: Any, warn: Callable[[str], None]) -> dict[str, Any]:
    """:func:`segsuite.core.drift.check_input_drift` for a scene read with ``options`` (a
    :class:`~.tiling.TileOptions`: its bands and nodata): ``{"input_drift": ...}`` for its record
    (and one warning) when its pixels are unlike the model's training data, else ``{}``."""
    from segsuite.core.drift import InputStats, check_input_drift

    if InputStats.from_card(card) is None:
        return {}  # an older model: not even a window is read
    sample = scene_pixels(Path(path), options.bands, options.nodata)
    if sample is None:
        return {}
    values, valid = sample
    return check_input_drift(card, values, path, warn, valid=valid)
