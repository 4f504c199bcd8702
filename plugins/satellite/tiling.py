"""Streamed, seamless, georeferenced inference over a GeoTIFF of any size.

The window grid is global: windows of ``tile`` pixels every ``tile - overlap`` pixels, the
last one in each direction shifted back to end at the border. Each window's logits are
weighted by the core's Gaussian importance map and summed, so the result is the same as
one sliding-window pass over the whole scene — no seams, whatever the processing order.

Memory stays bounded by the tile size, not the scene size: the scene is processed in
vertical chunks of about ``chunk`` pixels; inside a chunk, window rows go top to bottom
through a rolling buffer that holds only the rows a later window can still touch. Rows
are finalised (argmax, nodata restored) and written as soon as no later window covers
them. Windows that cross a chunk boundary are computed for both chunks (a few percent of
extra model time for the wide-scene guarantee). The next row of input is read in a
background thread while the current one is on the model.

The class raster is written as a tiled, compressed GeoTIFF (BigTIFF when needed) with the
input's CRS and transform, a colour table and internal overviews, then copied to a
Cloud-Optimized GeoTIFF when GDAL's COG driver is there (it cannot be written window by
window, hence the copy). Everything is written under temporary names and renamed at the end.

With ``uncertainty`` a float32 map in [0, 1] (nodata -1) is written beside the class raster
on the same grid, from the same windows: ``entropy`` from the blended logits of each
finished row; ``tta``/``mcdropout`` from a per-window sample spread blended with the same
Gaussian weights (the class raster then comes from the mean logits of those samples).
"""

from __future__ import annotations

import contextlib
import os
import time
import warnings
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from segsuite.core.errors import InputFileError, SegsuiteError

NODATA_OUT = 255
UNCERTAINTY_NODATA = -1.0  # outside the map's 0..1 range
# GDAL keeps written blocks in its cache (default: 5 % of RAM); a fixed cache keeps peak
# memory independent of the scene size.
GDAL_CACHE_MB = 128


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
        if self.tile < 16:
            raise SegsuiteError(f"--tile {self.tile} is too small (at least 16 pixels)")
        if not 0 <= self.overlap < self.tile:
            raise SegsuiteError(f"--overlap {self.overlap} must be at least 0 and smaller than --tile {self.tile}")
        if self.batch < 1:
            raise SegsuiteError("--batch must be at least 1")
        if self.uncertainty is not None:
            from segsuite.core.uncertainty import check_method

            check_method(self.uncertainty)


def window_starts(size: int, tile: int, step: int) -> list[int]:
    if size <= tile:
        return [0]
    starts = list(range(0, size - tile, step))
    starts.append(size - tile)
    return sorted(set(starts))


def _open(path: Path):
    import rasterio
    from rasterio.errors import RasterioIOError

    if not path.exists():
        raise InputFileError(f"{path}: file not found")
    try:
        return rasterio.open(path)
    except RasterioIOError as exc:
        raise InputFileError(f"{path}: not a readable raster ({str(exc).splitlines()[0]})") from None


def default_bands(src: Any) -> tuple[int, ...]:
    from rasterio.enums import ColorInterp

    return tuple(i + 1 for i, ci in enumerate(src.colorinterp) if ci != ColorInterp.alpha) or (1,)


def _area_units(src: Any) -> tuple[float | None, str, float | None]:
    """Area of one pixel in map units², the units' name, and in m² when the CRS is projected."""
    t = src.transform
    if t.is_identity and src.crs is None:
        return None, "pixel", None
    a = abs(t.a * t.e - t.b * t.d)
    if src.crs is not None and src.crs.is_projected:
        factor = src.crs.linear_units_factor[1] if hasattr(src.crs, "linear_units_factor") else 1.0
        return a, src.crs.linear_units or "unit", a * factor * factor
    return a, "degree" if src.crs is not None and src.crs.is_geographic else "unit", None


def tile_raster(path: str | Path, predictor: Any, output: str | Path, options: TileOptions = TileOptions(), *,
                progress: Callable[[int, int], None] | None = None, warn: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Segment ``path`` with ``predictor`` (a core Predictor) into the class raster ``output``."""
    import rasterio
    import torch
    from rasterio.enums import Resampling
    from rasterio.windows import Window

    from segsuite.core.infer import importance_map
    from segsuite.core.io import atomic_path

    path, output = Path(path), Path(output)
    with warnings.catch_warnings(), rasterio.Env(GDAL_CACHEMAX=GDAL_CACHE_MB):
        # rasterio warns about missing georeferencing on open; we say it once, in our words
        warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)
        return _tile(path, predictor, output, options, progress, warn)


def _tile(path: Path, predictor: Any, output: Path, options: TileOptions, progress: Any, warn: Any) -> dict[str, Any]:
    import rasterio
    import torch
    from rasterio.enums import Resampling
    from rasterio.windows import Window

    from segsuite.core.infer import importance_map
    from segsuite.core.io import atomic_path
    from segsuite.core.uncertainty import entropy, require_dropout, seeded

    t_start = time.perf_counter()
    warn = warn or (lambda m: warnings.warn(m, stacklevel=2))
    class_map = predictor.class_map
    k = class_map.num_classes
    src = _open(path)
    with src:
        if src.count == 0 or src.width == 0 or src.height == 0:
            raise InputFileError(f"{path}: raster has no bands or no pixels")
        bands = options.bands or default_bands(src)
        bad = [b for b in bands if not 1 <= b <= src.count]
        if bad:
            raise InputFileError(f"{path}: band(s) {bad} do not exist; the raster has bands 1..{src.count}")
        expected = predictor.model.in_channels
        if len(bands) != expected:
            names = predictor.normalization.get("bands")
            hint = f" ({', '.join(names)})" if names else ""
            raise InputFileError(
                f"{path}: the model expects {expected} band(s){hint} but {len(bands)} are selected from this raster's "
                f"{src.count}; choose them with --bands, e.g. --bands {','.join(str(i) for i in range(1, expected + 1))}"
            )
        if src.crs is None and src.transform.is_identity:
            warn(f"{path}: not georeferenced (no CRS, no transform); the output has pixel coordinates only")
        nodata_value = options.nodata
        use_file_mask = has_mask(src)
        H, W = src.height, src.width
        th, tw = min(options.tile, H), min(options.tile, W)
        step = options.tile - options.overlap
        ys = window_starts(H, th, step)
        xs = window_starts(W, tw, step)
        chunk_w = max(options.chunk, options.tile)
        chunks = [(c0, min(c0 + chunk_w, W)) for c0 in range(0, W, chunk_w)]
        weight_map = importance_map((th, tw), "gaussian", 0.125, predictor.device)
        weight_acc = weight_map.to(predictor.accumulate_on)
        norm = predictor.normalization
        mean = np.asarray(norm.get("mean", [0.0] * len(bands)), np.float32).reshape(-1, 1, 1)
        std = np.asarray(norm.get("std", [1.0] * len(bands)), np.float32).reshape(-1, 1, 1)
        out_dtype = "uint8" if k < 255 else "uint16"
        nodata_out = NODATA_OUT if k < 255 else 65535
        profile = {
            "driver": "GTiff", "width": W, "height": H, "count": 1, "dtype": out_dtype, "crs": src.crs,
            "transform": src.transform, "nodata": nodata_out, "tiled": True, "blockxsize": 512, "blockysize": 512,
            "compress": "deflate", "BIGTIFF": "IF_SAFER",
        }
        total_windows = len(ys) * sum(len([x for x in xs if x < c1 and x + tw > c0]) for c0, c1 in chunks)
        done = skipped = 0
        model_seconds = 0.0

        def read_row(y: int, rx0: int, rx1: int) -> tuple[np.ndarray, np.ndarray]:
            win = Window(rx0, y, rx1 - rx0, th)
            try:
                data = src.read(list(bands), window=win, out_dtype="float32")
                valid = valid_mask(src, win, data, nodata_value, use_file_mask)
            except rasterio.errors.RasterioError as exc:
                raise InputFileError(f"{path}: cannot read pixels at row {y}, column {rx0} ({str(exc).splitlines()[0]}); "
                                     "the file is truncated or corrupt") from None
            valid &= np.isfinite(data).all(axis=0)
            # normalise here, in the reader thread, so it overlaps the model's work
            data -= mean
            data /= std
            data[:, ~valid] = 0.0  # nodata and NaN pixels sit at the normalised mean
            return data, valid

        prob_path = output.with_name(output.stem + "_probabilities.tif")
        method = options.uncertainty
        spread_method = method in ("tta", "mcdropout")  # sampled per window; entropy comes from the blended logits
        unc_path = output.with_name(output.stem + "_uncertainty.tif")
        if method == "mcdropout":
            require_dropout(predictor.model)  # fails here, before any output is opened
        with contextlib.ExitStack() as stack:
            tmp_tif = stack.enter_context(atomic_path(output))
            prob_tmp = stack.enter_context(atomic_path(prob_path)) if options.probabilities else None
            unc_tmp = stack.enter_context(atomic_path(unc_path)) if method else None
            if method == "mcdropout":
                stack.enter_context(seeded(0, predictor.device))  # the same map on a rerun
            with rasterio.open(tmp_tif, "w", **profile) as dst, ThreadPoolExecutor(max_workers=1) as pool, \
                    ThreadPoolExecutor(max_workers=1) as writer:
                writes: list[Any] = []
                tally = {"counts": np.zeros(k, np.int64), "nodata": 0, "u_sum": 0.0, "u_max": 0.0, "u_high": 0}

                def write_rows(labels: np.ndarray, ok: np.ndarray, probs: np.ndarray | None, unc: np.ndarray | None,
                               window: Any) -> None:
                    dst.write(labels[None], window=window)
                    tally["counts"] += np.bincount(labels[ok].ravel().astype(np.int64), minlength=k)[:k]
                    tally["nodata"] += int((~ok).sum())
                    if probs is not None:
                        pdst.write(probs, window=window)
                    if unc is not None:
                        udst.write(unc[None], window=window)
                        u = unc[ok]
                        if u.size:
                            tally["u_sum"] += float(u.sum(dtype=np.float64))
                            tally["u_max"] = max(tally["u_max"], float(u.max()))
                            tally["u_high"] += int((u > 0.5).sum())

                dst.write_colormap(1, {i: (*c, 255) for i, c in enumerate(class_map.colors)})
                dst.update_tags(1, **{f"CLASS_{i}": n for i, n in enumerate(class_map.names)})
                pdst = None
                if prob_tmp is not None:
                    pdst = rasterio.open(prob_tmp, "w", **{**profile, "count": k, "nodata": 0, "dtype": "uint8"})
                udst = None
                if unc_tmp is not None:
                    udst = rasterio.open(unc_tmp, "w", **{**profile, "dtype": "float32", "nodata": UNCERTAINTY_NODATA,
                                                          "predictor": 3})
                    udst.update_tags(1, UNCERTAINTY=method, SCALE="0 certain .. 1 most uncertain")
                for c0, c1 in chunks:
                    cxs = [x for x in xs if x < c1 and x + tw > c0]
                    rx0, rx1 = cxs[0], cxs[-1] + tw
                    rw = rx1 - rx0
                    buf_h = th + step
                    acc = torch.zeros((k, buf_h, rw), device=predictor.accumulate_on)
                    wsum = torch.zeros((buf_h, rw), device=predictor.accumulate_on)
                    uacc = torch.zeros((buf_h, rw), device=predictor.accumulate_on) if spread_method else None
                    vmask = np.zeros((buf_h, rw), bool)
                    buf_y0 = 0  # global row of buffer row 0
                    done_y = 0  # rows above are written
                    future = pool.submit(read_row, ys[0], rx0, rx1)
                    for j, y in enumerate(ys):
                        data, valid = future.result()
                        if j + 1 < len(ys):
                            future = pool.submit(read_row, ys[j + 1], rx0, rx1)
                        off = y - buf_y0
                        vmask[off : off + th] = valid
                        todo = []
                        for x in cxs:
                            v = valid[:, x - rx0 : x - rx0 + tw]
                            if not v.any():
                                skipped += 1
                                continue
                            todo.append((x, data[:, :, x - rx0 : x - rx0 + tw]))
                        for b0 in range(0, len(todo), options.batch):
                            part = todo[b0 : b0 + options.batch]
                            batch = torch.from_numpy(np.stack([w for _, w in part]))
                            t0 = time.perf_counter()
                            if spread_method:
                                logits, spread = predictor.window_uncertainty(batch, method)
                                logits = logits * weight_map
                                spread = (spread * weight_map).to(predictor.accumulate_on)
                            else:
                                logits = predictor.window_logits(batch) * weight_map
                            logits = logits.to(predictor.accumulate_on)
                            model_seconds += time.perf_counter() - t0
                            for i, ((x, _), lg) in enumerate(zip(part, logits)):
                                acc[:, off : off + th, x - rx0 : x - rx0 + tw] += lg
                                wsum[off : off + th, x - rx0 : x - rx0 + tw] += weight_acc
                                if uacc is not None:
                                    uacc[off : off + th, x - rx0 : x - rx0 + tw] += spread[i]
                        done += len(cxs)
                        if progress is not None:
                            progress(done, total_windows)
                        final_y = ys[j + 1] if j + 1 < len(ys) else H
                        n = final_y - done_y
                        if n <= 0:
                            continue
                        r0 = done_y - buf_y0
                        ws = wsum[r0 : r0 + n, c0 - rx0 : c1 - rx0]
                        lg = acc[:, r0 : r0 + n, c0 - rx0 : c1 - rx0]
                        covered = (ws > 0).cpu().numpy()
                        labels = class_argmax(lg).cpu().numpy().astype(out_dtype)
                        ok = vmask[r0 : r0 + n, c0 - rx0 : c1 - rx0] & covered
                        labels[~ok] = nodata_out
                        probs = unc = None
                        if pdst is not None or method == "entropy":
                            p_t = (lg / ws.clamp(min=1e-12)).softmax(0)
                            if method == "entropy":
                                unc = entropy(p_t[None])[0]
                            if pdst is not None:
                                probs = np.round(p_t.cpu().numpy() * 254).astype(np.uint8) + 1  # 0 stays nodata
                                probs[:, ~ok] = 0
                        if uacc is not None:
                            unc = uacc[r0 : r0 + n, c0 - rx0 : c1 - rx0] / ws.clamp(min=1e-12)
                        if unc is not None:
                            unc = unc.cpu().numpy().astype(np.float32)
                            unc[~ok] = UNCERTAINTY_NODATA
                        # compressing and writing happen in a second thread, in order
                        writes.append(writer.submit(write_rows, labels, ok, probs, unc, Window(c0, done_y, c1 - c0, n)))
                        done_y = final_y
                        # drop finished rows from the rolling buffer
                        shift = done_y - buf_y0
                        if shift > 0:
                            keep = buf_h - shift
                            acc[:, :keep] = acc[:, shift:].clone()
                            acc[:, keep:] = 0
                            wsum[:keep] = wsum[shift:].clone()
                            wsum[keep:] = 0
                            if uacc is not None:
                                uacc[:keep] = uacc[shift:].clone()
                                uacc[keep:] = 0
                            vmask[:keep] = vmask[shift:].copy()
                            vmask[keep:] = False
                            buf_y0 = done_y
                    for w in writes:
                        w.result()  # re-raise any write error here
                    counts, nodata_pixels = tally["counts"], tally["nodata"]
                if skipped == total_windows:
                    raise InputFileError(f"{path}: every pixel is nodata; nothing to segment")
                factors = [f for f in (2, 4, 8, 16, 32) if min(H, W) // f >= 256]
                will_cog = options.cog and _has_cog()
                if factors and not will_cog:  # the COG driver computes its own overviews
                    dst.build_overviews(factors, Resampling.mode)
                    dst.update_tags(ns="rio_overview", resampling="mode")
                if pdst is not None:
                    pdst.close()
                if udst is not None:
                    udst.close()
            final_driver = "GTiff"
            if will_cog:
                from rasterio.shutil import copy as rio_copy

                cog_tmp = tmp_tif.with_name(tmp_tif.stem + ".cog.tif")
                try:
                    rio_copy(tmp_tif, cog_tmp, driver="COG", compress="DEFLATE", overview_resampling="mode",
                             BIGTIFF="IF_SAFER")
                    os.replace(cog_tmp, tmp_tif)
                finally:
                    cog_tmp.unlink(missing_ok=True)
                final_driver = "COG"
        seconds = time.perf_counter() - t_start
        px_area, units, m2 = _area_units(src)
        summary: dict[str, Any] = {
            "input": str(path), "output": str(output), "format": final_driver,
            "size": [H, W], "bands": list(bands), "crs": src.crs.to_string() if src.crs else None,
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
            "nodata_pixels": nodata_pixels,
            "windows": total_windows, "windows_skipped_nodata": skipped,
            "tile": options.tile, "overlap": options.overlap,
            "seconds": round(seconds, 3), "model_seconds": round(model_seconds, 3),
            "megapixels_per_second": round(H * W / 1e6 / seconds, 3) if seconds > 0 else None,
        }
        if options.probabilities:
            summary["probabilities"] = str(prob_path)
        if method:
            valid_px = int(counts.sum())
            summary["uncertainty"] = {
                "method": method, "output": str(unc_path), "nodata": UNCERTAINTY_NODATA,
                "mean": round(tally["u_sum"] / valid_px, 5) if valid_px else None,
                "max": round(tally["u_max"], 5) if valid_px else None,
                "above_0.5": round(tally["u_high"] / valid_px, 5) if valid_px else None,
            }
        return summary


def class_argmax(logits: Any) -> Any:
    """``argmax`` over the class axis of ``(K, H, W)`` with element-wise comparisons: torch's
    reduction along the outer axis of a strided view is several times slower on the CPU."""
    import torch

    best = logits[0].clone()
    index = torch.zeros(best.shape, dtype=torch.uint8 if logits.shape[0] < 256 else torch.int16, device=logits.device)
    for c in range(1, logits.shape[0]):
        better = logits[c] > best
        best = torch.where(better, logits[c], best)
        index[better] = c
    return index


def has_mask(src: Any) -> bool:
    """Whether the file itself marks invalid pixels (nodata value, internal mask or alpha)."""
    from rasterio.enums import ColorInterp, MaskFlags

    return (src.nodata is not None or any(ci == ColorInterp.alpha for ci in src.colorinterp)
            or any(m != MaskFlags.all_valid for flags in src.mask_flag_enums for m in flags))


def valid_mask(src: Any, window: Any, data: np.ndarray, nodata: float | None, use_file_mask: bool) -> np.ndarray:
    """Valid pixels of ``data`` (read from ``window``): a user's ``--nodata`` value wins; otherwise
    GDAL's dataset mask plus any alpha band (GDAL itself honours alpha only as the last of 2 or 4 bands)."""
    from rasterio.enums import ColorInterp

    if nodata is not None:
        return ~np.all(data == np.float32(nodata), axis=0)
    if not use_file_mask:
        return np.ones(data.shape[1:], bool)
    valid = src.dataset_mask(window=window) > 0
    for i, ci in enumerate(src.colorinterp):
        if ci == ColorInterp.alpha:
            valid &= src.read(i + 1, window=window) > 0
    return valid


def _has_cog() -> bool:
    try:
        import rasterio

        with rasterio.Env() as env:
            return "COG" in env.drivers()
    except Exception:
        return False


def band_statistics(path: str | Path, bands: Sequence[int] | None = None, nodata: float | None = None) -> dict[str, Any]:
    """Per-band count, mean, std, min and max over valid pixels, streamed block by block."""
    src = _open(Path(path))
    with src:
        bands = list(bands or default_bands(src))
        bad = [b for b in bands if not 1 <= b <= src.count]
        if bad:
            raise InputFileError(f"{path}: band(s) {bad} do not exist; the raster has bands 1..{src.count}")
        use_mask = has_mask(src)
        n = np.zeros(len(bands))
        s = np.zeros(len(bands))
        s2 = np.zeros(len(bands))
        lo = np.full(len(bands), np.inf)
        hi = np.full(len(bands), -np.inf)
        for _, win in src.block_windows(1):
            data = src.read(bands, window=win, out_dtype="float64")
            valid = valid_mask(src, win, data, nodata, use_mask) & np.isfinite(data).all(axis=0)
            v = data[:, valid]
            if v.size == 0:
                continue
            # shift by the first block's mean would be more stable; float64 sums suffice for imagery
            n += v.shape[1]
            s += v.sum(1)
            s2 += (v**2).sum(1)
            lo = np.minimum(lo, v.min(1))
            hi = np.maximum(hi, v.max(1))
        if not n.any():
            raise InputFileError(f"{path}: every pixel is nodata; nothing to compute")
        mean = s / n
        std = np.sqrt(np.maximum(s2 / n - mean**2, 0))
        return {
            "input": str(path), "bands": bands, "valid_pixels": int(n[0]),
            "mean": mean.tolist(), "std": std.tolist(), "min": lo.tolist(), "max": hi.tolist(),
            "normalization": {"kind": "zscore", "mean": mean.tolist(), "std": (std + 1e-6).tolist(), "bands": [f"band {b}" for b in bands]},
        }


