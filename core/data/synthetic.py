"""Deterministic synthetic 2D data for tests and the demo: coloured shapes on texture.

Each image has a smooth random background, discs (class 1) and boxes (class 2) with
class-typical but varied colours, and noise; a thin unlabelled ring around each shape is
marked with the ignore index, as real annotations often leave boundary pixels out. The
task is easy enough to learn in a minute on a CPU and hard enough that an untrained
network scores poorly.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..classmap import ClassMap

SHAPES = ClassMap(names=("background", "disc", "box"), colors=((30, 30, 30), (230, 80, 60), (60, 120, 230)),
                  ignore_index=255, name="shapes")


def render_shapes(rng: np.random.Generator, size: tuple[int, int] = (96, 128), max_shapes: int = 4,
                  ignore_ring: bool = True) -> tuple[np.ndarray, np.ndarray]:
    h, w = size
    yy, xx = np.mgrid[0:h, 0:w]
    # low-frequency background: a few random cosines
    bg = np.zeros((h, w), np.float64)
    for _ in range(3):
        fy, fx, ph = rng.uniform(0.5, 3, 2).tolist() + [rng.uniform(0, 2 * np.pi)]
        bg += np.cos(2 * np.pi * (fy * yy / h + fx * xx / w) + ph)
    image = np.stack([90 + 20 * bg + rng.normal(0, 5)] * 3, axis=-1)
    mask = np.zeros((h, w), np.int64)
    for _ in range(int(rng.integers(1, max_shapes + 1))):
        cls = int(rng.integers(1, 3))
        cy, cx = rng.uniform(0.15, 0.85) * h, rng.uniform(0.15, 0.85) * w
        r = rng.uniform(0.08, 0.2) * min(h, w)
        if cls == 1:
            inside = (yy - cy) ** 2 + (xx - cx) ** 2 <= r**2
            ring = ((yy - cy) ** 2 + (xx - cx) ** 2 <= (r + 1.5) ** 2) & ~inside
        else:
            inside = (np.abs(yy - cy) <= r) & (np.abs(xx - cx) <= r * 0.8)
            ring = (np.abs(yy - cy) <= r + 1.5) & (np.abs(xx - cx) <= r * 0.8 + 1.5) & ~inside
        base = np.array(SHAPES.colors[cls], np.float64) + rng.normal(0, 20, 3)
        image[inside] = base
        mask[inside] = cls
        if ignore_ring:
            mask[ring & (mask == 0)] = SHAPES.ignore_index
    image += rng.normal(0, 12, image.shape)
    return np.clip(image, 0, 255).astype(np.uint8), mask.astype(np.uint8)


def make_shapes_dataset(root: str | Path, n: int = 24, size: tuple[int, int] = (96, 128), seed: int = 0,
                        prefix: str = "img", ignore_ring: bool = True) -> Path:
    """Write ``root/images/*.png`` and ``root/masks/*.png`` (index masks); returns ``root``."""
    from .images import write_image

    root = Path(root)
    rng = np.random.default_rng(seed)
    for i in range(n):
        image, mask = render_shapes(rng, size, ignore_ring=ignore_ring)
        name = f"{prefix}_{i:03d}.png"
        write_image(root / "images" / name, image)
        write_image(root / "masks" / name, mask)
    return root


def unfamiliar_image(shape: tuple[int, int], channels: int, mean: list[float] | tuple[float, ...],
                     std: list[float] | tuple[float, ...], seed: int = 0) -> np.ndarray:
    """A ``(channels, H, W)`` float32 image unlike any training data, for checks that must hold
    out of distribution (tile invariance): oriented sinusoidal textures at several scales, linear
    gradients across the frame, hard-edged rectangles and Gaussian noise, mixed differently per
    channel. Values are drawn in z-score units and mapped to raw values with the model's
    normalisation ``mean``/``std`` (about mean +- 3 std), clipped at 0 like sensor counts.
    """
    rng = np.random.default_rng(seed)
    h, w = shape
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    out = np.empty((channels, h, w), np.float32)
    for c in range(channels):
        z = np.zeros((h, w), np.float32)
        for _ in range(4):  # textures: random orientation, period 3..60 px
            angle, period = rng.uniform(0, np.pi), rng.uniform(3, 60)
            phase = (np.cos(angle) * xx + np.sin(angle) * yy) * (2 * np.pi / period)
            z += rng.uniform(0.3, 1.0) * np.sin(phase + rng.uniform(0, 2 * np.pi))
        z += rng.uniform(-2, 2) * (xx / max(w - 1, 1)) + rng.uniform(-2, 2) * (yy / max(h - 1, 1))
        for _ in range(6):  # hard edges the texture filters have not seen
            y0, x0 = rng.integers(0, h), rng.integers(0, w)
            z[y0 : y0 + rng.integers(8, max(9, h // 3)), x0 : x0 + rng.integers(8, max(9, w // 3))] += rng.uniform(-2.5, 2.5)
        z += rng.normal(0, rng.uniform(0.1, 0.8), (h, w)).astype(np.float32)
        z = (z - z.mean()) / (z.std() + 1e-6) * 1.5
        out[c] = np.clip(np.clip(z, -3, 3) * float(std[c]) + float(mean[c]), 0, None)
    return out
