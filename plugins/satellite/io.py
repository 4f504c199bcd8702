"""GeoTIFF reading with rasterio, keeping CRS, transform and nodata."""

from __future__ import annotations

from pathlib import Path

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
