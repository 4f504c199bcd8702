"""The satellite pipeline: each GeoTIFF scene tiled into a seamless, georeferenced class raster.

``segsuite run satellite`` and ``segsuite tile`` both run :class:`TilingPipeline` through the
core's job executor, so they write the same files for the same options. Per scene:
``{stem}_classes.tif`` (beside the scene unless ``--output`` says otherwise) and its record
``{stem}_classes.json``; with ``--probabilities`` / ``--uncertainty`` the rasters
``{stem}_classes_probabilities.tif`` / ``{stem}_classes_uncertainty.tif``; with ``--vector``
the polygons. This module stays light (no rasterio, no torch): plugin discovery imports it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from segsuite.core.errors import SegsuiteError
from segsuite.core.image_pipeline import UNCERTAINTY
from segsuite.core.pipeline import BasePipeline, RunContext, RunOption

if TYPE_CHECKING:
    from segsuite.core.classmap import ClassMap
    from segsuite.core.report import ReportSection

    from .tiling import TileOptions

SCENE_SUFFIXES = (".tif", ".tiff")
VECTOR_SUFFIXES = (".gpkg", ".geojson", ".json")
SAMPLE_WINDOWS = {"tile": 256, "overlap": 32}
"""The windows of the demo run and of :meth:`TilingPipeline.evaluate`, so the demo scores what it shows."""


def parse_bands(text: str | None) -> tuple[int, ...] | None:
    """``"4,3,2,8"`` -> ``(4, 3, 2, 8)`` (1-based, as GDAL counts); ``None`` stays ``None``."""
    if text is None:
        return None
    try:
        bands = tuple(int(b) for b in text.split(","))
    except ValueError:
        raise SegsuiteError(f"--bands {text!r} must be 1-based band numbers like 1,2,3,4") from None
    if not bands or min(bands) < 1:
        raise SegsuiteError(f"--bands {text!r} must be 1-based band numbers like 1,2,3,4")
    return bands


def _check_vector(path: Path) -> None:
    if Path(path).suffix.lower() not in VECTOR_SUFFIXES:
        raise SegsuiteError(f"{path}: --vector must end in .gpkg or .geojson")


OPTIONS = (
    RunOption("tile", int, 512, "Window side in pixels", minimum=16, maximum=8192),  # tiling.MIN_TILE, MAX_TILE
    RunOption("overlap", int, 64, "Overlap between neighbouring windows in pixels (less than --tile)", minimum=0),
    RunOption("batch", int, 4, "Windows per forward pass", minimum=1),
    RunOption("bands", str, None, "1-based input bands for the model, e.g. 4,3,2,8 (default: all but alpha)",
              validate=parse_bands),
    RunOption("nodata", float, None, "Treat this value as nodata (default: what the file declares; 0 is never assumed)"),
    RunOption("probabilities", bool, False, "Also write per-class probabilities (uint8, 1..255; 0 = nodata)"),
    RunOption("cog", bool, True, "Write a Cloud-Optimized GeoTIFF when GDAL's COG driver is available "
              "(--no-cog: a plain tiled GeoTIFF)"),
    replace(UNCERTAINTY, help="Also write OUT_uncertainty.tif (float32 0..1, nodata -1); tta takes 4x the time, "
                              "mcdropout 8x and needs a model with dropout"),
    RunOption("vector", Path, None, "Also polygonise the classes into this .gpkg or .geojson (one input only)",
              validate=_check_vector),
    RunOption("min_area", float, 0.0, "With --vector: drop polygons smaller than this (map units²)", minimum=0),
    RunOption("simplify", float, 0.0, "With --vector: simplification tolerance (map units)", minimum=0),
)
_DEFAULTS = {o.name: o.default for o in OPTIONS}


def tile_options(options: Mapping[str, Any]) -> "TileOptions":
    """The tiler's settings from run options (a missing one takes its declared default);
    ``--overlap`` not smaller than ``--tile`` is refused here."""
    from .tiling import TileOptions

    def value(name: str) -> Any:
        given = options.get(name)
        return given if given is not None else _DEFAULTS[name]

    return TileOptions(tile=int(value("tile")), overlap=int(value("overlap")), batch=int(value("batch")),
                       bands=parse_bands(value("bands")), nodata=value("nodata"),
                       probabilities=bool(value("probabilities")), cog=value("cog") is not False,
                       uncertainty=value("uncertainty"))


def _add_vector(record: dict[str, Any], outputs: Mapping[str, Path], class_map: Any, options: Mapping[str, Any]) -> None:
    """``--vector``: polygonise the finished class raster (one process or joined bands alike)."""
    if "vector" in outputs:
        from .vector import polygonize

        record["vector"] = polygonize(outputs["classes"], outputs["vector"], class_map,
                                      min_area=float(options.get("min_area") or 0.0),
                                      simplify=float(options.get("simplify") or 0.0))


class TilingPipeline(BasePipeline):
    """Per scene: the class GeoTIFF (the scene's CRS, transform and nodata; colour table; COG),
    its JSON record (pixels and area per class), and the rasters and polygons asked for."""

    name = "satellite"
    options = OPTIONS
    suffixes = SCENE_SUFFIXES
    default_output = None  # beside each scene, as `segsuite tile` always did
    single_file_suffixes = SCENE_SUFFIXES

    def load(self, checkpoint: Path, options: Mapping[str, Any], device: str) -> Any:
        """The predictor, once per job; a 3D model, a bad --overlap or MC dropout without dropout stop the job here."""
        from segsuite.core.pipeline import load_predictor

        tile_options(options)
        return load_predictor(checkpoint, device, options, spatial_dims=2, what="tiling a 2D raster")

    def outputs(self, source: Path, stem: str, folder: Path, options: Mapping[str, Any],
                file: Path | None = None) -> dict[str, Path]:
        from .tiling import companion_path

        classes = Path(file) if file is not None else folder / f"{stem}_classes.tif"
        outs = {"classes": classes, "record": classes.with_suffix(".json")}
        if options.get("probabilities"):
            outs["probabilities"] = companion_path(classes, "probabilities")
        if options.get("uncertainty"):
            outs["uncertainty"] = companion_path(classes, "uncertainty")
        if options.get("vector") is not None:
            outs["vector"] = Path(options["vector"])  # two scenes writing it stop the job before it starts
        return outs

    def run_one(self, source: Path, outputs: Mapping[str, Path], context: RunContext) -> dict[str, Any]:
        from .drift import check_scene
        from .tiling import tile_raster

        predictor, options = context.model, context.options
        # a scene unlike the training data: one warning now, a flag in the record
        drift = check_scene(getattr(predictor, "card", None), source, tile_options(options), context.warn)
        record = tile_raster(source, predictor, outputs["classes"], tile_options(options), progress=context.progress,
                             warn=context.warn, probabilities=outputs.get("probabilities"),
                             uncertainty=outputs.get("uncertainty"))
        _add_vector(record, outputs, predictor.class_map, options)
        return {**record, **drift}

    # -- SplitsInputs (segsuite.core.engines): one scene shared between Ray workers, see .bands --

    def split(self, item: Any, options: Mapping[str, Any], workers: int, requested: int | None) -> Any:
        from .bands import split_scene

        return split_scene(item.source, item.outputs, tile_options(options), workers, requested)

    def run_part(self, part: Any, context: RunContext) -> dict[str, Any]:
        from .bands import run_band
        from .drift import check_scene

        options = tile_options(context.options)
        drift = check_scene(getattr(context.model, "card", None), part.source, options, context.warn) if part.index == 0 else {}
        return {**run_band(part, context.model, options, context.warn), "drift": drift}

    def join(self, item: Any, parts: Sequence[Any], results: Sequence[Mapping[str, Any]],
             context: RunContext) -> dict[str, Any]:
        from .bands import join_bands

        outputs = item.outputs
        record = join_bands(item.source, parts, results, outputs["classes"], tile_options(context.options),
                            outputs.get("probabilities"), outputs.get("uncertainty"))
        _add_vector(record, outputs, results[0]["class_map"], context.options)
        return {**record, **results[0]["drift"]}

    def discard(self, parts: Sequence[Any]) -> None:
        from .bands import discard

        discard(parts)

    def describe(self, record: Mapping[str, Any]) -> str:
        cls = ", ".join(f"{n} {v['pixels']} px" for n, v in record["classes"].items())
        return (f"{record['input']} -> {record['output']} ({record['format']}, {record['seconds']:.1f} s, "
                f"{record['windows']} windows, {record['windows_skipped_nodata']} skipped as nodata): {cls}")

    def report_section(self, records: Sequence[Mapping[str, Any]], class_map: "ClassMap",
                       report_dir: Path) -> "ReportSection":
        from .report import tiling_section

        return tiling_section(records, class_map, report_dir)

    # -- Evaluates: the scenes of a labelled layout, tiled as `segsuite tile` does, scored --

    def evaluate(self, checkpoint: Path, data: Path, output: Path | None, *, device: str = "auto") -> dict[str, Any]:
        """Tile every labelled scene of ``data`` (see :func:`.evaluate.labelled_scenes`) with this
        pipeline and score the class rasters against the labels; metrics go under ``output``."""
        from .evaluate import evaluate_scenes

        return evaluate_scenes(self, checkpoint, data, output, SAMPLE_WINDOWS, device=device)

    def describe_evaluation(self, result: Mapping[str, Any]) -> str:
        from .evaluate import describe_evaluation

        return describe_evaluation(result)

    def add_evaluation(self, section: "ReportSection", result: Mapping[str, Any], output: Path) -> None:
        from .report import add_evaluation

        add_evaluation(section, result, output)
