"""Street-scene class maps: Cityscapes (34 label ids -> 19 train ids) and CamVid (11 classes)."""

from __future__ import annotations

from segsuite.core.classmap import ClassMap

# (label id, name, train id, category, colour) as published with the Cityscapes dataset.
CITYSCAPES_LABELS: tuple[tuple[int, str, int, str, tuple[int, int, int]], ...] = (
    (0, "unlabeled", 255, "void", (0, 0, 0)),
    (1, "ego vehicle", 255, "void", (0, 0, 0)),
    (2, "rectification border", 255, "void", (0, 0, 0)),
    (3, "out of roi", 255, "void", (0, 0, 0)),
    (4, "static", 255, "void", (0, 0, 0)),
    (5, "dynamic", 255, "void", (111, 74, 0)),
    (6, "ground", 255, "void", (81, 0, 81)),
    (7, "road", 0, "flat", (128, 64, 128)),
    (8, "sidewalk", 1, "flat", (244, 35, 232)),
    (9, "parking", 255, "flat", (250, 170, 160)),
    (10, "rail track", 255, "flat", (230, 150, 140)),
    (11, "building", 2, "construction", (70, 70, 70)),
    (12, "wall", 3, "construction", (102, 102, 156)),
    (13, "fence", 4, "construction", (190, 153, 153)),
    (14, "guard rail", 255, "construction", (180, 165, 180)),
    (15, "bridge", 255, "construction", (150, 100, 100)),
    (16, "tunnel", 255, "construction", (150, 120, 90)),
    (17, "pole", 5, "object", (153, 153, 153)),
    (18, "polegroup", 255, "object", (153, 153, 153)),
    (19, "traffic light", 6, "object", (250, 170, 30)),
    (20, "traffic sign", 7, "object", (220, 220, 0)),
    (21, "vegetation", 8, "nature", (107, 142, 35)),
    (22, "terrain", 9, "nature", (152, 251, 152)),
    (23, "sky", 10, "sky", (70, 130, 180)),
    (24, "person", 11, "human", (220, 20, 60)),
    (25, "rider", 12, "human", (255, 0, 0)),
    (26, "car", 13, "vehicle", (0, 0, 142)),
    (27, "truck", 14, "vehicle", (0, 0, 70)),
    (28, "bus", 15, "vehicle", (0, 60, 100)),
    (29, "caravan", 255, "vehicle", (0, 0, 90)),
    (30, "trailer", 255, "vehicle", (0, 0, 110)),
    (31, "train", 16, "vehicle", (0, 80, 100)),
    (32, "motorcycle", 17, "vehicle", (0, 0, 230)),
    (33, "bicycle", 18, "vehicle", (119, 11, 32)),
)

CITYSCAPES = ClassMap.from_table(
    [(lid, name, tid, color) for lid, name, tid, _cat, color in CITYSCAPES_LABELS],
    ignore_index=255,
    name="cityscapes",
)

# Train-id category of each Cityscapes class, for category IoU.
CITYSCAPES_CATEGORIES: dict[str, str] = {
    name: cat for _lid, name, tid, cat, _c in CITYSCAPES_LABELS if tid != 255
}

# Classes whose instances are countable objects ("things") rather than regions ("stuff").
CITYSCAPES_THINGS = ("person", "rider", "car", "truck", "bus", "train", "motorcycle", "bicycle")

# CamVid in the SegNet release: 11 classes stored as 0..10, 11 = void.
CAMVID = ClassMap(
    names=("sky", "building", "pole", "road", "pavement", "tree", "sign symbol", "fence", "car", "pedestrian", "bicyclist"),
    colors=(
        (128, 128, 128), (128, 0, 0), (192, 192, 128), (128, 64, 128), (60, 40, 222), (128, 128, 0),
        (192, 128, 128), (64, 64, 128), (64, 0, 128), (64, 64, 0), (0, 128, 192),
    ),
    ignore_index=255,
    raw_ids={**{i: i for i in range(11)}, 11: 255},
    name="camvid",
)
