"""Industrial inspection: defect masks, per-part OK/NG verdicts."""

from __future__ import annotations

from segsuite.core.data.images import IMAGE_SUFFIXES, read_image
from segsuite.core.domain import Domain, ModelSpec
from segsuite.core.hookspecs import hookimpl

from .classes import DEFECT, SEVERSTAL


@hookimpl
def segsuite_domains() -> list[Domain]:
    return [
        Domain(
            name="industrial",
            description="Defect segmentation for visual inspection (PNG/JPEG/BMP/TIFF, 8/16-bit)",
            spatial_dims=2,
            in_channels=3,
            class_maps={"defect": DEFECT, "severstal": SEVERSTAL},
            default_model=ModelSpec("unet", {"encoder": "resnet18"}),
            patch_size=(256, 256),
            readers={s: read_image for s in IMAGE_SUFFIXES},
            outputs=("label mask PNG", "heatmap", "overlay", "JSON verdict with defect list"),
        )
    ]
