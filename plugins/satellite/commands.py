"""The satellite plugin's commands: ``segsuite tile`` and ``segsuite stats``.

``tile`` is a front end to :class:`~segsuite.plugins.satellite.pipeline.TilingPipeline` run
through the core's job executor, so it behaves as ``segsuite run satellite`` does (failures per
scene, ``summary.json``, ``--skip-existing``, its own outputs never taken as inputs) and keeps
the flags it always had. Plugins do not import ``segsuite.cli``; the few lines the CLI's
job helper has (``--report``, the final line, the exit status) are written out here.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated, Optional

import typer

from segsuite.core.engines import ENGINE_HELP

from .pipeline import OPTIONS

HELP = {o.name: o.help for o in OPTIONS}  # `tile` and `segsuite run satellite` say the same


def _debug(ctx: typer.Context) -> bool:
    """``segsuite --debug`` (or SEGSUITE_DEBUG): tracebacks of failed scenes on the terminal too."""
    if os.environ.get("SEGSUITE_DEBUG", "") not in ("", "0"):
        return True
    return bool(ctx.find_root().params.get("debug"))


def tile(
    ctx: typer.Context,
    input: Annotated[str, typer.Argument(help="GeoTIFF scene, or a folder (searched recursively) / glob of scenes")],
    model: Annotated[Optional[Path], typer.Option(help="Checkpoint; the shipped satellite model when omitted")] = None,
    output: Annotated[Optional[Path], typer.Option(help="Output class GeoTIFF for one scene, or a folder (default: INPUT_classes.tif beside each input)")] = None,
    tile_size: Annotated[int, typer.Option("--tile", help=HELP["tile"])] = 512,
    overlap: Annotated[int, typer.Option(help=HELP["overlap"])] = 64,
    batch: Annotated[int, typer.Option(help=HELP["batch"])] = 4,
    bands: Annotated[Optional[str], typer.Option(help=HELP["bands"])] = None,
    nodata: Annotated[Optional[float], typer.Option(help=HELP["nodata"])] = None,
    probabilities: Annotated[bool, typer.Option("--probabilities", help=HELP["probabilities"])] = False,
    uncertainty: Annotated[Optional[str], typer.Option(help=HELP["uncertainty"])] = None,
    cog: Annotated[bool, typer.Option("--cog/--no-cog", help=HELP["cog"])] = True,
    vector: Annotated[Optional[Path], typer.Option(help=HELP["vector"])] = None,
    min_area: Annotated[float, typer.Option(help=HELP["min_area"])] = 0.0,
    simplify: Annotated[float, typer.Option(help=HELP["simplify"])] = 0.0,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N")] = "auto",
    report: Annotated[Optional[Path], typer.Option(help="Also write an HTML report (scene previews, classes, areas) into this folder")] = None,
    skip_existing: Annotated[bool, typer.Option("--skip-existing", help="Skip scenes whose outputs are all there already (resume an interrupted batch)")] = False,
    engine: Annotated[str, typer.Option(help=ENGINE_HELP["engine"])] = "local",
    address: Annotated[Optional[str], typer.Option(help=ENGINE_HELP["address"])] = None,
    workers: Annotated[Optional[int], typer.Option(help=ENGINE_HELP["workers"])] = None,
    gpus_per_worker: Annotated[Optional[float], typer.Option(help=ENGINE_HELP["gpus_per_worker"])] = None,
    row_bands: Annotated[Optional[int], typer.Option(help=ENGINE_HELP["row_bands"])] = None,
) -> None:
    """Segment GeoTIFF scenes window by window into seamless, georeferenced class rasters.

    Streams windows with rasterio (memory does not grow with the scene), blends overlapping
    predictions with a Gaussian so no seam shows, honours nodata (value, mask or alpha band;
    all-nodata windows are skipped), and writes a tiled, compressed GeoTIFF/COG with the
    input's CRS and transform, a colour table and overviews, plus a JSON summary with the
    area of every class. A scene that fails is reported and the others go on (exit status 2);
    summary.json lists every scene. The same as `segsuite run satellite`. With --engine ray the
    scenes run on Ray workers, and a scene can be split into bands of rows between them
    (docs/cluster.md); the output is the same.
    """
    from segsuite.core.engines import EngineSettings, PipelineRecipe, make_engine
    from segsuite.core.errors import SegsuiteError
    from segsuite.core.jobs import Job, JobConsole, expand_inputs, require_path, run_and_report
    from segsuite.core.pipeline import check_options
    from segsuite.core.sample_data import default_checkpoint

    from .pipeline import TilingPipeline, tile_options

    pipeline = TilingPipeline()
    given = {"tile": tile_size, "overlap": overlap, "batch": batch, "bands": bands, "nodata": nodata,
             "probabilities": probabilities, "cog": cog, "uncertainty": uncertainty, "vector": vector,
             "min_area": min_area, "simplify": simplify}
    options = check_options(pipeline.options, given)
    tile_options(options)  # --overlap against --tile, before any input is read
    settings = EngineSettings(kind=engine, address=address, workers=workers,  # type: ignore[arg-type]
                              gpus_per_worker=float(gpus_per_worker or 0.0), row_bands=row_bands)
    if report is not None:
        from segsuite.core.report import check_report_folder

        check_report_folder(report)  # before any input is read
    inputs = expand_inputs(input, pipeline.suffixes)
    if vector is not None and len(inputs) > 1:
        raise SegsuiteError(f"--vector {vector}: polygonise one scene at a time")
    checkpoint = require_path(model or default_checkpoint("satellite"), "checkpoint (--model)", kind="file")
    job = Job(pipeline=pipeline, inputs=inputs, checkpoint=checkpoint, output=output, options=options, device=device,
              skip_existing=skip_existing, command="tile",
              recipe=PipelineRecipe("segsuite.plugins.satellite.pipeline:TilingPipeline"))
    from segsuite.core.checkpoint import card_of

    result = run_and_report(job, report=report, class_map=card_of(checkpoint).classes if report is not None else None,
                            title=f"segsuite tile: {len(inputs)} scene(s)", console=JobConsole(debug=_debug(ctx)),
                            what="tiling", engine=make_engine(settings))
    if result.exit_code:
        raise typer.Exit(result.exit_code)


def stats(
    input: Annotated[Path, typer.Argument(help="GeoTIFF")],
    bands: Annotated[Optional[str], typer.Option(help=HELP["bands"])] = None,
    nodata: Annotated[Optional[float], typer.Option(help=HELP["nodata"])] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output")] = False,
) -> None:
    """Per-band statistics with nodata excluded (count, mean, std, min, max): what a model card's normalisation needs."""
    from .pipeline import parse_bands
    from .raster import band_statistics

    result = band_statistics(input, parse_bands(bands), nodata)
    if as_json:
        typer.echo(json.dumps(result, indent=2))
        return
    typer.echo(f"{input}: {result['valid_pixels']} valid pixels")
    typer.echo(f"{'band':>5}  {'mean':>12}  {'std':>12}  {'min':>12}  {'max':>12}")
    for i, b in enumerate(result["bands"]):
        typer.echo(f"{b:>5}  {result['mean'][i]:>12.4f}  {result['std'][i]:>12.4f}  {result['min'][i]:>12.4f}  {result['max'][i]:>12.4f}")
