"""Land-cover class maps."""

from __future__ import annotations

from segsuite.core.classmap import ClassMap

# The default: five classes a land-cover analyst maps first; what the shipped model predicts.
LANDCOVER = ClassMap(
    names=("background", "water", "vegetation", "building", "road"),
    colors=((200, 190, 170), (30, 100, 220), (40, 160, 60), (220, 60, 50), (90, 90, 90)),
    ignore_index=255,
    name="landcover",
)

# LoveDA land-cover classes; the dataset stores 0 = no-data and 1..7 = classes.
LOVEDA = ClassMap(
    names=("background", "building", "road", "water", "barren", "forest", "agriculture"),
    colors=((255, 255, 255), (255, 0, 0), (255, 255, 0), (0, 0, 255), (159, 129, 183), (0, 255, 0), (255, 195, 128)),
    ignore_index=255,
    raw_ids={0: 255, **{i: i - 1 for i in range(1, 8)}},
    name="loveda",
)

WATER = ClassMap(names=("land", "water"), colors=((40, 40, 40), (30, 110, 250)), ignore_index=255, name="water")
