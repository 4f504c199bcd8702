"""The satellite plugin's commands: ``segsuite tile`` and ``segsuite stats``."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer


def _parse_bands(text: str | None) -> tuple[int, ...] | None:
    from segsuite.core.errors import SegsuiteError

    if text is None:
        return None
    try:
        bands = tuple(int(b) for b in text.split(","))
    except ValueError:
        raise SegsuiteError(f"--bands {text!r} must be 1-based band numbers like 1,2,3,4") from None
    if not bands or min(bands) < 1:
        raise SegsuiteError(f"--bands {text!r} must be 1-based band numbers like 1,2,3,4")
    return bands


def tile(
    input: Annotated[str, typer.Argument(help="GeoTIFF scene, or a folder / glob of scenes")],
    model: Annotated[Optional[Path], typer.Option(help="Checkpoint; the shipped satellite model when omitted")] = None,
    output: Annotated[Optional[Path], typer.Option(help="Output class GeoTIFF, or a folder for several inputs (default: INPUT_classes.tif beside the input)")] = None,
    tile_size: Annotated[int, typer.Option("--tile", help="Window side in pixels")] = 512,
    overlap: Annotated[int, typer.Option(help="Overlap between neighbouring windows in pixels")] = 64,
    batch: Annotated[int, typer.Option(help="Windows per forward pass")] = 4,
    bands: Annotated[Optional[str], typer.Option(help="1-based input bands for the model, e.g. 4,3,2,8 (default: all but alpha)")] = None,
    nodata: Annotated[Optional[float], typer.Option(help="Treat this value as nodata (default: what the file declares; 0 is never assumed)")] = None,
    probabilities: Annotated[bool, typer.Option("--probabilities", help="Also write per-class probabilities (uint8, 1..255; 0 = nodata)")] = False,
    uncertainty: Annotated[Optional[str], typer.Option(help="Also write OUT_uncertainty.tif (float32 0..1, nodata -1): entropy, tta (4x time) or mcdropout (8x; models with dropout)")] = None,
    cog: Annotated[bool, typer.Option("--cog/--no-cog", help="Write a Cloud-Optimized GeoTIFF when GDAL's COG driver is available")] = True,
    vector: Annotated[Optional[Path], typer.Option(help="Also polygonise the classes into OUT.gpkg or OUT.geojson (one input only)")] = None,
    min_area: Annotated[float, typer.Option(help="With --vector: drop polygons smaller than this (map units²)")] = 0.0,
    simplify: Annotated[float, typer.Option(help="With --vector: simplification tolerance (map units)")] = 0.0,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N")] = "auto",
    report: Annotated[Optional[Path], typer.Option(help="Also write an HTML report (scene previews, classes, areas) into this folder")] = None,
) -> None:
    """Segment a GeoTIFF scene window by window into a seamless, georeferenced class raster.

    Streams windows with rasterio (memory does not grow with the scene), blends overlapping
    predictions with a Gaussian so no seam shows, honours nodata (value, mask or alpha band;
    all-nodata windows are skipped), and writes a tiled, compressed GeoTIFF/COG with the
    input's CRS and transform, a colour table and overviews, plus a JSON summary with the
    area of every class.
    """
    from segsuite.cli.common import expand_inputs
    from segsuite.core.errors import SegsuiteError
    from segsuite.core.infer import Predictor
    from segsuite.core.sample_data import default_checkpoint

    from .tiling import TileOptions

    if report is not None:
        from segsuite.core.report import check_report_folder

        check_report_folder(report)
    inputs = expand_inputs(input, (".tif", ".tiff"))
    options = TileOptions(tile=tile_size, overlap=overlap, batch=batch, bands=_parse_bands(bands), nodata=nodata,
                          probabilities=probabilities, cog=cog, uncertainty=uncertainty)
    ckpt = model or default_checkpoint("satellite")
    predictor = Predictor.from_checkpoint(ckpt, device=device)
    if predictor.spatial_dims != 2:
        raise SegsuiteError(f"{ckpt}: a {predictor.spatial_dims}D model cannot tile a 2D raster")
    if vector is not None and len(inputs) > 1:
        raise SegsuiteError(f"--vector {vector}: polygonise one scene at a time")
    if vector is not None and vector.suffix.lower() not in (".gpkg", ".geojson", ".json"):
        raise SegsuiteError(f"{vector}: --vector must end in .gpkg or .geojson")
    if output is not None and len(inputs) > 1 and output.suffix.lower() in (".tif", ".tiff"):
        raise SegsuiteError(f"{output}: several inputs need an output folder, not a file name")
    summaries = []
    for summary in tile_scenes(inputs, predictor, output, options, vector=vector, min_area=min_area, simplify=simplify):
        cls = ", ".join(f"{n} {v['pixels']} px" for n, v in summary["classes"].items())
        typer.echo(f"{summary['input']} -> {summary['output']} ({summary['format']}, {summary['seconds']:.1f} s, "
                   f"{summary['windows']} windows, {summary['windows_skipped_nodata']} skipped as nodata): {cls}")
        summaries.append(summary)
    if report is not None:
        from segsuite.core.report import write_report

        from .demo import run_report

        section = run_report(summaries, output, predictor.class_map, report)
        typer.echo(f"report: {write_report(report, [section], title=f'segsuite tile: {len(summaries)} scene(s)')}")


def tile_scenes(inputs: list[Path], predictor, output: Path | None, options, *, vector: Path | None = None,
                min_area: float = 0.0, simplify: float = 0.0, output_is_folder: bool = False):
    """Tile each scene to ``<stem>_classes.tif`` (beside it, in the folder ``output``, or to the file
    ``output`` for a single scene unless ``output_is_folder``) plus its JSON summary; yields the summaries."""
    from segsuite.core.errors import SegsuiteError
    from segsuite.core.io import write_json

    for path in inputs:
        if output is None:
            target = path.with_name(path.stem + "_classes.tif")
        elif output_is_folder or len(inputs) > 1 or output.is_dir() or output.suffix == "":
            target = output / (path.stem + "_classes.tif")
        else:
            target = output
        if target.resolve() == path.resolve():
            raise SegsuiteError(f"{target}: refusing to overwrite the input")
        summary = _tile_one(path, predictor, target, options)
        if vector is not None:
            from .vector import polygonize

            summary["vector"] = polygonize(target, vector, predictor.class_map, min_area=min_area, simplify=simplify)
        write_json(target.with_suffix(".json"), summary)
        yield summary


def _tile_one(path, predictor, target, options):
    from .tiling import tile_raster

    def warn(message: str) -> None:
        typer.echo(f"segsuite: warning: {message}", err=True)

    if not sys.stderr.isatty():
        return tile_raster(path, predictor, target, options, warn=warn)
    from rich.progress import Progress

    with Progress(transient=True) as bar:
        task = bar.add_task(f"tiling {path.name}", total=None)
        return tile_raster(path, predictor, target, options, warn=warn,
                           progress=lambda done, total: bar.update(task, completed=done, total=total))


def stats(
    input: Annotated[Path, typer.Argument(help="GeoTIFF")],
    bands: Annotated[Optional[str], typer.Option(help="1-based bands (default: all but alpha)")] = None,
    nodata: Annotated[Optional[float], typer.Option(help="Treat this value as nodata (default: what the file declares)")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output")] = False,
) -> None:
    """Per-band statistics with nodata excluded (count, mean, std, min, max): what a model card's normalisation needs."""
    from .tiling import band_statistics

    result = band_statistics(input, _parse_bands(bands), nodata)
    if as_json:
        typer.echo(json.dumps(result, indent=2))
        return
    typer.echo(f"{input}: {result['valid_pixels']} valid pixels")
    typer.echo(f"{'band':>5}  {'mean':>12}  {'std':>12}  {'min':>12}  {'max':>12}")
    for i, b in enumerate(result["bands"]):
        typer.echo(f"{b:>5}  {result['mean'][i]:>12.4f}  {result['std'][i]:>12.4f}  {result['min'][i]:>12.4f}  {result['max'][i]:>12.4f}")
