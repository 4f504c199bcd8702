"""GeoTIFF reading with rasterio, keeping CRS, transform and nodata."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from segsuite.core.errors import InputFileError
from segsuite.core.spatial import Item, SpatialRef


def read_geotiff(path: Path) -> Item:
    """Read a whole (small) raster; large scenes are streamed window by window by ``tile``."""
    import rasterio
    from rasterio.errors import RasterioIOError

    path = Path(path)
    if not path.exists():
        raise InputFileError(f"{path}: file not found")
    try:
        with rasterio.open(path) as src:
            _check_fits(path, src)
            data = src.read()
            t = src.transform
            spatial = SpatialRef(
                shape=(src.height, src.width),
                crs=src.crs.to_wkt() if src.crs else None,
                transform=(t.a, t.b, t.c, t.d, t.e, t.f) if not t.is_identity else None,
                nodata=src.nodata,
                pixel_size=(abs(t.e), abs(t.a)) if not t.is_identity else None,
                units=(src.crs.linear_units if src.crs and src.crs.is_projected else ""),
            )
            meta = {"dtype": src.dtypes[0], "count": src.count, "descriptions": list(src.descriptions)}
    except RasterioIOError as exc:
        raise InputFileError(f"{path}: not a readable raster ({exc})") from None
    return Item(array=data, spatial=spatial, meta=meta, source=path)


def _check_fits(path: Path, src: Any) -> None:
    """Reading a whole raster (explanations, training pairs) must fit in free memory: the bands as
    stored plus a float32 copy. ``tile`` streams windows and never reads a scene whole."""
    import numpy as np

    from segsuite.core.resources import available_memory, human_bytes

    pixels = int(src.width) * int(src.height) * int(src.count)
    need = pixels * (np.dtype(src.dtypes[0]).itemsize + 4)
    free = available_memory()
    if free is not None and need > free:
        raise InputFileError(f"{path}: reading this {src.width}x{src.height} px, {src.count}-band raster whole needs about "
                             f"{human_bytes(need)} and {human_bytes(free)} is free; `segsuite tile` streams scenes of any "
                             "size, or cut it into smaller rasters")
