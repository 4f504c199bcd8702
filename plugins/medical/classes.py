"""Medical class maps, following Medical Segmentation Decathlon task labels."""

from __future__ import annotations

from segsuite.core.classmap import ClassMap

# MSD Task03 (liver CT): 0 background, 1 liver, 2 tumour.
LIVER = ClassMap(
    names=("background", "liver", "tumour"),
    colors=((0, 0, 0), (220, 120, 60), (250, 230, 40)),
    ignore_index=255,
    name="msd-liver",
)

# MSD Task09 (spleen CT): 0 background, 1 spleen.
SPLEEN = ClassMap(names=("background", "spleen"), colors=((0, 0, 0), (157, 108, 162)), ignore_index=255, name="msd-spleen")

# The abdominal organ set of the synthetic phantoms and the shipped default model.
ABDOMEN = ClassMap(
    names=("background", "liver", "spleen", "kidney", "lesion"),
    colors=((0, 0, 0), (220, 120, 60), (157, 108, 162), (80, 160, 220), (250, 230, 40)),
    ignore_index=255,
    name="abdomen",
)
