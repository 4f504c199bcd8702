"""Streamed, seamless, georeferenced inference over a GeoTIFF of any size.

The window grid is global: windows of ``tile`` pixels every ``tile - overlap`` pixels, the
last one in each direction shifted back to end at the border. Each window's logits are
weighted by the core's Gaussian importance map and summed, so the result is the same as
one sliding-window pass over the whole scene — no seams, whatever the processing order.

Memory stays bounded by the tile size, not the scene size: the scene is processed in
vertical chunks of about ``chunk`` pixels; inside a chunk, window rows go top to bottom
through a rolling buffer (:class:`RollingBuffer`) that holds only the rows a later window
can still touch. Rows are finalised (argmax, nodata restored) and written as soon as no
later window covers them. Windows that cross a chunk boundary are computed for both chunks
(a few percent of extra model time for the wide-scene guarantee). The next row of input is
read in a background thread while the current one is on the model.

The class raster is written as a tiled, compressed GeoTIFF (BigTIFF when needed) with the
input's CRS and transform, a colour table and internal overviews (:class:`OutputRasters`),
then copied to a Cloud-Optimized GeoTIFF when GDAL's COG driver is there (it cannot be
written window by window, hence the copy). Everything is written under temporary names and
renamed at the end.

With ``uncertainty`` a float32 map in [0, 1] (nodata -1) is written beside the class raster
on the same grid, from the same windows: ``entropy`` from the blended logits of each
finished row; ``tta``/``mcdropout`` from a per-window sample spread blended with the same
Gaussian weights (the class raster then comes from the mean logits of those samples).
"""

from __future__ import annotations

import contextlib
import time
import warnings
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from segsuite.core.errors import InputFileError, SegsuiteError

from .output_rasters import UNCERTAINTY_NODATA, OutputRasters, class_profile, copy_to_cog, has_cog
from .raster import area_units, band_mismatch, check_bands, default_bands, has_mask, open_raster, read_error, valid_mask

# GDAL keeps written blocks in its cache (default: 5 % of RAM); a fixed cache keeps peak
# memory independent of the scene size.
GDAL_CACHE_MB = 128
MAX_STRIP = 2048
"""Tallest file block read whole; taller ones (single-strip scenes) are read a window row at a time."""
MIN_TILE, MAX_TILE = 16, 8192
"""Window sides ``--tile`` accepts: the blending buffers grow with the window, not the scene."""


@dataclass(frozen=True)
class TileOptions:
    tile: int = 512
    overlap: int = 64
    batch: int = 4
    bands: tuple[int, ...] | None = None  # 1-based, as GDAL counts
    nodata: float | None = None  # overrides what the file says
    probabilities: bool = False
    cog: bool = True
    chunk: int = 4096
    uncertainty: str | None = None  # entropy, tta or mcdropout: also write <output>_uncertainty.tif

    def __post_init__(self) -> None:
        if not MIN_TILE <= self.tile <= MAX_TILE:
            raise SegsuiteError(f"--tile {self.tile}: must be between {MIN_TILE} and {MAX_TILE} pixels")
        if not 0 <= self.overlap < self.tile:
            raise SegsuiteError(f"--overlap {self.overlap} must be at least 0 and smaller than --tile {self.tile}")
        if self.batch < 1:
            raise SegsuiteError("--batch must be at least 1")
        if self.uncertainty is not None:
            from segsuite.core.uncertainty import check_method

            check_method(self.uncertainty)


def window_starts(size: int, tile: int, step: int) -> list[int]:
    """Window origins along one axis: every ``step`` pixels, the last one ending at the border."""
    if size <= tile:
        return [0]
    starts = list(range(0, size - tile, step))
    starts.append(size - tile)
    return sorted(set(starts))


def companion_path(output: Path, what: str) -> Path:
    """``OUT_probabilities.tif`` / ``OUT_uncertainty.tif``: a raster named after the class raster ``OUT.tif``."""
    return output.with_name(f"{output.stem}_{what}.tif")


def tile_raster(path: str | Path, predictor: Any, output: str | Path, options: TileOptions = TileOptions(), *,
                progress: Callable[[int, int], None] | None = None, warn: Callable[[str], None] | None = None,
                probabilities: str | Path | None = None, uncertainty: str | Path | None = None) -> dict[str, Any]:
    """Segment the GeoTIFF ``path`` window by window into the class raster ``output``.

    Args:
        path: the scene; any size, any band count (``options.bands`` picks the model's bands,
            alpha bands are never model input).
        predictor: a :class:`segsuite.core.infer.Predictor` (its normalisation, class map and
            ``accumulate_on`` device are used).
        output: the class raster to write (uint8, nodata 255; uint16 / 65535 past 254 classes).
        options: window size, overlap, batch, bands, nodata override, extra outputs.
        progress: ``progress(done, total)`` after each row of windows.
        warn: receives problems that do not stop the run (a raster without georeferencing);
            default: :func:`warnings.warn`.
        probabilities, uncertainty: where to write those rasters when ``options`` asks for
            them (default: named after ``output``, see :func:`companion_path`).

    Returns:
        A JSON-able summary: input, output, format (``COG`` or ``GTiff``), size, bands, CRS,
        transform, pixels and area per class, nodata pixels, windows (and how many were
        skipped as all-nodata), timing, and the extra rasters written.

    Raises:
        InputFileError: an unreadable or truncated file, missing bands, a band count the
            model does not take, or a scene that is nodata everywhere. Nothing is left at
            ``output`` then.
    """
    import rasterio

    path, output = Path(path), Path(output)
    prob_path = Path(probabilities) if probabilities is not None else companion_path(output, "probabilities")
    unc_path = Path(uncertainty) if uncertainty is not None else companion_path(output, "uncertainty")
    with warnings.catch_warnings(), rasterio.Env(GDAL_CACHEMAX=GDAL_CACHE_MB):
        # rasterio warns about missing georeferencing on open; we say it once, in our words
        warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)
        return _tile(path, predictor, output, prob_path, unc_path, options, progress,
                     warn or (lambda m: warnings.warn(m, stacklevel=3)))


def _tile(path: Path, predictor: Any, output: Path, prob_path: Path, unc_path: Path, options: TileOptions,
          progress: Callable[[int, int], None] | None, warn: Callable[[str], None]) -> dict[str, Any]:
    """The steps of :func:`tile_raster`: check the scene, blend the windows into the output
    rasters, add overviews, copy to a COG, summarise."""
    from segsuite.core.io import atomic_path
    from segsuite.core.uncertainty import require_dropout, seeded

    t_start = time.perf_counter()
    method = options.uncertainty
    with open_raster(path) as src:
        grid = SceneGrid.open(src, path, predictor, options, warn)
        if method == "mcdropout":
            require_dropout(predictor.model)  # fails here, before any output is opened
        with contextlib.ExitStack() as stack:
            tmp_tif = stack.enter_context(atomic_path(output))
            prob_tmp = stack.enter_context(atomic_path(prob_path)) if options.probabilities else None
            unc_tmp = stack.enter_context(atomic_path(unc_path)) if method else None
            if method == "mcdropout":
                stack.enter_context(seeded(0, predictor.device))  # the same map on a rerun
            profile = class_profile(src, predictor.class_map.num_classes)
            with OutputRasters(tmp_tif, prob_tmp, unc_tmp, profile, predictor.class_map, method) as rasters:
                skipped, model_seconds = _blend_windows(grid, predictor, options, rasters, progress)
                if skipped == grid.total_windows:
                    raise InputFileError(f"{path}: every pixel is nodata; nothing to segment")
                will_cog = options.cog and has_cog()
                # the COG driver computes its own overviews
                rasters.finish([] if will_cog else [f for f in (2, 4, 8, 16, 32) if min(grid.height, grid.width) // f >= 256])
            if will_cog:
                copy_to_cog(tmp_tif)
        seconds = time.perf_counter() - t_start
        summary = _summary(src, path, output, grid, predictor.class_map, options, rasters, skipped,
                           "COG" if will_cog else "GTiff", seconds, model_seconds)
    if options.probabilities:
        summary["probabilities"] = str(prob_path)
    if method:
        summary["uncertainty"] = {"method": method, "output": str(unc_path), "nodata": UNCERTAINTY_NODATA,
                                  **rasters.uncertainty_summary()}
    return summary


# -- the scene and its windows ------------------------------------------------------------


@dataclass
class SceneGrid:
    """An open scene, the bands the model sees, and the global window grid over it."""

    src: Any
    path: Path
    bands: tuple[int, ...]
    nodata: float | None
    use_file_mask: bool
    height: int
    width: int
    window: tuple[int, int]
    step: int
    ys: list[int]
    xs: list[int]
    chunks: list[tuple[int, int]]
    mean: np.ndarray
    std: np.ndarray

    @classmethod
    def open(cls, src: Any, path: Path, predictor: Any, options: TileOptions, warn: Callable[[str], None]) -> "SceneGrid":
        """Check the scene against the model (bands, channels) and lay the windows out."""
        if src.count == 0 or src.width == 0 or src.height == 0:
            raise InputFileError(f"{path}: raster has no bands or no pixels")
        bands = tuple(options.bands or default_bands(src))
        check_bands(src, bands, path)
        expected = predictor.model.in_channels
        if len(bands) != expected:
            raise InputFileError(band_mismatch(src, path, bands, expected, predictor.normalization.get("bands")))
        if src.crs is None and src.transform.is_identity:
            warn(f"{path}: not georeferenced (no CRS, no transform); the output has pixel coordinates only")
        H, W = src.height, src.width
        th, tw = min(options.tile, H), min(options.tile, W)
        step = options.tile - options.overlap
        chunk_w = max(options.chunk, options.tile)
        norm = predictor.normalization
        return cls(src=src, path=path, bands=bands, nodata=options.nodata, use_file_mask=has_mask(src), height=H, width=W,
                   window=(th, tw), step=step, ys=window_starts(H, th, step), xs=window_starts(W, tw, step),
                   chunks=[(c0, min(c0 + chunk_w, W)) for c0 in range(0, W, chunk_w)],
                   mean=np.asarray(norm.get("mean", [0.0] * len(bands)), np.float32).reshape(-1, 1, 1),
                   std=np.asarray(norm.get("std", [1.0] * len(bands)), np.float32).reshape(-1, 1, 1))

    def columns(self, c0: int, c1: int) -> list[int]:
        """Window columns that touch the chunk ``[c0, c1)``."""
        return [x for x in self.xs if x < c1 and x + self.window[1] > c0]

    @property
    def total_windows(self) -> int:
        return len(self.ys) * sum(len(self.columns(c0, c1)) for c0, c1 in self.chunks)

    def read_rows(self, y: int, n: int, rx0: int, rx1: int) -> tuple[np.ndarray, np.ndarray]:
        """Normalised pixels ``(C, n, rx1 - rx0)`` of scene rows ``[y, y + n)`` and their valid mask."""
        import rasterio
        from rasterio.windows import Window

        win = Window(rx0, y, rx1 - rx0, n)
        try:
            data = self.src.read(list(self.bands), window=win, out_dtype="float32")
            valid = valid_mask(self.src, win, data, self.nodata, self.use_file_mask)
        except rasterio.errors.RasterioError as exc:
            raise read_error(self.path, exc, f"at row {y}, column {rx0}") from None
        if any(np.dtype(self.src.dtypes[b - 1]).kind == "f" for b in self.bands):
            valid &= np.isfinite(data).all(axis=0)
        # normalise here, in the reader thread, so it overlaps the model's work
        data -= self.mean
        data /= self.std
        if not valid.all():
            data[:, ~valid] = 0.0  # nodata and NaN pixels sit at the normalised mean
        return data, valid

    def strip_rows(self) -> int:
        """Rows read at a time: whole blocks of the file (at least 128 rows), so that no block is
        decoded twice for the rows two windows share; but window rows when a block is taller than
        :data:`MAX_STRIP` (a scene stored as one strip), so that memory stays bounded by the tile,
        not the scene's height (GDAL's block cache then saves the decoding where it can)."""
        block = max(1, int(self.src.block_shapes[self.bands[0] - 1][0]))
        if block > MAX_STRIP:
            return self.window[0]
        return block * -(-128 // block)


class RowReader:
    """Window rows of ``[rx0, rx1)`` cut from strips of whole blocks, each strip read and
    normalised once (reading window rows directly decodes the blocks they share twice)."""

    def __init__(self, grid: SceneGrid, rx0: int, rx1: int) -> None:
        self.grid, self.rx0, self.rx1 = grid, rx0, rx1
        self.strip = grid.strip_rows()
        self.strips: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    def row(self, y: int) -> tuple[list[np.ndarray], np.ndarray]:
        """The window row starting at scene row ``y``: its pixels as consecutive pieces of rows
        ``(C, rows, rx1 - rx0)`` (views of the strips, see :func:`cut_windows`), and its valid mask."""
        grid, sh = self.grid, self.strip
        y1 = y + grid.window[0]
        k0, k1 = y // sh, (y1 - 1) // sh
        for k in [k for k in self.strips if k < k0]:
            del self.strips[k]
        pieces, masks = [], []
        for k in range(k0, k1 + 1):
            if k not in self.strips:
                self.strips[k] = grid.read_rows(k * sh, min(sh, grid.height - k * sh), self.rx0, self.rx1)
            data, valid = self.strips[k]
            a, b = max(y, k * sh) - k * sh, min(y1, (k + 1) * sh) - k * sh
            pieces.append(data[:, a:b])
            masks.append(valid[a:b])
        return pieces, masks[0] if len(masks) == 1 else np.concatenate(masks, axis=0)


def cut_windows(pieces: list[np.ndarray], xs: list[int], width: int) -> np.ndarray:
    """Windows ``(len(xs), C, rows, width)`` starting at columns ``xs`` of a row given as pieces
    stacked top to bottom, copied once into one batch."""
    c, rows = pieces[0].shape[0], sum(p.shape[1] for p in pieces)
    batch = np.empty((len(xs), c, rows, width), np.float32)
    r = 0
    for piece in pieces:
        h = piece.shape[1]
        for i, x in enumerate(xs):
            batch[i, :, r : r + h] = piece[:, :, x : x + width]
        r += h
    return batch


class RollingBuffer:
    """Blended logits, Gaussian weight sums (and sample spread) of the rows of one chunk that a
    later window can still touch: ``window + step`` rows, whatever the scene's height."""

    def __init__(self, classes: int, rows: int, width: int, device: Any, spread: bool) -> None:
        import torch

        self.rows = rows
        self.logits = torch.zeros((classes, rows, width), device=device)
        self.weights = torch.zeros((rows, width), device=device)
        self.spread = torch.zeros((rows, width), device=device) if spread else None
        self.valid = np.zeros((rows, width), bool)
        self.top = 0  # scene row of buffer row 0
        self.filled = 0  # buffer rows below this one are all zero

    def set_valid(self, y: int, valid: np.ndarray) -> None:
        r = y - self.top
        self.valid[r : r + valid.shape[0]] = valid

    def add(self, y: int, x: int, logits: Any, weight: Any, spread: Any = None) -> None:
        """Add one window's logits (and sample spread), weighted by ``weight``, at scene row ``y``,
        buffer column ``x``."""
        r, (h, w) = y - self.top, weight.shape
        self.logits[:, r : r + h, x : x + w].addcmul_(logits, weight)
        self.weights[r : r + h, x : x + w] += weight
        if self.spread is not None:
            self.spread[r : r + h, x : x + w].addcmul_(spread, weight)
        self.filled = max(self.filled, r + h)

    def take(self, y: int, n: int, c0: int, c1: int) -> tuple[Any, Any, np.ndarray, Any]:
        """Logits, weights, valid mask and spread of scene rows ``[y, y + n)``, buffer columns ``[c0, c1)``."""
        r = y - self.top
        spread = self.spread[r : r + n, c0:c1] if self.spread is not None else None
        return self.logits[:, r : r + n, c0:c1], self.weights[r : r + n, c0:c1], self.valid[r : r + n, c0:c1], spread

    def drop_above(self, y: int) -> None:
        """Forget the rows above scene row ``y`` (written): move the rows that already hold sums
        (the overlap with the next window row, not the whole buffer) to the top."""
        shift = y - self.top
        if shift <= 0:
            return
        keep = max(0, self.filled - shift)
        for rows in ([self.logits[c] for c in range(self.logits.shape[0])] + [self.weights]
                     + ([self.spread] if self.spread is not None else [])):
            if keep:
                moved = rows[shift : shift + keep]
                rows[:keep] = moved.clone() if keep > shift else moved  # the ranges overlap only then
            rows[keep : self.filled] = 0
        kept = self.rows - shift
        self.valid[:kept] = self.valid[shift:].copy()
        self.valid[kept:] = False
        self.filled = keep
        self.top = y


def _blend_windows(grid: SceneGrid, predictor: Any, options: TileOptions, rasters: OutputRasters,
                   progress: Callable[[int, int], None] | None,
                   rows: tuple[int, int, int] | None = None) -> tuple[int, float]:
    """Every window through the model, chunk by chunk and row by row; finished rows go to
    ``rasters``. Returns the windows skipped as all-nodata and the seconds the model was busy
    (on at least one stream).

    The windows go through :meth:`Predictor.map_batches` (on a CPU, two batches at a time in two
    threads, ``options.batch`` windows in flight) while this thread blends the results that
    came back, finishes rows and hands them to the writer thread; the next row is read and
    normalised in a reader thread. The steps reach this thread in order as tagged events.

    ``rows = (first, own, end)`` limits the work to window rows ``[first, end)`` and writes only
    the scene rows that window rows ``[own, end)`` finish (a band of a scene split between
    workers, :mod:`.bands`); the rows ``[first, own)`` are its halo, blended but not written,
    and their skipped windows are counted by the band that owns them."""
    import torch
    from rasterio.windows import Window

    from segsuite.core.infer import importance_map

    th, tw = grid.window
    acc = predictor.accumulate_on
    weight = importance_map((th, tw), "gaussian", 0.125, acc)
    method = options.uncertainty
    spread_method = method in ("tta", "mcdropout")  # sampled per window; entropy comes from the blended logits
    parallel = method != "mcdropout"  # its dropout draws follow the order of the windows
    per_call = predictor.stream_batch(options.batch) if parallel else options.batch
    ys, total = grid.ys, grid.total_windows
    first, own, end = rows or (0, 0, len(ys))
    skipped = 0
    busy: list[tuple[float, float]] = []

    def model(batch: Any) -> Any:
        t0 = time.perf_counter()
        out = predictor.window_uncertainty(batch, method) if spread_method else (predictor.window_logits(batch), None)
        predictor.check_output(out[0])  # NaN or infinite logits stop the scene: no map from them
        busy.append((t0, time.perf_counter()))
        return out

    def events() -> Any:
        """``(tag, batch)`` in processing order: batches of windows, and markers (batch ``None``)
        for the start of a chunk, the valid mask of a window row and the end of a row."""
        nonlocal skipped
        with ThreadPoolExecutor(max_workers=1) as reader:
            for c0, c1 in grid.chunks:
                cxs = grid.columns(c0, c1)
                rx0, rx1 = cxs[0], cxs[-1] + tw
                yield ("chunk", c0, c1, rx0, rx1), None
                rows_of = RowReader(grid, rx0, rx1)
                future = reader.submit(rows_of.row, ys[first])
                for j in range(first, end):
                    pieces, valid = future.result()
                    if j + 1 < end:
                        future = reader.submit(rows_of.row, ys[j + 1])
                    yield ("row", j, valid), None
                    todo = [x for x in cxs if valid[:, x - rx0 : x - rx0 + tw].any()]
                    skipped += (len(cxs) - len(todo)) * int(j >= own)
                    for b0 in range(0, len(todo), per_call):
                        xs = todo[b0 : b0 + per_call]
                        yield ("windows", j, xs), torch.from_numpy(cut_windows(pieces, [x - rx0 for x in xs], tw))
                    yield ("end", j, len(cxs)), None
                yield ("chunk end",), None

    done = 0
    buffer: RollingBuffer | None = None
    c0 = c1 = rx0 = rx1 = done_y = 0
    # events() is closed here too, as an error passes: its reader thread must be done with the
    # scene before the scene is closed (an error raised in map_batches keeps it referenced)
    with contextlib.closing(events()) as items, \
            contextlib.closing(predictor.map_batches(items, model, parallel=parallel)) as results:
        for tag, out in results:
            if tag[0] == "chunk":
                _, c0, c1, rx0, rx1 = tag
                buffer = RollingBuffer(predictor.class_map.num_classes, th + grid.step, rx1 - rx0, acc, spread_method)
                buffer.top = done_y = ys[first]  # rows above are written (or belong to another band)
                continue
            assert buffer is not None
            if tag[0] == "row":
                buffer.set_valid(ys[tag[1]], tag[2])
            elif tag[0] == "windows":
                _, j, xs = tag
                # blocking (a GPU's results on a CPU buffer: see Predictor._sliding)
                logits, spread = (t.to(acc) if t is not None else None for t in out)
                for i, x in enumerate(xs):
                    buffer.add(ys[j], x - rx0, logits[i], weight, spread[i] if spread is not None else None)
            elif tag[0] == "end":
                _, j, count = tag
                done += count
                if progress is not None:
                    progress(done, total)
                final_y = ys[j + 1] if j + 1 < len(ys) else grid.height
                n = final_y - done_y
                if n <= 0:
                    continue
                if j >= own:  # rows of the halo still lack the windows above the band
                    finished = _finish_rows(*buffer.take(done_y, n, c0 - rx0, c1 - rx0), method=method,
                                            probabilities=rasters.probabilities is not None, dtype=rasters.dtype,
                                            nodata=rasters.nodata)
                    # compressing and writing happen in a second thread, in order
                    rasters.submit(*finished, Window(c0, done_y, c1 - c0, n))
                done_y = final_y
                buffer.drop_above(done_y)
            else:
                rasters.wait()  # re-raise any write error here
    return skipped, busy_seconds(busy)


def busy_seconds(intervals: list[tuple[float, float]]) -> float:
    """Length of the union of ``(start, end)`` intervals: the time at least one stream was busy."""
    total, reach = 0.0, float("-inf")
    for t0, t1 in sorted(intervals):
        if t1 > reach:
            total += t1 - max(t0, reach)
            reach = t1
    return total


def _finish_rows(logits: Any, weights: Any, valid: np.ndarray, spread: Any, *, method: str | None, probabilities: bool,
                 dtype: str, nodata: int) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, np.ndarray | None]:
    """Rows no later window touches: class labels (nodata where invalid or uncovered), the valid
    mask, probabilities (uint8 1..255, 0 = nodata) and uncertainty (nodata -1) when asked for."""
    import torch

    from segsuite.core.uncertainty import entropy

    covered = (weights > 0).cpu().numpy()
    labels = class_argmax(logits).to(torch.uint8 if dtype == "uint8" else torch.int32).cpu().numpy().astype(dtype, copy=False)
    ok = valid & covered
    labels[~ok] = nodata
    probs = unc = None
    if probabilities or method == "entropy":
        p_t = (logits / weights.clamp(min=1e-12)).softmax(0)
        if method == "entropy":
            unc = entropy(p_t[None])[0]
        if probabilities:
            probs = np.round(p_t.cpu().numpy() * 254).astype(np.uint8) + 1  # 0 stays nodata
            probs[:, ~ok] = 0
    if spread is not None:
        unc = spread / weights.clamp(min=1e-12)
    if unc is not None:
        unc = unc.cpu().numpy().astype(np.float32)
        unc[~ok] = UNCERTAINTY_NODATA
    return labels, ok, probs, unc


def class_argmax(logits: Any) -> Any:
    """``argmax`` over the class axis of ``(K, H, W)`` (the first class wins a tie, as argmax's).
    ``max(0)`` gives the same indices several times faster than ``argmax(0)`` on the CPU, whose
    reduction along the outer axis of a strided view is slow (measured with torch 2.14)."""
    return logits.max(0).indices


def _summary(src: Any, path: Path, output: Path, grid: SceneGrid, class_map: Any, options: TileOptions,
             rasters: OutputRasters, skipped: int, driver: str, seconds: float, model_seconds: float) -> dict[str, Any]:
    """What :func:`tile_raster` returns (and ``segsuite tile`` stores beside the class raster)."""
    px_area, units, m2 = area_units(src)
    counts, H, W = rasters.counts, grid.height, grid.width
    return {
        "input": str(path), "output": str(output), "format": driver,
        "size": [H, W], "bands": list(grid.bands), "crs": src.crs.to_string() if src.crs else None,
        "transform": list(src.transform)[:6],
        "classes": {
            name: {
                "pixels": int(counts[i]),
                **({"area_map_units2": float(counts[i] * px_area)} if px_area is not None else {}),
                **({"area_m2": float(counts[i] * m2)} if m2 is not None else {}),
            }
            for i, name in enumerate(class_map.names)
        },
        "map_units": units,
        "nodata_pixels": rasters.nodata_pixels,
        "windows": grid.total_windows, "windows_skipped_nodata": skipped,
        "tile": options.tile, "overlap": options.overlap,
        "seconds": round(seconds, 3), "model_seconds": round(model_seconds, 3),
        "megapixels_per_second": round(H * W / 1e6 / seconds, 3) if seconds > 0 else None,
    }
