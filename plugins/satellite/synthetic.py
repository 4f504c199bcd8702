"""Deterministic synthetic multispectral scenes with labels, written as GeoTIFF pairs.

Four bands (blue, green, red, near-infrared) as uint16 reflectance x 10000, on a
projected CRS (UTM zone 33N, 10 m pixels). The spectra follow what makes real land cover
separable: water is dark in NIR and brighter in blue, vegetation bright in NIR and dark
in red, roofs bright everywhere, asphalt grey and flat, bare background soil brownish. A
ragged band of the scene's edge is nodata (0 in every band, declared in the file), as on
the border of a satellite swath, and labelled with the ignore index.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .classes import LANDCOVER

BACKGROUND, WATER, VEGETATION, BUILDING, ROAD = range(5)
CRS = "EPSG:32633"
PIXEL = 10.0

# mean reflectance x 10000 per class and band (B, G, R, NIR)
SPECTRA = np.array([
    [900, 1100, 1400, 2200],   # bare soil / background
    [700, 600, 350, 150],      # water
    [350, 700, 400, 4200],     # vegetation
    [2300, 2300, 2400, 2600],  # roofs
    [1300, 1300, 1300, 1400],  # asphalt
], dtype=np.float64)


def _smooth(rng: np.random.Generator, shape: tuple[int, int], cells: int) -> np.ndarray:
    import cv2

    h, w = shape
    grid = rng.normal(size=(max(2, h // cells), max(2, w // cells))).astype(np.float32)
    return cv2.resize(grid, (w, h), interpolation=cv2.INTER_CUBIC)


def render_scene(rng: np.random.Generator, size: tuple[int, int] = (256, 256), nodata_border: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """``(4, H, W)`` uint16 image and ``(H, W)`` uint8 labels (255 = nodata)."""
    import cv2

    h, w = size
    labels = np.full((h, w), BACKGROUND, np.uint8)
    veg = _smooth(rng, size, 24) > rng.uniform(0.2, 0.6)
    labels[veg] = VEGETATION
    water = _smooth(rng, size, 48) > rng.uniform(0.9, 1.3)
    labels[water] = WATER
    road_mask = np.zeros((h, w), np.uint8)
    for _ in range(int(rng.integers(1, 4))):
        pts = np.stack([rng.uniform(-0.1, 1.1, 3) * w, rng.uniform(-0.1, 1.1, 3) * h], axis=1).astype(np.int32)
        cv2.polylines(road_mask, [pts], False, 1, thickness=int(rng.integers(3, 7)))
    labels[road_mask > 0] = ROAD
    ys, xs = np.nonzero((road_mask == 0) & (labels != WATER))
    for _ in range(int(rng.integers(8, 25))):
        if len(ys) == 0:
            break
        i = int(rng.integers(len(ys)))
        bh, bw = int(rng.integers(4, 12)), int(rng.integers(4, 12))
        y0, x0 = ys[i], xs[i]
        region = labels[y0 : y0 + bh, x0 : x0 + bw]
        region[(region != ROAD) & (region != WATER)] = BUILDING
    image = SPECTRA[labels].transpose(2, 0, 1)  # (4, H, W)
    image = image * (1 + 0.15 * _smooth(rng, size, 64))[None]  # illumination / soil moisture variation
    image += rng.normal(0, 60, image.shape)
    image = np.clip(image, 1, 10000).astype(np.uint16)
    if nodata_border:
        edge = int(w * rng.uniform(0.05, 0.15))
        wiggle = (edge + 6 * _smooth(rng, (h, 1), 16)[:, 0]).astype(int)
        cols = np.arange(w)[None, :]
        nodata = cols < wiggle[:, None]
        image[:, nodata] = 0
        labels[nodata] = 255
    return image, labels


def write_scene(path: str | Path, image: np.ndarray, *, origin: tuple[float, float] = (500000.0, 4100000.0),
                nodata: float | None = 0, crs: str = CRS, pixel: float = PIXEL, colormap: bool = False) -> Path:
    import rasterio
    from rasterio.transform import from_origin

    from segsuite.core.io import atomic_path

    path = Path(path)
    count, h, w = image.shape
    profile = dict(driver="GTiff", width=w, height=h, count=count, dtype=image.dtype.name, crs=crs,
                   transform=from_origin(origin[0], origin[1], pixel, pixel), nodata=nodata,
                   tiled=True, blockxsize=256, blockysize=256, compress="deflate")
    with atomic_path(path) as tmp:
        with rasterio.open(tmp, "w", **profile) as dst:
            dst.write(image)
            if colormap:
                dst.write_colormap(1, {i: (*c, 255) for i, c in enumerate(LANDCOVER.colors)})
    return path


def make_scenes(root: str | Path, n: int = 4, size: tuple[int, int] = (256, 256), seed: int = 0) -> Path:
    """Write ``root/images/scene_XXX.tif`` and ``root/masks/scene_XXX.tif`` pairs; returns ``root``."""
    root = Path(root)
    rng = np.random.default_rng(seed)
    for i in range(n):
        image, labels = render_scene(rng, size)
        origin = (500000.0 + 20000 * i, 4100000.0)
        write_scene(root / "images" / f"scene_{i:03d}.tif", image, origin=origin, nodata=0)
        write_scene(root / "masks" / f"scene_{i:03d}.tif", labels[None], origin=origin, nodata=255, colormap=True)
    return root


def generate(folder: Path, seed: int) -> Path:
    """The domain's sample-data hook: a few small scenes."""
    return make_scenes(folder, n=4, size=(256, 256), seed=seed)


def write_sample(folder: str | Path, seed: int = 7, size: tuple[int, int] = (384, 512)) -> Path:
    """The committed sample: ``scene.tif`` (4 bands) and ``scene_labels.tif`` in ``folder``."""
    folder = Path(folder)
    image, labels = render_scene(np.random.default_rng(seed), size)
    write_scene(folder / "scene.tif", image, nodata=0)
    write_scene(folder / "scene_labels.tif", labels[None], nodata=255, colormap=True)
    return folder
