"""The rasters :func:`segsuite.plugins.satellite.tiling.tile_raster` writes: the class raster
(colour table, class names, overviews), the optional per-class probabilities and the
uncertainty map, all on the scene's grid, written in a background thread as rows finish;
and the copy to a Cloud-Optimized GeoTIFF.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

NODATA_OUT = 255
UNCERTAINTY_NODATA = -1.0  # outside the map's 0..1 range


def class_profile(src: Any, classes: int) -> dict[str, Any]:
    """The class raster's GDAL profile: the scene's grid, tiled and compressed, BigTIFF when needed."""
    return {
        "driver": "GTiff", "width": src.width, "height": src.height, "count": 1,
        "dtype": "uint8" if classes < 255 else "uint16", "crs": src.crs, "transform": src.transform,
        "nodata": NODATA_OUT if classes < 255 else 65535, "tiled": True, "blockxsize": 512, "blockysize": 512,
        "compress": "deflate", "BIGTIFF": "IF_SAFER",
    }


class OutputRasters:
    """The class raster (with colour table and class names) and the optional probability and
    uncertainty rasters, written band of rows by band of rows in one background thread (in
    order), with the per-class tallies the summary needs. A context manager: on exit the
    writer is drained and every raster closed."""

    def __init__(self, classes: Path, probabilities: Path | None, uncertainty: Path | None, profile: dict[str, Any],
                 class_map: Any, method: str | None) -> None:
        self._paths = (classes, probabilities, uncertainty)
        self.profile = profile
        self.class_map = class_map
        self.method = method
        self.dtype: str = profile["dtype"]
        self.nodata: int = profile["nodata"]
        k = class_map.num_classes
        self.counts = np.zeros(k, np.int64)
        self.nodata_pixels = 0
        self._u_sum, self._u_max, self._u_high = 0.0, 0.0, 0
        self._futures: list[Any] = []
        self.classes: Any = None
        self.probabilities: Any = None
        self.uncertainty: Any = None

    def __enter__(self) -> "OutputRasters":
        import rasterio

        classes, probabilities, uncertainty = self._paths
        self._writer = ThreadPoolExecutor(max_workers=1)
        try:
            self._open(rasterio, classes, probabilities, uncertainty)
        except BaseException:
            self.__exit__()
            raise
        return self

    def _open(self, rasterio: Any, classes: Path, probabilities: Path | None, uncertainty: Path | None) -> None:
        self.classes = rasterio.open(classes, "w", **self.profile)
        self.classes.write_colormap(1, {i: (*c, 255) for i, c in enumerate(self.class_map.colors)})
        self.classes.update_tags(1, **{f"CLASS_{i}": n for i, n in enumerate(self.class_map.names)})
        if probabilities is not None:
            self.probabilities = rasterio.open(probabilities, "w", **{**self.profile, "count": self.class_map.num_classes,
                                                                      "nodata": 0, "dtype": "uint8"})
        if uncertainty is not None:
            self.uncertainty = rasterio.open(uncertainty, "w", **{**self.profile, "dtype": "float32",
                                                                  "nodata": UNCERTAINTY_NODATA, "predictor": 3})
            self.uncertainty.update_tags(1, UNCERTAINTY=self.method, SCALE="0 certain .. 1 most uncertain")

    def __exit__(self, *exc: Any) -> None:
        self._writer.shutdown(wait=True)
        for dataset in (self.uncertainty, self.probabilities, self.classes):
            if dataset is not None and not dataset.closed:
                dataset.close()

    def submit(self, labels: np.ndarray, ok: np.ndarray, probs: np.ndarray | None, unc: np.ndarray | None,
               window: Any) -> None:
        """Queue finished rows for writing (in order, in the writer thread)."""
        self._futures.append(self._writer.submit(self._write, labels, ok, probs, unc, window))

    def wait(self) -> None:
        """Block until every queued write is done; re-raise a write's error."""
        for future in self._futures:
            future.result()
        self._futures.clear()

    def _write(self, labels: np.ndarray, ok: np.ndarray, probs: np.ndarray | None, unc: np.ndarray | None,
               window: Any) -> None:
        k = self.class_map.num_classes
        self.classes.write(labels[None], window=window)
        # pixels that are not ok carry the nodata label, past the classes: one count of all labels
        self.counts += np.bincount(labels.ravel(), minlength=k)[:k]
        self.nodata_pixels += ok.size - int(np.count_nonzero(ok))
        if probs is not None:
            self.probabilities.write(probs, window=window)
        if unc is not None:
            self.uncertainty.write(unc[None], window=window)
            u = unc[ok]
            if u.size:
                self._u_sum += float(u.sum(dtype=np.float64))
                self._u_max = max(self._u_max, float(u.max()))
                self._u_high += int((u > 0.5).sum())

    def finish(self, overview_factors: list[int]) -> None:
        """Add overviews to the class raster (mode resampling keeps classes) and close the extra rasters."""
        from rasterio.enums import Resampling

        self.wait()
        if overview_factors:
            self.classes.build_overviews(overview_factors, Resampling.mode)
            self.classes.update_tags(ns="rio_overview", resampling="mode")
        for dataset in (self.probabilities, self.uncertainty):
            if dataset is not None:
                dataset.close()

    def uncertainty_summary(self) -> dict[str, float | None]:
        """Mean and maximum uncertainty over valid pixels, and the share above 0.5."""
        valid_px = int(self.counts.sum())
        return {
            "mean": round(self._u_sum / valid_px, 5) if valid_px else None,
            "max": round(self._u_max, 5) if valid_px else None,
            "above_0.5": round(self._u_high / valid_px, 5) if valid_px else None,
        }


def has_cog() -> bool:
    """Whether this GDAL has the COG driver."""
    try:
        import rasterio

        with rasterio.Env() as env:
            return "COG" in env.drivers()
    except Exception:
        return False


def copy_to_cog(tif: Path) -> None:
    """Replace the GeoTIFF ``tif`` by a Cloud-Optimized copy (overviews by mode, DEFLATE)."""
    from rasterio.shutil import copy as rio_copy

    cog_tmp = tif.with_name(tif.stem + ".cog.tif")
    try:
        # the overviews (mode) are most of the copy's time: GDAL computes them on as many threads
        # as PyTorch was given (all cores by default, a Ray worker's share on a cluster)
        import torch

        rio_copy(tif, cog_tmp, driver="COG", compress="DEFLATE", overview_resampling="mode", BIGTIFF="IF_SAFER",
                 NUM_THREADS=str(max(1, torch.get_num_threads())))
        os.replace(cog_tmp, tif)
    finally:
        cog_tmp.unlink(missing_ok=True)
