"""Defect class maps for visual inspection."""

from __future__ import annotations

from segsuite.core.classmap import ClassMap

# The default: the three defect types the shipped model detects on textured parts.
SURFACE = ClassMap(
    names=("good", "scratch", "spot", "crack"),
    colors=((0, 0, 0), (255, 210, 0), (255, 60, 200), (255, 40, 40)),
    ignore_index=255,
    name="surface",
)

# One defect class: the MVTec AD / KolektorSDD convention (mask 0 = good, >0 = defect).
DEFECT = ClassMap(names=("good", "defect"), colors=((0, 0, 0), (255, 40, 40)), ignore_index=255,
                  raw_ids={0: 0, **{v: 1 for v in range(1, 256)}}, name="defect")

# Severstal steel: four defect classes.
SEVERSTAL = ClassMap(
    names=("good", "defect_1", "defect_2", "defect_3", "defect_4"),
    colors=((0, 0, 0), (255, 64, 64), (64, 200, 64), (64, 128, 255), (255, 200, 0)),
    ignore_index=255,
    name="severstal",
)
