"""Deterministic synthetic street scenes in the Cityscapes layout (images + label ids) and a video.

A camera looks down a straight road: sky above the horizon, buildings and vegetation
along it, a road trapezoid narrowing to the vanishing point with dashed lane markings,
sidewalks on both sides, cars on the road and pedestrians on the sidewalks scaled by
their distance, and a few poles. Labels are written as Cityscapes *label ids* (7 road,
8 sidewalk, 11 building, 17 pole, 21 vegetation, 23 sky, 24 person, 26 car), exactly
as ``gtFine/*_labelIds.png`` stores them, so the loader's remapping is exercised too.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

ROAD, SIDEWALK, BUILDING, POLE, VEGETATION, SKY, PERSON, CAR = 7, 8, 11, 17, 21, 23, 24, 26


def render_street(rng: np.random.Generator, size: tuple[int, int] = (128, 256), shift: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """``(H, W, 3)`` uint8 RGB and ``(H, W)`` uint8 label ids. ``shift`` slides the scene sideways (video)."""
    import cv2

    h, w = size
    img = np.zeros((h, w, 3), np.float32)
    lab = np.zeros((h, w), np.uint8)
    horizon = int(h * rng.uniform(0.35, 0.45))
    vx = w * rng.uniform(0.4, 0.6) + shift
    # sky: vertical gradient
    top, bottom = np.array([70, 130, 200]) + rng.normal(0, 10, 3), np.array([170, 200, 230]) + rng.normal(0, 10, 3)
    t = np.linspace(0, 1, horizon)[:, None, None]
    img[:horizon] = top * (1 - t) + bottom * t
    lab[:horizon] = SKY
    # buildings along the horizon
    x = -int(shift) % 40 - 40
    while x < w:
        bw = int(rng.integers(20, 60))
        bh = int(rng.uniform(0.15, 0.35) * h)
        colour = rng.choice([[150, 140, 130], [120, 100, 90], [170, 160, 150], [100, 100, 110]]) + rng.normal(0, 10, 3)
        y0 = max(0, horizon - bh)
        cv2.rectangle(img, (x, y0), (x + bw, horizon + 4), colour.tolist(), -1)
        cv2.rectangle(lab, (x, y0), (x + bw, horizon + 4), BUILDING, -1)
        for wy in range(y0 + 4, horizon - 4, 8):  # windows
            for wx in range(x + 3, x + bw - 4, 7):
                cv2.rectangle(img, (wx, wy), (wx + 3, wy + 4), (60, 70, 90), -1)
        x += bw + int(rng.integers(0, 15))
    # vegetation clumps in front of buildings
    for _ in range(int(rng.integers(2, 5))):
        c = (int(rng.uniform(0, w)), horizon - int(rng.uniform(0, 0.08) * h))
        axes = (int(rng.uniform(0.05, 0.12) * w), int(rng.uniform(0.06, 0.14) * h))
        green = (np.array([70, 120, 40]) + rng.normal(0, 12, 3)).tolist()
        cv2.ellipse(img, c, axes, 0, 0, 360, green, -1)
        cv2.ellipse(lab, c, axes, 0, 0, 360, VEGETATION, -1)
    # ground: sidewalks then road trapezoid to the vanishing point
    img[horizon:] = np.array([175, 170, 165]) + rng.normal(0, 6, 3)
    lab[horizon:] = SIDEWALK
    half_bottom = w * rng.uniform(0.55, 0.8)
    road = np.array([[vx - 2, horizon], [vx + 2, horizon], [vx + half_bottom, h], [vx - half_bottom, h]], np.int32)
    cv2.fillPoly(img, [road], (np.array([80, 80, 85]) + rng.normal(0, 5, 3)).tolist())
    cv2.fillPoly(lab, [road], ROAD)
    for k in range(6):  # dashed centre line, drawn on the road (still labelled road)
        a, b = (k + 0.2) / 6, (k + 0.6) / 6
        ya, yb = int(horizon + (h - horizon) * a * a), int(horizon + (h - horizon) * b * b)
        cv2.line(img, (int(vx), ya), (int(vx), yb), (235, 235, 235), max(1, int(3 * b)))
    # cars on the road, pedestrians on the sidewalks, poles at the kerb
    for _ in range(int(rng.integers(1, 4))):
        depth = rng.uniform(0.15, 1.0)
        y = int(horizon + (h - horizon) * depth)
        cw, ch = int(0.25 * w * depth) + 6, int(0.12 * h * depth) + 4
        cx = int(vx + rng.uniform(-0.6, 0.6) * half_bottom * depth)
        body = (rng.choice([[200, 30, 30], [30, 60, 160], [220, 220, 220], [40, 40, 40], [200, 180, 30]]) + rng.normal(0, 8, 3)).tolist()
        cv2.rectangle(img, (cx - cw // 2, y - ch), (cx + cw // 2, y), body, -1)
        cv2.rectangle(img, (cx - cw // 3, y - ch), (cx + cw // 3, y - ch // 2), (40, 50, 60), -1)
        cv2.rectangle(lab, (cx - cw // 2, y - ch), (cx + cw // 2, y), CAR, -1)
    for _ in range(int(rng.integers(0, 4))):
        depth = rng.uniform(0.3, 1.0)
        y = int(horizon + (h - horizon) * depth)
        side = rng.choice([-1, 1])
        px = int(vx + side * (half_bottom * depth + rng.uniform(3, 12) * depth + 3))
        pw, ph = max(2, int(6 * depth)), max(5, int(0.3 * h * depth))
        cv2.rectangle(img, (px, y - ph), (px + pw, y), (np.array([150, 60, 60]) + rng.normal(0, 30, 3)).tolist(), -1)
        cv2.rectangle(lab, (px, y - ph), (px + pw, y), PERSON, -1)
    for _ in range(int(rng.integers(1, 3))):
        depth = rng.uniform(0.4, 1.0)
        y = int(horizon + (h - horizon) * depth)
        side = rng.choice([-1, 1])
        px = int(vx + side * (half_bottom * depth + 2))
        cv2.line(img, (px, y), (px, y - int(0.5 * h * depth)), (90, 90, 90), max(1, int(3 * depth)))
        cv2.line(lab, (px, y), (px, y - int(0.5 * h * depth)), POLE, max(1, int(3 * depth)))
    img += rng.normal(0, 5, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8), lab


def make_cityscapes(root: str | Path, n_train: int = 40, n_val: int = 10, size: tuple[int, int] = (128, 256), seed: int = 0) -> Path:
    """``root/leftImg8bit/{train,val}/<city>/`` and ``root/gtFine/...`` with ``*_gtFine_labelIds.png``."""
    from segsuite.core.data.images import write_image

    root = Path(root)
    rng = np.random.default_rng(seed)
    for split, n, city in (("train", n_train, "synthtown"), ("val", n_val, "synthville")):
        for i in range(n):
            image, labels = render_street(rng, size)
            base = f"{city}_{seed:06d}_{i:06d}"
            write_image(root / "leftImg8bit" / split / city / f"{base}_leftImg8bit.png", image)
            write_image(root / "gtFine" / split / city / f"{base}_gtFine_labelIds.png", labels)
    return root


def make_video(path: str | Path, frames: int = 30, size: tuple[int, int] = (128, 256), seed: int = 0, fps: int = 10) -> Path:
    """A short drive: one scene sliding sideways, frame by frame (mp4)."""
    import cv2

    from segsuite.core.io import atomic_path

    path = Path(path)
    with atomic_path(path) as tmp:
        vw = cv2.VideoWriter(str(tmp), cv2.VideoWriter_fourcc(*"mp4v"), fps, (size[1], size[0]))
        for k in range(frames):
            image, _ = render_street(np.random.default_rng(seed), size, shift=1.5 * k)
            vw.write(cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
        vw.release()
    return path


def generate(folder: Path, seed: int) -> Path:
    return make_cityscapes(folder, n_train=12, n_val=4, seed=seed)
