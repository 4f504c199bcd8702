"""Class raster -> polygons (GeoPackage or GeoJSON) with class name and area.

rasterio's ``features.shapes`` traces polygons strip by strip, so memory stays bounded;
polygons touching a strip's inner edge are merged across strips afterwards (shapely's
union), so no polygon is cut where a strip ended. Areas are in the CRS's units² and, for
projected CRSs, in m². ``min_area`` drops small specks (in map units²) and ``simplify``
applies Douglas-Peucker with topology preserved (tolerance in map units). A GeoPackage keeps
the raster's CRS; GeoJSON is written in WGS84 longitude/latitude (RFC 7946).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from segsuite.core.classmap import ClassMap
from segsuite.core.errors import SegsuiteError


def polygonize(raster: str | Path, output: str | Path, class_map: ClassMap, *, min_area: float = 0.0,
               simplify: float = 0.0, strip_rows: int = 1024, skip_classes: tuple[int, ...] = ()) -> dict[str, Any]:
    """Trace the class raster ``raster`` into one polygon per connected region and write them to
    ``output`` (``.gpkg``, or ``.geojson``/``.json``) with their class name, id and area.

    Args:
        raster: a class GeoTIFF written by the tiler (its nodata pixels are not traced).
        output: the vector file; GeoPackage in the raster's CRS, GeoJSON reprojected to WGS84.
        class_map: names for the class ids.
        min_area: drop polygons smaller than this, in map units² (before reprojection).
        simplify: Douglas-Peucker tolerance in map units (0: off).
        strip_rows: rows traced at a time (memory stays bounded; strip seams are merged).
        skip_classes: class ids not to trace (e.g. background).

    Returns:
        ``{"vector": path, "polygons": count, "per_class": {name: count}}``.
    """
    import rasterio
    from rasterio.features import shapes
    from rasterio.windows import Window
    from shapely.geometry import box, shape
    from shapely.ops import unary_union

    from segsuite.core.io import atomic_path

    output = Path(output)
    suffix = output.suffix.lower()
    if suffix not in (".gpkg", ".geojson", ".json"):
        raise SegsuiteError(f"{output}: --vector must end in .gpkg or .geojson")
    final: dict[int, list] = {}
    edge: dict[int, list] = {}
    with rasterio.open(raster) as src:
        nodata = src.nodata
        for y0 in range(0, src.height, strip_rows):
            h = min(strip_rows, src.height - y0)
            win = Window(0, y0, src.width, h)
            data = src.read(1, window=win)
            valid = data != nodata if nodata is not None else np.ones(data.shape, bool)
            transform = src.window_transform(win)
            inner = []
            if y0 > 0:
                inner.append(box(*rasterio.windows.bounds(Window(0, y0, src.width, 1), src.transform)).boundary)
            if y0 + h < src.height:
                inner.append(box(*rasterio.windows.bounds(Window(0, y0 + h - 1, src.width, 1), src.transform)).boundary)
            for geom, value in shapes(data, mask=valid, transform=transform, connectivity=4):
                cls = int(value)
                if cls in skip_classes:
                    continue
                poly = shape(geom)
                touches = any(poly.intersects(line) for line in inner)
                (edge if touches else final).setdefault(cls, []).append(poly)
        crs_wkt = src.crs.to_wkt() if src.crs else None
        projected = bool(src.crs and src.crs.is_projected)
        unit_factor = src.crs.linear_units_factor[1] if projected else 1.0
    for cls, polys in edge.items():
        merged = unary_union(polys)
        parts = list(getattr(merged, "geoms", [merged]))
        final.setdefault(cls, []).extend(p for p in parts if p.geom_type == "Polygon")
    features = []
    for cls in sorted(final):
        for poly in final[cls]:
            if simplify > 0:
                poly = poly.simplify(simplify, preserve_topology=True)
            area = float(poly.area)
            if area < min_area or poly.is_empty:
                continue
            features.append((cls, poly, area))
    names = [class_map.names[c] if c < class_map.num_classes else str(c) for c, _, _ in features]
    with atomic_path(output) as tmp:
        if suffix == ".gpkg":
            import pyogrio.raw
            import shapely

            fields = [np.array(names, dtype=object), np.array([c for c, _, _ in features], np.int32),
                      np.array([a for _, _, a in features], np.float64)]
            field_names = ["class", "class_id", "area"]
            if projected:
                fields.append(np.array([a * unit_factor**2 for _, _, a in features], np.float64))
                field_names.append("area_m2")
            tmp.unlink()  # GDAL's GPKG driver wants to create the file itself
            pyogrio.raw.write(str(tmp), shapely.to_wkb(np.array([p for _, p, _ in features], dtype=object)), fields,
                              field_names, driver="GPKG", geometry_type="Polygon", crs=crs_wkt, layer="classes")
        else:
            geometries = wgs84_geometries([p for _, p, _ in features], crs_wkt)
            doc = {
                "type": "FeatureCollection",
                "features": [
                    {"type": "Feature", "geometry": g,
                     "properties": {"class": n, "class_id": c, "area": a, **({"area_m2": a * unit_factor**2} if projected else {})}}
                    for n, g, (c, _, a) in zip(names, geometries, features)
                ],
            }
            tmp.write_text(json.dumps(doc))
    per_class: dict[str, int] = {}
    for n in names:
        per_class[n] = per_class.get(n, 0) + 1
    return {"vector": str(output), "polygons": len(features), "per_class": per_class}


def wgs84_geometries(polygons: list[Any], crs_wkt: str | None) -> list[dict[str, Any]]:
    """GeoJSON geometries of ``polygons`` (in the raster's CRS) in WGS84 longitude/latitude.

    RFC 7946 GeoJSON has no CRS member: every reader takes coordinates as WGS84 degrees, so
    metres of a projected CRS (with or without an EPSG code) would land somewhere near null
    island. GeoPackage stores any CRS and keeps the raster's. A raster without a CRS keeps its
    own (pixel or map) coordinates: there is nothing to reproject from, and the tiler has
    already warned that the scene is not georeferenced.
    """
    geoms = [json.loads(json.dumps(p.__geo_interface__)) for p in polygons]  # tuples -> lists
    if not crs_wkt or not geoms:
        return geoms
    from rasterio.crs import CRS
    from rasterio.warp import transform_geom

    crs = CRS.from_wkt(crs_wkt)
    if crs.to_epsg() == 4326:
        return geoms
    # rasterio keeps the traditional GIS axis order: x = longitude, y = latitude, as RFC 7946 wants
    moved = transform_geom(crs, CRS.from_epsg(4326), geoms)
    return [json.loads(json.dumps(g)) for g in moved]
