"""The satellite section of reports: the scene, its land-cover classes, areas, and the metrics.

GeoTIFFs are not pictures browsers show, so the scene and the class raster are rendered
to PNG previews (read decimated, so a large scene costs a preview's memory, not its own).
:func:`tiling_section` is what ``segsuite tile --report`` / ``segsuite run satellite --report``
show (and the demo, first); :func:`add_evaluation` adds the scores of
:meth:`TilingPipeline.evaluate <segsuite.plugins.satellite.pipeline.TilingPipeline.evaluate>`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from segsuite.core.classmap import ClassMap
from segsuite.core.report import ReportSection, Table, fmt

PREVIEW_SIDE = 768


def display_bands(src: Any) -> tuple[tuple[int, int, int] | tuple[int], str]:
    """1-based bands to show as red, green, blue and how they were chosen.

    Colour interpretation tags win; without them four or more bands are taken as the usual
    blue, green, red, near-infrared order (Sentinel-2 / Landsat band stacks), three as RGB."""
    from rasterio.enums import ColorInterp

    ci = list(src.colorinterp)
    tagged = {c: i + 1 for i, c in enumerate(ci)}
    if all(c in tagged for c in (ColorInterp.red, ColorInterp.green, ColorInterp.blue)):
        bands = (tagged[ColorInterp.red], tagged[ColorInterp.green], tagged[ColorInterp.blue])
        return bands, f"bands {','.join(map(str, bands))} (tagged red, green, blue)"
    if src.count >= 4:
        return (3, 2, 1), "bands 3,2,1 as red, green, blue"
    if src.count == 3:
        return (1, 2, 3), "bands 1,2,3 as red, green, blue"
    return (1,), "band 1 in grey"


def preview_shape(src: Any) -> tuple[int, int]:
    """``(h, w)`` of a raster's preview: at most ``PREVIEW_SIDE`` on its long side."""
    scale = min(1.0, PREVIEW_SIDE / max(src.height, src.width))
    return max(1, round(src.height * scale)), max(1, round(src.width * scale))


def scene_preview(path: Path) -> tuple[np.ndarray, np.ndarray, str]:
    """``(H, W, 3)`` uint8 picture of the scene (2-98 % stretch of the valid pixels), its valid mask, band note."""
    import rasterio
    from rasterio.enums import Resampling

    with rasterio.open(path) as src:
        bands, note = display_bands(src)
        h, w = preview_shape(src)
        data = src.read(list(bands), out_shape=(len(bands), h, w), resampling=Resampling.average).astype(np.float64)
        valid = src.dataset_mask(out_shape=(h, w)) > 0
    out = np.zeros((h, w, 3), np.uint8)
    for i in range(3):
        band = data[min(i, len(bands) - 1)]
        vals = band[valid] if valid.any() else band.ravel()
        lo, hi = np.percentile(vals, [2, 98]) if vals.size else (0.0, 1.0)
        out[..., i] = np.clip((band - lo) / max(hi - lo, 1e-9) * 255, 0, 255).astype(np.uint8)
    out[~valid] = 0
    return out, valid, note


def read_classes(path: Path, shape: tuple[int, int] | None = None) -> np.ndarray:
    """A class raster (optionally read at ``shape`` with nearest-neighbour decimation)."""
    import rasterio
    from rasterio.enums import Resampling

    with rasterio.open(path) as src:
        if shape is None:
            return src.read(1)
        return src.read(1, out_shape=shape, resampling=Resampling.nearest)


def tiling_section(records: Sequence[Mapping[str, Any]], class_map: ClassMap, report_dir: Path,
                   max_scenes: int = 6) -> ReportSection:
    """What the satellite pipeline wrote: per scene a preview, the classes over it and the area of
    every class (from each record, with the paths the executor planned in ``record["outputs"]``)."""
    from segsuite.core.report import write_preview
    from segsuite.core.visualize import overlay

    report_dir = Path(report_dir)
    section = ReportSection(domain="satellite", title="Satellite: land cover of GeoTIFF scenes, tiled", legend=class_map)
    total_area = 0.0
    units: set[str] = set()
    windows = skipped = 0
    for n, s in enumerate(records):
        outputs = s["outputs"]
        scene, target, record = Path(s["input"]), Path(outputs["classes"]), Path(outputs["record"])
        windows += int(s.get("windows", 0))
        skipped += int(s.get("windows_skipped_nodata", 0))
        classes = s["classes"]
        in_m2 = all("area_m2" in v and v["area_m2"] is not None for v in classes.values())
        counted = sum(v["pixels"] for v in classes.values()) or 1
        rows = []
        for name, v in classes.items():
            area = v["area_m2"] / 1e6 if in_m2 else v.get("area_map_units2")
            total_area += area or 0.0
            rows.append([name, v["pixels"], area, round(100.0 * v["pixels"] / counted, 2)])
        unit = "km²" if in_m2 else f"{s.get('map_units') or 'map unit'}²"
        units.add(unit)
        section.tables.append(Table(f"{scene.name}: land-cover areas ({s.get('format', 'GeoTIFF')}, "
                                    f"{'x'.join(map(str, s.get('size', [])))} px, {s.get('nodata_pixels', 0)} nodata px)",
                                    ["class", "pixels", f"area ({unit})", "share of classified pixels (%)"], rows))
        section.files += [(target.name, target), (record.name, record)]
        extras = [Path(outputs[k]) for k in ("probabilities", "uncertainty", "vector") if k in outputs]
        section.files += [(e.name, e) for e in extras if e.is_file()]
        if n >= max_scenes:
            continue
        rgb, valid, note = scene_preview(scene)
        labels = read_classes(target, rgb.shape[:2])
        # named after the class raster, which the executor made unique (x.tif and x.tiff)
        stem = target.stem[: -len("_classes")] if target.stem.endswith("_classes") else target.stem
        section.images.append((f"{scene.name} ({note}; nodata black)", write_preview(rgb, report_dir / f"{stem}_scene.png")))
        chw = rgb.transpose(2, 0, 1)
        section.images.append((f"{target.name}: classes over the scene (nodata untinted)",
                               write_preview(overlay(chw, labels, class_map, alpha=0.55, skip_background=False),
                                             report_dir / f"{stem}_overlay.png")))
        section.images.append((f"{target.name}: class raster (nodata black)",
                               write_preview(class_map.colorize(labels), report_dir / f"{stem}_classes.png", nearest=True)))
    if len(records) > max_scenes:
        section.notes.append(f"pictures of the first {max_scenes} of {len(records)} scenes; every table is above")
    section.facts += [("scenes", str(len(records))), ("windows", f"{windows} ({skipped} skipped as nodata)"),
                      ("classified area", f"{fmt(total_area)} {units.pop()}" if len(units) == 1 else "mixed units")]
    return section


def add_evaluation(section: ReportSection, result: Mapping[str, Any], output: Path, max_scenes: int = 6) -> None:
    """The scores of :func:`segsuite.plugins.satellite.evaluate.evaluate_scenes` in ``section``: the
    reference labels of each scene (pictures written to ``output``), the per-class metrics, the
    confusion matrix and the mean IoU as a headline fact."""
    import rasterio

    from segsuite.core.report import Evaluation, write_confusion, write_preview

    output = Path(output)
    class_map = section.legend
    if class_map is not None:
        for row in list(result.get("per_image") or [])[:max_scenes]:
            labels = Path(row["labels"])
            with rasterio.open(labels) as src:
                shape = preview_shape(src)
            truth = read_classes(labels, shape).astype(np.int64)
            if class_map.raw_ids is not None:
                truth = class_map.to_train_ids(truth)
            section.images.append((f"{labels.name}: reference labels",
                                   write_preview(class_map.colorize(truth), output / f"{labels.stem}.png", nearest=True)))
    confusion = output / "confusion.png"
    if not confusion.is_file():
        write_confusion(result["confusion_matrix"], list(result["per_class"]), confusion)
    source = output / "metrics.json"
    section.evaluation = Evaluation.from_metrics(result, confusion=confusion, source=source if source.is_file() else None)
    section.facts.append(("mean IoU", fmt(result.get("mean_iou"))))
