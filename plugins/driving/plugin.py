"""Driving scenes: Cityscapes/CamVid conventions, images and video."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from segsuite.core.data.images import read_image
from segsuite.core.domain import Domain, ModelSpec, Sample
from segsuite.core.hookspecs import hookimpl

from .classes import CAMVID, CITYSCAPES
from .formats import FORMATS
from .pipeline import IMAGE_SUFFIXES, DrivingPipeline
from .scenes import VIDEO_SUFFIXES
from .synthetic import generate

SAMPLE_SMOOTH = 0.5
SAMPLE = Sample(
    inputs=("frames", "drive.mp4"),
    labels=".",  # frames/*_leftImg8bit.png with labels/*_gtFine_labelIds.png, paired by name
    options={"smooth": SAMPLE_SMOOTH},
    note=("segsuite run driving on synthetic street frames (Cityscapes naming and label ids) and on drive.mp4 with "
          f"--smooth {SAMPLE_SMOOTH}: the 19 Cityscapes classes, the drivable area (road) and objects as connected "
          "regions of the person/vehicle classes."),
)


def _video_frames_only(path: Path) -> Any:
    """Videos are not single images: only `segsuite run driving` reads them (frame by frame); other
    commands that read driving inputs through the domain's readers (explain) get this error."""
    from segsuite.core.errors import SegsuiteError

    raise SegsuiteError(f"{path}: a video; `segsuite run driving` streams it frame by frame")


@hookimpl
def segsuite_domains() -> list[Domain]:
    return [
        Domain(
            name="driving",
            description="Street scenes (Cityscapes / CamVid conventions), images and video",
            spatial_dims=2,
            in_channels=3,
            class_maps={"cityscapes": CITYSCAPES, "camvid": CAMVID},
            # DDRNet-23-slim at half width (issue #17): the real-time two-branch network the shipped
            # checkpoint is; sample_data/README.md has the command that trains it
            default_model=ModelSpec("ddrnet", {"planes": 16}),
            patch_size=(128, 256),
            readers={**{s: read_image for s in IMAGE_SUFFIXES}, **{s: _video_frames_only for s in VIDEO_SUFFIXES}},
            outputs=("colour label PNG", "label PNG", "overlay", "drivable-area mask", "objects JSON", "overlay video"),
            synthetic=generate,
            dataset_formats=FORMATS,
            pipeline=DrivingPipeline(),
            sample=SAMPLE,
        )
    ]
