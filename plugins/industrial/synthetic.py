"""Deterministic synthetic inspection images: textured parts with labelled defects.

Two surfaces: brushed metal (fine streaks along one direction) and woven fabric (a
sinusoidal weave). Defects of three classes are drawn on a share of the parts:
scratches (thin bright or dark straight lines), spots/stains (soft dark blobs) and cracks
(dark jagged polylines). The remaining parts are defect-free with all-zero masks, as on a
real line where most parts are good. Images are 8-bit grey.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

GOOD, SCRATCH, SPOT, CRACK = range(4)


def _texture(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    import cv2

    if rng.random() < 0.5:  # brushed metal: streaks, blurred along the brushing direction
        noise = rng.normal(0, 1, (h, w)).astype(np.float32)
        streaks = cv2.blur(noise, (31, 1))
        base = 140 + 35 * streaks / (streaks.std() + 1e-6) * 0.4
    else:  # woven fabric
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        period = rng.uniform(5, 9)
        weave = np.sin(2 * np.pi * xx / period) * np.sin(2 * np.pi * yy / period)
        base = 120 + 18 * weave
    shade = cv2.resize(rng.normal(0, 1, (4, 4)).astype(np.float32), (w, h), interpolation=cv2.INTER_CUBIC)
    return base + 10 * shade + rng.normal(0, 4, (h, w))


def render_part(rng: np.random.Generator, size: tuple[int, int] = (256, 256), defective: bool | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``(H, W)`` uint8 image and ``(H, W)`` uint8 index mask."""
    import cv2

    h, w = size
    img = _texture(rng, h, w)
    mask = np.zeros((h, w), np.uint8)
    if defective is None:
        defective = rng.random() < 0.6
    if defective:
        for _ in range(int(rng.integers(1, 3))):
            cls = int(rng.integers(1, 4))
            layer = np.zeros((h, w), np.uint8)
            if cls == SCRATCH:
                x0, y0 = rng.uniform(0.1, 0.9, 2) * (w, h)
                ang, length = rng.uniform(0, np.pi), rng.uniform(0.2, 0.5) * min(h, w)
                p1 = (int(x0), int(y0))
                p2 = (int(x0 + length * np.cos(ang)), int(y0 + length * np.sin(ang)))
                cv2.line(layer, p1, p2, 1, thickness=int(rng.integers(2, 4)))
                delta = rng.choice([-1, 1]) * rng.uniform(45, 70)
            elif cls == SPOT:
                c = tuple(int(v) for v in rng.uniform(0.15, 0.85, 2) * (w, h))
                axes = tuple(int(v) for v in rng.uniform(5, 14, 2))
                cv2.ellipse(layer, c, axes, float(rng.uniform(0, 180)), 0, 360, 1, -1)
                delta = -rng.uniform(40, 60)
            else:
                pts = [rng.uniform(0.2, 0.8, 2) * (w, h)]
                ang = rng.uniform(0, 2 * np.pi)
                for _ in range(int(rng.integers(5, 9))):
                    ang += rng.normal(0, 0.6)
                    pts.append(pts[-1] + rng.uniform(6, 14) * np.array([np.cos(ang), np.sin(ang)]))
                cv2.polylines(layer, [np.array(pts, np.int32)], False, 1, thickness=int(rng.integers(2, 4)))
                delta = -rng.uniform(50, 75)
            region = layer > 0
            soft = cv2.GaussianBlur(layer.astype(np.float32), (5, 5), 1.0)
            img = img + delta * soft
            mask[region] = cls
    return np.clip(img, 0, 255).astype(np.uint8), mask


def make_parts(root: str | Path, n: int = 40, size: tuple[int, int] = (256, 256), seed: int = 0,
               good_fraction: float = 0.4) -> Path:
    """``root/images/*.png`` and ``root/masks/*.png``; names start with ``good_`` or ``ng_``."""
    from segsuite.core.data.images import write_image

    root = Path(root)
    rng = np.random.default_rng(seed)
    for i in range(n):
        defective = rng.random() >= good_fraction
        image, mask = render_part(rng, size, defective)
        name = f"{'ng' if mask.any() else 'good'}_{i:03d}.png"
        write_image(root / "images" / name, image)
        write_image(root / "masks" / name, mask)
    return root


def generate(folder: Path, seed: int) -> Path:
    return make_parts(folder, n=12, seed=seed)
