"""Industrial inspection: defect masks, per-part OK/NG verdicts."""

from __future__ import annotations

from typing import TYPE_CHECKING

from segsuite.core.data.images import IMAGE_SUFFIXES, read_image
from segsuite.core.domain import Domain, ModelSpec, Sample
from segsuite.core.hookspecs import hookimpl

from .classes import DEFECT, SEVERSTAL, SURFACE
from .pipeline import InspectionPipeline  # light: the heavy imports happen when a job runs
from .synthetic import generate

if TYPE_CHECKING:
    import typer

SAMPLE = Sample(
    inputs=("parts/images",),
    labels="parts",
    note="segsuite run industrial --input parts/images, then segsuite evaluate industrial --data parts: the shipped "
         "model on 6 synthetic grey parts (brushed metal, woven fabric) against their defect masks.",
)


@hookimpl
def segsuite_domains() -> list[Domain]:
    return [
        Domain(
            name="industrial",
            description="Defect segmentation for visual inspection (PNG/JPEG/BMP/TIFF, 8/16-bit)",
            spatial_dims=2,
            in_channels=1,
            class_maps={"surface": SURFACE, "defect": DEFECT, "severstal": SEVERSTAL},
            default_model=ModelSpec("bnunet", {"channels": [16, 32, 64, 128]}),
            patch_size=(256, 256),
            readers={s: read_image for s in IMAGE_SUFFIXES},
            outputs=("label mask PNG", "heatmap", "overlay", "JSON verdict with defect list"),
            synthetic=generate,
            pipeline=InspectionPipeline(),
            sample=SAMPLE,
        )
    ]


@hookimpl
def segsuite_cli(app: "typer.Typer") -> None:
    from . import commands

    app.command("calibrate")(commands.calibrate)
