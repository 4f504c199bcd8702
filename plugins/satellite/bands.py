"""One scene shared between workers: bands of window rows, each with a halo of whole windows.

The tiler's window grid is global (:mod:`.tiling`): window rows start at ``ys`` and every
scene row is blended from the windows that cover it, in grid order. Rows
``[ys[j], ys[j + 1])`` are final once window row ``j`` is blended. A band *owns* a run of
window rows ``[own, end)`` and writes the scene rows they finish; it starts blending at the
first window row that still reaches its first owned scene row (``first <= own``: the halo),
so each of its pixels gets exactly the windows, in exactly the order and batches, that the
single-process run gives it. The labels are therefore equal bit for bit, not just close.

Each worker writes its band to hidden temporary GeoTIFFs beside the output
(:func:`segsuite.core.engines.part_path`). The driver then reads them through one VRT and
streams them, in the single-process run's order, through the same writer
(:class:`.output_rasters.OutputRasters`: colour table, class names, tallies, overviews) and
the same COG copy, so the output, its probabilities and uncertainty rasters and its record
are those of one process. ``--uncertainty mcdropout`` is never split: its dropout draws
follow the order of the windows.

When a scene is split (:func:`plan_bands`): with ``--row-bands N``, into ``N`` bands (at most
one per window row); otherwise only when a job has fewer scenes than workers, into one band
per worker, as long as each band owns at least as many window rows as its halo has (so the
halo costs at most half of a band's work).
"""

from __future__ import annotations

import contextlib
import os
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from segsuite.core.engines import part_path
from segsuite.core.errors import InputFileError

from .output_rasters import OutputRasters, class_profile, copy_to_cog, has_cog
from .raster import open_raster
from .tiling import GDAL_CACHE_MB, TileOptions, _blend_windows, _summary, companion_path, window_starts

QUEUED_WRITES = 4
"""Row groups the driver reads ahead of the writer thread (bounds its memory, not the scene's)."""


@dataclass(frozen=True)
class RowBand:
    """One worker's share of a scene: window rows ``[first, end)`` blended, ``[own, end)`` owned,
    scene rows ``[row0, row1)`` written to ``classes`` (and the companion parts)."""

    source: Path
    index: int
    first: int
    own: int
    end: int
    row0: int
    row1: int
    windows: int
    """Windows of the owned rows (the progress the band stands for)."""
    classes: Path
    probabilities: Path | None = None
    uncertainty: Path | None = None

    @property
    def files(self) -> list[Path]:
        return [p for p in (self.classes, self.probabilities, self.uncertainty) if p is not None]


def halo_start(ys: Sequence[int], own: int, window: int) -> int:
    """The first window row that still covers scene row ``ys[own]``."""
    first = own
    while first > 0 and ys[first - 1] + window > ys[own]:
        first -= 1
    return first


def plan_bands(height: int, width: int, options: TileOptions, workers: int,
               requested: int | None) -> list[tuple[int, int, int]] | None:
    """``(first, own, end)`` window rows per band, or ``None`` to tile the scene whole (see the
    module docstring for when a scene is split)."""
    if options.uncertainty == "mcdropout":
        return None
    window = min(options.tile, height)
    ys = window_starts(height, window, options.tile - options.overlap)
    rows = len(ys)
    if requested is not None:
        count = min(requested, rows)
    else:
        halo = max(own - halo_start(ys, own, window) for own in range(rows))
        count = min(workers, rows // (halo + 1))
    if count < 2:
        return None
    edges = [k * rows // count for k in range(count + 1)]  # strictly increasing: count <= rows
    return [(halo_start(ys, own, window), own, end) for own, end in zip(edges, edges[1:])]


def split_scene(source: Path, outputs: Mapping[str, Path], options: TileOptions, workers: int,
                requested: int | None) -> list[RowBand] | None:
    """The bands of ``source`` (see :func:`plan_bands`); ``None`` for a scene to run whole, or one
    whose header cannot be read (the whole run then says what is wrong with it)."""
    import rasterio

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with rasterio.open(source) as src:
                height, width = src.height, src.width
    except (rasterio.errors.RasterioError, OSError):
        return None
    if height == 0 or width == 0:
        return None
    plan = plan_bands(height, width, options, workers, requested)
    if plan is None:
        return None
    window = min(options.tile, height)
    ys = window_starts(height, window, options.tile - options.overlap)
    columns = len(window_starts(width, min(options.tile, width), options.tile - options.overlap))
    pid, classes = os.getpid(), outputs["classes"]
    bands = []
    for k, (first, own, end) in enumerate(plan):
        bands.append(RowBand(
            source=Path(source), index=k, first=first, own=own, end=end,
            row0=0 if own == 0 else ys[own], row1=ys[end] if end < len(ys) else height,
            windows=(end - own) * columns, classes=part_path(classes, pid, k, "band"),
            probabilities=part_path(classes, pid, k, "probabilities") if options.probabilities else None,
            uncertainty=part_path(classes, pid, k, "uncertainty") if options.uncertainty else None))
    return bands


class BandRasters(OutputRasters):
    """:class:`OutputRasters` for one band: scene rows are written ``row0`` rows higher."""

    def __init__(self, *args: Any, row0: int, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.row0 = row0

    def submit(self, labels: Any, ok: Any, probs: Any, unc: Any, window: Any) -> None:
        from rasterio.windows import Window

        super().submit(labels, ok, probs, unc, Window(window.col_off, window.row_off - self.row0, window.width, window.height))


def run_band(band: RowBand, predictor: Any, options: TileOptions, warn: Callable[[str], None]) -> dict[str, Any]:
    """On a worker: blend ``band``'s windows and write its scene rows to its part files. Returns
    what the join needs: the owned windows skipped as nodata, the model's seconds, the bands
    read and the class map."""
    import rasterio
    from rasterio.transform import Affine

    from .tiling import SceneGrid

    started = time.time()  # wall clock: the join reports the scene's time from its first band's start
    with warnings.catch_warnings(), rasterio.Env(GDAL_CACHEMAX=GDAL_CACHE_MB):
        warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)
        with open_raster(band.source) as src:
            # the scene's own warnings (no georeferencing) once, from the first band
            grid = SceneGrid.open(src, band.source, predictor, options, warn if band.index == 0 else (lambda _m: None))
            profile = class_profile(src, predictor.class_map.num_classes)
            profile.update(height=band.row1 - band.row0, transform=src.transform * Affine.translation(0, band.row0))
            with BandRasters(band.classes, band.probabilities, band.uncertainty, profile, predictor.class_map,
                             options.uncertainty, row0=band.row0) as rasters:
                skipped, model_seconds = _blend_windows(grid, predictor, options, rasters, None,
                                                        rows=(band.first, band.own, band.end))
                rasters.finish([])
    return {"skipped": skipped, "model_seconds": model_seconds, "bands": list(grid.bands),
            "class_map": predictor.class_map, "started": started}


def _vrt(parts: Sequence[tuple[Path, int, int]], width: int, height: int, count: int, dtype: str) -> str:
    """A VRT mosaic of same-width parts stacked by rows (``(path, row0, rows)``): the driver's one
    view of the band files."""
    from xml.sax.saxutils import escape

    gdal_type = {"uint8": "Byte", "uint16": "UInt16", "float32": "Float32"}[dtype]
    bands = []
    for b in range(1, count + 1):
        sources = "".join(
            f'<SimpleSource><SourceFilename relativeToVRT="0">{escape(str(path))}</SourceFilename>'
            f'<SourceBand>{b}</SourceBand><SrcRect xOff="0" yOff="0" xSize="{width}" ySize="{rows}"/>'
            f'<DstRect xOff="0" yOff="{row0}" xSize="{width}" ySize="{rows}"/></SimpleSource>'
            for path, row0, rows in parts)
        bands.append(f'<VRTRasterBand dataType="{gdal_type}" band="{b}">{sources}</VRTRasterBand>')
    return f'<VRTDataset rasterXSize="{width}" rasterYSize="{height}">{"".join(bands)}</VRTDataset>'


def join_bands(source: Path, bands: Sequence[RowBand], results: Sequence[Mapping[str, Any]], output: Path,
               options: TileOptions, probabilities: Path | None, uncertainty: Path | None) -> dict[str, Any]:
    """On the driver: the scene's outputs from its bands' parts, and the record
    :func:`.tiling.tile_raster` returns for it (see the module docstring)."""
    import rasterio

    from segsuite.core.io import atomic_path

    t_start = min(float(r["started"]) for r in results)
    class_map = results[0]["class_map"]
    prob_path = probabilities if probabilities is not None else companion_path(output, "probabilities")
    unc_path = uncertainty if uncertainty is not None else companion_path(output, "uncertainty")
    with warnings.catch_warnings(), rasterio.Env(GDAL_CACHEMAX=GDAL_CACHE_MB):
        warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)
        with open_raster(source) as src, contextlib.ExitStack() as stack:
            grid = _Grid.of(src, options, results[0]["bands"])
            skipped = sum(int(r["skipped"]) for r in results)
            if skipped == grid.total_windows:
                raise InputFileError(f"{source}: every pixel is nodata; nothing to segment")
            profile = class_profile(src, class_map.num_classes)
            views = _open_views(stack, bands, grid, profile["dtype"], class_map.num_classes, options)
            tmp_tif = stack.enter_context(atomic_path(output))
            prob_tmp = stack.enter_context(atomic_path(prob_path)) if options.probabilities else None
            unc_tmp = stack.enter_context(atomic_path(unc_path)) if options.uncertainty else None
            with OutputRasters(tmp_tif, prob_tmp, unc_tmp, profile, class_map, options.uncertainty) as rasters:
                _stream(views, grid, rasters)
                will_cog = options.cog and has_cog()
                rasters.finish([] if will_cog else [f for f in (2, 4, 8, 16, 32) if min(grid.height, grid.width) // f >= 256])
            if will_cog:
                copy_to_cog(tmp_tif)
        model_seconds = sum(float(r["model_seconds"]) for r in results)
        summary = _summary(src, source, output, grid, class_map, options, rasters, skipped, "COG" if will_cog else "GTiff",
                           max(time.time() - t_start, 0.0), model_seconds)
    if options.probabilities:
        summary["probabilities"] = str(prob_path)
    if options.uncertainty:
        from .output_rasters import UNCERTAINTY_NODATA

        summary["uncertainty"] = {"method": options.uncertainty, "output": str(unc_path), "nodata": UNCERTAINTY_NODATA,
                                  **rasters.uncertainty_summary()}
    return summary


@dataclass
class _Grid:
    """The parts of :class:`.tiling.SceneGrid` the join needs (no model on the driver)."""

    height: int
    width: int
    bands: list[int]
    ys: list[int]
    chunks: list[tuple[int, int]]
    total_windows: int

    @classmethod
    def of(cls, src: Any, options: TileOptions, bands: list[int]) -> "_Grid":
        H, W = src.height, src.width
        th, tw = min(options.tile, H), min(options.tile, W)
        step = options.tile - options.overlap
        ys, xs = window_starts(H, th, step), window_starts(W, tw, step)
        chunk_w = max(options.chunk, options.tile)
        chunks = [(c0, min(c0 + chunk_w, W)) for c0 in range(0, W, chunk_w)]
        columns = sum(len([x for x in xs if x < c1 and x + tw > c0]) for c0, c1 in chunks)
        return cls(H, W, bands, ys, chunks, len(ys) * columns)


def _open_views(stack: contextlib.ExitStack, bands: Sequence[RowBand], grid: _Grid, dtype: str, classes: int,
                options: TileOptions) -> dict[str, Any]:
    import rasterio

    def view(files: list[Path], count: int, kind: str) -> Any:
        parts = [(f, b.row0, b.row1 - b.row0) for f, b in zip(files, bands, strict=True)]
        return stack.enter_context(rasterio.open(_vrt(parts, grid.width, grid.height, count, kind)))

    views = {"classes": view([b.classes for b in bands], 1, dtype)}
    if options.probabilities:
        views["probabilities"] = view([b.probabilities for b in bands], classes, "uint8")
    if options.uncertainty:
        views["uncertainty"] = view([b.uncertainty for b in bands], 1, "float32")
    return views


def _stream(views: Mapping[str, Any], grid: _Grid, rasters: OutputRasters) -> None:
    """The parts' rows into ``rasters`` in the order one process writes them (column chunk, then
    the rows each window row finishes), so every tally (classes, nodata, uncertainty sums) adds
    up in the same order."""
    from rasterio.windows import Window

    ends = [*grid.ys[1:], grid.height]
    for c0, c1 in grid.chunks:
        done_y = 0
        for k, final_y in enumerate(ends):
            if k % QUEUED_WRITES == QUEUED_WRITES - 1:
                rasters.wait()
            window = Window(c0, done_y, c1 - c0, final_y - done_y)
            labels = views["classes"].read(1, window=window)
            ok = labels != rasters.nodata  # as written: every valid, covered pixel has a class below nodata
            probs = views["probabilities"].read(window=window) if "probabilities" in views else None
            unc = views["uncertainty"].read(1, window=window) if "uncertainty" in views else None
            rasters.submit(labels, ok, probs, unc, window)
            done_y = final_y
        rasters.wait()


def discard(bands: Sequence[RowBand]) -> None:
    """Remove the bands' part files."""
    for band in bands:
        for path in band.files:
            with contextlib.suppress(OSError):
                path.unlink(missing_ok=True)
