"""The satellite section of reports: the scene, its land-cover classes, areas, and (demo) the metrics.

GeoTIFFs are not pictures browsers show, so the scene and the class raster are rendered
to PNG previews (read decimated, so a large scene costs a preview's memory, not its own).
"""

from __future__ import annotations

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


def _shape(src: Any) -> tuple[int, int]:
    scale = min(1.0, PREVIEW_SIDE / max(src.height, src.width))
    return max(1, round(src.height * scale)), max(1, round(src.width * scale))


def scene_preview(path: Path) -> tuple[np.ndarray, np.ndarray, str]:
    """``(H, W, 3)`` uint8 picture of the scene (2-98 % stretch of the valid pixels), its valid mask, band note."""
    import rasterio
    from rasterio.enums import Resampling

    with rasterio.open(path) as src:
        bands, note = display_bands(src)
        h, w = _shape(src)
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


def run_report(summaries: list[dict[str, Any]], output: Path | None, class_map: ClassMap, report_dir: Path,
               max_scenes: int = 6) -> ReportSection:
    """What ``segsuite tile`` / ``segsuite run satellite`` wrote: per scene a preview, the classes over it
    and the area of every class (from the JSON summary beside each class raster)."""
    from segsuite.core.report import write_preview
    from segsuite.core.visualize import overlay

    report_dir = Path(report_dir)
    section = ReportSection(domain="satellite", title="Satellite: land cover of GeoTIFF scenes, tiled", legend=class_map)
    total_area = 0.0
    units: set[str] = set()
    windows = skipped = 0
    for n, s in enumerate(summaries):
        scene, target = Path(s["input"]), Path(s["output"])
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
        section.files += [(target.name, target), (target.with_suffix(".json").name, target.with_suffix(".json"))]
        extras = [s.get("probabilities"), (s.get("uncertainty") or {}).get("output"), (s.get("vector") or {}).get("vector")]
        section.files += [(Path(e).name, Path(e)) for e in extras if isinstance(e, str) and Path(e).is_file()]
        if n >= max_scenes:
            continue
        rgb, valid, note = scene_preview(scene)
        labels = read_classes(target, rgb.shape[:2])
        stem = scene.stem
        section.images.append((f"{scene.name} ({note}; nodata black)", write_preview(rgb, report_dir / f"{stem}_scene.png")))
        chw = rgb.transpose(2, 0, 1)
        section.images.append((f"{target.name}: classes over the scene (nodata untinted)",
                               write_preview(overlay(chw, labels, class_map, alpha=0.55, skip_background=False),
                                             report_dir / f"{stem}_overlay.png")))
        section.images.append((f"{target.name}: class raster (nodata black)",
                               write_preview(class_map.colorize(labels), report_dir / f"{stem}_classes.png", nearest=True)))
    if len(summaries) > max_scenes:
        section.notes.append(f"pictures of the first {max_scenes} of {len(summaries)} scenes; every table is above")
    section.facts += [("scenes", str(len(summaries))), ("windows", f"{windows} ({skipped} skipped as nodata)"),
                      ("classified area", f"{fmt(total_area)} {units.pop()}" if len(units) == 1 else "mixed units")]
    return section


def demo(output: Path, device: str) -> ReportSection:
    """The shipped 4-band scene tiled in 256-pixel windows by the shipped model, scored against its labels."""
    import torch

    from segsuite.core.demo import sample_files
    from segsuite.core.infer import Predictor
    from segsuite.core.io import write_json
    from segsuite.core.metrics import ConfusionMatrix
    from segsuite.core.report import Evaluation, write_confusion, write_preview

    from .commands import tile_scenes
    from .tiling import TileOptions

    scene, truth_path, model = sample_files("satellite", "scene.tif", "scene_labels.tif", "model.safetensors")
    output = Path(output)
    predictor = Predictor.from_checkpoint(model, device=device)
    cm_ = predictor.class_map
    options = TileOptions(tile=256, overlap=32)
    summaries = list(tile_scenes([scene], predictor, output / "tiles", options, output_is_folder=True))
    section = run_report(summaries, output / "tiles", cm_, output)
    section.notes.insert(0, f"segsuite tile {scene.name} --tile {options.tile} --overlap {options.overlap}: the scene is "
                            "processed in overlapping windows blended with a Gaussian weight, so no seam shows; the "
                            "class raster keeps the scene's CRS, transform and nodata.")

    pred = read_classes(Path(summaries[0]["output"])).astype(np.int64)
    truth = read_classes(truth_path).astype(np.int64)
    cm = ConfusionMatrix(cm_.num_classes, cm_.ignore_index, class_names=list(cm_.names))
    cm.update(torch.from_numpy(np.where(pred == cm_.ignore_index, 0, pred))[None], torch.from_numpy(truth)[None])
    metrics = cm.compute()
    ev_dir = output / "evaluation"
    write_json(ev_dir / "metrics.json", {**metrics.to_dict(), "checkpoint": str(model), "prediction": summaries[0]["output"],
                                         "labels": str(truth_path)})
    confusion = write_confusion(metrics.confusion, cm_.names, ev_dir / "confusion.png")
    section.images.append((f"{truth_path.name}: reference labels", write_preview(cm_.colorize(truth), output / "scene_labels.png",
                                                                                  nearest=True)))
    section.evaluation = Evaluation.from_metrics(metrics.to_dict(), confusion=confusion, source=ev_dir / "metrics.json")
    section.facts.append(("mean IoU", fmt(metrics.mean_iou)))
    return section
